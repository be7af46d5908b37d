//! The config file Carpool runs from, and the one way Carpool writes it.
//!
//! Every change Carpool makes to its config (the management API, `carpool user …`,
//! `carpool pool …`, accounts added by a login) goes through [`ConfigFile::edit`] (with a
//! running engine: `Engine::edit_config`) or, without one, [`edit_file`]:
//!
//! 1. lock (edits and the watcher's readings take turns);
//! 2. read the file; if its SHA-256 is not the one Carpool last read or wrote, refuse
//!    with [`EditError::Conflict`]: someone edited it by hand and the watcher has not
//!    applied that yet, so writing now would build on a text Carpool never checked (or
//!    overwrite the hand edit). The watcher applies it within a moment; then try again;
//! 3. make the edit on the comment-preserving document ([`ConfigDoc`]);
//! 4. validate the new text with [`Config::parse`]: a problem is [`EditError::Invalid`]
//!    naming the field, and the file is not touched;
//! 5. write it atomically, keeping the file's mode (and, through a symlink, writing the
//!    file it points to). Just before the rename the file is read once more: a hand edit
//!    saved meanwhile is a conflict too, never overwritten;
//! 6. record the new digest, so that the watcher, woken by this very write, sees a text
//!    it already knows and does not apply it a second time;
//! 7. apply it to the running engine. If the engine refuses (a new `listen` address that
//!    cannot be had), the old text is put back: the file and the running configuration
//!    never disagree because of an edit.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::edit::{ConfigDoc, EditError};
use super::{Config, ConfigError};
use crate::fsutil::{file_mode, write_atomic, write_atomic_if};

/// SHA-256 of a text, as recorded in [`ConfigFile`].
pub type TextDigest = [u8; 32];

pub fn digest(text: &[u8]) -> TextDigest {
    Sha256::digest(text).into()
}

/// The config file of a running Carpool: where it is, and the SHA-256 of the text
/// Carpool last read (the watcher, applied or refused) or wrote (an edit). Shared by the
/// watcher and the edits, so a hand edit the watcher has read counts as read.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    /// `None` until the file was read, or after a reading failed (it vanished).
    last: Mutex<Option<TextDigest>>,
}

impl ConfigFile {
    /// The config at `path`, taken as read as it is now: call it right after loading the
    /// config the engine starts with.
    pub fn new(path: PathBuf) -> ConfigFile {
        let last = std::fs::read(&path).ok().map(|t| digest(&t));
        ConfigFile {
            path,
            last: Mutex::new(last),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds the file for one reading and its application (the config watcher), so no
    /// edit runs in between. The guard is the digest of the text last read or written;
    /// the reader sets it to what it read.
    pub fn lock(&self) -> MutexGuard<'_, Option<TextDigest>> {
        crate::tasks::lock(&self.last)
    }

    /// Makes an edit of the config file (see the module's steps). `edit` changes the
    /// document and returns what the caller wants back from it (say, the new user's
    /// name); `apply` gets the validated new config and makes it run, returning what it
    /// wants the caller to have (say, what changed), or an error to put the file back.
    /// On any error the file is as it was.
    pub fn edit<T, R>(
        &self,
        edit: impl FnOnce(&mut ConfigDoc) -> Result<T, EditError>,
        apply: impl FnOnce(Config) -> Result<R, EditError>,
    ) -> Result<(T, R), EditError> {
        let mut last = self.lock();
        let made = prepare(&self.path, edit)?;
        if *last != Some(digest(made.old.as_bytes())) {
            return Err(EditError::Conflict {
                path: self.path.clone(),
            });
        }
        let unchanged = made.unchanged();
        if !unchanged {
            made.write(&self.path)?;
            *last = Some(digest(made.new.as_bytes()));
        }
        match apply(made.config) {
            Ok(applied) => Ok((made.value, applied)),
            Err(error) if unchanged => Err(error),
            Err(error) => {
                // Put the old text back, so the file says what runs.
                match write_atomic(&made.target, made.old.as_bytes(), made.mode) {
                    Ok(()) => *last = Some(digest(made.old.as_bytes())),
                    Err(e) => tracing::error!(
                        "the running Carpool refused an edit of {} ({error}) and the old text could not be put back: {e}",
                        self.path.display()
                    ),
                }
                Err(error)
            }
        }
    }
}

/// [`ConfigFile::edit`] without a running engine (the command line): the text read now
/// is the base, the edit is validated and written the same way, and a running
/// `carpool serve` applies it by watching the file. Returns `edit`'s value and the new
/// config.
pub fn edit_file<T>(
    path: &Path,
    edit: impl FnOnce(&mut ConfigDoc) -> Result<T, EditError>,
) -> Result<(T, Config), EditError> {
    let made = prepare(path, edit)?;
    if !made.unchanged() {
        made.write(path)?;
    }
    Ok((made.value, made.config))
}

/// An edit made on the text and validated, not yet written.
struct Made<T> {
    value: T,
    old: String,
    new: String,
    config: Config,
    /// The file written: the config's path, or the file its symlink leads to.
    target: PathBuf,
    mode: u32,
}

impl<T> Made<T> {
    fn unchanged(&self) -> bool {
        self.old == self.new
    }

    /// Writes the new text atomically, unless the file changed since it was read.
    fn write(&self, path: &Path) -> Result<(), EditError> {
        let read = digest(self.old.as_bytes());
        let written = write_atomic_if(
            &self.target,
            self.new.as_bytes(),
            self.mode,
            // A hand edit saved while this one was made is not overwritten.
            &mut || Ok(std::fs::read(&self.target).map(|t| digest(&t))? == read),
        )
        .map_err(|source| {
            EditError::Io(ConfigError::Write {
                path: path.to_owned(),
                source,
            })
        })?;
        if written {
            Ok(())
        } else {
            Err(EditError::Conflict {
                path: path.to_owned(),
            })
        }
    }
}

/// Reads the file, makes the edit and validates the result.
fn prepare<T>(
    path: &Path,
    edit: impl FnOnce(&mut ConfigDoc) -> Result<T, EditError>,
) -> Result<Made<T>, EditError> {
    let read_error = |source| {
        EditError::Io(ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    // An editor keeps a symlinked config (a dotfiles repository) a symlink by writing
    // the file it points to; so does Carpool.
    let target = std::fs::canonicalize(path).map_err(read_error)?;
    let bytes = std::fs::read(&target).map_err(read_error)?;
    let old = String::from_utf8(bytes)
        .map_err(|_| EditError::invalid("(file)", "the config file is not UTF-8 text"))?;
    let mut doc = ConfigDoc::parse(&old)?;
    let value = edit(&mut doc)?;
    let new = doc.text();
    let config = Config::parse(&new, path)?;
    Ok(Made {
        value,
        old,
        new,
        config,
        mode: file_mode(&target).unwrap_or(0o600),
        target,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config_text(dir: &Path) -> String {
        format!(
            r#"// hand-written
{{
  "database": "{}",
  "data_dir": "{}",
  "credentials": [{{"tag": "key", "type": "api_key", "api_key": "sk-ant-api03-x"}}],
  /* the users */
  "users": [
    {{ "name": "alice", "token_hash": "sha256:{}", "credential": "key" }}
  ]
}}
"#,
            dir.join("usage.db").display(),
            dir.display(),
            "a".repeat(64)
        )
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carpool.json");
        std::fs::write(&path, config_text(dir.path())).unwrap();
        (dir, path)
    }

    fn set_max_body(n: u64) -> impl FnOnce(&mut ConfigDoc) -> Result<(), EditError> {
        move |doc| doc.set(&["max_body_bytes"], &json!(n))
    }

    #[test]
    fn an_edit_is_validated_written_and_recorded() {
        let (_dir, path) = setup();
        let before = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let file = ConfigFile::new(path.clone());
        let ((), max) = file
            .edit(set_max_body(1000), |config| Ok(config.max_body_bytes))
            .unwrap();
        assert_eq!(max, 1000);
        let after = std::fs::read_to_string(&path).unwrap();
        // Everything up to the end of `users` is untouched.
        assert!(after.starts_with(&before[..before.rfind(']').unwrap() + 1]));
        assert!(after.contains("\"max_body_bytes\": 1000"), "{after}");
        assert_eq!(*file.lock(), Some(digest(after.as_bytes())));
        #[cfg(unix)]
        assert_eq!(file_mode(&path), Some(0o640));
        // And the next edit builds on it.
        file.edit(set_max_body(2000), |_| Ok(())).unwrap();
        assert_eq!(Config::load(&path).unwrap().max_body_bytes, 2000);
    }

    #[test]
    fn an_invalid_edit_names_the_field_and_leaves_the_file() {
        let (_dir, path) = setup();
        let before = std::fs::read(&path).unwrap();
        let file = ConfigFile::new(path.clone());
        let err = file
            .edit(
                |doc| {
                    let users = doc.users()?;
                    users
                        .get("alice", "user")?
                        .set("credential", &json!("nope"));
                    Ok(())
                },
                |_| -> Result<(), EditError> { panic!("not applied") },
            )
            .unwrap_err();
        match &err {
            EditError::Invalid { field, problem } => {
                assert_eq!(field, "users[0].credential");
                assert!(problem.contains("nope"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_hand_edit_not_yet_read_is_a_conflict_until_it_is() {
        let (_dir, path) = setup();
        let file = ConfigFile::new(path.clone());
        let hand = config_text(path.parent().unwrap()).replace("hand-written", "edited by hand");
        std::fs::write(&path, &hand).unwrap();
        let err = file.edit(set_max_body(1000), |_| Ok(())).unwrap_err();
        assert!(matches!(err, EditError::Conflict { .. }), "{err:?}");
        assert!(err.to_string().contains("changed on disk"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), hand);
        // The watcher reads it: now it is known, and the edit goes on top of it.
        *file.lock() = Some(digest(hand.as_bytes()));
        file.edit(set_max_body(1000), |_| Ok(())).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.contains("edited by hand") && after.contains("1000"));
    }

    #[test]
    fn a_refused_apply_puts_the_old_text_back() {
        let (_dir, path) = setup();
        let before = std::fs::read(&path).unwrap();
        let file = ConfigFile::new(path.clone());
        let err = file
            .edit(set_max_body(1000), |_| -> Result<(), EditError> {
                Err(EditError::Refused("no".into()))
            })
            .unwrap_err();
        assert!(matches!(err, EditError::Refused(_)));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(*file.lock(), Some(digest(&before)));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_config_stays_a_symlink() {
        let (dir, target) = setup();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let ((), config) = edit_file(&link, set_max_body(4321)).unwrap();
        assert_eq!(config.max_body_bytes, 4321);
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(Config::load(&target).unwrap().max_body_bytes, 4321);
    }

    #[test]
    fn without_an_engine_the_text_read_now_is_the_base() {
        let (_dir, path) = setup();
        let ((), config) = edit_file(&path, set_max_body(77)).unwrap();
        assert_eq!(config.max_body_bytes, 77);
        let err = edit_file(&path, |doc| {
            doc.users()?.get("carol", "user")?;
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, EditError::NotFound(_)), "{err:?}");
        let missing = path.with_file_name("missing.json");
        assert!(matches!(
            edit_file(&missing, set_max_body(1)),
            Err(EditError::Io(ConfigError::Read { .. }))
        ));
    }
}
