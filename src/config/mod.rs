//! Configuration: one JSON file (comments allowed) → a validated [`Config`].
//!
//! Two stages, as ripgrep does with its flags: [`raw::RawConfig`] is what the user wrote
//! (serde, unknown fields rejected); [`Config::from_raw`] checks it and resolves defaults
//! into the form the engine runs with. Every problem is reported as one [`ConfigError`]
//! that names the file, the field (`users[1].credential`) and what is wrong.

pub mod accounts;
pub mod edit;
pub mod file;
mod ids;
pub mod keychain;
pub mod manage;
pub mod raw;
mod template;

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::ledger::prices::PriceTable;
use crate::secret::TokenHash;
use crate::secrets::SecretRef;
use raw::{HeaderValues, RawAdmin, RawConfig, RawConnections, RawCredential, RawTimeouts};

pub use ids::{AccountTag, PoolTag, Provider, Target, Targets, UserName};
pub use keychain::KeychainItem;
pub use template::{CreatedConfig, create_default};

pub const DEFAULT_PORT: u16 = 7676;
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_TOKEN_URL: &str = "https://platform.claude.com/v1/oauth/token";
pub const DEFAULT_AUTHORIZE_URL: &str = "https://claude.ai/oauth/authorize";
pub const DEFAULT_PROFILE_URL: &str = "https://api.anthropic.com/api/oauth/profile";
/// ChatGPT's Codex backend, where a Codex login's requests go (docs/protocol.md §7.4).
pub const CODEX_BASE_URL: &str = "https://chatgpt.com/backend-api/codex";
/// Where a Codex login is refreshed (docs/protocol.md §7.2).
pub const CODEX_TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
/// Where a Codex login starts (docs/protocol.md §7.3).
pub const CODEX_AUTHORIZE_URL: &str = "https://auth.openai.com/oauth/authorize";
/// The OpenAI API, for OpenAI API keys. With `/v1`: the relay appends the client's path
/// without its `/v1`, as for the Codex backend (docs/protocol.md §7.4).
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The validated configuration the engine runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The accounts, in config order (pools are in [`Config::pools`]).
    pub credentials: Vec<CredentialConfig>,
    pub pools: Vec<PoolConfig>,
    pub users: Vec<UserConfig>,
    /// Model aliases (`aliases`): a name clients may use → the model it stands for.
    pub aliases: std::collections::BTreeMap<String, String>,
    /// Operator headers, applied after the client's and before `Authorization`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub max_body_bytes: usize,
    pub timeouts: Timeouts,
    /// Limits on client connections, enforced by [`crate::listener`].
    pub connections: Connections,
    pub usage: UsageConfig,
    /// Carpool's own data directory (`data_dir`): the admin secret's hash, secrets when
    /// there is no keyring, and the usage database by default.
    pub data_dir: PathBuf,
    /// Extra CA certificates (PEM) for upstream HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Where new secrets Carpool obtains itself go (`secret_store`).
    pub secret_store: crate::secrets::StoreChoice,
    /// Endpoints of the Claude login (`oauth.claude`).
    pub claude_login: LoginEndpoints,
    /// Endpoints of the Codex login (`oauth.codex`).
    pub codex_login: CodexLoginEndpoints,
    /// Fields that hold a secret in clear (`users[1].token`, `credentials[2].api_key`,
    /// a proxy password, a credential-like header), for [`Config::exposure_warning`].
    pub clear_secrets: Vec<String>,
    /// Who may reach the management API.
    pub admin: AdminConfig,
    /// Serve HTTPS with this certificate instead of HTTP.
    pub tls: Option<TlsConfig>,
}

/// Access to the management API (`admin` in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// Host names the API answers to besides the loopback ones: lower case, without
    /// port or trailing dot; IPv6 addresses in brackets (`[fd00::2]`), as in a `Host`
    /// header.
    pub hosts: Vec<String>,
    /// Whether peers other than this machine may use the API.
    pub remote: bool,
}

/// The certificate and key (PEM files) Carpool serves HTTPS with (`tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Where usage goes and how it is priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    pub database: PathBuf,
    /// sing-box ccm statistics file for all requests.
    pub usages_path: Option<PathBuf>,
    pub queue: usize,
    pub prices: Arc<PriceTable>,
    /// The config's `prices`, as written (the table above includes them).
    pub price_overrides: std::collections::BTreeMap<String, crate::ledger::prices::ModelPrices>,
}

/// One account: where its credentials come from and how to reach its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialConfig {
    pub tag: AccountTag,
    /// Whose API it speaks: which client protocols it answers.
    pub provider: Provider,
    pub source: Source,
    /// Without a trailing slash.
    pub base_url: String,
    /// Outbound proxy URL (http, https, socks5, socks5h).
    pub proxy: Option<String>,
    /// sing-box ccm statistics file for this account's requests.
    pub usages_path: Option<PathBuf>,
    /// Percent of each window kept for the owner (1–99); `None`: none kept.
    pub reserve_5h: Option<u32>,
    pub reserve_weekly: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Claude Code login (OAuth tokens in a credentials file), refreshed by Carpool.
    /// On a Mac with no explicit `credential_path`, Claude Code's Keychain item
    /// `keychain` first, the file `path` as fallback ([`claude_code_login`]).
    OAuthFile {
        path: PathBuf,
        token_url: String,
        keychain: Option<KeychainItem>,
    },
    /// A Claude login Carpool obtained itself, in its secret store (`login_ref`),
    /// refreshed like a file's.
    OAuthStored { login: SecretRef, token_url: String },
    /// A Codex login (`~/.codex/auth.json`, docs/protocol.md §7.1), refreshed by Carpool.
    CodexFile { path: PathBuf, token_url: String },
    /// A Codex login Carpool obtained itself (`carpool login codex`, the API's login), in
    /// its secret store (`login_ref`) as an `auth.json`-shaped document, refreshed like
    /// the file.
    CodexStored { login: SecretRef, token_url: String },
    /// An API key, sent as the provider wants it (Anthropic: `x-api-key`; OpenAI:
    /// `Authorization: Bearer`).
    ApiKey(crate::secret::Secret),
    /// An API key in Carpool's secret store (`api_key_ref`).
    ApiKeyStored(SecretRef),
}

/// Where an OAuth login goes (`oauth.claude`; docs/protocol.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEndpoints {
    pub authorize_url: String,
    pub token_url: String,
    pub profile_url: String,
}

impl LoginEndpoints {
    /// Anthropic's (docs/protocol.md §3).
    pub fn claude() -> LoginEndpoints {
        LoginEndpoints {
            authorize_url: DEFAULT_AUTHORIZE_URL.into(),
            token_url: DEFAULT_TOKEN_URL.into(),
            profile_url: DEFAULT_PROFILE_URL.into(),
        }
    }
}

/// Where a Codex login goes (`oauth.codex`; docs/protocol.md §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexLoginEndpoints {
    pub authorize_url: String,
    pub token_url: String,
}

impl CodexLoginEndpoints {
    /// OpenAI's (docs/protocol.md §7.3).
    pub fn codex() -> CodexLoginEndpoints {
        CodexLoginEndpoints {
            authorize_url: CODEX_AUTHORIZE_URL.into(),
            token_url: CODEX_TOKEN_URL.into(),
        }
    }
}

/// A group of accounts that users can be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub tag: PoolTag,
    /// The provider of all its accounts.
    pub provider: Provider,
    pub strategy: Strategy,
    /// Its accounts, in the order the pool lists them.
    pub members: Vec<AccountTag>,
    pub poll_interval: Duration,
    pub session_ttl: Duration,
}

/// In the status snapshot as in the config: `least_used`, `round_robin`, `random`,
/// `fallback`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// New conversations go to the account with the most weekly capacity left, weighed
    /// by plan (Max 20x > Max 5x > Pro) and how soon its week resets.
    LeastUsed,
    RoundRobin,
    Random,
    /// The first usable account in order; conversations are not pinned.
    Fallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: UserName,
    pub token_hash: TokenHash,
    /// Where its Claude and its OpenAI requests go (`credential`: one tag, or one per
    /// provider).
    pub targets: Targets,
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

/// Limits on client connections. They apply before authentication: an open port must
/// not let anyone exhaust memory or file descriptors with connections that never finish
/// a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Most client connections open at once; more wait in the listen backlog.
    /// [`crate::Server::bind`] lowers it to what the open-file limit allows.
    pub max: usize,
    /// Largest request head (request line + headers), in bytes: HTTP/1's read buffer,
    /// HTTP/2's header list size.
    pub max_header_bytes: usize,
    /// From accepting a connection, or from the first byte of a later request on it,
    /// until its request head is complete.
    pub header_timeout: Duration,
    /// How long a connection with no request in flight stays open after its last answer.
    pub keep_alive: Duration,
    /// Longest gap between two pieces of a request body.
    pub body_timeout: Duration,
}

/// hyper refuses a read buffer smaller than this (and a request head rarely fits in less).
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max: 1024,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
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
    /// Where anonymous requests for `provider` go when no users are configured: its first
    /// pool if there is one, else its first account; `None` when the config has no
    /// account of that provider.
    pub fn anonymous_target(&self, provider: Provider) -> Option<Target> {
        let pool = self.pools.iter().find(|p| p.provider == provider);
        let account = self.credentials.iter().find(|c| c.provider == provider);
        match (pool, account) {
            (Some(pool), _) => Some(Target::Pool(pool.tag.clone())),
            (None, Some(account)) => Some(Target::Account(account.tag.clone())),
            (None, None) => None,
        }
    }

    /// The sing-box usage files to keep: `usages_path` for every request, then each
    /// account's own, with its tag and provider (a Claude account's file has sing-box
    /// ccm's layout, an OpenAI account's ocm's; the file for every request has ccm's).
    pub fn usage_files(&self) -> Vec<(&Path, Option<(&AccountTag, Provider)>)> {
        let all = self.usage.usages_path.as_deref().map(|p| (p, None));
        let per_account = self
            .credentials
            .iter()
            .filter_map(|c| Some((c.usages_path.as_deref()?, Some((&c.tag, c.provider)))));
        all.into_iter().chain(per_account).collect()
    }

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
        let raw = parse_raw(text).map_err(|(field, problem)| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            problem,
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

        let (credentials, pools) =
            credentials_from_raw(&raw, base_dir).map_err(|(f, p)| invalid(&f, p))?;
        let users = users_from_raw(&raw, &credentials, &pools).map_err(|(f, p)| invalid(&f, p))?;
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
        let connections =
            connections_from_raw(&raw.connections).map_err(|(f, p)| invalid(&f, p))?;
        let ca_file = raw.ca_file.as_deref().map(|p| absolute(p, base_dir));
        let clear_secrets = clear_secrets(&raw);
        let admin = admin_from_raw(&raw.admin).map_err(|(f, p)| invalid(&f, p))?;
        let tls = match &raw.tls {
            None => None,
            Some(tls) => {
                for (field, path) in [("tls.certificate", &tls.certificate), ("tls.key", &tls.key)]
                {
                    if path.as_os_str().is_empty() {
                        return Err(invalid(field, "must not be empty".into()));
                    }
                }
                Some(TlsConfig {
                    certificate: absolute(&tls.certificate, base_dir),
                    key: absolute(&tls.key, base_dir),
                })
            }
        };
        let data_dir = match &raw.data_dir {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(invalid("data_dir", "must not be empty".into()));
            }
            Some(p) => absolute(p, base_dir),
            None => default_data_dir().ok_or_else(|| {
                invalid(
                    "data_dir",
                    "cannot find the OS data directory; set `data_dir`".into(),
                )
            })?,
        };
        let secret_store = match raw.secret_store.as_deref() {
            None => crate::secrets::StoreChoice::default(),
            Some(text) => {
                crate::secrets::StoreChoice::parse(text).map_err(|p| invalid("secret_store", p))?
            }
        };
        let claude_login = {
            let e = &raw.oauth.claude;
            let url = |field: &str, value: &Option<String>, default: &str| {
                check_url(value.as_deref().unwrap_or(default))
                    .map_err(|p| invalid(&format!("oauth.claude.{field}"), p))
            };
            LoginEndpoints {
                authorize_url: url("authorize_url", &e.authorize_url, DEFAULT_AUTHORIZE_URL)?,
                token_url: url("token_url", &e.token_url, DEFAULT_TOKEN_URL)?,
                profile_url: url("profile_url", &e.profile_url, DEFAULT_PROFILE_URL)?,
            }
        };
        let codex_login = {
            let e = &raw.oauth.codex;
            let url = |field: &str, value: &Option<String>, default: &str| {
                check_url(value.as_deref().unwrap_or(default))
                    .map_err(|p| invalid(&format!("oauth.codex.{field}"), p))
            };
            CodexLoginEndpoints {
                authorize_url: url("authorize_url", &e.authorize_url, CODEX_AUTHORIZE_URL)?,
                token_url: url("token_url", &e.token_url, CODEX_TOKEN_URL)?,
            }
        };
        for (alias, model) in &raw.aliases {
            let field = format!("aliases.{alias}");
            if alias.trim().is_empty() {
                return Err(invalid("aliases", "an alias must not be empty".into()));
            }
            if model.trim().is_empty() {
                return Err(invalid(&field, "must name a model".into()));
            }
            if raw.aliases.contains_key(model) {
                return Err(invalid(
                    &field,
                    format!("`{model}` is an alias itself; an alias names a model"),
                ));
            }
        }

        let aliases = raw.aliases.clone();
        let usage = usage_from_raw(raw, &data_dir, base_dir).map_err(|(f, p)| invalid(&f, p))?;

        Ok(Config {
            listen,
            credentials,
            pools,
            users,
            aliases,
            headers,
            max_body_bytes,
            timeouts,
            connections,
            usage,
            data_dir,
            ca_file,
            secret_store,
            claude_login,
            codex_login,
            clear_secrets,
            admin,
            tls,
        })
    }

    /// A warning when the config file at `path` holds secrets in clear and users other
    /// than its owner may read it, with the command that fixes it; `None` otherwise.
    ///
    /// A warning, not a refusal: the readers are accounts on the same machine, which the
    /// owner controls, and a config deployed group-readable on purpose (a service group)
    /// must still start. The generated config is 0600 and stores only token hashes.
    pub fn exposure_warning(&self, path: &Path) -> Option<String> {
        let mode = crate::fsutil::file_mode(path)?;
        if self.clear_secrets.is_empty() || mode & 0o077 == 0 {
            return None;
        }
        Some(format!(
            "{} holds secrets in clear ({}) and other users of this machine can read it (mode {mode:o}); \
             run `chmod 600 {}`, or store user tokens as `token_hash` (what `carpool token` prints)",
            path.display(),
            self.clear_secrets.join(", "),
            path.display()
        ))
    }
}

/// The fields of `raw` that hold a secret in clear.
fn clear_secrets(raw: &RawConfig) -> Vec<String> {
    let mut found = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        if u.token.is_some() {
            found.push(format!("users[{i}].token"));
        }
    }
    for (i, c) in raw.credentials.iter().enumerate() {
        if c.api_key.is_some() {
            found.push(format!("credentials[{i}].api_key"));
        }
        let proxy_password = c
            .proxy
            .as_deref()
            .and_then(|p| reqwest::Url::parse(p).ok())
            .is_some_and(|u| u.password().is_some());
        if proxy_password {
            found.push(format!("credentials[{i}].proxy"));
        }
    }
    for name in raw.headers.keys() {
        if is_credential_like_header(name) {
            found.push(format!("headers.{}", name.to_ascii_lowercase()));
        }
    }
    found
}

/// A header whose value is likely a secret (`x-api-key`, `cookie`, `…-token`): warned
/// about in a readable config, masked where settings are shown.
pub fn is_credential_like_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "authorization",
        "cookie",
        "password",
    ]
    .iter()
    .any(|p| name.contains(p))
}

/// What `carpool token` needs from a config: the tags a user can be bound to and the
/// user names already taken. Only the accounts and pools are validated, so a config that
/// is not valid yet for want of a user (a wildcard `listen` without users) still answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings {
    /// Account tags, in config order.
    pub accounts: Vec<String>,
    /// Pool tags, in config order.
    pub pools: Vec<String>,
    /// Names of the configured users.
    pub users: Vec<String>,
    /// The provider of each account and pool, by tag.
    pub providers: std::collections::HashMap<String, Provider>,
}

impl Bindings {
    pub fn load(path: &Path) -> Result<Bindings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Bindings::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Bindings, ConfigError> {
        let invalid = |(field, problem)| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            problem,
        };
        let raw = parse_raw(text).map_err(invalid)?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let (accounts, pools) = credentials_from_raw(&raw, base_dir).map_err(invalid)?;
        let providers = accounts
            .iter()
            .map(|a| (a.tag.to_string(), a.provider))
            .chain(pools.iter().map(|p| (p.tag.to_string(), p.provider)))
            .collect();
        Ok(Bindings {
            accounts: accounts.into_iter().map(|a| a.tag.to_string()).collect(),
            pools: pools.into_iter().map(|p| p.tag.to_string()).collect(),
            users: raw.users.into_iter().map(|u| u.name).collect(),
            providers,
        })
    }
}

/// The field name used when a problem is not inside any field.
const TOP_LEVEL: &str = "(top level)";

/// The text as [`RawConfig`], or the field (a path such as `users[0].name`, else
/// [`TOP_LEVEL`]) and what is wrong with it. Syntax errors say where they are (line and
/// column) and are blamed on the innermost field that contains them.
fn parse_raw(text: &str) -> Result<RawConfig, FieldProblem> {
    let top = || TOP_LEVEL.to_owned();
    // Editors on Windows may start the file with a byte-order mark.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let stripped = strip_comments(text).map_err(|p| (top(), p))?;
    // A struct would also be read from an array, field by field in order: say what the
    // file must be instead.
    let first = stripped.trim_start();
    match first.chars().next() {
        None => {
            return Err((
                top(),
                "the file is empty; write `{}` to use every default".into(),
            ));
        }
        Some('{') => {}
        Some(c) => {
            let (line, column) = line_column(&stripped, stripped.len() - first.len());
            let found = match c {
                '[' => "an array",
                '"' => "a string",
                '-' | '0'..='9' => "a number",
                't' | 'f' => "true or false",
                'n' => "null",
                _ => "something else",
            };
            return Err((
                top(),
                format!(
                    "the config must be a JSON object `{{ … }}`, not {found} (line {line} column {column})"
                ),
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_str(&stripped);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = nameable(e.path());
        (field, explain(e.into_inner()))
    })?;
    de.end().map_err(|e| {
        (
            top(),
            format!(
                "unexpected text after the closing `}}` (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    Ok(raw)
}

/// The longest start of `path` that names fields: serde_path_to_error shows `?` for a
/// place it cannot name (between the entries of an object, a key that is not a string).
fn nameable(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                // `prices."".input` rather than `prices..input`.
                out.push_str(if key.is_empty() { "\"\"" } else { key });
            }
            Segment::Unknown => break,
        }
    }
    if out.is_empty() {
        TOP_LEVEL.to_owned()
    } else {
        out
    }
}

/// serde_json's message, with its most puzzling syntax errors said plainly.
fn explain(error: serde_json::Error) -> String {
    use serde_json::error::Category;
    let message = error.to_string();
    if !matches!(error.classify(), Category::Syntax | Category::Eof) {
        return message;
    }
    let at = format!("(line {} column {})", error.line(), error.column());
    if message.starts_with("trailing comma") {
        format!("a comma after the last entry is not allowed in JSON; remove it {at}")
    } else if message.starts_with("EOF while parsing") {
        format!("the file ends before this is closed: a `}}` or `]` is missing {at}")
    } else if message.starts_with("key must be a string") {
        format!("a field name must be in double quotes {at}")
    } else {
        message
    }
}

/// The text with its `//`, `#` and `/* */` comments replaced by spaces, byte for byte
/// and keeping line breaks, so that serde_json's line and column numbers are the file's.
///
/// Written here rather than taken from `json_comments`, which Carpool used before: that
/// crate blanks the line breaks inside `/* */` comments (every later error named the
/// wrong line) and reports an unclosed string or comment only as "invalid data".
fn strip_comments(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let at = |offset: usize| {
        let (line, column) = line_column(text, offset);
        format!("line {line} column {column}")
    };
    let blank = |out: &mut Vec<u8>, part: &[u8]| {
        out.extend(part.iter().map(|&b| if b == b'\n' { b'\n' } else { b' ' }));
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'"', _) => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => {
                            return Err(format!(
                                "the string that starts at {} is never closed (a `\"` is missing)",
                                at(start)
                            ));
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                let end = i.min(bytes.len());
                out.extend_from_slice(&bytes[start..end]);
            }
            (b'/', Some(b'/')) | (b'#', _) => {
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |n| i + n);
                blank(&mut out, &bytes[i..end]);
                i = end;
            }
            (b'/', Some(b'*')) => {
                let Some(n) = bytes[i + 2..].windows(2).position(|w| w == b"*/") else {
                    return Err(format!(
                        "the `/*` comment that starts at {} is never closed (a `*/` is missing)",
                        at(i)
                    ));
                };
                let end = i + 2 + n + 2;
                blank(&mut out, &bytes[i..end]);
                i = end;
            }
            (b'/', _) => {
                return Err(format!(
                    "a `/` that starts no comment (`//` or `/* */`) at {}",
                    at(i)
                ));
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only whole characters were blanked (comments start and end at ASCII bytes).
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
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

/// Accounts and pools from `credentials` (or the single-account shorthand).
fn credentials_from_raw(
    raw: &RawConfig,
    base_dir: &Path,
) -> Result<(Vec<CredentialConfig>, Vec<PoolConfig>), FieldProblem> {
    if raw.credential_path.is_some() && !raw.credentials.is_empty() {
        return Err((
            "credential_path".into(),
            "cannot be combined with `credentials`; set `credential_path` inside a credentials entry instead".into(),
        ));
    }
    if raw.credentials.is_empty() {
        let explicit = raw
            .credential_path
            .as_deref()
            .map(|p| absolute(p, base_dir));
        let (path, keychain) = claude_code_login(std::env::consts::OS, explicit, &env_var)
            .map_err(|p| ("credential_path".into(), p))?;
        let account = CredentialConfig {
            tag: AccountTag::new("default"),
            provider: Provider::Anthropic,
            source: Source::OAuthFile {
                path,
                token_url: DEFAULT_TOKEN_URL.into(),
                keychain,
            },
            base_url: DEFAULT_BASE_URL.into(),
            proxy: None,
            usages_path: None,
            reserve_5h: None,
            reserve_weekly: None,
        };
        return Ok((vec![account], Vec::new()));
    }

    // Accounts first (pools refer to them by tag), then pools.
    let mut accounts: Vec<CredentialConfig> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in raw.credentials.iter().enumerate() {
        let at = |f: &str| format!("credentials[{i}].{f}");
        if c.tag.trim().is_empty() {
            return Err((at("tag"), "must not be empty".into()));
        }
        if seen.contains(&c.tag.as_str()) {
            return Err((at("tag"), format!("duplicate tag `{}`", c.tag)));
        }
        seen.push(&c.tag);
        if c.detour.is_some() {
            return Err((
                at("detour"),
                "sing-box's `detour` names an outbound; Carpool takes a proxy URL in `proxy` instead (http://, https://, socks5://)".into(),
            ));
        }
        let kind = c.kind.as_deref().unwrap_or("default");
        // The first of `names` that is set: it is refused, saying `why`.
        let refuse = |names: &[&str], why: &str| -> Result<(), FieldProblem> {
            match c.set_fields().into_iter().find(|f| names.contains(f)) {
                Some(name) => Err((at(name), format!("not allowed {why}"))),
                None => Ok(()),
            }
        };
        let source = match kind {
            "default" => {
                refuse(
                    RawCredential::POOL_FIELDS,
                    "on an account (type `default`); it belongs to a `balancer` or `fallback` entry",
                )?;
                refuse(
                    &["api_key", "api_key_ref"],
                    "on a Claude Code login; use `\"type\": \"api_key\"` for an API key",
                )?;
                let token_url = check_url(c.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL))
                    .map_err(|p| (at("token_url"), p))?;
                match (&c.login_ref, &c.credential_path) {
                    (Some(_), Some(_)) => {
                        return Err((
                            at("login_ref"),
                            "set either `login_ref` (a login Carpool stored) or `credential_path` (a Claude Code credentials file), not both".into(),
                        ));
                    }
                    (Some(login), None) => Source::OAuthStored {
                        login: SecretRef::parse(login).map_err(|p| (at("login_ref"), p))?,
                        token_url,
                    },
                    (None, path) => {
                        let explicit = path.as_deref().map(|p| absolute(p, base_dir));
                        let (path, keychain) =
                            claude_code_login(std::env::consts::OS, explicit, &env_var)
                                .map_err(|p| (at("credential_path"), p))?;
                        Source::OAuthFile {
                            path,
                            token_url,
                            keychain,
                        }
                    }
                }
            }
            "api_key" | "openai_api_key" => {
                refuse(
                    RawCredential::POOL_FIELDS,
                    &format!("on an account (type `{kind}`)"),
                )?;
                refuse(&["credential_path", "login_ref"], "on an API-key account")?;
                refuse(&["token_url"], "on an API-key account (nothing to refresh)")?;
                refuse(
                    &["reserve_5h", "reserve_weekly"],
                    "on an API-key account (it has no subscription windows)",
                )?;
                match (&c.api_key, &c.api_key_ref) {
                    (Some(_), Some(_)) => {
                        return Err((
                            at("api_key_ref"),
                            "set either `api_key` or `api_key_ref`, not both".into(),
                        ));
                    }
                    (None, Some(reference)) => Source::ApiKeyStored(
                        SecretRef::parse(reference).map_err(|p| (at("api_key_ref"), p))?,
                    ),
                    (key, None) => {
                        let key = key.as_deref().map(str::trim).unwrap_or_default();
                        if key.is_empty() {
                            return Err((
                                at("api_key"),
                                format!(
                                    "missing: an `{kind}` account needs its key (`api_key`, or `api_key_ref` to one Carpool stored)"
                                ),
                            ));
                        }
                        Source::ApiKey(crate::secret::Secret::new(key.to_owned()))
                    }
                }
            }
            // `ocm`: sing-box's name for its Codex service, accepted as an account type
            // so a sing-box ocm block's `credential_path` carries over.
            "codex" | "ocm" => {
                refuse(
                    RawCredential::POOL_FIELDS,
                    &format!("on an account (type `{kind}`)"),
                )?;
                refuse(
                    &["api_key", "api_key_ref"],
                    "on a Codex login; use `\"type\": \"openai_api_key\"` for an OpenAI API key",
                )?;
                let token_url = check_url(c.token_url.as_deref().unwrap_or(CODEX_TOKEN_URL))
                    .map_err(|p| (at("token_url"), p))?;
                match (&c.login_ref, &c.credential_path) {
                    (Some(_), Some(_)) => {
                        return Err((
                            at("login_ref"),
                            "set either `login_ref` (a login Carpool stored) or `credential_path` (a Codex `auth.json`), not both".into(),
                        ));
                    }
                    (Some(login), None) => Source::CodexStored {
                        login: SecretRef::parse(login).map_err(|p| (at("login_ref"), p))?,
                        token_url,
                    },
                    (None, path) => {
                        let path = match path {
                            Some(p) => absolute(p, base_dir),
                            None => codex_login_path(&env_var, dirs::home_dir())
                                .map_err(|p| (at("credential_path"), p))?,
                        };
                        Source::CodexFile { path, token_url }
                    }
                }
            }
            "balancer" | "fallback" => continue,
            other => {
                return Err((
                    at("type"),
                    format!(
                        "unknown credential type `{other}`; use `default` (a Claude login), `api_key`, `codex`, `openai_api_key`, `balancer` or `fallback`"
                    ),
                ));
            }
        };
        let (provider, default_base) = match (&source, kind) {
            (Source::CodexFile { .. } | Source::CodexStored { .. }, _) => {
                (Provider::OpenAi, CODEX_BASE_URL)
            }
            (_, "openai_api_key") => (Provider::OpenAi, OPENAI_BASE_URL),
            _ => (Provider::Anthropic, DEFAULT_BASE_URL),
        };
        let base_url = check_url(c.base_url.as_deref().unwrap_or(default_base))
            .map_err(|p| (at("base_url"), p))?;
        let proxy = c
            .proxy
            .as_deref()
            .map(check_proxy)
            .transpose()
            .map_err(|p| (at("proxy"), p))?;
        for (field, reserve) in [
            ("reserve_5h", c.reserve_5h),
            ("reserve_weekly", c.reserve_weekly),
        ] {
            if reserve.is_some_and(|r| !(1..=99).contains(&r)) {
                return Err((
                    at(field),
                    "must be between 1 and 99 (percent kept for the owner)".into(),
                ));
            }
        }
        accounts.push(CredentialConfig {
            tag: AccountTag::new(&c.tag),
            provider,
            source,
            base_url,
            proxy,
            usages_path: c.usages_path.as_deref().map(|p| absolute(p, base_dir)),
            reserve_5h: c.reserve_5h,
            reserve_weekly: c.reserve_weekly,
        });
    }

    let mut pools = Vec::new();
    for (i, c) in raw.credentials.iter().enumerate() {
        let at = |f: &str| format!("credentials[{i}].{f}");
        let kind = c.kind.as_deref().unwrap_or("default");
        if kind != "balancer" && kind != "fallback" {
            continue;
        }
        if let Some(name) = c
            .set_fields()
            .into_iter()
            .find(|f| RawCredential::ACCOUNT_FIELDS.contains(f))
        {
            return Err((
                at(name),
                format!("not allowed on a pool (type `{kind}`); set it on its accounts"),
            ));
        }
        let strategy = match (kind, c.strategy.as_deref()) {
            ("fallback", None) => Strategy::Fallback,
            ("fallback", Some(_)) => {
                return Err((
                    at("strategy"),
                    "not allowed on a `fallback` pool: it always goes in order".into(),
                ));
            }
            (_, None | Some("" | "least_used" | "least-used")) => Strategy::LeastUsed,
            (_, Some("round_robin" | "round-robin")) => Strategy::RoundRobin,
            (_, Some("random")) => Strategy::Random,
            (_, Some("fallback")) => Strategy::Fallback,
            (_, Some(other)) => {
                return Err((
                    at("strategy"),
                    format!(
                        "unknown strategy `{other}`; use `least_used`, `round_robin` or `random`"
                    ),
                ));
            }
        };
        let tags = match &c.credentials {
            Some(tags) if !tags.is_empty() => tags,
            _ => {
                return Err((
                    at("credentials"),
                    "missing: a pool needs the tags of its accounts".into(),
                ));
            }
        };
        let mut members = Vec::new();
        for (j, tag) in tags.iter().enumerate() {
            let field = format!("credentials[{i}].credentials[{j}]");
            if *tag == c.tag {
                return Err((field, format!("the pool `{tag}` cannot contain itself")));
            }
            let member = match accounts.iter().find(|a| a.tag == **tag) {
                Some(account) => account.tag.clone(),
                None if raw.credentials.iter().any(|o| &o.tag == tag) => {
                    return Err((
                        field,
                        format!("`{tag}` is a pool; pools contain accounts, not other pools"),
                    ));
                }
                None => {
                    let known: Vec<&str> = accounts.iter().map(|a| a.tag.as_str()).collect();
                    return Err((
                        field,
                        format!(
                            "unknown account tag `{tag}` (accounts: {})",
                            known.join(", ")
                        ),
                    ));
                }
            };
            if members.contains(&member) {
                return Err((field, format!("`{tag}` is listed twice")));
            }
            let provider_of =
                |tag: &AccountTag| accounts.iter().find(|a| a.tag == *tag).map(|a| a.provider);
            if let Some(first) = members.first()
                && provider_of(first) != provider_of(&member)
            {
                return Err((
                    field,
                    format!(
                        "`{tag}` serves {} and `{first}` serves {}; a pool holds accounts of one provider (make one pool per provider)",
                        provider_of(&member).map_or("", Provider::label),
                        provider_of(first).map_or("", Provider::label),
                    ),
                ));
            }
            members.push(member);
        }
        let duration = |field: &str,
                        value: &Option<String>,
                        default: Duration|
         -> Result<Duration, FieldProblem> {
            match value {
                None => Ok(default),
                Some(text) => match humantime::parse_duration(text) {
                    Ok(d) if !d.is_zero() => Ok(d),
                    Ok(_) => Err((at(field), "must be longer than 0".into())),
                    Err(e) => Err((
                        at(field),
                        format!("`{text}` is not a duration like \"60s\" or \"5m\": {e}"),
                    )),
                },
            }
        };
        let provider = accounts
            .iter()
            .find(|a| a.tag == members[0])
            .map_or(Provider::Anthropic, |a| a.provider);
        pools.push(PoolConfig {
            tag: PoolTag::new(&c.tag),
            provider,
            strategy,
            members,
            poll_interval: duration("poll_interval", &c.poll_interval, Duration::from_secs(60))?,
            session_ttl: duration("session_ttl", &c.session_ttl, Duration::from_secs(3600))?,
        });
    }
    Ok((accounts, pools))
}

/// A proxy URL Carpool can use: http, https, socks5 or socks5h, with a host.
fn check_proxy(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https" | "socks5" | "socks5h") {
        return Err(format!(
            "unsupported proxy scheme `{}`; use http://, https://, socks5:// or socks5h://",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the proxy URL needs a host".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A user's `credential` (a tag, or a list of tags of different providers) as targets;
/// without one, each provider's only account, when the config has exactly one account
/// (and no pool) of that provider. The error's field is relative to the user.
fn user_targets(
    written: Option<&raw::Tags>,
    credentials: &[CredentialConfig],
    pools: &[PoolConfig],
) -> Result<Targets, FieldProblem> {
    let mut targets = Targets::default();
    let Some(written) = written else {
        for provider in Provider::ALL {
            let accounts: Vec<_> = credentials
                .iter()
                .filter(|c| c.provider == provider)
                .collect();
            let has_pool = pools.iter().any(|p| p.provider == provider);
            match (accounts.as_slice(), has_pool) {
                ([], false) => {}
                ([only], false) => {
                    *targets.slot(provider) = Some(Target::Account(only.tag.clone()))
                }
                _ => {
                    return Err((
                        "credential".into(),
                        format!(
                            "missing: with several {} credentials every user must name one",
                            provider.label()
                        ),
                    ));
                }
            }
        }
        return Ok(targets);
    };
    let tags = written.as_slice();
    if tags.is_empty() {
        return Err(("credential".into(), "must name at least one tag".into()));
    }
    for (j, tag) in tags.iter().enumerate() {
        let field = match written {
            raw::Tags::One(_) => "credential".to_owned(),
            raw::Tags::Many(_) => format!("credential[{j}]"),
        };
        let (target, provider) = if let Some(c) = credentials.iter().find(|c| c.tag == **tag) {
            (Target::Account(c.tag.clone()), c.provider)
        } else if let Some(p) = pools.iter().find(|p| p.tag == **tag) {
            (Target::Pool(p.tag.clone()), p.provider)
        } else {
            let known: Vec<_> = credentials
                .iter()
                .map(|c| c.tag.as_str())
                .chain(pools.iter().map(|p| p.tag.as_str()))
                .collect();
            return Err((
                field,
                format!(
                    "unknown credential tag `{tag}` (known: {})",
                    known.join(", ")
                ),
            ));
        };
        let slot = targets.slot(provider);
        if let Some(before) = slot {
            return Err((
                field,
                format!(
                    "`{tag}` and `{before}` both serve {}; name one per provider",
                    provider.label()
                ),
            ));
        }
        *slot = Some(target);
    }
    Ok(targets)
}

fn users_from_raw(
    raw: &RawConfig,
    credentials: &[CredentialConfig],
    pools: &[PoolConfig],
) -> Result<Vec<UserConfig>, FieldProblem> {
    let mut out: Vec<UserConfig> = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let at = |f: &str| format!("users[{i}].{f}");
        if u.name.trim().is_empty() {
            return Err((at("name"), "must not be empty".into()));
        }
        if out.iter().any(|o| o.name == *u.name) {
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
                if token.starts_with(crate::secret::ADMIN_PREFIX) {
                    return Err((
                        at("token"),
                        format!(
                            "starts with `{}`, the mark of the management API's admin secret, which is never a relay token; \
                             give this user a token of its own (`carpool token` makes one)",
                            crate::secret::ADMIN_PREFIX
                        ),
                    ));
                }
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
        let targets = user_targets(u.credential.as_ref(), credentials, pools)
            .map_err(|(field, problem)| (at(&field), problem))?;
        out.push(UserConfig {
            name: UserName::new(&u.name),
            token_hash,
            targets,
        });
    }
    Ok(out)
}

/// A duration field (`"30s"`, `"2m"`), `default` when absent; zero is refused.
fn duration_field(
    field: &str,
    v: &Option<String>,
    default: Duration,
) -> Result<Duration, FieldProblem> {
    match v {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => Err((field.to_owned(), "must be greater than 0".into())),
            Ok(d) => Ok(d),
            Err(_) => Err((
                field.to_owned(),
                format!("`{s}` is not a duration; write it like \"30s\", \"2m\" or \"1h\""),
            )),
        },
    }
}

/// `admin`: the extra host names, in the form a `Host` header names them.
fn admin_from_raw(raw: &RawAdmin) -> Result<AdminConfig, FieldProblem> {
    let mut hosts: Vec<String> = Vec::new();
    for (i, name) in raw.hosts.iter().enumerate() {
        let field = format!("admin.hosts[{i}]");
        let host = admin_host(name).map_err(|p| (field.clone(), p))?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(AdminConfig {
        hosts,
        remote: raw.remote,
    })
}

/// A host name or IP address as a `Host` header names it without its port: lower case,
/// no trailing dot, IPv6 in brackets.
fn admin_host(name: &str) -> Result<String, String> {
    let host = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(std::net::IpAddr::V6(ip)) = bare.parse::<IpAddr>() {
        return Ok(format!("[{ip}]"));
    }
    let valid = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !valid {
        return Err(format!(
            "`{name}` is not a host name: write the name alone, as in the browser's address bar \
             without `http://`, port or path (e.g. \"carpool.example.lan\")"
        ));
    }
    Ok(host)
}

fn timeouts_from_raw(raw: &RawTimeouts) -> Result<Timeouts, FieldProblem> {
    let d = Timeouts::default();
    let parse = |name: &str, v: &Option<String>, default: Duration| {
        duration_field(&format!("timeouts.{name}"), v, default)
    };
    Ok(Timeouts {
        connect: parse("connect", &raw.connect, d.connect)?,
        first_byte: parse("first_byte", &raw.first_byte, d.first_byte)?,
        idle: parse("idle", &raw.idle, d.idle)?,
        request: parse("request", &raw.request, d.request)?,
        shutdown_grace: parse("shutdown_grace", &raw.shutdown_grace, d.shutdown_grace)?,
    })
}

fn connections_from_raw(raw: &RawConnections) -> Result<Connections, FieldProblem> {
    let d = Connections::default();
    let parse = |name: &str, v: &Option<String>, default: Duration| {
        duration_field(&format!("connections.{name}"), v, default)
    };
    let max = match raw.max {
        Some(0) => return Err(("connections.max".into(), "must be greater than 0".into())),
        Some(n) => n,
        None => d.max,
    };
    let max_header_bytes = match raw.max_header_bytes {
        Some(n) if n < MIN_HEADER_BYTES => {
            return Err((
                "connections.max_header_bytes".into(),
                format!("must be at least {MIN_HEADER_BYTES}"),
            ));
        }
        Some(n) => n,
        None => d.max_header_bytes,
    };
    Ok(Connections {
        max,
        max_header_bytes,
        header_timeout: parse("header_timeout", &raw.header_timeout, d.header_timeout)?,
        keep_alive: parse("keep_alive", &raw.keep_alive, d.keep_alive)?,
        body_timeout: parse("body_timeout", &raw.body_timeout, d.body_timeout)?,
    })
}

fn usage_from_raw(
    raw: RawConfig,
    data_dir: &Path,
    base_dir: &Path,
) -> Result<UsageConfig, FieldProblem> {
    let database = match &raw.database {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(("database".into(), "must not be empty".into()));
        }
        Some(p) => absolute(p, base_dir),
        None => data_dir.join("usage.db"),
    };
    let queue = match raw.usage_queue {
        Some(0) => return Err(("usage_queue".into(), "must be greater than 0".into())),
        Some(n) => n,
        None => 10_000,
    };
    let price_overrides = raw.prices.clone();
    let prices = PriceTable::builtin()
        .with_overrides(raw.prices)
        .map_err(|p| ("prices".to_string(), p))?;
    Ok(UsageConfig {
        database,
        usages_path: raw.usages_path.as_deref().map(|p| absolute(p, base_dir)),
        queue,
        prices: Arc::new(prices),
        price_overrides,
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
    default_credential_path_in(&env_var)
}

fn default_credential_path_in(var: &dyn Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    if let Some(dir) = var("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join(".credentials.json"));
    }
    dirs::home_dir()
        .map(|h| h.join(".claude").join(".credentials.json"))
        .ok_or_else(|| "cannot find the home directory; set `credential_path`".into())
}

fn env_var(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Where a Claude Code login (an OAuth account without `login_ref`) is read from, as
/// sing-box does (docs/protocol.md §1.3): the credentials file `credential_path` when it
/// is given; else, on macOS (`os` is `std::env::consts::OS`), Claude Code's Keychain item
/// first and the default file ([`default_credential_path`]) as fallback; else the default
/// file. `var` reads the environment (`CLAUDE_CONFIG_DIR`, `USER`), so the choice is a
/// function of its arguments, tested on every OS. Without a user name (`$USER`,
/// `$LOGNAME`) there is no item to look up, and only the file is read.
pub fn claude_code_login(
    os: &str,
    credential_path: Option<PathBuf>,
    var: &dyn Fn(&str) -> Option<OsString>,
) -> Result<(PathBuf, Option<KeychainItem>), String> {
    if let Some(path) = credential_path {
        return Ok((path, None));
    }
    let path = default_credential_path_in(var)?;
    let keychain = match os {
        "macos" => KeychainItem::from_env(var),
        _ => None,
    };
    Ok((path, keychain))
}

/// Where Codex keeps its login (docs/protocol.md §7.1): `$CODEX_HOME/auth.json`, else
/// `~/.codex/auth.json`. `var` reads the environment.
/// `home` is the home directory.
pub fn codex_login_path(
    var: &dyn Fn(&str) -> Option<OsString>,
    home: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(dir) = var("CODEX_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("auth.json"));
    }
    home.map(|h| h.join(".codex").join("auth.json"))
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
mod proptests;
#[cfg(test)]
mod tests;
