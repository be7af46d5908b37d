//! The OpenAI Responses API, which Codex and the OpenAI SDKs speak, relayed to a Codex
//! (ChatGPT) login or an OpenAI API key: everything the relay needs to know about it,
//! behind [`Protocol`].
//!
//! - [`endpoint`]: `/v1/responses`, `/v1/responses/compact`, `/v1/models` and their
//!   upstream paths;
//! - [`request`]: model, stream, and Codex's session and installation ids;
//! - [`headers`]: the credential as a bearer, and a ChatGPT login's account id;
//! - [`limits`]: Codex's 5-hour and weekly windows from the `x-codex-*` headers, and
//!   quota 429s;
//! - [`errors`]: Carpool's errors in OpenAI's shape.
//!
//! How an answer's status is judged ([`OpenAi::triage`]): a 401 is a rejected token (a
//! Codex login is refreshed and the request sent again); 500, 502, 503 and 504 are a
//! failing upstream (the next account gets the request, so one upstream failure does not
//! reach Codex, which would retry it many times: docs/protocol.md §12.10); a 429 is judged
//! by [`limits::classify_429`]; anything else is the client's to see.

pub mod endpoint;
pub mod errors;
pub mod headers;
pub mod limits;
pub mod request;

use axum::response::Response;
use axum::routing::MethodFilter;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{Peek, Protocol, Refusal, Route, Triage};
use crate::config::Provider;
use crate::error::RelayError;
use crate::ledger::extract::{BodyKind, Dialect, UsageTap};
use crate::pool::limits::LimitSignals;
use crate::upstream::UpstreamAuth;

/// The OpenAI Responses API.
pub struct OpenAi;

impl Protocol for OpenAi {
    type Endpoint = endpoint::Endpoint;

    const ACCOUNT: &'static str = "Codex or OpenAI account";

    const PROVIDER: Provider = Provider::OpenAi;

    /// `GET /v1/models` is Anthropic's path too: the relay routes it by who asks
    /// ([`super::models_protocol`]).
    const ROUTES: &'static [Route] = &[
        Route {
            method: MethodFilter::POST,
            path: "/v1/responses",
        },
        Route {
            method: MethodFilter::POST,
            path: "/v1/responses/compact",
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
        limits::weekly_reset(headers, crate::pool::unix_now())
    }

    fn triage(status: StatusCode) -> Triage {
        match status.as_u16() {
            401 => Triage::CredentialRefused,
            500 | 502 | 503 | 504 => Triage::Failed,
            429 => Triage::Inspect,
            _ => Triage::Deliver,
        }
    }

    fn judge_refusal(status: StatusCode, headers: &HeaderMap, prefix: &[u8], now: i64) -> Refusal {
        match status.as_u16() {
            429 => limits::classify_429(headers, prefix, now),
            _ => Refusal::Request,
        }
    }

    /// Responses and compactions carry usage: a Response as JSON or as an event stream
    /// (an answer without `Content-Type` is a stream, docs/protocol.md §7.6).
    fn usage_tap(endpoint: &endpoint::Endpoint, content_type: Option<&str>) -> Option<UsageTap> {
        endpoint.is_model_call().then(|| {
            UsageTap::for_dialect(
                Dialect::Responses,
                BodyKind::for_dialect(Dialect::Responses, content_type),
            )
        })
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

    #[test]
    fn statuses_are_triaged_for_codex() {
        for (status, triage) in [
            (200, Triage::Deliver),
            (400, Triage::Deliver),
            (401, Triage::CredentialRefused),
            (403, Triage::Deliver),
            (429, Triage::Inspect),
            (500, Triage::Failed),
            (503, Triage::Failed),
            (529, Triage::Deliver),
        ] {
            assert_eq!(
                OpenAi::triage(StatusCode::from_u16(status).unwrap()),
                triage,
                "{status}"
            );
        }
    }
}
