//! Claude Code's credentials file (docs/protocol.md §1.2).
//!
//! ```json
//! {"claudeAiOauth": {"accessToken": "sk-ant-oat01-…", "refreshToken": "sk-ant-ort01-…",
//!                    "expiresAt": 1760000000000, "scopes": [...], "subscriptionType": "max", …},
//!  "mcpOAuth": {…}}
//! ```
//!
//! Reading takes only what Carpool needs, plus a digest of the exact bytes so a later
//! write can tell whether the file changed in between. A read error that may pass by
//! itself (too many open files, I/O error, …) is reported apart from a real problem, so
//! the caller can keep its tokens and try again instead of calling the file invalid.
//!
//! Writing back after a refresh changes only the token fields and keeps every other
//! field of the document (other top-level keys such as `mcpOAuth`, and fields newer
//! Claude Code versions add), the key order and the file's permissions and owner. It
//! writes where the file really is (through symlinks, so a symlink stays one), goes
//! through a temporary file and a rename in that directory, and never replaces a file
//! that changed since the caller read it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::format::{Change, LoginFormat};
use crate::fsutil::{file_mode, write_atomic_if};
use crate::secret::Secret;

const ROOT_KEY: &str = "claudeAiOauth";
/// The profile of the account, as Claude Code names it in `~/.claude.json`.
pub const ACCOUNT_KEY: &str = "oauthAccount";

/// The tokens of one login (Claude's, or Codex's: [`super::codex`]).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct OAuthTokens {
    pub access: Secret,
    pub refresh: Secret,
    /// Unix epoch milliseconds; 0 means "no expiry known, never refresh ahead".
    pub expires_at_ms: i64,
    pub subscription_type: Option<String>,
    /// `rateLimitTier`, e.g. `default_claude_max_20x`: which Max plan.
    pub rate_limit_tier: Option<String>,
    /// `oauthAccount.emailAddress`: the account's email, in the logins Carpool stores
    /// itself (Claude Code keeps it in `~/.claude.json`, not in this file). Codex: the
    /// id_token's `email` claim.
    pub email: Option<String>,
    /// Codex: the OpenID `id_token`, whose claims give the plan, the email and the
    /// account id.
    pub id_token: Option<Secret>,
    /// Codex: `tokens.account_id`, else the id_token's `chatgpt_account_id` claim; sent
    /// upstream as `ChatGPT-Account-Id`.
    pub account_id: Option<String>,
    /// Codex: `last_refresh` as Unix ms; `None` when missing or unreadable.
    pub last_refresh_ms: Option<i64>,
    /// Codex in API-key mode: `access` is the file's `OPENAI_API_KEY`, never refreshed.
    pub api_key: bool,
}

/// What reading the file found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FileRead {
    Missing,
    /// Unreadable or not a login of the expected format; the reason never holds secrets.
    Invalid(String),
    Loaded(OAuthTokens),
}

/// SHA-256 of the file's bytes: compared, never shown.
pub type Digest = [u8; 32];

/// What the file held when it was read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Snapshot {
    pub read: FileRead,
    /// Digest of the exact bytes; `None` when there was no file.
    pub digest: Option<Digest>,
}

/// How the file's bytes are read: `std::fs::read`, or in tests a function that fails
/// on demand.
pub type Reader = Arc<dyn Fn(&Path) -> io::Result<Vec<u8>> + Send + Sync>;

pub fn fs_reader() -> Reader {
    Arc::new(|path: &Path| std::fs::read(path))
}

/// Reads the file. `Err` holds the reason of a transient failure (see [`is_transient`]):
/// the file may be fine, try again later. Anything else is an answer: missing, invalid
/// (with a reason that never holds secrets) or loaded.
#[cfg(test)]
pub fn read(path: &Path) -> Result<Snapshot, String> {
    read_with(path, &*fs_reader())
}

pub fn read_with(
    path: &Path,
    reader: &(dyn Fn(&Path) -> io::Result<Vec<u8>> + Send + Sync),
) -> Result<Snapshot, String> {
    read_as(LoginFormat::Claude, path, reader)
}

/// [`read_with`] for a document in `format`.
pub fn read_as(
    format: LoginFormat,
    path: &Path,
    reader: &(dyn Fn(&Path) -> io::Result<Vec<u8>> + Send + Sync),
) -> Result<Snapshot, String> {
    match reader(path) {
        Ok(bytes) => Ok(format.snapshot(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Snapshot {
            read: FileRead::Missing,
            digest: None,
        }),
        Err(e) if is_transient(&e) => Err(format!("cannot be read right now: {e}")),
        Err(e) => Ok(Snapshot {
            read: FileRead::Invalid(format!("cannot read it: {e}")),
            digest: None,
        }),
    }
}

/// Whether a read error may go away by itself: out of file descriptors (process or
/// system), an I/O error, interrupted, would block, timed out, out of memory. Permission
/// denied, "is a directory" and the like are not: they need someone to act.
pub fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(e.kind(), Interrupted | WouldBlock | TimedOut | OutOfMemory) {
        return true;
    }
    // EIO, ENFILE and EMFILE have no stable `ErrorKind`; their numbers are the same on
    // Linux, macOS and the BSDs.
    #[cfg(unix)]
    {
        const EIO: i32 = 5;
        const ENFILE: i32 = 23;
        const EMFILE: i32 = 24;
        matches!(e.raw_os_error(), Some(EIO | ENFILE | EMFILE))
    }
    #[cfg(not(unix))]
    false
}

pub fn digest(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// Claude Code's document ([`LoginFormat::Claude`]).
pub(super) fn parse(bytes: &[u8]) -> FileRead {
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        // serde_json's message names a line and column, never the content.
        Err(e) => return FileRead::Invalid(format!("not valid JSON ({e})")),
    };
    let Some(oauth) = doc.get(ROOT_KEY).and_then(Value::as_object) else {
        return FileRead::Invalid(format!(
            "no `{ROOT_KEY}` object: not a Claude Code login (log in with `claude`)"
        ));
    };
    let text = |key: &str| oauth.get(key).and_then(Value::as_str).unwrap_or("");
    let access = text("accessToken");
    if access.is_empty() {
        return FileRead::Invalid(format!("`{ROOT_KEY}.accessToken` is missing or empty"));
    }
    let expires_at_ms = match oauth.get("expiresAt") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)) {
            Some(ms) => ms,
            None => return FileRead::Invalid(format!("`{ROOT_KEY}.expiresAt` is not a number")),
        },
    };
    FileRead::Loaded(OAuthTokens {
        access: Secret::new(access),
        refresh: Secret::new(text("refreshToken")),
        expires_at_ms,
        subscription_type: oauth
            .get("subscriptionType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        rate_limit_tier: oauth
            .get("rateLimitTier")
            .and_then(Value::as_str)
            .map(str::to_owned),
        email: doc
            .pointer(&format!("/{ACCOUNT_KEY}/emailAddress"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..OAuthTokens::default()
    })
}

/// New tokens to store after a refresh.
pub struct Update<'a> {
    pub access: &'a Secret,
    pub refresh: &'a Secret,
    pub expires_at_ms: i64,
    pub scopes: Option<&'a [String]>,
}

impl Change for Update<'_> {
    fn format(&self) -> LoginFormat {
        LoginFormat::Claude
    }

    fn apply(&self, current: Option<&[u8]>) -> io::Result<Vec<u8>> {
        merge(current, self)
    }
}

/// What [`write_back`] did.
#[derive(Debug, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a short-lived answer, once per write; boxing buys nothing"
)]
pub enum Saved {
    /// The file now holds the update; this is what was written.
    Written(Snapshot),
    /// The file no longer holds what the caller expected: nothing was written.
    Changed,
}

/// Where writing to `path` really lands: `path` with every symlink resolved, so a
/// symlinked credentials file is updated in place of its target and stays a symlink.
/// A dangling symlink resolves to the file it names.
pub fn write_target(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let mut p = path.to_path_buf();
    // 40, as Linux's own limit on links followed for one path.
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(next) if next.is_absolute() => p = next,
            Ok(next) => p = p.parent().unwrap_or(Path::new(".")).join(next),
            Err(_) => break,
        }
    }
    p
}

/// Whether rotated tokens could be saved for `path`: a temporary file can be created
/// (and removed) in the directory of its [`write_target`], which the rename needs.
/// Opening the file itself for writing is not enough. On failure: that directory and
/// the error.
pub fn check_saveable(path: &Path) -> Result<(), (PathBuf, io::Error)> {
    let target = write_target(path);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(
        ".{}.carpool-probe-{}-{:08x}.tmp",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        rand::random::<u32>()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(file) => {
            drop(file);
            std::fs::remove_file(&probe).map_err(|e| (dir, e))
        }
        Err(e) => Err((dir, e)),
    }
}

/// Merges `update` (a change in any [`LoginFormat`]) into the document at `path` (through symlinks) and replaces it
/// atomically, but only if its bytes still have the digest `expected` (`None`: no file):
/// checked when reading it and once more just before the rename. Otherwise nothing is
/// written and the answer is [`Saved::Changed`].
///
/// If the expected document does not parse, a minimal document is written: the refresh
/// token has rotated and the old one is revoked, so dropping the new one would lose the
/// account.
pub fn write_back(
    path: &Path,
    expected: &Option<Digest>,
    update: &dyn Change,
) -> io::Result<Saved> {
    let target = write_target(path);
    let current = read_if_exists(&target)?;
    if current.as_deref().map(digest) != *expected {
        return Ok(Saved::Changed);
    }
    let text = update.apply(current.as_deref())?;
    let mode = file_mode(&target).unwrap_or(0o600);
    let mut unchanged = || Ok(read_if_exists(&target)?.as_deref().map(digest) == *expected);
    if !write_atomic_if(&target, &text, mode, &mut unchanged)? {
        return Ok(Saved::Changed);
    }
    Ok(Saved::Written(update.format().snapshot(&text)))
}

/// The document `current` (`None`: none yet) with `update`'s tokens in `claudeAiOauth`,
/// every other field and the key order kept. A document that does not parse gives way
/// to a minimal one: the refresh token has rotated and the old one is revoked, so
/// dropping the new one would lose the account.
pub fn merge(current: Option<&[u8]>, update: &Update<'_>) -> io::Result<Vec<u8>> {
    let mut doc = current
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let root = doc.as_object_mut().expect("checked above");
    let oauth = root
        .entry(ROOT_KEY)
        .or_insert_with(|| Value::Object(Map::new()));
    if !oauth.is_object() {
        *oauth = Value::Object(Map::new());
    }
    let oauth = oauth.as_object_mut().expect("set above");
    oauth.insert("accessToken".into(), update.access.expose().into());
    oauth.insert("refreshToken".into(), update.refresh.expose().into());
    oauth.insert("expiresAt".into(), update.expires_at_ms.into());
    if let Some(scopes) = update.scopes {
        oauth.insert("scopes".into(), scopes.into());
    }
    serde_json::to_vec_pretty(&doc).map_err(io::Error::other)
}

/// What a read of Claude Code's document `bytes` finds, with their digest.
pub fn snapshot_of(bytes: &[u8]) -> Snapshot {
    LoginFormat::Claude.snapshot(bytes)
}

fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{
  "claudeAiOauth": {
    "accessToken": "sk-ant-oat01-old",
    "refreshToken": "sk-ant-ort01-old",
    "expiresAt": 1700000000000,
    "scopes": ["user:inference"],
    "subscriptionType": "max",
    "rateLimitTier": "default_claude_max_20x",
    "refreshTokenExpiresAt": 1800000000000
  },
  "mcpOAuth": {"server": {"accessToken": "mcp-secret"}}
}"#;

    #[test]
    fn reads_the_claude_code_shape() {
        let FileRead::Loaded(t) = parse(FULL.as_bytes()) else {
            panic!("should load")
        };
        assert_eq!(t.access.expose(), "sk-ant-oat01-old");
        assert_eq!(t.refresh.expose(), "sk-ant-ort01-old");
        assert_eq!(t.expires_at_ms, 1_700_000_000_000);
        assert_eq!(t.subscription_type.as_deref(), Some("max"));
    }

    #[test]
    fn invalid_files_say_why_without_secrets() {
        let cases: [&[u8]; 4] = [
            b"not json sk-ant-oat01-x",
            br#"{"other": 1}"#,
            br#"{"claudeAiOauth": {"refreshToken": "sk-ant-ort01-x"}}"#,
            br#"{"claudeAiOauth": {"accessToken": "a", "expiresAt": "soon"}}"#,
        ];
        for case in cases {
            match parse(case) {
                FileRead::Invalid(reason) => assert!(!reason.contains("sk-ant"), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn missing_file_is_not_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let snap = read(&dir.path().join("nope.json")).unwrap();
        assert_eq!(snap.read, FileRead::Missing);
        assert_eq!(snap.digest, None);
    }

    fn update<'a>(access: &'a Secret, refresh: &'a Secret) -> Update<'a> {
        Update {
            access,
            refresh,
            expires_at_ms: 1_900_000_000_000,
            scopes: None,
        }
    }

    #[test]
    fn passing_read_errors_are_told_apart_from_real_ones() {
        #[cfg(unix)]
        for errno in [5, 23, 24] {
            // EIO, ENFILE, EMFILE
            assert!(
                is_transient(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for kind in [
            io::ErrorKind::Interrupted,
            io::ErrorKind::WouldBlock,
            io::ErrorKind::TimedOut,
            io::ErrorKind::OutOfMemory,
        ] {
            assert!(is_transient(&io::Error::from(kind)), "{kind:?}");
        }
        assert!(!is_transient(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
        #[cfg(unix)]
        {
            assert!(!is_transient(&io::Error::from_raw_os_error(13))); // EACCES
            assert!(!is_transient(&io::Error::from_raw_os_error(21))); // EISDIR
        }

        // Through `read_with`: EMFILE asks for a retry, EACCES is an answer.
        let emfile = |_: &Path| -> io::Result<Vec<u8>> { Err(io::Error::from_raw_os_error(24)) };
        let why = read_with(Path::new("/x"), &emfile).unwrap_err();
        assert!(why.contains("right now"), "{why}");
        let denied = |_: &Path| -> io::Result<Vec<u8>> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        };
        let snap = read_with(Path::new("/x"), &denied).unwrap();
        assert!(matches!(snap.read, FileRead::Invalid(_)), "{snap:?}");
    }

    #[test]
    fn a_directory_is_an_invalid_file_not_a_passing_error() {
        let dir = tempfile::tempdir().unwrap();
        let snap = read(dir.path()).unwrap();
        assert!(matches!(snap.read, FileRead::Invalid(_)), "{snap:?}");
    }

    #[test]
    fn write_back_never_replaces_a_file_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        std::fs::write(&path, FULL).unwrap();
        let before = read(&path).unwrap();
        let theirs = FULL.replace("sk-ant-ort01-old", "sk-ant-ort01-theirs");
        std::fs::write(&path, &theirs).unwrap();
        let (a, r) = (
            Secret::new("sk-ant-oat01-new"),
            Secret::new("sk-ant-ort01-new"),
        );
        let saved = write_back(&path, &before.digest, &update(&a, &r)).unwrap();
        assert_eq!(saved, Saved::Changed);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );

        // Expecting what is there now, it writes, and says what it wrote.
        let now = read(&path).unwrap();
        let Saved::Written(wrote) = write_back(&path, &now.digest, &update(&a, &r)).unwrap() else {
            panic!("should write")
        };
        assert_eq!(read(&path).unwrap(), wrote);
        let FileRead::Loaded(t) = wrote.read else {
            panic!("loaded")
        };
        assert_eq!(t.refresh.expose(), "sk-ant-ort01-new");
    }

    #[cfg(unix)]
    #[test]
    fn write_back_goes_through_a_symlink_and_keeps_it() {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let real = elsewhere.path().join("real.json");
        let link = home.path().join(".credentials.json");
        std::fs::write(&real, FULL).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(write_target(&link), std::fs::canonicalize(&real).unwrap());
        check_saveable(&link).unwrap();

        let snap = read(&link).unwrap();
        let (a, r) = (
            Secret::new("sk-ant-oat01-new"),
            Secret::new("sk-ant-ort01-new"),
        );
        let saved = write_back(&link, &snap.digest, &update(&a, &r)).unwrap();
        assert!(matches!(saved, Saved::Written(_)));
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let doc: Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
        assert_eq!(doc["claudeAiOauth"]["refreshToken"], "sk-ant-ort01-new");
        assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 1);

        // A dangling link (relative, through a second link) names the file it would be.
        std::fs::remove_file(&real).unwrap();
        let hop = home.path().join("hop");
        std::os::unix::fs::symlink("../gone/x.json", &hop).unwrap();
        let link2 = home.path().join("link2");
        std::os::unix::fs::symlink(&hop, &link2).unwrap();
        assert_eq!(write_target(&link2), home.path().join("../gone/x.json"),);
    }

    #[test]
    fn saveable_means_a_file_can_be_created_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        check_saveable(&path).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probe removed"
        );
        let nowhere = dir.path().join("no-such-dir").join(".credentials.json");
        let (where_, _) = check_saveable(&nowhere).unwrap_err();
        assert_eq!(where_, dir.path().join("no-such-dir"));
    }

    #[test]
    fn write_back_keeps_every_other_field_order_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        std::fs::write(&path, FULL).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let scopes = vec!["user:inference".to_string(), "user:profile".to_string()];
        let expected = read(&path).unwrap().digest;
        write_back(
            &path,
            &expected,
            &Update {
                access: &Secret::new("sk-ant-oat01-new"),
                refresh: &Secret::new("sk-ant-ort01-new"),
                expires_at_ms: 1_900_000_000_000,
                scopes: Some(&scopes),
            },
        )
        .unwrap();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let o = &doc["claudeAiOauth"];
        assert_eq!(o["accessToken"], "sk-ant-oat01-new");
        assert_eq!(o["refreshToken"], "sk-ant-ort01-new");
        assert_eq!(o["expiresAt"], 1_900_000_000_000i64);
        assert_eq!(o["scopes"][1], "user:profile");
        assert_eq!(o["rateLimitTier"], "default_claude_max_20x");
        assert_eq!(o["refreshTokenExpiresAt"], 1_800_000_000_000i64);
        assert_eq!(doc["mcpOAuth"]["server"]["accessToken"], "mcp-secret");
        let keys: Vec<_> = o.as_object().unwrap().keys().cloned().collect();
        assert_eq!(&keys[..3], ["accessToken", "refreshToken", "expiresAt"]);
        #[cfg(unix)]
        assert_eq!(file_mode(&path), Some(0o640));
    }
}
