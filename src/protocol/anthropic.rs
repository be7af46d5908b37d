//! Anthropic Messages, the protocol Claude Code and the Anthropic SDKs speak: everything
//! the relay needs to know about it, behind [`Protocol`].
//!
//! - [`endpoint`]: the four relayed endpoints and their upstream URLs;
//! - [`request`]: what is read from a request (model, stream, device and session ids);
//! - [`headers`]: the headers that go upstream, and how the account's credential is sent;
//! - [`limits`]: the unified rate-limit headers, quota 429s, and refusals for good;
//! - [`errors`]: Carpool's errors in Anthropic's shape.
//!
//! How an answer's status is judged ([`Anthropic::triage`]): a 401 is a rejected
//! token (an OAuth login is refreshed and the request sent again); a 529 is Anthropic
//! overloaded as a whole (sent again once after a moment, then passed on: another account
//! would be just as overloaded); 500, 502, 503 and 504 are a failing upstream (the next
//! account gets the request); 429, 400 and 403 are judged by their first bytes
//! ([`Anthropic::judge_refusal`]): a quota 429 pauses the account, a 400/403 saying the
//! provider disabled the account quarantines it, anything else is the client's to see.

pub mod endpoint;
pub mod errors;
pub mod headers;
pub mod limits;
#[cfg(test)]
mod proptests;
pub mod request;

use axum::response::Response;
use axum::routing::MethodFilter;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{Peek, Protocol, Refusal, Route, Triage};
use crate::config::Provider;
use crate::error::RelayError;
use crate::ledger::extract::{BodyKind, UsageTap};
use crate::pool::limits::LimitSignals;
use crate::upstream::UpstreamAuth;

/// Anthropic Messages.
pub struct Anthropic;

impl Protocol for Anthropic {
    type Endpoint = endpoint::Endpoint;

    const ACCOUNT: &'static str = "Claude account";

    const PROVIDER: Provider = Provider::Anthropic;

    /// `/v1/messages?beta=true` matches `/v1/messages`: the query is kept and forwarded.
    /// `GET /v1/models` is OpenAI's path too: the relay routes it by who asks
    /// ([`super::models_provider`]).
    const ROUTES: &'static [Route] = &[
        Route {
            method: MethodFilter::POST,
            path: "/v1/messages",
        },
        Route {
            method: MethodFilter::POST,
            path: "/v1/messages/count_tokens",
        },
        Route {
            method: MethodFilter::GET,
            path: "/v1/models/{id}",
        },
    ];

    fn endpoint(path: &str) -> Option<endpoint::Endpoint> {
        endpoint::Endpoint::of(path)
    }

    fn not_relayed(method: &Method, path: &str) -> RelayError {
        endpoint::not_relayed(method, path)
    }

    fn peek(headers: &HeaderMap, body: &[u8]) -> Peek {
        request::peek(headers, body)
    }

    fn request_headers(
        client: &HeaderMap,
        operator: &[(HeaderName, HeaderValue)],
        auth: UpstreamAuth<'_>,
    ) -> HeaderMap {
        headers::request_headers(client, operator, auth)
    }

    fn limit_signals(headers: &HeaderMap, now: i64) -> Option<LimitSignals> {
        limits::limit_signals(headers, now)
    }

    fn weekly_reset(headers: &HeaderMap) -> Option<i64> {
        limits::weekly_reset(headers)
    }

    fn triage(status: StatusCode) -> Triage {
        match status.as_u16() {
            401 => Triage::CredentialRefused,
            529 => Triage::Overloaded,
            500 | 502 | 503 | 504 => Triage::Failed,
            429 | 400 | 403 => Triage::Inspect,
            _ => Triage::Deliver,
        }
    }

    fn judge_refusal(status: StatusCode, headers: &HeaderMap, prefix: &[u8], now: i64) -> Refusal {
        match status.as_u16() {
            429 => limits::classify_429(headers, prefix, now),
            code => match limits::disabled_reason(code, prefix) {
                Some(reason) => Refusal::Disabled { reason },
                None => Refusal::Request,
            },
        }
    }

    /// Only answers to `/v1/messages` carry usage: a Message as JSON or as an event
    /// stream.
    fn usage_tap(endpoint: &endpoint::Endpoint, content_type: Option<&str>) -> Option<UsageTap> {
        endpoint
            .is_model_call()
            .then(|| UsageTap::new(BodyKind::of(content_type)))
    }

    fn error_response(error: &RelayError) -> Response {
        errors::response(error)
    }

    fn stream_error(error: &RelayError) -> Bytes {
        errors::sse_event(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn error_body(kind: &str, message: &str) -> Vec<u8> {
        serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
            .to_string()
            .into_bytes()
    }

    /// Every status the relay treats specially, and a few it passes on as they are.
    #[test]
    fn statuses_are_triaged_as_the_relay_needs() {
        let table = [
            (200, Triage::Deliver),
            (201, Triage::Deliver),
            (304, Triage::Deliver),
            (404, Triage::Deliver),
            (413, Triage::Deliver),
            (422, Triage::Deliver),
            (401, Triage::CredentialRefused),
            (529, Triage::Overloaded),
            (500, Triage::Failed),
            (502, Triage::Failed),
            (503, Triage::Failed),
            (504, Triage::Failed),
            (501, Triage::Deliver),
            (429, Triage::Inspect),
            (400, Triage::Inspect),
            (403, Triage::Inspect),
        ];
        for (status, triage) in table {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(Anthropic::triage(status), triage, "{status}");
        }
    }

    #[test]
    fn refusals_are_judged_by_status_headers_and_body() {
        let judge = |status: u16, pairs: &[(&'static str, &str)], body: &[u8]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            Anthropic::judge_refusal(StatusCode::from_u16(status).unwrap(), &headers, body, NOW)
        };
        let reset = (NOW + 3600).to_string();
        let quota = [
            ("anthropic-ratelimit-unified-status", "rejected"),
            ("anthropic-ratelimit-unified-reset", reset.as_str()),
        ];
        assert_eq!(
            judge(429, &quota, b"{}"),
            Refusal::Quota { until: NOW + 3600 }
        );
        assert_eq!(
            judge(429, &[("retry-after", "7")], b"slow down"),
            Refusal::RateLimited {
                retry_after: Some(7)
            }
        );
        let disabled = "This organization has been disabled.";
        assert_eq!(
            judge(403, &[], &error_body("permission_error", disabled)),
            Refusal::Disabled {
                reason: disabled.into()
            }
        );
        assert_eq!(
            judge(
                400,
                &[],
                &error_body("invalid_request_error", "max_tokens: too large")
            ),
            Refusal::Request
        );
        assert_eq!(
            judge(
                403,
                &[],
                &error_body("permission_error", "Request not allowed")
            ),
            Refusal::Request
        );
        // The disabled phrase under a 429 is a rate limit, not a quarantine.
        assert_eq!(
            judge(429, &[], &error_body("rate_limit_error", disabled)),
            Refusal::RateLimited { retry_after: None }
        );
    }

    #[test]
    fn only_messages_answers_are_tapped_for_usage() {
        use endpoint::Endpoint;
        assert!(Anthropic::usage_tap(&Endpoint::Messages, Some("text/event-stream")).is_some());
        assert!(Anthropic::usage_tap(&Endpoint::Messages, Some("application/json")).is_some());
        assert!(Anthropic::usage_tap(&Endpoint::CountTokens, Some("application/json")).is_none());
        assert!(Anthropic::usage_tap(&Endpoint::Models, Some("application/json")).is_none());
    }

    #[test]
    fn every_route_is_an_endpoint() {
        for route in Anthropic::ROUTES {
            let path = route.path.replace("{id}", "claude-sonnet-4-5");
            assert!(Anthropic::endpoint(&path).is_some(), "{}", route.path);
        }
    }
}
