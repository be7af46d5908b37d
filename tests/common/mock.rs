//! A mock Anthropic API and OAuth token endpoint on 127.0.0.1, for tests and benchmarks.
//!
//! It speaks the real wire format (SSE events as the Messages API sends them), records
//! every request it receives, counts refreshes, and can be scripted per request:
//! error statuses, stalls, gated streams. It accepts exactly one access token at a time
//! (`valid_access`) and answers others with Anthropic's real 401, so refresh-after-401 and
//! "the right token was sent" are both observable.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

// Declared here rather than in `common/mod.rs` because benches/relay.rs includes this file
// on its own; `common` re-exports it as `common::tls`.
#[path = "tls.rs"]
pub mod tls;

pub const MOCK_REPLY_TEXT: &str = "Hello from the Carpool mock upstream.";
pub const INPUT_TOKENS: u64 = 25;
pub const OUTPUT_TOKENS: u64 = 12;

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path with query, e.g. `/v1/messages?beta=true`.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A scripted answer for the next `/v1/messages` request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status, headers and body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Wait this long before sending anything.
    StallHeaders(Duration),
    /// Send `message_start` (or, not streaming, half of the JSON), then nothing more
    /// until the connection is dropped.
    StallMidStream,
    /// Send the first event, then wait until [`Mock::release`] before the rest.
    GatedStream,
    /// Stream normally, with this pause between events.
    SlowEvents(Duration),
    /// A normal reply, gzip-compressed with `content-encoding: gzip`.
    Gzipped,
}

/// A scripted answer of the token endpoint.
#[derive(Clone, Debug)]
pub enum TokenReply {
    /// New tokens (numbered), after `delay`.
    Ok {
        delay: Duration,
    },
    InvalidGrant,
    ServerError,
    /// New tokens, once the test calls [`Mock::release_token`] (at most 30 s later).
    /// Unlike `Ok`, they do not become the valid access token: the test says which
    /// one is, with [`Mock::set_valid_access`].
    Held,
}

/// A scripted usage-endpoint answer: status, JSON body, extra headers.
pub type UsageReply = (u16, Value, Vec<(String, String)>);

pub struct MockState {
    pub requests: Mutex<Vec<Recorded>>,
    pub script: Mutex<VecDeque<Reply>>,
    /// The only access token `/v1/*` accepts.
    pub valid_access: Mutex<String>,
    pub refreshes: AtomicUsize,
    /// JSON bodies sent to the token endpoint.
    pub refresh_bodies: Mutex<Vec<Value>>,
    pub token_script: Mutex<VecDeque<TokenReply>>,
    pub token_default: Mutex<TokenReply>,
    /// Tokens the endpoint handed out, newest last.
    pub issued: Mutex<Vec<(String, String)>>,
    pub gate: Notify,
    /// Releases a [`TokenReply::Held`] refresh.
    pub token_gate: Notify,
    /// Set once a gated stream sent its second event.
    pub gate_passed: std::sync::atomic::AtomicBool,
    /// When false, requests are not kept (benchmarks send hundreds of thousands).
    pub recording: std::sync::atomic::AtomicBool,
    /// Headers added to every answer that is not scripted (e.g. the unified rate-limit
    /// headers of a subscription account).
    pub unified: Mutex<Vec<(String, String)>>,
    /// What `GET /api/oauth/usage` answers: status, JSON and headers; `None`: 404.
    pub usage: Mutex<Option<UsageReply>>,
    /// Calls to `GET /api/oauth/usage`.
    pub polls: AtomicUsize,
    /// Text deltas in each streamed answer (see [`sse_events_split`]); 0: two, as
    /// [`sse_events`]. The relay benchmark streams longer answers.
    pub deltas: AtomicUsize,
    /// Authorization codes `GET /oauth/authorize` issued: code → (PKCE challenge, state).
    pub login_codes: Mutex<std::collections::HashMap<String, (String, String)>>,
    /// The query strings `GET /oauth/authorize` received.
    pub authorize_queries: Mutex<Vec<Value>>,
    /// Authorization-code exchanges answered with tokens.
    pub logins: AtomicUsize,
    /// `GET /api/oauth/profile` calls.
    pub profile_reads: AtomicUsize,
}

#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    /// Served over TLS ([`Mock::start_tls`]): URLs are `https://`.
    pub tls: bool,
}

impl Mock {
    /// Starts the mock on an ephemeral loopback port, accepting `valid_access`.
    pub async fn start(valid_access: &str) -> Mock {
        let state = new_state(valid_access);
        let app = router(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Like the real API, no Nagle: each SSE event goes out as its own small write,
        // and without TCP_NODELAY every stream would stall ~40 ms on delayed ACKs.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mock {
            addr,
            state,
            tls: false,
        }
    }

    /// Like [`Mock::start`], served over HTTPS (h2 or http/1.1) with a certificate for
    /// `127.0.0.1` and `localhost` signed by a fresh test CA, whose PEM is returned.
    pub async fn start_tls(valid_access: &str) -> (Mock, String) {
        let state = new_state(valid_access);
        let server = tls::serve(router(state.clone())).await;
        let mock = Mock {
            addr: server.addr,
            state,
            tls: true,
        };
        (mock, server.ca_pem)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("{}/v1/oauth/token", self.url())
    }

    pub fn push(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn push_token(&self, reply: TokenReply) {
        self.state.token_script.lock().unwrap().push_back(reply);
    }

    pub fn set_token_default(&self, reply: TokenReply) {
        *self.state.token_default.lock().unwrap() = reply;
    }

    pub fn set_valid_access(&self, token: &str) {
        *self.state.valid_access.lock().unwrap() = token.to_owned();
    }

    /// Headers every unscripted answer carries from now on.
    pub fn set_unified(&self, headers: &[(&str, &str)]) {
        *self.state.unified.lock().unwrap() = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// What `GET /api/oauth/usage` answers from now on.
    pub fn set_usage(&self, status: u16, body: Value, headers: &[(&str, &str)]) {
        *self.state.usage.lock().unwrap() = Some((
            status,
            body,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    /// How often the usage endpoint was called.
    pub fn polls(&self) -> usize {
        self.state.polls.load(Ordering::SeqCst)
    }

    /// `/v1/messages` requests received.
    pub fn messages(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.uri.starts_with("/v1/messages") && !r.uri.contains("count_tokens"))
            .count()
    }

    pub fn release(&self) {
        self.state.gate.notify_one();
    }

    /// Lets a [`TokenReply::Held`] refresh answer.
    pub fn release_token(&self) {
        self.state.token_gate.notify_one();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn refreshes(&self) -> usize {
        self.state.refreshes.load(Ordering::SeqCst)
    }

    /// The login page of the mock's OAuth server: where a login's authorize URL points.
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.url())
    }

    pub fn profile_url(&self) -> String {
        format!("{}/api/oauth/profile", self.url())
    }

    /// What a person does with an authorize URL: opens it and logs in. The mock's page
    /// answers with what Claude's shows, `<code>#<state>`.
    pub async fn log_in(&self, authorize_url: &str) -> String {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(authorize_url)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn last_issued(&self) -> Option<(String, String)> {
        self.state.issued.lock().unwrap().last().cloned()
    }
}

fn new_state(valid_access: &str) -> Arc<MockState> {
    Arc::new(MockState {
        requests: Mutex::new(Vec::new()),
        script: Mutex::new(VecDeque::new()),
        valid_access: Mutex::new(valid_access.to_owned()),
        refreshes: AtomicUsize::new(0),
        refresh_bodies: Mutex::new(Vec::new()),
        token_script: Mutex::new(VecDeque::new()),
        token_default: Mutex::new(TokenReply::Ok {
            delay: Duration::ZERO,
        }),
        issued: Mutex::new(Vec::new()),
        gate: Notify::new(),
        token_gate: Notify::new(),
        gate_passed: std::sync::atomic::AtomicBool::new(false),
        recording: std::sync::atomic::AtomicBool::new(true),
        unified: Mutex::new(Vec::new()),
        usage: Mutex::new(None),
        polls: AtomicUsize::new(0),
        deltas: AtomicUsize::new(0),
        login_codes: Mutex::new(std::collections::HashMap::new()),
        authorize_queries: Mutex::new(Vec::new()),
        logins: AtomicUsize::new(0),
        profile_reads: AtomicUsize::new(0),
    })
}

/// The mock's routes, shared by [`Mock::start`] and [`Mock::start_tls`].
fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(models))
        .route("/v1/oauth/token", post(token))
        .route("/api/oauth/usage", get(oauth_usage))
        .route("/oauth/authorize", get(authorize))
        .route("/api/oauth/profile", get(profile))
        .with_state(state)
}

/// Anthropic's OAuth usage endpoint, as scripted with [`Mock::set_usage`].
async fn oauth_usage(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (_, _, headers, _) = split(request).await;
    state.polls.fetch_add(1, Ordering::SeqCst);
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let scripted = state.usage.lock().unwrap().clone();
    match scripted {
        Some((status, body, extra)) => {
            let mut response = json_response(status, &body);
            for (k, v) in extra {
                response.headers_mut().insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            response
        }
        None => json_response(
            404,
            &json!({"type":"error","error":{"type":"not_found_error","message":"not scripted"}}),
        ),
    }
}

fn record(state: &MockState, method: &str, uri: &str, headers: &HeaderMap, body: &Bytes) {
    if !state.recording.load(Ordering::Relaxed) {
        return;
    }
    state.requests.lock().unwrap().push(Recorded {
        method: method.into(),
        uri: uri.into(),
        headers: headers.clone(),
        body: body.clone(),
    });
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("request-id", "req_mock_0001")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Anthropic's answer to a wrong or expired OAuth token.
fn unauthorized() -> Response {
    json_response(
        401,
        &json!({"type":"error","error":{"type":"authentication_error",
            "message":"OAuth token has expired. Please obtain a new token or refresh your existing token."}}),
    )
}

/// The valid token as a subscription's `Authorization: Bearer`, or as an API key's
/// `x-api-key` (never both).
fn authorized(state: &MockState, headers: &HeaderMap) -> bool {
    let valid = state.valid_access.lock().unwrap().clone();
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    match (bearer, key) {
        (Some(b), None) => b == format!("Bearer {valid}"),
        (None, Some(k)) => k == valid,
        _ => false,
    }
}

async fn split(request: Request) -> (String, String, HeaderMap, Bytes) {
    let method = request.method().to_string();
    let uri = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (method, uri, parts.headers, body)
}

async fn messages(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (method, uri, headers, body) = split(request).await;
    record(&state, &method, &uri, &headers, &body);
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = request["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5-20250929")
        .to_owned();
    let stream = request["stream"].as_bool() == Some(true);
    let scripted = state.script.lock().unwrap().pop_front();
    match scripted {
        Some(Reply::Status {
            status,
            headers,
            body,
        }) => {
            let mut b = Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Body::from(body)).unwrap()
        }
        Some(Reply::StallHeaders(d)) => {
            tokio::time::sleep(d).await;
            reply(&model, stream, None, &state)
        }
        Some(Reply::SlowEvents(d)) => reply(&model, stream, Some(Pace::Every(d)), &state),
        Some(Reply::GatedStream) => reply(&model, stream, Some(Pace::Gated), &state),
        Some(Reply::StallMidStream) => reply(&model, stream, Some(Pace::StallAfterFirst), &state),
        Some(Reply::Gzipped) => {
            use std::io::Write;
            let text = message_json(&model).to_string();
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(text.as_bytes()).unwrap();
            Response::builder()
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(Body::from(enc.finish().unwrap()))
                .unwrap()
        }
        None => {
            let mut response = reply(&model, stream, None, &state);
            for (k, v) in state.unified.lock().unwrap().iter() {
                response.headers_mut().insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            response
        }
    }
}

#[derive(Clone, Copy)]
enum Pace {
    Every(Duration),
    Gated,
    StallAfterFirst,
}

fn message_json(model: &str) -> Value {
    json!({
        "id": "msg_01MockMockMockMockMockMock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": MOCK_REPLY_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": OUTPUT_TOKENS
        }
    })
}

/// The SSE events of one streamed message, exactly as the Messages API frames them: 8
/// events, the text in two deltas.
pub fn sse_events(model: &str) -> Vec<String> {
    let (first, second) = MOCK_REPLY_TEXT.split_at(5);
    sse_events_with(model, &[first, second])
}

/// Like [`sse_events`] with the text in `deltas` pieces of about the same length (at
/// least one, at most one per character): `6 + deltas` events.
pub fn sse_events_split(model: &str, deltas: usize) -> Vec<String> {
    let chars: Vec<(usize, char)> = MOCK_REPLY_TEXT.char_indices().collect();
    let n = deltas.clamp(1, chars.len());
    let cut = |k: usize| {
        chars
            .get(k * chars.len() / n)
            .map_or(MOCK_REPLY_TEXT.len(), |c| c.0)
    };
    let pieces: Vec<&str> = (0..n)
        .map(|k| &MOCK_REPLY_TEXT[cut(k)..cut(k + 1)])
        .collect();
    sse_events_with(model, &pieces)
}

fn sse_events_with(model: &str, pieces: &[&str]) -> Vec<String> {
    let delta = |text: &str| {
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}}),
        )
    };
    let mut events: Vec<(&str, Value)> = vec![
        (
            "message_start",
            json!({"type":"message_start","message":{
            "id":"msg_01MockMockMockMockMockMock","type":"message","role":"assistant","model":model,
            "content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":INPUT_TOKENS,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        ("ping", json!({"type":"ping"})),
    ];
    events.extend(pieces.iter().map(|text| delta(text)));
    events.extend([
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        (
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
            "usage":{"output_tokens":OUTPUT_TOKENS}}),
        ),
        ("message_stop", json!({"type":"message_stop"})),
    ]);
    events
        .into_iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

fn reply(model: &str, stream: bool, pace: Option<Pace>, state: &Arc<MockState>) -> Response {
    if !stream {
        if let Some(Pace::StallAfterFirst) = pace {
            // Headers and half of the JSON, then silence.
            let text = message_json(model).to_string();
            let half = text[..text.len() / 2].to_owned();
            let events = vec![half, String::new()];
            return Response::builder()
                .header("content-type", "application/json")
                .body(async_stream(events, pace, state.clone()))
                .unwrap();
        }
        return json_response(200, &message_json(model));
    }
    let events = match state.deltas.load(Ordering::Relaxed) {
        0 => sse_events(model),
        n => sse_events_split(model, n),
    };
    let state = state.clone();
    let body = async_stream(events, pace, state);
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", "req_mock_0001")
        .body(body)
        .unwrap()
}

fn async_stream(events: Vec<String>, pace: Option<Pace>, state: Arc<MockState>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 {
                match pace {
                    Some(Pace::Every(d)) => tokio::time::sleep(d).await,
                    Some(Pace::Gated) if i == 1 => {
                        // Wait for the test, but never forever.
                        let _ =
                            tokio::time::timeout(Duration::from_secs(10), state.gate.notified())
                                .await;
                        state
                            .gate_passed
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Some(Pace::StallAfterFirst) => {
                        // Hold the connection open until the receiver goes away.
                        tx.closed().await;
                        return;
                    }
                    _ => {}
                }
            }
            if tx.send(Ok(Bytes::from(event))).await.is_err() {
                return;
            }
        }
    });
    Body::from_stream(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn count_tokens(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (method, uri, headers, body) = split(request).await;
    record(&state, &method, &uri, &headers, &body);
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    json_response(200, &json!({"input_tokens": 42}))
}

async fn models(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (method, uri, headers, body) = split(request).await;
    record(&state, &method, &uri, &headers, &body);
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let model = json!({"type":"model","id":"claude-sonnet-4-5-20250929",
        "display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"});
    if uri.starts_with("/v1/models/") {
        return json_response(200, &model);
    }
    json_response(
        200,
        &json!({"data":[model],"has_more":false,
            "first_id":"claude-sonnet-4-5-20250929","last_id":"claude-sonnet-4-5-20250929"}),
    )
}

/// The login page: issues a code for the PKCE challenge and state it was given and
/// shows `<code>#<state>`, as Claude's does.
async fn authorize(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let query: std::collections::HashMap<String, String> =
        reqwest::Url::parse(&format!("http://mock{}", request.uri()))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
    state
        .authorize_queries
        .lock()
        .unwrap()
        .push(serde_json::to_value(&query).unwrap());
    let (Some(challenge), Some(login_state)) = (query.get("code_challenge"), query.get("state"))
    else {
        return json_response(400, &json!({"error": "invalid_request"}));
    };
    if query.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return json_response(400, &json!({"error": "invalid_request"}));
    }
    let code = format!("mock-code-{}", state.login_codes.lock().unwrap().len() + 1);
    state
        .login_codes
        .lock()
        .unwrap()
        .insert(code.clone(), (challenge.clone(), login_state.clone()));
    Response::new(Body::from(format!("{code}#{login_state}")))
}

/// The profile of whoever the valid access token belongs to.
async fn profile(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (_, _, headers, _) = split(request).await;
    state.profile_reads.fetch_add(1, Ordering::SeqCst);
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    json_response(
        200,
        &json!({"account": {"uuid": "acc-1", "email": "login@example.com",
                            "email_address": "login@example.com", "has_claude_max": true},
                "organization": {"uuid": "org-1", "name": "Mock Org", "organization_type": "claude_max",
                                 "rate_limit_tier": "default_claude_max_20x", "billing_type": "stripe"}}),
    )
}

/// An authorization-code exchange: the code must be one the login page issued, once,
/// with the verifier of its challenge and its state.
fn exchange_code(state: &MockState, body: &Value) -> Response {
    use base64::Engine as _;
    use sha2::Digest as _;
    let refused = |why: &str| {
        json_response(
            400,
            &json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    let code = body["code"].as_str().unwrap_or_default();
    let Some((challenge, login_state)) = state.login_codes.lock().unwrap().remove(code) else {
        return refused("Invalid 'code' in request.");
    };
    let verifier = body["code_verifier"].as_str().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    if computed != challenge {
        return refused("Invalid code_verifier.");
    }
    if body["state"].as_str() != Some(login_state.as_str()) {
        return refused("Invalid state.");
    }
    let n = state.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let access = format!("sk-ant-oat01-mock-login-{n}");
    let refresh = format!("sk-ant-ort01-mock-login-{n}");
    *state.valid_access.lock().unwrap() = access.clone();
    state
        .issued
        .lock()
        .unwrap()
        .push((access.clone(), refresh.clone()));
    json_response(
        200,
        &json!({"access_token": access, "refresh_token": refresh, "expires_in": 28800,
            "token_type": "Bearer", "scope": "user:inference user:profile",
            "account": {"uuid": "acc-1", "email_address": "login@example.com"}}),
    )
}

async fn token(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (_, _, _, body) = split(request).await;
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if parsed["grant_type"] == "authorization_code" {
        return exchange_code(&state, &parsed);
    }
    let n = state.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    state
        .refresh_bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    let scripted = state.token_script.lock().unwrap().pop_front();
    let reply = scripted.unwrap_or_else(|| state.token_default.lock().unwrap().clone());
    let held = matches!(reply, TokenReply::Held);
    match reply {
        TokenReply::Ok { .. } | TokenReply::Held => {
            if let TokenReply::Ok { delay } = reply {
                tokio::time::sleep(delay).await;
            } else {
                let _ = tokio::time::timeout(Duration::from_secs(30), state.token_gate.notified())
                    .await;
            }
            let access = format!("sk-ant-oat01-mock-refreshed-{n}");
            let refresh = format!("sk-ant-ort01-mock-rotated-{n}");
            if !held {
                *state.valid_access.lock().unwrap() = access.clone();
            }
            state
                .issued
                .lock()
                .unwrap()
                .push((access.clone(), refresh.clone()));
            json_response(
                200,
                &json!({"access_token": access, "refresh_token": refresh, "expires_in": 28800,
                    "token_type": "Bearer", "scope": "user:inference user:profile",
                    "organization": {"uuid": "org-1", "name": "Mock"},
                    "account": {"uuid": "acc-1", "email_address": "mock@example.com"}}),
            )
        }
        TokenReply::InvalidGrant => json_response(
            400,
            &json!({"error": "invalid_grant", "error_description": "Refresh token not found or invalid"}),
        ),
        TokenReply::ServerError => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("upstream exploded"))
            .unwrap(),
    }
}
