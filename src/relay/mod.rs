//! The request path, in the order a request meets it. It is the same for every client
//! protocol: what depends on the protocol (routes, the fields read from a request, the
//! headers sent upstream, what an answer's status and headers mean, the usage extractor,
//! the shape of errors) is asked of the request's [`Protocol`] ([`crate::protocol`]).
//!
//! 0. **route**: the protocol's routes lead here ([`routes`]), and its
//!    [`Protocol::endpoint`] says which endpoint a path is;
//! 1. **authenticate** the Carpool user token ([`crate::auth`]);
//! 2. **read the body** once into memory (bounded by `max_body_bytes`, and by
//!    `connections.body_timeout` between two of its pieces): it may be sent again, on a
//!    refreshed token now and on another account later;
//! 3. **pick an account** among those the user may use ([`crate::pool`]: their own
//!    account, or a pool with its strategy and sticky conversations) and get its
//!    credential, refreshing an OAuth token if needed ([`crate::credentials`]);
//! 4. **send** it upstream with the account's credentials ([`crate::upstream`],
//!    [`Protocol::request_headers`]); each answer's rate-limit headers update the
//!    account ([`Protocol::limit_signals`]), and its status is judged
//!    ([`Protocol::triage`], [`Protocol::judge_refusal`]): a rejected token is refreshed
//!    and the request sent once more; on a quota 429, a failing upstream, a refusal
//!    saying the provider disabled the account (which also quarantines it:
//!    [`crate::pool::account`]) or a connection failure the next eligible account gets
//!    it ([`failover`]). All of this happens before any byte reached the client;
//! 5. **stream back** status, headers and body as they arrive ([`body`]), under the
//!    idle and whole-request timeouts;
//! 6. **record** one log line and one usage row when the response ends
//!    ([`log::RequestContext`], [`Recorder`]); the usage is read from the body as it
//!    passes ([`Protocol::usage_tap`]).
//!
//! Upstream error responses (400, 401, 429, 529…) are passed through with their status,
//! headers and body; only failures of Carpool's own making become [`RelayError`]s, which
//! the protocol renders ([`Protocol::error_response`]). To judge an error answer (quota
//! or not, disabled account or not) only its first 64 KiB are read ([`ERROR_PREFIX`]); if
//! it is the answer the client gets, those bytes and then the rest are streamed like any
//! body, so the client sees the upstream's real body whatever its length. An error answer
//! set aside for a later account's is dropped unread, which closes its connection.
//!
//! # Buffers on the response path and their bounds
//!
//! Nothing on the way back grows with the length of an upstream answer:
//!
//! | buffer | bound | where |
//! | --- | --- | --- |
//! | a chunk being relayed | one chunk at a time, taken by hyper before the next is read (hyper's own read and write buffers are ~400 KiB per connection) | [`body`] |
//! | the prefix of an error answer being judged | 64 KiB copied, plus the rest of the one chunk that crossed the mark, refcounted as received | [`read_prefix`] |
//! | error answers kept while other accounts are tried | one at a time: a kept answer is dropped (its connection closed) when a later one replaces it | [`failover`] |
//! | the usage tap, SSE | the current line's kept part and event's data: 1 MiB, a larger event is dropped | [`crate::ledger::extract`] |
//! | the usage tap, JSON | the raw `type`, `model` and `usage` values: 64 KiB each, a larger one is dropped | [`crate::ledger::extract`] |
//! | the token endpoint's answer | 64 KiB, or the refresh fails | [`crate::credentials::oauth`] |
//! | the usage endpoint's answer | 64 KiB, or the poll fails (error answers are not read) | [`crate::pool`] (`poll.rs`) |
//!
//! `tests/hostile_upstream.rs` holds Carpool to this with multi-GB and endless answers.

mod body;
mod chat;
mod log;
mod websocket;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header;

use crate::auth::Caller;
use crate::config::{AccountTag, Config, Provider, Target};
use crate::credentials::Unavailable;
use crate::error::{Origin, RelayError};
use crate::pool::account::{Account, Auth};
use crate::pool::{self, Choice, unix_now};
use crate::protocol::{self, Endpoint as _, Protocol, Refusal, Triage};
use crate::secret::Secret;
use crate::state::{self, Current};
use crate::tasks::Tasks;
use crate::upstream;
use body::BodyLimits;
use log::RequestContext;

/// Every protocol's routes ([`protocol::each`]), each to [`handle`] for that protocol;
/// the paths that are not one protocol's endpoint (`GET /v1/models` of both APIs,
/// `/v1/chat/completions`, the WebSocket upgrade of `/v1/responses`); and the answers to
/// paths and methods none serves.
pub fn routes() -> Router<Arc<Current>> {
    use axum::routing::{MethodFilter, MethodRouter};
    use protocol::openai::OpenAi;
    type Methods = MethodRouter<Arc<Current>>;
    /// The methods of each path, in the order first seen.
    struct Routes(Vec<(&'static str, Methods)>);
    impl Routes {
        fn add(&mut self, path: &'static str, add: impl FnOnce(Methods) -> Methods) {
            match self.0.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => *methods = add(std::mem::take(methods)),
                None => self.0.push((path, add(MethodRouter::new()))),
            }
        }
    }
    impl protocol::Visit for Routes {
        fn protocol<P: Protocol>(&mut self) {
            for route in P::ROUTES {
                self.add(route.path, |m| {
                    m.on(route.method, handle::<P>)
                        .fallback(method_not_allowed::<P>)
                });
            }
        }
    }
    let mut routes = Routes(Vec::new());
    protocol::each(&mut routes);
    routes.add("/v1/models", |m| {
        m.on(MethodFilter::GET, models)
            .fallback(method_not_allowed::<protocol::Fallback>)
    });
    routes.add(chat::PATH, |m| {
        m.on(MethodFilter::POST, chat::handle)
            .fallback(method_not_allowed::<OpenAi>)
    });
    routes.add(websocket::PATH, |m| {
        m.on(MethodFilter::GET, websocket::handle)
    });
    let mut router = Router::new();
    for (path, methods) in routes.0 {
        router = router.route(path, methods);
    }
    router.fallback(not_found::<protocol::Fallback>)
}

/// The axum handler for every relayed endpoint of protocol `P`.
pub async fn handle<P: Protocol>(
    State(current): State<Arc<Current>>,
    request: Request,
) -> Response {
    let Some(endpoint) = P::endpoint(request.uri().path()) else {
        return refuse::<P>(
            &current,
            &request,
            P::not_relayed(request.method(), request.uri().path()),
        );
    };
    let mut context = RequestContext::start(request.method(), request.uri().path(), current.feed());
    context.endpoint = endpoint.name();
    match relay::<P>(&current, endpoint, request, &mut context).await {
        Ok(response) => response,
        Err(error) => {
            let response = P::error_response(&error);
            context.refused(error.kind, response.status());
            response
        }
    }
}

/// `GET /v1/models`, a path of both APIs: the list of the provider whose client asks
/// ([`protocol::models_provider`]).
///
/// Codex asks with `client_version` for its backend's own list, which is relayed. Other
/// OpenAI clients (the SDKs, Cursor, Continue) get an OpenAI list of what they can ask
/// for through `/v1/chat/completions`: the priced models of each provider the user is
/// bound to, and the aliases that lead to one of them.
async fn models(state: State<Arc<Current>>, request: Request) -> Response {
    match protocol::models_provider(request.headers()) {
        Provider::Anthropic => handle::<protocol::anthropic::Anthropic>(state, request).await,
        Provider::OpenAi
            if request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("client_version="))) =>
        {
            handle::<protocol::openai::OpenAi>(state, request).await
        }
        Provider::OpenAi => {
            use protocol::openai::OpenAi;
            let State(current) = state;
            let mut context =
                RequestContext::start(request.method(), request.uri().path(), current.feed());
            context.endpoint = "models";
            let state = current.state();
            let caller = match authenticate(&state, request.headers(), &mut context) {
                Ok(caller) => caller,
                Err(error) => {
                    let response = OpenAi::error_response(&error);
                    context.refused(error.kind, response.status());
                    return response;
                }
            };
            let bound = |provider| target_of(&caller, &state.config, provider, "account").is_ok();
            let list = model_list(&state.config, bound);
            context.status = 200;
            context.outcome = log::Outcome::Completed;
            axum::Json(list).into_response()
        }
    }
}

/// An OpenAI model list (`{"object":"list","data":[{"id","object":"model","created",
/// "owned_by"}]}`) of the priced models and aliases of the providers `bound` says yes to.
fn model_list(config: &Config, bound: impl Fn(Provider) -> bool) -> serde_json::Value {
    let owner = |provider| match provider {
        Provider::Anthropic => "anthropic",
        Provider::OpenAi => "openai",
    };
    let mut ids: std::collections::BTreeMap<String, &str> = Default::default();
    for (id, _) in config.usage.prices.models() {
        let provider = chat::provider_of(id);
        if bound(provider) {
            ids.insert(id.to_owned(), owner(provider));
        }
    }
    for (alias, model) in &config.aliases {
        let provider = chat::provider_of(model);
        if bound(provider) {
            ids.insert(alias.clone(), owner(provider));
        }
    }
    let data: Vec<serde_json::Value> = ids
        .into_iter()
        .map(|(id, owned_by)| {
            serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owned_by})
        })
        .collect();
    serde_json::json!({"object": "list", "data": data})
}

async fn relay<P: Protocol>(
    current: &Current,
    endpoint: P::Endpoint,
    request: Request,
    context: &mut RequestContext,
) -> Result<Response, RelayError> {
    let (parts, body) = request.into_parts();
    // The configuration this request runs on to its end, whatever a reload does meanwhile.
    let state = current.state();
    // 1. authenticate
    let caller = authenticate(&state, &parts.headers, context)?;
    let target = target_of(&caller, &state.config, P::PROVIDER, P::ACCOUNT)?;
    // 2. read the body
    let config = &state.config;
    let body = read_body(body, config.max_body_bytes, config.connections.body_timeout).await?;
    forward::<P>(
        current, &state, &target, endpoint, &parts, body, None, context,
    )
    .await
}

/// Step 1: who sent the request (the ledger records them from here on).
fn authenticate<'s>(
    state: &'s state::State,
    headers: &http::HeaderMap,
    context: &mut RequestContext,
) -> Result<Caller<'s>, RelayError> {
    let caller = state
        .users
        .authenticate(headers)
        .map_err(|e| RelayError::bad_token(e.message()))?;
    if let Caller::User(user) = &caller {
        context.user = user.name.to_string();
    }
    context.authenticated(state.recorder.clone());
    Ok(caller)
}

/// Where `caller`'s requests for `provider` go: their target for it, or for anonymous
/// loopback use the config's first of that provider. `account` names what is missing
/// ("Claude account").
fn target_of(
    caller: &Caller<'_>,
    config: &Config,
    provider: Provider,
    account: &str,
) -> Result<Target, RelayError> {
    match caller {
        Caller::User(user) => user.targets.get(provider).cloned().ok_or_else(|| {
            RelayError::forbidden(format!(
                "Carpool: user `{}` has no {account} in this Carpool; ask its owner to bind one to them",
                user.name
            ))
        }),
        Caller::Anonymous => config
            .anonymous_target(provider)
            .ok_or_else(|| RelayError::forbidden(format!("Carpool: this Carpool has no {account}"))),
    }
}

/// Steps 3 to 5 for a request whose caller, target and body are known: pick an account,
/// send, fail over, stream back. `transform`, when given, rewrites the answer's body on
/// its way to the client (a translated request: [`chat`]); the usage is read from the
/// upstream's bytes before it.
#[allow(clippy::too_many_arguments)]
async fn forward<P: Protocol>(
    current: &Current,
    state: &state::State,
    target: &Target,
    endpoint: P::Endpoint,
    parts: &http::request::Parts,
    body: Bytes,
    transform: Option<&dyn chat::MakeTransform>,
    context: &mut RequestContext,
) -> Result<Response, RelayError> {
    let config = &state.config;
    context.provider = P::PROVIDER;
    let peek = P::peek(&parts.headers, &body);
    let streaming = peek.stream;
    context.peeked(peek);

    // Streaming answers send headers early and then keep talking: they are bounded by the
    // first-byte and idle timeouts. Other answers arrive whole, so the whole request is.
    let timeouts = &config.timeouts;
    let deadline = (!streaming).then(|| Instant::now() + timeouts.request);
    let limits = BodyLimits {
        idle: timeouts.idle,
        deadline,
    };

    // 3 + 4. pick an account, send; on a quota 429, a 5xx or a failure to connect,
    // try the next eligible account before anything reached the client.
    let outgoing = Outgoing::<P> {
        endpoint: &endpoint,
        parts,
        body: &body,
    };
    let (head, upstream) =
        match failover(current.tasks(), state, target, &outgoing, deadline, context).await? {
            Attempt::Answer(response) => body::Upstream::split(response),
            // An error answer whose first bytes were read to judge it: they go first.
            Attempt::Buffered(kept) => kept.split(),
        };
    let (status, upstream_headers) = (head.status, head.headers);

    // 5. stream back
    let mut headers = upstream::response_headers(&upstream_headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let sse = content_type.is_some_and(|v| v.starts_with("text/event-stream"));
    context.status = status.as_u16();
    context.streamed = sse;
    context.week_reset = P::weekly_reset(&upstream_headers);
    if status.is_success() {
        context.tap = P::usage_tap(&endpoint, content_type);
    }
    let mut status_out = status;
    let (stream_error, transform) = match transform {
        None => (sse.then_some(P::stream_error as body::StreamError), None),
        Some(make) => {
            let made = make.make(status, sse);
            status_out = made.status;
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::CONTENT_ENCODING);
            headers.insert(header::CONTENT_TYPE, made.content_type);
            (None, Some(made.transform))
        }
    };
    let upstream_body = body::relay(upstream, limits, stream_error, transform, context.take());
    let mut out = Response::new(Body::from_stream(upstream_body));
    *out.status_mut() = status_out;
    *out.headers_mut() = headers;
    Ok(out)
}

/// What is sent upstream, whichever account gets it.
struct Outgoing<'a, P: Protocol> {
    endpoint: &'a P::Endpoint,
    parts: &'a http::request::Parts,
    body: &'a Bytes,
}

/// What the failover loop ends with.
enum Attempt {
    /// An upstream answer to stream to the client.
    Answer(reqwest::Response),
    /// An error answer whose first bytes were read to judge it (a refusal or a failing
    /// upstream, maybe kept while other accounts were tried, none of which could do
    /// better); sent as it came: those bytes, then the rest of it, streamed.
    Buffered(Kept),
}

/// Tries the target's accounts until one answers with something the protocol says to
/// deliver (not a quota 429, a failing upstream or a connection failure), at most once
/// each.
async fn failover<P: Protocol>(
    tasks: &Tasks,
    state: &state::State,
    target: &Target,
    request: &Outgoing<'_, P>,
    deadline: Option<Instant>,
    context: &mut RequestContext,
) -> Result<Attempt, RelayError> {
    let pool = &state.pool;
    pool::poll_if_stale(pool, target, unix_now(), tasks);
    let mut tried: Vec<AccountTag> = Vec::new();
    // The last failure seen, given to the client if no account does better.
    // Replacing it drops the previous one, which closes that upstream connection.
    let mut last: Option<Result<Kept, RelayError>> = None;
    let mut quota_hit = false;
    loop {
        let now = unix_now();
        let account = match pool.choose(target, &context.session, &tried, now) {
            Choice::Use(account) => account,
            Choice::Exhausted { retry_at, accounts } => {
                return Err(exhausted::<P>(retry_at, accounts, now));
            }
            Choice::Unusable { reasons } => {
                // Every account was tried or cannot be used. If some ran out of quota
                // on the way, say when the first one is back.
                if quota_hit
                    && let Choice::Exhausted { retry_at, accounts } =
                        pool.choose(target, &context.session, &[], now)
                {
                    return Err(exhausted::<P>(retry_at, accounts, now));
                }
                return match last {
                    Some(Ok(response)) => Ok(Attempt::Buffered(response)),
                    Some(Err(error)) => Err(error),
                    None => {
                        for reason in &reasons {
                            tracing::warn!("a request could not be served: {reason}");
                        }
                        Err(needs_owner::<P>())
                    }
                };
            }
        };
        tried.push(account.tag.clone());
        context.account = Some(account.clone());
        // The login this attempt uses: a refusal for good holds until it changes.
        let generation = account.credential_generation();
        let (response, triage) =
            match send_to::<P>(&state.config, &account, request, deadline).await {
                Ok(answer) => answer,
                // Nothing another account could change.
                Err(error) if !error.fails_over() => return Err(error),
                Err(error) => {
                    // Could not connect, timed out, or the login could not be used: the
                    // next account may do better.
                    if error.origin() == Origin::Upstream {
                        account.limits().on_failure(unix_now());
                    }
                    tracing::warn!(account = %account.tag, "{}", error.detail());
                    last = Some(Err(error));
                    continue;
                }
            };
        let status = response.status();
        let now = unix_now();
        if let Some(signals) = P::limit_signals(response.headers(), now) {
            account.limits().observe(&signals, now);
        }
        match triage {
            Triage::Inspect => {
                let kept = read_prefix(response, deadline).await?;
                match P::judge_refusal(status, &kept.head.headers, &kept.prefix, now) {
                    Refusal::Quota { until } => {
                        quota_hit = true;
                        account.limits().on_quota_429(until);
                        pool.unbind(target, &context.session);
                        tracing::warn!(account = %account.tag, until, "account reached its usage limit; trying the next one");
                    }
                    Refusal::RateLimited {
                        retry_after: Some(seconds),
                    } if !account.is_oauth() => {
                        // Bounded: a `retry-after` alone never pauses a key for long.
                        let until = account.limits().on_rate_limit(Some(seconds), now);
                        pool.unbind(target, &context.session);
                        tracing::warn!(account = %account.tag, retry_after = seconds, paused_s = until - now, "API key rate-limited; trying the next account");
                    }
                    Refusal::RateLimited { .. } => {
                        // Not about this account's quota ("Extra usage is required for
                        // long context requests", …): the client must see it as it is.
                        return Ok(Attempt::Buffered(kept));
                    }
                    Refusal::Disabled { reason } => {
                        // The provider disabled the account: out of the pool until its
                        // login changes (logged there, once), and the request goes to
                        // the next one.
                        account.quarantine(reason, generation, now);
                        pool.unbind(target, &context.session);
                    }
                    Refusal::Request => {
                        // An ordinary refusal of this request: the client's to see.
                        account.limits().on_success();
                        return Ok(Attempt::Buffered(kept));
                    }
                }
                last = Some(Ok(kept));
            }
            Triage::Failed => {
                account.limits().on_failure(now);
                let kept = read_prefix(response, deadline).await?;
                tracing::warn!(account = %account.tag, status = status.as_u16(), "upstream error; trying the next account");
                last = Some(Ok(kept));
            }
            // A rejected token or an overloaded upstream that one more try did not fix:
            // the client sees the answer.
            Triage::Deliver | Triage::CredentialRefused | Triage::Overloaded => {
                account.limits().on_success();
                return Ok(Attempt::Answer(response));
            }
        }
    }
}

/// One account: its credential, one send, a refresh and resend after a rejected token,
/// and one resend after an overloaded answer. Returns the answer and its triage.
async fn send_to<P: Protocol>(
    config: &Config,
    account: &Account,
    request: &Outgoing<'_, P>,
    deadline: Option<Instant>,
) -> Result<(reqwest::Response, Triage), RelayError> {
    let mut rejected: Option<Secret> = None;
    let mut overloaded_retry = true;
    loop {
        let auth = account
            .auth(rejected.as_ref())
            .await
            .map_err(no_credential::<P>)?;
        let response = send(config, account, request, &auth, deadline).await?;
        match P::triage(response.status()) {
            Triage::CredentialRefused if rejected.is_none() && account.is_oauth() => {
                tracing::warn!(account = %account.tag, status = response.status().as_u16(), "upstream rejected the access token; refreshing and retrying once");
                if let Auth::OAuth { token, .. } = auth {
                    rejected = Some(token);
                }
            }
            Triage::Overloaded if overloaded_retry => {
                overloaded_retry = false;
                tracing::debug!(account = %account.tag, status = response.status().as_u16(), "upstream overloaded; retrying once");
                tokio::time::sleep(OVERLOADED_RETRY_DELAY).await;
            }
            triage => return Ok((response, triage)),
        }
    }
}

/// How long to wait before resending a request the upstream answered as overloaded.
const OVERLOADED_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// The 429 every account being at its limit earns, saying when the first is back.
fn exhausted<P: Protocol>(retry_at: Option<i64>, accounts: usize, now: i64) -> RelayError {
    let when = match retry_at {
        Some(t) if t > now => {
            let wait = std::time::Duration::from_secs((t - now) as u64);
            let at = jiff::Timestamp::from_second(t)
                .map(|ts| ts.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            format!(
                " The earliest is back at {at} (in {}).",
                humantime::format_duration(wait)
            )
        }
        _ => String::new(),
    };
    let which = if accounts == 1 {
        format!("Your {} cannot", P::ACCOUNT)
    } else {
        format!("None of the {accounts} {}s you can use can", P::ACCOUNT)
    };
    RelayError::all_exhausted(
        format!(
            "Carpool: {which} take a request right now: usage limits reached, the owner's reserve kept, or the upstream failing.{when}"
        ),
        retry_at.map(|t| (t - now).max(1) as u64),
    )
}

/// How much of an error answer is read to judge it (quota 429 or not, an account
/// disabled for good or not): Anthropic's error bodies are a few hundred bytes.
pub const ERROR_PREFIX: usize = 64 << 10;

/// An upstream error answer of which at most [`ERROR_PREFIX`] bytes were read: enough
/// to classify it, while the rest stays unread in the connection. Passed on, it streams
/// those bytes and then the rest; dropped, it closes the upstream connection (hyper
/// never pools a connection whose body was not read to the end).
struct Kept {
    head: http::response::Parts,
    /// The body's first bytes (all of it if it ended sooner): at most [`ERROR_PREFIX`].
    prefix: Bytes,
    /// The rest of the chunk that crossed [`ERROR_PREFIX`], as received (refcounted).
    overflow: Option<Bytes>,
    /// The unread rest; `None` once the body ended.
    rest: Option<reqwest::Body>,
    /// The body's exact length, if known before reading.
    length: Option<u64>,
}

impl Kept {
    /// Its head, and its body to relay: the bytes already read, then the rest.
    fn split(self) -> (http::response::Parts, body::Upstream) {
        use futures_util::StreamExt;
        let read = [Some(self.prefix), self.overflow]
            .into_iter()
            .flatten()
            .filter(|b| !b.is_empty())
            .map(Ok);
        let read = futures_util::stream::iter(read);
        let chunks = match self.rest {
            Some(rest) => read
                .chain(http_body_util::BodyDataStream::new(rest))
                .boxed(),
            None => read.boxed(),
        };
        let upstream = body::Upstream {
            chunks,
            length: self.length,
        };
        (self.head, upstream)
    }
}

/// Reads the first [`ERROR_PREFIX`] bytes of an error answer (all of it if shorter),
/// within the request's deadline (30 s for streaming requests).
async fn read_prefix(
    response: reqwest::Response,
    deadline: Option<Instant>,
) -> Result<Kept, RelayError> {
    use http_body_util::BodyExt;
    let until = deadline.unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(30));
    let response: http::Response<reqwest::Body> = response.into();
    let (head, mut body) = response.into_parts();
    let length = axum::body::HttpBody::size_hint(&body).exact();
    let read = async {
        let mut prefix = bytes::BytesMut::new();
        while prefix.len() < ERROR_PREFIX {
            let Some(frame) = body.frame().await else {
                return Ok((prefix.freeze(), None, false));
            };
            let Ok(mut data) = frame?.into_data() else {
                continue; // trailers
            };
            let room = ERROR_PREFIX - prefix.len();
            if data.len() > room {
                let overflow = data.split_off(room);
                prefix.extend_from_slice(&data);
                return Ok((prefix.freeze(), Some(overflow), true));
            }
            prefix.extend_from_slice(&data);
        }
        Ok::<_, reqwest::Error>((prefix.freeze(), None, true))
    };
    let (prefix, overflow, more) = tokio::time::timeout_at(until.into(), read)
        .await
        .map_err(|_| {
            RelayError::timeout(
                "Carpool: the upstream's error answer did not arrive in time".into(),
            )
        })?
        .map_err(|e| {
            RelayError::unreachable("Carpool: the upstream's error answer broke off".into())
                .with_source(e)
        })?;
    Ok(Kept {
        head,
        prefix,
        overflow,
        rest: more.then_some(body),
        length,
    })
}

/// The error for an account whose credentials cannot be used now. The reason (paths,
/// account tags) is the owner's business: it goes to the log, and the user is told who
/// can fix it, or when to try again if the problem passes by itself.
fn no_credential<P: Protocol>(u: Unavailable) -> RelayError {
    tracing::warn!("a request could not be served: {}", u.reason);
    match u.retry_after {
        None => needs_owner::<P>(),
        Some(wait) => {
            let secs = wait.as_secs().max(1);
            RelayError::no_credential(
                format!(
                    "Carpool: the {} that serves you could not renew its login just now; Carpool tries again in {secs} s. Please retry then.",
                    P::ACCOUNT
                ),
                Some(secs),
            )
        }
    }
}

/// What a user hears when no account can serve them until the owner acts.
fn needs_owner<P: Protocol>() -> RelayError {
    RelayError::needs_owner(format!(
        "Carpool: the {} this Carpool server shares with you cannot be used until its owner fixes it on the Carpool machine (Carpool's log there says what is wrong). Retrying will not help; please tell the owner.",
        P::ACCOUNT
    ))
}

/// Reads the whole request body, refusing more than `limit` bytes, and a body that stops
/// arriving for `gap` (it would hold its memory and connection for nothing). Either way
/// the rest of the body is not read, so hyper closes the connection after the answer.
async fn read_body(
    body: Body,
    limit: usize,
    gap: std::time::Duration,
) -> Result<Bytes, RelayError> {
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(gap, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(source))) => {
                return Err(if source.is::<http_body_util::LengthLimitError>() {
                    RelayError::too_large(limit)
                } else {
                    RelayError::bad_request("Carpool: could not read the request body".into())
                        .with_source(source)
                });
            }
            Err(_) => {
                let received: usize = chunks.iter().map(Bytes::len).sum();
                return Err(RelayError::body_stalled(format!(
                    "Carpool: the request body stalled: nothing arrived for {} after {received} bytes (`connections.body_timeout` in the Carpool config)",
                    humantime::format_duration(gap)
                )));
            }
        };
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            chunks.push(data);
        }
    }
    // One piece (the common case for small bodies) is returned as it is, without a copy.
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut whole = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
    })
}

/// Sends one attempt upstream and waits for the response headers: until `deadline` for
/// non-streaming requests, for `timeouts.first_byte` for streaming ones.
async fn send<P: Protocol>(
    config: &Config,
    account: &Account,
    request: &Outgoing<'_, P>,
    auth: &Auth,
    deadline: Option<Instant>,
) -> Result<reqwest::Response, RelayError> {
    let timeouts = &config.timeouts;
    let Outgoing {
        endpoint,
        parts,
        body,
    } = request;
    let url = endpoint
        .upstream_url(&account.base, parts.uri.query())
        .map_err(|problem| {
            tracing::warn!(account = %account.tag, "refused to build an upstream URL: {problem}");
            P::not_relayed(&parts.method, parts.uri.path())
        })?;
    let mut outgoing = account
        .http
        .request(parts.method.clone(), url)
        .headers(P::request_headers(
            &parts.headers,
            &config.headers,
            auth.upstream(),
        ));
    if !body.is_empty() {
        outgoing = outgoing.body(Bytes::clone(body));
    }
    if parts.headers.contains_key(header::UPGRADE) {
        // A protocol upgrade (a WebSocket: [`websocket`]) exists only in HTTP/1.1.
        outgoing = outgoing.version(http::Version::HTTP_11);
    }
    let (until, wait, field) = match deadline {
        Some(d) => (d, timeouts.request, "timeouts.request"),
        None => (
            Instant::now() + timeouts.first_byte,
            timeouts.first_byte,
            "timeouts.first_byte",
        ),
    };
    let base = &account.base_url;
    match tokio::time::timeout_at(until.into(), outgoing.send()).await {
        Err(_) => Err(RelayError::timeout(format!(
            "Carpool: the upstream ({base}) sent no response within {} (`{field}` in the Carpool config)",
            humantime::format_duration(wait)
        ))),
        Ok(Err(e)) if e.is_connect() && e.is_timeout() => Err(RelayError::timeout(format!(
            "Carpool: could not connect to the upstream ({base}) within {} (`timeouts.connect` in the Carpool config)",
            humantime::format_duration(timeouts.connect)
        ))),
        Ok(Err(e)) => Err(RelayError::unreachable(format!(
            "Carpool: cannot reach the upstream ({base})"
        ))
        .with_source(e)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// Answers a path no protocol serves, in the fallback protocol's shape.
async fn not_found<P: Protocol>(State(current): State<Arc<Current>>, request: Request) -> Response {
    let error = P::not_relayed(request.method(), request.uri().path());
    refuse::<P>(&current, &request, error)
}

/// Answers a known path with the wrong method.
async fn method_not_allowed<P: Protocol>(
    State(current): State<Arc<Current>>,
    request: Request,
) -> Response {
    let error = RelayError::method_not_allowed(format!(
        "Carpool: {} is not allowed on {}",
        request.method(),
        request.uri().path()
    ));
    refuse::<P>(&current, &request, error)
}

/// Refused before anything else happened: rendered, and logged (not recorded).
fn refuse<P: Protocol>(current: &Current, request: &Request, error: RelayError) -> Response {
    let response = P::error_response(&error);
    RequestContext::start(request.method(), request.uri().path(), current.feed())
        .refused(error.kind, response.status());
    response
}
