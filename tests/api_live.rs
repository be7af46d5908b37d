//! `GET /api/v1/requests/live` over real HTTP: each relayed request's metadata arrives
//! as a Server-Sent Event within 100 ms of the client having read its answer, refused
//! requests included, with no prompt, answer or token in it; an open feed and recent
//! `GET /status` calls keep the status watched; shutdown does not wait for open feeds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// One event as it arrived.
struct Arrived {
    at: Instant,
    event: String,
    /// The raw data line, to search for what must not be there.
    raw: String,
    data: Value,
}

/// Opens the feed and reads it in a task of `tasks`, stamping each event when its bytes
/// arrive. Returns once the feed's head arrived (the subscription exists then).
async fn open_feed(api: &Managed, tasks: &mut JoinSet<()>) -> mpsc::UnboundedReceiver<Arrived> {
    let response = api
        .admin(Method::GET, "/requests/live")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (tx, rx) = mpsc::unbounded_channel();
    tasks.spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = String::new();
                let mut raw = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        raw.push_str(data.trim());
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&raw).unwrap();
                if tx
                    .send(Arrived {
                        at,
                        event,
                        raw,
                        data,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

async fn next(feed: &mut mpsc::UnboundedReceiver<Arrived>) -> Arrived {
    tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("an event within 10 s")
        .expect("the feed is open")
}

/// The answer read to its end; returns when the client had the last byte.
async fn finished(response: reqwest::Response) -> (StatusCode, Instant) {
    let status = response.status();
    response.bytes().await.unwrap();
    (status, Instant::now())
}

/// Nothing of the request's content or of any secret in an event.
fn assert_metadata_only(arrived: &Arrived) {
    for secret in [
        ALICE_TOKEN,
        BOB_TOKEN,
        ACCESS,
        REFRESH,
        "<env>cwd: /tmp</env>",
        "\"hi\"",
        "some_future_field",
        mock::MOCK_REPLY_TEXT,
        "authorization",
    ] {
        assert!(!arrived.raw.contains(secret), "{secret} in {}", arrived.raw);
    }
}

#[tokio::test]
async fn each_request_arrives_within_100_ms_of_its_end_with_its_metadata_only() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let mut tasks = JoinSet::new();
    let mut feed = open_feed(&api, &mut tasks).await;

    for stream in [true, false] {
        let (status, done) = finished(ask(&api.server, stream).await).await;
        assert_eq!(status, StatusCode::OK);
        let arrived = next(&mut feed).await;
        // Measured from the client's last byte; an event that came before it counts
        // as no delay.
        let late = arrived.at.saturating_duration_since(done);
        assert!(
            late < Duration::from_millis(100),
            "stream={stream}: the event came {late:?} after the answer ended"
        );
        assert_eq!(arrived.event, "request");
        assert_metadata_only(&arrived);
        let e = &arrived.data;
        assert_eq!(e["user"], "alice");
        assert_eq!(e["account"], "main");
        assert_eq!(e["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(e["endpoint"], "messages");
        assert_eq!(e["method"], "POST");
        assert_eq!(e["path"], "/v1/messages");
        assert_eq!(e["status"], 200);
        assert_eq!(e["outcome"], "complete");
        assert_eq!(e["error"], Value::Null);
        assert_eq!(e["streamed"], stream);
        assert_eq!(e["input_tokens"], mock::INPUT_TOKENS);
        assert_eq!(e["output_tokens"], mock::OUTPUT_TOKENS);
        assert_eq!(e["cache_read_tokens"], 0);
        assert_eq!(
            e["cost_micros"], 255,
            "sonnet 4.5: 25 × $3 + 12 × $15 per million"
        );
        assert_eq!(e["cost_usd"], 0.000255);
        assert!(e["bytes"].as_u64().unwrap() > 0);
        let (duration, ttfb) = (e["duration_ms"].as_u64().unwrap(), e["ttfb_ms"].as_u64());
        assert!(ttfb.is_some_and(|t| t <= duration), "{e}");
        let at = e["at_ms"].as_i64().unwrap();
        assert!((now_ms() - at).abs() < 10_000);
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
    }

    // A refused token: no user, the outcome and why, nothing of the token.
    let (status, done) = finished(
        client()
            .post(format!("{}/v1/messages", api.server.url()))
            .bearer_auth("cpk-not-a-token-of-anyone-000000")
            .header("anthropic-version", "2023-06-01")
            .json(&message_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let arrived = next(&mut feed).await;
    assert!(arrived.at.saturating_duration_since(done) < Duration::from_millis(100));
    assert!(!arrived.raw.contains("cpk-not-a-token"), "{}", arrived.raw);
    assert_metadata_only(&arrived);
    let e = &arrived.data;
    assert_eq!(
        (&e["user"], &e["status"], &e["outcome"], &e["error"]),
        (
            &Value::Null,
            &json!(403),
            &json!("error"),
            &json!("bad_token")
        )
    );
    assert_eq!(e["account"], Value::Null);
    assert_eq!(e["cost_micros"], Value::Null);

    // A path Carpool does not relay is refused and shown too.
    let (status, _) = finished(
        client()
            .get(format!("{}/nothing/here", api.server.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let arrived = next(&mut feed).await;
    assert_eq!(arrived.data["error"], "not_found");
    assert_eq!(arrived.data["endpoint"], Value::Null);

    // The feed and the usage agree: the requests that passed authentication were
    // recorded, the others only shown.
    api.server.engine.ledger.flush_async().await;
    assert_eq!(api.server.engine.ledger.written(), 2);
    api.server.shutdown().await;
}

#[tokio::test]
async fn several_feeds_get_every_event_and_an_open_feed_keeps_the_status_watched() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let engine = api.server.engine.clone();
    assert_eq!(engine.status_watchers(), 0);
    let mut tasks = JoinSet::new();
    let mut first = open_feed(&api, &mut tasks).await;
    let mut second = open_feed(&api, &mut tasks).await;
    assert_eq!(engine.status_watchers(), 2);
    // Watched: the idle account's usage is polled without any request.
    assert!(eventually(5, || async { setup.mock.polls() > 0 }).await);

    finished(ask(&api.server, false).await).await;
    assert_eq!(next(&mut first).await.data["user"], "alice");
    assert_eq!(next(&mut second).await.data["user"], "alice");

    // Closing the feeds lets the watch go.
    tasks.shutdown().await;
    drop((first, second));
    assert!(eventually(5, || async { engine.status_watchers() == 0 }).await);

    // A GET /status keeps the status watched for a while after it.
    let status = api.admin(Method::GET, "/status").send().await.unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    assert_eq!(engine.status_watchers(), 1);
    api.admin(Method::GET, "/status").send().await.unwrap();
    assert_eq!(engine.status_watchers(), 1, "renewed, not doubled");
    api.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_an_open_feed() {
    let mut setup = Setup::new().await;
    setup.config["timeouts"] = json!({"shutdown_grace": "30s"});
    let api = setup.start_managed().await;
    let mut tasks = JoinSet::new();
    let mut feed = open_feed(&api, &mut tasks).await;
    let started = Instant::now();
    api.server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The feed ended rather than being cut mid-event.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .unwrap()
            .is_none()
    );
}
