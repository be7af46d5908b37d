//! A mock OpenAI upstream on 127.0.0.1: both the ChatGPT backend a Codex login reaches and
//! the public API an OpenAI key reaches, plus the Codex OAuth token endpoint.
//!
//! It speaks the real wire formats (docs/protocol.md §7, §12; event and object shapes as
//! typed in openai-python's `types/responses/` and Codex's `codex-rs`):
//!
//! - **ChatGPT mode** (a Codex login's base URL is [`OpenAiMock::codex_base`]):
//!   `POST /backend-api/codex/responses` (always SSE, as ChatGPT's backend answers),
//!   `POST /backend-api/codex/responses/compact`, `GET /backend-api/codex/models` (Codex's
//!   `{"models": [ModelInfo…]}`), `GET /backend-api/wham/usage`. Each needs
//!   `Authorization: Bearer <access token>` *and* `ChatGPT-Account-Id: <account id>`, and
//!   answers 401 otherwise.
//! - **API-key mode** (an OpenAI key's base URL is [`OpenAiMock::api_base`]):
//!   `POST /v1/responses` (JSON, or SSE with `"stream": true`), `POST /v1/responses/compact`,
//!   `GET /v1/models` (OpenAI's `{"object": "list", …}`). Each needs
//!   `Authorization: Bearer <key>` and answers OpenAI's 401 otherwise.
//! - `POST /oauth/token`: Codex's JSON refresh (§7.2), counted and scriptable.
//!
//! Streams are `response.created`, `response.in_progress`, `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta` (twice),
//! `response.output_text.done`, `response.content_part.done`, `response.output_item.done`,
//! `response.completed` whose usage has cached and reasoning tokens. Every unscripted
//! answer carries the headers set with [`OpenAiMock::set_headers`] (e.g. the
//! `x-codex-primary-*` / `x-codex-secondary-*` windows, [`codex_windows`]). Replies can be
//! scripted per request ([`OpenAiReply`]): any status, a quota 429 as ChatGPT sends it, a
//! 500, or a turn that calls the client's shell tool.
//!
//! Every request is recorded (method, path with query, headers, body), as
//! [`super::mock::Mock`] does, and every answer body sent on a `responses` path is kept, so
//! a test can compare what its client received with what the mock sent, byte for byte.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Value, json};

pub use super::mock::Recorded;

/// The text of every unscripted answer.
pub const REPLY_TEXT: &str = "Hello from the Carpool OpenAI mock.";
/// The usage of every answer: input (of which cached), output (of which reasoning).
pub const INPUT_TOKENS: u64 = 31;
pub const CACHED_TOKENS: u64 = 11;
pub const OUTPUT_TOKENS: u64 = 17;
pub const REASONING_TOKENS: u64 = 5;
/// The ChatGPT login the mock accepts at first, and its workspace.
pub const CODEX_ACCESS: &str = "codex-mock-access-0000000001";
pub const CODEX_REFRESH: &str = "codex-mock-refresh-000000001";
pub const CODEX_ACCOUNT_ID: &str = "acct-mock-0000-0001";
/// The model the mock names when a request names none.
pub const DEFAULT_MODEL: &str = "gpt-5.1-codex";

/// A scripted answer for the next `responses` request (either mode).
#[derive(Clone, Debug)]
pub enum OpenAiReply {
    /// This status, headers and body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The 429 ChatGPT sends when a window of the plan is used up: `usage_limit_reached`
    /// in the body, `x-codex-*` windows with the primary (5 h) at 100 % and resetting in
    /// `resets_in` seconds, the weekly at 40 %.
    UsageLimit { resets_in: i64 },
    /// A 500 in OpenAI's error shape.
    ServerError,
    /// A turn that calls the client's shell tool (whichever the request offers:
    /// `shell_command`, `shell`, or `exec_command` as Codex 0.169 offers it) to run
    /// `command`; streamed, or the
    /// Response object when not streaming.
    ShellCall { command: String },
}

/// A scripted answer of the token endpoint.
#[derive(Clone, Debug)]
pub enum OpenAiTokenReply {
    /// New tokens (numbered), which become the accepted access token.
    Ok,
    /// A refusal with this error code (`refresh_token_expired`, `refresh_token_reused`,
    /// `refresh_token_invalidated`…), as auth.openai.com answers: 401.
    Refused(String),
    /// A 500.
    ServerError,
}

pub struct OpenAiState {
    pub requests: Mutex<Vec<Recorded>>,
    /// Bodies sent on `responses` paths, in order.
    pub answers: Mutex<Vec<Bytes>>,
    pub script: Mutex<VecDeque<OpenAiReply>>,
    pub api_key: Mutex<String>,
    pub access: Mutex<String>,
    pub account_id: Mutex<String>,
    pub headers: Mutex<Vec<(String, String)>>,
    pub refreshes: AtomicUsize,
    pub refresh_bodies: Mutex<Vec<Value>>,
    pub token_script: Mutex<VecDeque<OpenAiTokenReply>>,
    /// Tokens the endpoint handed out: (access, refresh), newest last.
    pub issued: Mutex<Vec<(String, String)>>,
    /// What `GET /backend-api/wham/usage` answers; `None`: the default (see [`wham_usage`]).
    pub usage: Mutex<Option<(u16, Value)>>,
    pub usage_polls: AtomicUsize,
    calls: AtomicUsize,
}

pub struct OpenAiMock {
    pub addr: SocketAddr,
    pub state: Arc<OpenAiState>,
}

impl OpenAiMock {
    /// A mock accepting the API key `api_key` on `/v1/*` and [`CODEX_ACCESS`] with
    /// [`CODEX_ACCOUNT_ID`] on `/backend-api/*`.
    pub async fn start(api_key: &str) -> OpenAiMock {
        let state = Arc::new(OpenAiState {
            requests: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            api_key: Mutex::new(api_key.to_owned()),
            access: Mutex::new(CODEX_ACCESS.to_owned()),
            account_id: Mutex::new(CODEX_ACCOUNT_ID.to_owned()),
            headers: Mutex::new(Vec::new()),
            refreshes: AtomicUsize::new(0),
            refresh_bodies: Mutex::new(Vec::new()),
            token_script: Mutex::new(VecDeque::new()),
            issued: Mutex::new(Vec::new()),
            usage: Mutex::new(None),
            usage_polls: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state.clone());
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        OpenAiMock { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An OpenAI key account's `base_url`.
    pub fn api_base(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// A Codex login's `base_url` (ChatGPT's Codex backend).
    pub fn codex_base(&self) -> String {
        format!("{}/backend-api/codex", self.url())
    }

    /// A Codex login's `token_url`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url())
    }

    pub fn push(&self, reply: OpenAiReply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn push_token(&self, reply: OpenAiTokenReply) {
        self.state.token_script.lock().unwrap().push_back(reply);
    }

    /// Headers every unscripted answer carries from now on.
    pub fn set_headers(&self, headers: &[(String, String)]) {
        *self.state.headers.lock().unwrap() = headers.to_vec();
    }

    pub fn set_access(&self, token: &str) {
        *self.state.access.lock().unwrap() = token.to_owned();
    }

    pub fn set_usage(&self, status: u16, body: Value) {
        *self.state.usage.lock().unwrap() = Some((status, body));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The bodies the mock sent on `responses` paths, in order.
    pub fn answers(&self) -> Vec<Bytes> {
        self.state.answers.lock().unwrap().clone()
    }

    /// Model turns received (`POST …/responses`, either mode; not compaction).
    pub fn turns(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && path_of(&r.uri).ends_with("/responses"))
            .count()
    }

    pub fn refreshes(&self) -> usize {
        self.state.refreshes.load(Ordering::SeqCst)
    }

    pub fn usage_polls(&self) -> usize {
        self.state.usage_polls.load(Ordering::SeqCst)
    }

    pub fn last_issued(&self) -> Option<(String, String)> {
        self.state.issued.lock().unwrap().last().cloned()
    }
}

fn path_of(uri: &str) -> &str {
    uri.split('?').next().unwrap_or(uri)
}

fn router(state: Arc<OpenAiState>) -> Router {
    Router::new()
        .route("/v1/responses", post(api_responses))
        .route("/v1/responses/compact", post(api_compact))
        .route("/v1/models", get(api_models))
        .route("/backend-api/codex/responses", post(codex_responses))
        .route("/backend-api/codex/responses/compact", post(codex_compact))
        .route("/backend-api/codex/models", get(codex_models))
        .route("/backend-api/wham/usage", get(wham_usage))
        .route("/oauth/token", post(token))
        .fallback(not_found)
        .with_state(state)
}

// ---------------------------------------------------------------------------------------
// Requests, auth, answers

struct Incoming {
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

async fn take(state: &OpenAiState, request: Request) -> Incoming {
    let method = request.method().to_string();
    let uri = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    state.requests.lock().unwrap().push(Recorded {
        method,
        uri: uri.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    Incoming {
        uri,
        headers: parts.headers,
        body,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// API-key mode: the key as a bearer, and nothing of another mode.
fn api_authorized(state: &OpenAiState, headers: &HeaderMap) -> bool {
    bearer(headers) == Some(state.api_key.lock().unwrap().as_str())
        && headers.get("x-api-key").is_none()
}

/// ChatGPT mode: the access token as a bearer and the workspace's account id.
fn codex_authorized(state: &OpenAiState, headers: &HeaderMap) -> bool {
    let account = headers
        .get("chatgpt-account-id")
        .and_then(|v| v.to_str().ok());
    bearer(headers) == Some(state.access.lock().unwrap().as_str())
        && account == Some(state.account_id.lock().unwrap().as_str())
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req_mock_openai_0001")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// OpenAI's error shape (docs/protocol.md §8.2).
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The public API's answer to a wrong key.
fn api_unauthorized() -> Response {
    json_response(
        401,
        &error_body(
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
    )
}

/// ChatGPT's answer to an expired or foreign token (Codex refreshes on it, §7.2).
fn codex_unauthorized() -> Response {
    json_response(
        401,
        &error_body(
            "Provided authentication token is expired. Please try signing in again.",
            "invalid_request_error",
            Some("token_expired"),
        ),
    )
}

fn with_headers(mut response: Response, headers: &[(String, String)]) -> Response {
    for (k, v) in headers {
        response.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    response
}

async fn not_found(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    json_response(
        404,
        &error_body(
            &format!("Invalid URL ({})", path_of(&incoming.uri)),
            "invalid_request_error",
            None,
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Model turns

async fn api_responses(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    if !api_authorized(&state, &incoming.headers) {
        return api_unauthorized();
    }
    let body: Value = serde_json::from_slice(&incoming.body).unwrap_or(Value::Null);
    let stream = body["stream"].as_bool() == Some(true);
    turn(&state, &body, stream)
}

async fn codex_responses(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    if !codex_authorized(&state, &incoming.headers) {
        return codex_unauthorized();
    }
    let body: Value = serde_json::from_slice(&incoming.body).unwrap_or(Value::Null);
    // ChatGPT's backend streams every answer (Codex always asks `stream: true`).
    turn(&state, &body, true)
}

fn turn(state: &Arc<OpenAiState>, request: &Value, stream: bool) -> Response {
    let model = request["model"]
        .as_str()
        .unwrap_or(DEFAULT_MODEL)
        .to_owned();
    let n = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let scripted = state.script.lock().unwrap().pop_front();
    let (status, extra, body, content_type) = match scripted {
        Some(OpenAiReply::Status {
            status,
            headers,
            body,
        }) => (status, headers, body, None),
        Some(OpenAiReply::UsageLimit { resets_in }) => {
            let (status, headers, body) = usage_limit_429(resets_in);
            (status, headers, body, Some("application/json"))
        }
        Some(OpenAiReply::ServerError) => (
            500,
            vec![],
            error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            )
            .to_string(),
            Some("application/json"),
        ),
        Some(OpenAiReply::ShellCall { command }) => {
            let item = shell_call_item(request, &command, n);
            let headers = state.headers.lock().unwrap().clone();
            if stream {
                let events = function_call_events(&model, n, &item);
                (200, headers, events.concat(), Some("text/event-stream"))
            } else {
                let response = response_object(&model, n, vec![item], "completed", true);
                (200, headers, response.to_string(), Some("application/json"))
            }
        }
        None => {
            let headers = state.headers.lock().unwrap().clone();
            if stream {
                (
                    200,
                    headers,
                    sse_events(&model, n).concat(),
                    Some("text/event-stream"),
                )
            } else {
                let response = response_object(
                    &model,
                    n,
                    vec![message_item(n, REPLY_TEXT)],
                    "completed",
                    true,
                );
                (200, headers, response.to_string(), Some("application/json"))
            }
        }
    };
    let bytes = Bytes::from(body);
    state.answers.lock().unwrap().push(bytes.clone());
    let mut builder = Response::builder()
        .status(status)
        .header("x-request-id", format!("req_mock_openai_{n:04}"));
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    let response = if content_type == Some("text/event-stream") {
        // One chunk per event, as a real stream arrives.
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = text
            .split_inclusive("\n\n")
            .map(|event| Ok(Bytes::from(event.to_owned())))
            .collect();
        builder
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap()
    } else {
        builder.body(Body::from(bytes)).unwrap()
    };
    with_headers(response, &extra)
}

/// ChatGPT's 429 for a used-up plan window (docs/protocol.md §7.6): `usage_limit_reached`
/// with the plan and the reset, and the windows in the `x-codex-*` headers.
pub fn usage_limit_429(resets_in: i64) -> (u16, Vec<(String, String)>, String) {
    let now = unix_now();
    let mut headers = codex_windows(100.0, resets_in, 40.0, 4 * 86_400);
    headers.push(("x-codex-rate-limit-reached-type".into(), "primary".into()));
    let body = json!({"error": {
        "type": "usage_limit_reached",
        "message": "The usage limit has been reached",
        "plan_type": "plus",
        "resets_at": now + resets_in,
        "resets_in_seconds": resets_in,
    }});
    (429, headers, body.to_string())
}

/// The `x-codex-*` window headers ChatGPT sends on every answer: primary = the 5-hour
/// window (300 minutes), secondary = the weekly one (10080 minutes), each with its used
/// percent and its reset (`reset-at` and `reset-after-seconds`).
pub fn codex_windows(
    five_hour_percent: f64,
    five_hour_resets_in: i64,
    weekly_percent: f64,
    weekly_resets_in: i64,
) -> Vec<(String, String)> {
    let mut headers = vec![("x-codex-active-limit".to_owned(), "codex".to_owned())];
    headers.extend(window(
        "primary",
        five_hour_percent,
        five_hour_resets_in,
        300,
    ));
    headers.extend(window(
        "secondary",
        weekly_percent,
        weekly_resets_in,
        10_080,
    ));
    headers.push(("x-codex-plan-type".into(), "plus".into()));
    headers
}

/// The same windows reported the other way round: the weekly one as primary, the 5-hour
/// one as secondary (a plan may report them so: decide by `window-minutes`, §7.6).
pub fn codex_windows_reversed(
    five_hour_percent: f64,
    five_hour_resets_in: i64,
    weekly_percent: f64,
    weekly_resets_in: i64,
) -> Vec<(String, String)> {
    let mut headers = vec![("x-codex-active-limit".to_owned(), "codex".to_owned())];
    headers.extend(window("primary", weekly_percent, weekly_resets_in, 10_080));
    headers.extend(window(
        "secondary",
        five_hour_percent,
        five_hour_resets_in,
        300,
    ));
    headers
}

fn window(which: &str, percent: f64, resets_in: i64, minutes: i64) -> Vec<(String, String)> {
    let name = |field: &str| format!("x-codex-{which}-{field}");
    vec![
        (name("used-percent"), format!("{percent}")),
        (name("window-minutes"), minutes.to_string()),
        (name("reset-at"), (unix_now() + resets_in).to_string()),
        (name("reset-after-seconds"), resets_in.to_string()),
    ]
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn usage() -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "output_tokens": OUTPUT_TOKENS,
        "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    })
}

/// A Response object (`"object": "response"`), as `POST /v1/responses` answers without
/// streaming and as `response.created` / `response.completed` carry it.
pub fn response_object(
    model: &str,
    n: usize,
    output: Vec<Value>,
    status: &str,
    done: bool,
) -> Value {
    json!({
        "id": format!("resp_mock{n:04}"),
        "object": "response",
        "created_at": 1_764_000_000 + n as i64,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": "medium", "summary": null},
        "service_tier": "default",
        "store": false,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": if done { usage() } else { Value::Null },
        "user": null,
        "metadata": {},
    })
}

fn message_item(n: usize, text: &str) -> Value {
    json!({
        "id": format!("msg_mock{n:04}"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
    })
}

fn event(name: &str, seq: &mut u64, mut data: Value) -> String {
    data["type"] = json!(name);
    data["sequence_number"] = json!(*seq);
    *seq += 1;
    format!("event: {name}\ndata: {data}\n\n")
}

/// The SSE events of the `n`th answer, exactly as the Responses API frames them.
pub fn sse_events(model: &str, n: usize) -> Vec<String> {
    let item_id = format!("msg_mock{n:04}");
    let (first, second) = REPLY_TEXT.split_at(6);
    let mut seq = 0;
    let in_progress = response_object(model, n, vec![], "in_progress", false);
    let mut open_item = message_item(n, "");
    open_item["status"] = json!("in_progress");
    open_item["content"] = json!([]);
    let part = |text: &str| json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
    let at = |extra: Value| {
        let mut v = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    vec![
        event(
            "response.created",
            &mut seq,
            json!({"response": in_progress}),
        ),
        event(
            "response.in_progress",
            &mut seq,
            json!({"response": in_progress}),
        ),
        event(
            "response.output_item.added",
            &mut seq,
            json!({"output_index": 0, "item": open_item}),
        ),
        event(
            "response.content_part.added",
            &mut seq,
            at(json!({"part": part("")})),
        ),
        event(
            "response.output_text.delta",
            &mut seq,
            at(json!({"delta": first, "logprobs": []})),
        ),
        event(
            "response.output_text.delta",
            &mut seq,
            at(json!({"delta": second, "logprobs": []})),
        ),
        event(
            "response.output_text.done",
            &mut seq,
            at(json!({"text": REPLY_TEXT, "logprobs": []})),
        ),
        event(
            "response.content_part.done",
            &mut seq,
            at(json!({"part": part(REPLY_TEXT)})),
        ),
        event(
            "response.output_item.done",
            &mut seq,
            json!({"output_index": 0, "item": message_item(n, REPLY_TEXT)}),
        ),
        event(
            "response.completed",
            &mut seq,
            json!({"response": response_object(model, n, vec![message_item(n, REPLY_TEXT)], "completed", true)}),
        ),
    ]
}

/// The call id of the `n`th answer's function call.
pub fn call_id(n: usize) -> String {
    format!("call_mock{n:04}")
}

/// A `function_call` item running `command` with the shell tool the request offers
/// (Codex's `shell_command` takes a string, `shell` an argv, `exec_command` a `cmd`).
fn shell_call_item(request: &Value, command: &str, n: usize) -> Value {
    let offered: Vec<&str> = request["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let name = ["shell_command", "shell", "exec_command"]
        .into_iter()
        .find(|n| offered.contains(n))
        .unwrap_or("shell_command");
    let arguments = match name {
        "shell" => json!({"command": ["bash", "-lc", command]}),
        "exec_command" => json!({"cmd": command}),
        _ => json!({"command": command}),
    };
    json!({
        "id": format!("fc_mock{n:04}"),
        "type": "function_call",
        "status": "completed",
        "name": name,
        "call_id": call_id(n),
        "arguments": arguments.to_string(),
    })
}

/// A streamed turn whose output is one function call.
fn function_call_events(model: &str, n: usize, item: &Value) -> Vec<String> {
    let mut seq = 0;
    let in_progress = response_object(model, n, vec![], "in_progress", false);
    let mut open_item = item.clone();
    open_item["status"] = json!("in_progress");
    open_item["arguments"] = json!("");
    let arguments = item["arguments"].as_str().unwrap().to_owned();
    let item_id = item["id"].clone();
    vec![
        event(
            "response.created",
            &mut seq,
            json!({"response": in_progress}),
        ),
        event(
            "response.in_progress",
            &mut seq,
            json!({"response": in_progress}),
        ),
        event(
            "response.output_item.added",
            &mut seq,
            json!({"output_index": 0, "item": open_item}),
        ),
        event(
            "response.function_call_arguments.delta",
            &mut seq,
            json!({"item_id": item_id, "output_index": 0, "delta": arguments}),
        ),
        event(
            "response.function_call_arguments.done",
            &mut seq,
            json!({"item_id": item_id, "output_index": 0, "arguments": arguments}),
        ),
        event(
            "response.output_item.done",
            &mut seq,
            json!({"output_index": 0, "item": item}),
        ),
        event(
            "response.completed",
            &mut seq,
            json!({"response": response_object(model, n, vec![item.clone()], "completed", true)}),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Compaction, models, usage

/// What compaction answers: the conversation replaced by a summary message and an
/// opaque compaction item (Codex keeps `output` as the new history).
fn compacted() -> Value {
    json!({"output": [
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Summary of the conversation so far (mock)."}]},
        {"type": "compaction", "encrypted_content": "mock-compacted-0001"},
    ]})
}

async fn api_compact(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    if !api_authorized(&state, &incoming.headers) {
        return api_unauthorized();
    }
    compact_answer(&state)
}

async fn codex_compact(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    if !codex_authorized(&state, &incoming.headers) {
        return codex_unauthorized();
    }
    compact_answer(&state)
}

fn compact_answer(state: &OpenAiState) -> Response {
    let body = compacted().to_string();
    state
        .answers
        .lock()
        .unwrap()
        .push(Bytes::from(body.clone()));
    let headers = state.headers.lock().unwrap().clone();
    with_headers(
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap(),
        &headers,
    )
}

/// OpenAI's model list (`GET /v1/models`).
async fn api_models(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    if !api_authorized(&state, &incoming.headers) {
        return api_unauthorized();
    }
    json_response(200, &api_model_list())
}

pub fn api_model_list() -> Value {
    let model = |id: &str, created: i64| json!({"id": id, "object": "model", "created": created, "owned_by": "system"});
    json!({"object": "list", "data": [
        model("gpt-5.1-codex", 1_762_988_221),
        model("gpt-5.1", 1_762_988_200),
        model("gpt-4.1-mini", 1_744_318_173),
    ]})
}

/// Codex's model list (`GET /backend-api/codex/models?client_version=…`): the fields of
/// `codex-rs/protocol/src/openai_models.rs` `ModelInfo`.
async fn codex_models(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    if !codex_authorized(&state, &incoming.headers) {
        return codex_unauthorized();
    }
    json_response(200, &codex_model_list())
}

pub fn codex_model_list() -> Value {
    let effort = |e: &str| json!({"effort": e, "description": format!("{e} reasoning")});
    json!({"models": [{
        "slug": DEFAULT_MODEL,
        "display_name": "GPT-5.1 Codex",
        "description": "The mock's Codex model.",
        "default_reasoning_level": "medium",
        "supported_reasoning_levels": [effort("low"), effort("medium"), effort("high")],
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": true,
        "priority": 1,
        "upgrade": null,
        "base_instructions": "You are a coding agent (mock).",
        "supports_reasoning_summaries": true,
        "support_verbosity": false,
        "default_verbosity": null,
        "apply_patch_tool_type": "freeform",
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": true,
        "context_window": 272000,
        "experimental_supported_tools": [],
        "input_modalities": ["text", "image"],
    }]})
}

/// ChatGPT's usage endpoint (docs/protocol.md §7.6), as scripted with
/// [`OpenAiMock::set_usage`]; by default a Plus plan at 12 % (5 h) and 34 % (weekly).
async fn wham_usage(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    state.usage_polls.fetch_add(1, Ordering::SeqCst);
    if !codex_authorized(&state, &incoming.headers) {
        return codex_unauthorized();
    }
    if let Some((status, body)) = state.usage.lock().unwrap().clone() {
        return json_response(status, &body);
    }
    json_response(200, &wham_usage_body(12.0, 34.0))
}

pub fn wham_usage_body(five_hour_percent: f64, weekly_percent: f64) -> Value {
    let now = unix_now();
    let window = |percent: f64, seconds: i64, resets_in: i64| {
        json!({"used_percent": percent, "limit_window_seconds": seconds,
               "reset_after_seconds": resets_in, "reset_at": now + resets_in})
    };
    json!({
        "plan_type": "plus",
        "rate_limit": {
            "allowed": true,
            "limit_reached": false,
            "primary_window": window(five_hour_percent, 18_000, 3_600),
            "secondary_window": window(weekly_percent, 604_800, 3 * 86_400),
        },
        "credits": {"has_credits": false, "unlimited": false, "balance": "0"},
    })
}

// ---------------------------------------------------------------------------------------
// Tokens

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT in the shape of an OpenAI id_token (not signed for real: nothing verifies it)
/// with the claims Codex reads (§7.1): `email` and, under `https://api.openai.com/auth`,
/// `chatgpt_plan_type`, `chatgpt_user_id`, `chatgpt_account_id`.
pub fn id_token(email: &str, plan: &str, account_id: &str) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let now = unix_now();
    let claims = json!({
        "iss": "https://auth.openai.com",
        "aud": ["app_mock"],
        "iat": now,
        "exp": now + 3600,
        "email": email,
        "email_verified": true,
        "https://api.openai.com/auth": {
            "chatgpt_plan_type": plan,
            "chatgpt_user_id": "user-mock-0001",
            "user_id": "user-mock-0001",
            "chatgpt_account_id": account_id,
        },
    });
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(b"mock-signature")
    )
}

/// A Codex `auth.json` (§7.1) for a ChatGPT login with these tokens, refreshed at
/// `last_refresh` (RFC 3339), with the fields Carpool must keep.
pub fn auth_json(access: &str, refresh: &str, last_refresh: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_token("codex@example.com", "plus", CODEX_ACCOUNT_ID),
            "access_token": access,
            "refresh_token": refresh,
            "account_id": CODEX_ACCOUNT_ID,
        },
        "last_refresh": last_refresh,
        "agent_identity": {"keep": "me"},
    }))
    .unwrap()
}

/// Codex's refresh (§7.2): JSON `{client_id, grant_type: "refresh_token", refresh_token}`;
/// the answer has a new id, access and refresh token, and the access token becomes the one
/// the ChatGPT endpoints accept.
async fn token(State(state): State<Arc<OpenAiState>>, request: Request) -> Response {
    let incoming = take(&state, request).await;
    let n = state.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    let body: Value = serde_json::from_slice(&incoming.body).unwrap_or(Value::Null);
    state.refresh_bodies.lock().unwrap().push(body.clone());
    if body["grant_type"] != "refresh_token" || !body["refresh_token"].is_string() {
        return json_response(
            400,
            &json!({"error": {"message": "Unsupported grant type.", "type": "invalid_request_error",
                              "param": "grant_type", "code": "unsupported_grant_type"}}),
        );
    }
    let scripted = state.token_script.lock().unwrap().pop_front();
    match scripted.unwrap_or(OpenAiTokenReply::Ok) {
        OpenAiTokenReply::Ok => {
            let access = format!("codex-mock-access-refreshed-{n}");
            let refresh = format!("codex-mock-refresh-rotated-{n}");
            *state.access.lock().unwrap() = access.clone();
            state
                .issued
                .lock()
                .unwrap()
                .push((access.clone(), refresh.clone()));
            let account = state.account_id.lock().unwrap().clone();
            json_response(
                200,
                &json!({"id_token": id_token("codex@example.com", "plus", &account),
                        "access_token": access, "refresh_token": refresh,
                        "expires_in": 864_000, "token_type": "Bearer",
                        "scope": "openid profile email offline_access"}),
            )
        }
        OpenAiTokenReply::Refused(code) => json_response(
            401,
            &json!({"error": {"message": "Your refresh token could not be used.",
                              "type": "invalid_request_error", "param": null, "code": code}}),
        ),
        OpenAiTokenReply::ServerError => json_response(
            500,
            &error_body("Internal server error", "server_error", None),
        ),
    }
}
