//! Claude accounts: where their tokens come from, keeping them fresh, and whether each
//! one can serve a request right now.
//!
//! A [`Credential`] is one Claude Code login read from a credentials file. The file is the
//! source of truth and is shared with the official CLI on the same machine, so:
//!
//! * the file is watched ([`watch`]); the credential becomes usable when it appears and
//!   unusable at once when it is deleted or turns invalid;
//! * refresh is single-flight per credential: refresh tokens rotate, and two concurrent
//!   refreshes would revoke each other. Before refreshing, the file is re-read: if the
//!   official CLI already rotated the tokens, Carpool adopts them instead;
//! * refresh happens one minute before expiry, the margin the official CLI uses, so a
//!   running `claude` on this machine usually refreshes first and Carpool just follows;
//! * a failed refresh makes the credential unavailable with a reason, leaves the file
//!   alone and is retried with exponential backoff; `invalid_grant` is final until the file
//!   changes (a new login).

mod file;
pub mod oauth;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::secret::Secret;
pub use file::{FileRead, OAuthTokens};
pub use watch::spawn_watcher;

/// Refresh this long before `expiresAt`.
const REFRESH_MARGIN_MS: i64 = 60_000;
/// First retry delay after a failed refresh; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a credential cannot serve a request, in words for the person who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: String,
    pub retry_after: Option<Duration>,
}

/// A one-line state for banners, logs and (later) the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    Missing,
    Invalid(String),
    Broken(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Ready => f.write_str("ready"),
            Status::Missing => f.write_str("waiting for the credentials file"),
            Status::Invalid(r) => write!(f, "invalid credentials file: {r}"),
            Status::Broken(r) => write!(f, "unavailable: {r}"),
        }
    }
}

pub struct Credential {
    pub tag: String,
    pub path: PathBuf,
    /// Upstream API base, without a trailing slash.
    pub base_url: String,
    token_url: String,
    http: reqwest::Client,
    state: RwLock<State>,
    /// Held for the whole of a refresh: the single flight.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Counts the logins read from the file: see [`Credential::generation`].
    generation: AtomicU64,
}

struct State {
    /// The tokens in use (from the file, or from our own refresh).
    current: FileRead,
    /// The file content as last seen on disk (read by us or written by us). A reload that
    /// finds the same content changes nothing, so our in-memory tokens are never replaced
    /// by an older copy of themselves.
    on_disk: FileRead,
    failure: Option<RefreshFailure>,
}

struct RefreshFailure {
    reason: String,
    terminal: bool,
    retry_at: Instant,
    attempts: u32,
    /// The refresh token that failed: a file with a different one is a new login.
    refresh_token: Secret,
}

impl Credential {
    /// A Claude Code login read from `path`, refreshed through `token_url` with `http`
    /// (the account's client, so a proxy applies to refreshes too).
    pub fn new(
        tag: &str,
        path: &Path,
        base_url: &str,
        token_url: &str,
        http: reqwest::Client,
    ) -> Arc<Credential> {
        let read = file::read(path);
        Arc::new(Credential {
            tag: tag.to_owned(),
            path: path.to_owned(),
            base_url: base_url.to_owned(),
            token_url: token_url.to_owned(),
            http,
            state: RwLock::new(State {
                current: read.clone(),
                on_disk: read,
                failure: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        })
    }

    pub fn status(&self) -> Status {
        let state = self.state.read().expect("credential state lock");
        match (&state.current, &state.failure) {
            (FileRead::Missing, _) => Status::Missing,
            (FileRead::Invalid(r), _) => Status::Invalid(r.clone()),
            (FileRead::Loaded(t), Some(f)) if f.terminal || now_ms() >= t.expires_at_ms => {
                Status::Broken(f.reason.clone())
            }
            (FileRead::Loaded(_), _) => Status::Ready,
        }
    }

    /// Why the login cannot be used until someone acts (file missing or invalid, login
    /// revoked), in words for its owner; `None` when it can be used or may recover by
    /// itself (a refresh that failed for a passing reason is retried on the next request).
    pub fn needs_attention(&self) -> Option<String> {
        let state = self.state.read().expect("credential state lock");
        match (&state.current, &state.failure) {
            (FileRead::Missing, _) => Some(self.missing().reason),
            (FileRead::Invalid(why), _) => Some(
                self.unavailable(format!(
                    "its credentials file {} is invalid: {why}",
                    self.path.display()
                ))
                .reason,
            ),
            (FileRead::Loaded(_), Some(f)) if f.terminal => {
                Some(self.unavailable(f.reason.clone()).reason)
            }
            _ => None,
        }
    }

    /// The login's plan: `subscriptionType` and `rateLimitTier` from the file.
    pub fn plan(&self) -> (Option<String>, Option<String>) {
        match &self.state.read().expect("credential state lock").current {
            FileRead::Loaded(t) => (t.subscription_type.clone(), t.rate_limit_tier.clone()),
            _ => (None, None),
        }
    }

    /// Goes up each time a reload finds other tokens in the file than the ones in use (a
    /// new login, or the official CLI's refresh); Carpool's own refreshes do not move it.
    /// The pool keeps an account the provider disabled out until this changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Re-reads the credentials file. Called by the watcher and before every refresh.
    pub fn reload(&self) {
        let read = file::read(&self.path);
        let mut state = self.state.write().expect("credential state lock");
        if read == state.on_disk {
            return;
        }
        let before = status_word(&state.current);
        if let (FileRead::Loaded(t), Some(f)) = (&read, &state.failure)
            && t.refresh != f.refresh_token
        {
            // A different refresh token on disk: someone logged in again.
            state.failure = None;
        }
        if tokens_of(&read) != tokens_of(&state.current) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        state.on_disk = read.clone();
        state.current = read;
        let after = status_word(&state.current);
        drop(state);
        match self.status() {
            Status::Ready if before != after => {
                tracing::info!(credential = %self.tag, path = %self.path.display(), "credential is ready")
            }
            Status::Ready => {
                tracing::info!(credential = %self.tag, "credentials file changed; using its tokens")
            }
            other => {
                tracing::warn!(credential = %self.tag, path = %self.path.display(), "credential is unusable: {other}")
            }
        }
    }

    /// An access token good for a request now.
    ///
    /// `rejected` is the token the upstream just answered 401 to: it is not returned
    /// again, and a refresh is forced if the file holds nothing newer.
    pub async fn access_token(&self, rejected: Option<&Secret>) -> Result<Secret, Unavailable> {
        if let Some(token) = self.usable_token(rejected) {
            return Ok(token);
        }
        let _single_flight = self.refresh_lock.lock().await;
        // Whoever held the lock before us may have refreshed, and the official CLI may
        // have rotated the tokens in the file.
        self.reload();
        if let Some(token) = self.usable_token(rejected) {
            return Ok(token);
        }

        let tokens = {
            let state = self.state.read().expect("credential state lock");
            let tokens = match &state.current {
                FileRead::Missing => return Err(self.missing()),
                FileRead::Invalid(reason) => {
                    return Err(self.unavailable(format!(
                        "its credentials file {} is invalid: {reason}",
                        self.path.display()
                    )));
                }
                FileRead::Loaded(t) => t.clone(),
            };
            if let Some(failure) = &state.failure {
                let wait = failure.retry_at.saturating_duration_since(Instant::now());
                if failure.terminal {
                    return Err(self.unavailable(failure.reason.clone()));
                }
                if !wait.is_zero() {
                    return still_valid(&tokens, rejected).ok_or_else(|| Unavailable {
                        retry_after: Some(wait.max(Duration::from_secs(1))),
                        ..self.unavailable(format!(
                            "{} (next try in {}s)",
                            failure.reason,
                            wait.as_secs().max(1)
                        ))
                    });
                }
            }
            tokens
        };

        if tokens.refresh.is_empty() {
            return Err(self.unavailable(
                "its access token expired and the file has no refresh token; log in again with `claude`".into(),
            ));
        }
        if !file::is_writable(&self.path) {
            return Err(self.unavailable(format!(
                "its token must be refreshed but {} is not writable, so the rotated token could not be saved",
                self.path.display()
            )));
        }

        match oauth::refresh(&self.http, &self.token_url, &tokens.refresh).await {
            Ok(new) => Ok(self.store_refreshed(&tokens, new)),
            Err(error) => {
                let retry_after = self.record_failure(&tokens, &error);
                still_valid(&tokens, rejected).ok_or_else(|| Unavailable {
                    retry_after,
                    ..self.unavailable(format!("refreshing its OAuth token failed: {error}"))
                })
            }
        }
    }

    fn usable_token(&self, rejected: Option<&Secret>) -> Option<Secret> {
        let state = self.state.read().expect("credential state lock");
        match &state.current {
            FileRead::Loaded(t)
                if Some(&t.access) != rejected
                    && (t.expires_at_ms == 0 || now_ms() < t.expires_at_ms - REFRESH_MARGIN_MS) =>
            {
                Some(t.access.clone())
            }
            _ => None,
        }
    }

    fn store_refreshed(&self, old: &OAuthTokens, new: oauth::Refreshed) -> Secret {
        let tokens = OAuthTokens {
            access: new.access,
            refresh: new.refresh.unwrap_or_else(|| old.refresh.clone()),
            expires_at_ms: now_ms() + new.expires_in.as_millis() as i64,
            subscription_type: old.subscription_type.clone(),
            rate_limit_tier: old.rate_limit_tier.clone(),
        };
        let update = file::Update {
            access: &tokens.access,
            refresh: &tokens.refresh,
            expires_at_ms: tokens.expires_at_ms,
            scopes: new.scopes.as_deref(),
        };
        let saved = file::write_back(&self.path, &update);
        let mut state = self.state.write().expect("credential state lock");
        state.current = FileRead::Loaded(tokens.clone());
        state.failure = None;
        match saved {
            Ok(()) => {
                // Re-read what we wrote so the watcher's event for it is a no-op.
                state.on_disk = file::read(&self.path);
                tracing::info!(credential = %self.tag, valid_for_s = new.expires_in.as_secs(), "refreshed the OAuth token and saved it");
            }
            Err(e) => {
                tracing::error!(credential = %self.tag, path = %self.path.display(), "refreshed the OAuth token but could not save it ({e}); it is kept in memory only");
            }
        }
        tokens.access
    }

    /// Marks the credential as failing; returns how long until the next attempt.
    fn record_failure(
        &self,
        tokens: &OAuthTokens,
        error: &oauth::RefreshError,
    ) -> Option<Duration> {
        let mut state = self.state.write().expect("credential state lock");
        let attempts = state.failure.as_ref().map_or(0, |f| f.attempts) + 1;
        let terminal = error.is_terminal();
        let backoff = BACKOFF_BASE
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(BACKOFF_MAX);
        let wait = error
            .retry_after()
            .map(|r| r.clamp(BACKOFF_BASE, BACKOFF_MAX))
            .unwrap_or(backoff);
        state.failure = Some(RefreshFailure {
            reason: format!("refreshing its OAuth token failed: {error}"),
            terminal,
            retry_at: Instant::now() + wait,
            attempts,
            refresh_token: tokens.refresh.clone(),
        });
        if terminal {
            tracing::error!(credential = %self.tag, "OAuth refresh failed for good: {error}");
            None
        } else {
            tracing::warn!(credential = %self.tag, attempts, retry_in_s = wait.as_secs(), "OAuth refresh failed: {error}");
            Some(wait)
        }
    }

    fn missing(&self) -> Unavailable {
        self.unavailable(format!(
            "its credentials file {} does not exist yet; run `claude` on the Carpool machine and log in",
            self.path.display()
        ))
    }

    fn unavailable(&self, why: String) -> Unavailable {
        Unavailable {
            reason: format!("Claude account `{}`: {why}", self.tag),
            retry_after: None,
        }
    }
}

/// The current access token, if it has not expired and was not just rejected: a refresh
/// that failed a minute before expiry must not stop requests that can still be served.
fn still_valid(tokens: &OAuthTokens, rejected: Option<&Secret>) -> Option<Secret> {
    let fresh = tokens.expires_at_ms == 0 || now_ms() < tokens.expires_at_ms;
    (fresh && Some(&tokens.access) != rejected).then(|| tokens.access.clone())
}

/// The access and refresh token of a loaded file.
fn tokens_of(read: &FileRead) -> Option<(&Secret, &Secret)> {
    match read {
        FileRead::Loaded(t) => Some((&t.access, &t.refresh)),
        _ => None,
    }
}

fn status_word(read: &FileRead) -> &'static str {
    match read {
        FileRead::Missing => "missing",
        FileRead::Invalid(_) => "invalid",
        FileRead::Loaded(_) => "loaded",
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
