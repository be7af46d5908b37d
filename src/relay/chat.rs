//! `POST /v1/chat/completions`, for the OpenAI SDKs, Cursor, Continue and scripts: a Chat
//! Completions request translated ([`crate::translate`]) to the API of its model's
//! provider, sent through the same path as every request ([`super::forward`]: an
//! account of the user's target for that provider, failover, timeouts, the usage ledger),
//! and its answer translated back.
//!
//! **Routing by model.** The `model` is first looked up in the config's `aliases`; then
//! a name starting with `claude` goes to the user's Claude target as Anthropic Messages,
//! and any other (`gpt-*`, `o3`, `codex-*`…) to their OpenAI target as a Responses
//! request (a ChatGPT login refuses Chat Completions upstream: docs/protocol.md §7.4). A
//! target whose accounts include a Codex login gets what ChatGPT's backend accepts
//! ([`ResponsesOptions::CHATGPT`]: streamed, `store: false`, no token limit or sampling);
//! OpenAI keys alone get everything ([`ResponsesOptions::API`]).
//!
//! **Answers.** A streaming client gets Chat chunks as the upstream's events arrive. A
//! non-streaming client gets one `chat.completion` once the upstream's answer is whole
//! (from a stream when the upstream streams anyway). An upstream refusal becomes OpenAI's
//! error shape with its status ([`translate::upstream_error`]); Carpool's own errors are
//! OpenAI's shape too ([`crate::protocol::openai::errors`]). Usage is read from the
//! upstream's bytes, in its own dialect, before the translation.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::body::Transform;
use super::log::RequestContext;
use super::{authenticate, forward, read_body, target_of};
use crate::config::{Provider, Target};
use crate::error::RelayError;
use crate::pool::unix_now;
use crate::protocol::anthropic::{self, Anthropic};
use crate::protocol::openai::{self, OpenAi};
use crate::protocol::{Endpoint as _, Protocol};
use crate::state::{self, Current};
use crate::translate::{
    self, ChatError, MessagesOptions, MessagesToChat, Reply, ResponsesAggregator, ResponsesOptions,
    ResponsesToChat,
};

/// The route's path.
pub const PATH: &str = "/v1/chat/completions";

/// The most of a non-streaming answer (or an error answer) kept to translate it whole.
const MAX_WHOLE: usize = 64 << 20;

/// Which provider serves `model` (an alias already resolved): Claude models are
/// Anthropic's, every other name OpenAI's.
pub fn provider_of(model: &str) -> Provider {
    if model.trim().to_ascii_lowercase().starts_with("claude") {
        Provider::Anthropic
    } else {
        Provider::OpenAi
    }
}

/// Builds the transform of an answer once its status and kind are known.
pub trait MakeTransform: Sync {
    fn make(&self, status: StatusCode, sse: bool) -> Made;
}

/// A transform and what the answer's head becomes.
pub struct Made {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub transform: Box<dyn Transform>,
}

/// Why a chat request was refused before or instead of an upstream answer.
enum Refused {
    Relay(RelayError),
    Chat(ChatError),
}

impl From<RelayError> for Refused {
    fn from(e: RelayError) -> Self {
        Refused::Relay(e)
    }
}

impl From<ChatError> for Refused {
    fn from(e: ChatError) -> Self {
        Refused::Chat(e)
    }
}

/// The axum handler.
pub async fn handle(State(current): State<Arc<Current>>, request: Request) -> Response {
    let mut context = RequestContext::start(request.method(), request.uri().path(), current.feed());
    context.endpoint = "chat_completions";
    match chat(&current, request, &mut context).await {
        Ok(response) => response,
        Err(Refused::Relay(error)) => {
            let response = OpenAi::error_response(&error);
            context.refused(error.kind, response.status());
            response
        }
        Err(Refused::Chat(error)) => {
            let response = chat_error(&error);
            context.refused(crate::error::ErrorKind::BadRequest, response.status());
            response
        }
    }
}

async fn chat(
    current: &Current,
    request: Request,
    context: &mut RequestContext,
) -> Result<Response, Refused> {
    let (mut parts, body) = request.into_parts();
    let state = current.state();
    let config = &state.config;
    let caller = authenticate(&state, &parts.headers, context)?;
    let body = read_body(body, config.max_body_bytes, config.connections.body_timeout).await?;

    let mut json: Value = serde_json::from_slice(&body)
        .map_err(|e| ChatError::invalid("", format!("The body is not a JSON object: {e}")))?;
    let asked = json
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ChatError::invalid("model", "Missing required parameter: 'model'."))?;
    let model = config.aliases.get(&asked).cloned().unwrap_or(asked);
    json["model"] = Value::String(model.clone());
    let body = serde_json::to_vec(&json).unwrap_or_default();
    let provider = provider_of(&model);
    let now = unix_now();

    // What the client asked for goes upstream as the provider's own request.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let response = match provider {
        Provider::Anthropic => {
            let target = target_of(&caller, config, provider, Anthropic::ACCOUNT)?;
            let translated = translate::chat_to_messages(&body, &MessagesOptions::default())?;
            // Every Anthropic request names the API version; OpenAI clients send none.
            if !parts.headers.contains_key("anthropic-version") {
                parts
                    .headers
                    .insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
            }
            let make = Answer {
                upstream: Upstream::Messages,
                reply: translated.reply.clone(),
                now,
            };
            let endpoint = anthropic::endpoint::Endpoint::Messages;
            context.endpoint = "chat_completions";
            let body = Bytes::from(serde_json::to_vec(&translated.body).unwrap_or_default());
            let stream = translated.reply.stream;
            let response = forward::<Anthropic>(
                current,
                &state,
                &target,
                endpoint,
                &parts,
                body,
                Some(&make),
                context,
            )
            .await?;
            (response, stream)
        }
        Provider::OpenAi => {
            let target = target_of(&caller, config, provider, OpenAi::ACCOUNT)?;
            let options = if has_chatgpt_login(&state, &target) {
                ResponsesOptions::CHATGPT
            } else {
                ResponsesOptions::API
            };
            let translated = translate::chat_to_responses(&body, &options)?;
            let make = Answer {
                upstream: Upstream::Responses,
                reply: translated.reply.clone(),
                now,
            };
            let endpoint = openai::endpoint::Endpoint::Responses;
            debug_assert_eq!(endpoint.name(), "responses");
            let body = Bytes::from(serde_json::to_vec(&translated.body).unwrap_or_default());
            let stream = translated.reply.stream;
            let response = forward::<OpenAi>(
                current,
                &state,
                &target,
                endpoint,
                &parts,
                body,
                Some(&make),
                context,
            )
            .await?;
            (response, stream)
        }
    };
    let (response, stream) = response;
    if stream {
        return Ok(response);
    }
    // A whole answer: the transform wrote one JSON document once the upstream's ended;
    // its status is known only then.
    let (head, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_WHOLE).await.map_err(|e| {
        RelayError::unreachable("Carpool: the upstream's answer could not be read whole".into())
            .with_source(std::io::Error::other(e.to_string()))
    })?;
    let status = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error")?.get("status")?.as_u64())
        .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
        .unwrap_or(head.status);
    let mut out = Response::new(Body::from(strip_status(bytes)));
    *out.status_mut() = status;
    *out.headers_mut() = head.headers;
    Ok(out)
}

/// Whether any of the target's accounts is a ChatGPT (Codex) login.
fn has_chatgpt_login(state: &state::State, target: &Target) -> bool {
    state.pool.members(target).iter().any(|a| a.is_oauth())
}

/// A translation refusal as the client sees it.
fn chat_error(error: &ChatError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, axum::Json(error.body())).into_response()
}

/// A whole answer's error body carries its status for [`chat`] (`error.status`), which
/// takes it out again before the client sees it.
fn error_with_status(error: &ChatError) -> Vec<u8> {
    let mut body = error.body();
    body["error"]["status"] = error.status.into();
    serde_json::to_vec(&body).unwrap_or_default()
}

fn strip_status(bytes: Bytes) -> Bytes {
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) if v.get("error").and_then(|e| e.get("status")).is_some() => {
            if let Some(e) = v.get_mut("error").and_then(Value::as_object_mut) {
                e.remove("status");
            }
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
        _ => bytes,
    }
}

fn json_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

fn sse_type() -> HeaderValue {
    HeaderValue::from_static("text/event-stream")
}

/// What turns a whole upstream body into the client's JSON.
type WholeFinish = dyn FnMut(&[u8]) -> Vec<u8> + Send;

/// A refusal's body, kept whole (up to [`MAX_WHOLE`]) and written in OpenAI's shape at
/// the end; also used for a body that is not what the translation expects.
struct Whole {
    bytes: Vec<u8>,
    overflow: bool,
    /// Turns the whole body into the client's JSON.
    finish: Box<WholeFinish>,
}

impl Whole {
    fn new(finish: impl FnMut(&[u8]) -> Vec<u8> + Send + 'static) -> Whole {
        Whole {
            bytes: Vec::new(),
            overflow: false,
            finish: Box::new(finish),
        }
    }
}

impl Transform for Whole {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.bytes.len() + chunk.len() > MAX_WHOLE {
            self.overflow = true;
        } else {
            self.bytes.extend_from_slice(chunk);
        }
        Vec::new()
    }

    fn finish(&mut self) -> Vec<u8> {
        if self.overflow {
            return error_with_status(&ChatError {
                status: 502,
                message: "The upstream's answer was too large to translate.".into(),
                kind: "server_error".into(),
                param: None,
                code: Some("bad_upstream_response".into()),
            });
        }
        (self.finish)(&self.bytes)
    }

    fn error(&mut self, error: &RelayError) -> Vec<u8> {
        let (status, kind, code) = openai::errors::status_type_code(error.kind);
        error_with_status(&ChatError {
            status: status.as_u16(),
            message: error.detail(),
            kind: kind.into(),
            param: None,
            code: Some(code.into()),
        })
    }
}

/// An upstream refusal in OpenAI's shape.
fn refusal(status: StatusCode) -> Made {
    let code = status.as_u16();
    Made {
        status,
        content_type: json_type(),
        transform: Box::new(Whole::new(move |body| {
            error_with_status(&translate::upstream_error(code, body))
        })),
    }
}

/// Streams a Chat chunk stream made by `push`/`finish` of a translator.
struct Chunks<T> {
    translator: T,
    push: fn(&mut T, &[u8]) -> Vec<u8>,
    finish: fn(&mut T) -> Vec<u8>,
}

impl<T: Send> Transform for Chunks<T> {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        (self.push)(&mut self.translator, chunk)
    }

    fn finish(&mut self) -> Vec<u8> {
        (self.finish)(&mut self.translator)
    }

    /// A failure midway: Chat's stream error, then `[DONE]`.
    fn error(&mut self, error: &RelayError) -> Vec<u8> {
        let (_, kind, code) = openai::errors::status_type_code(error.kind);
        let body = serde_json::json!({"error": {
            "message": error.detail(), "type": kind, "param": null, "code": code,
        }});
        format!("data: {body}\n\ndata: [DONE]\n\n").into_bytes()
    }
}

/// Which API a translated request went to.
#[derive(Debug, Clone, Copy)]
enum Upstream {
    Responses,
    Messages,
}

/// The answer of a translated request: how it becomes Chat Completions.
struct Answer {
    upstream: Upstream,
    reply: Reply,
    now: i64,
}

impl MakeTransform for Answer {
    fn make(&self, status: StatusCode, sse: bool) -> Made {
        if !status.is_success() {
            return refusal(status);
        }
        let (upstream, reply, now) = (self.upstream, self.reply.clone(), self.now);
        if reply.stream && sse {
            let transform: Box<dyn Transform> = match upstream {
                Upstream::Responses => Box::new(Chunks {
                    translator: ResponsesToChat::new(&reply, now),
                    push: ResponsesToChat::push,
                    finish: ResponsesToChat::finish,
                }),
                Upstream::Messages => Box::new(Chunks {
                    translator: MessagesToChat::new(&reply, now),
                    push: MessagesToChat::push,
                    finish: MessagesToChat::finish,
                }),
            };
            return Made {
                status,
                content_type: sse_type(),
                transform,
            };
        }
        let finish = move |body: &[u8]| whole_json(completion(upstream, sse, body, &reply, now));
        Made {
            status,
            content_type: json_type(),
            transform: Box::new(Whole::new(finish)),
        }
    }
}

/// A whole upstream answer as one completion: a Response (as JSON, or gathered from its
/// event stream when the upstream streams anyway) or a Message.
fn completion(
    upstream: Upstream,
    sse: bool,
    body: &[u8],
    reply: &Reply,
    now: i64,
) -> Result<translate::ChatCompletion, ChatError> {
    match upstream {
        Upstream::Responses if sse => {
            let mut aggregator = ResponsesAggregator::new();
            aggregator.push(body);
            translate::response_to_chat(&aggregator.finish()?, reply, now)
        }
        Upstream::Responses => {
            let response = serde_json::from_slice(body)
                .map_err(|_| translate::upstream_error(502, b"not a Response"))?;
            translate::response_to_chat(&response, reply, now)
        }
        Upstream::Messages => {
            let message = serde_json::from_slice(body)
                .map_err(|_| translate::upstream_error(502, b"not a Message"))?;
            translate::message_to_chat(&message, reply, now)
        }
    }
}

fn whole_json(result: Result<translate::ChatCompletion, ChatError>) -> Vec<u8> {
    match result {
        Ok(completion) => serde_json::to_vec(&completion).unwrap_or_default(),
        Err(error) => error_with_status(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_models_go_to_anthropic_and_every_other_to_openai() {
        for model in [
            "claude-sonnet-4-5",
            "Claude-3-5-haiku-latest",
            " claude-opus-4-6[1m]",
        ] {
            assert_eq!(provider_of(model), Provider::Anthropic, "{model}");
        }
        for model in ["gpt-5.1-codex", "o3", "codex-mini-latest", "gpt-4o"] {
            assert_eq!(provider_of(model), Provider::OpenAi, "{model}");
        }
    }

    #[test]
    fn a_whole_refusal_keeps_its_status_until_chat_takes_it_out() {
        let made = refusal(StatusCode::from_u16(529).unwrap());
        let mut t = made.transform;
        assert!(
            t.push(br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#)
                .is_empty()
        );
        let out = t.finish();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["status"], 503);
        let stripped: Value = serde_json::from_slice(&strip_status(Bytes::from(out))).unwrap();
        assert!(stripped["error"].get("status").is_none());
        assert_eq!(stripped["error"]["message"], "busy");
    }

    #[test]
    fn a_stream_failure_ends_the_chunks_with_an_error_and_done() {
        let make = Answer {
            upstream: Upstream::Responses,
            reply: Reply {
                model: "gpt-5".into(),
                stream: true,
                include_usage: false,
            },
            now: 1,
        };
        let mut made = make.make(StatusCode::OK, true);
        assert_eq!(made.content_type, "text/event-stream");
        let out = made.transform.error(&RelayError::timeout("quiet".into()));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("data: {\"error\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
}
