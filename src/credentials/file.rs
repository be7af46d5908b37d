//! Claude Code's credentials file (protocol.md §1.2).
//!
//! ```json
//! {"claudeAiOauth": {"accessToken": "sk-ant-oat01-…", "refreshToken": "sk-ant-ort01-…",
//!                    "expiresAt": 1760000000000, "scopes": [...], "subscriptionType": "max", …},
//!  "mcpOAuth": {…}}
//! ```
//!
//! Reading takes only what Carpool needs. Writing back after a refresh changes only the
//! token fields and keeps every other field of the document (other top-level keys such
//! as `mcpOAuth`, and fields newer Claude Code versions add), the key order and the
//! file's permissions; it goes through a temporary file and a rename.

use std::path::Path;

use serde_json::{Map, Value};

use crate::fsutil::{file_mode, write_atomic};
use crate::secret::Secret;

const ROOT_KEY: &str = "claudeAiOauth";

/// The tokens of one Claude login.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OAuthTokens {
    pub access: Secret,
    pub refresh: Secret,
    /// Unix epoch milliseconds; 0 means "no expiry known, never refresh ahead".
    pub expires_at_ms: i64,
    pub subscription_type: Option<String>,
    /// `rateLimitTier`, e.g. `default_claude_max_20x`: which Max plan.
    pub rate_limit_tier: Option<String>,
}

/// What reading the file found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FileRead {
    Missing,
    /// Unreadable or not a Claude Code credentials file; the reason never holds secrets.
    Invalid(String),
    Loaded(OAuthTokens),
}

pub fn read(path: &Path) -> FileRead {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) => return FileRead::Invalid(format!("cannot read it: {e}")),
    };
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> FileRead {
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
    })
}

/// New tokens to store after a refresh.
pub struct Update<'a> {
    pub access: &'a Secret,
    pub refresh: &'a Secret,
    pub expires_at_ms: i64,
    pub scopes: Option<&'a [String]>,
}

/// Merges `update` into the document at `path` and replaces the file atomically.
///
/// If the file vanished or no longer parses, a minimal document is written: the refresh
/// token has rotated and the old one is revoked, so dropping the new one would lose the
/// account.
pub fn write_back(path: &Path, update: &Update<'_>) -> std::io::Result<()> {
    let mut doc = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
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
    let text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    write_atomic(path, &text, file_mode(path).unwrap_or(0o600))
}

/// Whether Carpool could save rotated tokens to `path`. Refreshing without being able to
/// save would leave only a revoked refresh token on disk.
pub fn is_writable(path: &Path) -> bool {
    std::fs::OpenOptions::new().append(true).open(path).is_ok()
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
        assert_eq!(read(&dir.path().join("nope.json")), FileRead::Missing);
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
        write_back(
            &path,
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
