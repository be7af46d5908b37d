//! Starting Carpool from its config file: what `carpool serve` and the desktop app both
//! do, so the two run the same relay, API and dashboard on the same files.
//!
//! [`launch`] creates the config when there is none (one user `me` with a fresh token),
//! loads it, opens the admin secret, binds the listener, mounts the management API and
//! the dashboard beside the relay and starts watching the file. What happens next is the
//! caller's: `carpool serve` prints a banner and runs until a signal; the desktop app
//! runs it in the background until Stop or Quit ([`crate::desktop`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::{self, Admin, Api};
use crate::config::{self, Config, ConfigError, CreatedConfig};
use crate::engine::{Overrides, Server, StartError};

/// A Carpool bound to its port and ready to run.
pub struct Launched {
    pub server: Server,
    /// The management API mounted on the server, for in-process callers (the desktop
    /// window's hand-over ticket).
    pub api: Arc<Api>,
    /// The configuration as it was read at start (with the overrides).
    pub config: Config,
    /// The config file.
    pub path: PathBuf,
    /// Set when the config file was created by this start: its user and token.
    pub created: Option<CreatedConfig>,
    /// Set when the admin secret was made by this start: it is shown only once.
    pub admin_secret: Option<String>,
}

/// Why Carpool could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    // The fields are not named `source`: the message already says them, and an error
    // chain printed with `{:#}` would say them twice.
    #[error("cannot keep the admin secret in {}: {error}", path.display())]
    Admin {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The listener could not be bound: the port is taken, or the address is not this
    /// machine's.
    #[error("{}", listen_message(error, path))]
    Listen {
        addr: SocketAddr,
        path: PathBuf,
        error: StartError,
    },
    #[error(transparent)]
    Start(StartError),
}

/// What to do about a listener that could not be bound: with a known holder, stop it
/// or move; else move.
fn listen_message(error: &StartError, path: &Path) -> String {
    match error {
        StartError::Listen {
            holder: Some(_), ..
        } => format!(
            "{error}; stop it, or change `listen`/`listen_port` in {}",
            path.display()
        ),
        _ => format!(
            "{error} (change `listen`/`listen_port` in {})",
            path.display()
        ),
    }
}

/// Starts Carpool on the config file at `path` (created with a user and a token when
/// missing), with `overrides` over what the file says.
pub async fn launch(path: &Path, overrides: Overrides) -> Result<Launched, LaunchError> {
    let created = if path.exists() {
        None
    } else {
        Some(config::create_default(path)?)
    };
    let config = Config::load(path)?;
    if let Some(warning) = config.exposure_warning(path) {
        tracing::warn!("{warning}");
    }
    // Re-applied to every reading of the file by the config watcher.
    let config = overrides.apply(config, path)?;
    let (admin, admin_secret) =
        Admin::open(&config.data_dir).map_err(|error| LaunchError::Admin {
            path: config.data_dir.join(api::ADMIN_FILE),
            error,
        })?;
    let mut server = match Server::bind(config.clone()).await {
        Ok(server) => server,
        Err(error @ StartError::Listen { addr, .. }) => {
            return Err(LaunchError::Listen {
                addr,
                path: path.to_owned(),
                error,
            });
        }
        Err(e) => return Err(LaunchError::Start(e)),
    };
    let api = Api::new(server.engine().clone(), admin);
    server.serve_also(api::router(api.clone()));
    server.serve_also(crate::dashboard::router());
    // Where secrets added from now on go: probed once now (off the start path: a keyring
    // may take a moment), so the log says it before anyone adds an account. A keyring
    // that cannot be used says so, and where the files go, from the probe itself.
    let secrets = server.engine().secrets.clone();
    drop(tokio::task::spawn_blocking(move || {
        if let crate::secrets::Placement::Keyring = secrets.new_secrets_go() {
            tracing::info!("secrets Carpool obtains itself go to the OS keyring")
        }
    }));
    server.watch_config(path.to_owned(), overrides);
    Ok(Launched {
        server,
        api,
        config,
        path: path.to_owned(),
        created,
        admin_secret,
    })
}

/// The address this machine's own clients (and the desktop app's window) use for a
/// server listening on `addr`: a wildcard address is reached through loopback. For
/// other machines see [`api::write::listen_url`].
pub fn local_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = addr.ip();
    if ip.is_unspecified() {
        let loopback = if ip.is_ipv4() { "127.0.0.1" } else { "[::1]" };
        format!("{scheme}://{loopback}:{}", addr.port())
    } else {
        format!("{scheme}://{addr}")
    }
}
