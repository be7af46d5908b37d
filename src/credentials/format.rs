//! What differs between login formats: everything [`super::Credential`] must know about
//! one kind of login document, behind [`LoginFormat`]. The credential's machinery (the
//! watch, the single flight with its re-read, compare before replace, the atomic
//! write-back, unsaveable directories, back-off, terminal failures, the keep-fresh
//! timer) is the same for all of them; a format only says:
//!
//! * how a document's bytes parse into tokens ([`LoginFormat::parse`]);
//! * when those tokens are due for a refresh ([`LoginFormat::refresh_at_ms`]);
//! * the refresh request, and which of its errors only a new login fixes
//!   ([`LoginFormat::refresh`]);
//! * how a refresh's answer becomes the new tokens ([`LoginFormat::renewed`]) and how
//!   those are merged back into the document, every other field kept
//!   ([`LoginFormat::change`], a [`Change`]);
//! * the words for its owner: what the account is called and how to log in again.

use std::io;

use super::codex;
use super::file::{self, Digest, FileRead, OAuthTokens, Snapshot};
use super::oauth::{self, RefreshError};
use super::store::LoginStore;
use crate::secret::Secret;

/// Refresh this long before `expiresAt`.
pub const REFRESH_MARGIN_MS: i64 = 60_000;

/// The kind of login a credential reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginFormat {
    /// Claude Code's credentials document (docs/protocol.md §1.2).
    Claude,
    /// Codex's `auth.json` (docs/protocol.md §7.1, [`super::codex`]).
    Codex,
}

/// A change to a login document: merged into its current bytes (`None`: no document
/// yet), every field it does not own kept. The result is read back in [`Change::format`].
pub trait Change {
    fn format(&self) -> LoginFormat;
    fn apply(&self, current: Option<&[u8]>) -> io::Result<Vec<u8>>;
}

/// What a token endpoint answered to a refresh, in any format. A token it did not send
/// is `None`: the old one is kept.
#[derive(Debug)]
pub struct Renewal {
    pub access: Option<Secret>,
    pub refresh: Option<Secret>,
    /// An OpenID `id_token` (Codex).
    pub id_token: Option<Secret>,
    /// How long the new access token lives, when the answer says so.
    pub expires_in: Option<std::time::Duration>,
    pub scopes: Option<Vec<String>>,
}

impl From<oauth::Refreshed> for Renewal {
    fn from(r: oauth::Refreshed) -> Renewal {
        Renewal {
            access: Some(r.access),
            refresh: r.refresh,
            id_token: None,
            expires_in: Some(r.expires_in),
            scopes: r.scopes,
        }
    }
}

impl LoginFormat {
    /// The login a document's bytes hold.
    pub fn parse(self, bytes: &[u8]) -> FileRead {
        match self {
            LoginFormat::Claude => file::parse(bytes),
            LoginFormat::Codex => codex::parse(bytes),
        }
    }

    /// What a read of `bytes` finds, with their digest.
    pub fn snapshot(self, bytes: &[u8]) -> Snapshot {
        Snapshot {
            read: self.parse(bytes),
            digest: Some(digest(bytes)),
        }
    }

    /// When (Unix ms) `tokens` should be refreshed, by a request or by the timer; `None`:
    /// never ahead of time (no expiry known), only when the upstream rejects the token.
    pub fn refresh_at_ms(self, tokens: &OAuthTokens) -> Option<i64> {
        match self {
            // One minute before `expiresAt`, as Claude Code does (docs/protocol.md §2.3).
            LoginFormat::Claude => (tokens.expires_at_ms != 0)
                .then(|| tokens.expires_at_ms.saturating_sub(REFRESH_MARGIN_MS)),
            // After 8 days, or near the access token's expiry (docs/protocol.md §7.2).
            LoginFormat::Codex => codex::refresh_at_ms(tokens),
        }
    }

    /// Refreshes `tokens` at the token endpoint `token_url`. A [`RefreshError`] that
    /// [`RefreshError::is_terminal`] needs a new login.
    pub async fn refresh(
        self,
        http: &reqwest::Client,
        token_url: &str,
        tokens: &OAuthTokens,
    ) -> Result<Renewal, RefreshError> {
        match self {
            LoginFormat::Claude => oauth::refresh(http, token_url, &tokens.refresh)
                .await
                .map(Renewal::from),
            LoginFormat::Codex => codex::refresh(http, token_url, &tokens.refresh).await,
        }
    }

    /// The tokens after a refresh of `old` answered `new`, at `now_ms`.
    pub fn renewed(self, old: &OAuthTokens, new: Renewal, now_ms: i64) -> OAuthTokens {
        // `expires_in` is bounded to a year by `oauth`; saturate all the same.
        let lifetime_ms = new
            .expires_in
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        match self {
            LoginFormat::Claude => OAuthTokens {
                access: new.access.unwrap_or_else(|| old.access.clone()),
                refresh: new.refresh.unwrap_or_else(|| old.refresh.clone()),
                expires_at_ms: now_ms.saturating_add(lifetime_ms.unwrap_or(0)),
                ..old.clone()
            },
            LoginFormat::Codex => codex::renewed(old, new, now_ms),
        }
    }

    /// The change that saves `tokens` (just refreshed) into a document of this format.
    pub fn change<'a>(
        self,
        tokens: &'a OAuthTokens,
        scopes: Option<&'a [String]>,
    ) -> Box<dyn Change + 'a> {
        match self {
            LoginFormat::Claude => Box::new(file::Update {
                access: &tokens.access,
                refresh: &tokens.refresh,
                expires_at_ms: tokens.expires_at_ms,
                scopes,
            }),
            LoginFormat::Codex => Box::new(codex::Update {
                access: &tokens.access,
                refresh: &tokens.refresh,
                id_token: tokens.id_token.as_ref(),
                last_refresh_ms: tokens.last_refresh_ms.unwrap_or(0),
            }),
        }
    }

    /// What an account of this login is called in messages: "Claude account `x`".
    pub fn account_words(self) -> &'static str {
        match self {
            LoginFormat::Claude => "Claude account",
            LoginFormat::Codex => "Codex account",
        }
    }

    /// What to do when there is no login at all.
    pub fn missing_hint(self, store: &LoginStore) -> &'static str {
        match self {
            LoginFormat::Claude => store.missing_hint(),
            LoginFormat::Codex => match store {
                LoginStore::Secret { .. } => {
                    "is gone; log in again with `carpool login codex` (or the management API's login) and remove this account"
                }
                _ => "does not exist yet; run `codex login` on the Carpool machine",
            },
        }
    }

    /// How to log in again when the refresh token is dead.
    pub fn login_hint(self, store: &LoginStore) -> &'static str {
        match self {
            LoginFormat::Claude => store.login_hint(),
            LoginFormat::Codex => match store {
                LoginStore::Secret { .. } => "log in again with `carpool login codex`",
                _ => "log in again with `codex login` on the Carpool machine",
            },
        }
    }
}

fn digest(bytes: &[u8]) -> Digest {
    file::digest(bytes)
}
