//! Carpool's errors as OpenAI clients expect them: `{"error":{"message","type","param",
//! "code"}}`, the shape of the OpenAI API's own errors, with `retry-after` when Carpool
//! knows when to try again.
//!
//! Statuses are chosen for how the clients react. The OpenAI SDKs retry 408, 409, 429 and
//! 5xx and nothing else, and honour `x-should-retry`. Codex retries 401 and 403 a few times
//! (about 7 s) and does not retry 400 (docs/protocol.md §12.7); on a 429 whose `error.type`
//! is `usage_limit_reached` it stops and tells the person their usage limit was hit, so
//! that is what an account pool with no room left answers.
//!
//! In a Responses stream that already started, an error is a `response.failed` event,
//! which Codex reads as the end of the turn (a stream that just stops is "stream
//! disconnected" and retried, up to five times: §12.9).

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;

use crate::error::{ErrorKind, RelayError};

/// The status, `error.type` and `error.code` for each kind.
pub fn status_type_code(kind: ErrorKind) -> (StatusCode, &'static str, &'static str) {
    match kind {
        // The OpenAI API's own answer to a wrong key: the SDKs do not retry it.
        ErrorKind::BadToken => (
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
        ),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "permission_error", "forbidden"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "invalid_request_error", "not_found"),
        ErrorKind::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
        ),
        ErrorKind::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
        ),
        ErrorKind::BadRequest => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "bad_request",
        ),
        ErrorKind::BodyStalled => (StatusCode::REQUEST_TIMEOUT, "timeout", "body_timeout"),
        ErrorKind::NeedsOwner => (
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "no_usable_account",
        ),
        ErrorKind::NoCredential => (
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "no_usable_account",
        ),
        ErrorKind::Exhausted => (
            StatusCode::TOO_MANY_REQUESTS,
            "usage_limit_reached",
            "usage_limit_reached",
        ),
        ErrorKind::Unreachable => (
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream_unreachable",
        ),
        ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout", "upstream_timeout"),
    }
}

/// The `error` object.
pub fn error_object(error: &RelayError) -> serde_json::Value {
    let (_, kind, code) = status_type_code(error.kind);
    let mut object = serde_json::json!({
        "message": error.detail(),
        "type": kind,
        "param": null,
        "code": code,
    });
    if let Some(secs) = error
        .retry_after_secs
        .filter(|_| error.kind == ErrorKind::Exhausted)
    {
        // Codex shows when the limit resets from this field.
        object["resets_in_seconds"] = secs.into();
    }
    object
}

/// The error as an answer.
pub fn response(error: &RelayError) -> Response {
    let (status, _, _) = status_type_code(error.kind);
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "error": error_object(error) })),
    )
        .into_response();
    crate::protocol::retry_headers(response.headers_mut(), error);
    response
}

/// The same error as the last event of a Responses stream: `response.failed`.
pub fn sse_event(error: &RelayError) -> Bytes {
    let event = serde_json::json!({
        "type": "response.failed",
        "response": {
            "object": "response",
            "status": "failed",
            "error": error_object(error),
        },
    });
    Bytes::from(format!("event: response.failed\ndata: {event}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_have_openais_shape() {
        let r = response(&RelayError::bad_token("unknown token".into()));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["x-should-retry"], "false");
        let b = body(r).await;
        assert_eq!(b["error"]["message"], "unknown token");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["code"], "invalid_api_key");
        assert!(b["error"]["param"].is_null());

        let r = response(&RelayError::all_exhausted(
            "every account is at its limit".into(),
            Some(3600),
        ));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3600");
        let b = body(r).await;
        assert_eq!(b["error"]["type"], "usage_limit_reached");
        assert_eq!(b["error"]["resets_in_seconds"], 3600);
    }

    #[test]
    fn a_failed_stream_ends_with_response_failed() {
        let e = sse_event(&RelayError::timeout("the upstream went quiet".into()));
        let text = std::str::from_utf8(&e).unwrap();
        assert!(text.starts_with("event: response.failed\ndata: "), "{text}");
        assert!(text.ends_with("\n\n"));
        let data: serde_json::Value =
            serde_json::from_str(text.lines().nth(1).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(data["type"], "response.failed");
        assert_eq!(data["response"]["status"], "failed");
        assert_eq!(data["response"]["error"]["code"], "upstream_timeout");
    }
}
