//! OpenAI Chat Completions to and from the two upstream protocols Carpool relays: OpenAI
//! Responses (GPT/Codex models: a ChatGPT login refuses Chat Completions, §7.4) and
//! Anthropic Messages (Claude models). Pure: no I/O, no engine; the relay calls it.
//!
//! docs/protocol.md §13 lists the mappings and their sources.
//!
//! # Use
//!
//! ```text
//! client body ──chat_to_responses / chat_to_messages──► Translated { body, upstream_stream, reply }
//!
//! upstream answer, by kind:
//!   Response JSON            ── response_to_chat ──► ChatCompletion
//!   Responses SSE, stream    ── ResponsesToChat::push/finish ──► Chat SSE bytes
//!   Responses SSE, no stream ── ResponsesAggregator ──► Response JSON ── response_to_chat
//!   Message JSON             ── message_to_chat ──► ChatCompletion
//!   Messages SSE, stream     ── MessagesToChat::push/finish ──► Chat SSE bytes
//!   an error status + body   ── upstream_error ──► ChatError (status, OpenAI body)
//! ```
//!
//! A request the target cannot express is refused before it goes anywhere: a
//! [`ChatError`] with status 400, type `invalid_request_error` and the `param` at fault
//! (`stop`, `n`, `logprobs`, `messages.[3].content.[1].type`, …). Nothing is silently
//! dropped except what an option says (ChatGPT mode drops `max_output_tokens` and
//! sampling, [`ResponsesOptions::CHATGPT`]) and the hints listed in §13.
//!
//! The stream transformers take upstream bytes split anywhere and hold only the event
//! being read and the few facts an answer needs (ids, tool call indexes, usage). When the
//! upstream stream ends without its last event, `finish` writes a stream error and
//! `[DONE]`, so the client never mistakes a cut answer for a whole one.

mod anthropic;
mod chat;
mod responses;
mod sse;

#[cfg(test)]
mod tests;

pub use anthropic::{
    DEFAULT_MAX_TOKENS, MessagesOptions, MessagesToChat, chat_to_messages, message_to_chat,
};
pub use chat::{
    AssistantMessage, ChatCompletion, ChatError, ChatUsage, Choice, CompletionDetails, FunctionOut,
    PromptDetails, Reply, ToolCallOut, Translated,
};
pub use responses::{
    FieldPolicy, ResponsesAggregator, ResponsesOptions, ResponsesToChat, chat_to_responses,
    response_to_chat,
};

use serde_json::Value;

/// An upstream's refusal (a non-2xx answer to a translated request) in OpenAI's shape,
/// for an OpenAI client.
///
/// Reads Anthropic's `{"type":"error","error":{"type","message"}}` (its `type` gives the
/// OpenAI type and, for 529 `overloaded_error`, the status), OpenAI's own
/// `{"error":{"message","type","param","code"}}` (kept as is), and the ChatGPT backend's
/// `{"detail":"…"}`. Anything else becomes a message naming the status only: an
/// unreadable body is not echoed.
///
/// Statuses: Anthropic's 529 (overloaded) becomes 503, which OpenAI clients know and
/// retry; every other status is kept (400, 401, 403, 404, 413, 429, 500 mean the same to
/// both).
pub fn upstream_error(status: u16, body: &[u8]) -> ChatError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let status_out = if status == 529 { 503 } else { status };
    let default_kind = match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    let mut error = ChatError {
        status: status_out,
        message: format!("The upstream answered with status {status}."),
        kind: default_kind.into(),
        param: None,
        code: None,
    };
    let Some(json) = json else { return error };
    let inner = json.get("error");
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if json.get("type").and_then(Value::as_str) == Some("error") {
        // Anthropic: error.type is one of its documented kinds.
        if let Some(message) = text(inner, "message") {
            error.message = message;
        }
        let anthropic_kind = text(inner, "type").unwrap_or_default();
        let (kind, code) = match anthropic_kind.as_str() {
            "invalid_request_error" => ("invalid_request_error", None),
            "authentication_error" => ("authentication_error", None),
            "permission_error" => ("permission_error", None),
            "not_found_error" => ("not_found_error", None),
            "request_too_large" => ("invalid_request_error", Some("request_too_large")),
            "rate_limit_error" => ("rate_limit_error", Some("rate_limit_exceeded")),
            "overloaded_error" => ("server_error", Some("overloaded")),
            "billing_error" => ("insufficient_quota", Some("insufficient_quota")),
            "timeout_error" => ("server_error", Some("timeout")),
            _ => (default_kind, None),
        };
        error.kind = kind.into();
        error.code = code.map(str::to_owned);
        if anthropic_kind == "overloaded_error" {
            error.status = 503;
        }
    } else if let Some(inner @ Value::Object(_)) = inner {
        // OpenAI's own shape: keep every field.
        if let Some(message) = text(Some(inner), "message") {
            error.message = message;
        }
        if let Some(kind) = text(Some(inner), "type") {
            error.kind = kind;
        }
        error.param = text(Some(inner), "param");
        error.code = text(Some(inner), "code");
    } else if let Some(detail) = json.get("detail").and_then(Value::as_str) {
        error.message = detail.to_owned();
    }
    error
}

/// The `error` object of a Responses `response.failed` or `error` event (`code`,
/// `message`, maybe `type` and `param`) as a [`ChatError`] for a chat stream or answer.
pub(crate) fn error_from_responses(error: Option<&Value>) -> ChatError {
    let text = |key: &str| {
        error
            .and_then(|e| e.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let code = text("code");
    // An `error` event's own `type` is the event's name, not an error type.
    let kind = text("type")
        .filter(|t| t != "error")
        .unwrap_or_else(|| match code.as_deref() {
            Some("rate_limit_exceeded") => "rate_limit_error".into(),
            Some("invalid_prompt") | Some("context_length_exceeded") => {
                "invalid_request_error".into()
            }
            _ => "server_error".into(),
        });
    let status = match kind.as_str() {
        "invalid_request_error" => 400,
        "rate_limit_error" => 429,
        _ => 500,
    };
    ChatError {
        status,
        message: text("message").unwrap_or_else(|| "The upstream response failed.".into()),
        kind,
        param: text("param"),
        code,
    }
}
