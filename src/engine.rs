//! The running engine: shared state, the HTTP router, and the server lifecycle
//! (bind → serve → graceful shutdown). Connections themselves (limits, timeouts, the
//! accept loop) are [`crate::listener`]'s.
//!
//! [`Server::bind`] is what `carpool serve`, the tests and (later) the desktop shell all
//! use; nothing here depends on a terminal or a display.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::auth::Users;
use crate::config::Source as ConfigSource;
use crate::config::{Config, Connections};
use crate::credentials::{Credential, keep_fresh, spawn_watcher};
use crate::ledger::ccm::{CcmFile, run_saver};
use crate::ledger::store::StoreError;
use crate::ledger::{Ledger, LedgerOptions, Pricing, Sink};
use crate::pool::account::{Account, Source};
use crate::pool::limits::Reserves;
use crate::pool::{Pool, poll_while_watched};
use crate::{listener, relay, upstream};

/// Everything a request needs, shared by all requests.
pub struct Engine {
    pub config: Config,
    pub users: Users,
    /// The accounts and pools; picks the account for each request.
    pub pool: Pool,
    pub ledger: Arc<Ledger>,
    pub pricing: Pricing,
    /// sing-box-style usage files (`usages_path`), fed by the ledger's writer.
    pub ccm_files: Vec<Arc<CcmFile>>,
}

/// Why Carpool could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] StoreError),
    #[error("credentials `{tag}`: {problem}")]
    Account { tag: String, problem: String },
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
}

impl Engine {
    /// What every account is doing: for the dashboard and the tray.
    pub fn status(&self) -> crate::pool::PoolStatus {
        self.pool.status(crate::pool::unix_now())
    }

    /// Opens the usage database and files; starts nothing else.
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
        let mut accounts = Vec::new();
        for (index, c) in config.credentials.iter().enumerate() {
            let http = upstream::client(&config.timeouts, c.proxy.as_deref(), &roots).map_err(
                |problem| StartError::Account {
                    tag: c.tag.clone(),
                    problem,
                },
            )?;
            let source = match &c.source {
                ConfigSource::OAuthFile { path, token_url } => Source::OAuth(Credential::new(
                    &c.tag,
                    path,
                    &c.base_url,
                    token_url,
                    http.clone(),
                )),
                ConfigSource::ApiKey(key) => Source::ApiKey(key.clone()),
            };
            // The shortest poll interval of the pools it is in.
            let poll_interval = config
                .pools
                .iter()
                .filter(|p| p.members.contains(&index))
                .map(|p| p.poll_interval)
                .min()
                .unwrap_or(DEFAULT_POLL_INTERVAL);
            let reserves = Reserves {
                five_hour: c.reserve_5h,
                weekly: c.reserve_weekly,
            };
            let base = reqwest::Url::parse(&c.base_url).map_err(|e| StartError::Account {
                tag: c.tag.clone(),
                problem: format!("base_url `{}`: {e}", c.base_url),
            })?;
            accounts.push(Arc::new(Account::new(
                index,
                c.tag.clone(),
                base,
                http,
                source,
                reserves,
                poll_interval,
            )));
        }
        let mut ccm_files = Vec::new();
        if let Some(path) = &config.usage.usages_path {
            ccm_files.push((path.clone(), None));
        }
        for c in &config.credentials {
            if let Some(path) = &c.usages_path {
                ccm_files.push((path.clone(), Some(c.tag.clone())));
            }
        }
        let ccm_files = ccm_files
            .into_iter()
            .map(|(path, credential)| {
                CcmFile::open(path.clone(), credential)
                    .map(Arc::new)
                    .map_err(|source| StartError::UsagesFile { path, source })
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
        Ok(Engine {
            users: Users::new(&config.users),
            pool: Pool::new(accounts, config.pools.clone()),
            ledger: Arc::new(ledger),
            pricing: Pricing::new(config.usage.prices.clone()),
            ccm_files,
            config,
        })
    }
}

/// The HTTP surface. `/v1/messages?beta=true` matches `/v1/messages`: the query is kept
/// and forwarded.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/v1/messages", post(relay::handle))
        .route("/v1/messages/count_tokens", post(relay::handle))
        .route("/v1/models", get(relay::handle))
        .route("/v1/models/{id}", get(relay::handle))
        // The relay reads the body itself, with the configured limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .fallback(relay::not_found)
        .method_not_allowed_fallback(relay::method_not_allowed)
        .with_state(engine)
}

/// How stale a single account's usage figures may get (pools set their own).
const DEFAULT_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// sing-box saves its usage file at most once a minute; so does Carpool.
const CCM_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A bound, not yet serving, Carpool server.
pub struct Server {
    listener: TcpListener,
    engine: Arc<Engine>,
    tasks: JoinSet<()>,
    /// Background work that stops at its next pause when `stop` says so, and is waited
    /// for: a token refresh or a usage poll under way is finished, not cut.
    background: JoinSet<()>,
    stop: watch::Sender<bool>,
    /// `connections` from the config, with `max` fitted to the open-file limit.
    connections: Connections,
}

impl Server {
    /// Raises the open-file limit, opens the usage database, binds the listener and
    /// starts watching the credential files.
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
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "listening on {addr} over plain HTTP: user tokens and every prompt and answer cross the network unencrypted. \
                 Beyond a trusted LAN, put Carpool behind a TLS reverse proxy or a VPN (see SECURITY.md)"
            );
        }
        let mut tasks = JoinSet::new();
        let mut background = JoinSet::new();
        let stop = watch::Sender::new(false);
        for account in engine.pool.accounts() {
            if let Source::OAuth(credential) = &account.source {
                spawn_watcher(credential.clone(), &mut tasks);
                background.spawn(keep_fresh(credential.clone(), stopped(stop.subscribe())));
            }
        }
        let accounts = {
            let engine = engine.clone();
            move || engine.pool.accounts().to_vec()
        };
        background.spawn(poll_while_watched(
            accounts,
            engine.pool.status_watchers(),
            stopped(stop.subscribe()),
        ));
        Ok(Server {
            listener,
            engine,
            tasks,
            background,
            stop,
            connections,
        })
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
            mut tasks,
            mut background,
            stop,
            connections,
        } = self;
        let grace = engine.config.timeouts.shutdown_grace;
        let (saver_stop, saver_stopped) = oneshot::channel::<()>();
        let saver = tokio::spawn(run_saver(
            engine.ccm_files.clone(),
            CCM_SAVE_INTERVAL,
            async move {
                let _ = saver_stopped.await;
            },
        ));
        let app = router(engine.clone());
        listener::serve(listener, app, connections, grace, shutdown).await;
        stop.send_replace(true);
        while background.join_next().await.is_some() {}
        tasks.shutdown().await;
        // Responses cut at the end of the grace period record their usage when their
        // bodies are dropped, which happened in `listener::serve`; now write it all,
        // then the files.
        engine.ledger.close_async().await;
        let _ = saver_stop.send(());
        let _ = saver.await;
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
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

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
