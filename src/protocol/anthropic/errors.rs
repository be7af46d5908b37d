//! Carpool's errors as Anthropic clients expect them: the one place their status, body and
//! headers are chosen.
//!
//! The body is Anthropic's shape, `{"type":"error","error":{"type":..,"message":..}}`.
//! Statuses are chosen for how Claude Code reacts (docs/protocol.md §12): it retries 401, 500
//! and short 429s for about three minutes, but gives up at once on 403 and 413.
//! `retry-after` carries [`RelayError::retry_after_secs`]; an error that retrying cannot
//! fix ([`RelayError::client_may_retry`]) carries `x-should-retry: false`, which Claude
//! Code and the official SDKs obey at once instead of retrying for minutes (checked with
//! Claude Code 2.1.330).

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;

use crate::error::{ErrorKind, RelayError};

/// The status and Anthropic's `error.type` for each kind.
pub fn status_and_type(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        // 403, not 401: Claude Code retries a 401 for about three minutes before it shows
        // anything, while a 403 ends the run at once with our message.
        ErrorKind::BadToken => (StatusCode::FORBIDDEN, "authentication_error"),
        // 403: not retried; the message says what the user lacks.
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "permission_error"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found_error"),
        ErrorKind::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error"),
        // 413 is not retried by Claude Code.
        ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
        ErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        // 408 with `timeout_error`: Claude Code and the SDKs retry it like a broken
        // connection, which is what a stalled upload usually is.
        ErrorKind::BodyStalled => (StatusCode::REQUEST_TIMEOUT, "timeout_error"),
        // 503 with `x-should-retry: false`: without the header Claude Code retries a 503
        // about ten times over three minutes and shows nothing meanwhile; with it, it
        // stops after one request and prints the message (measured with Claude Code
        // 2.1.330 against a mock answering 503 + `x-should-retry: false`: one request,
        // exit after 0.7 s; `tests/real_clients.rs` checks it). The Stainless-generated
        // SDKs check the same header before their own retry rules.
        ErrorKind::NeedsOwner => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
        // 503: the condition is on the Carpool machine, not in the request.
        ErrorKind::NoCredential => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
        // 429 with `retry-after` until the earliest account is back: Claude Code gives up
        // at once when that is over 60 s instead of retrying for minutes, and prints the
        // message, which says when.
        ErrorKind::Exhausted => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        ErrorKind::Unreachable => (StatusCode::BAD_GATEWAY, "api_error"),
        ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
    }
}

/// The JSON body Anthropic clients expect.
fn body_json(error: &RelayError) -> serde_json::Value {
    let (_, kind) = status_and_type(error.kind);
    serde_json::json!({
        "type": "error",
        "error": { "type": kind, "message": error.detail() },
    })
}

/// The error as an answer.
pub fn response(error: &RelayError) -> Response {
    let (status, _) = status_and_type(error.kind);
    let mut response = (status, axum::Json(body_json(error))).into_response();
    crate::protocol::retry_headers(response.headers_mut(), error);
    response
}

/// The same error as one SSE `error` event (what Anthropic itself sends when a stream
/// fails), for failures after a stream has started.
pub fn sse_event(error: &RelayError) -> Bytes {
    Bytes::from(format!("event: error\ndata: {}\n\n", body_json(error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn bad_token_is_403_so_claude_code_stops_at_once() {
        let e = RelayError::bad_token("nope".into());
        let r = response(&e);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(body_json(&e)["error"]["type"], "authentication_error");
        assert_eq!(body_json(&e)["type"], "error");
    }

    #[test]
    fn errors_that_retrying_cannot_fix_say_so() {
        let owner = response(&RelayError::needs_owner("ask the owner".into()));
        assert_eq!(owner.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(owner.headers()["x-should-retry"], "false");
        assert!(owner.headers().get(header::RETRY_AFTER).is_none());
        let bad = response(&RelayError::bad_token("nope".into()));
        assert_eq!(bad.headers()["x-should-retry"], "false");
        let waiting = response(&RelayError::no_credential("soon".into(), Some(7)));
        assert_eq!(waiting.headers()[header::RETRY_AFTER], "7");
        assert!(waiting.headers().get("x-should-retry").is_none());
        let exhausted = response(&RelayError::all_exhausted("later".into(), Some(3600)));
        assert_eq!(exhausted.headers()[header::RETRY_AFTER], "3600");
        assert!(exhausted.headers().get("x-should-retry").is_none());
    }

    /// Every kind, as a client sees it: status, `error.type`, and whether it is told not
    /// to retry.
    #[test]
    fn every_kind_renders_as_claude_code_needs_it() {
        use ErrorKind::*;
        let table = [
            (BadToken, 403, "authentication_error", false),
            (NotFound, 404, "not_found_error", false),
            (MethodNotAllowed, 405, "invalid_request_error", false),
            (TooLarge, 413, "request_too_large", false),
            (BadRequest, 400, "invalid_request_error", false),
            (BodyStalled, 408, "timeout_error", true),
            (NeedsOwner, 503, "api_error", false),
            (NoCredential, 503, "api_error", true),
            (Exhausted, 429, "rate_limit_error", true),
            (Unreachable, 502, "api_error", true),
            (Timeout, 504, "timeout_error", true),
        ];
        for (kind, status, error_type, may_retry) in table {
            let error = RelayError::new(kind, "Carpool: what happened".into());
            let r = response(&error);
            assert_eq!(r.status().as_u16(), status, "{kind:?}");
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "application/json",
                "{kind:?}"
            );
            assert_eq!(
                r.headers().get("x-should-retry").is_none(),
                may_retry,
                "{kind:?}"
            );
            assert_eq!(body_json(&error)["error"]["type"], error_type, "{kind:?}");
        }
    }

    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection refused")
        }
    }
    impl std::error::Error for Refused {}

    #[test]
    fn the_client_reads_the_cause_too() {
        let e = RelayError::unreachable("Carpool: cannot reach the upstream".into())
            .with_source(Refused);
        assert_eq!(
            body_json(&e)["error"]["message"],
            "Carpool: cannot reach the upstream: connection refused"
        );
    }

    #[test]
    fn sse_event_is_one_well_formed_event() {
        let e = RelayError::timeout("stalled".into());
        let ev = sse_event(&e);
        let ev = std::str::from_utf8(&ev).unwrap();
        assert!(ev.starts_with("event: error\ndata: {"));
        assert!(ev.ends_with("}\n\n"));
        let data: serde_json::Value =
            serde_json::from_str(ev.trim_end().split_once("data: ").unwrap().1).unwrap();
        assert_eq!(data["error"]["message"], "stalled");
        assert_eq!(data["error"]["type"], "timeout_error");
    }
}
