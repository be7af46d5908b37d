//! The request path, in the order a request meets it:
//!
//! 1. **authenticate** the Carpool user token ([`crate::auth`]);
//! 2. **read the body** once into memory (bounded by `max_body_bytes`): it may be sent
//!    again, on a refreshed token now and on another account later;
//! 3. **pick the account** the user is bound to and get a fresh access token
//!    ([`crate::credentials`]), refreshing it if needed;
//! 4. **send** it upstream with the account's credentials ([`crate::upstream`]); on a 401
//!    the token is refreshed and the request sent once more, before any byte reached the
//!    client;
//! 5. **stream back** status, headers and body as they arrive ([`body`]), under the
//!    idle and whole-request timeouts;
//! 6. **record** one log line and one usage row when the response ends
//!    ([`log::RequestLog`]); the usage is read from the body as it passes
//!    ([`crate::ledger::extract`]).
//!
//! Upstream error responses (400, 401, 429, 529…) are passed through with their status,
//! headers and body; only failures of Carpool's own making become [`RelayError`]s.

mod body;
pub mod client;
mod log;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use serde::Deserialize;

use crate::auth::Caller;
use crate::credentials::{Credential, Unavailable};
use crate::engine::Engine;
use crate::error::RelayError;
use crate::ledger::extract::BodyKind;
use crate::secret::Secret;
use crate::upstream;
use body::BodyLimits;
use client::ClientIds;
use log::RequestLog;

/// The axum handler for every relayed endpoint.
pub async fn handle(State(engine): State<Arc<Engine>>, request: Request) -> Response {
    let mut log = RequestLog::start(request.method(), request.uri().path());
    match relay(&engine, request, &mut log).await {
        Ok(response) => response,
        Err(error) => {
            log.finish_error(&error);
            error.into_response()
        }
    }
}

async fn relay(
    engine: &Arc<Engine>,
    request: Request,
    log: &mut RequestLog,
) -> Result<Response, RelayError> {
    let (parts, body) = request.into_parts();

    // 1. authenticate
    let caller = engine
        .users
        .authenticate(&parts.headers)
        .map_err(|e| RelayError::bad_token(e.message()))?;
    let credential = match caller {
        Caller::User(i) => {
            log.user = engine.config.users[i].name.clone();
            engine.credentials[engine.config.users[i].credential].clone()
        }
        Caller::Anonymous => engine.credentials[0].clone(),
    };
    log.credential = credential.tag.clone();
    log.authenticated(engine.clone());

    // 2. read the body
    let body = read_body(body, engine.config.max_body_bytes).await?;
    let peek = Peek::of(&body);
    let ids = ClientIds::of(
        &parts.headers,
        peek.metadata
            .as_ref()
            .and_then(|m| m.get("user_id"))
            .and_then(|u| u.as_str()),
    );
    log.model = peek.model.clone().unwrap_or_default();
    log.device = ids.device;
    log.session = ids.session;
    log.messages = peek.messages;
    let streaming = peek.stream == Some(true);

    // Streaming answers send headers early and then keep talking: they are bounded by the
    // first-byte and idle timeouts. Other answers arrive whole, so the whole request is.
    let timeouts = &engine.config.timeouts;
    let deadline = (!streaming).then(|| Instant::now() + timeouts.request);
    let limits = BodyLimits {
        idle: timeouts.idle,
        deadline,
    };

    // 3 + 4. token, send, and one retry on a fresh token after a 401
    let mut rejected: Option<Secret> = None;
    let response = loop {
        let token = credential
            .access_token(rejected.as_ref())
            .await
            .map_err(no_credential)?;
        let response = send(engine, &credential, &parts, &body, &token, deadline).await?;
        if response.status() == StatusCode::UNAUTHORIZED && rejected.is_none() {
            tracing::warn!(credential = %credential.tag, "upstream rejected the access token (401); refreshing and retrying once");
            rejected = Some(token);
            continue;
        }
        break response;
    };

    // 5. stream back
    let status = response.status();
    let headers = upstream::response_headers(response.headers());
    let sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    log.status = status.as_u16();
    log.week_reset = response
        .headers()
        .get("anthropic-ratelimit-unified-7d-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // Only answers to /v1/messages carry usage.
    if status.is_success() && parts.uri.path() == "/v1/messages" {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        log.tap(BodyKind::of(content_type));
    }
    let upstream_body = body::relay(response, limits, sse, log.take());
    let mut out = Response::new(Body::from_stream(upstream_body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn no_credential(u: Unavailable) -> RelayError {
    RelayError::no_credential(
        format!(
            "Carpool has no usable Claude account for you right now. {}",
            u.reason
        ),
        u.retry_after.map(|d| d.as_secs().max(1)),
    )
}

/// Reads the whole request body, refusing more than `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, RelayError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let source = e.into_inner();
        if source.is::<http_body_util::LengthLimitError>() {
            RelayError::too_large(limit)
        } else {
            RelayError::bad_request(format!(
                "Carpool: could not read the request body: {source}"
            ))
        }
    })
}

/// Sends one attempt upstream and waits for the response headers: until `deadline` for
/// non-streaming requests, for `timeouts.first_byte` for streaming ones.
async fn send(
    engine: &Engine,
    credential: &Credential,
    parts: &http::request::Parts,
    body: &Bytes,
    token: &Secret,
    deadline: Option<Instant>,
) -> Result<reqwest::Response, RelayError> {
    let timeouts = &engine.config.timeouts;
    let url = match parts.uri.path_and_query() {
        Some(pq) => format!("{}{}", credential.base_url, pq.as_str()),
        None => format!("{}{}", credential.base_url, parts.uri.path()),
    };
    let mut outgoing =
        engine
            .http
            .request(parts.method.clone(), url)
            .headers(upstream::request_headers(
                &parts.headers,
                &engine.config.headers,
                token,
            ));
    if !body.is_empty() {
        outgoing = outgoing.body(body.clone());
    }
    let (until, wait, field) = match deadline {
        Some(d) => (d, timeouts.request, "timeouts.request"),
        None => (
            Instant::now() + timeouts.first_byte,
            timeouts.first_byte,
            "timeouts.first_byte",
        ),
    };
    let base = &credential.base_url;
    match tokio::time::timeout_at(until.into(), outgoing.send()).await {
        Err(_) => Err(RelayError::timeout(format!(
            "Carpool: the upstream ({base}) sent no response within {} (`{field}` in the Carpool config)",
            humantime::format_duration(wait)
        ))),
        Ok(Err(e)) if e.is_connect() && e.is_timeout() => Err(RelayError::timeout(format!(
            "Carpool: could not connect to the upstream ({base}) within {} (`timeouts.connect` in the Carpool config)",
            humantime::format_duration(timeouts.connect)
        ))),
        Ok(Err(e)) => Err(RelayError::unreachable(format!(
            "Carpool: cannot reach the upstream ({base}): {}",
            error_chain(&e)
        ))),
        Ok(Ok(response)) => Ok(response),
    }
}

/// The few request fields the relay looks at; everything else passes untouched (serde
/// skips it without building values).
#[derive(Deserialize, Default)]
struct Peek {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    /// Kept loose: a `metadata` of an unexpected shape must not hide `model` and `stream`.
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    /// How many entries `messages` has.
    #[serde(default, deserialize_with = "count_entries")]
    messages: u32,
}

/// The length of an array without building its elements; 0 for anything else (the
/// upstream judges a malformed body, not the relay).
fn count_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u32, A::Error> {
            let mut n = 0u32;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n = n.saturating_add(1);
            }
            Ok(n)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u32, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_bool<E>(self, _: bool) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<u32, E> {
            Ok(0)
        }
    }
    d.deserialize_any(Count)
}

impl Peek {
    fn of(body: &Bytes) -> Peek {
        if body.is_empty() {
            return Peek::default();
        }
        // Bodies that are not JSON are forwarded as they are; the upstream says what is wrong.
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// `a: b: c` from an error and its sources (reqwest's top-level message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Anthropic-format 404 for paths Carpool does not relay.
pub async fn not_found(request: Request) -> Response {
    let error = RelayError::not_found(format!(
        "Carpool does not relay {} {}. It serves POST /v1/messages, POST /v1/messages/count_tokens and GET /v1/models.",
        request.method(),
        request.uri().path()
    ));
    refuse(&request, error)
}

/// Anthropic-format 405 for a known path with the wrong method.
pub async fn method_not_allowed(request: Request) -> Response {
    let error = RelayError::method_not_allowed(format!(
        "Carpool: {} is not allowed on {}",
        request.method(),
        request.uri().path()
    ));
    refuse(&request, error)
}

fn refuse(request: &Request, error: RelayError) -> Response {
    RequestLog::start(request.method(), request.uri().path()).finish_error(&error);
    error.into_response()
}
