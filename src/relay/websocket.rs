//! WebSocket upgrades of `GET /v1/responses`: Codex's WebSocket transport
//! (`supports_websockets = true` in its provider block), relayed as sing-box ocm does
//! (docs/protocol.md §7.4).
//!
//! The handshake is a request like any other: the user is authenticated, an account of
//! their OpenAI target is chosen (sticky by Codex's session header), and the upgrade goes
//! upstream through the same [`super::failover`] as every request, with the account's
//! credentials ([`crate::protocol::openai::headers`]: the client's `Sec-WebSocket-Key` and
//! version pass, its extensions do not). A refused login is refreshed and the handshake
//! sent again; a quota 429, a 5xx or a connection failure moves it to the next account.
//! When the upstream answers `101`, so does Carpool, with the upstream's
//! `Sec-WebSocket-Accept` (the key was the client's, so it matches) and, of its other
//! handshake headers, those sing-box forwards (`x-codex-*`, `x-reasoning*`,
//! `openai-model*`, and any containing `-secondary-`); any other answer is passed on as it
//! came.
//!
//! Then the two connections are joined byte for byte: frames are not decoded or re-encoded
//! on their way. Those from the upstream are also read as they pass ([`Frames`]): each
//! text message is a Responses event, and each answer's events (from `response.created`
//! to `response.completed`, `.incomplete`, `.failed` or `error`) are one row of the
//! usage ledger, read by the same Responses usage tap as a streamed answer; a
//! `codex.rate_limits` event updates the account's windows. A message larger than
//! [`MAX_MESSAGE`] is passed on and not read.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::log::{Outcome, RequestContext};
use super::{Attempt, Outgoing, authenticate, failover, method_not_allowed, target_of};
use crate::ledger::Recorder;
use crate::ledger::extract::{BodyKind, Dialect, UsageTap};
use crate::pool::account::Account;
use crate::pool::limits::{LimitSignals, Window, percent_from_percent};
use crate::pool::unix_now;
use crate::protocol::openai::{OpenAi, endpoint::Endpoint};
use crate::protocol::{Peek, Protocol};
use crate::state::Current;

/// The path whose `GET` may upgrade.
pub const PATH: &str = "/v1/responses";

/// The largest message read for usage; larger ones are passed on unread.
const MAX_MESSAGE: usize = 16 << 20;
/// The most of a refused handshake's body passed on.
const MAX_REFUSAL: usize = 64 << 10;

/// The axum handler for `GET /v1/responses`.
pub async fn handle(state: State<Arc<Current>>, mut request: Request) -> Response {
    if !wants_websocket(request.headers()) {
        return method_not_allowed::<OpenAi>(state, request).await;
    }
    let State(current) = state;
    // Taken before the answer goes out: the connection is handed over after the `101`.
    let on_upgrade = hyper::upgrade::on(&mut request);
    let mut context = RequestContext::start(request.method(), request.uri().path(), current.feed());
    context.endpoint = "responses";
    match open(&current, request, &mut context).await {
        Ok(Opened::Joined {
            response,
            upstream,
            turns,
        }) => {
            current.tasks().spawn(async move {
                match on_upgrade.await {
                    Ok(client) => join(TokioIo::new(client), upstream, turns).await,
                    Err(e) => tracing::debug!("the client's WebSocket upgrade failed: {e}"),
                }
            });
            response
        }
        Ok(Opened::Refused(response)) => response,
        Err(error) => {
            let response = OpenAi::error_response(&error);
            context.refused(error.kind, response.status());
            response
        }
    }
}

/// Whether a request asks to become a WebSocket.
fn wants_websocket(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

enum Opened {
    /// The upstream accepted: the client's `101`, the upstream connection, and the
    /// bookkeeping of the answers to come.
    Joined {
        response: Response,
        upstream: reqwest::Upgraded,
        turns: Box<Turns>,
    },
    /// The upstream answered something else, passed on as it came.
    Refused(Response),
}

async fn open(
    current: &Current,
    request: Request,
    context: &mut RequestContext,
) -> Result<Opened, crate::error::RelayError> {
    let (parts, _) = request.into_parts();
    let state = current.state();
    let caller = authenticate(&state, &parts.headers, context)?;
    let target = target_of(&caller, &state.config, OpenAi::PROVIDER, OpenAi::ACCOUNT)?;
    context.provider = OpenAi::PROVIDER;
    let peek = OpenAi::peek(&parts.headers, b"");
    let ids = peek.ids.clone();
    context.peeked(Peek {
        stream: true,
        ..peek
    });
    let outgoing = Outgoing::<OpenAi> {
        endpoint: &Endpoint::Responses,
        parts: &parts,
        body: &Bytes::new(),
    };
    let attempt = failover(current.tasks(), &state, &target, &outgoing, None, context).await?;
    let response = match attempt {
        Attempt::Answer(response) => response,
        Attempt::Buffered(kept) => {
            let (head, upstream) = kept.split();
            context.status = head.status.as_u16();
            let body = Body::from_stream(upstream.chunks);
            let mut out = Response::new(body);
            *out.status_mut() = head.status;
            *out.headers_mut() = crate::upstream::response_headers(&head.headers);
            return Ok(Opened::Refused(out));
        }
    };
    let status = response.status();
    context.status = status.as_u16();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let headers = crate::upstream::response_headers(response.headers());
        let body = crate::upstream::read_capped(response, MAX_REFUSAL)
            .await
            .unwrap_or_default();
        context.outcome = Outcome::Completed;
        let mut out = (status, body).into_response();
        *out.headers_mut() = headers;
        return Ok(Opened::Refused(out));
    }
    let handshake = handshake_headers(response.headers());
    let account = context.account.clone();
    let upstream = response.upgrade().await.map_err(|e| {
        crate::error::RelayError::unreachable(
            "Carpool: the upstream's WebSocket could not be taken over".into(),
        )
        .with_source(e)
    })?;
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = handshake;
    // The handshake is not a turn: what is recorded are the answers that follow.
    context.forget();
    let turns = Box::new(Turns {
        user: context.user.clone(),
        device: ids.device,
        session: ids.session,
        account,
        recorder: state.recorder.clone(),
        feed: current.feed().clone(),
        turn: None,
    });
    Ok(Opened::Joined {
        response: out,
        upstream,
        turns,
    })
}

/// The client's `101`: the upgrade itself, the upstream's accept and subprotocol, and
/// the handshake headers sing-box ocm forwards (`service_websocket.go`).
fn handshake_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    for (name, value) in upstream {
        let n = name.as_str();
        let forwarded = matches!(n, "sec-websocket-accept" | "sec-websocket-protocol")
            || n.starts_with("x-codex-")
            || n.starts_with("x-reasoning")
            || n.starts_with("openai-model")
            || n.contains("-secondary-");
        if forwarded {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Joins the client's connection and the upstream's until either ends.
async fn join<C>(client: C, upstream: reqwest::Upgraded, mut turns: Box<Turns>)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let to_upstream = tokio::io::copy(&mut client_read, &mut upstream_write);
    let to_client = async {
        let mut frames = Frames::default();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = upstream_read.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            frames.push(&buf[..n], |message| turns.message(message));
            client_write.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = to_upstream => {}
        _ = to_client => {}
    }
    let _ = client_write.shutdown().await;
    let _ = upstream_write.shutdown().await;
}

/// The answers on one WebSocket, each recorded as one request.
struct Turns {
    user: String,
    device: String,
    session: String,
    account: Option<Arc<Account>>,
    recorder: Recorder,
    feed: crate::ledger::live::LiveFeed,
    /// The answer being received.
    turn: Option<RequestContext>,
}

/// The `type` of an event.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, rename = "type")]
    kind: std::borrow::Cow<'a, str>,
}

impl Turns {
    /// One text message from the upstream: a Responses event.
    fn message(&mut self, message: &[u8]) {
        let Ok(event) = serde_json::from_slice::<Event>(message) else {
            return;
        };
        if event.kind == "codex.rate_limits" {
            self.rate_limits(message);
            return;
        }
        let turn = self.turn.get_or_insert_with(|| {
            let mut context = RequestContext::start(&http::Method::GET, PATH, &self.feed);
            context.endpoint = "responses";
            context.provider = OpenAi::PROVIDER;
            context.user = self.user.clone();
            context.authenticated(self.recorder.clone());
            context.account = self.account.clone();
            context.peeked(Peek {
                stream: true,
                ids: crate::protocol::ClientIds {
                    device: self.device.clone(),
                    session: self.session.clone(),
                },
                ..Peek::default()
            });
            context.status = 200;
            context.streamed = true;
            context.tap = Some(UsageTap::for_dialect(Dialect::Responses, BodyKind::Sse));
            context
        });
        if let Some(tap) = &mut turn.tap {
            // The tap reads an event stream: each message is one event's data.
            tap.feed(&Bytes::from_static(b"data: "));
            tap.feed(&Bytes::copy_from_slice(message));
            tap.feed(&Bytes::from_static(b"\n\n"));
        }
        if matches!(
            event.kind.as_ref(),
            "response.completed" | "response.incomplete" | "response.failed" | "error"
        ) {
            turn.outcome = Outcome::Completed;
            // Recorded as it is dropped.
            self.turn = None;
        }
    }

    /// `codex.rate_limits`: `{rate_limits: {primary: {used_percent, reset_at,
    /// window_minutes?}, secondary: {…}}}` (docs/protocol.md §7.6), the account's windows.
    fn rate_limits(&self, message: &[u8]) {
        let Some(account) = &self.account else { return };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(message) else {
            return;
        };
        let limits = &value["rate_limits"];
        let mut signals = LimitSignals::default();
        for (field, primary) in [("primary", true), ("secondary", false)] {
            let w = &limits[field];
            if !w.is_object() {
                continue;
            }
            let window = Window {
                percent: w["used_percent"].as_f64().map(percent_from_percent),
                resets_at: w["reset_at"].as_i64(),
            };
            let five_hour = match w["window_minutes"].as_i64() {
                Some(minutes) if minutes > 0 => minutes <= 12 * 60,
                _ => primary,
            };
            if five_hour {
                signals.five_hour = window;
            } else {
                signals.weekly = window;
            }
        }
        account.limits().observe(&signals, unix_now());
    }
}

/// Finds the text messages in a server's WebSocket frames (RFC 6455 §5.2) as they pass,
/// whatever the chunks: frames split across reads, several in one read, messages in
/// continuation frames. Control and binary frames are skipped.
#[derive(Default)]
struct Frames {
    /// Bytes of the frame being read (its header, then its payload).
    pending: Vec<u8>,
    /// Payload bytes still to skip (a frame not read for its text).
    skip: usize,
    /// The text message being assembled; `None` inside a message that is not read.
    message: Option<Vec<u8>>,
    /// Inside a fragmented message (text or not).
    fragmented: bool,
}

impl Frames {
    fn push(&mut self, mut bytes: &[u8], mut on_text: impl FnMut(&[u8])) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
            }
            if bytes.is_empty() && self.pending.len() < 2 {
                return;
            }
            self.pending.extend_from_slice(bytes);
            bytes = &[];
            let Some((header, length, fin, opcode, mask)) = parse_header(&self.pending) else {
                return;
            };
            let read = match opcode {
                0x1 => length <= MAX_MESSAGE as u64,
                0x0 => self.message.is_some() && length <= MAX_MESSAGE as u64,
                _ => false,
            };
            if !read {
                // Skip this frame's payload; a text message that grew too large is
                // dropped.
                if opcode <= 0x2 {
                    self.message = None;
                    self.fragmented = !fin;
                }
                let have = self.pending.len() - header;
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if have >= length {
                    bytes = &[];
                    let rest = self.pending.split_off(header + length);
                    self.pending = rest;
                } else {
                    self.skip = length - have;
                    self.pending.clear();
                }
                continue;
            }
            let length = length as usize;
            if self.pending.len() < header + length {
                return;
            }
            let mut payload = self.pending[header..header + length].to_vec();
            if let Some(key) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            self.pending.drain(..header + length);
            let message = match opcode {
                0x1 => self.message.insert(payload),
                _ => {
                    let message = self.message.get_or_insert_with(Vec::new);
                    if message.len() + payload.len() > MAX_MESSAGE {
                        self.message = None;
                        self.fragmented = !fin;
                        continue;
                    }
                    message.extend_from_slice(&payload);
                    message
                }
            };
            if fin {
                on_text(message);
                self.message = None;
                self.fragmented = false;
            } else {
                self.fragmented = true;
            }
        }
    }
}

/// A frame header at the start of `bytes`: its length, the payload length, FIN, the
/// opcode and the masking key; `None` until it is all there.
#[allow(clippy::type_complexity)]
fn parse_header(bytes: &[u8]) -> Option<(usize, u64, bool, u8, Option<[u8; 4]>)> {
    let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    let (length, mut at) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
            4,
        ),
        127 => {
            let raw: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(raw), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let key: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    Some((at, length, fin, opcode, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked), or a masked one.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn messages(stream: &[u8], piece: usize) -> Vec<String> {
        let mut frames = Frames::default();
        let mut out = Vec::new();
        for chunk in stream.chunks(piece) {
            frames.push(chunk, |m| out.push(String::from_utf8(m.to_vec()).unwrap()));
        }
        out
    }

    #[test]
    fn text_messages_are_found_however_the_frames_are_cut() {
        let long = "x".repeat(70_000);
        let mut stream = Vec::new();
        stream.extend(frame(true, 0x1, b"{\"type\":\"response.created\"}", None));
        stream.extend(frame(true, 0x9, b"ping", None));
        stream.extend(frame(false, 0x1, b"{\"type\":", None));
        stream.extend(frame(true, 0x0, b"\"response.completed\"}", None));
        stream.extend(frame(true, 0x2, b"\x00\x01binary", None));
        stream.extend(frame(true, 0x1, long.as_bytes(), None));
        stream.extend(frame(true, 0x1, b"masked", Some([1, 2, 3, 4])));
        let want = vec![
            "{\"type\":\"response.created\"}".to_owned(),
            "{\"type\":\"response.completed\"}".to_owned(),
            long.clone(),
            "masked".to_owned(),
        ];
        for piece in [1, 2, 3, 7, 125, 4096, stream.len()] {
            assert_eq!(messages(&stream, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn a_message_too_large_is_skipped_and_the_next_is_read() {
        let mut stream = frame(true, 0x1, &vec![b'a'; MAX_MESSAGE + 1], None);
        stream.extend(frame(true, 0x1, b"after", None));
        assert_eq!(messages(&stream, 65_536), vec!["after".to_owned()]);
    }

    #[test]
    fn upgrades_are_told_from_other_gets() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", "WebSocket".parse().unwrap());
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        assert!(wants_websocket(&h));
        h.remove("connection");
        assert!(!wants_websocket(&h));
    }

    #[test]
    fn the_handshake_forwards_what_sing_box_forwards() {
        let mut upstream = HeaderMap::new();
        for (k, v) in [
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("x-codex-primary-used-percent", "12"),
            ("x-reasoning-included", "true"),
            ("openai-model", "gpt-5.1-codex"),
            ("x-premium-secondary-reset-at", "1"),
            ("set-cookie", "session=secret"),
            ("server", "cloudflare"),
        ] {
            upstream.insert(k, v.parse().unwrap());
        }
        let out = handshake_headers(&upstream);
        assert_eq!(out["upgrade"], "websocket");
        assert_eq!(out["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        for kept in [
            "x-codex-primary-used-percent",
            "x-reasoning-included",
            "openai-model",
            "x-premium-secondary-reset-at",
        ] {
            assert!(out.contains_key(kept), "{kept}");
        }
        assert!(out.get("set-cookie").is_none());
        assert!(out.get("server").is_none());
    }
}
