//! Refreshing an idle login ahead of expiry.
//!
//! Requests refresh a token lazily, when they need one inside the refresh margin. An
//! account nobody uses would then hold an expired token until the next request, which
//! pays for the refresh; its usage poll could not run either. So each login also has a
//! timer: it sleeps until the token is due (when the login's format says so, as the lazy
//! path does: one minute before `expiresAt` for Claude, 8 days after `last_refresh` for
//! Codex) and then refreshes through [`Credential::access_token`],
//! the requests' own single flight. A request and the timer therefore never refresh the
//! same token twice, the file is read again before refreshing (tokens the official CLI
//! rotated are adopted, not refreshed), and the write-back rules are the same.
//!
//! The timer does nothing while the credential cannot be refreshed by itself
//! ([`Credential::refresh_due`]): no loaded login, no known expiry or no refresh token,
//! a failure that needs the owner (`invalid_grant`), a directory that refuses the save,
//! or a read error the watcher is retrying. After a failed refresh it waits out the same
//! back-off as requests do, so a broken token endpoint sees one attempt per back-off
//! step, not one per request plus one per timer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::Credential;

/// The longest sleep between two looks at the credential. The sleep is monotonic while
/// `expiresAt` is wall-clock time, a new login may bring another expiry, and a failure
/// can be cleared by the file changing: looking again every few seconds (a read lock,
/// no I/O) covers a machine that was suspended and all of those.
const RECHECK: Duration = Duration::from_secs(5);
/// The shortest wait after an attempt, whatever the state says: a guard against a loop
/// should some future state make [`Credential::refresh_due`] and the refresh disagree.
const MIN_GAP: Duration = Duration::from_secs(1);

/// Keeps `credential`'s token fresh until `shutdown` completes. A refresh under way when
/// it does is finished first: cutting it after the token endpoint rotated the tokens
/// would lose the new ones and leave the file's refresh token revoked.
pub async fn keep_fresh(credential: Arc<Credential>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let wait = match credential.refresh_due() {
            Some(due) if due.is_zero() => {
                tracing::debug!(credential = %credential.tag, "refreshing the OAuth token ahead of its expiry");
                // Failures are logged and recorded (with their back-off) by the refresh.
                let _ = credential.access_token(None).await;
                MIN_GAP
            }
            Some(due) => due.min(RECHECK),
            None => RECHECK,
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
