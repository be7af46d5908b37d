//! `carpool serve` as a person runs it: a real process, its banner, its config file, its
//! logs, and how it stops.

mod common;

use std::time::{Duration, Instant};

use common::process::*;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn first_start_creates_a_documented_config_and_prints_what_to_paste() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path());
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let p = start(cmd);

    let config_path = home.path().join(".config/carpool/config.json");
    assert!(config_path.exists(), "{:?}", p.stdout);
    let banner = p.stdout.join("\n");
    assert!(
        banner.contains(&config_path.display().to_string()),
        "{banner}"
    );
    assert!(banner.contains("(created now)"), "{banner}");
    assert!(
        banner.contains(&format!("export ANTHROPIC_BASE_URL={}", p.url)),
        "{banner}"
    );
    let token = banner
        .split("export ANTHROPIC_AUTH_TOKEN=")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("cpk-"), "{token}");
    // The login does not exist yet: the banner says so and how to fix it.
    assert!(
        banner.contains("waiting for the credentials file"),
        "{banner}"
    );
    assert!(banner.contains(".claude/.credentials.json"), "{banner}");

    let text = std::fs::read_to_string(&config_path).unwrap();
    assert!(text.contains("//"), "documented with comments");
    assert!(!text.contains(&token), "only the hash is stored");
    assert!(text.contains(&carpool::auth::TokenHash::of(&token).to_config_string()));

    // The printed token works (the account is not there yet: a 503 that stops the client
    // and sends it to the owner, while the owner's log says what to do), and a wrong one
    // is refused.
    let ok_token = client()
        .post(format!("{}/v1/messages", p.url))
        .bearer_auth(&token)
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_token.status(), 503);
    assert_eq!(ok_token.headers()["x-should-retry"], "false");
    let body: Value = ok_token.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("owner"), "{message}");
    assert!(!message.contains(".credentials.json"), "{message}");
    // The log line may still be on its way through the pipe.
    let owner_told = || {
        let log = p.stderr.lock().unwrap().clone();
        log.contains("does not exist yet") && log.contains("log in")
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !owner_told() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        owner_told(),
        "the log tells the owner: {}",
        p.stderr.lock().unwrap()
    );
    let bad = client()
        .post(format!("{}/v1/messages", p.url))
        .bearer_auth("cpk-not-the-token-000000")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);

    // A second start reuses the config and prints no token.
    sigterm(&p.child);
    let (code, _) = finish(p);
    assert_eq!(code, 0);
    let mut again = command(home.path());
    again.args(["serve", "--listen", "127.0.0.1:0"]);
    let p2 = start(again);
    let banner2 = p2.stdout.join("\n");
    assert!(!banner2.contains("created now"), "{banner2}");
    assert!(!banner2.contains(&token), "{banner2}");
    sigterm(&p2.child);
    let (code, log) = finish(p2);
    assert_eq!(code, 0);
    assert!(
        !log.contains("plain HTTP"),
        "loopback is not warned about: {log}"
    );

    // Beyond loopback, plain HTTP is said out loud.
    let mut shared = command(home.path());
    shared.args(["serve", "--listen", "0.0.0.0:0"]);
    let p3 = start(shared);
    sigterm(&p3.child);
    let (code, log) = finish(p3);
    assert_eq!(code, 0);
    assert!(
        log.contains("over plain HTTP") && log.contains("unencrypted"),
        "{log}"
    );
}

#[test]
fn a_bad_config_fails_at_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"users": [{"name": "a", "token_hash": "sha256:xyz"}]}"#,
            "users[0].token_hash",
        ),
        (r#"{"listen_port": "eighty"}"#, "listen_port"),
        (r#"{"timeouts": {"idle": "soon"}}"#, "timeouts.idle"),
        (r#"{"listen": "0.0.0.0", "users": []}"#, "users"),
        (r#"{"credentails": []}"#, "credentails"),
        (
            r#"{"credentials": [{"tag": "a"}], "users": [{"name": "u", "token": "0123456789abcdefgh", "credential": "b"}]}"#,
            "users[0].credential",
        ),
    ];
    for (text, field) in cases {
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        let out = command(dir.path())
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.starts_with("error: config "), "{first}");
        assert!(first.contains(&path.display().to_string()), "{first}");
        assert!(first.contains(field), "`{field}` not named in: {first}");
        assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_lets_the_running_stream_finish_then_exits_0() {
    let setup = Setup::new().await;
    let p = serve(&setup, &[]);

    // A stream that takes about 1.4 s; SIGTERM arrives in the middle of it.
    setup
        .mock
        .push(Reply::SlowEvents(Duration::from_millis(200)));
    let response = ask_at(&p.url, true).await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&p.child);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // New connections are refused while the old stream is still going.
    let refused = client()
        .post(format!("{}/v1/messages", p.url))
        .bearer_auth(ALICE_TOKEN)
        .json(&message_body(false))
        .send()
        .await;
    assert!(refused.is_err(), "still accepting after SIGTERM");

    let text = response.text().await.unwrap();
    assert_eq!(
        text,
        mock::sse_events("claude-sonnet-4-5-20250929").concat(),
        "stream completed"
    );
    let (code, stderr) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[tokio::test]
async fn shutdown_does_not_wait_past_the_grace_period() {
    let mut setup = Setup::new().await;
    setup.config["timeouts"] = serde_json::json!({"shutdown_grace": "500ms"});
    let p = serve(&setup, &[]);
    setup.mock.push(Reply::StallMidStream);
    let response = ask_at(&p.url, true).await;
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    sigterm(&p.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded wait");
    assert!(stderr.contains("shutdown_grace"), "{stderr}");
}

#[tokio::test]
async fn logs_of_a_full_run_name_users_and_accounts_but_hold_no_secret() {
    let setup = Setup::without_file().await;
    // Expired: the run includes a refresh, so old and new tokens all pass through Carpool.
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    let p = serve(&setup, &[("CARPOOL_LOG", "trace")]);

    let url = format!("{}/v1/messages", p.url);
    let r = client()
        .post(&url)
        .bearer_auth(ALICE_TOKEN)
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let r = client()
        .post(&url)
        .header("x-api-key", BOB_TOKEN)
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(&url)
        .bearer_auth("cpk-wrong-0000000000000")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(setup.mock.refreshes(), 1);

    sigterm(&p.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0);

    let (new_access, new_refresh) = setup.mock.last_issued().unwrap();
    for secret in [
        ACCESS,
        REFRESH,
        &new_access,
        &new_refresh,
        ALICE_TOKEN,
        BOB_TOKEN,
        "cpk-wrong-0000000000000",
    ] {
        assert!(!stderr.contains(secret), "a secret reached the logs");
    }
    // No fragment of a token either (e.g. a prefix shown for debugging).
    assert!(!stderr.contains("sk-ant-o"), "token material in logs");

    let request_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("carpool::request"))
        .collect();
    assert_eq!(request_lines.len(), 3, "one line per request:\n{stderr}");
    let first = request_lines[0];
    for field in [
        "user=alice",
        "credential=main",
        "model=claude-sonnet-4-5-20250929",
        "status=200",
        "duration_ms=",
    ] {
        assert!(first.contains(field), "{field} missing in {first}");
    }
    assert!(
        request_lines[1].contains("user=bob"),
        "{}",
        request_lines[1]
    );
    assert!(
        request_lines[2].contains("status=403"),
        "{}",
        request_lines[2]
    );
    assert!(stderr.contains("refreshed the OAuth token"), "{stderr}");
}

/// This test process's executable name, as the error should show it.
fn this_executable() -> String {
    let exe = std::env::current_exe().unwrap();
    exe.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test]
async fn a_port_in_use_names_the_process_that_holds_it() {
    let mut setup = Setup::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    setup.config["listen_port"] = addr.port().into();
    let text = serde_json::to_string(&setup.config).unwrap();
    let config = carpool::Config::parse(&text, &setup.config_path()).unwrap();

    let error = match carpool::Server::bind(config).await {
        Ok(_) => panic!("bound {addr} twice"),
        Err(e) => e,
    };
    let carpool::engine::StartError::Listen { holder, .. } = &error else {
        panic!("not a listen error: {error}");
    };
    let holder = holder.as_ref().expect("the holder is found");
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.name, this_executable());
    assert_eq!(
        error.to_string(),
        format!(
            "cannot listen on {addr}: the port is in use by `{}` (pid {})",
            this_executable(),
            std::process::id()
        )
    );
    drop(taken);
}

#[test]
fn carpool_serve_on_a_port_in_use_says_who_holds_it_and_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"listen": "127.0.0.1", "listen_port": {}}}"#,
            addr.port()
        ),
    )
    .unwrap();
    let out = command(dir.path())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    drop(taken);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // After the log lines of the start (the usage database opened), the error.
    let last = stderr.lines().last().unwrap_or("");
    assert_eq!(
        last,
        format!(
            "error: cannot listen on {addr}: the port is in use by `{}` (pid {}); stop it, or change `listen`/`listen_port` in {}",
            this_executable(),
            std::process::id(),
            config.display()
        )
    );
}
