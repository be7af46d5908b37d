//! The OpenAI endpoints through a real Carpool over HTTP, in front of the OpenAI mock
//! (tests/common/openai_mock.rs) in API-key mode: OpenAI key accounts (`openai_api_key`)
//! whose `base_url` is the mock's `/v1`, next to a Claude login on the Anthropic mock.
//!
//! What a client sees (the Responses API relayed byte for byte, OpenAI's error shape,
//! `/v1/models` by who asks) and what the upstream sees (the key as the bearer, never the
//! Carpool token); the pool's behaviour for OpenAI accounts (stickiness on `session-id`,
//! failover after a quota 429 or a 500, Codex's windows in the status snapshot). Last, the
//! mock's own ChatGPT mode, and a Codex login (`"type": "codex"`) on it: its token and
//! account id upstream, a refresh after a 401 written back into auth.json.

mod common;

use common::openai_mock::{self, OpenAiMock, OpenAiReply};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Account `i`'s OpenAI key, the one its mock accepts.
fn key(i: usize) -> String {
    format!("sk-proj-mock-key-{i}-0000000000000000")
}

/// A Claude login (`main`, from [`Setup`]), `n` OpenAI keys (`k0`, `k1`, …) each on its
/// own mock, and with `pool` (`type`, `strategy`…) a pool `gpt` over them. Alice is bound
/// to `main` and to the pool (or `k0` without one); bob only to `main`.
struct OpenAi {
    setup: Setup,
    mocks: Vec<OpenAiMock>,
}

impl OpenAi {
    async fn new(n: usize, pool: Option<Value>) -> OpenAi {
        let mut setup = Setup::new().await;
        let mut mocks = Vec::new();
        let credentials = setup.config["credentials"].as_array_mut().unwrap();
        for i in 0..n {
            let mock = OpenAiMock::start(&key(i)).await;
            credentials.push(json!({
                "tag": format!("k{i}"), "type": "openai_api_key", "api_key": key(i),
                "base_url": mock.api_base(),
            }));
            mocks.push(mock);
        }
        let target = match pool {
            Some(mut pool) => {
                pool["tag"] = json!("gpt");
                pool["credentials"] = json!((0..n).map(|i| format!("k{i}")).collect::<Vec<_>>());
                credentials.push(pool);
                "gpt"
            }
            None => "k0",
        };
        setup.config["users"][0]["credential"] = json!(["main", target]);
        setup.config["users"][1]["credential"] = json!("main");
        OpenAi { setup, mocks }
    }

    /// Model turns each account's upstream received.
    fn served(&self) -> Vec<usize> {
        self.mocks.iter().map(OpenAiMock::turns).collect()
    }
}

/// A Codex-like Responses request body.
fn responses_body(stream: bool) -> Value {
    json!({
        "model": "gpt-5.1-codex",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": false,
        "stream": stream,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "cache-key-1",
        "some_future_field": {"nested": [1, 2, 3]},
    })
}

/// `POST /v1/responses` with `token` as the bearer, in the conversation `session`.
async fn responses(
    base: &str,
    token: &str,
    session: Option<&str>,
    stream: bool,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{base}/v1/responses"))
        .bearer_auth(token)
        .header("originator", "codex_cli_rs")
        .json(&responses_body(stream));
    if let Some(s) = session {
        request = request.header("session-id", s);
    }
    request.send().await.unwrap()
}

/// Alice's turn, answered 200; the body.
async fn ok(base: &str, session: Option<&str>) -> bytes::Bytes {
    let r = responses(base, ALICE_TOKEN, session, false).await;
    let status = r.status();
    let body = r.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    body
}

/// Every request reached the upstream with its account's key and nothing of the Carpool
/// tokens.
fn assert_key_only(mock: &OpenAiMock, key: &str) {
    for r in mock.requests() {
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {key}").as_str()),
            "{} {}",
            r.method,
            r.uri
        );
        assert!(r.headers.get("x-api-key").is_none());
        assert!(r.headers.get("chatgpt-account-id").is_none());
        let everything = format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body));
        for token in [ALICE_TOKEN, BOB_TOKEN] {
            assert!(
                !everything.contains(token),
                "a Carpool token reached the upstream in {} {}",
                r.method,
                r.uri
            );
        }
    }
}

fn account_status(status: &Value, tag: &str) -> Value {
    status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["tag"] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("no account {tag} in {status}"))
}

fn snapshot(carpool: &carpool::RunningServer) -> Value {
    serde_json::to_value(carpool.engine.status()).unwrap()
}

/// An OpenAI-shaped error: `{"error": {"message", "type", "param", "code"}}`, nothing of
/// Anthropic's `{"type": "error", …}`.
fn assert_openai_error(body: &Value, kind: &str) {
    let error = &body["error"];
    assert!(error.is_object(), "{body}");
    assert_eq!(error["type"], kind, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error.get("param").is_some(), "{body}");
    assert!(error.get("code").is_some(), "{body}");
    assert!(body.get("type").is_none(), "not Anthropic's shape: {body}");
}

#[tokio::test]
async fn responses_are_relayed_byte_for_byte_with_the_key_as_the_bearer() {
    let openai = OpenAi::new(1, None).await;
    let carpool = openai.setup.start().await;
    let mock = &openai.mocks[0];

    // Not streaming: the Response object as the upstream sent it.
    let r = responses(&carpool.url(), ALICE_TOKEN, Some("s-1"), false).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let plain = r.bytes().await.unwrap();
    assert_eq!(plain, mock.answers()[0]);
    let object: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(object["object"], "response");
    assert_eq!(
        object["output"][0]["content"][0]["text"],
        openai_mock::REPLY_TEXT
    );
    assert_eq!(
        object["usage"]["input_tokens_details"]["cached_tokens"],
        openai_mock::CACHED_TOKENS
    );

    // Streaming: every event, in order, as sent.
    let r = responses(&carpool.url(), ALICE_TOKEN, Some("s-1"), true).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let streamed = r.bytes().await.unwrap();
    assert_eq!(streamed, mock.answers()[1]);
    let text = String::from_utf8(streamed.to_vec()).unwrap();
    assert!(text.starts_with("event: response.created\n"), "{text}");
    assert!(
        text.contains("event: response.output_text.delta\n"),
        "{text}"
    );
    assert!(
        text.trim_end()
            .rsplit("\n\n")
            .next()
            .unwrap()
            .starts_with("event: response.completed\n"),
        "{text}"
    );

    // Compaction goes to the upstream's compact path.
    let r = client()
        .post(format!("{}/v1/responses/compact", carpool.url()))
        .bearer_auth(ALICE_TOKEN)
        .json(&json!({"model": "gpt-5.1-codex", "input": [], "instructions": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), mock.answers()[2]);

    // What the upstream got: the request body untouched, on the paths under the key's
    // base URL, with the key as the bearer and the client's Codex headers.
    let seen = mock.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        paths,
        ["/v1/responses", "/v1/responses", "/v1/responses/compact"]
    );
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent, responses_body(false));
    assert_eq!(seen[0].headers["originator"], "codex_cli_rs");
    assert_eq!(seen[0].headers["session-id"], "s-1");
    assert_key_only(mock, &key(0));
    // Nothing reached the Claude upstream.
    assert!(openai.setup.mock.requests().is_empty());
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_session_id_keeps_a_conversation_on_one_account() {
    let openai = OpenAi::new(
        2,
        Some(json!({"type": "balancer", "strategy": "round_robin"})),
    )
    .await;
    let carpool = openai.setup.start().await;
    let base = carpool.url();
    for i in 0..8 {
        ok(&base, Some("the-conversation")).await;
        // Other conversations in between move the round-robin counter along.
        ok(&base, Some(&format!("other-{i}"))).await;
    }
    let with_session = |mock: &OpenAiMock| {
        mock.requests()
            .iter()
            .filter(|r| {
                r.headers
                    .get("session-id")
                    .is_some_and(|v| v == "the-conversation")
            })
            .count()
    };
    let counts: Vec<usize> = openai.mocks.iter().map(with_session).collect();
    assert!(counts == [8, 0] || counts == [0, 8], "{counts:?}");
    // The others were spread over both accounts.
    let served = openai.served();
    assert_eq!(served.iter().sum::<usize>(), 16);
    assert!(served.iter().all(|&n| n >= 4), "{served:?}");
    assert_key_only(&openai.mocks[0], &key(0));
    assert_key_only(&openai.mocks[1], &key(1));
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_quota_429_fails_over_and_pauses_the_first_account() {
    let openai = OpenAi::new(2, Some(json!({"type": "fallback"}))).await;
    let api = openai.setup.start_managed().await;
    let base = api.server.url();
    openai.mocks[0].push(OpenAiReply::UsageLimit { resets_in: 3600 });
    let now = openai_mock::unix_now();

    // The client never sees the 429: the second account answers.
    let body = ok(&base, Some("s")).await;
    assert_eq!(body, openai.mocks[1].answers()[0]);
    assert_eq!(openai.served(), [1, 1]);

    // The first account is out until its window resets, as the status API shows…
    let (status, snapshot) = api.call(Method::GET, "/status", None).await;
    assert_eq!(status, 200, "{snapshot}");
    let k0 = account_status(&snapshot, "k0");
    assert_eq!(k0["state"]["state"], "rate_limited", "{k0}");
    let until = k0["state"]["until"].as_i64().unwrap();
    assert!(
        (now + 3590..=now + 3610).contains(&until),
        "{until} vs {now}"
    );
    assert_eq!(k0["five_hour"]["percent"], 100, "{k0}");
    assert_eq!(
        account_status(&snapshot, "k1")["state"]["state"],
        "ready",
        "{snapshot}"
    );
    // … and nothing more goes to it meanwhile.
    ok(&base, None).await;
    ok(&base, Some("s")).await;
    assert_eq!(openai.served(), [1, 3]);
    api.server.shutdown().await;
}

#[tokio::test]
async fn a_500_fails_over_plain_and_streaming() {
    let openai = OpenAi::new(2, Some(json!({"type": "fallback"}))).await;
    let carpool = openai.setup.start().await;
    let base = carpool.url();

    openai.mocks[0].push(OpenAiReply::ServerError);
    let body = ok(&base, None).await;
    assert_eq!(body, openai.mocks[1].answers()[0]);
    assert_eq!(openai.served(), [1, 1]);

    openai.mocks[0].push(OpenAiReply::ServerError);
    let r = responses(&base, ALICE_TOKEN, None, true).await;
    assert_eq!(r.status(), 200);
    let streamed = r.bytes().await.unwrap();
    assert_eq!(streamed, openai.mocks[1].answers()[1]);
    assert!(String::from_utf8_lossy(&streamed).contains("event: response.completed\n"));
    // The first account stays in service for the next request.
    ok(&base, None).await;
    assert_eq!(openai.served(), [3, 2]);
    carpool.shutdown().await;
}

#[tokio::test]
async fn codex_windows_reach_the_status_in_either_order() {
    let openai = OpenAi::new(1, None).await;
    let carpool = openai.setup.start().await;
    let base = carpool.url();
    let now = openai_mock::unix_now();

    // Primary = 5 hours, secondary = weekly.
    openai.mocks[0].set_headers(&openai_mock::codex_windows(42.0, 3600, 7.0, 3 * 86_400));
    ok(&base, None).await;
    let k0 = account_status(&snapshot(&carpool), "k0");
    assert_eq!(k0["five_hour"]["percent"], 42, "{k0}");
    assert_eq!(k0["weekly"]["percent"], 7, "{k0}");
    let resets = |w: &str| k0[w]["resets_at"].as_i64().unwrap();
    assert!(
        (now + 3590..=now + 3610).contains(&resets("five_hour")),
        "{k0}"
    );
    assert!(
        (now + 3 * 86_400 - 10..=now + 3 * 86_400 + 10).contains(&resets("weekly")),
        "{k0}"
    );

    // Reversed: the weekly window as primary. `window-minutes` decides, not the position.
    // (Later resets: a window's reset only moves forward.)
    openai.mocks[0].set_headers(&openai_mock::codex_windows_reversed(
        55.0,
        7200,
        9.0,
        4 * 86_400,
    ));
    ok(&base, None).await;
    let k0 = account_status(&snapshot(&carpool), "k0");
    assert_eq!(k0["five_hour"]["percent"], 55, "{k0}");
    assert_eq!(k0["weekly"]["percent"], 9, "{k0}");
    let resets = |w: &str| k0[w]["resets_at"].as_i64().unwrap();
    assert!(
        (now + 7190..=now + 7210).contains(&resets("five_hour")),
        "{k0}"
    );
    assert!(
        (now + 4 * 86_400 - 10..=now + 4 * 86_400 + 10).contains(&resets("weekly")),
        "{k0}"
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_bad_carpool_token_is_refused_in_openais_shape() {
    let openai = OpenAi::new(1, None).await;
    let carpool = openai.setup.start().await;
    for stream in [false, true] {
        let r = responses(
            &carpool.url(),
            "cpk-not-a-real-token-000000000",
            None,
            stream,
        )
        .await;
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = r.json().await.unwrap();
        assert_openai_error(&body, "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    }
    // No token at all.
    let r = client()
        .post(format!("{}/v1/responses", carpool.url()))
        .json(&responses_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error");
    assert!(openai.mocks[0].requests().is_empty());
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_user_without_an_openai_account_gets_403() {
    let openai = OpenAi::new(1, None).await;
    let carpool = openai.setup.start().await;
    let r = responses(&carpool.url(), BOB_TOKEN, None, false).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_openai_error(&body, "permission_error");
    assert!(openai.mocks[0].requests().is_empty());
    // Bob's Claude binding still works.
    let r = client()
        .post(format!("{}/v1/messages", carpool.url()))
        .bearer_auth(BOB_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    carpool.shutdown().await;
}

#[tokio::test]
async fn models_go_to_the_provider_whose_client_asks() {
    let openai = OpenAi::new(1, None).await;
    let carpool = openai.setup.start().await;
    let models = |anthropic: bool| {
        let mut r = client()
            .get(format!("{}/v1/models", carpool.url()))
            .bearer_auth(ALICE_TOKEN);
        if anthropic {
            r = r.header("anthropic-version", "2023-06-01");
        }
        r.send()
    };

    // An OpenAI SDK (no anthropic-version, no client_version): Carpool's own OpenAI list
    // of what the user's bindings reach, asking no upstream.
    let r = models(false).await.unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().any(|id| id.starts_with("gpt-5")), "{ids:?}");
    assert!(ids.iter().any(|id| id.starts_with("claude-")), "{ids:?}");
    assert!(openai.mocks[0].requests().is_empty());

    // Codex asks with `client_version`: its backend's list, relayed with the key.
    let r = client()
        .get(format!(
            "{}/v1/models?client_version=0.169.0",
            carpool.url()
        ))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list, openai_mock::api_model_list());
    let seen = openai.mocks[0].requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("GET", "/v1/models?client_version=0.169.0")
    );
    assert_key_only(&openai.mocks[0], &key(0));
    assert!(openai.setup.mock.requests().is_empty());

    // An Anthropic client: Anthropic's list, from the Claude login.
    let r = models(true).await.unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["data"][0]["type"], "model", "{list}");
    assert_eq!(list["has_more"], false, "{list}");
    assert_eq!(openai.setup.mock.requests().len(), 1);
    assert_eq!(openai.mocks[0].requests().len(), 1);
    carpool.shutdown().await;
}

/// The `(event name, data)` pairs of an SSE body.
fn sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

/// The mock's ChatGPT mode, which a `codex` account points at (its `base_url`
/// `codex_base()`, its `token_url` `token_url()`): the token *and* the account id are
/// required, the stream is framed as the Responses API frames it, a quota 429 looks like
/// ChatGPT's, and a refresh rotates the accepted token.
#[tokio::test]
async fn the_mocks_chatgpt_backend_speaks_codexs_wire_format() {
    use openai_mock::{CODEX_ACCESS, CODEX_ACCOUNT_ID, CODEX_REFRESH, OpenAiTokenReply};
    let mock = OpenAiMock::start(&key(0)).await;
    let http = client();
    let turn = |token: &str, account: Option<&str>| {
        let mut r = http
            .post(format!("{}/responses", mock.codex_base()))
            .bearer_auth(token)
            .json(&responses_body(true));
        if let Some(a) = account {
            r = r.header("chatgpt-account-id", a);
        }
        r.send()
    };
    // The token alone, or the API key, is not enough.
    assert_eq!(turn(CODEX_ACCESS, None).await.unwrap().status(), 401);
    assert_eq!(
        turn(&key(0), Some(CODEX_ACCOUNT_ID))
            .await
            .unwrap()
            .status(),
        401
    );
    // The API-key paths do not take the ChatGPT token.
    let r = http
        .post(format!("{}/responses", mock.api_base()))
        .bearer_auth(CODEX_ACCESS)
        .json(&responses_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error");

    mock.set_headers(&openai_mock::codex_windows(12.0, 3600, 34.0, 86_400));
    let r = turn(CODEX_ACCESS, Some(CODEX_ACCOUNT_ID)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-codex-primary-used-percent"], "12");
    assert_eq!(r.headers()["x-codex-secondary-window-minutes"], "10080");
    let events = sse(&r.text().await.unwrap());
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, openai_mock::REPLY_TEXT);
    let usage = &events.last().unwrap().1["response"]["usage"];
    assert_eq!(usage["input_tokens"], openai_mock::INPUT_TOKENS);
    assert_eq!(
        usage["input_tokens_details"]["cached_tokens"],
        openai_mock::CACHED_TOKENS
    );
    assert_eq!(
        usage["output_tokens_details"]["reasoning_tokens"],
        openai_mock::REASONING_TOKENS
    );

    // A quota 429, as ChatGPT sends it.
    mock.push(OpenAiReply::UsageLimit { resets_in: 600 });
    let r = turn(CODEX_ACCESS, Some(CODEX_ACCOUNT_ID)).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-codex-primary-used-percent"], "100");
    assert_eq!(r.headers()["x-codex-rate-limit-reached-type"], "primary");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["resets_in_seconds"], 600);

    // Compaction, Codex's model list and the usage endpoint.
    let get = |path: &str| {
        http.get(format!("{}{path}", mock.url()))
            .bearer_auth(CODEX_ACCESS)
            .header("chatgpt-account-id", CODEX_ACCOUNT_ID)
            .send()
    };
    let compact: Value = http
        .post(format!("{}/responses/compact", mock.codex_base()))
        .bearer_auth(CODEX_ACCESS)
        .header("chatgpt-account-id", CODEX_ACCOUNT_ID)
        .json(&json!({"model": "gpt-5.1-codex", "input": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(compact["output"].as_array().is_some_and(|o| !o.is_empty()));
    let models: Value = get("/backend-api/codex/models?client_version=0.169.0")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["models"][0]["slug"], openai_mock::DEFAULT_MODEL);
    let usage: Value = get("/backend-api/wham/usage")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["rate_limit"]["primary_window"]["used_percent"], 12.0);
    assert_eq!(mock.usage_polls(), 1);

    // A refresh (Codex's JSON body) rotates the accepted token; a refused one says why.
    let refresh = |token: &str| {
        http.post(mock.token_url())
            .json(
                &json!({"client_id": "app_mock", "grant_type": "refresh_token",
                          "refresh_token": token}),
            )
            .send()
    };
    let tokens: Value = refresh(CODEX_REFRESH).await.unwrap().json().await.unwrap();
    let (access, rotated) = mock.last_issued().unwrap();
    assert_eq!(tokens["access_token"], access.as_str());
    assert_eq!(tokens["refresh_token"], rotated.as_str());
    assert_eq!(tokens["id_token"].as_str().unwrap().split('.').count(), 3);
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(
        turn(CODEX_ACCESS, Some(CODEX_ACCOUNT_ID))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        turn(&access, Some(CODEX_ACCOUNT_ID))
            .await
            .unwrap()
            .status(),
        200
    );
    mock.push_token(OpenAiTokenReply::Refused("refresh_token_reused".into()));
    let r = refresh(&rotated).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "refresh_token_reused");
    assert_eq!(mock.refreshes(), 2);
}

/// A Codex login (`"type": "codex"`) on the mock's ChatGPT mode: the turn goes to
/// `…/backend-api/codex/responses` with the login's token and its account id, relayed byte
/// for byte; when ChatGPT rejects the token, Carpool refreshes it (Codex's JSON refresh)
/// and sends the request again, and the new tokens are written back into auth.json with
/// every other field kept.
#[tokio::test]
async fn a_codex_login_reaches_chatgpt_and_refreshes_after_a_401() {
    use openai_mock::{CODEX_ACCESS, CODEX_ACCOUNT_ID, CODEX_REFRESH};
    let mut setup = Setup::new().await;
    let mock = OpenAiMock::start(&key(0)).await;
    let auth = setup.dir.path().join("codex-auth.json");
    let last_refresh = jiff::Timestamp::now().to_string();
    std::fs::write(
        &auth,
        openai_mock::auth_json(CODEX_ACCESS, CODEX_REFRESH, &last_refresh),
    )
    .unwrap();
    setup.config["credentials"].as_array_mut().unwrap().push(
        json!({"tag": "codex", "type": "codex", "credential_path": auth,
                     "base_url": mock.codex_base(), "token_url": mock.token_url()}),
    );
    setup.config["users"][0]["credential"] = json!(["main", "codex"]);
    setup.config["users"][1]["credential"] = json!("main");
    let carpool = setup.start().await;

    let r = responses(&carpool.url(), ALICE_TOKEN, Some("s-1"), true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), mock.answers()[0]);
    // (Besides the turns, Carpool may poll the login's usage at wham/usage.)
    let seen: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.uri != "/backend-api/wham/usage")
        .collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/backend-api/codex/responses");
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {CODEX_ACCESS}")
    );
    assert_eq!(seen[0].headers["chatgpt-account-id"], CODEX_ACCOUNT_ID);
    assert_eq!(seen[0].headers["session-id"], "s-1");
    assert_eq!(mock.refreshes(), 0);

    // The first request started a poll of the login's usage in the background (its
    // figures were unknown): let it finish with the old token before that one goes stale.
    eventually(5, || async { mock.usage_polls() >= 1 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // ChatGPT no longer takes the token (refreshed elsewhere, say): one refresh, one resend.
    mock.set_access("codex-mock-access-rotated-elsewhere");
    let r = responses(&carpool.url(), ALICE_TOKEN, Some("s-1"), true).await;
    assert_eq!(r.status(), 200);
    assert!(String::from_utf8_lossy(&r.bytes().await.unwrap()).contains("response.completed"));
    assert_eq!(mock.refreshes(), 1);
    let refresh_body = mock.state.refresh_bodies.lock().unwrap()[0].clone();
    assert_eq!(refresh_body["grant_type"], "refresh_token");
    assert_eq!(refresh_body["refresh_token"], CODEX_REFRESH);
    let (access, rotated) = mock.last_issued().unwrap();
    let seen = mock.requests();
    let turns: Vec<_> = seen
        .iter()
        .filter(|r| r.uri == "/backend-api/codex/responses")
        .collect();
    assert_eq!(turns.len(), 3, "the first, its 401, the resend");
    assert_eq!(
        turns[2].headers["authorization"],
        format!("Bearer {access}")
    );
    assert_eq!(turns[2].headers["chatgpt-account-id"], CODEX_ACCOUNT_ID);
    for r in &seen {
        let everything = format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(!everything.contains(ALICE_TOKEN), "{} {}", r.method, r.uri);
    }

    // auth.json holds the new tokens and everything else as it was.
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    assert_eq!(written["tokens"]["access_token"], access.as_str());
    assert_eq!(written["tokens"]["refresh_token"], rotated.as_str());
    assert_eq!(written["tokens"]["account_id"], CODEX_ACCOUNT_ID);
    assert_eq!(written["auth_mode"], "chatgpt");
    assert_eq!(written["agent_identity"], json!({"keep": "me"}));
    assert_ne!(written["last_refresh"], last_refresh.as_str());
    carpool.shutdown().await;
}

/// A Codex login's answers land in the ledger with their tokens (cached input and
/// reasoning told apart), cost, session and installation id; when its 5-hour window
/// reaches the owner's reserve it pauses, and a request gets OpenAI's 429 with
/// `retry-after` at the reset.
#[tokio::test]
async fn a_codex_logins_usage_is_recorded_and_its_reserve_pauses_it() {
    use openai_mock::{
        CACHED_TOKENS, CODEX_ACCESS, CODEX_REFRESH, INPUT_TOKENS, OUTPUT_TOKENS, REASONING_TOKENS,
    };
    let mut setup = Setup::new().await;
    let mock = OpenAiMock::start(&key(0)).await;
    let auth = setup.dir.path().join("codex-auth.json");
    let last_refresh = jiff::Timestamp::now().to_string();
    std::fs::write(
        &auth,
        openai_mock::auth_json(CODEX_ACCESS, CODEX_REFRESH, &last_refresh),
    )
    .unwrap();
    setup.config["credentials"]
        .as_array_mut()
        .unwrap()
        .push(json!({
        "tag": "codex", "type": "codex", "credential_path": auth, "reserve_5h": 20,
        "base_url": mock.codex_base(), "token_url": mock.token_url()}));
    setup.config["users"][0]["credential"] = json!(["main", "codex"]);
    setup.config["users"][1]["credential"] = json!("main");
    let carpool = setup.start().await;

    let mut request = client()
        .post(format!("{}/v1/responses", carpool.url()))
        .bearer_auth(ALICE_TOKEN)
        .header("session-id", "codex-s-9")
        .header("x-codex-installation-id", "install-9")
        .json(&responses_body(true));
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    // The window reaches the reserve (80 % of it used, 20 % kept for the owner).
    mock.set_headers(&openai_mock::codex_windows(81.0, 3600, 10.0, 5 * 86_400));
    request = client()
        .post(format!("{}/v1/responses", carpool.url()))
        .bearer_auth(ALICE_TOKEN)
        .json(&responses_body(false));
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let refused = responses(&carpool.url(), ALICE_TOKEN, None, true).await;
    assert_eq!(refused.status(), 429);
    let retry: i64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3700).contains(&retry), "{retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "usage_limit_reached");

    drop(carpool);
    let db = setup.dir.path().join("usage.db");
    let read = || {
        let conn = carpool::ledger::store::open_existing(&db).unwrap();
        let mut out = Vec::new();
        carpool::ledger::store::for_each_request(&conn, 0, i64::MAX, |r| out.push(r)).unwrap();
        out
    };
    assert!(
        eventually(10, || async {
            read().iter().filter(|r| r.status == 200).count() == 2
        })
        .await
    );
    let rows: Vec<_> = read().into_iter().filter(|r| r.status == 200).collect();
    for row in &rows {
        assert_eq!(row.endpoint, "responses");
        assert_eq!(row.credential, "codex");
        assert_eq!(row.outcome, "complete");
        assert_eq!(row.tokens.input, INPUT_TOKENS - CACHED_TOKENS);
        assert_eq!(row.tokens.cache_read, CACHED_TOKENS);
        assert_eq!(row.tokens.output, OUTPUT_TOKENS);
        assert_eq!(row.tokens.reasoning, REASONING_TOKENS);
        assert!(row.cost_micros.is_some_and(|c| c > 0), "{row:?}");
    }
    assert_eq!(
        (rows[0].session.as_str(), rows[0].device.as_str()),
        ("codex-s-9", "install-9")
    );
}
