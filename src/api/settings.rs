//! `/settings`: the relay's own settings (listen address, timeouts, body limit, extra
//! headers, prices), and where Carpool keeps its files (read-only).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::write::edit;
use super::{Api, ApiError, ErrorBody};
use crate::config::edit::EditError;
use crate::config::{Config, is_credential_like_header};

/// What a header value that is likely a secret is shown as.
pub const MASK: &str = "********";

/// The relay's settings as they run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Settings {
    /// IP address the relay listens on (`127.0.0.1`: this machine only).
    pub listen: String,
    /// Its TCP port.
    pub listen_port: u16,
    pub timeouts: Timeouts,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Extra headers sent upstream, by name; each replaces a same-named client header.
    /// Values of credential-like headers (`…key`, `…token`, `cookie`, …) are shown as
    /// `********`.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The config's price overrides (USD per million tokens), by model, as written.
    #[schema(value_type = Object)]
    pub prices: BTreeMap<String, Value>,
    /// Read-only: the SQLite file of the usage history.
    pub database: String,
    /// Read-only: Carpool's own data directory.
    pub data_dir: String,
    /// Read-only: the config file changes are written to; `null` when Carpool runs
    /// without one (then settings cannot be changed).
    pub config_path: Option<String>,
}

/// Durations, written like `10s`, `2m`, `1h 30m`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timeouts {
    /// TCP + TLS connect to the upstream.
    pub connect: String,
    /// From sending a streaming request to the upstream's response headers.
    pub first_byte: String,
    /// Longest silence between two chunks of a response.
    pub idle: String,
    /// Whole non-streaming request.
    pub request: String,
    /// At shutdown, how long in-flight responses may take to finish.
    pub shutdown_grace: String,
}

/// Changes to the settings; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// An IP address (`127.0.0.1`, `0.0.0.0`); a wildcard needs users.
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub listen_port: Option<u16>,
    #[serde(default)]
    pub timeouts: Option<UpdateTimeouts>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Headers to set (a value, or a list for a repeated header) or, with `null`, to
    /// remove. Headers not named stay; send only those that change (a masked value sent
    /// back would be written as it is).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub headers: Option<BTreeMap<String, Value>>,
    /// Price overrides to set (an object of prices) or, with `null`, to remove, by model.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub prices: Option<BTreeMap<String, Value>>,
}

/// Durations to set, like `30s` or `2m`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTimeouts {
    #[serde(default)]
    pub connect: Option<String>,
    #[serde(default)]
    pub first_byte: Option<String>,
    #[serde(default)]
    pub idle: Option<String>,
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub shutdown_grace: Option<String>,
}

/// The settings after a change, and what the change did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsChanged {
    pub settings: Settings,
    /// Settings that changed and apply now, by config field (`timeouts`, `headers`, …).
    pub applied: Vec<String>,
    /// Settings that changed in the file but take effect only when Carpool restarts.
    pub needs_restart: Vec<String>,
}

fn view(config: &Config, config_path: Option<String>) -> Settings {
    let duration = |d| humantime::format_duration(d).to_string();
    let t = &config.timeouts;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &config.headers {
        let shown = if is_credential_like_header(name.as_str()) {
            MASK.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        headers.entry(name.to_string()).or_default().push(shown);
    }
    Settings {
        listen: config.listen.ip().to_string(),
        listen_port: config.listen.port(),
        timeouts: Timeouts {
            connect: duration(t.connect),
            first_byte: duration(t.first_byte),
            idle: duration(t.idle),
            request: duration(t.request),
            shutdown_grace: duration(t.shutdown_grace),
        },
        max_body_bytes: config.max_body_bytes as u64,
        headers,
        prices: config
            .usage
            .price_overrides
            .iter()
            .map(|(model, prices)| {
                (
                    model.clone(),
                    serde_json::to_value(prices).unwrap_or(Value::Null),
                )
            })
            .collect(),
        database: config.usage.database.display().to_string(),
        data_dir: config.data_dir.display().to_string(),
        config_path,
    }
}

fn config_path(api: &Api) -> Option<String> {
    api.engine
        .config_file()
        .map(|f| f.path().display().to_string())
}

/// The relay's settings as they run.
#[utoipa::path(get, path = "/settings", tag = "settings", operation_id = "getSettings",
    responses((status = 200, body = Settings), (status = 401, body = ErrorBody)))]
pub async fn get_settings(State(api): State<Arc<Api>>) -> Json<Settings> {
    Json(view(&api.engine.state().config, config_path(&api)))
}

/// Changes settings; says which apply now and which need a restart.
#[utoipa::path(patch, path = "/settings", tag = "settings", operation_id = "updateSettings",
    request_body = UpdateSettings,
    responses(
        (status = 200, body = SettingsChanged),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The config file changed on disk since Carpool last read it"),
        (status = 422, body = ErrorBody, description = "A field is wrong; it is named"),
        (status = 503, body = ErrorBody, description = "Carpool runs without a config file"),
    ))]
pub async fn update_settings(
    State(api): State<Arc<Api>>,
    body: Result<Json<UpdateSettings>, JsonRejection>,
) -> Result<Json<SettingsChanged>, ApiError> {
    let Json(body) = body?;
    if body.listen_port == Some(0) {
        // The config allows 0 (tests bind a random port), but from the API it would move
        // the relay and this dashboard to a port nobody knows.
        return Err(ApiError::invalid(
            "listen_port: must be between 1 and 65535 (0 would move Carpool to a random port)",
        ));
    }
    let edited = edit(&api, move |doc| {
        if let Some(listen) = &body.listen {
            doc.set(&["listen"], &listen.as_str().into())?;
        }
        if let Some(port) = body.listen_port {
            doc.set(&["listen_port"], &port.into())?;
        }
        if let Some(t) = &body.timeouts {
            for (field, value) in [
                ("connect", &t.connect),
                ("first_byte", &t.first_byte),
                ("idle", &t.idle),
                ("request", &t.request),
                ("shutdown_grace", &t.shutdown_grace),
            ] {
                if let Some(value) = value {
                    doc.set(&["timeouts", field], &value.as_str().into())?;
                }
            }
        }
        if let Some(max) = body.max_body_bytes {
            doc.set(&["max_body_bytes"], &max.into())?;
        }
        for (name, value) in body.headers.iter().flatten() {
            match value {
                Value::Null => {
                    doc.remove(&["headers", name]);
                }
                Value::String(_) => doc.set(&["headers", name], value)?,
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    doc.set(&["headers", name], value)?
                }
                _ => {
                    return Err(EditError::invalid(
                        format!("headers.{name}"),
                        "must be a string, a list of strings, or null to remove it",
                    ));
                }
            }
        }
        for (model, prices) in body.prices.iter().flatten() {
            match prices {
                Value::Null => {
                    doc.remove(&["prices", model]);
                }
                Value::Object(_) => doc.set(&["prices", model], prices)?,
                _ => {
                    return Err(EditError::invalid(
                        format!("prices.{model}"),
                        "must be an object of prices such as {\"input\": 3, \"output\": 15}, or null to remove it",
                    ));
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(Json(SettingsChanged {
        settings: view(&edited.config, config_path(&api)),
        applied: edited
            .changes
            .settings
            .iter()
            .map(|s| s.to_string())
            .collect(),
        needs_restart: edited
            .changes
            .needs_restart
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }))
}
