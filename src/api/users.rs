//! `/users`: who may use the relay. A new or rotated token is returned once, with the
//! client setup to paste; the config keeps only its hash.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::write::{client_base_url, edit};
use super::{Api, ApiError, ErrorBody};
use crate::config::edit::EditError;
use crate::config::manage::{self, NewToken};
use crate::config::{Config, Provider, Target};
use crate::ledger::query::{Dimension, Query, report};
use crate::ledger::store;

/// A user of the relay. Never their token or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    /// Their name, unique; the ledger records their requests under it.
    pub name: String,
    /// The account or pool their requests go to (the Claude one when they have both).
    pub credential: String,
    /// Whether `credential` is an `account` or a `pool`.
    pub credential_kind: CredentialKind,
    /// Where each provider's requests go: Claude's, then OpenAI's (Codex, GPT models).
    pub bindings: Vec<Binding>,
    /// How the config keeps their token: `hashed` (`token_hash`, as Carpool writes it) or
    /// `clear` (`token`, written by hand; rotating it stores a hash).
    pub token_storage: TokenStorage,
    /// Their requests and cost since the start of this month (this machine's time zone);
    /// `null` when there is no usage history yet.
    pub this_month: Option<MonthUsage>,
}

/// Where one provider's requests of a user go.
#[derive(Debug, Serialize, ToSchema)]
pub struct Binding {
    pub provider: Provider,
    /// The account or pool.
    pub credential: String,
    pub credential_kind: CredentialKind,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Account,
    Pool,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStorage {
    Hashed,
    Clear,
}

#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct MonthUsage {
    /// Requests relayed.
    pub requests: i64,
    /// Their cost at list prices, in US dollars (requests of unknown models count 0).
    pub cost_usd: f64,
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Their name; not one in use.
    pub name: String,
    /// Tag of the account or pool their requests go to. May be left out when the config
    /// has a single account and no pool (of each provider).
    #[serde(default)]
    pub credential: Option<String>,
    /// Instead of `credential`: one account or pool per provider their requests go to,
    /// such as a Claude pool and a Codex login (at least one; no two of one provider).
    #[serde(default)]
    pub credentials: Option<Vec<String>>,
}

/// Changes to a user; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new name (their token stays).
    #[serde(default)]
    pub name: Option<String>,
    /// Tag of the account or pool their requests of its provider (Claude or OpenAI) go
    /// to from now on; their binding for the other provider stays.
    #[serde(default)]
    pub credential: Option<String>,
    /// Instead of `credential`: every account or pool their requests go to from now on,
    /// one per provider (at least one); a provider left out is no longer served for them.
    #[serde(default)]
    pub credentials: Option<Vec<String>>,
}

/// `credential` and `credentials` of one request: not both.
fn one_of(credential: &Option<String>, credentials: &Option<Vec<String>>) -> Result<(), EditError> {
    if credential.is_some() && credentials.is_some() {
        return Err(EditError::invalid(
            "credentials",
            "give either `credential` or `credentials`, not both",
        ));
    }
    Ok(())
}

/// A user with a token made now. The token is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserToken {
    pub user: User,
    /// The user's token (`cpk-…`), shown only now: the config keeps its hash.
    pub token: String,
    /// What to paste into the user's clients.
    pub setup: ClientSetup,
}

/// Ready-to-paste client settings for one user token: Claude Code and the Anthropic SDKs
/// at `base_url`, Codex CLI and the OpenAI SDKs at `openai_base_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientSetup {
    /// The address clients send requests to: the host this request came to.
    pub base_url: String,
    /// Claude Code's environment: `ANTHROPIC_BASE_URL` and `ANTHROPIC_AUTH_TOKEN`.
    pub env: Vec<EnvVar>,
    /// Shell lines that set that environment (then run `claude`).
    pub shell: String,
    /// The same for Claude Code's `~/.claude/settings.json` (its `env`), so every
    /// session uses Carpool.
    pub claude_code_settings: String,
    /// The Anthropic Python SDK (`pip install anthropic`).
    pub python: String,
    /// The Anthropic TypeScript SDK (`npm install @anthropic-ai/sdk`).
    pub typescript: String,
    /// The base URL of the OpenAI endpoints: `base_url` and `/v1`, as Codex and the
    /// OpenAI SDKs take it.
    pub openai_base_url: String,
    /// Codex CLI's model provider for `~/.codex/config.toml`: `model_provider =
    /// "carpool"` (a top-level key: it goes above the file's first `[table]`) and the
    /// `[model_providers.carpool]` table, which reads the token from `CARPOOL_TOKEN`.
    pub codex_config: String,
    /// Shell lines that set `CARPOOL_TOKEN` for Codex (then run `codex`).
    pub codex_shell: String,
    /// The OpenAI SDKs' environment: `OPENAI_BASE_URL` and `OPENAI_API_KEY`.
    pub openai_env: Vec<EnvVar>,
    /// The OpenAI Python SDK (`pip install openai`).
    pub openai_python: String,
    /// The OpenAI TypeScript SDK (`npm install openai`).
    pub openai_typescript: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// The environment variable Codex reads the Carpool token from (the provider's
/// `env_key`).
pub const CODEX_TOKEN_ENV: &str = "CARPOOL_TOKEN";

impl ClientSetup {
    /// The setup for `token` on the Carpool at `base_url`. Claude Code sends
    /// `ANTHROPIC_AUTH_TOKEN` as `Authorization: Bearer`; the SDKs send `api_key` as
    /// `x-api-key`; Carpool takes its token in either (docs/protocol.md §12). Codex takes
    /// Carpool as a custom model provider speaking Responses at `<base_url>/v1`, sending
    /// its `env_key` variable as `Authorization: Bearer` (§12, last paragraph); with
    /// `supports_websockets = false`, plain HTTPS requests, which is how Carpool's tests run
    /// the real Codex CLI (Carpool relays Codex's WebSocket too, §7.4).
    pub fn new(base_url: &str, token: &str) -> ClientSetup {
        let base_url = base_url.trim_end_matches('/');
        let env = vec![
            EnvVar {
                name: "ANTHROPIC_BASE_URL".into(),
                value: base_url.into(),
            },
            EnvVar {
                name: "ANTHROPIC_AUTH_TOKEN".into(),
                value: token.into(),
            },
        ];
        let exports = |vars: &[EnvVar]| -> String {
            vars.iter()
                .map(|v| format!("export {}={}\n", v.name, v.value))
                .collect()
        };
        let shell = exports(&env);
        let settings = serde_json::json!({
            "env": {"ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_AUTH_TOKEN": token}
        });
        let claude_code_settings = serde_json::to_string_pretty(&settings).unwrap_or_default();
        // A JSON string is also a TOML basic string (same escapes).
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let python = format!(
            "import anthropic\n\nclient = anthropic.Anthropic(\n    base_url={},\n    api_key={},\n)\n",
            quoted(base_url),
            quoted(token)
        );
        let typescript = format!(
            "import Anthropic from \"@anthropic-ai/sdk\";\n\nconst client = new Anthropic({{\n  baseURL: {},\n  apiKey: {},\n}});\n",
            quoted(base_url),
            quoted(token)
        );
        let openai_base_url = format!("{base_url}/v1");
        let codex_config = format!(
            "model_provider = \"carpool\"\n\n[model_providers.carpool]\nname = \"Carpool\"\nbase_url = {}\nwire_api = \"responses\"\nenv_key = \"{CODEX_TOKEN_ENV}\"\nsupports_websockets = false\n",
            quoted(&openai_base_url)
        );
        let codex_shell = format!("export {CODEX_TOKEN_ENV}={token}\n");
        let openai_env = vec![
            EnvVar {
                name: "OPENAI_BASE_URL".into(),
                value: openai_base_url.clone(),
            },
            EnvVar {
                name: "OPENAI_API_KEY".into(),
                value: token.into(),
            },
        ];
        let openai_python = format!(
            "from openai import OpenAI\n\nclient = OpenAI(\n    base_url={},\n    api_key={},\n)\n",
            quoted(&openai_base_url),
            quoted(token)
        );
        let openai_typescript = format!(
            "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{\n  baseURL: {},\n  apiKey: {},\n}});\n",
            quoted(&openai_base_url),
            quoted(token)
        );
        ClientSetup {
            base_url: base_url.into(),
            env,
            shell,
            claude_code_settings,
            python,
            typescript,
            openai_base_url,
            codex_config,
            codex_shell,
            openai_env,
            openai_python,
            openai_typescript,
        }
    }

    /// Codex's provider with `token` in the file itself (`experimental_bearer_token`,
    /// which Codex sends as `Authorization: Bearer` as it does `env_key`'s value; the
    /// sing-box ocm docs set it up this way, docs/protocol.md §7.4): one paste, for the
    /// tray, whose token is this machine's own.
    pub fn codex_config_with_token(&self, token: &str) -> String {
        let quoted = serde_json::Value::from(token).to_string();
        self.codex_config.replace(
            &format!("env_key = \"{CODEX_TOKEN_ENV}\"\n"),
            &format!("experimental_bearer_token = {quoted}\n"),
        )
    }

    /// For a terminal: each snippet under a heading; `lead`'s first (Claude's for a
    /// user bound to Claude, OpenAI's for one bound only to OpenAI).
    pub fn to_text(&self, lead: Provider) -> String {
        let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
        let claude = format!(
            "Claude Code, in the shell that runs `claude`:\n{}\nOr for every session, in ~/.claude/settings.json:\n{}\nPython (anthropic):\n{}\nTypeScript (@anthropic-ai/sdk):\n{}",
            indent(&self.shell),
            indent(&self.claude_code_settings),
            indent(&self.python),
            indent(&self.typescript),
        );
        let openai = format!(
            "Codex CLI, in ~/.codex/config.toml (model_provider above the first [table]):\n{}\nand in the shell that runs `codex`:\n{}\nPython (openai):\n{}\nTypeScript (openai):\n{}",
            indent(&self.codex_config),
            indent(&self.codex_shell),
            indent(&self.openai_python),
            indent(&self.openai_typescript),
        );
        match lead {
            Provider::Anthropic => format!("{claude}\n{openai}"),
            Provider::OpenAi => format!("{openai}\n{claude}"),
        }
    }
}

/// Whose setup a user's clients need first: Claude's when they are bound to Claude (or
/// to nothing), OpenAI's when they are bound only to OpenAI.
pub fn lead_provider(targets: &crate::config::Targets) -> Provider {
    if targets.anthropic.is_none() && targets.openai.is_some() {
        Provider::OpenAi
    } else {
        Provider::Anthropic
    }
}

/// `name` as `config` has it now.
fn view(config: &Config, name: &str, usage: &HashMap<String, MonthUsage>) -> Option<User> {
    let (i, user) = config
        .users
        .iter()
        .enumerate()
        .find(|(_, u)| u.name.as_str() == name)?;
    let bound = |target: &Target| match target {
        Target::Account(tag) => (tag.to_string(), CredentialKind::Account),
        Target::Pool(tag) => (tag.to_string(), CredentialKind::Pool),
    };
    let bindings: Vec<Binding> = Provider::ALL
        .into_iter()
        .filter_map(|provider| {
            let (credential, credential_kind) = bound(user.targets.get(provider)?);
            Some(Binding {
                provider,
                credential,
                credential_kind,
            })
        })
        .collect();
    let (credential, credential_kind) = bindings
        .first()
        .map(|b| (b.credential.clone(), b.credential_kind))
        .unwrap_or((String::new(), CredentialKind::Account));
    let clear = config.clear_secrets.contains(&format!("users[{i}].token"));
    Some(User {
        name: name.to_owned(),
        credential,
        credential_kind,
        bindings,
        token_storage: if clear {
            TokenStorage::Clear
        } else {
            TokenStorage::Hashed
        },
        this_month: usage.get(name).copied(),
    })
}

/// Requests and cost per user since the start of this month, from the usage database;
/// empty when there is none yet or it cannot be read (the list is still worth showing).
fn month_usage(database: &Path) -> HashMap<String, MonthUsage> {
    let answer = (|| {
        let conn = store::open_existing(database).ok()?;
        let now = jiff::Zoned::now();
        let since = now.first_of_month().and_then(|d| d.start_of_day()).ok()?;
        report(
            &conn,
            &Query::up_to_now(&since, &now, Some(Dimension::User)),
        )
        .ok()
    })();
    let mut usage = HashMap::new();
    for row in answer.map(|r| r.rows).unwrap_or_default() {
        if let Some(name) = row.key() {
            usage.insert(
                name.to_owned(),
                MonthUsage {
                    requests: row.totals.requests,
                    cost_usd: row.totals.cost_micros as f64 / 1_000_000.0,
                },
            );
        }
    }
    usage
}

async fn usage_of(config: &Config) -> HashMap<String, MonthUsage> {
    let database = config.usage.database.clone();
    tokio::task::spawn_blocking(move || month_usage(&database))
        .await
        .unwrap_or_default()
}

/// One user of `config` with this month's usage.
async fn one(config: &Config, name: &str) -> Result<User, ApiError> {
    let usage = usage_of(config).await;
    view(config, name, &usage).ok_or_else(|| ApiError::internal(format!("user `{name}` vanished")))
}

/// Every user, in config order.
#[utoipa::path(get, path = "/users", tag = "users", operation_id = "listUsers",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody)))]
pub async fn list_users(State(api): State<Arc<Api>>) -> Result<Json<Vec<User>>, ApiError> {
    let state = api.engine.state();
    let config = &state.config;
    let usage = usage_of(config).await;
    Ok(Json(
        config
            .users
            .iter()
            .filter_map(|u| view(config, &u.name, &usage))
            .collect(),
    ))
}

/// Adds a user with a new token, returned only in this answer with the client setup.
#[utoipa::path(post, path = "/users", tag = "users", operation_id = "createUser",
    request_body = CreateUser,
    responses(
        (status = 201, body = UserToken, description = "Created; the token is shown only now"),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The config file changed on disk since Carpool last read it"),
        (status = 422, body = ErrorBody, description = "A field is wrong (a name in use, an unknown credential)"),
        (status = 503, body = ErrorBody, description = "Carpool runs without a config file"),
    ))]
pub async fn create_user(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserToken>), ApiError> {
    let Json(body) = body?;
    let edited = edit(&api, move |doc| {
        one_of(&body.credential, &body.credentials)?;
        match (&body.credential, &body.credentials) {
            (_, Some(list)) => {
                if list.is_empty() {
                    return Err(EditError::invalid(
                        "credentials",
                        "name at least one account or pool",
                    ));
                }
                manage::add_user(
                    doc,
                    &body.name,
                    list,
                    &manage::credentials_field,
                    "`credentials`",
                )
            }
            (one, None) => {
                let requested: Vec<String> = one.iter().cloned().collect();
                manage::add_user(
                    doc,
                    &body.name,
                    &requested,
                    &manage::credential_field,
                    "`credential`",
                )
            }
        }
    })
    .await?;
    let answer = with_token(&edited.config, &headers, edited.value).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn with_token(
    config: &Config,
    headers: &HeaderMap,
    new: NewToken,
) -> Result<UserToken, ApiError> {
    let base_url = client_base_url(headers, config.listen, config.tls.is_some());
    // `new.credentials` are what the config now binds them to, read back by `one`.
    Ok(UserToken {
        user: one(config, &new.name).await?,
        setup: ClientSetup::new(&base_url, &new.token),
        token: new.token,
    })
}

/// Gives the user a new token, returned only in this answer; the old one is refused
/// from the next request.
#[utoipa::path(post, path = "/users/{name}/rotate", tag = "users", operation_id = "rotateUserToken",
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, body = UserToken, description = "The new token, shown only now"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn rotate_user(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<UserToken>, ApiError> {
    let edited = edit(&api, move |doc| manage::rotate_user(doc, &name)).await?;
    Ok(Json(
        with_token(&edited.config, &headers, edited.value).await?,
    ))
}

/// Renames the user or binds them to other accounts or pools.
#[utoipa::path(patch, path = "/users/{name}", tag = "users", operation_id = "updateUser",
    params(("name" = String, Path, description = "The user's name")),
    request_body = UpdateUser,
    responses(
        (status = 200, body = User, description = "The user as they are now"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn update_user(
    State(api): State<Arc<Api>>,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<UpdateUser>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let Json(body) = body?;
    let edited = edit(&api, move |doc| {
        let mut current = name;
        if let Some(new_name) = &body.name {
            manage::rename_user(doc, &current, new_name)?;
            current = new_name.clone();
        }
        one_of(&body.credential, &body.credentials)?;
        if let Some(credential) = &body.credential {
            manage::bind_user(doc, &current, credential)?;
        }
        if let Some(list) = &body.credentials {
            manage::bind_user_targets(doc, &current, list)?;
        }
        if body.name.is_none() && body.credential.is_none() && body.credentials.is_none() {
            // Nothing to change; still a 404 for a user that does not exist.
            doc.users()?.get(&current, "user")?;
        }
        Ok(current)
    })
    .await?;
    Ok(Json(one(&edited.config, &edited.value).await?))
}

/// Removes the user: their token is refused from the next request.
#[utoipa::path(delete, path = "/users/{name}", tag = "users", operation_id = "deleteUser",
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn delete_user(
    State(api): State<Arc<Api>>,
    UrlPath(name): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    edit(&api, move |doc| manage::remove_user(doc, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippets_carry_the_url_and_token_quoted() {
        let setup = ClientSetup::new("http://box:7676", "cpk-abc");
        assert_eq!(
            setup.shell,
            "export ANTHROPIC_BASE_URL=http://box:7676\nexport ANTHROPIC_AUTH_TOKEN=cpk-abc\n"
        );
        assert!(setup.python.contains("base_url=\"http://box:7676\""));
        assert!(setup.python.contains("api_key=\"cpk-abc\""));
        assert!(setup.typescript.contains("apiKey: \"cpk-abc\""));
        let settings: serde_json::Value =
            serde_json::from_str(&setup.claude_code_settings).unwrap();
        assert_eq!(settings["env"]["ANTHROPIC_AUTH_TOKEN"], "cpk-abc");
        let text = setup.to_text(Provider::Anthropic);
        assert!(text.contains("    export ANTHROPIC_AUTH_TOKEN=cpk-abc"));
        assert!(text.contains("    export CARPOOL_TOKEN=cpk-abc"));
        assert!(text.find("Claude Code").unwrap() < text.find("Codex CLI").unwrap());
        let text = setup.to_text(Provider::OpenAi);
        assert!(text.find("Codex CLI").unwrap() < text.find("Claude Code").unwrap());
    }

    /// Codex's provider table as docs/protocol.md §7.4 and §12 have it, the token only in
    /// the environment line; the OpenAI SDKs at `/v1`.
    #[test]
    fn the_codex_and_openai_snippets_point_at_v1() {
        let setup = ClientSetup::new("https://box:7676/", "cpk-abc");
        assert_eq!(setup.openai_base_url, "https://box:7676/v1");
        assert_eq!(
            setup.codex_config,
            "model_provider = \"carpool\"\n\n[model_providers.carpool]\nname = \"Carpool\"\nbase_url = \"https://box:7676/v1\"\nwire_api = \"responses\"\nenv_key = \"CARPOOL_TOKEN\"\nsupports_websockets = false\n"
        );
        assert!(!setup.codex_config.contains("cpk-abc"));
        let inline = setup.codex_config_with_token("cpk-abc");
        assert!(inline.contains("experimental_bearer_token = \"cpk-abc\"\n"));
        assert!(!inline.contains("env_key"));
        assert!(inline.contains("base_url = \"https://box:7676/v1\""));
        assert_eq!(setup.codex_shell, "export CARPOOL_TOKEN=cpk-abc\n");
        assert!(setup.openai_python.contains(
            "OpenAI(\n    base_url=\"https://box:7676/v1\",\n    api_key=\"cpk-abc\",\n)"
        ));
        assert!(
            setup
                .openai_typescript
                .contains("baseURL: \"https://box:7676/v1\"")
        );
        assert_eq!(setup.openai_env[0].value, "https://box:7676/v1");
        assert_eq!(setup.openai_env[1].name, "OPENAI_API_KEY");
        // The top-level key comes before the table, or TOML would read it into the table.
        assert!(
            setup.codex_config.find("model_provider =").unwrap()
                < setup.codex_config.find('[').unwrap()
        );
    }

    #[test]
    fn the_lead_provider_is_openai_only_for_openai_only_users() {
        use crate::config::{Target, Targets};
        let claude = Some(Target::Account("max".into()));
        let codex = Some(Target::Account("codex".into()));
        let targets = |anthropic: &Option<Target>, openai: &Option<Target>| Targets {
            anthropic: anthropic.clone(),
            openai: openai.clone(),
        };
        assert_eq!(
            lead_provider(&targets(&claude, &codex)),
            Provider::Anthropic
        );
        assert_eq!(lead_provider(&targets(&claude, &None)), Provider::Anthropic);
        assert_eq!(lead_provider(&targets(&None, &codex)), Provider::OpenAi);
        assert_eq!(lead_provider(&Targets::default()), Provider::Anthropic);
    }
}
