//! The usage ledger end to end: requests through Carpool land in SQLite with their
//! tokens, cost, client ids and outcome; the writer never slows a client; shutdown and
//! `kill -9` keep the database whole; `carpool usage` and `usages_path` read it back.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use carpool::ledger::{UsageRecord, store};
use common::mock::{INPUT_TOKENS, OUTPUT_TOKENS};
use common::process::*;
use common::*;
use serde_json::{Value, json};

/// claude-sonnet-4-5 at $3 / $15 per million: 25 × 3 + 12 × 15 = 255 micro-dollars.
const MOCK_COST: i64 = 255;
const SESSION_HEADER: &str = "x-claude-code-session-id";

fn db_path(setup: &Setup) -> std::path::PathBuf {
    setup.dir.path().join("usage.db")
}

fn rows(path: &Path) -> Vec<UsageRecord> {
    let conn = store::open_existing(path).unwrap();
    let mut out = Vec::new();
    store::for_each_request(&conn, 0, i64::MAX, |r| out.push(r)).unwrap();
    out
}

async fn ask_as(
    base_url: &str,
    token: &str,
    body: &Value,
    session: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{base_url}/v1/messages?beta=true"))
        .header("authorization", format!("Bearer {token}"))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    if let Some(s) = session {
        request = request.header(SESSION_HEADER, s);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn streaming_and_plain_answers_are_recorded_with_tokens_cost_and_client_ids() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let stream = ask(&carpool, true).await;
    assert_eq!(stream.status(), 200);
    assert!(stream.text().await.unwrap().contains("message_stop"));
    let plain = ask(&carpool, false).await;
    assert_eq!(plain.status(), 200);
    plain.text().await.unwrap();
    let body = message_body(true);
    let with_header = ask_as(&carpool.url(), BOB_TOKEN, &body, Some("header-session")).await;
    with_header.text().await.unwrap();
    carpool.shutdown().await;

    let rows = rows(&db_path(&setup));
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for r in &rows {
        assert_eq!(r.credential, "main");
        assert_eq!(r.endpoint, "messages");
        assert_eq!(r.model, "claude-sonnet-4-5-20250929");
        assert_eq!(r.device, "abc", "from metadata.user_id");
        assert_eq!(r.status, 200);
        assert_eq!(r.outcome, "complete");
        assert_eq!(
            (r.tokens.input, r.tokens.output),
            (INPUT_TOKENS, OUTPUT_TOKENS)
        );
        assert_eq!(r.cost_micros, Some(MOCK_COST));
        assert_eq!(r.context_window, 200_000);
        assert_eq!(r.messages, 2);
        assert!(r.ttfb_ms.is_some_and(|t| t <= r.duration_ms));
    }
    assert_eq!(
        rows.iter()
            .map(|r| (r.user.as_str(), r.session.as_str()))
            .collect::<Vec<_>>(),
        [
            ("alice", "s-1"),
            ("alice", "s-1"),
            ("bob", "header-session")
        ]
    );
}

#[tokio::test]
async fn cache_writes_web_searches_and_the_weekly_window_are_recorded_and_priced() {
    let setup = Setup::new().await;
    let sse = [
        json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant",
            "model":"claude-opus-4-8","content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":1000,"cache_creation_input_tokens":3000,"cache_read_input_tokens":20000,
                "cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":2000},
                "output_tokens":1,"service_tier":"standard"}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
            "usage":{"output_tokens":500,"server_tool_use":{"web_search_requests":2}}}),
        json!({"type":"message_stop"}),
    ]
    .iter()
    .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
    .collect::<String>();
    setup.mock.push(Reply::Status {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            (
                "anthropic-ratelimit-unified-7d-reset".into(),
                "1764000000".into(),
            ),
        ],
        body: sse,
    });
    let carpool = setup.start().await;
    let mut body = message_body(true);
    body["model"] = json!("claude-opus-4-8");
    ask_as(&carpool.url(), ALICE_TOKEN, &body, None)
        .await
        .text()
        .await
        .unwrap();
    carpool.shutdown().await;

    let rows = rows(&db_path(&setup));
    let r = &rows[0];
    let t = r.tokens;
    assert_eq!(
        (
            t.input,
            t.output,
            t.cache_read,
            t.cache_write_5m,
            t.cache_write_1h,
            t.web_search_requests
        ),
        (1000, 500, 20_000, 1000, 2000, 2)
    );
    // Opus 4.8: 1000 × 5 + 500 × 25 + 20,000 × 0.5 + 1000 × 6.25 + 2000 × 10
    //   = 5000 + 12,500 + 10,000 + 6250 + 20,000 = 53,750; plus 2 searches × $0.01.
    assert_eq!(r.cost_micros, Some(53_750 + 20_000));
    assert_eq!(r.week_reset, Some(1_764_000_000));
    assert_eq!(r.outcome, "complete");
}

#[tokio::test]
async fn a_stream_the_client_abandons_keeps_what_was_seen_marked_incomplete() {
    let setup = Setup::new().await;
    setup.mock.push(Reply::GatedStream);
    let carpool = setup.start().await;
    let mut response = ask(&carpool, true).await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    drop(response);
    carpool.shutdown().await;
    setup.mock.release();

    let rows = rows(&db_path(&setup));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.outcome, "client_closed");
    assert_eq!(r.status, 200);
    // message_start carried the input tokens and one output token; the rest never came.
    assert_eq!((r.tokens.input, r.tokens.output), (INPUT_TOKENS, 1));
    assert_eq!(r.cost_micros, Some(25 * 3 + 15));
}

#[tokio::test]
async fn errors_are_recorded_bad_tokens_and_unknown_models_are_handled() {
    let setup = Setup::new().await;
    setup.mock.push(Reply::Status {
        status: 429,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "30".into()),
        ],
        body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
            .into(),
    });
    let carpool = setup.start().await;
    assert_eq!(ask(&carpool, false).await.status(), 429);
    // A bad Carpool token is refused before anything is recorded.
    let refused = ask_as(&carpool.url(), "cpk-wrong", &message_body(false), None).await;
    assert_eq!(refused.status(), 403);
    // A model the price table does not know: recorded, tokens kept, cost unknown.
    let mut body = message_body(false);
    body["model"] = json!("claude-future-9");
    let unknown = ask_as(&carpool.url(), ALICE_TOKEN, &body, None).await;
    assert_eq!(unknown.status(), 200);
    unknown.text().await.unwrap();
    // Carpool's own error (no credential file) is recorded with its status.
    std::fs::remove_file(&setup.cred_path).unwrap();
    assert!(
        eventually(5, || async { ask(&carpool, false).await.status() == 503 }).await,
        "the deleted credential file makes Carpool answer 503"
    );
    carpool.shutdown().await;

    let rows = rows(&db_path(&setup));
    let summary: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.status,
                r.outcome.as_str(),
                r.model.as_str(),
                r.tokens.input,
                r.cost_micros,
            )
        })
        .collect();
    assert_eq!(
        summary[0],
        (429, "complete", "claude-sonnet-4-5-20250929", 0, Some(0))
    );
    assert_eq!(
        summary[1],
        (200, "complete", "claude-future-9", INPUT_TOKENS, None)
    );
    // Requests made before the watcher saw the deletion still succeeded; the last one did not.
    let (last, before) = summary[2..].split_last().unwrap();
    assert_eq!(
        *last,
        (503, "error", "claude-sonnet-4-5-20250929", 0, Some(0))
    );
    assert!(before.iter().all(|s| s.0 == 200), "{summary:?}");
    assert!(rows.iter().all(|r| r.user == "alice"));
}

#[tokio::test]
async fn prices_from_the_config_replace_the_built_in_ones() {
    let mut setup = Setup::new().await;
    setup.config["prices"] = json!({
        "claude-sonnet-4-5": {"input": 10, "output": 20, "cache_read": 1, "cache_write_5m": 12.5, "cache_write_1h": 20}
    });
    let carpool = setup.start().await;
    ask(&carpool, false).await.text().await.unwrap();
    carpool.shutdown().await;
    // 25 × 10 + 12 × 20 = 490
    assert_eq!(rows(&db_path(&setup))[0].cost_micros, Some(490));
}

/// While another process holds the database's write lock the writer cannot write; the
/// queue (2 here) fills, later records are dropped and counted, and every client still
/// gets its whole answer at once.
#[tokio::test]
async fn a_full_queue_drops_records_without_slowing_clients() {
    let mut setup = Setup::new().await;
    setup.config["usage_queue"] = json!(2);
    let carpool = setup.start().await;
    let blocker = store::open(&db_path(&setup)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The first record's batch gets stuck on the lock (after the writer's gathering time)…
    ask(&carpool, false).await.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // …so of the next 20, two fit the queue and the rest are dropped.
    for _ in 0..20 {
        let response = ask(&carpool, false).await;
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("end_turn"));
    }
    let dropped = carpool.engine.ledger.dropped_count();
    assert_eq!(dropped, 18);
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    let engine = carpool.engine.clone();
    carpool.shutdown().await;
    let written = rows(&db_path(&setup)).len() as u64;
    assert_eq!(written, engine.ledger.written());
    assert_eq!(written, 3);
    assert_eq!(written + engine.ledger.dropped_count(), 21);
}

#[tokio::test]
async fn usages_path_files_are_written_in_sing_box_layout_at_shutdown() {
    let mut setup = Setup::new().await;
    let all = setup.dir.path().join("usages.json");
    let main_only = setup.dir.path().join("usages-main.json");
    setup.config["usages_path"] = json!(all);
    setup.config["credentials"][0]["usages_path"] = json!(main_only);
    let carpool = setup.start().await;
    ask(&carpool, true).await.text().await.unwrap();
    ask(&carpool, false).await.text().await.unwrap();
    carpool.shutdown().await;

    for path in [&all, &main_only] {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let keys: Vec<&String> = file.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["last_updated", "costs", "combinations"]);
        let combination = &file["combinations"][0];
        assert_eq!(combination["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(combination["context_window"], 200000);
        let total = &combination["total"];
        assert_eq!(total["request_count"], 2);
        assert_eq!(total["messages_count"], 4);
        assert_eq!(total["input_tokens"], 2 * INPUT_TOKENS);
        assert_eq!(total["output_tokens"], 2 * OUTPUT_TOKENS);
        assert_eq!(combination["by_user"]["alice"]["request_count"], 2);
        assert_eq!(
            file["costs"]["by_user"]["alice"], 0,
            "510 micro-dollars round to 0 cents"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&all).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "it names every user: the owner's alone");
    }
}

#[tokio::test]
async fn sigterm_records_every_request_including_streams_still_running() {
    let setup = Setup::new().await;
    for _ in 0..3 {
        setup.mock.push(Reply::GatedStream);
    }
    let p = serve(&setup, &[]);
    let url = p.url.clone();
    // Two finished requests, three streams held open by the upstream.
    for _ in 0..2 {
        ask_at(&url, false).await.text().await.unwrap();
    }
    let mut streams = Vec::new();
    for _ in 0..3 {
        let url = url.clone();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        streams.push(tokio::spawn(async move {
            ask_at(&url, true).await.text().await.unwrap()
        }));
    }
    assert!(eventually(10, || async { setup.mock.requests().len() == 5 }).await);
    sigterm(&p.child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        setup.mock.release();
    }
    for s in streams {
        assert!(s.await.unwrap().contains("message_stop"));
    }
    let (code, _) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let rows = rows(&db_path(&setup));
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r.outcome == "complete" && r.tokens.output == OUTPUT_TOKENS)
    );
}

#[tokio::test]
async fn kill_9_keeps_the_database_whole_and_what_was_written_a_second_before() {
    let setup = Setup::new().await;
    let path = db_path(&setup);
    let mut p = serve(&setup, &[]);
    for _ in 0..10 {
        ask_at(&p.url, false).await.text().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
    assert_eq!(integrity(&path), "ok");
    assert_eq!(rows(&path).len(), 10);

    // Again, killed in the middle of a burst of writes; then the next start opens the
    // same database and goes on.
    let mut p = serve(&setup, &[]);
    let mut burst = Vec::new();
    for _ in 0..40 {
        let url = p.url.clone();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        burst.push(tokio::spawn(async move {
            let _ = client()
                .post(format!("{url}/v1/messages"))
                .header("authorization", format!("Bearer {ALICE_TOKEN}"))
                .json(&message_body(false))
                .send()
                .await;
        }));
    }
    let path_for_check = path.clone();
    assert!(
        eventually(10, || {
            let path = path_for_check.clone();
            async move { rows(&path).len() >= 20 }
        })
        .await
    );
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    for b in burst {
        let _ = b.await;
    }
    assert_eq!(integrity(&path), "ok");
    let after_crash = rows(&path).len();
    assert!(after_crash >= 20);

    let p = serve(&setup, &[]);
    ask_at(&p.url, false).await.text().await.unwrap();
    sigterm(&p.child);
    let (code, _) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(rows(&path).len(), after_crash + 1);
}

fn integrity(path: &Path) -> String {
    let conn = store::open_existing(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// `carpool usage` as a person runs it, against the database a running server writes.
fn usage(setup: &Setup, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", setup.dir.path())
        .env("TZ", "UTC")
        .arg("usage")
        .arg("--config")
        .arg(setup.config_path())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "carpool usage {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn carpool_usage_reports_while_the_server_runs() {
    let setup = Setup::new().await;
    let p = serve(&setup, &[]);
    for _ in 0..3 {
        ask_at(&p.url, true).await.text().await.unwrap();
    }
    ask_as(&p.url, BOB_TOKEN, &message_body(false), None)
        .await
        .text()
        .await
        .unwrap();
    // Recorded, but not a model call: reports do not count it.
    let counted = client()
        .post(format!("{}/v1/messages/count_tokens", p.url))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);
    let setup_ref = &setup;
    assert!(
        eventually(10, || async move {
            let report: Value =
                serde_json::from_str(&usage(setup_ref, &["--json", "--since", "1h"])).unwrap();
            report["total"]["requests"] == 4
        })
        .await,
        "the server's records become visible to `carpool usage`"
    );

    let by_user: Value =
        serde_json::from_str(&usage(&setup, &["--json", "--since", "1h", "--by", "user"])).unwrap();
    let rows = by_user["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["user"], "alice");
    assert_eq!(rows[0]["requests"], 3);
    assert_eq!(rows[0]["input_tokens"], 3 * INPUT_TOKENS);
    assert_eq!(rows[0]["cost_micros"], 3 * MOCK_COST);
    assert_eq!(rows[1]["user"], "bob");
    assert_eq!(by_user["total"]["cost_micros"], 4 * MOCK_COST);

    let table = usage(
        &setup,
        &["--since", "today", "--by", "day,user", "--tz", "UTC"],
    );
    assert!(table.contains("Date") && table.contains("User"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("alice") && l.contains(" 3 ")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("Total") && l.contains("<$0.01")),
        "{table}"
    );

    let csv = usage(&setup, &["--csv", "--since", "1h", "--by", "model"]);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("model,requests,errors,"));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("claude-sonnet-4-5-20250929,4,0,")
    );

    let ccm: Value =
        serde_json::from_str(&usage(&setup, &["--format", "ccm", "--since", "1h"])).unwrap();
    assert_eq!(ccm["combinations"][0]["total"]["request_count"], 4);
    assert_eq!(ccm["combinations"][0]["by_user"]["bob"]["request_count"], 1);

    sigterm(&p.child);
    let (code, _) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0);
}

#[tokio::test]
async fn an_unknown_model_is_warned_about_once_and_never_fails_the_client() {
    let setup = Setup::new().await;
    let p = serve(&setup, &[]);
    let mut body = message_body(false);
    body["model"] = json!("claude-future-9");
    for _ in 0..3 {
        let response = ask_as(&p.url, ALICE_TOKEN, &body, None).await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    sigterm(&p.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("no price known"))
        .count();
    assert_eq!(warnings, 1, "{stderr}");
    assert!(stderr.contains("claude-future-9"), "{stderr}");
    // Each request's line carries its tokens and says the cost is unknown.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("POST /v1/messages"))
        .collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines.iter().all(|l| l.contains("input_tokens=25")
            && l.contains("cost_usd=-")
            && l.contains("outcome=complete")),
        "{lines:?}"
    );
    assert_eq!(rows(&db_path(&setup)).len(), 3);
}
