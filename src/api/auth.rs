//! Admin access to the management API, so that neither another machine nor a web page
//! open in a browser on this machine can use it without the admin secret.
//!
//! The admin secret is made at first start and shown once; only its SHA-256 is kept, in
//! `<data_dir>/admin.json` (0600). `carpool admin reset` replaces it; a running Carpool
//! sees the new file at the next request (and every session opened with the old one
//! ends). Scripts send the secret as `Authorization: Bearer cpa-…`; the dashboard signs in
//! with it for a session cookie ([`super::session`]). The relay never accepts it (its
//! `cpa-` prefix is no user token), and no user token is ever accepted here.
//!
//! [`require_admin`] stands in front of every route, in this order:
//!
//! 1. **Host**: the request's `Host` (or HTTP/2 `:authority`) must be `localhost`,
//!    `127.0.0.1` or `[::1]` (any port), or a name in `admin.hosts`; else `421`. A page
//!    that rebinds its own DNS name to 127.0.0.1 (DNS rebinding) still sends its own name
//!    and is refused.
//! 2. **Peer**: only this machine (a loopback peer) unless `admin.remote` is true; else
//!    `403` saying how to open it.
//! 3. **Origin**: a POST, PUT, PATCH or DELETE whose `Origin` header is present must come
//!    from the API's own origin (the host and port it was called at); else `403`.
//! 4. **Lockout**: an address with too many wrong secrets gets `429` with `retry-after`
//!    ([`super::lockout`]).
//! 5. **Credentials**: a bearer admin secret, or a session cookie, which for a
//!    state-changing method must come with the session's CSRF token in `x-csrf-token`
//!    (`403` without). `POST /session`, signing in, is the one route that needs none.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::lockout::{Lockout, Rules};
use super::session::{self, CSRF_HEADER, Current, Sessions};
use super::{Api, ApiError, PREFIX};
use crate::config::{AdminConfig, Config};
use crate::listener::Peer;
use crate::secret::{TokenHash, generate_admin_secret};
use crate::tasks::{lock, read, write};

/// The file holding the admin secret's hash, in Carpool's data directory.
pub const ADMIN_FILE: &str = "admin.json";

#[derive(Serialize, Deserialize)]
struct AdminFile {
    /// `sha256:<64 hex>` of the admin secret.
    secret_hash: String,
}

/// The admin secret's hash (read again whenever its file changes), the sessions signed
/// in with it, and the addresses that guessed wrong.
pub struct Admin {
    path: PathBuf,
    known: RwLock<Known>,
    pub(super) sessions: Sessions,
    /// One-time tickets for the desktop app's window ([`super::session::Handovers`]).
    pub(super) handovers: super::session::Handovers,
    lockout: Mutex<Lockout>,
    /// Whether the warning about remote admin access over plain HTTP was given.
    warned_plain: AtomicBool,
}

struct Known {
    hash: Option<TokenHash>,
    stamp: Option<Stamp>,
}

/// What tells one version of the admin file from the next without reading it. `carpool
/// admin reset` replaces the file by a rename, so the inode changes even where the
/// modification time is too coarse to (some file systems keep whole seconds).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
        })
    }
}

impl Admin {
    /// The admin access of the data directory `data_dir`. With no secret yet, one is
    /// made and returned, to be shown once.
    pub fn open(data_dir: &Path) -> std::io::Result<(Admin, Option<String>)> {
        let path = data_dir.join(ADMIN_FILE);
        let created = if path.exists() {
            None
        } else {
            Some(reset(data_dir)?)
        };
        let admin = Admin {
            path,
            known: RwLock::new(Known {
                hash: None,
                stamp: None,
            }),
            sessions: Sessions::default(),
            handovers: Default::default(),
            lockout: Mutex::new(Lockout::new(Rules::DEFAULT)),
            warned_plain: AtomicBool::new(false),
        };
        admin.refresh();
        Ok((admin, created))
    }

    /// Reads the file again if it changed since it was last read.
    fn refresh(&self) -> Option<TokenHash> {
        let stamp = Stamp::of(&self.path);
        {
            let known = read(&self.known);
            if known.stamp == stamp && stamp.is_some() {
                return known.hash;
            }
        }
        let hash = std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<AdminFile>(&bytes).ok())
            .and_then(|file| TokenHash::parse(&file.secret_hash).ok());
        if hash.is_none() {
            tracing::error!(
                "cannot read the admin secret's hash in {}; run `carpool admin reset`",
                self.path.display()
            );
        }
        *write(&self.known) = Known { hash, stamp };
        hash
    }

    /// The admin secret's hash now, for a session opened without the secret (a
    /// hand-over).
    pub(super) fn current(&self) -> Option<TokenHash> {
        self.refresh()
    }

    /// Whether `secret` is the admin secret.
    pub fn accepts(&self, secret: &str) -> bool {
        self.verify(secret).is_some()
    }

    /// The admin secret's hash, if `secret` is the admin secret.
    pub(super) fn verify(&self, secret: &str) -> Option<TokenHash> {
        self.refresh()
            .filter(|hash| hash.ct_eq(&TokenHash::of(secret)))
    }

    /// A wrong secret came from `ip`: counted, and answered `401`, or `429` when it
    /// locks the address out.
    pub(super) fn failed(&self, ip: IpAddr, now: Instant) -> ApiError {
        match lock(&self.lockout).failure(ip, now) {
            Some(left) => too_many_attempts(left),
            None => ApiError::unauthorized(
                "wrong admin secret; `carpool admin reset` on the Carpool machine makes a new one",
            ),
        }
    }

    /// The right secret came from `ip`: its failures are forgotten.
    pub(super) fn succeeded(&self, ip: IpAddr) {
        let mut lockout = lock(&self.lockout);
        if !lockout.is_empty() {
            lockout.success(ip);
        }
    }
}

/// Makes a new admin secret for the data directory `data_dir`, replacing any, and
/// returns it (to be shown once).
pub fn reset(data_dir: &Path) -> std::io::Result<String> {
    crate::fsutil::create_private_dir(data_dir)?;
    let secret = generate_admin_secret();
    let file = AdminFile {
        secret_hash: TokenHash::of(&secret).to_config_string(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&data_dir.join(ADMIN_FILE), &text, 0o600)?;
    Ok(secret)
}

/// How a request was given admin access; in the extensions of every request that passed
/// [`require_admin`] (not of the sign-in itself).
#[derive(Debug, Clone)]
pub enum Access {
    /// The admin secret as a bearer token.
    Bearer,
    /// A session cookie (with the CSRF token, if the method changes anything).
    Session(Current),
}

/// Lets a request through only with admin access; see the module doc for the checks, in
/// their order.
pub async fn require_admin(
    State(api): State<Arc<Api>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let state = api.engine.state();
    let config = &state.config.admin;
    let Some(peer) = request.extensions().get::<Peer>().copied() else {
        // Served outside Carpool's listener, which tells every request its peer.
        return Err(ApiError::internal(
            "the connection's peer is unknown, so admin access cannot be checked",
        ));
    };
    let host = check_host(request.uri(), request.headers(), config)?;
    check_peer(&peer, config)?;
    if !peer.addr.ip().to_canonical().is_loopback()
        && !peer.tls
        && !api.admin.warned_plain.swap(true, Ordering::Relaxed)
    {
        warn_plain_remote();
    }
    let changes_state = changes_state(request.method());
    if changes_state {
        check_origin(request.headers(), &host)?;
    }
    let now = Instant::now();
    if let Some(left) = lock(&api.admin.lockout).locked(peer.addr.ip(), now) {
        return Err(too_many_attempts(left));
    }
    if request.method() == Method::POST
        && request.uri().path().strip_prefix(PREFIX) == Some("/session")
    {
        // Signing in: the handler checks the secret (and counts a wrong one).
        return Ok(next.run(request).await);
    }
    if request.method() == Method::GET
        && request.uri().path().strip_prefix(PREFIX) == Some("/session/handover")
    {
        // The desktop window's hand-over: the handler checks the ticket the same way.
        return Ok(next.run(request).await);
    }
    let access = authenticate(&api, &peer, request.headers(), changes_state, now)?;
    request.extensions_mut().insert(access);
    Ok(next.run(request).await)
}

/// Methods that may change something, which need the CSRF token with a cookie and a
/// same-origin `Origin` if any.
fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The bearer admin secret, or a session (with its CSRF token when `changes_state`).
fn authenticate(
    api: &Api,
    peer: &Peer,
    headers: &HeaderMap,
    changes_state: bool,
    now: Instant,
) -> Result<Access, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if let Some(secret) = bearer {
        return match api.admin.verify(secret) {
            Some(_) => {
                api.admin.succeeded(peer.addr.ip());
                Ok(Access::Bearer)
            }
            None => Err(api.admin.failed(peer.addr.ip(), now)),
        };
    }
    let Some(id) = session::cookie(headers) else {
        return Err(ApiError::unauthorized(
            "sign in first (`POST /api/v1/session`), or send the admin secret as `Authorization: Bearer cpa-…`",
        ));
    };
    let Some(session) = api.admin.sessions.find(id, api.admin.refresh(), now) else {
        return Err(ApiError::unauthorized(
            "the session has ended (signed out, unused for 12 hours, Carpool restarted, or the admin secret was reset); sign in again",
        ));
    };
    if changes_state {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !session::csrf_matches(&session, presented) {
            return Err(ApiError::forbidden(format!(
                "this call changes something, so with the session cookie it needs the session's CSRF token in the `{CSRF_HEADER}` header \
                 (as answered by `POST /api/v1/session` or `GET /api/v1/session`)"
            )));
        }
    }
    Ok(Access::Session(session))
}

/// The token of an `Authorization: Bearer <token>` value (scheme in any case).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

fn too_many_attempts(left: Duration) -> ApiError {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!(
            "too many wrong admin secrets from this address; try again in {seconds} s \
             (`carpool admin reset` on the Carpool machine makes a new secret if it is lost)"
        ),
    )
    .retry_after(seconds.max(1))
}

/// A host as a `Host` header names it, split: the name (lower case, no trailing dot,
/// IPv6 in brackets) and the port, if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostPort {
    pub name: String,
    pub port: Option<u16>,
}

impl HostPort {
    pub fn parse(authority: &str) -> Option<HostPort> {
        let authority = authority.trim();
        let (name, port) = match authority.strip_prefix('[') {
            Some(rest) => {
                let (inside, after) = rest.split_once(']')?;
                let ip: std::net::Ipv6Addr = inside.parse().ok()?;
                (format!("[{ip}]"), after)
            }
            None => match authority.rsplit_once(':') {
                Some((name, _)) => (name.to_owned(), &authority[name.len()..]),
                None => (authority.to_owned(), ""),
            },
        };
        let port = match port {
            "" => None,
            port => Some(port.strip_prefix(':')?.parse().ok()?),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || (name.contains(['/', '@', ' ', ':']) && !name.starts_with('[')) {
            return None;
        }
        Some(HostPort { name, port })
    }
}

/// The names the API answers to whatever the config says.
const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// Whether the API answers to the host name `name` (as [`HostPort::name`]).
pub(super) fn host_allowed(name: &str, config: &AdminConfig) -> bool {
    LOOPBACK_NAMES.contains(&name) || config.hosts.iter().any(|h| h == name)
}

/// The request's host, if the API answers to it; else `421`.
fn check_host(uri: &Uri, headers: &HeaderMap, config: &AdminConfig) -> Result<HostPort, ApiError> {
    let authority = uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let Some(authority) = authority else {
        return Err(misdirected(
            "the request names no host (no `Host` header); the management API answers only to known host names".into(),
        ));
    };
    match HostPort::parse(&authority) {
        Some(host) if host_allowed(&host.name, config) => Ok(host),
        Some(host) => Err(misdirected(format!(
            "the management API does not answer to the host name `{name}` (a defence against DNS rebinding); \
             if this is how you reach Carpool, add it to `admin.hosts` in the config: \"admin\": {{\"hosts\": [\"{name}\"]}}",
            name = host.name
        ))),
        None => Err(misdirected(
            "the request's `Host` header is not a host name".into(),
        )),
    }
}

fn misdirected(message: String) -> ApiError {
    ApiError::new(StatusCode::MISDIRECTED_REQUEST, "misdirected", message)
}

/// Whether the API answers to a request from `peer`: this machine always; other machines
/// only with `admin.remote`.
pub(super) fn check_peer(peer: &Peer, config: &AdminConfig) -> Result<(), ApiError> {
    if peer.addr.ip().to_canonical().is_loopback() || config.remote {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "the management API answers only on the Carpool machine itself (this request came from {}). \
         To manage Carpool from other machines, set \"admin\": {{\"remote\": true}} in the config, \
         and serve it over HTTPS (`tls`) so the admin secret does not cross the network in clear; \
         or use it over SSH on the Carpool machine",
        peer.addr.ip()
    )))
}

/// A state-changing request's `Origin`, if it has one, must be the API's own: the scheme
/// does not matter (a TLS proxy in front changes it), the host and port do.
fn check_origin(headers: &HeaderMap, host: &HostPort) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(not text)");
    let same = origin
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
        .and_then(|(scheme, authority)| {
            let default = if scheme == "https" { 443 } else { 80 };
            let theirs = HostPort::parse(authority)?;
            let without_default = |port: Option<u16>| port.filter(|p| *p != default);
            Some(
                theirs.name == host.name
                    && without_default(theirs.port) == without_default(host.port),
            )
        })
        .unwrap_or(false);
    if same {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "a page from `{origin}` may not change Carpool: the management API takes changes only from its own pages. \
         If you opened the dashboard under another name, use the name it is served at (and list it in `admin.hosts`)"
    )))
}

/// Says loudly, once at start, when other machines may use the API over plain HTTP.
pub fn warn_if_open(config: &Config, tls: bool) {
    if config.admin.remote && !tls {
        warn_plain_remote();
    }
}

fn warn_plain_remote() {
    tracing::warn!(
        "`admin.remote` is true and Carpool serves plain HTTP: the admin secret and session cookies of the management API \
         cross the network UNENCRYPTED, and anyone on the way can take over Carpool. Set `tls` in the config, \
         or put Carpool behind a TLS reverse proxy on the same machine and leave `admin.remote` false"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer(addr: &str, tls: bool) -> Peer {
        Peer {
            addr: addr.parse::<SocketAddr>().unwrap(),
            tls,
        }
    }

    fn admin(hosts: &[&str], remote: bool) -> AdminConfig {
        AdminConfig {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            remote,
        }
    }

    #[test]
    fn only_loopback_peers_unless_remote_is_on() {
        let closed = admin(&[], false);
        for local in [
            "127.0.0.1:5000",
            "127.0.0.2:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(check_peer(&peer(local, false), &closed).is_ok(), "{local}");
        }
        for remote in ["192.0.2.2:5000", "[2001:db8::1]:5000", "10.0.0.1:1"] {
            let refused = check_peer(&peer(remote, true), &closed).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN);
            assert!(
                refused.message.contains("\"remote\": true"),
                "{}",
                refused.message
            );
        }
        let open = admin(&[], true);
        assert!(check_peer(&peer("192.0.2.2:5000", true), &open).is_ok());
        assert!(check_peer(&peer("192.0.2.2:5000", false), &open).is_ok());
    }

    #[test]
    fn hosts_are_read_with_or_without_port() {
        let parse = |a: &str| HostPort::parse(a);
        assert_eq!(
            parse("LocalHost.:7676"),
            Some(HostPort {
                name: "localhost".into(),
                port: Some(7676)
            })
        );
        assert_eq!(
            parse("[0:0::1]:80"),
            Some(HostPort {
                name: "[::1]".into(),
                port: Some(80)
            })
        );
        assert_eq!(parse("[::1]").unwrap().port, None);
        assert_eq!(parse("carpool.lan").unwrap().name, "carpool.lan");
        for bad in [
            "",
            ":80",
            "host:port",
            "[::1",
            "[nope]:1",
            "a/b",
            "u@h",
            "::1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_names_and_configured_ones_are_allowed() {
        let config = admin(&["carpool.example.lan"], false);
        for name in ["localhost", "127.0.0.1", "[::1]", "carpool.example.lan"] {
            assert!(host_allowed(name, &config), "{name}");
        }
        for name in [
            "evil.example",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "[::2]",
        ] {
            assert!(!host_allowed(name, &config), "{name}");
        }
        let uri: Uri = "/api/v1/status".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "evil.example:7676".parse().unwrap());
        let refused = check_host(&uri, &headers, &config).unwrap_err();
        assert_eq!(refused.status, StatusCode::MISDIRECTED_REQUEST);
        assert!(
            refused.message.contains("admin.hosts"),
            "{}",
            refused.message
        );
        assert!(check_host(&uri, &HeaderMap::new(), &config).is_err());
        // HTTP/2 names the host in the URI (`:authority`).
        let uri: Uri = "https://carpool.example.lan/api/v1/status".parse().unwrap();
        assert!(check_host(&uri, &HeaderMap::new(), &config).is_ok());
    }

    #[test]
    fn only_the_apis_own_origin_may_change_things() {
        let host = HostPort::parse("localhost:7676").unwrap();
        let origin = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, value.parse().unwrap());
            check_origin(&headers, &host).is_ok()
        };
        assert!(check_origin(&HeaderMap::new(), &host).is_ok());
        assert!(origin("http://localhost:7676"));
        assert!(origin("https://LOCALHOST:7676"));
        for foreign in [
            "http://evil.example",
            "http://localhost:3000",
            "http://localhost",
            "http://127.0.0.1:7676",
            "null",
            "file://",
            "localhost:7676",
        ] {
            assert!(!origin(foreign), "{foreign}");
        }
        // Default ports: `https://carpool.lan` is the origin of `Host: carpool.lan`.
        let host = HostPort::parse("carpool.lan").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://carpool.lan".parse().unwrap());
        assert!(check_origin(&headers, &host).is_ok());
    }

    #[test]
    fn lockouts_answer_429_with_retry_after_in_whole_seconds() {
        let e = too_many_attempts(Duration::from_millis(299_001));
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(300));
        assert_eq!(too_many_attempts(Duration::ZERO).retry_after, Some(1));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer cpa-x"), Some("cpa-x"));
        assert_eq!(bearer_token("bearer  cpa-x "), Some("cpa-x"));
        assert_eq!(bearer_token("Basic cpa-x"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
