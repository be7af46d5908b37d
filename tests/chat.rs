//! `POST /v1/chat/completions` with Claude models, through real HTTP against the mock
//! Anthropic API: the request goes upstream as Anthropic Messages on the user's Claude
//! account, the answer comes back as Chat Completions (whole and as chunks with the usage
//! chunk), the usage lands in the ledger under `chat_completions`, and errors keep
//! OpenAI's shape. (GPT models and the OpenAI SDK: tests/openai.rs.)

mod common;

use std::path::Path;

use carpool::ledger::{UsageRecord, store};
use common::mock::{INPUT_TOKENS, MOCK_REPLY_TEXT, OUTPUT_TOKENS};
use common::*;
use serde_json::{Value, json};

fn rows(path: &Path) -> Vec<UsageRecord> {
    let conn = store::open_existing(path).unwrap();
    let mut out = Vec::new();
    store::for_each_request(&conn, 0, i64::MAX, |r| out.push(r)).unwrap();
    out
}

async fn chat(base_url: &str, token: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{base_url}/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn request(stream: bool) -> Value {
    json!({
        "model": "fast",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "max_completion_tokens": 300,
        "stop": ["END"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
    })
}

#[tokio::test]
async fn a_claude_model_is_translated_both_ways_and_recorded() {
    let mut setup = Setup::new().await;
    setup.config["aliases"] = json!({"fast": "claude-sonnet-4-5-20250929"});
    let carpool = setup.start().await;

    let plain = chat(&carpool.url(), ALICE_TOKEN, &request(false)).await;
    assert_eq!(plain.status(), 200);
    assert!(
        plain.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let completion: Value = plain.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        MOCK_REPLY_TEXT
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["prompt_tokens"], INPUT_TOKENS);
    assert_eq!(completion["usage"]["completion_tokens"], OUTPUT_TOKENS);

    // Upstream: Anthropic Messages, with the alias resolved and the fields mapped; the
    // Carpool token never went there.
    let sent = setup.mock.requests();
    let last = sent.last().unwrap();
    assert!(last.uri.starts_with("/v1/messages"), "{}", last.uri);
    assert!(last.headers.get("anthropic-version").is_some());
    assert_eq!(last.headers["authorization"], format!("Bearer {ACCESS}"));
    let upstream: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(upstream["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(upstream["max_tokens"], 300);
    assert_eq!(upstream["stop_sequences"], json!(["END"]));
    assert_eq!(upstream["messages"][0]["role"], "user");
    assert!(upstream["system"].to_string().contains("Be brief."));

    let streamed = chat(&carpool.url(), ALICE_TOKEN, &request(true)).await;
    assert_eq!(streamed.status(), 200);
    assert!(
        streamed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = streamed.text().await.unwrap();
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, MOCK_REPLY_TEXT);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], OUTPUT_TOKENS);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );

    drop(carpool);
    let db = setup.dir.path().join("usage.db");
    assert!(
        eventually(10, || async { rows(&db).len() >= 2 }).await,
        "both requests recorded"
    );
    for row in rows(&db) {
        assert_eq!(row.endpoint, "chat_completions");
        assert_eq!(row.user, "alice");
        assert_eq!(row.model, "claude-sonnet-4-5-20250929");
        assert_eq!(row.tokens.input, INPUT_TOKENS);
        assert_eq!(row.tokens.output, OUTPUT_TOKENS);
        assert!(row.cost_micros.is_some_and(|c| c > 0), "{row:?}");
    }
}

#[tokio::test]
async fn refusals_are_in_openais_shape() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let url = carpool.url();

    let bad = chat(&url, "not-a-carpool-token-at-all", &request(false)).await;
    assert_eq!(bad.status(), 401);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    // A GPT model, and alice has no OpenAI account.
    let mut gpt = request(false);
    gpt["model"] = json!("gpt-5.1-codex");
    let none = chat(&url, ALICE_TOKEN, &gpt).await;
    assert_eq!(none.status(), 403);
    let body: Value = none.json().await.unwrap();
    assert!(
        error_message(&body).contains("Codex or OpenAI account"),
        "{body}"
    );

    // What Anthropic Messages cannot express is refused before anything goes upstream.
    let before = setup.mock.messages();
    let mut two = request(false);
    two["model"] = json!("claude-sonnet-4-5");
    two["n"] = json!(2);
    let refused = chat(&url, ALICE_TOKEN, &two).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["param"], "n");
    assert_eq!(setup.mock.messages(), before);

    // An upstream refusal keeps its status and becomes OpenAI's shape.
    setup.mock.push(common::mock::Reply::Status {
        status: 400,
        headers: vec![],
        body: json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}).to_string(),
    });
    let mut claude = request(false);
    claude["model"] = json!("claude-sonnet-4-5");
    let upstream = chat(&url, ALICE_TOKEN, &claude).await;
    assert_eq!(upstream.status(), 400);
    let body: Value = upstream.json().await.unwrap();
    assert_eq!(body["error"]["message"], "prompt is too long");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"].get("status").is_none(), "{body}");
}

#[tokio::test]
async fn models_are_listed_in_the_shape_the_client_asks_for() {
    let mut setup = Setup::new().await;
    setup.config["aliases"] = json!({"fast": "claude-haiku-4-5", "smart": "gpt-5.1-codex"});
    let carpool = setup.start().await;
    let openai: Value = client()
        .get(format!("{}/v1/models", carpool.url()))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openai["object"], "list");
    let ids: Vec<&str> = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"fast"), "{ids:?}");
    assert!(
        ids.iter().any(|id| id.starts_with("claude-sonnet")),
        "{ids:?}"
    );
    // alice has no OpenAI account: neither GPT models nor an alias to one.
    assert!(!ids.contains(&"smart"), "{ids:?}");
    assert!(!ids.iter().any(|id| id.starts_with("gpt-")), "{ids:?}");
    assert!(
        openai["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model")
    );

    // With `anthropic-version`: relayed to Anthropic's list.
    let before = setup.mock.requests().len();
    let anthropic = client()
        .get(format!("{}/v1/models", carpool.url()))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);
    let after = setup.mock.requests();
    assert_eq!(after.len(), before + 1);
    assert!(after.last().unwrap().uri.starts_with("/v1/models"));
}
