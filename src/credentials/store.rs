//! Where a login is kept: Claude Code's credentials file, Claude Code's Keychain item on a
//! Mac (with the file as fallback, [`super::keychain`]), or Carpool's secret store.
//!
//! A login made with `carpool login claude` (or the API's login) is held in the secret
//! store ([`crate::secrets`]) as the same JSON document Claude Code writes
//! (docs/protocol.md §1.2, plus the account's profile under `oauthAccount`), so both
//! places (and the Keychain item, which holds that document too) are read, compared and
//! written back by the same code: [`super::Credential`]
//! refreshes either through one single flight and saves the rotated tokens only if the
//! stored login is still the one it refreshed.
//!
//! The differences: a file is shared with the official CLI and watched; a Keychain item is
//! shared with it too but not watched (see [`super::keychain`] for what reads it again);
//! a stored login is
//! Carpool's alone, so nothing else rotates it and there is nothing to watch. Its write
//! is a read, a comparison and a replace (the keyring has no compare-and-swap; no other
//! program writes the entry). A keyring that cannot be read right now (locked, its
//! daemon restarting) counts as a passing read error: the tokens in use stay and the
//! read is retried.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Status;
use super::file::{self, Digest, Reader, Saved, Snapshot};
use super::format::{Change, LoginFormat};
use super::keychain::KeychainLogin;
use crate::secret::Secret;
use crate::secrets::{SecretRef, SecretStore};

pub enum LoginStore {
    /// A Claude Code credentials file.
    File(PathBuf),
    /// Claude Code's login on a Mac: its Keychain item, else its credentials file.
    Keychain(KeychainLogin),
    /// A login Carpool obtained, in its secret store.
    Secret {
        secrets: Arc<SecretStore>,
        reference: SecretRef,
    },
}

impl LoginStore {
    /// The file, for a file login.
    pub fn path(&self) -> Option<&Path> {
        match self {
            LoginStore::File(path) => Some(path),
            LoginStore::Keychain(_) | LoginStore::Secret { .. } => None,
        }
    }

    /// The file whose changes are watched: a file login's, or the file a Keychain login
    /// falls back to.
    pub fn watched_file(&self) -> Option<&Path> {
        match self {
            LoginStore::File(path) => Some(path),
            LoginStore::Keychain(k) => Some(k.file()),
            LoginStore::Secret { .. } => None,
        }
    }

    /// How often to read the login again while the account waits for one: the Keychain
    /// is not watched ([`super::keychain`]). `None`: a watched file or Carpool's own
    /// store, where nothing is missed.
    pub fn poll_while_waiting(&self) -> Option<std::time::Duration> {
        match self {
            LoginStore::Keychain(_) => Some(super::keychain::POLL_WHILE_WAITING),
            LoginStore::File(_) | LoginStore::Secret { .. } => None,
        }
    }

    /// What holds the login, for messages: "its credentials file /x", "Claude Code's
    /// login in the macOS Keychain (…)" or "its login in the OS keyring (…)".
    pub fn describe(&self) -> String {
        match self {
            LoginStore::File(path) => format!("its credentials file {}", path.display()),
            LoginStore::Keychain(k) => k.describe(),
            LoginStore::Secret { secrets, reference } => {
                format!("its login in {}", reference.describe(secrets))
            }
        }
    }

    /// A login's state in words, for the banner and the status snapshot: [`Status`]'s
    /// own for a file, which names the file; the login's for the others.
    pub fn status_words(&self, status: &Status) -> String {
        match (self, status) {
            (LoginStore::File(_), status) => status.to_string(),
            (LoginStore::Keychain(_), Status::Missing) => "waiting for Claude Code's login".into(),
            (LoginStore::Secret { .. }, Status::Missing) => "the stored login is gone".into(),
            (_, Status::Invalid(why)) => format!("invalid login: {why}"),
            (_, status) => status.to_string(),
        }
    }

    /// What to do when there is no Claude login at all (a credential words it through
    /// its [`LoginFormat`]).
    pub fn missing_hint(&self) -> &'static str {
        match self {
            LoginStore::File(_) => {
                "does not exist yet; run `claude` on the Carpool machine and log in"
            }
            LoginStore::Keychain(_) => "does not exist yet; run `claude` on this Mac and log in",
            LoginStore::Secret { .. } => {
                "is gone; log in again with `carpool login claude` (or the management API's login) and remove this account"
            }
        }
    }

    /// How to log in again when a Claude login's refresh token is dead.
    pub fn login_hint(&self) -> &'static str {
        match self {
            LoginStore::File(_) | LoginStore::Keychain(_) => {
                "log in again with `claude` on the Carpool machine"
            }
            LoginStore::Secret { .. } => "log in again with `carpool login claude`",
        }
    }

    /// Reads the login, a document in `format` (Claude Code's Keychain item is always
    /// Claude's). `Err`: a passing failure (try again later), with its reason.
    pub fn read(&self, format: LoginFormat, reader: &Reader) -> Result<Snapshot, String> {
        match self {
            LoginStore::File(path) => file::read_as(format, path, &**reader),
            LoginStore::Keychain(k) => k.read(reader),
            LoginStore::Secret { secrets, reference } => match secrets.get(reference) {
                Ok(Some(text)) => Ok(format.snapshot(text.expose().as_bytes())),
                Ok(None) => Ok(Snapshot {
                    read: file::FileRead::Missing,
                    digest: None,
                }),
                Err(e) => Err(format!("cannot be read right now: {e}")),
            },
        }
    }

    /// Whether rotated tokens could be saved; on failure, the directory that refused
    /// the write probe. A stored login can always be written (a failed write is retried
    /// like a file's).
    pub fn check_saveable(&self) -> Result<(), (PathBuf, io::Error)> {
        match self {
            LoginStore::File(path) => file::check_saveable(path),
            LoginStore::Keychain(k) => k.check_saveable(),
            LoginStore::Secret { .. } => Ok(()),
        }
    }

    /// Merges `update` into the stored login if it still has the digest `expected`;
    /// see [`file::write_back`].
    pub fn write_back(&self, expected: &Option<Digest>, update: &dyn Change) -> io::Result<Saved> {
        match self {
            LoginStore::File(path) => file::write_back(path, expected, update),
            LoginStore::Keychain(k) => k.write_back(expected, update),
            LoginStore::Secret { secrets, reference } => {
                let current = secrets.get(reference).map_err(io::Error::other)?;
                let current = current.as_ref().map(|s| s.expose().as_bytes());
                if current.map(file::digest) != *expected {
                    return Ok(Saved::Changed);
                }
                let text = update.apply(current)?;
                let value = String::from_utf8(text).map_err(io::Error::other)?;
                secrets
                    .set(reference, &Secret::new(value.clone()))
                    .map_err(io::Error::other)?;
                Ok(Saved::Written(update.format().snapshot(value.as_bytes())))
            }
        }
    }
}

impl std::fmt::Display for LoginStore {
    /// The file's path, the Keychain item, or the secret's reference: for log lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginStore::File(path) => write!(f, "{}", path.display()),
            LoginStore::Keychain(k) => write!(f, "{k}"),
            LoginStore::Secret { reference, .. } => write!(f, "{reference}"),
        }
    }
}
