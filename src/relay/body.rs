//! Streaming an upstream body to the client as it arrives.
//!
//! Each chunk is handed to hyper the moment reqwest yields it: nothing is buffered, so
//! an SSE event reaches the client as soon as the upstream sent it, and a body of any
//! length (an endless stream included) holds one chunk at a time here. The next chunk is
//! asked for only once hyper took the last one, so a slow client slows the upstream
//! down (TCP back-pressure) instead of filling memory. Two timeouts guard
//! the stream: `idle` (the longest silence between chunks) and, for non-streaming
//! requests, the whole-request deadline. A failure after the status line went out can
//! no longer change the status, so an SSE stream ends with a well-formed `error` event
//! (what Anthropic itself sends) and any other body is aborted, which the client sees as
//! a broken response rather than a silently truncated one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

use super::log::RequestLog;
use crate::error::RelayError;

pub struct BodyLimits {
    pub idle: Duration,
    pub deadline: Option<Instant>,
}

struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    limits: BodyLimits,
    sse: bool,
    log: RequestLog,
    /// The upstream's `content-length`, passed on to the client: hyper stops polling
    /// once that many bytes went out, so reaching it is how such a body completes.
    length: Option<u64>,
    done: bool,
}

type Chunk = Result<Bytes, std::io::Error>;

/// The upstream body to relay: its chunks as reqwest yields them, and its exact length
/// when known.
pub struct Upstream {
    pub chunks: BoxStream<'static, reqwest::Result<Bytes>>,
    pub length: Option<u64>,
}

impl Upstream {
    /// The head of an upstream answer, and its body to relay.
    pub fn split(response: reqwest::Response) -> (http::response::Parts, Upstream) {
        let response: http::Response<reqwest::Body> = response.into();
        let (head, body) = response.into_parts();
        let upstream = Upstream {
            length: axum::body::HttpBody::size_hint(&body).exact(),
            chunks: http_body_util::BodyDataStream::new(body).boxed(),
        };
        (head, upstream)
    }
}

pub fn relay(
    upstream: Upstream,
    limits: BodyLimits,
    sse: bool,
    log: RequestLog,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    let length = upstream.length;
    let mut log = log;
    if length == Some(0) {
        log.outcome = "complete"; // nothing to send; hyper will not poll
    }
    let state = Relay {
        length,
        upstream: upstream.chunks,
        limits,
        sse,
        log,
        done: false,
    };
    futures_util::stream::unfold(state, next)
}

async fn next(mut s: Relay) -> Option<(Chunk, Relay)> {
    if s.done {
        return None;
    }
    let idle_end = Instant::now() + s.limits.idle;
    let until = s.limits.deadline.map_or(idle_end, |d| d.min(idle_end));
    match tokio::time::timeout_at(until.into(), s.upstream.next()).await {
        Ok(Some(Ok(bytes))) => {
            s.log.bytes += bytes.len() as u64;
            if s.log.first_byte.is_none() {
                s.log.first_byte = Some(Instant::now());
            }
            if let Some(tap) = &mut s.log.tap {
                tap.feed(&bytes);
            }
            if s.length == Some(s.log.bytes) {
                s.log.outcome = "complete";
            }
            Some((Ok(bytes), s))
        }
        Ok(None) => {
            s.log.outcome = "complete";
            None
        }
        Ok(Some(Err(e))) => {
            let message = format!(
                "Carpool: the upstream connection broke in the middle of the response: {}",
                super::error_chain(&e)
            );
            fail(s, "upstream_broke", RelayError::unreachable(message))
        }
        Err(_) => {
            let (outcome, message) = if Some(until) == s.limits.deadline {
                (
                    "request_timeout",
                    "Carpool: the response did not finish within `timeouts.request`".to_string(),
                )
            } else {
                (
                    "idle_timeout",
                    format!(
                        "Carpool: the upstream sent nothing for {} (`timeouts.idle` in the Carpool config)",
                        humantime::format_duration(s.limits.idle)
                    ),
                )
            };
            fail(s, outcome, RelayError::timeout(message))
        }
    }
}

fn fail(mut s: Relay, outcome: &'static str, error: RelayError) -> Option<(Chunk, Relay)> {
    tracing::warn!(credential = %s.log.credential, "{}", error.message);
    s.done = true;
    s.log.outcome = outcome;
    let chunk = if s.sse {
        Ok(Bytes::from(error.sse_event()))
    } else {
        Err(std::io::Error::other(error.message))
    };
    Some((chunk, s))
}
