//! The request path over real HTTP on loopback: what reaches the upstream, what comes
//! back, streaming, errors, timeouts.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;

fn alice(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .header("anthropic-version", "2023-06-01")
}

#[tokio::test]
async fn non_streaming_message_is_relayed_with_the_account_token_and_body_unchanged() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let body = serde_json::to_vec(&message_body(false)).unwrap();

    let response = client()
        .post(format!("{}/v1/messages?beta=true", carpool.url()))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .header("anthropic-version", "2026-10-21")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("x-claude-code-session-id", "session-123")
        .header("accept-encoding", "br")
        .header("x-forwarded-for", "10.1.2.3")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["content"][0]["text"], mock::MOCK_REPLY_TEXT);
    assert_eq!(reply["usage"]["output_tokens"], mock::OUTPUT_TOKENS);

    let seen = setup.mock.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.uri, "/v1/messages?beta=true", "query string kept");
    assert_eq!(r.body, body, "body forwarded byte for byte");
    assert_eq!(r.headers["authorization"], format!("Bearer {ACCESS}"));
    assert_eq!(
        r.headers["anthropic-beta"],
        "oauth-2025-04-20,claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    assert_eq!(r.headers["anthropic-version"], "2026-10-21");
    assert_eq!(r.headers["x-claude-code-session-id"], "session-123");
    assert_ne!(
        r.headers.get("accept-encoding").unwrap(),
        "br",
        "Carpool picks the encoding"
    );
    assert!(!r.headers.contains_key("x-forwarded-for"));
    assert!(!r.headers.contains_key("x-api-key"));
    let everything = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
    assert!(
        !everything.contains(ALICE_TOKEN),
        "the user token must never leave"
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn streaming_forwards_each_event_the_moment_it_arrives() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    setup.mock.push(Reply::GatedStream);

    let response = alice(client().post(format!("{}/v1/messages", carpool.url())))
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the first event must arrive while the upstream holds back the rest")
        .unwrap()
        .unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(first.starts_with("event: message_start\n"), "{first}");
    assert!(
        !setup
            .mock
            .state
            .gate_passed
            .load(std::sync::atomic::Ordering::SeqCst),
        "the upstream has not sent the second event yet"
    );
    // The upstream waits at least 500 ms before the next event, as a slow model does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    setup.mock.release();

    let mut rest = String::new();
    while let Some(chunk) = stream.next().await {
        rest.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let expected: String = mock::sse_events("claude-sonnet-4-5-20250929")[1..].concat();
    assert_eq!(rest, expected, "every later event, unchanged");
    carpool.shutdown().await;
}

#[tokio::test]
async fn count_tokens_and_models_are_relayed() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;

    let counted: Value = alice(client().post(format!("{}/v1/messages/count_tokens", carpool.url())))
        .json(&serde_json::json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["input_tokens"], 42);

    let models = alice(client().get(format!("{}/v1/models?limit=5", carpool.url())))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    let models: Value = models.json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "claude-sonnet-4-5-20250929");

    let one = alice(client().get(format!(
        "{}/v1/models/claude-sonnet-4-5-20250929",
        carpool.url()
    )))
    .send()
    .await
    .unwrap();
    assert_eq!(one.status(), 200);

    let uris: Vec<String> = setup.mock.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        [
            "/v1/messages/count_tokens",
            "/v1/models?limit=5",
            "/v1/models/claude-sonnet-4-5-20250929"
        ]
    );
    for r in setup.mock.requests() {
        assert_eq!(r.headers["authorization"], format!("Bearer {ACCESS}"));
    }
    carpool.shutdown().await;
}
