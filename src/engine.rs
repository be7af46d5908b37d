//! The running engine: shared state, the HTTP router, and the server lifecycle
//! (bind → serve → graceful shutdown).
//!
//! [`Server::bind`] is what `carpool serve`, the tests and (later) the desktop shell all
//! use; nothing here depends on a terminal or a display.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::auth::Users;
use crate::config::Config;
use crate::credentials::{Credential, spawn_watcher};
use crate::{relay, upstream};

/// Everything a request needs, shared by all requests.
pub struct Engine {
    pub config: Config,
    pub users: Users,
    /// In config order; users refer to them by index.
    pub credentials: Vec<Arc<Credential>>,
    pub http: reqwest::Client,
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        let http = upstream::client(&config.timeouts);
        let credentials = config
            .credentials
            .iter()
            .map(|c| Credential::new(c, http.clone()))
            .collect();
        Engine {
            users: Users::new(&config.users),
            credentials,
            http,
            config,
        }
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

/// A bound, not yet serving, Carpool server.
pub struct Server {
    listener: TcpListener,
    engine: Arc<Engine>,
    tasks: JoinSet<()>,
}

impl Server {
    /// Binds the listener and starts watching the credential files.
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let engine = Arc::new(Engine::new(config));
        let mut tasks = JoinSet::new();
        for credential in &engine.credentials {
            spawn_watcher(credential.clone(), &mut tasks);
        }
        Ok(Server {
            listener,
            engine,
            tasks,
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
    /// responses finish for at most `timeouts.shutdown_grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Server {
            listener,
            engine,
            mut tasks,
        } = self;
        let grace = engine.config.timeouts.shutdown_grace;
        let app = router(engine);
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
        });
        let (began_tx, began_rx) = oneshot::channel::<()>();
        let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; waiting for in-flight requests");
            let _ = began_tx.send(());
        });
        let grace_over = async move {
            if began_rx.await.is_err() {
                // The server ended without a shutdown signal.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serving.into_future() => {
                if let Err(e) = result {
                    tracing::error!("server error: {e}");
                }
            }
            () = grace_over => {
                tracing::warn!(grace_s = grace.as_secs(), "in-flight requests did not finish within `timeouts.shutdown_grace`; closing them");
            }
        }
        tasks.shutdown().await;
        tracing::info!("stopped");
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
