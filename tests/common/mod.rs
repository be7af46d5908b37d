//! Helpers shared by the integration tests: a temp directory with a Claude credentials
//! file, a mock upstream, and a Carpool config pointing at it.

#![allow(dead_code)]

pub mod clients;
pub mod codex_oauth;
pub mod fleet;
pub mod mock;
pub mod openai_mock;
pub mod process;
pub mod proxy;
#[allow(unused_imports)]
pub use mock::tls;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use carpool::{Config, RunningServer, Server};
use serde_json::{Value, json};

#[allow(unused_imports)]
pub use mock::{Mock, Recorded, Reply, TokenReply};

pub const ALICE_TOKEN: &str = "cpk-test-alice-0000000000000001";
pub const BOB_TOKEN: &str = "cpk-test-bob-00000000000000002";
pub const ACCESS: &str = "sk-ant-oat01-test-access-0000000001";
pub const REFRESH: &str = "sk-ant-ort01-test-refresh-000000001";
pub const HOUR_MS: i64 = 3_600_000;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A credentials file in Claude Code's shape, with fields Carpool must keep.
pub fn credentials_json(access: &str, refresh: &str, expires_at_ms: i64) -> String {
    serde_json::to_string_pretty(&json!({
        "claudeAiOauth": {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": expires_at_ms,
            "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x",
            "refreshTokenExpiresAt": 1_900_000_000_000i64
        },
        "mcpOAuth": {"github": {"accessToken": "mcp-keep-me"}}
    }))
    .unwrap()
}

pub fn write_credentials(path: &Path, access: &str, refresh: &str, expires_at_ms: i64) {
    // Write-then-rename, as Claude Code and Carpool do, so a watcher never sees half a file.
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, credentials_json(access, refresh, expires_at_ms)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub cred_path: PathBuf,
    pub mock: Mock,
    /// The config as JSON; tests may edit it before [`Setup::start`].
    pub config: Value,
}

impl Setup {
    /// A mock accepting [`ACCESS`], a credentials file holding it (valid for 8 hours),
    /// and a config with users alice (clear token) and bob (hashed token).
    pub async fn new() -> Setup {
        let setup = Setup::without_file().await;
        write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() + 8 * HOUR_MS);
        setup
    }

    /// Like [`Setup::new`] but no credentials file exists yet.
    pub async fn without_file() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let cred_path = dir.path().join(".credentials.json");
        let mock = Mock::start(ACCESS).await;
        let bob_hash = carpool::auth::TokenHash::of(BOB_TOKEN).to_config_string();
        let config = json!({
            "listen": "127.0.0.1",
            "listen_port": 0,
            "credentials": [{
                "tag": "main",
                "credential_path": cred_path,
                "base_url": mock.url(),
                "token_url": mock.token_url(),
            }],
            "users": [
                {"name": "alice", "token": ALICE_TOKEN, "credential": "main"},
                {"name": "bob", "token_hash": bob_hash},
            ],
            "database": dir.path().join("usage.db"),
            "data_dir": dir.path(),
        });
        Setup {
            dir,
            cred_path,
            mock,
            config,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// Writes the config file (for subprocess tests) and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, serde_json::to_string_pretty(&self.config).unwrap()).unwrap();
        path
    }

    /// Writes the config file as a person might have edited it: comments of both kinds,
    /// odd spacing. Returns its path and text.
    pub fn write_commented_config(&self) -> (PathBuf, String) {
        let pretty = serde_json::to_string_pretty(&self.config).unwrap();
        let body = pretty.replacen(
            "{\n",
            "{\n  // written by hand\n   \"max_body_bytes\" :   65536 ,  /* odd */\n",
            1,
        );
        let text = format!("// Carpool\n/* keep me */\n{body}\n// the end\n");
        let path = self.config_path();
        std::fs::write(&path, &text).unwrap();
        (path, text)
    }

    /// Starts Carpool in-process on an ephemeral port.
    pub async fn start(&self) -> RunningServer {
        let text = serde_json::to_string(&self.config).unwrap();
        let config = Config::parse(&text, &self.config_path()).expect("test config is valid");
        Server::bind(config).await.unwrap().spawn()
    }
}

/// An in-process Carpool with the management API mounted, and its admin secret.
pub struct Managed {
    pub server: RunningServer,
    pub secret: String,
}

impl Managed {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.server.url(), carpool::api::PREFIX)
    }

    /// Calls the API with the admin secret, with an optional JSON body; the status and
    /// the answer as JSON (`Null` when it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self.admin(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request to the API with the admin secret as bearer token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client()
            .request(method, self.url(path))
            .bearer_auth(&self.secret)
    }
}

impl Setup {
    /// [`Setup::start`] with the management API, as `carpool serve` runs it.
    pub async fn start_managed(&self) -> Managed {
        let text = serde_json::to_string(&self.config).unwrap();
        let config = Config::parse(&text, &self.config_path()).expect("test config is valid");
        self.managed(config, |_| {}).await
    }

    /// [`Setup::start_managed`] from the config file at [`Setup::config_path`] (written
    /// now unless it exists), which the engine edits. With `watch`, its watcher runs as
    /// in `carpool serve`; without, hand edits are never read (so an API write after one
    /// is refused with 409 every time).
    pub async fn start_managed_on_file(&self, watch: bool) -> Managed {
        let path = self.config_path();
        if !path.exists() {
            self.write_config();
        }
        let config = Config::load(&path).expect("test config is valid");
        self.managed(config, |server| {
            if watch {
                server.watch_config(path, Default::default());
            } else {
                let file = carpool::config::file::ConfigFile::new(path);
                server
                    .engine()
                    .set_config_file(std::sync::Arc::new(file), Default::default());
            }
        })
        .await
    }

    async fn managed(&self, config: Config, prepare: impl FnOnce(&Server)) -> Managed {
        let (admin, secret) = carpool::api::Admin::open(&config.data_dir).unwrap();
        // A second start on the same data directory (a restart) gets a new secret.
        let secret =
            secret.unwrap_or_else(|| carpool::api::reset_admin_secret(&config.data_dir).unwrap());
        let mut server = Server::bind(config).await.unwrap();
        prepare(&server);
        server.serve_also(carpool::api::router(carpool::api::Api::new(
            server.engine().clone(),
            admin,
        )));
        Managed {
            server: server.spawn(),
            secret,
        }
    }
}

/// The message of an API error answer (empty when it is not one).
pub fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `POST /v1/messages` as alice, with a Claude-Code-like body.
pub async fn ask(carpool: &RunningServer, stream: bool) -> reqwest::Response {
    ask_at(&carpool.url(), stream).await
}

/// [`ask`] for a Carpool reached by URL (a `carpool serve` process).
pub async fn ask_at(base_url: &str, stream: bool) -> reqwest::Response {
    client()
        .post(format!("{base_url}/v1/messages"))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .header("anthropic-version", "2023-06-01")
        .json(&message_body(stream))
        .send()
        .await
        .unwrap()
}

/// A Claude-Code-like request body, with fields an older schema would not know.
pub fn message_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "system", "content": "<env>cwd: /tmp</env>", "cache_control": {"type": "ephemeral"}},
        ],
        "thinking": {"type": "adaptive", "display": "summarized"},
        "context_management": {"edits": []},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "{\"device_id\":\"abc\",\"account_uuid\":\"\",\"session_id\":\"s-1\"}"},
        "some_future_field": {"nested": [1, 2, 3]},
    })
}

/// Polls `check` every 25 ms until it is true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

/// What differs between two texts: the part of each between their common prefix and
/// their common suffix (ASCII texts).
pub fn changed_span<'a>(before: &'a str, after: &'a str) -> (&'a str, &'a str) {
    let (b, a) = (before.as_bytes(), after.as_bytes());
    let prefix = b.iter().zip(a).take_while(|(x, y)| x == y).count();
    let max_suffix = b.len().min(a.len()) - prefix;
    let suffix = b
        .iter()
        .rev()
        .zip(a.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    (
        &before[prefix..b.len() - suffix],
        &after[prefix..a.len() - suffix],
    )
}
