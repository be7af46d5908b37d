//! Claude and Codex accounts: where their tokens come from, keeping them fresh, and
//! whether each one can serve a request right now.
//!
//! A [`Credential`] is one Claude Code login read from a credentials file (on a Mac, from
//! Claude Code's Keychain item first, with the file as fallback: [`keychain`]; or a login
//! Carpool stored itself: [`store`]), or one Codex login read from its `auth.json`
//! ([`codex`]). The file is the source of truth and is shared with the official CLI on
//! the same machine, so:
//!
//! * the file is watched ([`watch`]); the credential becomes usable when it appears and
//!   unusable at once when it is deleted or turns invalid. A read that fails for a
//!   passing reason (out of file descriptors, an I/O error, …) changes nothing: the
//!   tokens in use stay, and the watcher reads again after 50 ms, doubling to 5 s, until
//!   it succeeds; a request that needs a refresh meanwhile gets a retryable error;
//! * refresh is single-flight per credential: refresh tokens rotate, and two concurrent
//!   refreshes would revoke each other. Before refreshing, the file is re-read: if the
//!   official CLI already rotated the tokens, Carpool adopts them instead;
//! * Carpool refreshes only when it can save the result where the file really is: a
//!   temporary file must be creatable in the directory of the file (of its target, when
//!   the path is a symlink). If not, the login needs attention, with the reason; the
//!   current access token is used while it lasts, and the check is repeated every few
//!   seconds and whenever the file is read;
//! * the new tokens are written into the symlink's target, so a symlink stays one, by a
//!   temporary file and a rename, keeping every other field, the mode and the owner;
//! * compare before replace: after the token endpoint answers, the file is read again.
//!   If its login changed while refreshing (a new login, or tokens the CLI rotated),
//!   Carpool never overwrites it: it adopts what is on disk and drops its own new
//!   tokens. Those may have just rotated the same family, which can leave the file's
//!   tokens revoked; the file still wins (as in sing-box, docs/protocol.md §2.4 step 4): two
//!   writers must not disagree about the login, and a revoked one surfaces as
//!   `invalid_grant`, "log in again", rather than as a login silently overwritten. If the
//!   adopted tokens have expired too, the request gets a retryable error and the next
//!   one refreshes them. If only other fields changed, the new tokens are merged into
//!   the new content. The file is compared once more just before the rename; a writer
//!   that renames its file in the microseconds between that check and ours can still be
//!   overwritten — Claude Code has no cross-process lock to take;
//! * tokens that cannot be saved yet (the file could not be read after the refresh, or
//!   the write failed) are used from memory and saved, under the same comparison, when
//!   the watcher next reads the file;
//! * refresh happens when the login's format says it is due, as the official CLI does it,
//!   so a running CLI on this machine usually refreshes first and Carpool just follows:
//!   for Claude one minute before expiry; for Codex 8 days after `last_refresh` (or one
//!   minute before the access token's expiry, if that comes first). An access token the
//!   upstream rejects (401) is refreshed at once, after the same re-read.
//!   It happens even when no request comes: a timer per login ([`keep_fresh`]) refreshes
//!   an idle account's token through the same single flight, so an idle account is
//!   never found expired and a request and the timer never refresh twice;
//! * a failed refresh makes the credential unavailable with a reason, leaves the file
//!   alone and is retried with exponential backoff (by the next request or the timer,
//!   whichever comes first after it); a refused refresh token (`invalid_grant`; Codex's
//!   `refresh_token_expired` / `_reused` / `_invalidated`) is final until the file
//!   changes (a new login), and the timer does not try again before that either.
//!
//! Reasons and errors name files and directories, never token values.
//!
//! All of the above is the credential's own and holds for every kind of login; what
//! differs between login documents (how they parse, when a refresh is due, the refresh
//! request and which of its errors are final, how new tokens merge back, the words for
//! the owner) is its [`LoginFormat`] ([`format`]).

pub mod codex;
mod file;
mod format;
pub mod keychain;
pub mod login;
pub mod oauth;
mod store;
mod timer;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::secret::Secret;
use crate::tasks::{read, write};
pub use file::{FileRead, OAuthTokens};
use file::{Reader, Saved, Snapshot};
pub use format::LoginFormat;
#[cfg(test)]
use format::REFRESH_MARGIN_MS;
use format::Renewal;
pub use store::LoginStore;
pub use timer::keep_fresh;
pub use watch::spawn_watcher;

/// First retry delay after a failed refresh; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// First re-read after a passing read error (or a failed save of refreshed tokens);
/// doubles per failure up to [`READ_RETRY_MAX`].
const READ_RETRY_BASE: Duration = Duration::from_millis(50);
const READ_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a directory that refused the write probe is tried again.
const SAVEABLE_RECHECK: Duration = Duration::from_secs(5);
/// Reads of the file right after a refresh before leaving the save to the watcher.
const SETTLE_READS: u32 = 5;

/// Why a credential cannot serve a request, in words for the person who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: String,
    pub retry_after: Option<Duration>,
}

/// A one-line state for banners, logs and the status snapshot, which tells apart what
/// fixes itself from what needs the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    Missing,
    /// The file is there but holds no usable login; the owner must fix or replace it.
    Invalid(String),
    /// The refresh token was refused (`invalid_grant`): only a new login brings the
    /// account back.
    LoginExpired(String),
    /// The token expired and a refreshed one could not be saved where the file is; the
    /// owner must make that place writable.
    Unsaveable(String),
    /// A passing failure (the file could not be read, a refresh failed and the token
    /// has expired): Carpool tries again by itself.
    Broken(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Ready => f.write_str("ready"),
            Status::Missing => f.write_str("waiting for the credentials file"),
            Status::Invalid(r) => write!(f, "invalid credentials file: {r}"),
            Status::LoginExpired(r) | Status::Unsaveable(r) | Status::Broken(r) => {
                write!(f, "unavailable: {r}")
            }
        }
    }
}

pub struct Credential {
    pub tag: String,
    /// Where the login is kept: a credentials file, or Carpool's secret store.
    store: LoginStore,
    /// What kind of login it is: how it parses, refreshes and is written back.
    format: LoginFormat,
    /// Upstream API base, without a trailing slash.
    pub base_url: String,
    token_url: String,
    http: reqwest::Client,
    /// Reads a credentials file's bytes (replaced in tests to inject read errors).
    reader: Reader,
    state: RwLock<State>,
    /// Held for the whole of a refresh, and while refreshed tokens are saved: the single
    /// flight.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Counts the logins read from the file: see [`Credential::generation`].
    generation: AtomicU64,
}

struct State {
    /// The tokens in use (from the file, or from our own refresh).
    current: FileRead,
    /// The file as last seen on disk (read by us or written by us), with the digest of
    /// its bytes. A reload that finds the same login changes nothing, so our in-memory
    /// tokens are never replaced by an older copy of themselves.
    on_disk: Snapshot,
    failure: Option<RefreshFailure>,
    /// The last read failed for a passing reason: `current` is kept, the read retried.
    read_error: Option<Retry>,
    /// Why rotated tokens could not be saved where the file is: no refresh meanwhile.
    unsaveable: Option<String>,
    /// Refreshed tokens not in the file yet.
    pending: Option<Pending>,
}

struct RefreshFailure {
    reason: String,
    terminal: bool,
    retry_at: Instant,
    attempts: u32,
    /// The refresh token that failed: a file with a different one is a new login.
    refresh_token: Secret,
}

struct Retry {
    reason: String,
    attempts: u32,
    at: Instant,
}

impl Retry {
    fn after(previous: Option<&Retry>, reason: String) -> Retry {
        let attempts = previous.map_or(0, |r| r.attempts) + 1;
        let wait = READ_RETRY_BASE
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(READ_RETRY_MAX);
        Retry {
            reason,
            attempts,
            at: Instant::now() + wait,
        }
    }
}

/// Tokens from our own refresh that are not in the file yet.
struct Pending {
    tokens: OAuthTokens,
    scopes: Option<Vec<String>>,
    /// The login the file held when the refresh began: if it holds another one now,
    /// someone else wrote it and it wins.
    baseline: FileRead,
    /// When to try saving again after a failed write.
    retry: Option<Retry>,
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
        Credential::with_reader(
            tag,
            LoginStore::File(path.to_owned()),
            base_url,
            token_url,
            http,
            file::fs_reader(),
        )
    }

    /// Codex's login read from its `auth.json` at `path` (see [`crate::config::codex_login_path`] for
    /// the default), refreshed through `token_url` (OpenAI's is [`codex::TOKEN_URL`])
    /// with `http`. The same machinery as a Claude file's, in [`LoginFormat::Codex`].
    pub fn codex(
        tag: &str,
        path: &Path,
        base_url: &str,
        token_url: &str,
        http: reqwest::Client,
    ) -> Arc<Credential> {
        Credential::with_format(
            LoginFormat::Codex,
            tag,
            LoginStore::File(path.to_owned()),
            base_url,
            token_url,
            http,
            file::fs_reader(),
        )
    }

    /// A login Carpool obtained itself, kept in its secret store under `reference`
    /// (see [`store`]) as a document in `format` (Claude Code's credentials document for
    /// `carpool login claude`, an `auth.json` for `carpool login codex`); refreshed and
    /// saved back there by the same code as a file's.
    pub fn stored(
        format: LoginFormat,
        tag: &str,
        secrets: Arc<crate::secrets::SecretStore>,
        reference: crate::secrets::SecretRef,
        base_url: &str,
        token_url: &str,
        http: reqwest::Client,
    ) -> Arc<Credential> {
        Credential::with_format(
            format,
            tag,
            LoginStore::Secret { secrets, reference },
            base_url,
            token_url,
            http,
            file::fs_reader(),
        )
    }

    /// Claude Code's login on a Mac: its Keychain item `item`, read through `keyring`,
    /// else the credentials file `path` (see [`keychain`]); refreshed tokens go back where
    /// the login was found.
    pub fn in_keychain(
        tag: &str,
        keyring: Arc<dyn crate::secrets::Keyring>,
        item: keychain::KeychainItem,
        path: &Path,
        base_url: &str,
        token_url: &str,
        http: reqwest::Client,
    ) -> Arc<Credential> {
        Credential::with_reader(
            tag,
            LoginStore::Keychain(keychain::KeychainLogin::new(keyring, item, path.to_owned())),
            base_url,
            token_url,
            http,
            file::fs_reader(),
        )
    }

    /// A Claude login in `store`, read through `reader`.
    fn with_reader(
        tag: &str,
        store: LoginStore,
        base_url: &str,
        token_url: &str,
        http: reqwest::Client,
        reader: Reader,
    ) -> Arc<Credential> {
        Credential::with_format(
            LoginFormat::Claude,
            tag,
            store,
            base_url,
            token_url,
            http,
            reader,
        )
    }

    fn with_format(
        format: LoginFormat,
        tag: &str,
        store: LoginStore,
        base_url: &str,
        token_url: &str,
        http: reqwest::Client,
        reader: Reader,
    ) -> Arc<Credential> {
        let (on_disk, read_error) = match store.read(format, &reader) {
            Ok(snapshot) => (snapshot, None),
            Err(reason) => (
                Snapshot {
                    read: FileRead::Missing,
                    digest: None,
                },
                Some(Retry::after(None, reason)),
            ),
        };
        Arc::new(Credential {
            tag: tag.to_owned(),
            store,
            format,
            base_url: base_url.to_owned(),
            token_url: token_url.to_owned(),
            http,
            reader,
            state: RwLock::new(State {
                current: on_disk.read.clone(),
                on_disk,
                failure: None,
                read_error,
                unsaveable: None,
                pending: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        })
    }

    pub fn status(&self) -> Status {
        status_of(&read(&self.state))
    }

    /// Where the login is kept.
    pub fn store(&self) -> &LoginStore {
        &self.store
    }

    /// What kind of login it is.
    pub fn format(&self) -> LoginFormat {
        self.format
    }

    /// The credentials file, for a file login.
    pub fn path(&self) -> Option<&Path> {
        self.store.path()
    }

    /// The account's email, when the stored login has its profile.
    pub fn email(&self) -> Option<String> {
        match &read(&self.state).current {
            FileRead::Loaded(t) => t.email.clone(),
            _ => None,
        }
    }

    /// Why the login cannot be used until someone acts (file missing, invalid or
    /// unreadable, login revoked, token expired and no way to save a refreshed one), in
    /// words for its owner; `None` when it can be used or may recover by itself (a
    /// refresh that failed for a passing reason is retried on the next request).
    pub fn needs_attention(&self) -> Option<String> {
        let state = read(&self.state);
        match &state.current {
            FileRead::Missing => Some(match &state.read_error {
                Some(r) => self.unavailable(self.unreadable(r)).reason,
                None => self.missing().reason,
            }),
            FileRead::Invalid(why) => Some(
                self.unavailable(format!("{} is invalid: {why}", self.store.describe()))
                    .reason,
            ),
            FileRead::Loaded(t) => {
                if let Some(f) = state.failure.as_ref().filter(|f| f.terminal) {
                    return Some(self.unavailable(f.reason.clone()).reason);
                }
                match &state.unsaveable {
                    Some(why) if still_valid(t, None).is_none() => {
                        Some(self.unavailable(why.clone()).reason)
                    }
                    _ => None,
                }
            }
        }
    }

    /// The account id a Codex login sends upstream as `ChatGPT-Account-Id`
    /// (docs/protocol.md §7.5): `tokens.account_id`, else the id_token's claim.
    pub fn account_id(&self) -> Option<String> {
        match &read(&self.state).current {
            FileRead::Loaded(t) => t.account_id.clone(),
            _ => None,
        }
    }

    /// Whether the login is an API key (Codex's `OPENAI_API_KEY` mode): served by
    /// [`Credential::access_token`] like a token, never refreshed.
    pub fn is_api_key(&self) -> bool {
        matches!(&read(&self.state).current, FileRead::Loaded(t) if t.api_key)
    }

    /// The login's plan: `subscriptionType` and `rateLimitTier` from Claude's file;
    /// Codex's `chatgpt_plan_type` claim and `None`.
    pub fn plan(&self) -> (Option<String>, Option<String>) {
        match &read(&self.state).current {
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
    /// A passing read error keeps everything as it is (the watcher retries); refreshed
    /// tokens not saved yet are saved now, unless the file changed meanwhile.
    pub fn reload(&self) {
        let _ = self.reload_now(false);
    }

    /// How long until the watcher should read the file again without an event: a
    /// passing read error, refreshed tokens not saved yet, a directory that refused
    /// the write probe, or a Keychain login (not watched) while the account waits for a
    /// new one. `None`: only when the file changes.
    pub fn next_retry(&self) -> Option<Duration> {
        let state = read(&self.state);
        let now = Instant::now();
        let read = state.read_error.as_ref().map(|r| r.at);
        let save = state
            .pending
            .as_ref()
            .and_then(|p| p.retry.as_ref())
            .map(|r| r.at);
        let probe = state.unsaveable.as_ref().map(|_| now + SAVEABLE_RECHECK);
        let waiting = !matches!(state.current, FileRead::Loaded(_))
            || state.failure.as_ref().is_some_and(|f| f.terminal);
        let poll = self
            .store
            .poll_while_waiting()
            .filter(|_| waiting)
            .map(|every| now + every);
        [read, save, probe, poll]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// How long until the background timer ([`keep_fresh`]) should refresh the token:
    /// when it is due ([`LoginFormat::refresh_at_ms`]), or after the back-off of a failed
    /// refresh, whichever is later; zero when that is now. `None` while no refresh can
    /// succeed without something else happening first: no loaded login, no known due
    /// time (no expiry known, an API key), no refresh token, a failure only a new login fixes, a directory that refuses the
    /// save (the watcher checks it again), or a read error (the watcher reads again).
    /// Agrees with [`Credential::access_token`]: whenever this is zero, a request would
    /// refresh too.
    fn refresh_due(&self) -> Option<Duration> {
        let state = read(&self.state);
        let FileRead::Loaded(tokens) = &state.current else {
            return None;
        };
        let refresh_at_ms = self.format.refresh_at_ms(tokens)?;
        if tokens.refresh.is_empty() || state.read_error.is_some() || state.unsaveable.is_some() {
            return None;
        }
        let until_margin = refresh_at_ms.saturating_sub(now_ms());
        let mut due = Duration::from_millis(u64::try_from(until_margin).unwrap_or(0));
        if let Some(failure) = &state.failure {
            if failure.terminal {
                return None;
            }
            due = due.max(failure.retry_at.saturating_duration_since(Instant::now()));
        }
        Some(due)
    }

    /// `Err`: the reason of a passing read error.
    fn reload_now(&self, holding_refresh_lock: bool) -> Result<(), String> {
        let snapshot = match self.store.read(self.format, &self.reader) {
            Ok(s) => s,
            Err(reason) => {
                let mut state = write(&self.state);
                self.note_read_error(&mut state, reason.clone());
                return Err(reason);
            }
        };
        // Saving refreshed tokens is part of the refresh's single flight: the watcher
        // saves them only when no refresh is running.
        let guard = if holding_refresh_lock {
            None
        } else {
            self.refresh_lock.try_lock().ok()
        };
        let may_save = holding_refresh_lock || guard.is_some();
        let mut state = write(&self.state);
        if state.read_error.take().is_some() {
            tracing::info!(credential = %self.tag, place = %self.store, "the login can be read again");
        }
        if state.unsaveable.is_some() {
            match self.store.check_saveable() {
                Ok(()) => {
                    state.unsaveable = None;
                    tracing::info!(credential = %self.tag, "refreshed tokens can be saved again");
                }
                Err((dir, e)) => state.unsaveable = Some(unsaveable_reason(&dir, &e)),
            }
        }
        if may_save && state.pending.is_some() {
            self.save_pending(&mut state, snapshot);
        } else {
            self.adopt(&mut state, snapshot, false);
        }
        Ok(())
    }

    fn note_read_error(&self, state: &mut State, reason: String) {
        let retry = Retry::after(state.read_error.as_ref(), reason);
        if retry.attempts == 1 {
            tracing::warn!(credential = %self.tag, place = %self.store, "{}; keeping the tokens in use and reading again shortly", retry.reason);
        } else {
            tracing::debug!(credential = %self.tag, attempts = retry.attempts, "{}", retry.reason);
        }
        state.read_error = Some(retry);
    }

    /// Takes what the file holds now as the login. `refreshing`: our own refreshed
    /// tokens are being dropped for it.
    fn adopt(&self, state: &mut State, snapshot: Snapshot, refreshing: bool) {
        if !refreshing && snapshot.read == state.on_disk.read {
            // The same login (other fields may have changed).
            state.on_disk = snapshot;
            return;
        }
        let before = status_word(&state.current);
        if let (FileRead::Loaded(t), Some(f)) = (&snapshot.read, &state.failure)
            && t.refresh != f.refresh_token
        {
            // A different refresh token on disk: someone logged in again.
            state.failure = None;
        }
        if tokens_of(&snapshot.read) != tokens_of(&state.current) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        state.current = snapshot.read.clone();
        state.on_disk = snapshot;
        state.pending = None;
        let after = status_word(&state.current);
        match status_of(state) {
            Status::Ready if refreshing => {
                tracing::info!(credential = %self.tag, "the credentials file changed while refreshing; using its tokens")
            }
            Status::Ready if before != after => {
                tracing::info!(credential = %self.tag, place = %self.store, "credential is ready")
            }
            Status::Ready => {
                tracing::info!(credential = %self.tag, "credentials file changed; using its tokens")
            }
            other => {
                tracing::warn!(credential = %self.tag, place = %self.store, "credential is unusable: {other}")
            }
        }
    }

    /// Writes refreshed tokens into the file if it still holds the login they were
    /// refreshed from; otherwise adopts what it holds. `snapshot`: the file just read.
    fn save_pending(&self, state: &mut State, mut snapshot: Snapshot) {
        // A writer between our read and our rename makes us read again; a few rounds,
        // then the watcher's next read.
        for _ in 0..3 {
            let Some(pending) = &state.pending else {
                return;
            };
            if snapshot.read != pending.baseline {
                self.adopt(state, snapshot, true);
                return;
            }
            let saved = {
                let update = self
                    .format
                    .change(&pending.tokens, pending.scopes.as_deref());
                self.store.write_back(&snapshot.digest, &*update)
            };
            match saved {
                Ok(Saved::Written(wrote)) => {
                    let valid_for_s = (pending.tokens.expires_at_ms - now_ms()) / 1000;
                    tracing::info!(credential = %self.tag, valid_for_s, "refreshed the OAuth token and saved it");
                    state.on_disk = wrote;
                    state.pending = None;
                    return;
                }
                Ok(Saved::Changed) => match self.store.read(self.format, &self.reader) {
                    Ok(again) => snapshot = again,
                    Err(reason) => {
                        self.note_read_error(state, reason);
                        return;
                    }
                },
                Err(e) => {
                    tracing::error!(credential = %self.tag, place = %self.store, "refreshed the OAuth token but could not save it ({e}); using it from memory and trying again shortly");
                    break;
                }
            }
        }
        if let Some(pending) = &mut state.pending {
            pending.retry = Some(Retry::after(
                pending.retry.as_ref(),
                "saving the refreshed tokens".into(),
            ));
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
        if let Err(reason) = self.reload_now(true) {
            // Not knowing what the file holds, a refresh could rotate tokens the CLI
            // already replaced, and its result could not be compared before saving.
            return self.current_still_valid(rejected).ok_or_else(|| {
                let wait = self.next_retry().unwrap_or(READ_RETRY_BASE);
                Unavailable {
                    retry_after: Some(wait.max(Duration::from_secs(1))),
                    ..self.unavailable(format!("{} {reason}; trying again", self.store.describe()))
                }
            });
        }
        if let Some(token) = self.usable_token(rejected) {
            return Ok(token);
        }

        let (tokens, baseline) = {
            let state = read(&self.state);
            let tokens = match &state.current {
                FileRead::Missing => return Err(self.missing()),
                FileRead::Invalid(reason) => {
                    return Err(
                        self.unavailable(format!("{} is invalid: {reason}", self.store.describe()))
                    );
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
            let baseline = match &state.pending {
                Some(p) => p.baseline.clone(),
                None => state.on_disk.read.clone(),
            };
            (tokens, baseline)
        };

        if tokens.api_key {
            // Only a rejected key gets here: a key is never due for a refresh.
            return Err(self.unavailable(format!(
                "the upstream rejected the API key (`OPENAI_API_KEY`) in {}; put a working key there, or log in with `codex login`",
                self.store.describe()
            )));
        }
        if tokens.refresh.is_empty() {
            return Err(self.unavailable(format!(
                "its access token expired and the login has no refresh token; {}",
                self.format.login_hint(&self.store)
            )));
        }
        if let Err((dir, e)) = self.store.check_saveable() {
            let why = unsaveable_reason(&dir, &e);
            let mut state = write(&self.state);
            if state.unsaveable.is_none() {
                tracing::error!(credential = %self.tag, "not refreshing the OAuth token: {why}");
            }
            state.unsaveable = Some(why.clone());
            drop(state);
            return still_valid(&tokens, rejected).ok_or_else(|| self.unavailable(why));
        }
        write(&self.state).unsaveable = None;

        match self
            .format
            .refresh(&self.http, &self.token_url, &tokens)
            .await
        {
            Ok(new) => self.store_refreshed(&tokens, baseline, new, rejected).await,
            Err(error) => {
                let retry_after = self.record_failure(&tokens, &error);
                let reason = match &read(&self.state).failure {
                    Some(f) => f.reason.clone(),
                    None => format!("refreshing its OAuth token failed: {error}"),
                };
                still_valid(&tokens, rejected).ok_or_else(|| Unavailable {
                    retry_after,
                    ..self.unavailable(reason)
                })
            }
        }
    }

    fn usable_token(&self, rejected: Option<&Secret>) -> Option<Secret> {
        let state = read(&self.state);
        match &state.current {
            FileRead::Loaded(t)
                if Some(&t.access) != rejected
                    && self.format.refresh_at_ms(t).is_none_or(|at| now_ms() < at) =>
            {
                Some(t.access.clone())
            }
            _ => None,
        }
    }

    /// The token in use if it has not expired (even inside the refresh margin).
    fn current_still_valid(&self, rejected: Option<&Secret>) -> Option<Secret> {
        match &read(&self.state).current {
            FileRead::Loaded(t) => still_valid(t, rejected),
            _ => None,
        }
    }

    /// Uses the refreshed tokens and saves them, unless the file changed while
    /// refreshing: then its tokens are used instead.
    async fn store_refreshed(
        &self,
        old: &OAuthTokens,
        baseline: FileRead,
        new: impl Into<Renewal>,
        rejected: Option<&Secret>,
    ) -> Result<Secret, Unavailable> {
        let new = new.into();
        let scopes = new.scopes.clone();
        let tokens = self.format.renewed(old, new, now_ms());
        {
            let mut state = write(&self.state);
            state.current = FileRead::Loaded(tokens.clone());
            state.failure = None;
            state.pending = Some(Pending {
                tokens,
                scopes,
                baseline,
                retry: None,
            });
        }
        // Read the file again: save into it, or adopt what someone else wrote.
        let mut wait = READ_RETRY_BASE;
        for attempt in 1..=SETTLE_READS {
            match self.reload_now(true) {
                Ok(()) => break,
                Err(_) if attempt < SETTLE_READS => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(reason) => {
                    tracing::error!(credential = %self.tag, "refreshed the OAuth token, but {} {reason}; using the new token from memory and saving it once it can be read", self.store.describe())
                }
            }
        }
        if let Some(token) = self.usable_token(rejected) {
            return Ok(token);
        }
        self.current_still_valid(rejected).ok_or_else(|| Unavailable {
            retry_after: Some(Duration::from_secs(1)),
            ..self.unavailable(
                format!("{} changed while its token was being refreshed, and the tokens there have expired too; trying again", self.store.describe()),
            )
        })
    }

    /// Marks the credential as failing; returns how long until the next attempt.
    fn record_failure(
        &self,
        tokens: &OAuthTokens,
        error: &oauth::RefreshError,
    ) -> Option<Duration> {
        let mut state = write(&self.state);
        let attempts = state.failure.as_ref().map_or(0, |f| f.attempts) + 1;
        let terminal = error.is_terminal();
        let backoff = BACKOFF_BASE
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(BACKOFF_MAX);
        let wait = error
            .retry_after()
            .map(|r| r.clamp(BACKOFF_BASE, BACKOFF_MAX))
            .unwrap_or(backoff);
        let hint = if terminal {
            format!("; {}", self.format.login_hint(&self.store))
        } else {
            String::new()
        };
        state.failure = Some(RefreshFailure {
            reason: format!("refreshing its OAuth token failed: {error}{hint}"),
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
            "{} {}",
            self.store.describe(),
            self.format.missing_hint(&self.store)
        ))
    }

    fn unreadable(&self, retry: &Retry) -> String {
        format!("{} {}; trying again", self.store.describe(), retry.reason)
    }

    fn unavailable(&self, why: String) -> Unavailable {
        Unavailable {
            reason: format!("{} `{}`: {why}", self.format.account_words(), self.tag),
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

fn status_of(state: &State) -> Status {
    match &state.current {
        FileRead::Missing => match &state.read_error {
            Some(r) => Status::Broken(format!("the login {}; trying again", r.reason)),
            None => Status::Missing,
        },
        FileRead::Invalid(r) => Status::Invalid(r.clone()),
        FileRead::Loaded(t) => {
            let expired = t.expires_at_ms != 0 && now_ms() >= t.expires_at_ms;
            match (&state.failure, &state.unsaveable) {
                (Some(f), _) if f.terminal => Status::LoginExpired(f.reason.clone()),
                (_, Some(why)) if expired => Status::Unsaveable(why.clone()),
                (Some(f), None) if expired => Status::Broken(f.reason.clone()),
                _ => Status::Ready,
            }
        }
    }
}

/// Why a refresh is not even tried: its result could not be saved in `dir`.
fn unsaveable_reason(dir: &Path, error: &std::io::Error) -> String {
    format!(
        "its token must be refreshed, but Carpool cannot create files in {} ({error}), so the \
         rotated tokens could not be saved and the login would be lost; it was not refreshed. \
         Make that directory writable for the user Carpool runs as, or point `credential_path` \
         at a login in a writable place",
        dir.display()
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const HOUR_MS: i64 = 3_600_000;

    fn write_login(path: &Path, access: &str, refresh: &str, expires_at_ms: i64) {
        let text = serde_json::json!({"claudeAiOauth": {
            "accessToken": access, "refreshToken": refresh, "expiresAt": expires_at_ms,
            "subscriptionType": "max"}})
        .to_string();
        let tmp = path.with_extension("tmp-test");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn file_refresh_token(path: &Path) -> String {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        doc["claudeAiOauth"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Reads like `std::fs::read`, but fails with EMFILE while `failures` counts down.
    fn flaky(failures: &Arc<AtomicUsize>) -> Reader {
        let failures = failures.clone();
        Arc::new(move |path: &Path| {
            if failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(std::io::Error::from_raw_os_error(24));
            }
            std::fs::read(path)
        })
    }

    /// Regression: every read of the file was reported as an event (an access), which
    /// made the watcher read it again: about 40 reads a second, forever, on an idle
    /// server.
    #[tokio::test]
    async fn reading_the_file_does_not_wake_the_watcher() {
        let (_dir, path) = login_file("a", now_ms() + 8 * HOUR_MS);
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = reads.clone();
        let cred = credential(
            &path,
            Arc::new(move |path: &Path| {
                counter.fetch_add(1, Ordering::SeqCst);
                std::fs::read(path)
            }),
        );
        let mut tasks = tokio::task::JoinSet::new();
        spawn_watcher(cred.clone(), &mut tasks);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let idle = reads.load(Ordering::SeqCst);
        assert!(idle <= 3, "{idle} reads of an unchanged file in 1.5 s");
        // A real change is still noticed.
        write_login(
            &path,
            "sk-ant-oat01-b",
            "sk-ant-ort01-b",
            now_ms() + 8 * HOUR_MS,
        );
        assert!(
            eventually(async || {
                cred.access_token(None).await.unwrap().expose() == "sk-ant-oat01-b"
            })
            .await
        );
        tasks.abort_all();
    }

    /// A temporary directory with a credentials file holding the login
    /// `sk-ant-oat01-<name>` / `sk-ant-ort01-<name>`.
    fn login_file(name: &str, expires_at_ms: i64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        write_login(
            &path,
            &format!("sk-ant-oat01-{name}"),
            &format!("sk-ant-ort01-{name}"),
            expires_at_ms,
        );
        (dir, path)
    }

    /// A credential whose token endpoint must never be called (nothing listens there).
    fn credential(path: &Path, reader: Reader) -> Arc<Credential> {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Credential::with_reader(
            "t",
            LoginStore::File(path.to_owned()),
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/v1/oauth/token",
            http,
            reader,
        )
    }

    async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
        for _ in 0..400 {
            if check().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_passing_read_error_keeps_the_tokens_and_the_watcher_reads_again() {
        let (_dir, path) = login_file("one", now_ms() + 8 * HOUR_MS);
        let failures = Arc::new(AtomicUsize::new(0));
        let cred = credential(&path, flaky(&failures));

        // Out of file descriptors while the CLI writes a new login.
        failures.store(4, Ordering::SeqCst);
        write_login(
            &path,
            "sk-ant-oat01-two",
            "sk-ant-ort01-two",
            now_ms() + 8 * HOUR_MS,
        );
        cred.reload();
        assert_eq!(cred.status(), Status::Ready, "not invalid, not broken");
        assert_eq!(cred.needs_attention(), None);
        let token = cred.access_token(None).await.unwrap();
        assert_eq!(token.expose(), "sk-ant-oat01-one", "the tokens in use stay");
        assert!(cred.next_retry().unwrap() <= READ_RETRY_BASE);

        // No file event comes any more: the watcher's own retries pick up the new login.
        let mut tasks = tokio::task::JoinSet::new();
        spawn_watcher(cred.clone(), &mut tasks);
        assert!(
            eventually(async || {
                cred.access_token(None).await.unwrap().expose() == "sk-ant-oat01-two"
            })
            .await
        );
        assert_eq!(
            failures.load(Ordering::SeqCst),
            0,
            "every failure was retried"
        );
        assert_eq!(cred.next_retry(), None, "nothing left to retry");
        tasks.abort_all();
    }

    #[tokio::test]
    async fn a_refresh_needed_during_a_passing_read_error_is_retryable() {
        let (_dir, path) = login_file("old", now_ms() - 1000);
        let before = std::fs::read(&path).unwrap();
        let failures = Arc::new(AtomicUsize::new(0));
        let cred = credential(&path, flaky(&failures));
        failures.store(usize::MAX, Ordering::SeqCst);

        let error = cred.access_token(None).await.unwrap_err();
        assert!(
            error
                .retry_after
                .is_some_and(|d| d >= Duration::from_secs(1))
        );
        assert!(
            error.reason.contains("cannot be read right now"),
            "{}",
            error.reason
        );
        assert!(error.reason.contains("trying again"), "{}", error.reason);
        assert!(
            !error.reason.contains("token endpoint"),
            "no refresh tried: {}",
            error.reason
        );
        assert!(!error.reason.contains("sk-ant-"), "{}", error.reason);
        assert_eq!(cred.needs_attention(), None, "not final");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[tokio::test]
    async fn a_file_unreadable_at_start_is_neither_missing_nor_invalid() {
        let (_dir, path) = login_file("a", now_ms() + 8 * HOUR_MS);
        let failures = Arc::new(AtomicUsize::new(1));
        let cred = credential(&path, flaky(&failures));
        match cred.status() {
            Status::Broken(why) => assert!(why.contains("right now"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(cred.needs_attention().unwrap().contains("trying again"));
        cred.reload();
        assert_eq!(cred.status(), Status::Ready);
        assert_eq!(cred.needs_attention(), None);
    }

    /// When the background timer refreshes: at the margin, after a back-off, and never
    /// while only the owner (or the watcher) can make a refresh succeed.
    #[test]
    fn the_timer_is_due_at_the_margin_and_waits_for_what_it_cannot_fix() {
        let fs = file::fs_reader;
        let due = |expires_at_ms: i64| {
            let (_dir, path) = login_file("a", expires_at_ms);
            credential(&path, fs()).refresh_due()
        };
        let fresh = due(now_ms() + HOUR_MS).unwrap();
        let expected = Duration::from_millis((HOUR_MS - REFRESH_MARGIN_MS) as u64);
        assert!(
            fresh <= expected && fresh > expected - Duration::from_secs(60),
            "{fresh:?}"
        );
        assert_eq!(due(now_ms() + REFRESH_MARGIN_MS / 2), Some(Duration::ZERO));
        assert_eq!(due(now_ms() - 1000), Some(Duration::ZERO));
        assert_eq!(due(0), None, "no expiry known");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        assert_eq!(credential(&path, fs()).refresh_due(), None, "no file");
        write_login(&path, "sk-ant-oat01-a", "", now_ms() - 1000);
        assert_eq!(
            credential(&path, fs()).refresh_due(),
            None,
            "no refresh token"
        );
        let failures = Arc::new(AtomicUsize::new(1));
        write_login(&path, "sk-ant-oat01-a", "sk-ant-ort01-a", now_ms() - 1000);
        let unreadable = credential(&path, flaky(&failures));
        assert_eq!(
            unreadable.refresh_due(),
            None,
            "the watcher reads again first"
        );

        let cred = credential(&path, fs());
        let failed = |terminal: bool, wait: Duration| {
            cred.state.write().unwrap().failure = Some(RefreshFailure {
                reason: "refreshing its OAuth token failed".into(),
                terminal,
                retry_at: Instant::now() + wait,
                attempts: 1,
                refresh_token: Secret::new("sk-ant-ort01-a"),
            });
        };
        failed(false, Duration::from_secs(30));
        let backoff = cred.refresh_due().unwrap();
        assert!(
            backoff > Duration::from_secs(29) && backoff <= Duration::from_secs(30),
            "{backoff:?}"
        );
        failed(false, Duration::ZERO);
        assert_eq!(cred.refresh_due(), Some(Duration::ZERO), "back-off over");
        failed(true, Duration::ZERO);
        assert_eq!(cred.refresh_due(), None, "invalid_grant: a new login first");
        cred.state.write().unwrap().failure = None;
        cred.state.write().unwrap().unsaveable = Some("cannot create files".into());
        assert_eq!(cred.refresh_due(), None, "the watcher probes the directory");
    }

    fn refreshed(access: &str, refresh: &str) -> oauth::Refreshed {
        oauth::Refreshed {
            access: Secret::new(access),
            refresh: Some(Secret::new(refresh)),
            expires_in: Duration::from_secs(28_800),
            scopes: None,
        }
    }

    /// Runs the end of a refresh (the token endpoint answered) while every read of the
    /// file fails; returns the token it hands out.
    async fn refresh_while_unreadable(cred: &Credential, failures: &AtomicUsize) -> Secret {
        let FileRead::Loaded(old) = cred.state.read().unwrap().current.clone() else {
            panic!("loaded")
        };
        let baseline = FileRead::Loaded(old.clone());
        // Every read after the refresh fails, and the watcher's first one too.
        failures.store(SETTLE_READS as usize + 1, Ordering::SeqCst);
        let _single_flight = cred.refresh_lock.lock().await;
        let new = refreshed("sk-ant-oat01-new", "sk-ant-ort01-new");
        cred.store_refreshed(&old, baseline, new, None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn refreshed_tokens_that_could_not_be_saved_yet_are_saved_by_the_watcher() {
        let (_dir, path) = login_file("old", now_ms() - 1000);
        let failures = Arc::new(AtomicUsize::new(0));
        let cred = credential(&path, flaky(&failures));

        let token = refresh_while_unreadable(&cred, &failures).await;
        assert_eq!(token.expose(), "sk-ant-oat01-new", "used from memory");
        assert_eq!(
            file_refresh_token(&path),
            "sk-ant-ort01-old",
            "not saved yet"
        );
        assert!(cred.next_retry().is_some());

        let mut tasks = tokio::task::JoinSet::new();
        spawn_watcher(cred.clone(), &mut tasks);
        assert!(eventually(async || file_refresh_token(&path) == "sk-ant-ort01-new").await);
        assert_eq!(
            cred.access_token(None).await.unwrap().expose(),
            "sk-ant-oat01-new"
        );
        tasks.abort_all();
    }

    #[tokio::test]
    async fn unsaved_refreshed_tokens_never_replace_a_login_written_meanwhile() {
        let (_dir, path) = login_file("old", now_ms() - 1000);
        let failures = Arc::new(AtomicUsize::new(0));
        let cred = credential(&path, flaky(&failures));

        refresh_while_unreadable(&cred, &failures).await;
        // A new login arrives while the file cannot be read.
        write_login(
            &path,
            "sk-ant-oat01-cli",
            "sk-ant-ort01-cli",
            now_ms() + 8 * HOUR_MS,
        );
        let written = std::fs::read(&path).unwrap();

        let mut tasks = tokio::task::JoinSet::new();
        spawn_watcher(cred.clone(), &mut tasks);
        assert!(
            eventually(async || {
                cred.access_token(None).await.unwrap().expose() == "sk-ant-oat01-cli"
            })
            .await
        );
        assert_eq!(std::fs::read(&path).unwrap(), written, "left as written");
        assert_eq!(cred.next_retry(), None, "nothing pending any more");
        tasks.abort_all();
    }

    /// A login in the secret store goes through the same refresh and write-back: the
    /// rotated tokens replace the stored ones, other fields (the profile) are kept, and
    /// a stored login that changed meanwhile wins.
    #[tokio::test]
    async fn a_stored_login_is_refreshed_and_saved_back_into_the_secret_store() {
        use crate::secrets::{MemoryKeyring, SecretStore, StoreChoice};
        let dir = tempfile::tempdir().unwrap();
        let keyring = Arc::new(MemoryKeyring::default());
        let secrets = Arc::new(SecretStore::with_keyring(
            dir.path(),
            StoreChoice::Auto,
            keyring.clone(),
        ));
        let doc = serde_json::json!({
            "claudeAiOauth": {"accessToken": "sk-ant-oat01-old", "refreshToken": "sk-ant-ort01-old",
                              "expiresAt": now_ms() - 1000, "subscriptionType": "max"},
            "oauthAccount": {"emailAddress": "a@example.com"}});
        let reference = secrets
            .store_new("me", &Secret::new(doc.to_string()))
            .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let cred = Credential::stored(
            LoginFormat::Claude,
            "me",
            secrets.clone(),
            reference.clone(),
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/v1/oauth/token",
            http,
        );
        assert_eq!(cred.path(), None);
        assert_eq!(cred.email().as_deref(), Some("a@example.com"));
        assert_eq!(cred.plan().0.as_deref(), Some("max"));

        let FileRead::Loaded(old) = cred.state.read().unwrap().current.clone() else {
            panic!("loaded")
        };
        let baseline = FileRead::Loaded(old.clone());
        let token = {
            let _single_flight = cred.refresh_lock.lock().await;
            let new = refreshed("sk-ant-oat01-new", "sk-ant-ort01-new");
            cred.store_refreshed(&old, baseline, new, None)
                .await
                .unwrap()
        };
        assert_eq!(token.expose(), "sk-ant-oat01-new");
        let stored: serde_json::Value =
            serde_json::from_str(secrets.get(&reference).unwrap().unwrap().expose()).unwrap();
        assert_eq!(stored["claudeAiOauth"]["refreshToken"], "sk-ant-ort01-new");
        assert_eq!(stored["claudeAiOauth"]["subscriptionType"], "max");
        assert_eq!(stored["oauthAccount"]["emailAddress"], "a@example.com");
        assert_eq!(cred.next_retry(), None, "saved, nothing pending");

        // Someone replaced the stored login while a refresh ran: it wins.
        let FileRead::Loaded(current) = cred.state.read().unwrap().current.clone() else {
            panic!("loaded")
        };
        let theirs = serde_json::json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-theirs",
            "refreshToken": "sk-ant-ort01-theirs", "expiresAt": now_ms() + 8 * HOUR_MS}});
        secrets
            .set(&reference, &Secret::new(theirs.to_string()))
            .unwrap();
        {
            let _single_flight = cred.refresh_lock.lock().await;
            let baseline = FileRead::Loaded(current.clone());
            let new = refreshed("sk-ant-oat01-mine", "sk-ant-ort01-mine");
            let token = cred.store_refreshed(&current, baseline, new, None).await;
            assert_eq!(token.unwrap().expose(), "sk-ant-oat01-theirs");
        }
        let stored = secrets.get(&reference).unwrap().unwrap();
        assert_eq!(stored.expose(), theirs.to_string(), "left as they wrote it");

        // Gone from the store: the account waits for a new login, and says how.
        secrets.delete(&reference).unwrap();
        cred.reload();
        assert_eq!(cred.status(), Status::Missing);
        let why = cred.needs_attention().unwrap();
        assert!(why.contains("carpool login claude"), "{why}");
        assert!(!why.contains("sk-ant-"), "{why}");
    }

    /// A token endpoint on 127.0.0.1 that answers every refresh with
    /// `sk-ant-oat01-new` / `sk-ant-ort01-new` (8 hours) and records the refresh tokens it
    /// was sent. Runs in `tasks`.
    async fn token_endpoint(
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let sent = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = sent.clone();
        let app = axum::Router::new().route(
            "/v1/oauth/token",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let seen = seen.clone();
                async move {
                    let refresh = body["refresh_token"].as_str().unwrap_or("").to_owned();
                    seen.lock().unwrap().push(refresh);
                    axum::Json(serde_json::json!({
                        "access_token": "sk-ant-oat01-new", "refresh_token": "sk-ant-ort01-new",
                        "expires_in": 28800, "token_type": "Bearer"}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/oauth/token", listener.local_addr().unwrap());
        tasks.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, sent)
    }

    fn login_json(access: &str, refresh: &str, expires_at_ms: i64) -> String {
        serde_json::json!({
            "claudeAiOauth": {"accessToken": access, "refreshToken": refresh,
                              "expiresAt": expires_at_ms, "subscriptionType": "max",
                              "rateLimitTier": "default_claude_max_20x"},
            "mcpOAuth": {"github": {"accessToken": "mcp-keep-me"}}})
        .to_string()
    }

    const SERVICE: &str = keychain::SERVICE;

    /// Claude Code's login on a Mac, read through `keyring` (item `Claude
    /// Code-credentials` of `alice`), with `path` as its fallback file.
    fn keychain_credential(
        keyring: Arc<dyn crate::secrets::Keyring>,
        path: &Path,
        token_url: &str,
    ) -> Arc<Credential> {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let item = keychain::KeychainItem {
            services: vec![SERVICE.into()],
            account: "alice".into(),
        };
        Credential::in_keychain(
            "mac",
            keyring,
            item,
            path,
            "http://127.0.0.1:9",
            token_url,
            http,
        )
    }

    /// The login in the Keychain item wins over the file, is refreshed through the token
    /// endpoint when it expires, and the rotated tokens go back into the item with every
    /// other field kept; the file is not touched.
    #[tokio::test]
    async fn a_keychain_login_is_refreshed_and_written_back_into_its_item() {
        use crate::secrets::{Keyring as _, MemoryKeyring};
        let mut tasks = tokio::task::JoinSet::new();
        let (token_url, sent) = token_endpoint(&mut tasks).await;
        let (_dir, path) = login_file("file", now_ms() + 8 * HOUR_MS);
        let file_before = std::fs::read(&path).unwrap();
        let keyring = Arc::new(MemoryKeyring::default());
        keyring
            .set(
                SERVICE,
                "alice",
                &login_json("sk-ant-oat01-item", "sk-ant-ort01-item", now_ms() - 1000),
            )
            .unwrap();
        let cred = keychain_credential(keyring.clone(), &path, &token_url);
        assert_eq!(cred.status(), Status::Ready, "expired, but refreshable");
        assert_eq!(cred.path(), None, "not a file login");
        assert_eq!(cred.store().watched_file(), Some(path.as_path()));
        assert_eq!(
            cred.store().describe(),
            "Claude Code's login in the macOS Keychain (service `Claude Code-credentials`, account `alice`)"
        );

        let token = cred.access_token(None).await.unwrap();
        assert_eq!(token.expose(), "sk-ant-oat01-new");
        assert_eq!(
            *sent.lock().unwrap(),
            ["sk-ant-ort01-item"],
            "the item's refresh token, not the file's"
        );
        let stored: serde_json::Value =
            serde_json::from_str(&keyring.get(SERVICE, "alice").unwrap().unwrap()).unwrap();
        let oauth = &stored["claudeAiOauth"];
        assert_eq!(oauth["accessToken"], "sk-ant-oat01-new");
        assert_eq!(oauth["refreshToken"], "sk-ant-ort01-new");
        assert!(oauth["expiresAt"].as_i64().unwrap() > now_ms() + 7 * HOUR_MS);
        assert_eq!(oauth["subscriptionType"], "max");
        assert_eq!(oauth["rateLimitTier"], "default_claude_max_20x");
        assert_eq!(stored["mcpOAuth"]["github"]["accessToken"], "mcp-keep-me");
        assert_eq!(keyring.len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), file_before, "file untouched");
        assert_eq!(
            cred.next_retry(),
            None,
            "saved; a loaded login is not polled"
        );

        // Claude Code on this Mac rotates the tokens in the item: the next refresh reads
        // the item first and adopts them instead of refreshing again.
        keyring
            .set(
                SERVICE,
                "alice",
                &login_json(
                    "sk-ant-oat01-cli",
                    "sk-ant-ort01-cli",
                    now_ms() + 8 * HOUR_MS,
                ),
            )
            .unwrap();
        let rejected = Secret::new("sk-ant-oat01-new");
        let token = cred.access_token(Some(&rejected)).await.unwrap();
        assert_eq!(token.expose(), "sk-ant-oat01-cli");
        assert_eq!(sent.lock().unwrap().len(), 1, "no second refresh");
        tasks.abort_all();
    }

    /// Without an item, the file is the login: a refresh writes the file, and nothing
    /// goes into the Keychain.
    #[tokio::test]
    async fn without_a_keychain_item_the_file_is_read_and_refreshed_in_place() {
        use crate::secrets::MemoryKeyring;
        let mut tasks = tokio::task::JoinSet::new();
        let (token_url, sent) = token_endpoint(&mut tasks).await;
        let (_dir, path) = login_file("file", now_ms() - 1000);
        let keyring = Arc::new(MemoryKeyring::default());
        let cred = keychain_credential(keyring.clone(), &path, &token_url);
        assert_eq!(
            cred.store().describe(),
            format!("its credentials file {}", path.display())
        );

        let token = cred.access_token(None).await.unwrap();
        assert_eq!(token.expose(), "sk-ant-oat01-new");
        assert_eq!(*sent.lock().unwrap(), ["sk-ant-ort01-file"]);
        assert_eq!(file_refresh_token(&path), "sk-ant-ort01-new");
        assert!(keyring.is_empty(), "nothing written to the Keychain");
        tasks.abort_all();
    }

    /// A Keychain that cannot be read is a passing error: the account waits and says
    /// why, no refresh is tried, and the file is not used in its place.
    #[tokio::test]
    async fn an_unreadable_keychain_is_a_passing_error() {
        use crate::secrets::MemoryKeyring;
        let mut tasks = tokio::task::JoinSet::new();
        let (token_url, sent) = token_endpoint(&mut tasks).await;
        let (_dir, path) = login_file("file", now_ms() - 1000);
        let before = std::fs::read(&path).unwrap();
        let cred = keychain_credential(
            Arc::new(MemoryKeyring::broken("the keychain is locked")),
            &path,
            &token_url,
        );
        match cred.status() {
            Status::Broken(why) => assert!(why.contains("the keychain is locked"), "{why}"),
            other => panic!("{other:?}"),
        }
        let why = cred.needs_attention().unwrap();
        assert!(
            why.contains("macOS Keychain (service `Claude Code-credentials`, account `alice`)")
                && why.contains("trying again"),
            "{why}"
        );
        let error = cred.access_token(None).await.unwrap_err();
        assert!(error.retry_after.is_some(), "retryable");
        assert!(
            error.reason.contains("cannot be read right now"),
            "{}",
            error.reason
        );
        assert!(!error.reason.contains("sk-ant-"), "{}", error.reason);
        assert!(sent.lock().unwrap().is_empty(), "no refresh tried");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(cred.next_retry().unwrap() <= READ_RETRY_MAX);
        tasks.abort_all();
    }

    /// No item and no file: the account waits for a login, says where it looks and
    /// how to log in, and looks again every few seconds (the Keychain is not watched);
    /// a login that appears there is used.
    #[test]
    fn a_missing_keychain_login_is_looked_for_again_until_it_appears() {
        use crate::secrets::{Keyring as _, MemoryKeyring};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        let keyring = Arc::new(MemoryKeyring::default());
        let cred = keychain_credential(keyring.clone(), &path, "http://127.0.0.1:9/v1/oauth/token");
        assert_eq!(cred.status(), Status::Missing);
        assert_eq!(
            cred.store().status_words(&cred.status()),
            "waiting for Claude Code's login"
        );
        let why = cred.needs_attention().unwrap();
        assert!(
            why.contains("macOS Keychain (service `Claude Code-credentials`, account `alice`)")
                && why.contains(&path.display().to_string())
                && why.contains("run `claude` on this Mac and log in"),
            "{why}"
        );
        let poll = cred.next_retry().unwrap();
        assert!(
            poll <= keychain::POLL_WHILE_WAITING && poll > Duration::ZERO,
            "{poll:?}"
        );

        keyring
            .set(
                SERVICE,
                "alice",
                &login_json(
                    "sk-ant-oat01-item",
                    "sk-ant-ort01-item",
                    now_ms() + 8 * HOUR_MS,
                ),
            )
            .unwrap();
        cred.reload();
        assert_eq!(cred.status(), Status::Ready);
        assert_eq!(cred.plan().0.as_deref(), Some("max"));
        assert_eq!(cred.next_retry(), None, "found: no more polling");

        // An invalid item is reported as the item's, and polled for a new login too.
        keyring.set(SERVICE, "alice", "{}").unwrap();
        cred.reload();
        match cred.status() {
            Status::Invalid(why) => assert!(why.contains("claudeAiOauth"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(cred.needs_attention().unwrap().contains("macOS Keychain"));
        assert!(cred.next_retry().is_some());
    }

    /// Someone (Claude Code) replaced the item while a refresh ran: theirs wins, ours
    /// is dropped, and the item is left as they wrote it.
    #[tokio::test]
    async fn a_keychain_item_changed_while_refreshing_is_never_overwritten() {
        use crate::secrets::{Keyring as _, MemoryKeyring};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        let keyring = Arc::new(MemoryKeyring::default());
        keyring
            .set(
                SERVICE,
                "alice",
                &login_json("sk-ant-oat01-old", "sk-ant-ort01-old", now_ms() - 1000),
            )
            .unwrap();
        let cred = keychain_credential(keyring.clone(), &path, "http://127.0.0.1:9/v1/oauth/token");
        let FileRead::Loaded(old) = cred.state.read().unwrap().current.clone() else {
            panic!("loaded")
        };
        let theirs = login_json(
            "sk-ant-oat01-theirs",
            "sk-ant-ort01-theirs",
            now_ms() + 8 * HOUR_MS,
        );
        keyring.set(SERVICE, "alice", &theirs).unwrap();
        let token = {
            let _single_flight = cred.refresh_lock.lock().await;
            let new = refreshed("sk-ant-oat01-mine", "sk-ant-ort01-mine");
            cred.store_refreshed(&old, FileRead::Loaded(old.clone()), new, None)
                .await
                .unwrap()
        };
        assert_eq!(token.expose(), "sk-ant-oat01-theirs");
        assert_eq!(keyring.get(SERVICE, "alice").unwrap().unwrap(), theirs);
        assert!(!path.exists(), "not written to the file either");
    }

    /// The banner's and the status snapshot's words name the Keychain login, not a file.
    #[test]
    fn a_keychain_logins_state_is_worded_for_the_keychain() {
        use crate::pool::status::AccountState;
        use crate::secrets::MemoryKeyring;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        let cred = keychain_credential(
            Arc::new(MemoryKeyring::default()),
            &path,
            "http://127.0.0.1:9/v1/oauth/token",
        );
        let state =
            serde_json::to_value(AccountState::of_login(Status::Missing, cred.store())).unwrap();
        assert_eq!(state["state"], "waiting_for_owner", "no file to point at");
        let reason = state["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("Claude Code's login (in the macOS Keychain")
                && reason.contains("run `claude` on this Mac"),
            "{reason}"
        );
        assert_eq!(
            cred.store().to_string(),
            format!(
                "macOS Keychain: service `Claude Code-credentials`, account `alice`; else {}",
                path.display()
            )
        );
        let file = LoginStore::File(path.clone());
        assert_eq!(
            file.status_words(&Status::Missing),
            "waiting for the credentials file"
        );
        assert_eq!(
            file.status_words(&Status::Invalid("x".into())),
            "invalid credentials file: x"
        );
        assert_eq!(
            cred.store().status_words(&Status::Invalid("x".into())),
            "invalid login: x"
        );
    }
}
