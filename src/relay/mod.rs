//! The request path, in the order a request meets it:
//!
//! 1. **authenticate** the Carpool user token ([`crate::auth`]);
//! 2. **read the body** once into memory (bounded by `max_body_bytes`, and by
//!    `connections.body_timeout` between two of its pieces): it may be sent again, on a
//!    refreshed token now and on another account later;
//! 3. **pick an account** among those the user may use ([`crate::pool`]: their own
//!    account, or a pool with its strategy and sticky conversations) and get its
//!    credential, refreshing an OAuth token if needed ([`crate::credentials`]);
//! 4. **send** it upstream with the account's credentials ([`crate::upstream`]); on a 401
//!    the token is refreshed and the request sent once more; on a quota 429, a 5xx, a
//!    refusal saying the provider disabled the account (which also quarantines it:
//!    [`crate::pool::account`]) or a connection failure the next eligible account gets
//!    it ([`failover`]). All of this happens before any byte reached the client;
//! 5. **stream back** status, headers and body as they arrive ([`body`]), under the
//!    idle and whole-request timeouts;
//! 6. **record** one log line and one usage row when the response ends
//!    ([`log::RequestLog`]); the usage is read from the body as it passes
//!    ([`crate::ledger::extract`]).
//!
//! Upstream error responses (400, 401, 429, 529…) are passed through with their status,
//! headers and body; only failures of Carpool's own making become [`RelayError`]s. To
//! judge an error answer (quota or not, disabled account or not) only its first 64 KiB
//! are read ([`ERROR_PREFIX`]); if it is the answer the client gets, those bytes and then
//! the rest are streamed like any body, so the client sees the upstream's real body
//! whatever its length. An error answer set aside for a later account's is dropped
//! unread, which closes its connection.
//!
//! # Buffers on the response path and their bounds
//!
//! Nothing on the way back grows with the length of an upstream answer:
//!
//! | buffer | bound | where |
//! | --- | --- | --- |
//! | a chunk being relayed | one chunk at a time, taken by hyper before the next is read (hyper's own read and write buffers are ~400 KiB per connection) | [`body`] |
//! | the prefix of an error answer being judged | 64 KiB copied, plus the rest of the one chunk that crossed the mark, refcounted as received | [`read_prefix`] |
//! | error answers kept while other accounts are tried | one at a time: a kept answer is dropped (its connection closed) when a later one replaces it | [`failover`] |
//! | the usage tap, SSE | the current line's kept part and event's data: 1 MiB, a larger event is dropped | [`crate::ledger::extract`] |
//! | the usage tap, JSON | the raw `type`, `model` and `usage` values: 64 KiB each, a larger one is dropped | [`crate::ledger::extract`] |
//! | the token endpoint's answer | 64 KiB, or the refresh fails | [`crate::credentials::oauth`] |
//! | the usage endpoint's answer | 64 KiB, or the poll fails (error answers are not read) | [`crate::pool`] (`poll.rs`) |
//!
//! `tests/hostile_upstream.rs` holds Carpool to this with multi-GB and endless answers.

mod body;
pub mod client;
pub mod endpoint;
mod log;
#[cfg(test)]
mod proptests;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header;
use serde::Deserialize;

use crate::auth::Caller;
use crate::config::{AccountTag, Config, Target};
use crate::credentials::Unavailable;
use crate::engine::{self, Engine};
use crate::error::{Origin, RelayError};
use crate::ledger::extract::BodyKind;
use crate::pool::account::{Account, Auth};
use crate::pool::limits::{self, LimitState, Throttle};
use crate::pool::{self, Choice, unix_now};
use crate::secret::Secret;
use crate::upstream;
use body::BodyLimits;
use client::ClientIds;
use endpoint::Endpoint;
use log::RequestLog;

/// The axum handler for every relayed endpoint.
pub async fn handle(State(engine): State<Arc<Engine>>, request: Request) -> Response {
    let Some(endpoint) = Endpoint::of(request.uri().path()) else {
        return refuse(
            &request,
            endpoint::not_relayed(request.method(), request.uri().path()),
        );
    };
    let mut log = RequestLog::start(request.method(), request.uri().path());
    log.endpoint = endpoint.name();
    match relay(&engine, endpoint, request, &mut log).await {
        Ok(response) => response,
        Err(error) => {
            log.finish_error(&error);
            error.into_response()
        }
    }
}

async fn relay(
    engine: &Arc<Engine>,
    endpoint: Endpoint,
    request: Request,
    log: &mut RequestLog,
) -> Result<Response, RelayError> {
    let (parts, body) = request.into_parts();
    // The configuration this request runs on to its end, whatever a reload does meanwhile.
    let state = engine.state();
    let config = &state.config;

    // 1. authenticate
    let caller = state
        .users
        .authenticate(&parts.headers)
        .map_err(|e| RelayError::bad_token(e.message()))?;
    let target = match caller {
        Caller::User(user) => {
            log.user = user.name.to_string();
            user.target.clone()
        }
        Caller::Anonymous => config.anonymous_target(),
    };
    log.authenticated(engine.clone());

    // 2. read the body
    let body = read_body(body, config.max_body_bytes, config.connections.body_timeout).await?;
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
    let timeouts = &config.timeouts;
    let deadline = (!streaming).then(|| Instant::now() + timeouts.request);
    let limits = BodyLimits {
        idle: timeouts.idle,
        deadline,
    };

    // 3 + 4. pick an account, send; on a quota 429, a 5xx or a failure to connect,
    // try the next eligible account before anything reached the client.
    let outgoing = Outgoing {
        endpoint: &endpoint,
        parts: &parts,
        body: &body,
    };
    let (head, upstream) = match failover(engine, &state, &target, &outgoing, deadline, log).await?
    {
        Attempt::Answer(response) => body::Upstream::split(response),
        // An error answer whose first bytes were read to judge it: they go first.
        Attempt::Buffered(kept) => kept.split(),
    };
    let (status, upstream_headers) = (head.status, head.headers);

    // 5. stream back
    let headers = upstream::response_headers(&upstream_headers);
    let sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    log.status = status.as_u16();
    log.week_reset = upstream_headers
        .get("anthropic-ratelimit-unified-7d-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // Only answers to /v1/messages carry usage.
    if status.is_success() && endpoint.is_model_call() {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        log.tap(BodyKind::of(content_type));
    }
    let upstream_body = body::relay(upstream, limits, sse, log.take());
    let mut out = Response::new(Body::from_stream(upstream_body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// What is sent upstream, whichever account gets it.
struct Outgoing<'a> {
    endpoint: &'a Endpoint,
    parts: &'a http::request::Parts,
    body: &'a Bytes,
}

/// What the failover loop ends with.
enum Attempt {
    /// An upstream answer to stream to the client.
    Answer(reqwest::Response),
    /// An error answer whose first bytes were read to judge it (a 429, 400/403 or 5xx,
    /// maybe kept while other accounts were tried, none of which could do better); sent
    /// as it came: those bytes, then the rest of it, streamed.
    Buffered(Kept),
}

/// Tries the target's accounts until one answers with something other than a quota
/// 429, a 5xx or a connection failure, at most once each. A 529 (Anthropic overloaded,
/// API-wide) is retried once on the same account after a moment and then passed on:
/// another account would be just as overloaded.
async fn failover(
    engine: &Engine,
    state: &engine::State,
    target: &Target,
    request: &Outgoing<'_>,
    deadline: Option<Instant>,
    log: &mut RequestLog,
) -> Result<Attempt, RelayError> {
    let pool = &state.pool;
    pool::poll_if_stale(pool, target, unix_now(), engine.tasks());
    let mut tried: Vec<AccountTag> = Vec::new();
    // The last failure seen, given to the client if no account does better.
    // Replacing it drops the previous one, which closes that upstream connection.
    let mut last: Option<Result<Kept, RelayError>> = None;
    let mut quota_hit = false;
    loop {
        let now = unix_now();
        let account = match pool.choose(target, &log.session, &tried, now) {
            Choice::Use(account) => account,
            Choice::Exhausted { retry_at, accounts } => {
                return Err(exhausted(retry_at, accounts, now));
            }
            Choice::Unusable { reasons } => {
                // Every account was tried or cannot be used. If some ran out of quota
                // on the way, say when the first one is back.
                if quota_hit {
                    if let Choice::Exhausted { retry_at, accounts } =
                        pool.choose(target, &log.session, &[], now)
                    {
                        return Err(exhausted(retry_at, accounts, now));
                    }
                }
                return match last {
                    Some(Ok(response)) => Ok(Attempt::Buffered(response)),
                    Some(Err(error)) => Err(error),
                    None => {
                        for reason in &reasons {
                            tracing::warn!("a request could not be served: {reason}");
                        }
                        Err(needs_owner())
                    }
                };
            }
        };
        tried.push(account.tag.clone());
        log.credential = account.tag.to_string();
        log.account = Some(account.clone());
        // The login this attempt uses: a refusal for good holds until it changes.
        let generation = account.credential_generation();
        let response = match send_to(state, &account, request, deadline).await {
            Ok(response) => response,
            // Nothing another account could change.
            Err(error) if error.origin == Origin::Client => return Err(error),
            Err(error) => {
                // Could not connect, timed out, or the login could not be used: the
                // next account may do better.
                if error.origin == Origin::Upstream {
                    account.limits().on_failure(unix_now());
                }
                tracing::warn!(account = %account.tag, "{}", error.message);
                last = Some(Err(error));
                continue;
            }
        };
        let status = response.status();
        let now = unix_now();
        account.limits().observe_headers(response.headers(), now);
        match status.as_u16() {
            429 => {
                let kept = read_prefix(response, deadline).await?;
                match LimitState::classify_429(&kept.head.headers, &kept.prefix, now) {
                    Throttle::Quota { until } => {
                        quota_hit = true;
                        account.limits().on_quota_429(until);
                        pool.unbind(target, &log.session);
                        tracing::warn!(account = %account.tag, until, "account reached its usage limit; trying the next one");
                    }
                    Throttle::NotQuota {
                        retry_after: Some(seconds),
                    } if !account.is_oauth() => {
                        // Bounded: a `retry-after` alone never pauses a key for long.
                        let until = account.limits().on_rate_limit(Some(seconds), now);
                        pool.unbind(target, &log.session);
                        tracing::warn!(account = %account.tag, retry_after = seconds, paused_s = until - now, "API key rate-limited; trying the next account");
                    }
                    Throttle::NotQuota { .. } => {
                        // Not about this account's quota ("Extra usage is required for
                        // long context requests", …): the client must see it as it is.
                        return Ok(Attempt::Buffered(kept));
                    }
                }
                last = Some(Ok(kept));
            }
            400 | 403 => {
                let kept = read_prefix(response, deadline).await?;
                let Some(reason) = limits::disabled_reason(status.as_u16(), &kept.prefix) else {
                    // An ordinary refusal of this request: the client's to see.
                    account.limits().on_success();
                    return Ok(Attempt::Buffered(kept));
                };
                // The provider disabled the account: out of the pool until its login
                // changes (logged there, once), and the request goes to the next one.
                account.quarantine(reason, generation, now);
                pool.unbind(target, &log.session);
                last = Some(Ok(kept));
            }
            500 | 502 | 503 | 504 => {
                account.limits().on_failure(now);
                let kept = read_prefix(response, deadline).await?;
                tracing::warn!(account = %account.tag, status = status.as_u16(), "upstream error; trying the next account");
                last = Some(Ok(kept));
            }
            _ => {
                account.limits().on_success();
                return Ok(Attempt::Answer(response));
            }
        }
    }
}

/// One account: its credential, one send, a refresh and resend after a 401, and one
/// resend after a 529.
async fn send_to(
    state: &engine::State,
    account: &Account,
    request: &Outgoing<'_>,
    deadline: Option<Instant>,
) -> Result<reqwest::Response, RelayError> {
    let mut rejected: Option<Secret> = None;
    let mut overloaded_retry = true;
    loop {
        let auth = account
            .auth(rejected.as_ref())
            .await
            .map_err(no_credential)?;
        let response = send(&state.config, account, request, &auth, deadline).await?;
        match response.status().as_u16() {
            401 if rejected.is_none() && account.is_oauth() => {
                tracing::warn!(account = %account.tag, "upstream rejected the access token (401); refreshing and retrying once");
                if let Auth::OAuth(token) = auth {
                    rejected = Some(token);
                }
            }
            529 if overloaded_retry => {
                overloaded_retry = false;
                tracing::debug!(account = %account.tag, "upstream overloaded (529); retrying once");
                tokio::time::sleep(OVERLOADED_RETRY_DELAY).await;
            }
            _ => return Ok(response),
        }
    }
}

/// How long to wait before resending a request Anthropic answered 529 (overloaded).
const OVERLOADED_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// The 429 every account being at its limit earns, saying when the first is back.
fn exhausted(retry_at: Option<i64>, accounts: usize, now: i64) -> RelayError {
    let when = match retry_at {
        Some(t) if t > now => {
            let wait = std::time::Duration::from_secs((t - now) as u64);
            let at = jiff::Timestamp::from_second(t)
                .map(|ts| ts.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            format!(
                " The earliest is back at {at} (in {}).",
                humantime::format_duration(wait)
            )
        }
        _ => String::new(),
    };
    let which = if accounts == 1 {
        "Your Claude account cannot".to_string()
    } else {
        format!("None of the {accounts} Claude accounts you can use can")
    };
    RelayError::all_exhausted(
        format!(
            "Carpool: {which} take a request right now: usage limits reached, the owner's reserve kept, or the upstream failing.{when}"
        ),
        retry_at.map(|t| (t - now).max(1) as u64),
    )
}

/// How much of an error answer is read to judge it (quota 429 or not, an account
/// disabled for good or not): Anthropic's error bodies are a few hundred bytes.
pub(crate) const ERROR_PREFIX: usize = 64 << 10;

/// An upstream error answer of which at most [`ERROR_PREFIX`] bytes were read: enough
/// to classify it, while the rest stays unread in the connection. Passed on, it streams
/// those bytes and then the rest; dropped, it closes the upstream connection (hyper
/// never pools a connection whose body was not read to the end).
struct Kept {
    head: http::response::Parts,
    /// The body's first bytes (all of it if it ended sooner): at most [`ERROR_PREFIX`].
    prefix: Bytes,
    /// The rest of the chunk that crossed [`ERROR_PREFIX`], as received (refcounted).
    overflow: Option<Bytes>,
    /// The unread rest; `None` once the body ended.
    rest: Option<reqwest::Body>,
    /// The body's exact length, if known before reading.
    length: Option<u64>,
}

impl Kept {
    /// Its head, and its body to relay: the bytes already read, then the rest.
    fn split(self) -> (http::response::Parts, body::Upstream) {
        use futures_util::StreamExt;
        let read = [Some(self.prefix), self.overflow]
            .into_iter()
            .flatten()
            .filter(|b| !b.is_empty())
            .map(Ok);
        let read = futures_util::stream::iter(read);
        let chunks = match self.rest {
            Some(rest) => read
                .chain(http_body_util::BodyDataStream::new(rest))
                .boxed(),
            None => read.boxed(),
        };
        let upstream = body::Upstream {
            chunks,
            length: self.length,
        };
        (self.head, upstream)
    }
}

/// Reads the first [`ERROR_PREFIX`] bytes of an error answer (all of it if shorter),
/// within the request's deadline (30 s for streaming requests).
async fn read_prefix(
    response: reqwest::Response,
    deadline: Option<Instant>,
) -> Result<Kept, RelayError> {
    use http_body_util::BodyExt;
    let until = deadline.unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(30));
    let response: http::Response<reqwest::Body> = response.into();
    let (head, mut body) = response.into_parts();
    let length = axum::body::HttpBody::size_hint(&body).exact();
    let read = async {
        let mut prefix = bytes::BytesMut::new();
        while prefix.len() < ERROR_PREFIX {
            let Some(frame) = body.frame().await else {
                return Ok((prefix.freeze(), None, false));
            };
            let Ok(mut data) = frame?.into_data() else {
                continue; // trailers
            };
            let room = ERROR_PREFIX - prefix.len();
            if data.len() > room {
                let overflow = data.split_off(room);
                prefix.extend_from_slice(&data);
                return Ok((prefix.freeze(), Some(overflow), true));
            }
            prefix.extend_from_slice(&data);
        }
        Ok::<_, reqwest::Error>((prefix.freeze(), None, true))
    };
    let (prefix, overflow, more) = tokio::time::timeout_at(until.into(), read)
        .await
        .map_err(|_| {
            RelayError::timeout(
                "Carpool: the upstream's error answer did not arrive in time".into(),
            )
        })?
        .map_err(|e| {
            RelayError::unreachable(format!(
                "Carpool: the upstream's error answer broke off: {}",
                error_chain(&e)
            ))
        })?;
    Ok(Kept {
        head,
        prefix,
        overflow,
        rest: more.then_some(body),
        length,
    })
}

/// The error for an account whose credentials cannot be used now. The reason (paths,
/// account tags) is the owner's business: it goes to the log, and the user is told who
/// can fix it, or when to try again if the problem passes by itself.
fn no_credential(u: Unavailable) -> RelayError {
    tracing::warn!("a request could not be served: {}", u.reason);
    match u.retry_after {
        None => needs_owner(),
        Some(wait) => {
            let secs = wait.as_secs().max(1);
            RelayError::no_credential(
                format!(
                    "Carpool: the Claude account that serves you could not renew its login just now; Carpool tries again in {secs} s. Please retry then."
                ),
                Some(secs),
            )
        }
    }
}

/// What a user hears when no account can serve them until the owner acts.
fn needs_owner() -> RelayError {
    RelayError::needs_owner(
        "Carpool: the Claude account this Carpool server shares with you cannot be used until its owner fixes it on the Carpool machine (Carpool's log there says what is wrong). Retrying will not help; please tell the owner."
            .into(),
    )
}

/// Reads the whole request body, refusing more than `limit` bytes, and a body that stops
/// arriving for `gap` (it would hold its memory and connection for nothing). Either way
/// the rest of the body is not read, so hyper closes the connection after the answer.
async fn read_body(
    body: Body,
    limit: usize,
    gap: std::time::Duration,
) -> Result<Bytes, RelayError> {
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(gap, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(source))) => {
                return Err(if source.is::<http_body_util::LengthLimitError>() {
                    RelayError::too_large(limit)
                } else {
                    RelayError::bad_request(format!(
                        "Carpool: could not read the request body: {source}"
                    ))
                });
            }
            Err(_) => {
                let received: usize = chunks.iter().map(Bytes::len).sum();
                return Err(RelayError::body_stalled(format!(
                    "Carpool: the request body stalled: nothing arrived for {} after {received} bytes (`connections.body_timeout` in the Carpool config)",
                    humantime::format_duration(gap)
                )));
            }
        };
        if let Ok(data) = frame.into_data() {
            if !data.is_empty() {
                chunks.push(data);
            }
        }
    }
    // One piece (the common case for small bodies) is returned as it is, without a copy.
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut whole = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
    })
}

/// Sends one attempt upstream and waits for the response headers: until `deadline` for
/// non-streaming requests, for `timeouts.first_byte` for streaming ones.
async fn send(
    config: &Config,
    account: &Account,
    request: &Outgoing<'_>,
    auth: &Auth,
    deadline: Option<Instant>,
) -> Result<reqwest::Response, RelayError> {
    let timeouts = &config.timeouts;
    let Outgoing {
        endpoint,
        parts,
        body,
    } = request;
    let url = endpoint
        .upstream_url(&account.base, parts.uri.query())
        .map_err(|problem| {
            tracing::warn!(account = %account.tag, "refused to build an upstream URL: {problem}");
            endpoint::not_relayed(&parts.method, parts.uri.path())
        })?;
    let mut outgoing =
        account
            .http
            .request(parts.method.clone(), url)
            .headers(upstream::request_headers(
                &parts.headers,
                &config.headers,
                auth.upstream(),
            ));
    if !body.is_empty() {
        outgoing = outgoing.body(Bytes::clone(body));
    }
    let (until, wait, field) = match deadline {
        Some(d) => (d, timeouts.request, "timeouts.request"),
        None => (
            Instant::now() + timeouts.first_byte,
            timeouts.first_byte,
            "timeouts.first_byte",
        ),
    };
    let base = &account.base_url;
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
    let error = endpoint::not_relayed(request.method(), request.uri().path());
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
