//! Claude Code's login in the macOS Keychain (docs/protocol.md §1.3): where a Mac keeps
//! the login that Linux keeps in `~/.claude/.credentials.json`.
//!
//! Claude Code writes a generic-password item whose service is `Claude Code-credentials`
//! (`Claude Code-credentials-<8 hex digits>` when `CLAUDE_CONFIG_DIR` is set), whose
//! account is the user name, and whose payload is the JSON document of the file
//! (§1.2); which item that is, from the environment, is [`crate::config::keychain`]'s.
//! [`KeychainLogin`] reads it through Carpool's [`Keyring`] trait (the `keyring`
//! crate's default store on a Mac, the Keychain; [`crate::secrets::MemoryKeyring`] in
//! tests), so the same code is compiled and tested on every OS; only the choice of this
//! source (`config::claude_code_login`) depends on the OS.
//!
//! As sing-box does on macOS with no explicit `credential_path`:
//!
//! * reading: the item, else the credentials file (an older Claude Code, or one that
//!   could not use the Keychain, keeps it there). With `CLAUDE_CONFIG_DIR` set, the
//!   suffixed item is looked up first and then the unsuffixed one, since which string
//!   Claude Code hashes is not confirmed (§1.3);
//! * writing refreshed tokens back: where the login was found, the item or the file,
//!   with every other field of the document kept (`file::merge`, so `mcpOAuth` and the
//!   rest survive; sing-box writes only `claudeAiOauth` to the item and drops them).
//!   Like a file, the item is compared before it is replaced: read again, and replaced
//!   only if its bytes are still the ones the refresh started from. The Keychain has no
//!   compare-and-swap, so a write by Claude Code between that read and ours can still be
//!   overwritten, the same narrow window as a file's rename;
//! * a Keychain that cannot be read right now (locked, access refused, the security
//!   daemon restarting) is a passing read error, as for a file: the tokens in use stay,
//!   the read is retried, and the file is *not* used instead (it may hold an older
//!   login whose refresh token has rotated since).
//!
//! The Keychain is not watched (sing-box does not either; there is no change
//! notification for another program's item that Carpool could use). What reads the item
//! again: every refresh, before it starts and after the token endpoint answers
//! ([`super::Credential::access_token`] re-reads its login first, so tokens Claude Code
//! rotated on this Mac are adopted instead of refreshed again); a 401 from the upstream
//! (the rejected token forces that same path); the watcher of the fallback file, on each
//! change of the file and on each retry; and, while the account waits for a login (none,
//! an invalid one, or one whose refresh token was refused), a look every
//! [`POLL_WHILE_WAITING`], so logging in with `claude` is noticed without a restart.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(test)]
use super::file::Update;
use super::file::{self, Digest, FileRead, Reader, Saved, Snapshot};
use super::format::Change;
pub use crate::config::keychain::{KeychainItem, SERVICE};
use crate::secrets::Keyring;
use crate::tasks::lock;

/// How often the Keychain is read while the account waits for a login (it is not
/// watched).
pub const POLL_WHILE_WAITING: Duration = Duration::from_secs(5);

/// Where the last read found the login.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// Not read yet, or nowhere: neither an item nor the file.
    Nowhere,
    /// In the item of this service (or that item could not be read).
    Item(String),
    /// In the credentials file (or the file could not be read).
    File,
}

/// Claude Code's login on a Mac: its Keychain item, else its credentials file.
pub struct KeychainLogin {
    keyring: Arc<dyn Keyring>,
    item: KeychainItem,
    file: PathBuf,
    found: Mutex<Found>,
}

impl KeychainLogin {
    pub fn new(keyring: Arc<dyn Keyring>, item: KeychainItem, file: PathBuf) -> KeychainLogin {
        KeychainLogin {
            keyring,
            item,
            file,
            found: Mutex::new(Found::Nowhere),
        }
    }

    /// The credentials file the login falls back to.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Reads the item (each service in turn), else the file. `Err`: a passing failure.
    pub fn read(&self, reader: &Reader) -> Result<Snapshot, String> {
        for service in &self.item.services {
            let got = self.keyring.get(service, &self.item.account);
            if !matches!(got, Ok(None)) {
                *lock(&self.found) = Found::Item(service.clone());
            }
            match got {
                Ok(Some(text)) => return Ok(file::snapshot_of(text.as_bytes())),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot be read right now: {e}")),
            }
        }
        let snapshot = file::read_with(&self.file, &**reader);
        *lock(&self.found) = match &snapshot {
            Ok(Snapshot {
                read: FileRead::Missing,
                ..
            }) => Found::Nowhere,
            _ => Found::File,
        };
        snapshot
    }

    /// Merges `update` into the login where it is now, if its bytes still have the
    /// digest `expected`: into the item when there is one, else into the file (see
    /// [`file::write_back`]). A login that moved (an item that appeared, or went away)
    /// no longer has the expected digest there: [`Saved::Changed`], and the caller
    /// adopts what it finds.
    pub fn write_back(&self, expected: &Option<Digest>, update: &dyn Change) -> io::Result<Saved> {
        for service in &self.item.services {
            let current = self
                .keyring
                .get(service, &self.item.account)
                .map_err(|e| io::Error::other(format!("{}: {e}", self.item_words(service))))?;
            let Some(current) = current else { continue };
            if Some(file::digest(current.as_bytes())) != *expected {
                return Ok(Saved::Changed);
            }
            let text = update.apply(Some(current.as_bytes()))?;
            let text = String::from_utf8(text).map_err(io::Error::other)?;
            self.keyring
                .set(service, &self.item.account, &text)
                .map_err(|e| io::Error::other(format!("{}: {e}", self.item_words(service))))?;
            return Ok(Saved::Written(update.format().snapshot(text.as_bytes())));
        }
        file::write_back(&self.file, expected, update)
    }

    /// Whether rotated tokens could be saved: always into an item (a failed write is
    /// retried); into the file as [`file::check_saveable`] says.
    pub fn check_saveable(&self) -> Result<(), (PathBuf, io::Error)> {
        match &*lock(&self.found) {
            Found::File => file::check_saveable(&self.file),
            Found::Item(_) | Found::Nowhere => Ok(()),
        }
    }

    /// What holds the login, for messages: the item or the file it was found in.
    pub fn describe(&self) -> String {
        match &*lock(&self.found) {
            Found::Item(service) => format!("Claude Code's login in {}", self.item_words(service)),
            Found::File => format!("its credentials file {}", self.file.display()),
            Found::Nowhere => format!(
                "Claude Code's login (in {}, or in {})",
                self.item.describe(),
                self.file.display()
            ),
        }
    }

    fn item_words(&self, service: &str) -> String {
        format!(
            "the macOS Keychain (service `{service}`, account `{}`)",
            self.item.account
        )
    }
}

impl std::fmt::Display for KeychainLogin {
    /// For log lines and the banner: where the login was found.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*lock(&self.found) {
            Found::Item(service) => write!(
                f,
                "macOS Keychain: service `{service}`, account `{}`",
                self.item.account
            ),
            Found::File => write!(f, "{}", self.file.display()),
            Found::Nowhere => write!(
                f,
                "macOS Keychain: service `{}`, account `{}`; else {}",
                self.item.services.join("` or `"),
                self.item.account,
                self.file.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::secrets::MemoryKeyring;

    const HOUR_MS: i64 = 3_600_000;

    fn login(access: &str, refresh: &str) -> String {
        serde_json::json!({
            "claudeAiOauth": {"accessToken": access, "refreshToken": refresh,
                              "expiresAt": 1_900_000_000_000i64 + HOUR_MS, "subscriptionType": "max"},
            "mcpOAuth": {"github": {"accessToken": "mcp-keep-me"}}})
        .to_string()
    }

    fn item(services: &[&str]) -> KeychainItem {
        KeychainItem {
            services: services.iter().map(|s| s.to_string()).collect(),
            account: "alice".into(),
        }
    }

    fn tokens(snapshot: &Snapshot) -> (String, String) {
        match &snapshot.read {
            FileRead::Loaded(t) => (t.access.expose().into(), t.refresh.expose().into()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_suffixed_item_then_the_unsuffixed_one_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        std::fs::write(&path, login("sk-ant-oat01-file", "sk-ant-ort01-file")).unwrap();
        let keyring = Arc::new(MemoryKeyring::default());
        let source = KeychainLogin::new(
            keyring.clone(),
            item(&["Claude Code-credentials-03abf0ee", SERVICE]),
            path.clone(),
        );
        let reader = file::fs_reader();

        assert_eq!(
            tokens(&source.read(&reader).unwrap()).0,
            "sk-ant-oat01-file"
        );
        assert_eq!(
            source.describe(),
            format!("its credentials file {}", path.display())
        );

        keyring
            .set(
                SERVICE,
                "alice",
                &login("sk-ant-oat01-plain", "sk-ant-ort01-plain"),
            )
            .unwrap();
        assert_eq!(
            tokens(&source.read(&reader).unwrap()).0,
            "sk-ant-oat01-plain"
        );
        assert_eq!(
            source.describe(),
            "Claude Code's login in the macOS Keychain (service `Claude Code-credentials`, account `alice`)"
        );

        keyring
            .set(
                "Claude Code-credentials-03abf0ee",
                "alice",
                &login("sk-ant-oat01-suffixed", "sk-ant-ort01-suffixed"),
            )
            .unwrap();
        assert_eq!(
            tokens(&source.read(&reader).unwrap()).0,
            "sk-ant-oat01-suffixed"
        );
        // Another user's item is not ours.
        let other = KeychainLogin::new(
            keyring,
            KeychainItem {
                account: "bob".into(),
                ..item(&[SERVICE])
            },
            dir.path().join("none.json"),
        );
        assert_eq!(other.read(&reader).unwrap().read, FileRead::Missing);
        let words = other.describe();
        assert!(
            words.contains("`Claude Code-credentials`, account `bob`")
                && words.contains("none.json"),
            "{words}"
        );
    }

    #[test]
    fn a_write_back_goes_where_the_login_is_and_only_over_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        let keyring = Arc::new(MemoryKeyring::default());
        let source = KeychainLogin::new(keyring.clone(), item(&[SERVICE]), path.clone());
        let reader = file::fs_reader();
        let (access, refresh) = (
            Secret::new("sk-ant-oat01-new"),
            Secret::new("sk-ant-ort01-new"),
        );
        let update = Update {
            access: &access,
            refresh: &refresh,
            expires_at_ms: 1_900_000_000_000,
            scopes: None,
        };

        keyring
            .set(
                SERVICE,
                "alice",
                &login("sk-ant-oat01-old", "sk-ant-ort01-old"),
            )
            .unwrap();
        let read = source.read(&reader).unwrap();
        let Saved::Written(wrote) = source.write_back(&read.digest, &update).unwrap() else {
            panic!("written")
        };
        let stored = keyring.get(SERVICE, "alice").unwrap().unwrap();
        assert_eq!(wrote, file::snapshot_of(stored.as_bytes()));
        let doc: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(doc["claudeAiOauth"]["refreshToken"], "sk-ant-ort01-new");
        assert_eq!(doc["claudeAiOauth"]["subscriptionType"], "max");
        assert_eq!(doc["mcpOAuth"]["github"]["accessToken"], "mcp-keep-me");
        assert!(!path.exists(), "the file is not written");

        // The item changed since: nothing is written.
        let before = keyring.get(SERVICE, "alice").unwrap();
        assert_eq!(
            source.write_back(&read.digest, &update).unwrap(),
            Saved::Changed
        );
        assert_eq!(keyring.get(SERVICE, "alice").unwrap(), before);

        // The item went away: the login read from it is not written into the file.
        keyring.delete(SERVICE, "alice").unwrap();
        assert_eq!(
            source.write_back(&wrote.digest, &update).unwrap(),
            Saved::Changed
        );
        assert!(!path.exists());
    }

    #[test]
    fn a_keychain_that_cannot_be_read_is_a_passing_error_and_the_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        std::fs::write(&path, login("sk-ant-oat01-file", "sk-ant-ort01-file")).unwrap();
        let source = KeychainLogin::new(
            Arc::new(MemoryKeyring::broken("the keychain is locked")),
            item(&[SERVICE]),
            path.clone(),
        );
        let why = source.read(&file::fs_reader()).unwrap_err();
        assert_eq!(why, "cannot be read right now: the keychain is locked");
        assert!(
            source.describe().contains("macOS Keychain"),
            "{}",
            source.describe()
        );
        let (access, refresh) = (
            Secret::new("sk-ant-oat01-new"),
            Secret::new("sk-ant-ort01-new"),
        );
        let update = Update {
            access: &access,
            refresh: &refresh,
            expires_at_ms: 1,
            scopes: None,
        };
        let error = source
            .write_back(&Some(file::digest(b"x")), &update)
            .unwrap_err();
        assert!(error.to_string().contains("locked"), "{error}");
        assert!(!error.to_string().contains("sk-ant-"), "{error}");
        assert_eq!(
            tokens(&file::read(&path).unwrap()).1,
            "sk-ant-ort01-file",
            "the file is left alone"
        );
    }
}
