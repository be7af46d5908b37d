//! Configuration: one JSON file (comments allowed) → a validated [`Config`].
//!
//! Two stages, as ripgrep does with its flags: [`raw::RawConfig`] is what the user wrote
//! (serde, unknown fields rejected); [`Config::from_raw`] checks it and resolves defaults
//! into the form the engine runs with. Every problem is reported as one [`ConfigError`]
//! that names the file, the field (`users[1].credential`) and what is wrong.

pub mod raw;
mod template;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::auth::TokenHash;
use crate::ledger::prices::PriceTable;
use raw::{HeaderValues, RawConfig, RawTimeouts};

pub use template::{CreatedConfig, create_default};

pub const DEFAULT_PORT: u16 = 7676;
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_TOKEN_URL: &str = "https://platform.claude.com/v1/oauth/token";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The validated configuration the engine runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub credentials: Vec<CredentialConfig>,
    pub users: Vec<UserConfig>,
    /// Operator headers, applied after the client's and before `Authorization`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub max_body_bytes: usize,
    pub timeouts: Timeouts,
    pub usage: UsageConfig,
}

/// Where usage goes and how it is priced.
#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub database: PathBuf,
    /// sing-box ccm statistics file for all requests.
    pub usages_path: Option<PathBuf>,
    pub queue: usize,
    pub prices: Arc<PriceTable>,
}

#[derive(Debug, Clone)]
pub struct CredentialConfig {
    pub tag: String,
    pub path: PathBuf,
    /// Without a trailing slash.
    pub base_url: String,
    pub token_url: String,
    /// sing-box ccm statistics file for this credential's requests.
    pub usages_path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    pub token_hash: TokenHash,
    /// Index into [`Config::credentials`].
    pub credential: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub request: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(120),
            request: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write config {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}: {field}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text (JSON with `//` and `/* */` comments). `path` is only used in
    /// messages and to resolve relative credential paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let stripped = json_comments::StripComments::new(text.as_bytes());
        let mut de = serde_json::Deserializer::from_reader(stripped);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::Invalid {
                path: path.to_owned(),
                field: if field == "." {
                    "(top level)".into()
                } else {
                    field
                },
                problem: e.into_inner().to_string(),
            }
        })?;
        Config::from_raw(raw, path)
    }

    /// Validates a parsed config and fills in defaults.
    pub fn from_raw(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            problem,
        };
        let base_dir = path.parent().unwrap_or(Path::new("."));

        let ip = parse_listen(raw.listen.as_deref().unwrap_or("127.0.0.1"))
            .map_err(|p| invalid("listen", p))?;
        let listen = SocketAddr::new(ip, raw.listen_port.unwrap_or(DEFAULT_PORT));

        let credentials = credentials_from_raw(&raw, base_dir).map_err(|(f, p)| invalid(&f, p))?;
        let users = users_from_raw(&raw, &credentials).map_err(|(f, p)| invalid(&f, p))?;
        if users.is_empty() && !ip.is_loopback() {
            return Err(invalid(
                "users",
                format!(
                    "no users are configured, so anyone who can reach {listen} could spend your subscription; \
                     add a user with a token (`carpool token` makes one) or listen on 127.0.0.1"
                ),
            ));
        }

        let mut headers = Vec::new();
        for (name, values) in &raw.headers {
            let field = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&field, "not a valid HTTP header name".into()))?;
            if matches!(header.as_str(), "authorization" | "host" | "content-length") {
                return Err(invalid(
                    &field,
                    "this header is set by Carpool and cannot be overridden".into(),
                ));
            }
            let values = match values {
                HeaderValues::One(v) => vec![v.clone()],
                HeaderValues::Many(v) => v.clone(),
            };
            for value in values {
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| invalid(&field, "not a valid HTTP header value".into()))?;
                headers.push((header.clone(), value));
            }
        }

        let max_body_bytes = match raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES) {
            0 => return Err(invalid("max_body_bytes", "must be greater than 0".into())),
            n => usize::try_from(n).map_err(|_| invalid("max_body_bytes", "too large".into()))?,
        };
        let timeouts = timeouts_from_raw(&raw.timeouts).map_err(|(f, p)| invalid(&f, p))?;
        let usage = usage_from_raw(raw, base_dir).map_err(|(f, p)| invalid(&f, p))?;

        Ok(Config {
            listen,
            credentials,
            users,
            headers,
            max_body_bytes,
            timeouts,
            usage,
        })
    }
}

fn parse_listen(value: &str) -> Result<IpAddr, String> {
    if value == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"))
}

type FieldProblem = (String, String);

fn credentials_from_raw(
    raw: &RawConfig,
    base_dir: &Path,
) -> Result<Vec<CredentialConfig>, FieldProblem> {
    if raw.credential_path.is_some() && !raw.credentials.is_empty() {
        return Err((
            "credential_path".into(),
            "cannot be combined with `credentials`; set `credential_path` inside a credentials entry instead".into(),
        ));
    }
    if raw.credentials.is_empty() {
        let path = match &raw.credential_path {
            Some(p) => absolute(p, base_dir),
            None => default_credential_path().map_err(|p| ("credential_path".into(), p))?,
        };
        return Ok(vec![CredentialConfig {
            tag: "default".into(),
            path,
            base_url: DEFAULT_BASE_URL.into(),
            token_url: DEFAULT_TOKEN_URL.into(),
            usages_path: None,
        }]);
    }

    let mut out: Vec<CredentialConfig> = Vec::new();
    for (i, c) in raw.credentials.iter().enumerate() {
        let at = |f: &str| format!("credentials[{i}].{f}");
        if c.tag.trim().is_empty() {
            return Err((at("tag"), "must not be empty".into()));
        }
        if out.iter().any(|o| o.tag == c.tag) {
            return Err((at("tag"), format!("duplicate tag `{}`", c.tag)));
        }
        match c.kind.as_deref() {
            None | Some("default") => {}
            Some(other) => {
                return Err((
                    at("type"),
                    format!(
                        "unsupported credential type `{other}`; this version supports `default`"
                    ),
                ));
            }
        }
        let path = match &c.credential_path {
            Some(p) => absolute(p, base_dir),
            None => default_credential_path().map_err(|p| (at("credential_path"), p))?,
        };
        let base_url = check_url(c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL))
            .map_err(|p| (at("base_url"), p))?;
        let token_url = check_url(c.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL))
            .map_err(|p| (at("token_url"), p))?;
        out.push(CredentialConfig {
            tag: c.tag.clone(),
            path,
            base_url,
            token_url,
            usages_path: c.usages_path.as_deref().map(|p| absolute(p, base_dir)),
        });
    }
    Ok(out)
}

fn users_from_raw(
    raw: &RawConfig,
    credentials: &[CredentialConfig],
) -> Result<Vec<UserConfig>, FieldProblem> {
    let mut out: Vec<UserConfig> = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let at = |f: &str| format!("users[{i}].{f}");
        if u.name.trim().is_empty() {
            return Err((at("name"), "must not be empty".into()));
        }
        if out.iter().any(|o| o.name == u.name) {
            return Err((at("name"), format!("duplicate user name `{}`", u.name)));
        }
        let token_hash = match (&u.token, &u.token_hash) {
            (Some(_), Some(_)) => {
                return Err((
                    at("token"),
                    "set either `token` or `token_hash`, not both".into(),
                ));
            }
            (None, None) => {
                return Err((
                    at("token_hash"),
                    "missing: every user needs `token_hash` (or `token`); `carpool token` makes one".into(),
                ));
            }
            (Some(token), None) => {
                if token.len() < 16 {
                    return Err((at("token"), "too short: use at least 16 characters".into()));
                }
                TokenHash::of(token)
            }
            (None, Some(hash)) => TokenHash::parse(hash).map_err(|p| (at("token_hash"), p))?,
        };
        if let Some(other) = out.iter().find(|o| o.token_hash == token_hash) {
            return Err((at("token"), format!("same token as user `{}`", other.name)));
        }
        let credential = match &u.credential {
            Some(tag) => credentials
                .iter()
                .position(|c| &c.tag == tag)
                .ok_or_else(|| {
                    let known: Vec<_> = credentials.iter().map(|c| c.tag.as_str()).collect();
                    (
                        at("credential"),
                        format!(
                            "unknown credential tag `{tag}` (known: {})",
                            known.join(", ")
                        ),
                    )
                })?,
            None if credentials.len() == 1 => 0,
            None => {
                return Err((
                    at("credential"),
                    "missing: with several credentials every user must name one".into(),
                ));
            }
        };
        out.push(UserConfig {
            name: u.name.clone(),
            token_hash,
            credential,
        });
    }
    Ok(out)
}

fn timeouts_from_raw(raw: &RawTimeouts) -> Result<Timeouts, FieldProblem> {
    let d = Timeouts::default();
    let parse = |name: &str, v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => {
                Err((format!("timeouts.{name}"), "must be greater than 0".into()))
            }
            Ok(d) => Ok(d),
            Err(_) => Err((
                format!("timeouts.{name}"),
                format!("`{s}` is not a duration; write it like \"30s\", \"2m\" or \"1h\""),
            )),
        },
    };
    Ok(Timeouts {
        connect: parse("connect", &raw.connect, d.connect)?,
        first_byte: parse("first_byte", &raw.first_byte, d.first_byte)?,
        idle: parse("idle", &raw.idle, d.idle)?,
        request: parse("request", &raw.request, d.request)?,
        shutdown_grace: parse("shutdown_grace", &raw.shutdown_grace, d.shutdown_grace)?,
    })
}

fn usage_from_raw(raw: RawConfig, base_dir: &Path) -> Result<UsageConfig, FieldProblem> {
    let database = match &raw.database {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(("database".into(), "must not be empty".into()));
        }
        Some(p) => absolute(p, base_dir),
        None => default_data_dir()
            .map(|d| d.join("usage.db"))
            .ok_or_else(|| {
                (
                    "database".to_string(),
                    "cannot find a data directory for the usage database; set `database`"
                        .to_string(),
                )
            })?,
    };
    let queue = match raw.usage_queue {
        Some(0) => return Err(("usage_queue".into(), "must be greater than 0".into())),
        Some(n) => n,
        None => 10_000,
    };
    let prices = PriceTable::builtin()
        .with_overrides(raw.prices)
        .map_err(|p| ("prices".to_string(), p))?;
    Ok(UsageConfig {
        database,
        usages_path: raw.usages_path.as_deref().map(|p| absolute(p, base_dir)),
        queue,
        prices: Arc::new(prices),
    })
}

fn check_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` must start with http:// or https://"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn absolute(path: &Path, base_dir: &Path) -> PathBuf {
    let expanded = match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir().map(|h| h.join(rest)),
        Err(_) => None,
    }
    .unwrap_or_else(|| path.to_owned());
    if expanded.is_absolute() {
        expanded
    } else {
        base_dir.join(expanded)
    }
}

/// Where Claude Code keeps its login on Linux and Windows (and on macOS when it does not
/// use the Keychain): `$CLAUDE_CONFIG_DIR/.credentials.json`, else `~/.claude/.credentials.json`.
pub fn default_credential_path() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join(".credentials.json"));
    }
    dirs::home_dir()
        .map(|h| h.join(".claude").join(".credentials.json"))
        .ok_or_else(|| "cannot find the home directory; set `credential_path`".into())
}

/// Where Carpool keeps its own data (the usage database): `$CARPOOL_DATA_DIR`, else
/// `<OS data dir>/carpool` (`~/.local/share/carpool` on Linux,
/// `~/Library/Application Support/carpool` on macOS).
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CARPOOL_DATA_DIR").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    dirs::data_dir().map(|d| d.join("carpool"))
}

/// The config file used when `--config` is not given: `$CARPOOL_CONFIG`, else
/// `<OS config dir>/carpool/config.json` (`~/.config/carpool` on Linux,
/// `~/Library/Application Support/carpool` on macOS).
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CARPOOL_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    dirs::config_dir().map(|d| d.join("carpool").join("config.json"))
}

#[cfg(test)]
mod tests;
