//! Errors on the request path, and how they reach the client.
//!
//! Every error says where it came from ([`Origin`]) and is turned into the client's
//! protocol in one place: [`RelayError::into_response`] writes Anthropic's error shape
//! `{"type":"error","error":{"type":..,"message":..}}`. Errors that came back from the
//! upstream itself are not `RelayError`s: those responses are passed through untouched
//! (status, headers, body), because clients react to the real status (DESIGN.md).
//!
//! Statuses are chosen for how Claude Code reacts (protocol.md §12): it retries 401, 500
//! and short 429s for about three minutes, but gives up at once on 403 and 413.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Who caused an error. Failover (a later pool) retries only `Upstream` errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something we refuse (bad token, body too large, unknown path).
    Client,
    /// The upstream could not be reached, stalled, or the account could not be used.
    Upstream,
    /// Carpool itself has no usable account for this request.
    Carpool,
}

#[derive(Debug, Clone)]
pub struct RelayError {
    pub status: StatusCode,
    /// Anthropic's `error.type`, e.g. `authentication_error`.
    pub kind: &'static str,
    pub message: String,
    pub origin: Origin,
    pub retry_after_secs: Option<u64>,
    /// False when retrying cannot help until someone acts (a bad token, a login that is
    /// missing or revoked): the response then carries `x-should-retry: false`, which
    /// Claude Code and the official SDKs obey at once instead of retrying for minutes
    /// (checked with Claude Code 2.1.330; see [`RelayError::needs_owner`]).
    pub should_retry: bool,
}

impl RelayError {
    fn new(status: StatusCode, kind: &'static str, origin: Origin, message: String) -> Self {
        RelayError {
            status,
            kind,
            message,
            origin,
            retry_after_secs: None,
            // What the client sent will not get better by sending it again.
            should_retry: origin != Origin::Client,
        }
    }

    /// Missing or wrong Carpool token.
    ///
    /// 403, not 401: Claude Code retries a 401 for about three minutes before it shows
    /// anything, while a 403 ends the run at once with our message (protocol.md §12).
    pub fn bad_token(message: String) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "authentication_error",
            Origin::Client,
            message,
        )
    }

    pub fn not_found(message: String) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            Origin::Client,
            message,
        )
    }

    pub fn method_not_allowed(message: String) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Origin::Client,
            message,
        )
    }

    /// The body is over `max_body_bytes`. 413 is not retried by Claude Code.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            Origin::Client,
            format!(
                "Carpool: request body is larger than the configured limit of {limit} bytes (`max_body_bytes` in the Carpool config)"
            ),
        )
    }

    pub fn bad_request(message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Origin::Client,
            message,
        )
    }

    /// The client stopped sending its request body (`connections.body_timeout`).
    ///
    /// 408 with Anthropic's `timeout_error`: Claude Code and the SDKs retry it like a
    /// broken connection, which is what a stalled upload usually is.
    /// Unlike other client errors it may be retried: the next attempt may get through.
    pub fn body_stalled(message: String) -> Self {
        RelayError {
            should_retry: true,
            ..Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout_error",
                Origin::Client,
                message,
            )
        }
    }

    /// No account can serve this request until its owner acts on the Carpool machine
    /// (no login yet, login revoked, credentials file broken).
    ///
    /// 503 with `x-should-retry: false`: without the header Claude Code retries a 503
    /// about ten times over three minutes and shows nothing meanwhile; with it, it stops
    /// after one request and prints the message (measured with Claude Code 2.1.330
    /// against a mock answering 503 + `x-should-retry: false`: one request, exit after
    /// 0.7 s; `tests/real_clients.rs` checks it). The Stainless-generated SDKs check the
    /// same header before their own retry rules.
    /// The message is for the user, who cannot see the Carpool machine: it says who can
    /// fix it, not the owner's paths or other accounts' problems, which go to the log.
    pub fn needs_owner(message: String) -> Self {
        RelayError {
            should_retry: false,
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                Origin::Carpool,
                message,
            )
        }
    }

    /// No account can serve this request right now, for a reason that passes by itself
    /// (a token refresh backing off); `retry_after_secs` says when to try again.
    ///
    /// 503: the condition is on the Carpool machine, not in the request.
    pub fn no_credential(message: String, retry_after_secs: Option<u64>) -> Self {
        RelayError {
            retry_after_secs,
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                Origin::Carpool,
                message,
            )
        }
    }

    /// Every account the user may use is at its limit (or reserve) for now.
    ///
    /// 429 with `retry-after` until the earliest one is back: Claude Code gives up at
    /// once when that is over 60 s instead of retrying for minutes, and prints the
    /// message, which says when.
    pub fn all_exhausted(message: String, retry_after_secs: Option<u64>) -> Self {
        RelayError {
            retry_after_secs,
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Origin::Carpool,
                message,
            )
        }
    }

    /// The upstream could not be reached or broke before answering.
    pub fn unreachable(message: String) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            Origin::Upstream,
            message,
        )
    }

    /// The upstream did not answer within a configured timeout.
    pub fn timeout(message: String) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            Origin::Upstream,
            message,
        )
    }

    /// The JSON body Anthropic clients expect.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "error": { "type": self.kind, "message": self.message },
        })
    }

    /// The same error as one SSE event, for failures after a stream has started.
    pub fn sse_event(&self) -> String {
        format!("event: error\ndata: {}\n\n", self.body_json())
    }
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for RelayError {}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body_json())).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if !self.should_retry {
            response
                .headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_token_is_403_so_claude_code_stops_at_once() {
        let e = RelayError::bad_token("nope".into());
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.body_json()["error"]["type"], "authentication_error");
        assert_eq!(e.body_json()["type"], "error");
    }

    #[test]
    fn errors_that_retrying_cannot_fix_say_so() {
        let owner = RelayError::needs_owner("ask the owner".into()).into_response();
        assert_eq!(owner.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(owner.headers()["x-should-retry"], "false");
        assert!(owner.headers().get(header::RETRY_AFTER).is_none());
        let bad = RelayError::bad_token("nope".into()).into_response();
        assert_eq!(bad.headers()["x-should-retry"], "false");
        let waiting = RelayError::no_credential("soon".into(), Some(7)).into_response();
        assert_eq!(waiting.headers()[header::RETRY_AFTER], "7");
        assert!(waiting.headers().get("x-should-retry").is_none());
        let exhausted = RelayError::all_exhausted("later".into(), Some(3600)).into_response();
        assert_eq!(exhausted.headers()[header::RETRY_AFTER], "3600");
        assert!(exhausted.headers().get("x-should-retry").is_none());
    }

    #[test]
    fn sse_event_is_one_well_formed_event() {
        let e = RelayError::timeout("stalled".into());
        let ev = e.sse_event();
        assert!(ev.starts_with("event: error\ndata: {"));
        assert!(ev.ends_with("}\n\n"));
        let data: serde_json::Value =
            serde_json::from_str(ev.trim_end().split_once("data: ").unwrap().1).unwrap();
        assert_eq!(data["error"]["message"], "stalled");
    }
}
