//! Streaming an upstream body to the client as it arrives.
//!
//! Each chunk is handed to hyper the moment reqwest yields it: nothing is buffered, so
//! an SSE event reaches the client as soon as the upstream sent it, and a body of any
//! length (an endless stream included) holds one chunk at a time here. The next chunk is
//! asked for only once hyper took the last one, so a slow client slows the upstream
//! down (TCP back-pressure) instead of filling memory. Two timeouts guard
//! the stream: `idle` (the longest silence between chunks) and, for non-streaming
//! requests, the whole-request deadline. A failure after the status line went out can
//! no longer change the status, so an event stream ends with a well-formed error event
//! in the client's protocol ([`crate::protocol::Protocol::stream_error`]) and any other
//! body is aborted, which the client sees as a broken response rather than a silently
//! truncated one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

use super::log::{Outcome, RequestContext, Timer};
use crate::error::RelayError;

/// Writes an error as the last event of an event stream, in the client's protocol.
pub type StreamError = fn(&RelayError) -> Bytes;

/// Rewrites an answer's body on its way to the client (a translated request's answer):
/// fed each upstream chunk, it returns what to send now (maybe nothing, while it waits for
/// more); at the end of the upstream body, `finish` returns the rest; a failure midway
/// (timeout, broken upstream) is written by `error`, in the client's terms, and ends it.
pub trait Transform: Send {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8>;
    fn finish(&mut self) -> Vec<u8>;
    fn error(&mut self, error: &RelayError) -> Vec<u8>;
}

pub struct BodyLimits {
    pub idle: Duration,
    pub deadline: Option<Instant>,
}

struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    limits: BodyLimits,
    /// How to end the stream with an error; `None` when the body is not an event stream.
    stream_error: Option<StreamError>,
    /// Rewrites the body for the client; it also writes errors then.
    transform: Option<Box<dyn Transform>>,
    context: RequestContext,
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
    stream_error: Option<StreamError>,
    transform: Option<Box<dyn Transform>>,
    mut context: RequestContext,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    let length = upstream.length;
    if length == Some(0) {
        context.outcome = Outcome::Completed; // nothing to send; hyper will not poll
    }
    let state = Relay {
        length,
        upstream: upstream.chunks,
        limits,
        stream_error,
        transform,
        context,
        done: false,
    };
    futures_util::stream::unfold(state, next)
}

async fn next(mut s: Relay) -> Option<(Chunk, Relay)> {
    loop {
        let (chunk, after) = step(s).await?;
        // A transform may have nothing to send yet: read on.
        if matches!(&chunk, Ok(bytes) if bytes.is_empty()) && !after.done {
            s = after;
            continue;
        }
        return Some((chunk, after));
    }
}

async fn step(mut s: Relay) -> Option<(Chunk, Relay)> {
    if s.done {
        return None;
    }
    let idle_end = Instant::now() + s.limits.idle;
    let until = s.limits.deadline.map_or(idle_end, |d| d.min(idle_end));
    match tokio::time::timeout_at(until.into(), s.upstream.next()).await {
        Ok(Some(Ok(bytes))) => {
            let c = &mut s.context;
            c.bytes += bytes.len() as u64;
            if c.first_byte.is_none() {
                c.first_byte = Some(Instant::now());
            }
            if let Some(tap) = &mut c.tap {
                tap.feed(&bytes);
            }
            if s.length == Some(c.bytes) {
                c.outcome = Outcome::Completed;
            }
            match &mut s.transform {
                Some(t) => {
                    let out = Bytes::from(t.push(&bytes));
                    Some((Ok(out), s))
                }
                None => Some((Ok(bytes), s)),
            }
        }
        Ok(None) => {
            s.context.outcome = Outcome::Completed;
            let rest = s.transform.as_mut().map(|t| t.finish())?;
            s.done = true;
            Some((Ok(Bytes::from(rest)), s))
        }
        Ok(Some(Err(e))) => {
            let error = RelayError::unreachable(
                "Carpool: the upstream connection broke in the middle of the response".into(),
            )
            .with_source(e);
            fail(s, Outcome::UpstreamBroke, error)
        }
        Err(_) => {
            let (timer, message) = if Some(until) == s.limits.deadline {
                (
                    Timer::Request,
                    "Carpool: the response did not finish within `timeouts.request`".to_string(),
                )
            } else {
                (
                    Timer::Idle,
                    format!(
                        "Carpool: the upstream sent nothing for {} (`timeouts.idle` in the Carpool config)",
                        humantime::format_duration(s.limits.idle)
                    ),
                )
            };
            fail(s, Outcome::TimedOut(timer), RelayError::timeout(message))
        }
    }
}

fn fail(mut s: Relay, outcome: Outcome, error: RelayError) -> Option<(Chunk, Relay)> {
    tracing::warn!(credential = %s.context.credential(), "{}", error.detail());
    s.done = true;
    s.context.outcome = outcome;
    let chunk = match (&mut s.transform, s.stream_error) {
        (Some(t), _) => Ok(Bytes::from(t.error(&error))),
        (None, Some(render)) => Ok(render(&error)),
        (None, None) => Err(std::io::Error::other(error.detail())),
    };
    Some((chunk, s))
}
