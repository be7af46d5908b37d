//! Where the secrets Carpool obtains itself live: API keys pasted into the management
//! API or `carpool account add`, and the OAuth logins made with `carpool login claude`.
//!
//! They never go into the config file. The config refers to one by a [`SecretRef`], a
//! short string that names the place and never holds the value:
//!
//! * `keyring:<service>/<account>`: an entry of the OS keyring (Carpool writes service
//!   `carpool`). The Secret Service on Linux (GNOME Keyring, KWallet), the Keychain on
//!   macOS, the Credential Manager on Windows, through the `keyring` crate;
//! * `file:<id>`: the file `<data_dir>/secrets/<id>`, mode 0600 in a 0700 directory,
//!   written atomically. Where no keyring works: a headless server, a service account,
//!   a container.
//!
//! Which of the two a new secret goes to is decided once per process, by `secret_store`
//! in the config: `auto` (the default) tries the keyring with a probe entry (written,
//! read back and deleted) and falls back to files; `keyring` insists on the keyring;
//! `file` never touches it. Reading always follows the reference, whatever the setting,
//! so a secret stays readable where it was put.
//!
//! On Linux the keyring is the Secret Service, never the kernel keyring (keyutils): the
//! kernel's keys live in memory only and are gone after a reboot (and a service's session
//! keyring with the service), which would lose a login whose refresh token has rotated
//! since. The kernel keyring is used only by a test, for a real round trip through the
//! `keyring` crate where no Secret Service runs (CI, under `keyctl session -`). The real
//! Secret Service round trip is tests/secret_service.rs, which
//! scripts/secret-service-test.sh runs against a throwaway gnome-keyring.
//!
//! Values, errors and log lines: errors name the place (a keyring entry, a file path),
//! never the value.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::secret::Secret;

/// The keyring service name of the entries Carpool writes.
pub const KEYRING_SERVICE: &str = "carpool";
/// The directory under `data_dir` holding secrets when the keyring is not used.
pub const SECRETS_DIR: &str = "secrets";

/// Where the config says a secret is. The string form is what the config holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// An OS keyring entry.
    Keyring { service: String, account: String },
    /// `<data_dir>/secrets/<id>`.
    File(String),
}

impl SecretRef {
    /// Parses `keyring:<service>/<account>` or `file:<id>`. Names are letters, digits,
    /// `-`, `_` and `.` (not starting with a dot), so a `file:` reference cannot leave
    /// the secrets directory.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        let bad = || {
            format!(
                "`{text}` is not a secret reference; it looks like `keyring:carpool/<id>` or `file:<id>` \
                 (Carpool writes them when it stores a secret: `carpool account add`, `carpool login claude`)"
            )
        };
        if let Some(rest) = text.strip_prefix("keyring:") {
            let (service, account) = rest.split_once('/').ok_or_else(bad)?;
            if !is_name(service) || !is_name(account) {
                return Err(bad());
            }
            return Ok(SecretRef::Keyring {
                service: service.to_owned(),
                account: account.to_owned(),
            });
        }
        if let Some(id) = text.strip_prefix("file:") {
            if !is_name(id) {
                return Err(bad());
            }
            return Ok(SecretRef::File(id.to_owned()));
        }
        Err(bad())
    }

    /// Where the secret is, in words, for messages and the API (`secret_location`).
    pub fn describe(&self, store: &SecretStore) -> String {
        match self {
            SecretRef::Keyring { service, account } => {
                format!("the OS keyring (service `{service}`, account `{account}`)")
            }
            SecretRef::File(id) => store.file_path(id).display().to_string(),
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Keyring { service, account } => write!(f, "keyring:{service}/{account}"),
            SecretRef::File(id) => write!(f, "file:{id}"),
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Where new secrets go (`secret_store` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreChoice {
    /// The OS keyring when its probe works, else files.
    #[default]
    Auto,
    /// The OS keyring; storing fails if it does not work.
    Keyring,
    /// Files under `<data_dir>/secrets/`; the keyring is never touched for new secrets.
    File,
}

impl StoreChoice {
    pub fn parse(text: &str) -> Result<StoreChoice, String> {
        match text {
            "auto" => Ok(StoreChoice::Auto),
            "keyring" => Ok(StoreChoice::Keyring),
            "file" => Ok(StoreChoice::File),
            other => Err(format!(
                "unknown secret store `{other}`; use `auto`, `keyring` or `file`"
            )),
        }
    }
}

/// A failure of the place a secret is in. The message names the place, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// An OS keyring as Carpool uses it: get, set and delete a string by service and
/// account. [`OsKeyring`] in production; tests use [`MemoryKeyring`] or the kernel
/// keyring.
pub trait Keyring: Send + Sync {
    /// `Ok(None)`: no such entry.
    fn get(&self, service: &str, account: &str) -> Result<Option<String>, String>;
    fn set(&self, service: &str, account: &str, value: &str) -> Result<(), String>;
    /// Deleting an entry that does not exist is not an error.
    fn delete(&self, service: &str, account: &str) -> Result<(), String>;
}

/// Carpool's secrets: the keyring, the files, and the choice of where new ones go.
pub struct SecretStore {
    data_dir: PathBuf,
    choice: StoreChoice,
    keyring: Arc<dyn Keyring>,
    /// Whether the keyring works: probed once, when first needed.
    probed: OnceLock<Result<(), String>>,
}

/// Where new secrets go, as decided by [`SecretStore::new_secrets_go`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Keyring,
    /// In files; with the reason the keyring is not used, when it was tried.
    File {
        keyring_problem: Option<String>,
    },
}

impl SecretStore {
    /// The store of a config: `data_dir` and `secret_store`. Nothing is touched yet.
    pub fn new(data_dir: &Path, choice: StoreChoice) -> SecretStore {
        SecretStore::with_keyring(data_dir, choice, Arc::new(OsKeyring))
    }

    /// With another keyring (tests).
    pub fn with_keyring(
        data_dir: &Path,
        choice: StoreChoice,
        keyring: Arc<dyn Keyring>,
    ) -> SecretStore {
        SecretStore {
            data_dir: data_dir.to_owned(),
            choice,
            keyring,
            probed: OnceLock::new(),
        }
    }

    /// The OS keyring this store talks to (the memory one in tests): Claude Code's
    /// Keychain login on a Mac is read through it too (`credentials::keychain`).
    pub fn keyring(&self) -> Arc<dyn Keyring> {
        self.keyring.clone()
    }

    pub fn file_path(&self, id: &str) -> PathBuf {
        self.data_dir.join(SECRETS_DIR).join(id)
    }

    /// Where new secrets go. The first call probes the keyring (unless the choice is
    /// `file`): an entry is written, read back and deleted.
    pub fn new_secrets_go(&self) -> Placement {
        if self.choice == StoreChoice::File {
            return Placement::File {
                keyring_problem: None,
            };
        }
        match self.probed.get_or_init(|| self.probe()) {
            Ok(()) => Placement::Keyring,
            Err(why) => Placement::File {
                keyring_problem: Some(why.clone()),
            },
        }
    }

    fn probe(&self) -> Result<(), String> {
        let account = format!("probe-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let value = format!("carpool probe {:016x}", rand::random::<u64>());
        let result = (|| {
            self.keyring.set(KEYRING_SERVICE, &account, &value)?;
            let back = self.keyring.get(KEYRING_SERVICE, &account);
            let deleted = self.keyring.delete(KEYRING_SERVICE, &account);
            match back? {
                Some(v) if v == value => {}
                Some(_) => return Err("it returned another value than the one stored".into()),
                None => return Err("it lost the entry just stored".into()),
            }
            deleted
        })();
        match &result {
            Ok(()) => tracing::debug!("the OS keyring works; new secrets go there"),
            Err(why) => tracing::info!(
                "the OS keyring is not usable ({why}); new secrets go to files in {}",
                self.data_dir.join(SECRETS_DIR).display()
            ),
        }
        result
    }

    /// Stores `value` as a new secret and returns its reference. `name` (an account tag)
    /// makes the id readable; a random suffix makes it unique.
    pub fn store_new(&self, name: &str, value: &Secret) -> Result<SecretRef, SecretError> {
        let id = new_id(name);
        let reference = match self.new_secrets_go() {
            Placement::Keyring => SecretRef::Keyring {
                service: KEYRING_SERVICE.into(),
                account: id,
            },
            Placement::File { keyring_problem } => {
                if self.choice == StoreChoice::Keyring {
                    return Err(SecretError(format!(
                        "`secret_store` is `keyring`, but the OS keyring does not work: {}; \
                         set `secret_store` to `auto` or `file` to keep secrets in {} instead",
                        keyring_problem.unwrap_or_default(),
                        self.data_dir.join(SECRETS_DIR).display()
                    )));
                }
                SecretRef::File(id)
            }
        };
        self.set(&reference, value)?;
        Ok(reference)
    }

    /// The secret `reference` names; `Ok(None)` when it is not there (deleted, or a
    /// keyring that forgot it).
    pub fn get(&self, reference: &SecretRef) -> Result<Option<Secret>, SecretError> {
        match reference {
            SecretRef::Keyring { service, account } => self
                .keyring
                .get(service, account)
                .map(|v| v.map(Secret::new))
                .map_err(|e| {
                    SecretError(format!("cannot read {} ({e})", reference.describe(self)))
                }),
            SecretRef::File(id) => {
                let path = self.file_path(id);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(Secret::new(text))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(SecretError(format!("cannot read {}: {e}", path.display()))),
                }
            }
        }
    }

    /// Writes `value` where `reference` says, replacing what is there.
    pub fn set(&self, reference: &SecretRef, value: &Secret) -> Result<(), SecretError> {
        match reference {
            SecretRef::Keyring { service, account } => self
                .keyring
                .set(service, account, value.expose())
                .map_err(|e| {
                    SecretError(format!(
                        "cannot write to {} ({e})",
                        reference.describe(self)
                    ))
                }),
            SecretRef::File(id) => {
                let path = self.file_path(id);
                let dir = self.data_dir.join(SECRETS_DIR);
                crate::fsutil::create_private_dir(&dir)
                    .and_then(|()| {
                        crate::fsutil::write_atomic(&path, value.expose().as_bytes(), 0o600)
                    })
                    .map_err(|e| SecretError(format!("cannot write {}: {e}", path.display())))
            }
        }
    }

    /// Deletes the secret; one already gone is not an error.
    pub fn delete(&self, reference: &SecretRef) -> Result<(), SecretError> {
        match reference {
            SecretRef::Keyring { service, account } => {
                self.keyring.delete(service, account).map_err(|e| {
                    SecretError(format!(
                        "cannot delete from {} ({e})",
                        reference.describe(self)
                    ))
                })
            }
            SecretRef::File(id) => {
                let path = self.file_path(id);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(SecretError(format!(
                        "cannot delete {}: {e}",
                        path.display()
                    ))),
                }
            }
        }
    }
}

/// `<name>-<8 hex digits>`, with anything but letters, digits, `-` and `_` in the name
/// replaced by `-`.
fn new_id(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .take(48)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        clean.push_str("secret");
    }
    format!("{clean}-{:08x}", rand::random::<u32>())
}

/// The OS keyring through the `keyring` crate.
///
/// On Linux the crate talks to the Secret Service over D-Bus with zbus on tokio, which
/// must not be driven from a tokio worker thread (it would wait on itself: keyring-rs
/// issue 132). So every call runs on a thread of its own, inside a small private runtime
/// that zbus spawns its work on.
pub struct OsKeyring;

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
impl OsKeyring {
    fn run<T: Send>(op: impl FnOnce() -> keyring::Result<T> + Send) -> Result<T, String> {
        static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("carpool-keyring")
                .enable_all()
                .build()
                .ok()
        });
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _entered = runtime.as_ref().map(|r| r.enter());
                    op()
                })
                .join()
        })
        .map_err(|_| "the keyring call panicked".to_string())?
        .map_err(|e| keyring_error(&e))
    }
}

/// The `keyring` crate's error in words; its messages hold no secret values.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
fn keyring_error(error: &keyring::Error) -> String {
    match error {
        keyring::Error::NoStorageAccess(e) => format!("no keyring to talk to: {e}"),
        keyring::Error::PlatformFailure(e) => format!("the keyring failed: {e}"),
        other => other.to_string(),
    }
}

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
impl Keyring for OsKeyring {
    fn get(&self, service: &str, account: &str) -> Result<Option<String>, String> {
        OsKeyring::run(
            || match keyring::Entry::new(service, account)?.get_password() {
                Ok(v) => Ok(Some(v)),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(e),
            },
        )
    }

    fn set(&self, service: &str, account: &str, value: &str) -> Result<(), String> {
        OsKeyring::run(|| keyring::Entry::new(service, account)?.set_password(value))
    }

    fn delete(&self, service: &str, account: &str) -> Result<(), String> {
        OsKeyring::run(
            || match keyring::Entry::new(service, account)?.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(e),
            },
        )
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
impl Keyring for OsKeyring {
    fn get(&self, _: &str, _: &str) -> Result<Option<String>, String> {
        Err("Carpool has no keyring support on this system".into())
    }
    fn set(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err("Carpool has no keyring support on this system".into())
    }
    fn delete(&self, _: &str, _: &str) -> Result<(), String> {
        Err("Carpool has no keyring support on this system".into())
    }
}

/// A keyring in memory, for tests: it works, or fails every call with `broken`.
#[derive(Default)]
pub struct MemoryKeyring {
    entries: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
    pub broken: Option<String>,
}

impl MemoryKeyring {
    pub fn broken(why: &str) -> MemoryKeyring {
        MemoryKeyring {
            broken: Some(why.into()),
            ..MemoryKeyring::default()
        }
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        crate::tasks::lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self) -> Result<(), String> {
        match &self.broken {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

impl Keyring for MemoryKeyring {
    fn get(&self, service: &str, account: &str) -> Result<Option<String>, String> {
        self.check()?;
        Ok(crate::tasks::lock(&self.entries)
            .get(&(service.into(), account.into()))
            .cloned())
    }

    fn set(&self, service: &str, account: &str, value: &str) -> Result<(), String> {
        self.check()?;
        crate::tasks::lock(&self.entries).insert((service.into(), account.into()), value.into());
        Ok(())
    }

    fn delete(&self, service: &str, account: &str) -> Result<(), String> {
        self.check()?;
        crate::tasks::lock(&self.entries).remove(&(service.into(), account.into()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(choice: StoreChoice, keyring: Arc<dyn Keyring>) -> (tempfile::TempDir, SecretStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::with_keyring(&dir.path().join("data"), choice, keyring);
        (dir, store)
    }

    #[test]
    fn references_parse_and_print_the_same() {
        for text in ["keyring:carpool/work-1a2b3c4d", "file:work-1a2b3c4d"] {
            assert_eq!(SecretRef::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "sk-ant-api03-x",
            "keyring:carpool",
            "keyring:/x",
            "file:",
            "file:../x",
            "file:.hidden",
            "file:a/b",
            "vault:x",
        ] {
            let why = SecretRef::parse(bad).unwrap_err();
            assert!(why.contains("keyring:carpool/<id>"), "{why}");
        }
    }

    #[test]
    fn a_working_keyring_gets_new_secrets_and_the_files_stay_empty() {
        let keyring = Arc::new(MemoryKeyring::default());
        let (_dir, store) = store(StoreChoice::Auto, keyring.clone());
        let secret = Secret::new("sk-ant-api03-unit");
        let reference = store.store_new("work", &secret).unwrap();
        let SecretRef::Keyring { service, account } = &reference else {
            panic!("{reference:?}")
        };
        assert_eq!(service, KEYRING_SERVICE);
        assert!(account.starts_with("work-"), "{account}");
        assert_eq!(keyring.len(), 1, "the probe entry was deleted");
        assert_eq!(store.get(&reference).unwrap(), Some(secret));
        assert!(!store.data_dir.join(SECRETS_DIR).exists());
        store.delete(&reference).unwrap();
        assert_eq!(store.get(&reference).unwrap(), None);
        store.delete(&reference).unwrap();
        assert!(keyring.is_empty());
    }

    #[test]
    fn without_a_keyring_secrets_go_to_private_files() {
        let (_dir, store) = store(
            StoreChoice::Auto,
            Arc::new(MemoryKeyring::broken("no D-Bus session")),
        );
        assert_eq!(
            store.new_secrets_go(),
            Placement::File {
                keyring_problem: Some("no D-Bus session".into())
            }
        );
        let secret = Secret::new("sk-ant-api03-file");
        let reference = store.store_new("a b/c", &secret).unwrap();
        let SecretRef::File(id) = &reference else {
            panic!("{reference:?}")
        };
        assert!(id.starts_with("a-b-c-"), "{id}");
        let path = store.file_path(id);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "sk-ant-api03-file");
        #[cfg(unix)]
        {
            assert_eq!(crate::fsutil::file_mode(&path), Some(0o600));
            assert_eq!(
                crate::fsutil::file_mode(path.parent().unwrap()),
                Some(0o700)
            );
        }
        assert!(
            reference
                .describe(&store)
                .ends_with(&format!("secrets/{id}"))
        );
        let replaced = Secret::new("sk-ant-api03-new");
        store.set(&reference, &replaced).unwrap();
        assert_eq!(store.get(&reference).unwrap(), Some(replaced));
        store.delete(&reference).unwrap();
        assert!(!path.exists());
        assert_eq!(store.get(&reference).unwrap(), None);
    }

    #[test]
    fn the_choice_is_obeyed() {
        let keyring = Arc::new(MemoryKeyring::default());
        let (_dir, files) = store(StoreChoice::File, keyring.clone());
        assert!(matches!(
            files.store_new("x", &Secret::new("v")).unwrap(),
            SecretRef::File(_)
        ));
        assert!(keyring.is_empty(), "not even probed");

        let (_dir, insist) = store(
            StoreChoice::Keyring,
            Arc::new(MemoryKeyring::broken("locked")),
        );
        let error = insist
            .store_new("x", &Secret::new("sk-secret-value"))
            .unwrap_err();
        assert!(
            error.0.contains("locked") && error.0.contains("`secret_store`"),
            "{error}"
        );
        assert!(!error.0.contains("sk-secret-value"));
        assert!(!insist.data_dir.join(SECRETS_DIR).exists());
    }

    #[test]
    fn keyring_errors_name_the_entry_not_the_value() {
        let (_dir, store) = store(StoreChoice::Auto, Arc::new(MemoryKeyring::broken("gone")));
        let reference = SecretRef::parse("keyring:carpool/work-1").unwrap();
        let error = store.set(&reference, &Secret::new("sk-ant-x")).unwrap_err();
        assert!(error.0.contains("account `work-1`"), "{error}");
        assert!(!error.0.contains("sk-ant-x"));
        assert!(store.get(&reference).unwrap_err().0.contains("gone"));
    }

    /// The kernel keyring as the `keyring` crate sees it, with Carpool's probe and
    /// round trip. It needs a session keyring: scripts/test.sh runs the tests under
    /// `keyctl session -` where keyctl exists, and then requires it. Elsewhere it says it was
    /// skipped, loudly.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_keyring_round_trip_through_the_kernel_keyring() {
        struct Kernel;
        fn entry(service: &str, account: &str) -> keyring::Result<keyring::Entry> {
            let cred =
                keyring::keyutils::KeyutilsCredential::new_with_target(None, service, account)?;
            Ok(keyring::Entry::new_with_credential(Box::new(cred)))
        }
        impl Keyring for Kernel {
            fn get(&self, s: &str, a: &str) -> Result<Option<String>, String> {
                OsKeyring::run(|| match entry(s, a)?.get_password() {
                    Ok(v) => Ok(Some(v)),
                    Err(keyring::Error::NoEntry) => Ok(None),
                    Err(e) => Err(e),
                })
            }
            fn set(&self, s: &str, a: &str, v: &str) -> Result<(), String> {
                OsKeyring::run(|| entry(s, a)?.set_password(v))
            }
            fn delete(&self, s: &str, a: &str) -> Result<(), String> {
                OsKeyring::run(|| match entry(s, a)?.delete_credential() {
                    Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                    Err(e) => Err(e),
                })
            }
        }
        let (_dir, store) = store(StoreChoice::Keyring, Arc::new(Kernel));
        if let Placement::File { keyring_problem } = store.new_secrets_go() {
            let why = format!(
                "the kernel keyring does not work here ({}); run the tests under `keyctl session -`",
                keyring_problem.unwrap_or_default()
            );
            // scripts/test.sh sets this when it runs the tests in a session keyring, so that
            // a keyring that stopped working fails the run instead of skipping quietly.
            assert!(
                std::env::var_os("CARPOOL_REQUIRE_KEYRING").is_none(),
                "CARPOOL_REQUIRE_KEYRING is set but {why}"
            );
            println!("SKIPPED a_real_keyring_round_trip_through_the_kernel_keyring: {why}");
            return;
        }
        let secret = Secret::new("sk-ant-api03-kernel-round-trip");
        let reference = store.store_new("kernel", &secret).unwrap();
        assert!(matches!(reference, SecretRef::Keyring { .. }));
        assert_eq!(store.get(&reference).unwrap(), Some(secret));
        store.set(&reference, &Secret::new("v2")).unwrap();
        assert_eq!(store.get(&reference).unwrap(), Some(Secret::new("v2")));
        store.delete(&reference).unwrap();
        assert_eq!(store.get(&reference).unwrap(), None);
    }
}
