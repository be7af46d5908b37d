//! Signing in to the management API with the admin secret: a session cookie for the
//! dashboard, with a CSRF token.
//!
//! `POST /session` with `{"secret": "cpa-…"}` sets the cookie [`COOKIE`] (`HttpOnly`, so
//! page scripts cannot read it; `SameSite=Strict`, so other sites' pages cannot send it;
//! `Secure` over TLS) and answers the session's CSRF token, which every POST, PUT, PATCH
//! and DELETE made with the cookie must carry in [`CSRF_HEADER`]. `GET /session` answers
//! it again (a reloaded page has lost it), `DELETE /session` signs out.
//!
//! The desktop app signs its own window in without the secret: the shell, in the same
//! process, asks [`super::Api::handover_ticket`] for a one-time ticket and opens the
//! window at `GET /session/handover?ticket=…`, which opens a session exactly as signing
//! in does and sends the window on to the dashboard. A ticket works once, for
//! [`HANDOVER_TTL`]; nothing but code in the process can make one (no route does), and a
//! wrong ticket counts as a wrong secret toward the lockout.
//!
//! Sessions live in memory (a restart signs everyone out) for [`TTL`] after their last
//! use; at most [`MAX_SESSIONS`] at once, the one closest to its end making room. The map
//! is keyed by the SHA-256 of the session id, so it holds nothing a cookie could be made
//! from. A session belongs to the admin secret it was opened with: `carpool admin reset`
//! ends every session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::auth::Access;
use super::{Api, ApiError, ErrorBody};
use crate::listener::Peer;
use crate::secret::TokenHash;
use crate::tasks::lock;

/// The session cookie's name.
pub const COOKIE: &str = "carpool_session";
/// The header carrying the CSRF token on state-changing requests made with the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends this long after its last use.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions open at once.
pub const MAX_SESSIONS: usize = 256;

/// How long a hand-over ticket can be used: the shell opens its window right after
/// making one.
pub const HANDOVER_TTL: Duration = Duration::from_secs(60);
/// Most hand-over tickets waiting at once.
pub const MAX_HANDOVERS: usize = 16;

/// The open sessions.
pub struct Sessions {
    open: std::sync::Mutex<HashMap<TokenHashKey, Session>>,
    ttl: Duration,
}

type TokenHashKey = [u8; 32];

struct Session {
    csrf: String,
    expires: Instant,
    /// The admin secret it was opened with.
    secret: TokenHash,
}

/// A session as a request finds it.
#[derive(Debug, Clone)]
pub struct Current {
    pub key: TokenHashKey,
    pub csrf: String,
    pub expires: Instant,
}

/// A session just opened: the cookie's value and what the browser is told.
pub struct Opened {
    pub id: String,
    pub csrf: String,
    pub expires: Instant,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_ttl(TTL)
    }
}

impl Sessions {
    pub fn with_ttl(ttl: Duration) -> Sessions {
        Sessions {
            open: std::sync::Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Opens a session for the admin secret whose hash is `secret`.
    pub fn open(&self, secret: TokenHash, now: Instant) -> Opened {
        let id = random_token();
        let csrf = random_token();
        let expires = now + self.ttl;
        let mut open = lock(&self.open);
        if open.len() >= MAX_SESSIONS {
            open.retain(|_, s| s.expires > now);
        }
        if open.len() >= MAX_SESSIONS {
            let first_to_end = open.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            if let Some(key) = first_to_end {
                open.remove(&key);
            }
        }
        open.insert(
            key_of(&id),
            Session {
                csrf: csrf.clone(),
                expires,
                secret,
            },
        );
        Opened { id, csrf, expires }
    }

    /// The session of cookie value `id`, if it is open and belongs to the admin secret
    /// `secret`; its end moves to `now` + the TTL.
    pub fn find(&self, id: &str, secret: Option<TokenHash>, now: Instant) -> Option<Current> {
        let key = key_of(id);
        let mut open = lock(&self.open);
        let session = open.get_mut(&key)?;
        let valid = session.expires > now && secret.is_some_and(|s| s.ct_eq(&session.secret));
        if !valid {
            open.remove(&key);
            return None;
        }
        session.expires = now + self.ttl;
        Some(Current {
            key,
            csrf: session.csrf.clone(),
            expires: session.expires,
        })
    }

    /// Ends a session.
    pub fn close(&self, key: &TokenHashKey) {
        lock(&self.open).remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.open).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One-time tickets for the desktop app's window, kept (like sessions) only as hashes.
#[derive(Default)]
pub struct Handovers {
    waiting: std::sync::Mutex<HashMap<TokenHashKey, Instant>>,
}

impl Handovers {
    /// A new ticket, usable once until `now` + [`HANDOVER_TTL`].
    pub fn issue(&self, now: Instant) -> String {
        let ticket = random_token();
        let mut waiting = lock(&self.waiting);
        waiting.retain(|_, until| *until > now);
        if waiting.len() >= MAX_HANDOVERS {
            let first_to_end = waiting.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k);
            if let Some(key) = first_to_end {
                waiting.remove(&key);
            }
        }
        waiting.insert(key_of(&ticket), now + HANDOVER_TTL);
        ticket
    }

    /// Whether `ticket` is a waiting, unexpired ticket; either way it is used up.
    pub fn redeem(&self, ticket: &str, now: Instant) -> bool {
        lock(&self.waiting)
            .remove(&key_of(ticket))
            .is_some_and(|until| until > now)
    }
}

fn key_of(id: &str) -> TokenHashKey {
    use sha2::{Digest, Sha256};
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes, URL-safe base64.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `presented` is the session's CSRF token, in constant time.
pub fn csrf_matches(session: &Current, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(session.csrf.as_bytes())))
}

/// The session cookie's value among the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value for session `id`; `Secure` when the connection is TLS. No
/// `Max-Age`: the browser drops it when it closes, and Carpool ends it after [`TTL`] idle.
fn set_cookie(id: &str, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}"
    ))
    .expect("the id is URL-safe base64")
}

/// The `Set-Cookie` value that makes the browser forget the session.
fn clear_cookie(tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"
    ))
    .expect("a fixed value")
}

/// An instant as Unix seconds.
fn unix_seconds(at: Instant, now: Instant) -> u64 {
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (unix_now + at.saturating_duration_since(now)).as_secs()
}

/// The admin secret, to sign in with.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The admin secret (`cpa-…`), as `carpool serve` printed it at first start or
    /// `carpool admin reset` made it.
    pub secret: String,
}

/// A session just opened. The cookie `carpool_session` comes with it.
#[derive(Serialize, ToSchema)]
pub struct SignedIn {
    /// Send this as the `x-csrf-token` header with every POST, PUT, PATCH and DELETE made
    /// with the session cookie.
    pub csrf_token: String,
    /// When the session ends if it is not used (Unix seconds); every request moves it on.
    pub expires_at: u64,
}

/// How the caller has admin access.
#[derive(Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The session cookie (signed in with `POST /session`).
    Session,
    /// The admin secret as `Authorization: Bearer cpa-…`.
    Bearer,
}

/// The caller's admin access.
#[derive(Serialize, ToSchema)]
pub struct AccessInfo {
    pub via: Via,
    /// With `via: session`: the session's CSRF token, to send as `x-csrf-token` with every
    /// POST, PUT, PATCH and DELETE. `null` with `via: bearer`, which needs none.
    pub csrf_token: Option<String>,
    /// With `via: session`: when the session ends if it is not used (Unix seconds).
    pub expires_at: Option<u64>,
}

/// Sign in with the admin secret.
///
/// The only call that needs no admin access. Sets the session cookie `carpool_session`
/// (HttpOnly, SameSite=Strict, Secure over TLS) and answers the CSRF token. Five wrong
/// secrets from one address lock it out for a while (`429` with `retry-after`).
#[utoipa::path(
    post,
    path = "/session",
    tag = "session",
    operation_id = "signIn",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SignedIn,
            headers(("set-cookie" = String, description = "`carpool_session=…; HttpOnly; SameSite=Strict; Path=/` (and `Secure` over TLS)"))),
        (status = 401, description = "Not the admin secret", body = ErrorBody),
        (status = 403, description = "Refused: a foreign `Origin`, or a peer the API does not answer", body = ErrorBody),
        (status = 421, description = "A `Host` the API does not answer to", body = ErrorBody),
        (status = 422, description = "The body is not `{\"secret\": \"…\"}`", body = ErrorBody),
        (status = 429, description = "Too many wrong secrets from this address; see `retry-after`", body = ErrorBody),
    )
)]
pub async fn sign_in(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(SignIn { secret }) = body?;
    let now = Instant::now();
    let Some(hash) = api.admin.verify(secret.trim()) else {
        return Err(api.admin.failed(peer.addr.ip(), now));
    };
    api.admin.succeeded(peer.addr.ip());
    let opened = api.admin.sessions.open(hash, now);
    tracing::info!(peer = %peer.addr, "signed in to the management API");
    let body = SignedIn {
        csrf_token: opened.csrf,
        expires_at: unix_seconds(opened.expires, now),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&opened.id, peer.tls));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Whether the caller is signed in, and the session's CSRF token again.
///
/// A page that was reloaded calls this to learn whether its cookie still holds and to get
/// the CSRF token back. Without admin access: `401`.
#[utoipa::path(
    get,
    path = "/session",
    tag = "session",
    operation_id = "getSession",
    responses(
        (status = 200, description = "The caller's admin access", body = AccessInfo),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
pub async fn get_session(Extension(access): Extension<Access>) -> Response {
    let now = Instant::now();
    let info = match access {
        Access::Bearer => AccessInfo {
            via: Via::Bearer,
            csrf_token: None,
            expires_at: None,
        },
        Access::Session(session) => AccessInfo {
            via: Via::Session,
            csrf_token: Some(session.csrf),
            expires_at: Some(unix_seconds(session.expires, now)),
        },
    };
    let mut response = Json(info).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The one-time ticket of a hand-over.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Handover {
    /// The ticket the desktop app made for its own window.
    pub ticket: String,
}

/// Sign the desktop app's window in with a one-time ticket.
///
/// The desktop app opens its dashboard window here with a ticket it made in-process (no
/// route makes one). A valid ticket opens a session as signing in does and redirects to
/// the dashboard; a ticket works once, within a minute. A wrong or used ticket counts as
/// a wrong secret.
#[utoipa::path(
    get,
    path = "/session/handover",
    tag = "session",
    operation_id = "handOver",
    params(Handover),
    responses(
        (status = 303, description = "Signed in; the session cookie is set and the window goes on to the dashboard",
            headers(("set-cookie" = String, description = "As with `POST /session`"), ("location" = String))),
        (status = 401, description = "No ticket, or not a waiting one: unknown, used or expired", body = ErrorBody),
        (status = 429, description = "Too many wrong secrets or tickets from this address; see `retry-after`", body = ErrorBody),
    )
)]
pub async fn hand_over(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    query: Result<axum::extract::Query<Handover>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(axum::extract::Query(Handover { ticket })) = query else {
        return Err(ApiError::unauthorized(
            "a hand-over needs the `ticket` the desktop app made for its window",
        ));
    };
    let now = Instant::now();
    if !api.admin.handovers.redeem(&ticket, now) {
        return Err(api.admin.failed(peer.addr.ip(), now));
    }
    let Some(hash) = api.admin.current() else {
        return Err(ApiError::internal(
            "the admin secret's file cannot be read; run `carpool admin reset`",
        ));
    };
    let opened = api.admin.sessions.open(hash, now);
    tracing::info!(peer = %peer.addr, "the desktop app's window signed in");
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, set_cookie(&opened.id, peer.tls));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The ticket is in this page's address: no request from the next page tells it on.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// Sign out: ends the session and clears its cookie.
#[utoipa::path(
    delete,
    path = "/session",
    tag = "session",
    operation_id = "signOut",
    responses(
        (status = 204, description = "Signed out (with a bearer secret: nothing to end)"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The `x-csrf-token` header is missing or wrong", body = ErrorBody),
    )
)]
pub async fn sign_out(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Extension(access): Extension<Access>,
) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Access::Session(session) = access {
        api.admin.sessions.close(&session.key);
        response
            .headers_mut()
            .insert(header::SET_COOKIE, clear_cookie(peer.tls));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_slides_and_ends_after_its_ttl_idle() {
        let sessions = Sessions::with_ttl(Duration::from_secs(100));
        let secret = TokenHash::of("cpa-one");
        let start = Instant::now();
        let opened = sessions.open(secret, start);
        let found = sessions
            .find(&opened.id, Some(secret), start + Duration::from_secs(90))
            .unwrap();
        assert_eq!(found.csrf, opened.csrf);
        assert_eq!(found.expires, start + Duration::from_secs(190));
        // Used at 90 s, so still open at 180 s; then idle past its end.
        assert!(
            sessions
                .find(&opened.id, Some(secret), start + Duration::from_secs(180))
                .is_some()
        );
        assert!(
            sessions
                .find(&opened.id, Some(secret), start + Duration::from_secs(281))
                .is_none()
        );
        assert!(sessions.is_empty(), "an ended session is forgotten");
    }

    #[test]
    fn a_handover_ticket_works_once_within_its_ttl() {
        let handovers = Handovers::default();
        let now = Instant::now();
        let ticket = handovers.issue(now);
        assert!(!handovers.redeem("made-up", now));
        assert!(handovers.redeem(&ticket, now + Duration::from_secs(1)));
        assert!(
            !handovers.redeem(&ticket, now + Duration::from_secs(2)),
            "used up"
        );
        let late = handovers.issue(now);
        assert!(!handovers.redeem(&late, now + HANDOVER_TTL), "expired");
        let waiting: Vec<String> = (0..MAX_HANDOVERS + 3)
            .map(|_| handovers.issue(now))
            .collect();
        assert_eq!(lock(&handovers.waiting).len(), MAX_HANDOVERS);
        assert!(handovers.redeem(waiting.last().unwrap(), now));
    }

    #[test]
    fn a_new_admin_secret_ends_every_session() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let opened = sessions.open(TokenHash::of("cpa-old"), now);
        assert!(
            sessions
                .find(&opened.id, Some(TokenHash::of("cpa-new")), now)
                .is_none()
        );
        assert!(sessions.is_empty());
        let opened = sessions.open(TokenHash::of("cpa-old"), now);
        assert!(sessions.find(&opened.id, None, now).is_none());
    }

    #[test]
    fn unknown_ids_find_nothing_and_sessions_are_bounded() {
        let sessions = Sessions::default();
        let secret = TokenHash::of("cpa-x");
        let now = Instant::now();
        assert!(sessions.find("made-up", Some(secret), now).is_none());
        let first = sessions.open(secret, now);
        for i in 1..=MAX_SESSIONS as u64 {
            sessions.open(secret, now + Duration::from_secs(i));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        // The one closest to its end made room.
        assert!(sessions.find(&first.id, Some(secret), now).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_the_csrf_token_must_match() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x=y;carpool_session=abc ; z=3"),
        );
        assert_eq!(cookie(&headers), Some("abc"));
        assert_eq!(cookie(&HeaderMap::new()), None);

        let session = Current {
            key: [0; 32],
            csrf: "token".into(),
            expires: Instant::now(),
        };
        assert!(csrf_matches(&session, Some("token")));
        assert!(!csrf_matches(&session, Some("tokeN")));
        assert!(!csrf_matches(&session, Some("")));
        assert!(!csrf_matches(&session, None));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = set_cookie("id", false);
        assert_eq!(
            plain.to_str().unwrap(),
            "carpool_session=id; HttpOnly; SameSite=Strict; Path=/"
        );
        assert!(
            set_cookie("id", true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        assert!(clear_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
