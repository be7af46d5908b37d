//! Live configuration: edits of the config file, and SIGHUP, applied to the running
//! engine.
//!
//! The file's directory is watched rather than the file, because editors save by
//! writing a new file and renaming it over the old one. A burst of events (one save is
//! often several) is taken as one change after [`SETTLE`]. Then the file is read,
//! validated and applied with [`Engine::apply`]. A file whose text did not change since
//! it was last read (a `touch`, an editor's swap file) is left alone; SIGHUP always
//! reads and applies.
//!
//! An invalid edit leaves the running configuration untouched and logs one line that
//! names the file and the field; it is logged once per text, so an editor saving the same
//! broken file again does not repeat it. Fixing the file applies it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{ApplyError, Changes, Engine};
use crate::config::{Config, ConfigError};

/// How long the file must stay quiet after an event before it is read.
const SETTLE: Duration = Duration::from_millis(100);
/// How often a watch that could not be set up (the directory is gone) is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// What the command line set over the file, re-applied to every new reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `carpool serve --listen`.
    pub listen: Option<SocketAddr>,
}

impl Overrides {
    /// `config` with the overrides applied, or why they cannot be.
    pub fn apply(&self, mut config: Config, path: &Path) -> Result<Config, ConfigError> {
        if let Some(listen) = self.listen {
            if config.users.is_empty() && !listen.ip().is_loopback() {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    field: "users".into(),
                    problem: format!(
                        "none configured, so only a loopback address is allowed, and Carpool was started with --listen {listen}"
                    ),
                });
            }
            config.listen = listen;
        }
        Ok(config)
    }
}

/// What one reading of the config file led to.
#[derive(Debug)]
pub enum Reloaded {
    /// The file's text is the one last read: nothing to do.
    Unchanged,
    Applied(Changes),
    /// Refused; the running configuration stays.
    Refused(ApplyError),
}

/// Watches one config file for a running engine.
pub struct ConfigWatch {
    engine: Arc<Engine>,
    path: PathBuf,
    overrides: Overrides,
    /// SHA-256 of the text last read, applied or refused.
    last: Option<[u8; 32]>,
}

impl ConfigWatch {
    /// The engine must be running the config currently in the file at `path`.
    pub fn new(engine: Arc<Engine>, path: PathBuf, overrides: Overrides) -> ConfigWatch {
        let last = std::fs::read(&path).ok().map(|t| digest(&t));
        ConfigWatch {
            engine,
            path,
            overrides,
            last,
        }
    }

    /// Reads the file and applies it if its text changed (or `always`), logging the
    /// outcome in one line.
    pub fn reload(&mut self, always: bool) -> Reloaded {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(source) => {
                let error = ConfigError::Read {
                    path: self.path.clone(),
                    source,
                };
                // A file being replaced can be missing for a moment; say it once.
                if self.last.take().is_some() || always {
                    tracing::error!("{error}; the running configuration stays");
                }
                return Reloaded::Refused(error.into());
            }
        };
        let sum = digest(&text);
        if !always && self.last == Some(sum) {
            return Reloaded::Unchanged;
        }
        self.last = Some(sum);
        let outcome = String::from_utf8(text)
            .map_err(|_| ConfigError::Invalid {
                path: self.path.clone(),
                field: "(file)".into(),
                problem: "is not UTF-8 text".into(),
            })
            .and_then(|text| Config::parse(&text, &self.path))
            .and_then(|config| self.overrides.apply(config, &self.path))
            .map_err(ApplyError::from)
            .and_then(|config| {
                if let Some(warning) = config.exposure_warning(&self.path) {
                    tracing::warn!("{warning}");
                }
                self.engine.apply(config)
            });
        match outcome {
            Ok(changes) => {
                if changes.needs_restart.is_empty() {
                    tracing::info!("config {} applied: {changes}", self.path.display());
                } else {
                    tracing::warn!("config {} applied: {changes}", self.path.display());
                }
                Reloaded::Applied(changes)
            }
            Err(error) => {
                tracing::error!("{error}; the running configuration stays");
                Reloaded::Refused(error)
            }
        }
    }

    /// Applies every change of the file, and every SIGHUP, until the task is stopped.
    pub async fn run(mut self) {
        let mut hangup = hangup();
        loop {
            let (tx, mut events) = mpsc::unbounded_channel::<()>();
            let _watcher = match watch(&self.path, tx) {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!("cannot watch {} yet ({e}); retrying", self.path.display());
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = next_hangup(&mut hangup) => { self.reload(true); }
                    }
                    continue;
                }
            };
            // It may have changed before the watch started.
            self.reload(false);
            loop {
                tokio::select! {
                    event = events.recv() => {
                        if event.is_none() {
                            break;
                        }
                        // Wait until the writes stop, then read once.
                        while let Ok(Some(())) = tokio::time::timeout(SETTLE, events.recv()).await {}
                        self.reload(false);
                        if self.path.parent().is_some_and(|d| !d.is_dir()) {
                            break; // the directory is gone: watch it again when it is back
                        }
                    }
                    _ = next_hangup(&mut hangup) => {
                        tracing::info!("SIGHUP: reading the config again");
                        self.reload(true);
                    }
                }
            }
        }
    }
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

/// Watches the directory of `path` and sends a unit for each event about its file name.
fn watch(path: &Path, tx: mpsc::UnboundedSender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Reading the file (Carpool's own reads among them) is no change.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => false,
            Ok(e) => e.paths.is_empty() || e.paths.iter().any(|p| p.file_name() == name.as_deref()),
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup() -> Hangup {}

/// The next SIGHUP; never, where there are none.
#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending::<()>().await
}
