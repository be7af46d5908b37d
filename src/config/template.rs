//! The documented config file `carpool serve` writes on first start.

use std::path::{Path, PathBuf};

use super::{ConfigError, DEFAULT_PORT};
use crate::fsutil::write_atomic;
use crate::secret::{TokenHash, generate_token};

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
        r#"// Carpool configuration: JSON, with // and /* */ comments allowed.
// Every field is described in README.md ("Configuration"). A running Carpool applies
// an edit as soon as the file is saved (a few settings need a restart; the log says so).
{{
  // Address to listen on. 127.0.0.1 serves this machine only. To let your other
  // machines or friends connect, use "0.0.0.0" (every request then needs a user token).
  "listen": "127.0.0.1",
  "listen_port": {DEFAULT_PORT},

  // The Claude accounts Carpool relays to. "default" with no credential_path uses the
  // Claude Code login of this machine: on macOS its Keychain item, else (and elsewhere)
  // $CLAUDE_CONFIG_DIR/.credentials.json, or ~/.claude/.credentials.json. Run `claude`
  // and log in once if it does not exist yet; Carpool notices the login when it appears
  // and refreshes its tokens for you.
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

  // Optional settings. To use one, delete the // at the start of its line and change
  // the value; keep the comma at its end.
  //
  // Carpool's own data: the usage database, the admin secret's hash, and secrets when
  // this machine has no keyring. Default: $CARPOOL_DATA_DIR, else <OS data dir>/carpool.
  // "data_dir": "/path/to/carpool-data",
  //
  // The SQLite file keeping every request's tokens and cost (`carpool usage` shows
  // them). Default: <data_dir>/usage.db.
  // "database": "/path/to/usage.db",
  //
  // Also keep a sing-box ccm statistics file of every request.
  // "usages_path": "/path/to/usages.json",
  //
  // Prices in USD per million tokens, for models the built-in table does not know.
  // "prices": {{ "model-id": {{ "input": 3, "output": 15, "cache_read": 0.3, "cache_write_5m": 3.75, "cache_write_1h": 6 }} }},
  //
  // Extra CA certificates (PEM) trusted for upstream HTTPS, e.g. a TLS-inspecting proxy.
  // "ca_file": "/path/to/ca.pem",
  //
  // Where API keys and logins added with `carpool account add` / `carpool login claude`
  // are kept: "auto" (the OS keyring if it works, else 0600 files in <data_dir>/secrets),
  // "keyring" or "file". Never in this file, which only refers to them.
  // "secret_store": "file",
  //
  // Client connections: the most at once; bytes of a request head before
  // authentication; time to send a request head; idle keep-alive connections are
  // closed after; the longest gap while a request body arrives. These are the defaults.
  // "connections": {{ "max": 1024, "max_header_bytes": 65536, "header_timeout": "10s", "keep_alive": "60s", "body_timeout": "30s" }},
  //
  // The management API (dashboard, scripts; every call needs the admin secret): host
  // names it answers to besides localhost, as typed in the browser, and whether other
  // machines may use it (serve HTTPS with "tls" then).
  // "admin": {{ "hosts": ["carpool.example.lan"], "remote": false }},
  //
  // Serve HTTPS instead of HTTP, relay and API alike: a certificate chain and its key,
  // PEM files, read again when they change. See "HTTPS" in README.md.
  // "tls": {{ "certificate": "/path/to/cert.pem", "key": "/path/to/key.pem" }},

  "timeouts": {{
    "connect": "10s",        // TCP + TLS connect to the upstream
    "first_byte": "2m",      // until the upstream's response headers (streaming requests)
    "idle": "2m",            // longest silence between two chunks of a response
    "request": "10m",        // whole non-streaming request
    "shutdown_grace": "30s"  // on Ctrl-C / SIGTERM, time left for in-flight answers
  }}
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
        assert_eq!(config.users[0].name, *created.user_name);
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

#[cfg(test)]
mod optional_settings {
    //! Every optional setting the template shows as a commented line must work when its
    //! `//` is deleted, as the template tells the user to.

    use std::path::Path;
    use std::time::Duration;

    use super::render;
    use crate::config::{Config, ConfigError};

    struct Optional {
        name: &'static str,
        /// Checks that the uncommented value took effect.
        check: fn(&Config),
    }

    const OPTIONALS: &[Optional] = &[
        Optional {
            name: "data_dir",
            check: |c| assert_eq!(c.data_dir, Path::new("/path/to/carpool-data")),
        },
        Optional {
            name: "database",
            check: |c| assert_eq!(c.usage.database, Path::new("/path/to/usage.db")),
        },
        Optional {
            name: "usages_path",
            check: |c| {
                assert_eq!(
                    c.usage.usages_path.as_deref(),
                    Some(Path::new("/path/to/usages.json"))
                )
            },
        },
        Optional {
            name: "prices",
            check: |c| {
                let tokens = crate::ledger::Tokens {
                    input: 1_000_000,
                    output: 1_000_000,
                    ..Default::default()
                };
                let cost = c
                    .usage
                    .prices
                    .cost_micros("model-id", &tokens, &Default::default());
                assert_eq!(cost, Some(18_000_000));
            },
        },
        Optional {
            name: "ca_file",
            check: |c| assert_eq!(c.ca_file.as_deref(), Some(Path::new("/path/to/ca.pem"))),
        },
        Optional {
            name: "secret_store",
            check: |c| assert_eq!(c.secret_store, crate::secrets::StoreChoice::File),
        },
        Optional {
            name: "connections",
            check: |c| {
                let c = &c.connections;
                assert_eq!((c.max, c.max_header_bytes), (1024, 65536));
                assert_eq!(
                    (c.header_timeout, c.keep_alive, c.body_timeout),
                    (
                        Duration::from_secs(10),
                        Duration::from_secs(60),
                        Duration::from_secs(30)
                    )
                );
            },
        },
        Optional {
            name: "admin",
            check: |c| {
                assert_eq!(c.admin.hosts, ["carpool.example.lan"]);
                assert!(!c.admin.remote);
            },
        },
        Optional {
            name: "tls",
            check: |c| {
                let tls = c.tls.as_ref().unwrap();
                assert_eq!(tls.certificate, Path::new("/path/to/cert.pem"));
                assert_eq!(tls.key, Path::new("/path/to/key.pem"));
            },
        },
    ];

    const HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    /// The names of the commented optional lines, in order, with their line index.
    fn commented(text: &str) -> Vec<(usize, String)> {
        text.lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let rest = line.trim_start().strip_prefix("//")?.trim_start();
                let name = rest.strip_prefix('"')?.split('"').next()?;
                rest[name.len() + 2..]
                    .starts_with(':')
                    .then(|| (i, name.to_owned()))
            })
            .collect()
    }

    /// The text with the `//` at the start of these lines deleted, and nothing else.
    fn uncomment(text: &str, lines: &[usize]) -> String {
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            if lines.contains(&i) {
                let indent = line.len() - line.trim_start().len();
                out.push_str(&line[..indent]);
                out.push_str(line[indent..].strip_prefix("//").unwrap());
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn the_template_shows_every_optional_setting_of_the_table() {
        let names: Vec<String> = commented(&render(HASH))
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        let expected: Vec<&str> = OPTIONALS.iter().map(|o| o.name).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn each_optional_setting_works_when_uncommented() {
        let text = render(HASH);
        let lines = commented(&text);
        for (line, optional) in lines.iter().zip(OPTIONALS) {
            let edited = uncomment(&text, &[line.0]);
            assert_ne!(edited, text);
            match load(&edited) {
                Ok(config) => (optional.check)(&config),
                Err(e) => panic!("`{}` uncommented: {e}", optional.name),
            }
        }
    }

    #[test]
    fn all_optional_settings_work_uncommented_together() {
        let text = render(HASH);
        let all: Vec<usize> = commented(&text).into_iter().map(|(line, _)| line).collect();
        assert_eq!(all.len(), OPTIONALS.len());
        let config = load(&uncomment(&text, &all)).unwrap();
        for optional in OPTIONALS {
            (optional.check)(&config);
        }
    }
}
