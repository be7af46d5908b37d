//! The configuration file exactly as the user wrote it.
//!
//! Every field is documented here and in README.md#configuration. Unknown fields are
//! rejected, so a typo fails at start instead of being silently ignored. Validation and
//! defaults that depend on the environment happen in [`super::Config::from_raw`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub struct RawConfig {
    /// IP address to listen on. `127.0.0.1` (default) serves this machine only;
    /// `0.0.0.0` accepts other machines.
    #[serde(default)]
    pub listen: Option<String>,
    /// TCP port (default 7676; 0 picks a free one).
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// Single-account shorthand: path of a Claude Code credentials file. Cannot be
    /// combined with `credentials`. Unset: Claude Code's login on this machine (on macOS
    /// its Keychain item first: `super::claude_code_login`).
    #[serde(default)]
    pub credential_path: Option<PathBuf>,
    /// Accounts, in the shape of sing-box ccm's `credentials`. Empty: one `default`
    /// account from Claude Code's own login on this machine.
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
    /// Who may use Carpool. Empty is allowed only on a loopback listener.
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// Extra headers sent upstream; each replaces a same-named client header.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValues>,
    /// Largest request body accepted, in bytes (default 64 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Limits on client connections, which apply before any token is checked.
    #[serde(default)]
    pub connections: RawConnections,
    /// PEM file of extra CA certificates trusted for upstream HTTPS (a self-hosted
    /// gateway, a TLS-inspecting proxy), besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Directory of Carpool's own data: the usage database (unless `database` says
    /// otherwise), the admin secret's hash, and secrets when the OS has no keyring.
    /// Default `$CARPOOL_DATA_DIR`, else `<OS data dir>/carpool`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// SQLite file holding the usage history (default `<data_dir>/usage.db`).
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// A sing-box ccm `usages_path` statistics file covering every request, rewritten at
    /// most once a minute and at shutdown.
    #[serde(default)]
    pub usages_path: Option<PathBuf>,
    /// Usage records that may wait for the disk before new ones are dropped (default 10000).
    #[serde(default)]
    pub usage_queue: Option<usize>,
    /// Model names clients may use for others, for `/v1/chat/completions` and
    /// `/v1/responses` (`{"fast": "claude-haiku-4-5", "smart": "gpt-5.1-codex"}`): the
    /// request goes upstream with the model the alias names, to that model's provider.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Model prices (USD per million tokens) replacing or adding to the built-in table.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::ledger::prices::ModelPrices>,
    /// Who may reach the management API (`/api/v1/…`) and the dashboard.
    #[serde(default)]
    pub admin: RawAdmin,
    /// Serve HTTPS (relay and API alike) with this certificate and key instead of HTTP.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Where secrets Carpool obtains itself (pasted API keys, logins made with
    /// `carpool login claude` or the API) are kept: `auto` (default: the OS keyring when
    /// it works, else 0600 files in `<data_dir>/secrets/`), `keyring` or `file`. Entries
    /// refer to them by `api_key_ref` / `login_ref`; the values never go into this file.
    #[serde(default)]
    pub secret_store: Option<String>,
    /// OAuth endpoints of logins that add accounts (`carpool login claude|codex`, the
    /// API's login): `claude` and `codex`. The defaults are Anthropic's and OpenAI's; for
    /// tests and compatible providers.
    #[serde(default)]
    pub oauth: RawOAuth,
}

/// Access to the management API. Whatever is set here, every call needs the admin secret
/// (or a session signed in with it).
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"hosts\": [\"carpool.example.lan\"], \"remote\": false}"
)]
pub struct RawAdmin {
    /// Host names (without port) the API answers to besides `localhost`, `127.0.0.1` and
    /// `[::1]`: the names in the browser's address bar. Any other `Host` gets `421`, which
    /// defeats DNS rebinding.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `true` lets other machines use the API (default: this machine only). Serve it over
    /// TLS (`tls`) then; over plain HTTP Carpool warns at start.
    #[serde(default)]
    pub remote: bool,
}

/// The certificate Carpool serves HTTPS with. Both files are PEM; they are read again when
/// they change (checked at most every few seconds), so a renewed certificate needs no
/// restart.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"certificate\": \"/path/cert.pem\", \"key\": \"/path/key.pem\"}"
)]
pub struct RawTls {
    /// The certificate chain: the server's certificate first, then any intermediates.
    pub certificate: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `oauth`: endpoints per provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    #[serde(default)]
    pub claude: RawOAuthEndpoints,
    #[serde(default)]
    pub codex: RawCodexOAuth,
}

/// `oauth.codex`: where a Codex login goes (docs/protocol.md §7.3). Its redirect is
/// always `http://localhost:1455/auth/callback`, the one OpenAI's client accepts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCodexOAuth {
    /// The page the person opens to log in (default
    /// `https://auth.openai.com/oauth/authorize`).
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// Where the code is exchanged for tokens (default
    /// `https://auth.openai.com/oauth/token`); an account added by a login refreshes there
    /// too.
    #[serde(default)]
    pub token_url: Option<String>,
}

/// `oauth.claude`: where a Claude login goes (docs/protocol.md §3).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthEndpoints {
    /// The page the person opens to log in (default `https://claude.ai/oauth/authorize`).
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// Where the code is exchanged for tokens (default
    /// `https://platform.claude.com/v1/oauth/token`); an account added by a login refreshes
    /// there too.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Where the account's email and plan are read (default
    /// `https://api.anthropic.com/api/oauth/profile`).
    #[serde(default)]
    pub profile_url: Option<String>,
}

/// A header value, or several (sent as repeated headers), as sing-box accepts.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a header value: a string or a list of strings")]
pub enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

/// One entry of `credentials`, in the shape of sing-box ccm's: an account (`default`:
/// a Claude Code login; `api_key`: an Anthropic API key) or a pool of accounts
/// (`balancer`, `fallback`). Which fields apply depends on `type`; the others are errors.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an account or a pool: an object such as {\"tag\": \"default\"}"
)]
pub struct RawCredential {
    /// Name users and pools refer to.
    pub tag: String,
    /// `default` (omitted: a Claude login), `api_key` (an Anthropic key), `codex` (a Codex
    /// login, `~/.codex/auth.json`; sing-box's `ocm` is accepted too), `openai_api_key`,
    /// `balancer` or `fallback`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `default`: Claude Code credentials file. Default: `$CLAUDE_CONFIG_DIR/.credentials.json`
    /// or `~/.claude/.credentials.json`, after Claude Code's Keychain item on macOS
    /// (`super::claude_code_login`).
    #[serde(default)]
    pub credential_path: Option<PathBuf>,
    /// `default`, `codex`: a login Carpool obtained itself (`carpool login claude`,
    /// `carpool login codex`, the API's login), kept in its secret store:
    /// `keyring:carpool/<id>` or `file:<id>` (see `secret_store`). Instead of
    /// `credential_path`.
    #[serde(default)]
    pub login_ref: Option<String>,
    /// `api_key`: the key, sent as `x-api-key`. Prefer `api_key_ref`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// `api_key`: the key kept in Carpool's secret store (`keyring:carpool/<id>` or
    /// `file:<id>`), as `carpool account add --api-key-stdin` and the API write it.
    #[serde(default)]
    pub api_key_ref: Option<String>,
    /// Accounts: API base URL (default `https://api.anthropic.com`), for compatible
    /// upstreams and tests.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `default`: OAuth token endpoint used to refresh (default
    /// `https://platform.claude.com/v1/oauth/token`).
    #[serde(default)]
    pub token_url: Option<String>,
    /// Accounts: a sing-box ccm `usages_path` statistics file for this account's requests.
    #[serde(default)]
    pub usages_path: Option<PathBuf>,
    /// Accounts: outbound proxy for everything this account sends:
    /// `http://`, `https://`, `socks5://` or `socks5h://`, with `user:password@` if needed.
    #[serde(default)]
    pub proxy: Option<String>,
    /// sing-box's outbound tag; Carpool takes a `proxy` URL instead (rejected with a hint).
    #[serde(default)]
    pub detour: Option<serde_json::Value>,
    /// `default`: percent of the 5-hour window kept for the owner (1–99).
    #[serde(default)]
    pub reserve_5h: Option<u32>,
    /// `default`: percent of the weekly window kept for the owner (1–99).
    #[serde(default)]
    pub reserve_weekly: Option<u32>,
    /// `balancer`: `least_used` (default), `round_robin` or `random` (sing-box's newer
    /// `least-used` / `round-robin` spellings too).
    #[serde(default)]
    pub strategy: Option<String>,
    /// Pools: the tags of their accounts, in order (the order matters for `fallback`).
    #[serde(default)]
    pub credentials: Option<Vec<String>>,
    /// Pools: how stale an account's usage figures may get before Carpool asks Anthropic's
    /// usage endpoint (default `60s`). Busy accounts get fresh figures from every answer.
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// `balancer`: how long a conversation stays on its account after its last request
    /// (default `1h`, the longest prompt-cache lifetime).
    #[serde(default)]
    pub session_ttl: Option<String>,
}

impl RawCredential {
    /// Fields only accounts take.
    pub const ACCOUNT_FIELDS: &'static [&'static str] = &[
        "credential_path",
        "login_ref",
        "api_key",
        "api_key_ref",
        "base_url",
        "token_url",
        "usages_path",
        "proxy",
        "reserve_5h",
        "reserve_weekly",
    ];
    /// Fields only pools take.
    pub const POOL_FIELDS: &'static [&'static str] =
        &["strategy", "credentials", "poll_interval", "session_ttl"];

    /// The names of the optional fields this entry sets, in declaration order.
    pub fn set_fields(&self) -> Vec<&'static str> {
        [
            ("credential_path", self.credential_path.is_some()),
            ("login_ref", self.login_ref.is_some()),
            ("api_key", self.api_key.is_some()),
            ("api_key_ref", self.api_key_ref.is_some()),
            ("base_url", self.base_url.is_some()),
            ("token_url", self.token_url.is_some()),
            ("usages_path", self.usages_path.is_some()),
            ("proxy", self.proxy.is_some()),
            ("reserve_5h", self.reserve_5h.is_some()),
            ("reserve_weekly", self.reserve_weekly.is_some()),
            ("strategy", self.strategy.is_some()),
            ("credentials", self.credentials.is_some()),
            ("poll_interval", self.poll_interval.is_some()),
            ("session_ttl", self.session_ttl.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a user: an object such as {\"name\": \"me\", \"token_hash\": \"sha256:…\"}"
)]
pub struct RawUser {
    pub name: String,
    /// The token in clear. Prefer `token_hash`.
    #[serde(default)]
    pub token: Option<String>,
    /// `sha256:<64 hex>` of the token, as `carpool serve` and `carpool token` write it.
    #[serde(default)]
    pub token_hash: Option<String>,
    /// Tag of the account or pool this user's requests go to, or a list with one per
    /// provider (`["max", "codex"]`: Claude requests to `max`, OpenAI ones to `codex`).
    /// Optional when the config has one account per provider.
    #[serde(default)]
    pub credential: Option<Tags>,
}

/// One tag, or several.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a tag, or a list of tags (one per provider)")]
pub enum Tags {
    One(String),
    Many(Vec<String>),
}

impl Tags {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Tags::One(t) => std::slice::from_ref(t),
            Tags::Many(ts) => ts,
        }
    }
}

/// Durations are strings like `"10s"`, `"2m"`, `"1h 30m"`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object of durations such as {\"idle\": \"2m\"}"
)]
pub struct RawTimeouts {
    /// TCP + TLS connect to the upstream (default 10s).
    #[serde(default)]
    pub connect: Option<String>,
    /// From sending a streaming request to the upstream's response headers (default 2m).
    /// Non-streaming requests only answer when the whole reply is ready, so they are
    /// bounded by `request` instead.
    #[serde(default)]
    pub first_byte: Option<String>,
    /// Longest silence between two chunks of a response (default 2m; Anthropic sends
    /// `ping` events well within that).
    #[serde(default)]
    pub idle: Option<String>,
    /// Whole non-streaming request, from sending to the last byte (default 10m).
    #[serde(default)]
    pub request: Option<String>,
    /// On SIGINT/SIGTERM, how long in-flight responses may take to finish (default 30s).
    #[serde(default)]
    pub shutdown_grace: Option<String>,
}

/// Limits on client connections (durations as in [`RawTimeouts`]). They hold before
/// authentication, so they are what stands between an open port and a memory or
/// file-descriptor exhaustion.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnections {
    /// Most client connections open at once (default 1024); more wait in the listen
    /// backlog. Lowered at start to what the open-file limit allows.
    #[serde(default)]
    pub max: Option<usize>,
    /// Largest request head (request line + headers) a connection may send, in bytes
    /// (default 65536, at least 8192); larger ones get `431`.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// A new connection must send a complete request head within this (default 10s);
    /// so must a keep-alive connection once it starts sending its next request.
    #[serde(default)]
    pub header_timeout: Option<String>,
    /// A keep-alive connection with no request in flight is closed after this (default 60s).
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// Longest gap while a request body arrives (default 30s); then the request gets a
    /// `408` and the connection is closed.
    #[serde(default)]
    pub body_timeout: Option<String>,
}
