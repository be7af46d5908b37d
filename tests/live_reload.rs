//! Live configuration: a running `carpool serve` process whose config file is edited
//! through every kind of change while a streaming conversation is in flight.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock::{Mock, Reply};
use common::process::*;
use common::{ALICE_TOKEN, HOUR_MS, client, eventually, message_body, now_ms, write_credentials};
use serde_json::{Value, json};

const BOB: &str = "bob-token-0000000000000001";
const CAROL: &str = "carol-token-00000000000001";

fn access(i: usize) -> String {
    format!("sk-ant-oat01-reload-account-{i}-000000")
}

/// Three Claude logins, each with its own upstream; the config starts with two.
struct World {
    dir: tempfile::TempDir,
    mocks: Vec<Mock>,
    path: PathBuf,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut mocks = Vec::new();
        for i in 0..3 {
            let mock = Mock::start(&access(i)).await;
            write_credentials(
                &dir.path().join(format!("a{i}.json")),
                &access(i),
                &format!("sk-ant-ort01-reload-{i}"),
                now_ms() + 8 * HOUR_MS,
            );
            mocks.push(mock);
        }
        let path = dir.path().join("carpool.json");
        World { dir, mocks, path }
    }

    fn account(&self, i: usize) -> Value {
        json!({
            "tag": format!("a{i}"),
            "credential_path": self.dir.path().join(format!("a{i}.json")),
            "base_url": self.mocks[i].url(),
            "token_url": self.mocks[i].token_url(),
        })
    }

    /// Writes `config` the way an editor saves: a new file renamed over the old one.
    fn write(&self, config: &Value) {
        write_replacing(&self.path, &serde_json::to_string_pretty(config).unwrap());
    }

    fn served(&self) -> Vec<usize> {
        self.mocks.iter().map(Mock::messages).collect()
    }
}

fn write_replacing(path: &Path, text: &str) {
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// A message in conversation `session` (Claude Code's metadata), as `token`.
async fn send(url: &str, token: &str, session: &str, stream: bool) -> reqwest::Response {
    let mut body = message_body(stream);
    body["metadata"]["user_id"] = json!(format!(
        "{{\"device_id\":\"abc\",\"account_uuid\":\"\",\"session_id\":\"{session}\"}}"
    ));
    client()
        .post(format!("{url}/v1/messages"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn status_of(url: &str, token: &str, session: &str) -> u16 {
    send(url, token, session, false).await.status().as_u16()
}

/// Waits (bounded) until `token`'s requests get `status`.
async fn until_status(p: &Process, token: &str, status: u16, what: &str) {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    let reached = eventually(5, || {
        let url = p.url.clone();
        let token = token.to_owned();
        let seen = seen.clone();
        async move {
            let got = status_of(&url, &token, "probe").await;
            seen.store(got, std::sync::atomic::Ordering::Relaxed);
            got == status
        }
    })
    .await;
    assert!(
        reached,
        "{what}: still {}, expected {status}; log:\n{}",
        seen.load(std::sync::atomic::Ordering::Relaxed),
        stderr_of(p)
    );
}

fn stderr_of(p: &Process) -> String {
    p.stderr.lock().unwrap().clone()
}

/// Waits (bounded) until Carpool's log holds `text` `times` times.
async fn until_logged(p: &Process, text: &str, times: usize) {
    let found = eventually(5, || {
        let log = stderr_of(p);
        async move { log.matches(text).count() >= times }
    })
    .await;
    assert!(found, "`{text}` not logged {times}×:\n{}", stderr_of(p));
}

#[tokio::test]
async fn every_kind_of_config_edit_applies_while_a_conversation_streams_on() {
    let world = World::new().await;
    let mut config = json!({
        "listen": "127.0.0.1",
        "listen_port": 0,
        "database": world.dir.path().join("usage.db"),
        "credentials": [
            world.account(0),
            world.account(1),
            {"tag": "team", "type": "balancer", "strategy": "least_used", "credentials": ["a0", "a1"]},
        ],
        "users": [{"name": "alice", "token": ALICE_TOKEN, "credential": "team"}],
    });
    world.write(&config);
    let mut cmd = command(world.dir.path());
    cmd.env("CARPOOL_LOG", "info")
        .args(["serve", "--config"])
        .arg(&world.path);
    let p = start(cmd);
    let url = p.url.clone();

    // The conversation starts on a0 (least used, first on a tie) and streams until the
    // end of the test.
    world.mocks[0].push(Reply::GatedStream);
    let stream = send(&url, ALICE_TOKEN, "conversation", true).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(world.served(), [1, 0, 0]);
    let mut applied = 0;

    // A user added: works at once.
    config["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "bob", "token": BOB, "credential": "team"}));
    world.write(&config);
    until_status(&p, BOB, 200, "bob added").await;
    applied += 1;
    until_logged(&p, "applied: user `bob` added", 1).await;

    // Renamed: the same token, recorded under the new name.
    config["users"][1]["name"] = json!("robert");
    world.write(&config);
    applied += 1;
    until_logged(&p, " applied: ", applied).await;
    assert_eq!(status_of(&url, BOB, "probe").await, 200);
    until_logged(&p, "user=robert", 1).await;

    // Removed: refused from the next request on.
    config["users"].as_array_mut().unwrap().pop();
    world.write(&config);
    until_status(&p, BOB, 403, "bob removed: an unknown token").await;
    applied += 1;

    // An account and a pool added, and a user bound to the pool: served by the new one.
    config["credentials"]
        .as_array_mut()
        .unwrap()
        .insert(2, world.account(2));
    config["credentials"]
        .as_array_mut()
        .unwrap()
        .push(json!({"tag": "solo", "type": "fallback", "credentials": ["a2"]}));
    config["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "carol", "token": CAROL, "credential": "solo"}));
    world.write(&config);
    until_status(&p, CAROL, 200, "carol on a new pool").await;
    applied += 1;
    assert!(world.served()[2] >= 1, "{:?}", world.served());

    // A reserve on a2 while its 5-hour window is at 60%: paused, then free again.
    world.mocks[2].set_unified(&[
        ("anthropic-ratelimit-unified-5h-utilization", "0.6"),
        (
            "anthropic-ratelimit-unified-5h-reset",
            &(now_ms() / 1000 + 3600).to_string(),
        ),
    ]);
    assert_eq!(status_of(&url, CAROL, "probe").await, 200, "figures seen");
    config["credentials"][2]["reserve_5h"] = json!(50);
    world.write(&config);
    until_status(&p, CAROL, 429, "a2 paused by its new reserve").await;
    applied += 1;
    config["credentials"][2]
        .as_object_mut()
        .unwrap()
        .remove("reserve_5h");
    world.write(&config);
    until_status(&p, CAROL, 200, "reserve removed").await;
    applied += 1;

    // The pool's strategy changed to fallback with a1 first: new requests go to a1.
    config["credentials"][3] =
        json!({"tag": "team", "type": "fallback", "credentials": ["a1", "a0"]});
    world.write(&config);
    applied += 1;
    until_logged(&p, "pool `team` changed", 1).await;
    let before = world.served();
    for _ in 0..3 {
        assert_eq!(status_of(&url, ALICE_TOKEN, "").await, 200);
    }
    let after = world.served();
    assert_eq!((after[0] - before[0], after[1] - before[1]), (0, 3));
    // Back to a balancer, in another order.
    config["credentials"][3] = json!({"tag": "team", "type": "balancer", "strategy": "round_robin", "credentials": ["a1", "a0"]});
    world.write(&config);
    applied += 1;
    until_logged(&p, " applied: ", applied).await;

    // An account removed (its pool shrinks with it), then put back.
    config["credentials"][3]["credentials"] = json!(["a0"]);
    let a1 = config["credentials"].as_array_mut().unwrap().remove(1);
    world.write(&config);
    applied += 1;
    until_logged(&p, "account `a1` removed", 1).await;
    let before = world.served();
    assert_eq!(status_of(&url, ALICE_TOKEN, "new-conversation").await, 200);
    assert_eq!(world.served()[1], before[1], "a1 is gone");
    config["credentials"].as_array_mut().unwrap().insert(1, a1);
    config["credentials"][3]["credentials"] = json!(["a1", "a0"]);
    world.write(&config);
    applied += 1;
    until_logged(&p, "account `a1` added", 1).await;

    // A broken edit is refused with one line naming the file and the field; the
    // running configuration stays; fixing the file applies it.
    let mut broken = config.clone();
    broken["users"][0]["credential"] = json!("nowhere");
    world.write(&broken);
    until_logged(&p, "users[0].credential", 1).await;
    let refusal = stderr_of(&p)
        .lines()
        .find(|l| l.contains("users[0].credential"))
        .unwrap()
        .to_owned();
    assert!(refusal.contains("carpool.json"), "{refusal}");
    assert!(refusal.contains("running configuration stays"), "{refusal}");
    assert_eq!(status_of(&url, ALICE_TOKEN, "probe").await, 200);
    write_replacing(&world.path, "{\"users\": [");
    until_logged(&p, "running configuration stays", 2).await;
    assert_eq!(status_of(&url, ALICE_TOKEN, "probe").await, 200);
    config["max_body_bytes"] = json!(1_000_000);
    world.write(&config);
    applied += 1;
    until_logged(&p, "max_body_bytes changed", 1).await;

    // SIGHUP reads the file again, changed or not.
    signal(&p.child, "-HUP");
    until_logged(&p, "SIGHUP", 1).await;
    applied += 1;
    until_logged(&p, "applied: nothing changed", 1).await;

    // Another address: an occupied one is refused naming the field; a free one is moved
    // to, while the conversation goes on over its open connection.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config["listen_port"] = json!(taken.local_addr().unwrap().port());
    world.write(&config);
    until_logged(&p, "`listen`/`listen_port`", 1).await;
    assert_eq!(
        status_of(&url, ALICE_TOKEN, "probe").await,
        200,
        "still on the old address"
    );
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    config["listen_port"] = json!(port);
    world.write(&config);
    applied += 1;
    until_logged(&p, &format!("now listening on http://127.0.0.1:{port}"), 1).await;
    until_logged(&p, " applied: ", applied).await;
    let moved = format!("http://127.0.0.1:{port}");
    assert_eq!(status_of(&moved, ALICE_TOKEN, "probe").await, 200);
    let old = client()
        .post(format!("{url}/v1/messages"))
        .bearer_auth(ALICE_TOKEN)
        .json(&message_body(false))
        .send()
        .await;
    assert!(old.is_err(), "the old address is closed");
    let url = moved;

    // The conversation streamed on through all of it, on its account.
    world.mocks[0].release();
    let text = tokio::time::timeout(Duration::from_secs(10), stream.text())
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(text.contains("event: message_stop"), "{text}");
    let before = world.served();
    assert_eq!(status_of(&url, ALICE_TOKEN, "conversation").await, 200);
    let after = world.served();
    assert_eq!(after[0], before[0] + 1, "still pinned to a0: {after:?}");

    sigterm(&p.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    for secret in [ALICE_TOKEN, BOB, CAROL, &access(0), &access(2)] {
        assert!(!stderr.contains(secret), "a secret reached the log");
    }
}
