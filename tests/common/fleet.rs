//! Several accounts behind one Carpool, each with its own mock upstream: Claude logins
//! (`a0`, `a1`, …) or API keys, a pool over them, and alice bound to the pool.

use std::path::PathBuf;

use carpool::RunningServer;
use serde_json::{Value, json};

use super::mock::Mock;
use super::{ALICE_TOKEN, HOUR_MS, client, message_body, now_ms, write_credentials};

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub mocks: Vec<Mock>,
    pub config: Value,
}

/// Account `i`'s access token (or API key), the one its mock accepts.
pub fn access(i: usize) -> String {
    format!("sk-ant-oat01-fleet-account-{i}-000000")
}

/// Account `i`'s refresh token.
pub fn refresh(i: usize) -> String {
    format!("sk-ant-ort01-fleet-{i}")
}

impl Fleet {
    /// `n` Claude logins and `pool` (its `type`, `strategy`, …; tag and members are
    /// filled in) over them.
    pub async fn new(n: usize, pool: Value) -> Fleet {
        Fleet::with_api_keys(n, pool, &[]).await
    }

    /// Like [`Fleet::new`], with the accounts at the indices in `api_keys` as API keys.
    pub async fn with_api_keys(n: usize, pool: Value, api_keys: &[usize]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut mocks = Vec::new();
        let mut credentials = Vec::new();
        for i in 0..n {
            let mock = Mock::start(&access(i)).await;
            if api_keys.contains(&i) {
                credentials.push(json!({
                    "tag": format!("a{i}"), "type": "api_key", "api_key": access(i),
                    "base_url": mock.url(),
                }));
            } else {
                let path = cred_path(&dir, i);
                write_credentials(&path, &access(i), &refresh(i), now_ms() + 8 * HOUR_MS);
                credentials.push(json!({
                    "tag": format!("a{i}"), "credential_path": path,
                    "base_url": mock.url(), "token_url": mock.token_url(),
                }));
            }
            mocks.push(mock);
        }
        let mut pool = pool;
        pool["tag"] = json!("pool");
        pool["credentials"] = json!((0..n).map(|i| format!("a{i}")).collect::<Vec<_>>());
        credentials.push(pool);
        let config = json!({
            "listen": "127.0.0.1",
            "listen_port": 0,
            "credentials": credentials,
            "users": [{"name": "alice", "token": ALICE_TOKEN, "credential": "pool"}],
            "database": dir.path().join("usage.db"),
        });
        Fleet { dir, mocks, config }
    }

    /// Account `i`'s credentials file.
    pub fn cred_path(&self, i: usize) -> PathBuf {
        cred_path(&self.dir, i)
    }

    pub async fn start(&self) -> RunningServer {
        let text = serde_json::to_string(&self.config).unwrap();
        let config = carpool::Config::parse(&text, &self.dir.path().join("config.json")).unwrap();
        carpool::Server::bind(config).await.unwrap().spawn()
    }

    /// How many `/v1/messages` each account's upstream received.
    pub fn served(&self) -> Vec<usize> {
        self.mocks.iter().map(Mock::messages).collect()
    }
}

fn cred_path(dir: &tempfile::TempDir, i: usize) -> PathBuf {
    dir.path().join(format!("account-{i}.json"))
}

/// A message without Claude Code's metadata, so no session unless the header gives one.
pub fn body() -> Value {
    let mut b = message_body(false);
    b.as_object_mut().unwrap().remove("metadata");
    b
}

/// Alice's message, in the conversation `session` (Claude Code's header) if given.
pub async fn send(carpool: &RunningServer, session: Option<&str>) -> reqwest::Response {
    let mut r = client()
        .post(format!("{}/v1/messages", carpool.url()))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .json(&body());
    if let Some(s) = session {
        r = r.header("x-claude-code-session-id", s);
    }
    r.send().await.unwrap()
}

/// [`send`], answered whole with a 200.
pub async fn ok(carpool: &RunningServer, session: Option<&str>) {
    let r = send(carpool, session).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(r.text().await.unwrap().contains("end_turn"));
}

/// Account `tag` in the status snapshot.
pub fn account_status(carpool: &RunningServer, tag: &str) -> Value {
    let status = serde_json::to_value(carpool.engine.status()).unwrap();
    status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["tag"] == tag)
        .cloned()
        .unwrap()
}
