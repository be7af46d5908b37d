//! The seam between the relay and the client protocols it speaks.
//!
//! The relay core ([`crate::relay`]) runs every request through the same phases:
//! authenticate → route → read the body → pick an account → send, fail over → stream
//! back → record. Everything in those phases that depends on what the client speaks is
//! asked of its [`Protocol`], and only of it:
//!
//! | phase | hook | what the protocol decides |
//! | --- | --- | --- |
//! | route | [`Protocol::ROUTES`], [`Protocol::endpoint`], [`Protocol::not_relayed`] | which methods and paths it serves, which upstream path each reaches ([`Endpoint::upstream_url`]) |
//! | read the body | [`Protocol::peek`] | the few request fields the relay needs: model, streaming or not, device and session ids, message count |
//! | send | [`Protocol::request_headers`] | which client headers cross, and how the account's credential is injected |
//! | send | [`Protocol::limit_signals`], [`Protocol::weekly_reset`] | what an answer's headers say about the account's rate-limit windows |
//! | fail over | [`Protocol::triage`], [`Protocol::judge_refusal`] | what an answer's status (and, for refusals, its first bytes) means: deliver it, refresh the login, retry, fail over, or pause or quarantine the account |
//! | stream back | [`Protocol::usage_tap`] | which extractor reads the usage from the answer |
//! | any | [`Protocol::error_response`], [`Protocol::stream_error`] | how a [`RelayError`] reaches this client: status, body, headers; or an event in a stream that already started |
//!
//! The core keeps what is the same for every protocol: users and their targets, account
//! choice and stickiness, credentials and their refresh, timeouts, streaming, failover
//! order, and the ledger.
//!
//! # A trait, dispatched statically
//!
//! A protocol is a type implementing [`Protocol`], and the relay's handler is generic over
//! it (`relay::handle::<P>`): one copy of the request path per protocol, with no vtable
//! or boxed endpoint on the hot path, and the compiler checks that a new protocol answers
//! every hook. An enum of protocols would instead put a `match` with one arm per protocol
//! in every hook, and an enum of every protocol's endpoints; a trait keeps each
//! protocol's facts in its own module. The hooks are associated functions (protocols hold
//! no state: what they need comes in the arguments).
//!
//! # Adding a protocol
//!
//! A new protocol is a new module here and one line in [`each`]. The OpenAI protocols
//! that Codex and the OpenAI SDKs speak would be `protocol/openai.rs` with two types,
//! `Responses` and `ChatCompletions` (or one type with endpoints for both), plugging in
//! as follows:
//!
//! - `ROUTES`: `POST /v1/responses`, `POST /v1/responses/compact`,
//!   `POST /v1/chat/completions`; `endpoint` maps them, and
//!   [`Endpoint::upstream_url`] builds the upstream path (ChatGPT logins:
//!   `https://chatgpt.com/backend-api/codex` with `/v1` stripped; API keys: unchanged).
//!   `GET /v1/models` is Anthropic's path too: a path two protocols share needs one
//!   handler that tells them apart (`anthropic-version` is sent by every Anthropic
//!   client), which would be the one edit outside the new module.
//! - `peek`: `model` and `stream` from the body, the session from the `session_id`
//!   header (docs/protocol.md §7.5).
//! - `request_headers`: the same stripping of client credentials
//!   ([`crate::upstream::forwarded_request_headers`]), then `Authorization: Bearer` and
//!   `ChatGPT-Account-Id` (which [`UpstreamAuth`] would then carry).
//! - `limit_signals`: `x-codex-primary-used-percent` / `-reset-at` and `secondary`,
//!   assigned to the 5-hour or weekly window by their `window-minutes` (§7.6).
//! - `triage` / `judge_refusal`: no 529; a 429 with `x-codex-rate-limit-reached-type`
//!   is the quota, until `x-codex-primary-reset-at`.
//! - `usage_tap`: a Responses (`response.completed`) or Chat Completions extractor, a
//!   new kind of [`UsageTap`] in [`crate::ledger::extract`].
//! - `error_response` / `stream_error`: `{"error":{"message","type","code"}}`, and the
//!   Responses stream's `error` event.
//!
//! What the seam does not cover yet: which accounts a protocol may use. A Codex login
//! cannot answer Anthropic requests, so the pool would choose among the accounts of the
//! protocol's provider (an associated `PROVIDER` the pool filters by).

pub mod anthropic;
pub mod openai;
pub mod values;

use axum::response::Response;
use axum::routing::MethodFilter;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::config::Provider;
use crate::error::RelayError;
use crate::ledger::extract::UsageTap;
use crate::pool::limits::LimitSignals;
use crate::upstream::UpstreamAuth;

/// One route a protocol serves.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: MethodFilter,
    /// In axum's syntax (`/v1/models/{id}`).
    pub path: &'static str,
}

/// A client protocol; see the module documentation.
pub trait Protocol: Send + Sync + 'static {
    /// An endpoint of this protocol that the relay serves.
    type Endpoint: Endpoint;

    /// What the users of this protocol's accounts call one, for messages
    /// ("Claude account").
    const ACCOUNT: &'static str;

    /// Whose accounts answer this protocol: a user's requests go to their target for
    /// this provider ([`crate::config::Targets`]).
    const PROVIDER: Provider;

    /// Every method and path this protocol serves.
    const ROUTES: &'static [Route];

    /// The endpoint for a request path (raw, still percent-encoded), or `None` if it is
    /// not relayed.
    fn endpoint(path: &str) -> Option<Self::Endpoint>;

    /// The error for a path (or a method on it) that is not relayed.
    fn not_relayed(method: &Method, path: &str) -> RelayError;

    /// The request fields the relay needs, read from the headers and the whole body
    /// without building more of it than those fields. A body that is not what the
    /// protocol expects gives empty fields: the upstream judges the request, not Carpool.
    fn peek(headers: &HeaderMap, body: &[u8]) -> Peek;

    /// The headers sent upstream: the client's that may cross, then the operator's
    /// `headers` from the config, then the account's credential, which nothing overrides.
    fn request_headers(
        client: &HeaderMap,
        operator: &[(HeaderName, HeaderValue)],
        auth: UpstreamAuth<'_>,
    ) -> HeaderMap;

    /// What an answer's headers say about the account's rate-limit windows, if anything.
    /// Called for every answer (errors included), before it is judged.
    fn limit_signals(headers: &HeaderMap, now: i64) -> Option<LimitSignals>;

    /// When the account's weekly window resets, as the answer states it, for the ledger.
    fn weekly_reset(headers: &HeaderMap) -> Option<i64>;

    /// What an answer's status alone says.
    fn triage(status: StatusCode) -> Triage;

    /// What a refusal ([`Triage::Inspect`]) means, from its head and its first bytes (at
    /// most [`crate::relay::ERROR_PREFIX`]; maybe not the whole body).
    fn judge_refusal(status: StatusCode, headers: &HeaderMap, prefix: &[u8], now: i64) -> Refusal;

    /// The extractor that reads usage from a successful answer of `endpoint` with this
    /// `Content-Type`; `None` for answers that carry no usage.
    fn usage_tap(endpoint: &Self::Endpoint, content_type: Option<&str>) -> Option<UsageTap>;

    /// A Carpool error as this protocol's clients expect it: the one place its status,
    /// body and headers are chosen.
    fn error_response(error: &RelayError) -> Response;

    /// The same error as the last event of an event stream that already started (the
    /// status went out; the stream ends after it).
    fn stream_error(error: &RelayError) -> Bytes;
}

/// An endpoint of a protocol, as the relay core sees it.
pub trait Endpoint: Send + Sync + 'static {
    /// Short name for logs and the usage ledger.
    fn name(&self) -> &'static str;

    /// The upstream URL: `base` (scheme, host and an optional path prefix) with the
    /// endpoint's upstream path, and the client's query. Refused (with the reason, for
    /// the owner's log) unless the URL's path is exactly the one intended: the URL
    /// carries the account's credentials, so no spelling of a client path may lead
    /// anywhere else.
    fn upstream_url(
        &self,
        base: &reqwest::Url,
        query: Option<&str>,
    ) -> Result<reqwest::Url, String>;
}

/// What the relay reads from a request before sending it on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Peek {
    /// The model asked for; empty if none.
    pub model: String,
    /// Whether the answer will be an event stream (bounded by the first-byte and idle
    /// timeouts instead of the whole-request one).
    pub stream: bool,
    /// How many messages the conversation has, for the ledger.
    pub messages: u32,
    pub ids: ClientIds,
}

/// What a client says about itself, for stickiness and the ledger.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientIds {
    /// The machine; empty when the client sent none.
    pub device: String,
    /// The conversation: requests with the same session stay on one account. Empty when
    /// the client sent none.
    pub session: String,
}

/// What an upstream answer's status says, before anything of its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triage {
    /// Pass it to the client; the account is healthy.
    Deliver,
    /// The credential was refused: an OAuth login is refreshed and the request sent once
    /// more on the same account; then the answer is delivered.
    CredentialRefused,
    /// The provider is overloaded as a whole: sent once more on the same account after a
    /// moment (another account would be just as overloaded); then delivered.
    Overloaded,
    /// The upstream failed: the account counts a failure and the next account gets the
    /// request.
    Failed,
    /// A refusal whose meaning is in its body: its first bytes are read and
    /// [`Protocol::judge_refusal`] decides.
    Inspect,
}

/// What a refusal ([`Triage::Inspect`]) means for the account and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The account's quota is used up until `until` (Unix seconds): it pauses, and the
    /// next account gets the request.
    Quota { until: i64 },
    /// A rate limit that is not the account's quota (seconds of `retry-after`, if any).
    /// An API key told how long to wait pauses that long and the next account gets the
    /// request; otherwise the client sees the answer, and the account is untouched.
    RateLimited { retry_after: Option<i64> },
    /// The provider disabled the account for good (its message, for the status and the
    /// log): it leaves the pool until its login changes, and the next account gets the
    /// request.
    Disabled { reason: String },
    /// A refusal of this request, not of the account: the client sees it, and the
    /// account is healthy.
    Request,
}

/// Something that wants every protocol: [`each`] calls [`Visit::protocol`] once per
/// protocol Carpool speaks. The relay builds its routes this way, so a new protocol is
/// registered here, not in the relay or the engine.
pub trait Visit {
    fn protocol<P: Protocol>(&mut self);
}

/// Every protocol Carpool speaks.
pub fn each(visitor: &mut impl Visit) {
    visitor.protocol::<anthropic::Anthropic>();
    visitor.protocol::<openai::OpenAi>();
}

/// Whose model list a `GET /v1/models` asks for: both APIs have the path. Every
/// Anthropic client sends `anthropic-version` (the SDKs and Claude Code alike); no OpenAI
/// client does.
pub fn models_provider(headers: &HeaderMap) -> Provider {
    if headers.contains_key("anthropic-version") {
        Provider::Anthropic
    } else {
        Provider::OpenAi
    }
}

/// The protocol whose error shape answers requests no route claims (unknown paths).
pub type Fallback = anthropic::Anthropic;

/// `base` with `path` after the base's own path, and the client's query: what
/// [`Endpoint::upstream_url`] builds for an endpoint whose upstream path is fixed. Refused
/// unless the resulting URL's path is exactly that: the URL parser resolves `..`, `%2e%2e`
/// and backslashes while it sets the path, and the check sees the result.
pub fn upstream_url_at(
    base: &reqwest::Url,
    path: &str,
    query: Option<&str>,
) -> Result<reqwest::Url, String> {
    let expected = format!("{}{}", base.path().trim_end_matches('/'), path);
    let mut url = base.clone();
    url.set_path(&expected);
    if let Some(query) = query
        && query.chars().any(|c| c == '#' || c.is_control())
    {
        return Err(format!("a query with `#` or control characters: {query:?}"));
    }
    url.set_query(query);
    url.set_fragment(None);
    if url.path() != expected {
        return Err(format!(
            "the upstream path would be {} instead of {expected}",
            url.path()
        ));
    }
    Ok(url)
}

/// What every protocol's error answer says about retrying: `retry-after` when Carpool
/// knows when ([`RelayError::retry_after_secs`]), and `x-should-retry: false` when
/// retrying cannot help ([`RelayError::client_may_retry`]), which the official SDKs and
/// Claude Code obey at once.
pub fn retry_headers(headers: &mut HeaderMap, error: &RelayError) {
    if let Some(secs) = error.retry_after_secs {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if !error.client_may_retry() {
        headers.insert("x-should-retry", HeaderValue::from_static("false"));
    }
}
