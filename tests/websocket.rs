//! Codex's WebSocket transport through Carpool: `GET /v1/responses` with
//! `Upgrade: websocket` is authenticated, sent upstream with the account's key (the
//! client's compression offer left out, `OpenAI-Beta` added), answered `101` with the
//! handshake headers sing-box forwards, then joined byte for byte; each answer on the
//! socket is one usage row, and `codex.rate_limits` events update the account's windows.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use carpool::ledger::{UsageRecord, store};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

const KEY: &str = "sk-proj-websocket-key-0001";

fn rows(path: &Path) -> Vec<UsageRecord> {
    let conn = store::open_existing(path).unwrap();
    let mut out = Vec::new();
    store::for_each_request(&conn, 0, i64::MAX, |r| out.push(r)).unwrap();
    out
}

/// The events of one answer, as the upstream sends them.
fn answer(n: u32) -> Vec<Value> {
    let id = format!("resp_{n}");
    vec![
        json!({"type": "response.created", "sequence_number": 0,
               "response": {"id": id, "object": "response", "status": "in_progress", "model": "gpt-5.1-codex"}}),
        json!({"type": "codex.rate_limits", "rate_limits": {
               "primary": {"used_percent": 12.0, "reset_at": 4_000_000_000_i64, "window_minutes": 300},
               "secondary": {"used_percent": 40.0, "reset_at": 4_000_500_000_i64, "window_minutes": 10080}}}),
        json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
               "output_index": 0, "content_index": 0, "delta": format!("answer {n}")}),
        json!({"type": "response.completed", "sequence_number": 2,
               "response": {"id": id, "object": "response", "status": "completed", "model": "gpt-5.1-codex",
                            "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10},
                                      "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2},
                                      "total_tokens": 37}}}),
    ]
}

/// A WebSocket upstream at `/v1/responses`: answers each `response.create` with
/// [`answer`]; keeps the handshake's headers.
async fn upstream() -> (String, Arc<Mutex<Vec<http::HeaderMap>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback type
                let callback = |request: &Request, mut response: Response| {
                    assert_eq!(request.uri().path(), "/v1/responses");
                    seen.lock().unwrap().push(request.headers().clone());
                    let h = response.headers_mut();
                    h.insert("x-codex-primary-used-percent", "11".parse().unwrap());
                    h.insert("x-codex-primary-window-minutes", "300".parse().unwrap());
                    h.insert("openai-model", "gpt-5.1-codex".parse().unwrap());
                    h.insert("set-cookie", "upstream-session=secret".parse().unwrap());
                    Ok(response)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                let mut n = 0;
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let request: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(request["type"], "response.create");
                    n += 1;
                    for event in answer(n) {
                        ws.send(Message::text(event.to_string())).await.unwrap();
                    }
                }
            });
        }
    });
    (url, handshakes)
}

#[tokio::test]
async fn a_codex_websocket_is_relayed_and_each_answer_recorded() {
    let (base_url, handshakes) = upstream().await;
    let mut setup = Setup::new().await;
    setup.config["credentials"].as_array_mut().unwrap().push(
        json!({"tag": "gpt", "type": "openai_api_key", "api_key": KEY, "base_url": base_url}),
    );
    setup.config["users"][0]["credential"] = json!(["main", "gpt"]);
    let carpool = setup.start().await;
    let address = carpool.url().trim_start_matches("http://").to_owned();

    let mut request = format!("ws://{address}/v1/responses")
        .into_client_request()
        .unwrap();
    let h = request.headers_mut();
    h.insert(
        "authorization",
        format!("Bearer {ALICE_TOKEN}").parse().unwrap(),
    );
    h.insert("session-id", "codex-session-1".parse().unwrap());
    h.insert("x-codex-installation-id", "install-1".parse().unwrap());
    h.insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let tcp = TcpStream::connect(&address).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-codex-primary-used-percent"], "11");
    assert_eq!(response.headers()["openai-model"], "gpt-5.1-codex");
    assert!(response.headers().get("set-cookie").is_none());

    // The upstream got the key, not the Carpool token, no compression offer, and the beta.
    let upstream = handshakes.lock().unwrap()[0].clone();
    assert_eq!(upstream["authorization"], format!("Bearer {KEY}"));
    assert_eq!(upstream["openai-beta"], "responses_websockets=2026-02-06");
    assert_eq!(upstream["session-id"], "codex-session-1");
    assert!(upstream.get("sec-websocket-extensions").is_none());
    assert!(!format!("{upstream:?}").contains(ALICE_TOKEN));

    for n in 1..=2 {
        let create = json!({"type": "response.create", "model": "gpt-5.1-codex", "input": [], "store": false});
        ws.send(Message::text(create.to_string())).await.unwrap();
        let mut got = Vec::new();
        while got.len() < answer(n).len() {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(text) => got.push(serde_json::from_str::<Value>(&text).unwrap()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, answer(n), "answer {n} arrives as sent");
    }
    ws.close(None).await.unwrap();

    // The account's windows, from the `codex.rate_limits` events.
    let status = carpool.engine.status();
    let account = status.accounts.iter().find(|a| a.tag == "gpt").unwrap();
    assert_eq!(account.five_hour.percent, Some(12), "{account:?}");
    assert_eq!(account.weekly.percent, Some(40), "{account:?}");

    drop(carpool);
    let db = setup.dir.path().join("usage.db");
    assert!(eventually(10, || async { rows(&db).len() >= 2 }).await);
    let rows = rows(&db);
    assert_eq!(
        rows.len(),
        2,
        "one row per answer, none for the handshake: {rows:?}"
    );
    for row in rows {
        assert_eq!(row.endpoint, "responses");
        assert_eq!(row.user, "alice");
        assert_eq!(row.credential, "gpt");
        assert_eq!(row.model, "gpt-5.1-codex");
        assert_eq!(row.session, "codex-session-1");
        assert_eq!(row.device, "install-1");
        assert_eq!(row.outcome, "complete");
        assert_eq!(
            (row.tokens.input, row.tokens.cache_read, row.tokens.output),
            (20, 10, 7)
        );
        assert_eq!(row.tokens.reasoning, 2);
        assert!(row.cost_micros.is_some_and(|c| c > 0));
    }
}

#[tokio::test]
async fn a_websocket_without_a_valid_token_is_refused_before_any_upstream() {
    let (base_url, handshakes) = upstream().await;
    let mut setup = Setup::new().await;
    setup.config["credentials"].as_array_mut().unwrap().push(
        json!({"tag": "gpt", "type": "openai_api_key", "api_key": KEY, "base_url": base_url}),
    );
    setup.config["users"][0]["credential"] = json!(["main", "gpt"]);
    setup.config["users"][1]["credential"] = json!("main");
    let carpool = setup.start().await;
    let address = carpool.url().trim_start_matches("http://").to_owned();
    let mut request = format!("ws://{address}/v1/responses")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        "Bearer not-a-carpool-token".parse().unwrap(),
    );
    let tcp = TcpStream::connect(&address).await.unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    // bob is bound to the Claude login only: 403.
    let mut request = format!("ws://{address}/v1/responses")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {BOB_TOKEN}").parse().unwrap(),
    );
    let tcp = TcpStream::connect(&address).await.unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    assert!(handshakes.lock().unwrap().is_empty());
    // A plain GET of the path is not an upgrade: 405.
    let plain = client()
        .get(format!("{}/v1/responses", carpool.url()))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 405);
}
