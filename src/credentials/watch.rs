//! Watching a credentials file for changes.
//!
//! The parent directory is watched rather than the file: the file may not exist yet, and
//! tools replace it by renaming a temporary file over it, which a watch on the old inode
//! would miss. If the directory itself does not exist yet (no `~/.claude` before the
//! first login), the watch is retried every two seconds, re-reading the file each time.
//! If the directory is removed while watched (`rm -rf ~/.claude`), the watch on its old
//! inode is useless: Carpool goes back to waiting for the directory, so a later login
//! is still noticed.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Credential;

const RETRY: Duration = Duration::from_secs(2);

pub fn spawn_watcher(credential: Arc<Credential>, tasks: &mut JoinSet<()>) {
    tasks.spawn(async move {
        let dir = credential.path.parent().map(|d| d.to_owned());
        loop {
            let (tx, mut rx) = mpsc::unbounded_channel::<()>();
            let _watcher = loop {
                match watch(&credential, tx.clone()) {
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
            while rx.recv().await.is_some() {
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
    });
}

fn watch(
    credential: &Credential,
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = credential
        .path
        .parent()
        .ok_or_else(|| notify::Error::generic("credentials path has no parent directory"))?
        .to_owned();
    let name = credential.path.file_name().map(|n| n.to_owned());
    let watched = dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // The file, or the directory itself (removed or moved away).
            Ok(e) => e
                .paths
                .iter()
                .any(|p| p.file_name() == name.as_deref() || *p == watched),
            // Overflow or an error: re-read to be safe.
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
