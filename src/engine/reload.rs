//! Live configuration: edits of the config file, and SIGHUP, applied to the running
//! engine.
//!
//! The file's directory is watched rather than the file, because editors save by
//! writing a new file and renaming it over the old one (and when the path is a symlink,
//! the directory of the file it leads to as well). A burst of events (one save is
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
use tokio::sync::mpsc;

use super::{ApplyError, Changes, Engine};
use crate::config::edit::{ConfigDoc, EditError};
use crate::config::file::{ConfigFile, digest};
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

/// What an edit of the config file made ([`Engine::edit_config`]).
#[derive(Debug)]
pub struct Edited<T> {
    /// What the edit closure returned.
    pub value: T,
    /// The configuration now running (command-line overrides applied).
    pub config: Config,
    /// What changed, as the watcher would say.
    pub changes: Changes,
}

impl Engine {
    /// Gives the engine the config file it runs from: edits ([`Engine::edit_config`])
    /// are written there, with `overrides` applied to what runs. [`crate::Server::watch_config`]
    /// does this and starts the watcher on the same [`ConfigFile`]; a test may give the
    /// file alone, with no watcher.
    pub fn set_config_file(&self, file: Arc<ConfigFile>, overrides: Overrides) {
        *crate::tasks::lock(&self.file) = Some((file, overrides));
    }

    /// The config file edits go to, if the engine has one.
    pub fn config_file(&self) -> Option<Arc<ConfigFile>> {
        crate::tasks::lock(&self.file)
            .as_ref()
            .map(|(file, _)| file.clone())
    }

    /// Edits the config file and applies the result: THE way Carpool changes its own
    /// configuration while it runs (the management API, logins adding accounts).
    ///
    /// `edit` gets the file as a comment-preserving document ([`ConfigDoc`]) and changes
    /// it; what it returns comes back in [`Edited::value`]. Then, as
    /// [`ConfigFile::edit`] describes: refused with [`EditError::Conflict`] if the file
    /// changed on disk since Carpool last read it; validated ([`EditError::Invalid`]
    /// names the field; nothing written); written atomically; applied with
    /// [`Engine::apply`] (a refusal puts the old text back). An engine without a file
    /// answers [`EditError::NoFile`].
    ///
    /// Synchronous and quick (one read, one write, one apply): call it from async code
    /// directly. `edit` must not call back into the engine's edits.
    ///
    /// ```ignore
    /// let edited = engine.edit_config(|doc| {
    ///     doc.users()?.get("bob", "user")?.set("credential", &json!("team"));
    ///     Ok(())
    /// })?;
    /// ```
    pub fn edit_config<T>(
        &self,
        edit: impl FnOnce(&mut ConfigDoc) -> Result<T, EditError>,
    ) -> Result<Edited<T>, EditError> {
        let (file, overrides) = crate::tasks::lock(&self.file)
            .clone()
            .ok_or(EditError::NoFile)?;
        let (value, (config, changes)) = file.edit(edit, |config| {
            let config = overrides.apply(config, file.path())?;
            let changes = self
                .apply(config.clone())
                .map_err(|e| EditError::Refused(format!("the running Carpool refused it: {e}")))?;
            Ok((config, changes))
        })?;
        tracing::info!("config {} edited: {changes}", file.path().display());
        Ok(Edited {
            value,
            config,
            changes,
        })
    }
}

/// Watches one config file for a running engine.
pub struct ConfigWatch {
    engine: Arc<Engine>,
    /// The file and the digest of the text last read or written, shared with the
    /// engine's edits ([`Engine::edit_config`]): a text the watcher read counts as read
    /// for them, and their own writes are not applied a second time here.
    file: Arc<ConfigFile>,
    path: PathBuf,
    overrides: Overrides,
    /// The last warning about secrets in clear, said again only when it changes.
    exposure: Option<String>,
}

impl ConfigWatch {
    /// The engine must be running the config currently in the file (`file` made by
    /// [`ConfigFile::new`] from the text it was loaded from).
    pub fn new(engine: Arc<Engine>, file: Arc<ConfigFile>, overrides: Overrides) -> ConfigWatch {
        let path = file.path().to_owned();
        let exposure = engine.state().config.exposure_warning(&path);
        ConfigWatch {
            engine,
            file,
            path,
            overrides,
            exposure,
        }
    }

    /// Reads the file and applies it if its text changed (or `always`), logging the
    /// outcome in one line. No edit runs meanwhile.
    pub fn reload(&mut self, always: bool) -> Reloaded {
        let file = self.file.clone();
        let mut last = file.lock();
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(source) => {
                let error = ConfigError::Read {
                    path: self.path.clone(),
                    source,
                };
                // A file being replaced can be missing for a moment; say it once.
                if last.take().is_some() || always {
                    tracing::error!("{error}; the running configuration stays");
                }
                return Reloaded::Refused(error.into());
            }
        };
        let sum = digest(&text);
        if !always && *last == Some(sum) {
            return Reloaded::Unchanged;
        }
        *last = Some(sum);
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
                let warning = config.exposure_warning(&self.path);
                if warning.is_some() && warning != self.exposure {
                    tracing::warn!("{}", warning.as_deref().unwrap_or_default());
                }
                self.exposure = warning;
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

/// Watches the directory of `path` and sends a unit for each event about its file name.
/// When `path` is a symlink (a config kept in a dotfiles repository), the directory of
/// the file it leads to is watched too: that is where an editor saves it.
fn watch(path: &Path, tx: mpsc::UnboundedSender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let place = |p: &Path| {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        (dir, p.file_name().map(|n| n.to_owned()))
    };
    let mut places = vec![place(path)];
    if let Ok(target) = std::fs::canonicalize(path) {
        let target = place(&target);
        if !places.contains(&target) {
            places.push(target);
        }
    }
    let names: Vec<_> = places.iter().map(|(_, name)| name.clone()).collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Reading the file (Carpool's own reads among them) is no change.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => false,
            Ok(e) => {
                e.paths.is_empty()
                    || e.paths
                        .iter()
                        .any(|p| names.iter().any(|n| p.file_name() == n.as_deref()))
            }
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    for (dir, _) in &places {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "alice-token-0000000001";

    fn text(dir: &Path, credential: &str) -> String {
        format!(
            r#"{{
                // comments are fine
                "database": "{}",
                "credentials": [{{"tag": "key", "type": "api_key", "api_key": "sk-ant-api03-x", "base_url": "http://127.0.0.1:9"}}],
                "users": [{{"name": "alice", "token": "{TOKEN}", "credential": "{credential}"}}]
            }}"#,
            dir.join("usage.db").display()
        )
    }

    #[tokio::test]
    async fn a_broken_edit_is_refused_naming_the_field_and_fixing_it_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carpool.json");
        std::fs::write(&path, text(dir.path(), "key")).unwrap();
        let engine = Arc::new(Engine::new(Config::load(&path).unwrap()).unwrap());
        let mut watch = ConfigWatch::new(
            engine.clone(),
            Arc::new(ConfigFile::new(path.clone())),
            Overrides::default(),
        );
        assert!(matches!(watch.reload(false), Reloaded::Unchanged));
        let running = engine.state();

        let refused = |outcome: Reloaded| match outcome {
            Reloaded::Refused(error) => error.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        };
        // A dangling tag.
        std::fs::write(&path, text(dir.path(), "nope")).unwrap();
        let message = refused(watch.reload(false));
        assert!(
            message.contains("carpool.json") && message.contains("users[0].credential"),
            "{message}"
        );
        assert!(
            Arc::ptr_eq(&running, &engine.state()),
            "the running state stays"
        );
        // The same broken text again is not read twice; SIGHUP reads it anyway.
        assert!(matches!(watch.reload(false), Reloaded::Unchanged));
        refused(watch.reload(true));
        // Bad JSON, an unknown field.
        std::fs::write(&path, "{\"users\": [").unwrap();
        let message = refused(watch.reload(false));
        assert!(message.contains("line 1"), "{message}");
        std::fs::write(
            &path,
            text(dir.path(), "key").replace("\"database\"", "\"databse\""),
        )
        .unwrap();
        let message = refused(watch.reload(false));
        assert!(message.contains("databse"), "{message}");
        // A file that vanished for a moment.
        std::fs::remove_file(&path).unwrap();
        refused(watch.reload(false));
        assert!(Arc::ptr_eq(&running, &engine.state()));

        // Fixed: applied, with what changed.
        std::fs::write(
            &path,
            text(dir.path(), "key").replace("\"users\"", "\"max_body_bytes\": 1000, \"users\""),
        )
        .unwrap();
        match watch.reload(false) {
            Reloaded::Applied(changes) => assert_eq!(changes.settings, ["max_body_bytes"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.state().config.max_body_bytes, 1000);
    }

    #[tokio::test]
    async fn edits_share_the_watchers_record_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carpool.json");
        std::fs::write(&path, text(dir.path(), "key")).unwrap();
        let engine = Arc::new(Engine::new(Config::load(&path).unwrap()).unwrap());
        let set = |n: u64| move |doc: &mut ConfigDoc| doc.set(&["max_body_bytes"], &n.into());
        assert!(matches!(engine.edit_config(set(1)), Err(EditError::NoFile)));

        let file = Arc::new(ConfigFile::new(path.clone()));
        engine.set_config_file(file.clone(), Overrides::default());
        let mut watch = ConfigWatch::new(engine.clone(), file, Overrides::default());
        let edited = engine.edit_config(set(1000)).unwrap();
        assert_eq!(edited.changes.settings, ["max_body_bytes"]);
        assert_eq!(engine.state().config.max_body_bytes, 1000);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("// comments are fine")
        );
        // The watcher, woken by that write, knows the text.
        assert!(matches!(watch.reload(false), Reloaded::Unchanged));

        // A hand edit: refused until the watcher has read it, then built upon.
        let hand = std::fs::read_to_string(&path)
            .unwrap()
            .replace("// comments are fine", "// edited by hand");
        std::fs::write(&path, &hand).unwrap();
        assert!(matches!(
            engine.edit_config(set(2000)),
            Err(EditError::Conflict { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), hand);
        assert_eq!(engine.state().config.max_body_bytes, 1000);
        assert!(matches!(watch.reload(false), Reloaded::Applied(_)));
        engine.edit_config(set(2000)).unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(
            now.contains("// edited by hand") && now.contains("2000"),
            "{now}"
        );
        assert_eq!(engine.state().config.max_body_bytes, 2000);

        // An edit the config refuses names the field and changes nothing.
        let err = engine
            .edit_config(|doc| doc.set(&["max_body_bytes"], &0.into()))
            .unwrap_err();
        assert!(err.to_string().starts_with("max_body_bytes: "), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), now);
    }

    #[tokio::test]
    async fn the_command_line_listen_address_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carpool.json");
        std::fs::write(&path, text(dir.path(), "key")).unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:4321".parse().unwrap()),
        };
        let config = overrides
            .apply(Config::load(&path).unwrap(), &path)
            .unwrap();
        let engine = Arc::new(Engine::new(config).unwrap());
        let mut watch = ConfigWatch::new(
            engine.clone(),
            Arc::new(ConfigFile::new(path.clone())),
            overrides,
        );
        std::fs::write(
            &path,
            text(dir.path(), "key").replace("\"users\"", "\"max_body_bytes\": 1000, \"users\""),
        )
        .unwrap();
        match watch.reload(false) {
            Reloaded::Applied(changes) => assert!(changes.needs_restart.is_empty(), "{changes}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.state().config.listen.port(), 4321);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_edit_through_a_symlinked_config_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let dotfiles = dir.path().join("dotfiles");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&dotfiles).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let target = dotfiles.join("carpool.json");
        std::fs::write(&target, text(dir.path(), "key")).unwrap();
        let path = home.join("carpool.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let engine = Arc::new(Engine::new(Config::load(&path).unwrap()).unwrap());
        let watch = ConfigWatch::new(
            engine.clone(),
            Arc::new(ConfigFile::new(path)),
            Overrides::default(),
        );
        let task = engine.tasks().spawn(watch.run());
        // Give the watch a moment to be set up, then save the real file as an editor
        // does: a new file renamed over it, in its own directory.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let edited =
            text(dir.path(), "key").replace("\"users\"", "\"max_body_bytes\": 1234, \"users\"");
        std::fs::write(dotfiles.join("carpool.json.tmp"), edited).unwrap();
        std::fs::rename(dotfiles.join("carpool.json.tmp"), &target).unwrap();
        let mut applied = false;
        for _ in 0..100 {
            if engine.state().config.max_body_bytes == 1234 {
                applied = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        task.abort();
        engine.tasks().shutdown().await;
        assert!(applied, "the edit of the symlink's target was applied");
    }
}
