//! Watching a credentials file for changes.
//!
//! A Keychain login (on a Mac, [`super::keychain`]) has its fallback file watched the same
//! way; its Keychain item is read again on each reload the watcher makes (an event, a
//! retry) and, while the account waits for a login, every few seconds
//! ([`Credential::next_retry`]).
//!
//! The parent directory is watched rather than the file: the file may not exist yet, and
//! tools replace it by renaming a temporary file over it, which a watch on the old inode
//! would miss. When the path is a symlink, the directory of its target is watched too
//! (that is where Carpool and a tool writing through the link replace the file). If the
//! directory itself does not exist yet (no `~/.claude` before the first login), the watch
//! is retried every two seconds, re-reading the file each time.
//!
//! The watcher also owns the retries that need no event: a read that failed for a
//! passing reason (out of file descriptors, an I/O error) is repeated after 50 ms,
//! doubling to 5 s, until it succeeds; refreshed tokens that could not be saved yet are
//! saved on the same schedule; a directory that refused the write probe is tried again
//! every few seconds ([`Credential::next_retry`]).
//!
//! If the directory is removed while watched (`rm -rf ~/.claude`), the watch on its old
//! inode is useless: Carpool goes back to waiting for the directory, so a later login
//! is still noticed.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::{Credential, file};

const RETRY: Duration = Duration::from_secs(2);
/// How often an idle watcher checks whether its credential wants a retry.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Starts the watcher in `tasks`; the handle stops it.
pub fn spawn_watcher(credential: Arc<Credential>, tasks: &mut JoinSet<()>) -> AbortHandle {
    let Some(path) = credential.store().watched_file().map(|p| p.to_owned()) else {
        return tasks.spawn(retry_only(credential));
    };
    tasks.spawn(async move {
        let dir = path.parent().map(|d| d.to_owned());
        loop {
            let (tx, mut rx) = mpsc::unbounded_channel::<()>();
            let _watcher = loop {
                match watch(&path, tx.clone()) {
                    Ok(w) => break w,
                    Err(e) => {
                        tracing::debug!(credential = %credential.tag, "cannot watch the credentials directory yet ({e}); retrying");
                        tokio::time::sleep(RETRY).await;
                        credential.reload();
                    }
                }
            };
            // The file may have changed between reading it at start and the watch starting.
            credential.reload();
            loop {
                // A retry may become due while nothing happens on disk (a refresh that
                // could not save, met between two events): look at the state every
                // [`IDLE_CHECK`] without touching the file.
                let retry = credential.next_retry();
                match tokio::time::timeout(retry.unwrap_or(IDLE_CHECK), rx.recv()).await {
                    Ok(Some(())) => {}
                    Ok(None) => return,
                    // Time to retry: read again without an event.
                    Err(_) if retry.is_some() => {}
                    Err(_) => continue,
                }
                // One write is often several events; take them all, then read once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while rx.try_recv().is_ok() {}
                credential.reload();
                if dir.as_deref().is_some_and(|d| !d.is_dir()) {
                    tracing::debug!(credential = %credential.tag, "the credentials directory was removed; waiting for it again");
                    break;
                }
            }
        }
    })
}

/// A login in Carpool's secret store has no file to watch (nothing but Carpool writes
/// it): only the retries are left, a read that failed for a passing reason (a locked
/// keyring) and refreshed tokens not saved yet.
async fn retry_only(credential: Arc<Credential>) {
    loop {
        match credential.next_retry() {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                credential.reload();
            }
            None => tokio::time::sleep(IDLE_CHECK).await,
        }
    }
}

fn watch(
    path: &std::path::Path,
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    // The path as configured, and where it leads when it is a symlink.
    let mut places: Vec<(PathBuf, Option<OsString>)> = Vec::new();
    for path in [path.to_owned(), file::write_target(path)] {
        let dir = path
            .parent()
            .ok_or_else(|| notify::Error::generic("credentials path has no parent directory"))?
            .to_owned();
        let place = (dir, path.file_name().map(|n| n.to_owned()));
        if !places.contains(&place) {
            places.push(place);
        }
    }
    let names: Vec<Option<OsString>> = places.iter().map(|(_, n)| n.clone()).collect();
    let dirs_seen: Vec<PathBuf> = places.iter().map(|(d, _)| d.clone()).collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Opening and reading the file (Carpool's own reloads among them) changes
            // nothing; reacting to it would read the file again, forever.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => false,
            Ok(e) => {
                // A watched directory itself matters only when it goes away (removed or
                // renamed).
                let gone = matches!(
                    e.kind,
                    notify::EventKind::Remove(_)
                        | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                );
                e.paths.iter().any(|p| {
                    names.iter().any(|n| p.file_name() == n.as_deref())
                        || (gone && dirs_seen.contains(p))
                })
            }
            // Overflow or an error: re-read to be safe.
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    let mut dirs: Vec<&PathBuf> = places.iter().map(|(d, _)| d).collect();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}
