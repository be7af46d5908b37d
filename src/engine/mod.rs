//! The running engine: shared state, the HTTP router, and the server lifecycle
//! (bind → serve → graceful shutdown). Connections themselves (limits, timeouts, the
//! accept loop) are [`crate::listener`]'s.
//!
//! [`Server::bind`] is what `carpool serve`, the tests and (later) the desktop shell all
//! use; nothing here depends on a terminal or a display.

mod apply;
mod holder;
mod reload;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};

use crate::config::file::ConfigFile;
use crate::config::{AccountTag, Config, Connections};
use crate::credentials::{keep_fresh, spawn_watcher};
use crate::ledger::ccm::{CcmFile, run_saver};
use crate::ledger::store::StoreError;
use crate::ledger::{Ledger, LedgerOptions, Sink};
use crate::pool::account::{Account, Source};
use crate::pool::{StatusWatch, StatusWatchers, poll_while_watched};
use crate::secrets::SecretStore;
use crate::state::Current;
use crate::tasks::{Tasks, lock};
use crate::tls::{Inbound, TlsError};
use crate::{listener, relay};

pub use crate::config::edit::{ConfigDoc, EditError};
pub use crate::state::State;
pub use apply::{AccountError, ApplyError, Changes};
pub use holder::PortHolder;
pub use reload::{ConfigWatch, Edited, Overrides, Reloaded};

/// Everything a request needs, shared by all requests. What the config decides lives in
/// the swappable [`State`] (in [`Current`], which is all the relay sees); what outlives a
/// reload (the ledger, the usage files, the background tasks) lives here.
pub struct Engine {
    current: Arc<Current>,
    pub ledger: Arc<Ledger>,
    /// sing-box-style usage files (`usages_path`), fed by the ledger's writer.
    pub ccm_files: Vec<Arc<CcmFile>>,
    /// Extra CA certificates for upstream HTTPS, read once at start (`ca_file`).
    roots: Vec<reqwest::Certificate>,
    /// Where secrets Carpool obtains itself live (`data_dir`, `secret_store` at start):
    /// stored logins and API keys are read from it when accounts are built.
    pub secrets: Arc<SecretStore>,
    /// Each OAuth account's background work, to stop it when a reload removes or
    /// replaces the account. Also serialises reloads.
    watchers: Mutex<HashMap<AccountTag, Watched>>,
    /// Who watches the status (the dashboard, the tray): while anyone does, idle
    /// accounts' usage is polled ([`poll_while_watched`]). Outlives reloads.
    status_watchers: StatusWatchers,
    /// Where a reload that changes `listen` sends the new listener, while a server runs.
    rebind: Mutex<Option<mpsc::UnboundedSender<TcpListener>>>,
    /// The config file edits are written to, and the command line's overrides
    /// ([`Engine::set_config_file`]); `None` for an engine given a config only.
    file: Mutex<Option<(Arc<ConfigFile>, Overrides)>>,
    /// Whether new connections are served over TLS, and with what (`tls`). Outlives
    /// reloads; a reload that changes `tls` sets it.
    tls: Arc<Inbound>,
}

/// Why Carpool could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address cannot be taken. When the port is in use, `holder` is the process that
    /// listens on it, if it could be found (see [`PortHolder`]).
    #[error("cannot listen on {addr}: {}", listen_problem(.source, .holder.as_ref()))]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
        holder: Option<PortHolder>,
    },
    #[error(transparent)]
    Ledger(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("cannot read the CA certificates in {} (`ca_file`): {problem}", path.display())]
    CaFile {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("cannot read the usage file {} (`usages_path`): {source}", path.display())]
    UsagesFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What follows "cannot listen on {addr}: ": who holds the port, else the OS's reason.
fn listen_problem(source: &std::io::Error, holder: Option<&PortHolder>) -> String {
    match holder {
        Some(holder) => format!("the port is in use by {holder}"),
        None if source.kind() == std::io::ErrorKind::AddrInUse => {
            "the port is already in use".to_owned()
        }
        None => source.to_string(),
    }
}

impl StartError {
    /// The error for a failed bind of `addr`: when the port is in use, with the process
    /// that holds it if it can be found in a moment ([`holder::LOOKUP_TIMEOUT`]).
    async fn listen(addr: SocketAddr, source: std::io::Error) -> StartError {
        let holder = match source.kind() {
            std::io::ErrorKind::AddrInUse => holder::find(addr).await,
            _ => None,
        };
        StartError::Listen {
            addr,
            source,
            holder,
        }
    }
}

impl Engine {
    /// What every account is doing: for the dashboard and the tray.
    pub fn status(&self) -> crate::pool::PoolStatus {
        self.state().pool.status(crate::pool::unix_now())
    }

    /// The configuration in force now. Hold it for the length of one request.
    pub fn state(&self) -> Arc<State> {
        self.current.state()
    }

    /// The state in force and the background tasks: what the relay is given.
    pub fn current(&self) -> &Arc<Current> {
        &self.current
    }

    /// Opens the usage database and files and builds the accounts; starts nothing (see
    /// [`Engine::start`]).
    pub fn new(config: Config) -> Result<Engine, StartError> {
        let roots = match &config.ca_file {
            Some(path) => std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| {
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())
                })
                .map_err(|problem| StartError::CaFile {
                    path: path.clone(),
                    problem,
                })?,
            None => Vec::new(),
        };
        let tls = Inbound::plain();
        if let Some(files) = &config.tls {
            tls.set(Some(Inbound::load(files)?));
        }
        let secrets = Arc::new(SecretStore::new(&config.data_dir, config.secret_store));
        let accounts = apply::build_accounts(&config, None, &roots, &secrets)?.accounts;
        let ccm_files = config
            .usage_files()
            .into_iter()
            .map(|(path, credential)| {
                let layout = match credential {
                    Some((_, crate::config::Provider::OpenAi)) => crate::ledger::ccm::Layout::Ocm,
                    _ => crate::ledger::ccm::Layout::Ccm,
                };
                let tag = credential.map(|(t, _)| t.to_string());
                CcmFile::open_with_layout(path.to_owned(), tag, layout)
                    .map(Arc::new)
                    .map_err(|source| StartError::UsagesFile {
                        path: path.to_owned(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sinks = ccm_files
            .iter()
            .map(|file| {
                let file = file.clone();
                Arc::new(move |r: &crate::ledger::UsageRecord| file.record(r)) as Sink
            })
            .collect();
        let ledger = Ledger::open(
            &config.usage.database,
            LedgerOptions {
                queue: config.usage.queue,
                sinks,
                ..LedgerOptions::default()
            },
        )?;
        let ledger = Arc::new(ledger);
        let state = apply::state(config, accounts, None, &ledger);
        Ok(Engine {
            current: Arc::new(Current::new(state)),
            ledger,
            ccm_files,
            roots,
            secrets,
            watchers: Mutex::new(HashMap::new()),
            status_watchers: StatusWatchers::default(),
            rebind: Mutex::new(None),
            file: Mutex::new(None),
            tls: Arc::new(tls),
        })
    }

    /// Whether new connections are served over TLS (`tls` in the config).
    pub fn serves_tls(&self) -> bool {
        self.tls.is_on()
    }

    /// Starts the background work: each OAuth account's credentials watcher and refresh
    /// timer, and the usage polls while the status is watched. Needs a tokio runtime.
    pub fn start(&self) {
        let state = self.state();
        let mut watchers = lock(&self.watchers);
        for account in state.pool.accounts() {
            self.watch_account(account, &mut watchers);
        }
        let current = self.current.clone();
        self.tasks().spawn_graceful(poll_while_watched(
            move || current.state().pool.accounts().to_vec(),
            self.status_watchers.clone(),
            self.tasks().stopping(),
        ));
    }

    /// Marks the status as watched (live meters on a screen) until the guard is dropped:
    /// meanwhile idle accounts' usage figures are kept within their `poll_interval`.
    pub fn watch_status(&self) -> StatusWatch {
        self.status_watchers.watch()
    }

    /// How many [`Engine::watch_status`] guards are alive.
    pub fn status_watchers(&self) -> usize {
        self.status_watchers.count()
    }

    /// Starts an OAuth account's credentials watcher and its refresh timer (ahead of
    /// expiry, with no request needed), replacing any it had.
    fn watch_account(&self, account: &Account, watchers: &mut HashMap<AccountTag, Watched>) {
        let Source::OAuth(credential) = &account.source else {
            return;
        };
        let watcher = self
            .tasks()
            .with(|set| spawn_watcher(credential.clone(), set));
        // The timer is told to stop, never cut: a refresh under way is finished.
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = self.tasks().stopping();
        let until = async move {
            tokio::select! {
                () = shutdown => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        };
        self.tasks()
            .spawn_graceful(keep_fresh(credential.clone(), until));
        if let Some(old) = watchers.insert(account.tag.clone(), Watched { watcher, stop }) {
            old.stop();
        }
    }

    /// The background tasks (credential and config watchers, polls): for the server to
    /// stop at shutdown, and for embedders to add their own.
    pub fn tasks(&self) -> &Tasks {
        self.current.tasks()
    }
}

/// The HTTP surface: every protocol's routes ([`relay::routes`]).
pub fn router(engine: &Engine) -> Router {
    relay::routes()
        // The relay reads the body itself, with the configured limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(engine.current().clone())
}

/// sing-box saves its usage file at most once a minute; so does Carpool.
const CCM_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// An OAuth account's background work: its credentials watcher and refresh timer.
struct Watched {
    watcher: AbortHandle,
    stop: watch::Sender<bool>,
}

impl Watched {
    fn stop(&self) {
        self.watcher.abort();
        self.stop.send_replace(true);
    }
}

/// Says so when Carpool listens beyond this machine over plain HTTP.
fn warn_if_exposed(addr: SocketAddr, tls: bool) {
    if !addr.ip().is_loopback() && !tls {
        tracing::warn!(
            "listening on {addr} over plain HTTP: user tokens and every prompt and answer cross the network unencrypted. \
             Beyond a trusted LAN, set `tls` in the config, or put Carpool behind a TLS reverse proxy or a VPN (see SECURITY.md)"
        );
    }
}

/// A bound, not yet serving, Carpool server.
pub struct Server {
    listener: TcpListener,
    engine: Arc<Engine>,
    /// `connections` from the config, with `max` fitted to the open-file limit.
    connections: Connections,
    /// Routes served beside the relay's ([`Server::serve_also`]).
    also: Router,
}

impl Server {
    /// Raises the open-file limit, opens the usage database, binds the listener and
    /// starts watching the credential files. A port in use is a [`StartError::Listen`]
    /// naming the process that holds it, when it can be found.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let addr = config.listen;
        // Every client connection is a file descriptor, and most need an upstream one
        // too: the default soft limit (often 1024) would run out long before the hard one.
        let nofile = listener::raise_open_file_limit();
        let mut connections = config.connections;
        connections.max = listener::effective_max(config.connections.max, nofile);
        tracing::debug!(open_file_limit = ?nofile, max_connections = connections.max, "file descriptors");
        if connections.max < config.connections.max {
            tracing::info!(
                configured = config.connections.max,
                max_connections = connections.max,
                open_file_limit = ?nofile,
                "`connections.max` lowered to what the open-file limit allows"
            );
        }
        let engine = Arc::new(Engine::new(config)?);
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(source) => return Err(StartError::listen(addr, source).await),
        };
        warn_if_exposed(addr, engine.serves_tls());
        engine.start();
        Ok(Server {
            listener,
            engine,
            connections,
            also: Router::new(),
        })
    }

    /// Applies edits of the config file at `path` (and, on Unix, a SIGHUP) to the running
    /// server; see [`reload`]. `overrides` are re-applied to every new reading (the
    /// command line's `--listen`). The engine's own edits ([`Engine::edit_config`]) go to
    /// the same file, sharing what was last read with the watcher. Call it right after
    /// loading the config from `path`.
    pub fn watch_config(&self, path: std::path::PathBuf, overrides: Overrides) {
        let file = Arc::new(ConfigFile::new(path));
        self.engine.set_config_file(file.clone(), overrides);
        let watch = ConfigWatch::new(self.engine.clone(), file, overrides);
        self.engine.tasks().spawn(watch.run());
    }

    /// Serves `routes` beside the relay's (the management API, the dashboard). They must
    /// not overlap the relay's paths, and have no fallback of their own.
    pub fn serve_also(&mut self, routes: Router) {
        self.also = std::mem::take(&mut self.also).merge(routes);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight
    /// responses finish for at most `timeouts.shutdown_grace`. Then every usage record is
    /// written and the usage files saved.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Server {
            listener,
            engine,
            connections,
            also,
        } = self;
        let grace = engine.state().config.timeouts.shutdown_grace;
        // The saver is stopped last, after the ledger has written everything: it has a
        // set of its own.
        let (saver_stop, saver_stopped) = oneshot::channel::<()>();
        let mut saver = JoinSet::new();
        saver.spawn(run_saver(
            engine.ccm_files.clone(),
            CCM_SAVE_INTERVAL,
            async move {
                let _ = saver_stopped.await;
            },
        ));
        let app = router(&engine).merge(also);
        // Open live feeds end when shutdown starts: they would otherwise hold the
        // graceful shutdown for its whole grace period.
        let feed = engine.current().feed().clone();
        let shutdown = async move {
            shutdown.await;
            feed.close();
        };
        let (rebind, rebound) = mpsc::unbounded_channel();
        *lock(&engine.rebind) = Some(rebind);
        let tls = engine.tls.clone();
        listener::serve(listener, rebound, app, connections, grace, tls, shutdown).await;
        lock(&engine.rebind).take();
        engine.tasks().shutdown().await;
        // Responses cut at the end of the grace period record their usage when their
        // bodies are dropped, which happened in `listener::serve`; now write it all,
        // then the files.
        engine.ledger.close_async().await;
        let _ = saver_stop.send(());
        saver.join_all().await;
        tracing::info!(
            usage_records = engine.ledger.written(),
            usage_dropped = engine.ledger.dropped_count(),
            "stopped"
        );
    }

    /// Runs in a background task; for tests and embedding. Dropping the handle does not
    /// stop the server: call [`RunningServer::shutdown`].
    pub fn spawn(self) -> RunningServer {
        let addr = self.local_addr();
        let engine = self.engine.clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        // Owned: the handle is kept in `RunningServer` and awaited by its `shutdown`.
        #[allow(clippy::disallowed_methods)]
        let task = tokio::spawn(self.run(async move {
            let _ = stop_rx.await;
        }));
        RunningServer {
            addr,
            engine,
            stop: Some(stop_tx),
            task,
        }
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// `http://ADDR`, or `https://ADDR` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.engine.serves_tls() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Graceful shutdown; returns when the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Completes once `stop` turns true (or its sender is gone).
/// Completes on Ctrl-C, or SIGTERM on Unix.
///
/// The handlers are installed when this is called, not when the future is first polled:
/// a signal that arrives right after the banner printed must still stop Carpool gracefully
/// instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
