//! The documented config file `carpool serve` writes on first start.

use std::path::{Path, PathBuf};

use super::{ConfigError, DEFAULT_PORT};
use crate::auth::{TokenHash, generate_token};
use crate::fsutil::write_atomic;

/// What [`create_default`] made. The token exists only here: the file holds its hash.
pub struct CreatedConfig {
    pub path: PathBuf,
    pub user_name: String,
    pub token: String,
}

/// Writes a commented default config with one user `me` and a fresh token.
/// Refuses to overwrite an existing file.
pub fn create_default(path: &Path) -> Result<CreatedConfig, ConfigError> {
    let write_err = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        return Err(write_err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists",
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let token = generate_token();
    let text = render(&TokenHash::of(&token).to_config_string());
    write_atomic(path, text.as_bytes(), 0o600).map_err(write_err)?;
    Ok(CreatedConfig {
        path: path.to_owned(),
        user_name: "me".into(),
        token,
    })
}

fn render(token_hash: &str) -> String {
    format!(
        r#"// Carpool configuration: JSON, with // comments allowed.
// Every field is described in README.md ("Configuration"). Restart Carpool after editing.
{{
  // Address to listen on. 127.0.0.1 serves this machine only. To let your other
  // machines or friends connect, use "0.0.0.0" (every request then needs a user token).
  "listen": "127.0.0.1",
  "listen_port": {DEFAULT_PORT},

  // The Claude accounts Carpool relays to. "default" with no credential_path uses the
  // Claude Code login of this machine: $CLAUDE_CONFIG_DIR/.credentials.json, or
  // ~/.claude/.credentials.json. Run `claude` and log in once if it does not exist yet;
  // Carpool notices the file when it appears and refreshes its tokens for you.
  // More logins, API keys, pools (balancer, fallback), reserves and proxies: see
  // "Several accounts" in README.md.
  "credentials": [
    {{ "tag": "default" }}
  ],

  // Who may use Carpool. Only the SHA-256 of each token is stored here; the token
  // itself was printed once when this file was made. `carpool token` makes another:
  // add {{ "name": "...", "token_hash": "sha256:...", "credential": "default" }}.
  "users": [
    {{ "name": "me", "token_hash": "{token_hash}", "credential": "default" }}
  ],

  // Extra headers sent to the upstream; each replaces a same-named client header.
  "headers": {{}},

  // Largest request body accepted (64 MiB). Claude Code sends big contexts and images.
  "max_body_bytes": 67108864,

  "timeouts": {{
    "connect": "10s",        // TCP + TLS connect to the upstream
    "first_byte": "2m",      // until the upstream's response headers (streaming requests)
    "idle": "2m",            // longest silence between two chunks of a response
    "request": "10m",        // whole non-streaming request
    "shutdown_grace": "30s"  // on Ctrl-C / SIGTERM, time left for in-flight answers
  }}

  // Every request's tokens and cost are kept in a SQLite file; `carpool usage` shows
  // them. Optional settings (remove the // to use one):
  //   "database": "/path/to/usage.db",        default: <OS data dir>/carpool/usage.db
  //   "usages_path": "/path/to/usages.json",  also keep sing-box ccm's statistics file
  //   "prices": {{ "model-id": {{ "input": 3, "output": 15, "cache_read": 0.3,
  //               "cache_write_5m": 3.75, "cache_write_1h": 6 }} }}  USD per million tokens
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_default_config_parses_and_names_one_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        let created = create_default(&path).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.users.len(), 1);
        assert_eq!(config.users[0].name, created.user_name);
        assert_eq!(config.users[0].token_hash, TokenHash::of(&created.token));
        assert_eq!(config.listen.port(), DEFAULT_PORT);
        assert!(config.listen.ip().is_loopback());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&created.token),
            "the clear token must not be stored"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(create_default(&path).is_err(), "must not overwrite");
    }
}
