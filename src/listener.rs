//! The client listener: accepting connections, serving HTTP/1 and HTTP/2 on them (over
//! TLS when `tls` is configured, see [`crate::tls`]; h2c otherwise), closing the ones that
//! take too long, and graceful shutdown.
//!
//! Every request carries its connection's [`Peer`] (and axum's `ConnectInfo<SocketAddr>`)
//! in its extensions: the management API answers only to some peers.
//!
//! Hand-written rather than `axum::serve`, which exposes none of the limits an open port
//! needs. Everything here applies before a token is checked (`connections` in the config):
//!
//! - **at most `connections.max` connections**: a permit is taken *before* `accept()`, so
//!   beyond the cap new connections wait in the kernel's listen backlog instead of
//!   costing memory and file descriptors here. [`effective_max`] keeps the cap below what
//!   the open-file limit allows;
//! - **`max_header_bytes`** bounds a request head: HTTP/1's read buffer (hyper answers
//!   `431` beyond it), HTTP/2's header list size;
//! - **`header_timeout`** and **`keep_alive`**: a per-connection watchdog ([`Activity`])
//!   closes a connection that has no request in flight and either has not completed a
//!   request head within `header_timeout` (of being accepted, or of the first byte of its
//!   next request), or has sat idle for `keep_alive` since its last answer. A connection
//!   with a request in flight, including a long silent stream, is never closed by it.
//!   HTTP/2 gets the same limits: its first request within `header_timeout`, later ones
//!   within `keep_alive` of going idle (a GOAWAY, then the close); its header blocks are
//!   not timed separately, since bytes arrive on an idle HTTP/2 connection anyway (pings).
//!   hyper's own `header_read_timeout` is not used: in hyper 1.x its timer starts when a
//!   connection goes idle after an answer, so it would also close every idle keep-alive
//!   connection after `header_timeout`, making a longer `keep_alive` impossible;
//! - **TLS handshakes** must be done within `header_timeout` of the accept; a client that
//!   speaks plain HTTP to a TLS listener gets a plain `400` saying to use `https://`;
//! - **accept errors** such as `EMFILE` (out of file descriptors) back off from 10 ms up
//!   to 1 s instead of spinning on a connection the kernel keeps offering; errors of one
//!   connection (`ECONNABORTED`) are skipped.
//!
//! The body-read timeout (`connections.body_timeout`) lives where the relay reads the
//! body ([`crate::relay`]), since only the handler knows it is waiting for one.
//!
//! Every connection runs in a [`JoinSet`] that shutdown waits on: on shutdown the
//! listener closes, idle connections are closed, in-flight requests finish (HTTP/1 then
//! closes, HTTP/2 gets a GOAWAY) for at most `timeouts.shutdown_grace`, and whatever is
//! left is then dropped (a response cut there still records its usage as it is dropped).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Connections;
use crate::tls::Inbound;

/// The other end of a request's connection, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Whether the connection is TLS (Carpool's own: a TLS-terminating proxy in front
    /// makes this false).
    pub tls: bool,
}

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;
/// How long the rest of a plain HTTP request sent to the TLS listener is drained after
/// the `400` that answers it.
const PLAIN_DRAIN: Duration = Duration::from_secs(1);

/// Streams one HTTP/2 connection may run at once.
const H2_MAX_STREAMS: u32 = 100;
/// HTTP/2 keep-alive pings: sent after this much silence from the client...
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// ...and the connection is closed if the answer takes longer than this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle HTTP/2 connection has to close after its GOAWAY.
const H2_GOAWAY_GRACE: Duration = Duration::from_secs(1);
/// A warning about the connection cap or accept errors at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// File descriptors kept for everything that is not a client connection: the usage
/// database, credential watchers, logs, DNS.
const FD_HEADROOM: u64 = 64;
/// The cap never goes below this, whatever the open-file limit says.
const MIN_CONNECTIONS: usize = 16;

/// Raises the soft open-file limit to the hard limit and returns the resulting soft
/// limit, or `None` when there is no such limit (Windows) or it is unlimited.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(u64::MAX) => None,
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::debug!("cannot raise the open-file limit: {e}");
            None
        }
    }
}

/// The connection cap to run with: `configured`, lowered so that every client
/// connection can also hold an upstream connection within the open-file limit
/// (`nofile`), with [`FD_HEADROOM`] to spare; never below [`MIN_CONNECTIONS`].
pub fn effective_max(configured: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return configured;
    };
    let allowed = usize::try_from((nofile / 2).saturating_sub(FD_HEADROOM)).unwrap_or(usize::MAX);
    configured.min(allowed.max(MIN_CONNECTIONS))
}

/// Accepts and serves connections until `shutdown` completes, then shuts down
/// gracefully within `grace` (see the module doc). A listener sent on `rebind` replaces
/// the current one (a reload changed `listen`). `tls` says, for each new connection,
/// whether to serve it over TLS.
pub async fn serve(
    mut listener: TcpListener,
    mut rebind: mpsc::UnboundedReceiver<TcpListener>,
    app: Router,
    limits: Connections,
    grace: Duration,
    tls: Arc<Inbound>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(http_builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = Backoff::default();
    let mut warned_full: Option<Instant> = None;
    let mut warned_error: Option<Instant> = None;
    let mut shutdown = pin!(shutdown);
    loop {
        reap(&mut connections);
        if permits.available_permits() == 0 && due(&mut warned_full) {
            tracing::warn!(
                max = limits.max,
                "connection limit reached (`connections.max`); new connections wait until one closes"
            );
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(new) = rebind.recv() => {
                // A reload moved Carpool to another address: the old socket closes (its
                // open connections go on), new connections come to the new one.
                if let Ok(addr) = new.local_addr() {
                    let scheme = if tls.is_on() { "https" } else { "http" };
                    tracing::info!("now listening on {scheme}://{addr}");
                }
                listener = new;
                continue;
            }
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.reset();
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
                connections.spawn(connection(
                    tcp,
                    peer,
                    tls.clone(),
                    builder.clone(),
                    app.clone(),
                    limits,
                    stop_rx.clone(),
                    permit,
                ));
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!("a connection failed while being accepted: {e}");
            }
            Err(e) => {
                // Out of file descriptors or memory: the connection stays in the backlog
                // and accept() would fail again at once. Wait for some to be freed.
                let wait = backoff.next_wait();
                if due(&mut warned_error) {
                    tracing::warn!("cannot accept connections: {e}; retrying with backoff");
                } else {
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "accept failed: {e}");
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut shutdown => break,
                }
            }
        }
    }

    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "in-flight requests did not finish within `timeouts.shutdown_grace`; closing them"
        );
        connections.shutdown().await;
    }
}

/// The HTTP settings every connection is served with.
fn http_builder(limits: &Connections) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes)
        .timer(TokioTimer::new())
        // The watchdog times request heads; see the module doc.
        .header_read_timeout(None);
    builder
        .http2()
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .timer(TokioTimer::new());
    builder
}

/// Serves one connection (after a TLS handshake, when TLS is on). Holds its permit until
/// the socket is closed.
#[allow(clippy::too_many_arguments)]
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Arc<Inbound>,
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    limits: Connections,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let Some(acceptor) = tls.acceptor().await else {
        let peer = Peer {
            addr: peer,
            tls: false,
        };
        return serve_connection(tcp, peer, activity, builder, app, limits, stop).await;
    };
    // The handshake counts against the time to send the first request head.
    let deadline = activity.born + limits.header_timeout;
    let handshake = async {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(1) if first[0] != TLS_HANDSHAKE => return Err(refuse_plain_http(tcp).await),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        acceptor.accept(tcp).await
    };
    let stream = tokio::select! {
        result = tokio::time::timeout_at(deadline.into(), handshake) => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake not done within `connections.header_timeout`");
                return;
            }
        },
        _ = stop.wait_for(|stopping| *stopping) => return,
    };
    let peer = Peer {
        addr: peer,
        tls: true,
    };
    serve_connection(stream, peer, activity, builder, app, limits, stop).await;
}

/// Answers a plain HTTP request sent to the TLS listener (a client given `http://`
/// instead of `https://`) with a `400` that says so, instead of a handshake error the
/// client would show as a broken connection. Returns why the connection ends.
///
/// The request head is read first and the rest drained after the answer (for at most
/// [`PLAIN_DRAIN`]): closing a socket with unread bytes sends a reset, which can make the
/// client lose the answer.
async fn refuse_plain_http(mut tcp: TcpStream) -> io::Error {
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    while head.len() < 64 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = "This Carpool serves HTTPS only: use https:// in its URL.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(answer.as_bytes()).await.is_ok() && tcp.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(PLAIN_DRAIN, async {
            while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
    }
    io::Error::new(
        io::ErrorKind::InvalidData,
        "plain HTTP sent to the TLS listener",
    )
}

/// Serves HTTP on one connection, closing it when its [`Activity`] says it has been idle
/// too long.
async fn serve_connection<S>(
    stream: S,
    peer: Peer,
    activity: Arc<Activity>,
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    limits: Connections,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = Tracked {
        app,
        activity: activity.clone(),
        peer,
    };
    // With upgrades: a WebSocket handshake hands its connection over (relay::websocket).
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    // With a request in flight there is no deadline; look again this often. Any later
    // deadline is at least this far after the request ends, so none is missed.
    let recheck = limits.header_timeout.min(limits.keep_alive);
    let mut draining = false;
    // HTTP/2 connections are closed with a GOAWAY first, so a request the client is
    // sending at that moment is refused cleanly (and retried) instead of cut; they get
    // until then to go.
    let mut going_away: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = match (activity.deadline(&limits), going_away) {
            (None, _) => now + recheck,
            (Some(_), Some(by)) if by <= now => return,
            (Some(_), Some(by)) => by,
            // Nothing in flight: a draining server closes it at once.
            (Some(deadline), None) if deadline <= now || draining => {
                tracing::debug!(
                    requests = activity.requests.load(Ordering::Relaxed),
                    "closing a connection with no request in flight (idle, slow or shutting down)"
                );
                if !activity.http2.load(Ordering::Relaxed) {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                going_away = Some(now + H2_GOAWAY_GRACE);
                continue;
            }
            (Some(deadline), None) => deadline,
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = stop.wait_for(|stopping| *stopping), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// Collects finished connection tasks, so the set does not grow with every connection.
fn reap(connections: &mut JoinSet<()>) {
    while let Some(result) = connections.try_join_next() {
        if let Err(e) = result
            && e.is_panic()
        {
            tracing::error!("a connection task panicked: {e}");
        }
    }
}

/// True (and rearmed) when the last warning is older than [`WARN_EVERY`].
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// Accept errors that concern one connection (it was reset before we took it): the
/// next accept will do fine. Anything else (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`)
/// concerns the process and is backed off.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// 10 ms, doubling to 1 s; back to 10 ms after a successful accept.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

/// What one connection is doing, as far as its timeouts care: requests in flight, when
/// it last went idle, and when the head of its next request began to arrive. Updated by
/// the socket ([`Watched`]), the service ([`Tracked`]) and the response bodies (which
/// may live in other tasks under HTTP/2), read by the connection's watchdog.
#[derive(Debug)]
struct Activity {
    born: Instant,
    /// Requests whose response has not been fully handed to hyper yet.
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    requests: AtomicU64,
    http2: AtomicBool,
    /// Milliseconds after `born` when the last request ended.
    idle_since: AtomicU64,
    /// Milliseconds after `born` of the first byte read while idle; [`NONE`] if none.
    head_started: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.born + Duration::from_millis(millis)
    }

    /// When the connection should be closed if nothing changes; `None` while a request
    /// is in flight.
    fn deadline(&self, limits: &Connections) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if self.requests.load(Ordering::SeqCst) == 0 {
            return Some(self.born + limits.header_timeout);
        }
        // HTTP/2 reads frames (pings, window updates) while idle, so bytes say nothing
        // there about a request coming; its request heads are bounded by `keep_alive`.
        let head = self.head_started.load(Ordering::SeqCst);
        if head != NONE && !self.http2.load(Ordering::Relaxed) {
            return Some(self.at(head) + limits.header_timeout);
        }
        Some(self.at(self.idle_since.load(Ordering::SeqCst)) + limits.keep_alive)
    }

    /// Bytes arrived on the socket.
    fn read_some(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_started.load(Ordering::SeqCst) == NONE
        {
            self.head_started.store(self.millis(), Ordering::SeqCst);
        }
    }

    /// A request head is complete: until the guard drops, the connection is busy.
    fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(NONE, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// One request in flight; dropped with its response body (or with the request, if it
/// never got one).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // `idle_since` first: the watchdog reads it only once `in_flight` is 0.
        self.0.idle_since.store(self.0.millis(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The router as a hyper service, marking each request in flight on the connection's
/// [`Activity`] until its response body is done, and telling each request its [`Peer`].
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
    peer: Peer,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: http::Request<Incoming>) -> ResponseFuture {
        let in_flight = self.activity.begin(request.version());
        request.extensions_mut().insert(self.peer);
        request.extensions_mut().insert(ConnectInfo(self.peer.addr));
        // The router is always ready (axum's own `serve` does not wait either).
        let mut app = self.app.clone();
        Box::pin(async move {
            let response = tower_service::Service::call(&mut app, request.map(Body::new)).await?;
            // The guard lives as long as the body: hyper drops it once it has sent the
            // last byte, or when the connection goes away.
            Ok(response.map(|body| {
                Body::new(Guarded {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body holding its request's [`InFlight`] guard. Everything else is the
    /// inner body's, its size hint included (`BodyExt::map_frame` would drop that).
    struct Guarded {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client connection (a TCP socket, or TLS over one), telling [`Activity`] when bytes
/// of requests arrive.
struct Watched<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read_some();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Connections {
        Connections {
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(60),
            ..Connections::default()
        }
    }

    #[test]
    fn the_cap_leaves_file_descriptors_for_upstream_connections() {
        assert_eq!(effective_max(1024, None), 1024);
        assert_eq!(effective_max(1024, Some(1_048_576)), 1024);
        // 1024 descriptors: 512 - 64 client connections, each with room for an upstream one.
        assert_eq!(effective_max(1024, Some(1024)), 448);
        assert_eq!(effective_max(100, Some(1024)), 100);
        assert_eq!(effective_max(1024, Some(256)), 64);
        assert_eq!(effective_max(1024, Some(64)), MIN_CONNECTIONS);
        assert_eq!(effective_max(4, Some(64)), 4);
    }

    #[test]
    fn accept_errors_back_off_from_10ms_to_1s() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(10));
    }

    #[test]
    fn only_per_connection_accept_errors_are_retried_at_once() {
        assert!(is_connection_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        // EMFILE / ENFILE come as raw OS errors of no particular kind.
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
        assert!(!is_connection_error(&io::Error::from_raw_os_error(23)));
        assert!(!is_connection_error(&io::Error::from(
            io::ErrorKind::OutOfMemory
        )));
    }

    #[test]
    fn a_new_connection_has_header_timeout_to_send_its_first_request() {
        let a = Arc::new(Activity::new());
        assert_eq!(
            a.deadline(&limits()),
            Some(a.born + Duration::from_secs(10))
        );
        // Bytes of a first request do not extend it.
        a.read_some();
        assert_eq!(
            a.deadline(&limits()),
            Some(a.born + Duration::from_secs(10))
        );
    }

    #[test]
    fn no_deadline_while_a_request_is_in_flight_then_keep_alive() {
        let a = Arc::new(Activity::new());
        let guard = a.begin(http::Version::HTTP_11);
        assert_eq!(a.deadline(&limits()), None);
        a.read_some(); // the request body
        assert_eq!(a.deadline(&limits()), None);
        drop(guard);
        let idle = a.deadline(&limits()).unwrap();
        let expected = Instant::now() + Duration::from_secs(60);
        assert!(idle <= expected && idle + Duration::from_secs(1) > expected);
        // The next request starts to arrive: its head has `header_timeout`.
        a.read_some();
        let head = a.deadline(&limits()).unwrap();
        assert!(head < idle - Duration::from_secs(40));
    }

    #[test]
    fn http2_bytes_while_idle_do_not_shorten_keep_alive() {
        let a = Arc::new(Activity::new());
        drop(a.begin(http::Version::HTTP_2));
        let idle = a.deadline(&limits()).unwrap();
        a.read_some(); // a PING answer
        assert_eq!(a.deadline(&limits()), Some(idle));
    }
}
