//! Outbound proxies for tests, on 127.0.0.1 with ephemeral ports: an HTTP/1.1 forward
//! proxy ([`HttpProxy`]) and a SOCKS5 proxy ([`Socks5Proxy`]). Either can demand a
//! username and password, and both record what they were asked to do so tests can assert
//! that traffic really went through them.
//!
//! [`HttpProxy`] handles the two ways a client uses an HTTP proxy:
//! - `CONNECT host:port` (what reqwest sends for an `https://` URL): it answers
//!   `200 Connection established` and then copies bytes both ways, blind to the TLS inside;
//! - absolute-form requests (`POST http://127.0.0.1:PORT/v1/messages HTTP/1.1`, what
//!   reqwest sends for an `http://` URL): it rewrites the request line to origin-form,
//!   drops the proxy headers, asks the upstream for `Connection: close`, and then copies
//!   the rest of that one exchange both ways as it arrives (so SSE streams stay streams).
//!   One request per client connection: the upstream's `connection: close` (hyper, and so
//!   the mock, sends it) tells the client not to reuse it.
//!
//! [`Socks5Proxy`] implements RFC 1928 `CONNECT` (IPv4, domain name and IPv6 targets) with
//! no authentication or RFC 1929 username/password. reqwest (with its `socks` feature)
//! resolves names itself for `socks5://` and lets the proxy resolve them for `socks5h://`;
//! both work here. [`socks5_connect`] is a small client for tests that speak SOCKS by hand.
//!
//! Credentials in the URLs these return are not percent-encoded: use plain ones.
//! Every task ends when the test's runtime ends.

#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest request head the HTTP proxy accepts.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take over its request head or SOCKS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 forward proxy. Clones share the same records.
#[derive(Clone)]
pub struct HttpProxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<HttpLog>>,
}

#[derive(Default)]
struct HttpLog {
    connects: Vec<String>,
    forwards: Vec<String>,
    rejected: usize,
}

impl HttpProxy {
    /// Starts the proxy; with `auth`, every request must carry
    /// `Proxy-Authorization: Basic base64(user:pass)` or gets a 407.
    pub async fn start(auth: Option<(&str, &str)>) -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(HttpLog::default()));
        let expected = auth.map(|(user, pass)| format!("{user}:{pass}"));
        let shared = Arc::new((expected, log.clone()));
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        tokio::spawn(accept_loop(listener, move |client| {
            let shared = shared.clone();
            async move {
                let (expected, log) = &*shared;
                let _ = serve_http(client, expected.as_deref(), log).await;
            }
        }));
        HttpProxy { addr, log }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:pass@127.0.0.1:PORT`
    pub fn url_with_auth(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.addr)
    }

    /// The `host:port` targets tunnelled with `CONNECT`, in order.
    pub fn connects(&self) -> Vec<String> {
        self.log.lock().unwrap().connects.clone()
    }

    /// The absolute URLs of the plain-HTTP requests forwarded, in order.
    pub fn forwards(&self) -> Vec<String> {
        self.log.lock().unwrap().forwards.clone()
    }

    /// How many requests were refused with 407.
    pub fn rejected(&self) -> usize {
        self.log.lock().unwrap().rejected
    }
}

/// A SOCKS5 proxy. Clones share the same records.
#[derive(Clone)]
pub struct Socks5Proxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<SocksLog>>,
}

#[derive(Default)]
struct SocksLog {
    connects: Vec<String>,
    auth_failures: usize,
}

impl Socks5Proxy {
    /// Starts the proxy; with `auth`, clients must use username/password (method 0x02)
    /// with these credentials, otherwise they must offer "no authentication" (0x00).
    pub async fn start(auth: Option<(&str, &str)>) -> Socks5Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(SocksLog::default()));
        let expected = auth.map(|(user, pass)| (user.to_owned(), pass.to_owned()));
        let shared = Arc::new((expected, log.clone()));
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        tokio::spawn(accept_loop(listener, move |client| {
            let shared = shared.clone();
            async move {
                let (expected, log) = &*shared;
                let _ = serve_socks(client, expected.as_ref(), log).await;
            }
        }));
        Socks5Proxy { addr, log }
    }

    /// `socks5://127.0.0.1:PORT` (the client resolves host names).
    pub fn url(&self) -> String {
        format!("socks5://{}", self.addr)
    }

    /// `socks5://user:pass@127.0.0.1:PORT`
    pub fn url_with_auth(&self, user: &str, pass: &str) -> String {
        format!("socks5://{user}:{pass}@{}", self.addr)
    }

    /// `socks5h://127.0.0.1:PORT` (the proxy resolves host names).
    pub fn socks5h_url(&self) -> String {
        format!("socks5h://{}", self.addr)
    }

    /// The `host:port` targets tunnelled, in order, as the client named them
    /// (`127.0.0.1:80`, `localhost:80`, `[::1]:80`).
    pub fn connects(&self) -> Vec<String> {
        self.log.lock().unwrap().connects.clone()
    }

    /// How many username/password attempts were refused.
    pub fn auth_failures(&self) -> usize {
        self.log.lock().unwrap().auth_failures
    }
}

/// Accepts connections until the runtime ends, serving each in its own task.
async fn accept_loop<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let _ = client.set_nodelay(true);
                #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
                tokio::spawn(serve(client));
            }
            // E.g. out of file descriptors: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP proxy

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(bytes: &[u8]) -> io::Result<Head> {
        let text = std::str::from_utf8(bytes).map_err(|_| bad("request head is not UTF-8"))?;
        let mut lines = text.split("\r\n").filter(|line| !line.is_empty());
        let request_line = lines.next().ok_or_else(|| bad("empty request"))?;
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("malformed request line"));
        };
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad("malformed header"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Head {
            method: method.to_owned(),
            target: target.to_owned(),
            version: version.to_owned(),
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// Reads up to the end of the request head. Returns the head (without the blank line)
/// and whatever bytes came after it.
async fn read_head(stream: &mut TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Ok((buf, rest));
        }
    }
    Err(bad("request head too long"))
}

/// Does `Proxy-Authorization` carry `Basic base64(expected)`?
fn authorized(head: &Head, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(value) = head.header("proxy-authorization") else {
        return false;
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("basic")
        && BASE64.decode(encoded.trim()).ok().as_deref() == Some(expected.as_bytes())
}

async fn serve_http(
    mut client: TcpStream,
    expected: Option<&str>,
    log: &Mutex<HttpLog>,
) -> io::Result<()> {
    let (head, rest) = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head(&mut client))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let head = Head::parse(&head)?;
    if !authorized(&head, expected) {
        log.lock().unwrap().rejected += 1;
        client
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"test\"\r\n\
                  Content-Length: 0\r\n\
                  Connection: close\r\n\r\n",
            )
            .await?;
        return client.shutdown().await;
    }
    if head.method.eq_ignore_ascii_case("CONNECT") {
        tunnel(client, &head, rest, log).await
    } else {
        forward(client, &head, rest, log).await
    }
}

async fn bad_gateway(client: &mut TcpStream) -> io::Result<()> {
    client
        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await?;
    client.shutdown().await
}

/// `CONNECT host:port`: open the tunnel, then copy both ways until both sides are done.
async fn tunnel(
    mut client: TcpStream,
    head: &Head,
    early: Vec<u8>,
    log: &Mutex<HttpLog>,
) -> io::Result<()> {
    let Ok(mut upstream) = TcpStream::connect(head.target.as_str()).await else {
        return bad_gateway(&mut client).await;
    };
    let _ = upstream.set_nodelay(true);
    log.lock().unwrap().connects.push(head.target.clone());
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    // Bytes a client sent before waiting for our answer belong to the tunnel.
    upstream.write_all(&early).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// An absolute-form request: send it upstream in origin-form, then relay this one
/// exchange and close.
async fn forward(
    mut client: TcpStream,
    head: &Head,
    body_start: Vec<u8>,
    log: &Mutex<HttpLog>,
) -> io::Result<()> {
    let Some(after_scheme) = head.target.strip_prefix("http://") else {
        return bad_gateway(&mut client).await;
    };
    let (authority, path) = match after_scheme.find(['/', '?']) {
        Some(i) => after_scheme.split_at(i),
        None => (after_scheme, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let Ok(mut upstream) = TcpStream::connect(address.as_str()).await else {
        return bad_gateway(&mut client).await;
    };
    let _ = upstream.set_nodelay(true);
    log.lock().unwrap().forwards.push(head.target.clone());

    let mut out = format!("{} {path} {}\r\n", head.method, head.version);
    for (name, value) in &head.headers {
        let hop_by_hop = [
            "proxy-authorization",
            "proxy-connection",
            "connection",
            "keep-alive",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h));
        if !hop_by_hop {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&body_start).await?;

    // The exchange is over when the upstream has sent its whole response and closed
    // (it was asked to); the client's side may stay open, hoping for keep-alive.
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let request_body = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        result = tokio::io::copy(&mut upstream_read, &mut client_write) => { result?; }
        _ = request_body => {}
    }
    client_write.shutdown().await
}

// ---------------------------------------------------------------------------------------
// SOCKS5 proxy (RFC 1928, RFC 1929)

const SOCKS_VERSION: u8 = 0x05;
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;
const REPLY_SUCCEEDED: u8 = 0x00;
const REPLY_GENERAL_FAILURE: u8 = 0x01;
const REPLY_NETWORK_UNREACHABLE: u8 = 0x03;
const REPLY_HOST_UNREACHABLE: u8 = 0x04;
const REPLY_CONNECTION_REFUSED: u8 = 0x05;
const REPLY_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const REPLY_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

async fn serve_socks(
    mut client: TcpStream,
    expected: Option<&(String, String)>,
    log: &Mutex<SocksLog>,
) -> io::Result<()> {
    let handshake = socks_handshake(&mut client, expected, log);
    let Some(mut upstream) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??
    else {
        return Ok(());
    };
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Runs the SOCKS5 exchange up to the CONNECT reply. Returns the upstream connection,
/// or `None` when the client was refused (the refusal has been sent).
async fn socks_handshake(
    client: &mut TcpStream,
    expected: Option<&(String, String)>,
    log: &Mutex<SocksLog>,
) -> io::Result<Option<TcpStream>> {
    // Greeting: VER NMETHODS METHODS...
    if client.read_u8().await? != SOCKS_VERSION {
        return Err(bad("not SOCKS5"));
    }
    let n_methods = client.read_u8().await?;
    let mut methods = vec![0u8; n_methods.into()];
    client.read_exact(&mut methods).await?;
    let method = if expected.is_some() {
        USER_PASS
    } else {
        NO_AUTH
    };
    if !methods.contains(&method) {
        client
            .write_all(&[SOCKS_VERSION, NO_ACCEPTABLE_METHOD])
            .await?;
        return Ok(None);
    }
    client.write_all(&[SOCKS_VERSION, method]).await?;

    // RFC 1929: VER(1) ULEN UNAME PLEN PASSWD, answered with VER STATUS.
    if let Some((user, pass)) = expected {
        if client.read_u8().await? != 0x01 {
            return Err(bad("bad username/password version"));
        }
        let got_user = read_short_string(client).await?;
        let got_pass = read_short_string(client).await?;
        if got_user != user.as_bytes() || got_pass != pass.as_bytes() {
            log.lock().unwrap().auth_failures += 1;
            client.write_all(&[0x01, 0x01]).await?;
            return Ok(None);
        }
        client.write_all(&[0x01, 0x00]).await?;
    }

    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let [version, command, _reserved, address_type] = request;
    if version != SOCKS_VERSION {
        return Err(bad("not SOCKS5"));
    }
    let host = match address_type {
        ATYP_IPV4 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets).await?;
            Ipv4Addr::from(octets).to_string()
        }
        ATYP_DOMAIN => String::from_utf8_lossy(&read_short_string(client).await?).into_owned(),
        ATYP_IPV6 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets).await?;
            Ipv6Addr::from(octets).to_string()
        }
        _ => {
            socks_reply(client, REPLY_ADDRESS_TYPE_NOT_SUPPORTED, None).await?;
            return Ok(None);
        }
    };
    let port = client.read_u16().await?;
    if command != CMD_CONNECT {
        socks_reply(client, REPLY_COMMAND_NOT_SUPPORTED, None).await?;
        return Ok(None);
    }
    let upstream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let code = match e.kind() {
                io::ErrorKind::ConnectionRefused => REPLY_CONNECTION_REFUSED,
                io::ErrorKind::NetworkUnreachable => REPLY_NETWORK_UNREACHABLE,
                io::ErrorKind::HostUnreachable => REPLY_HOST_UNREACHABLE,
                _ => REPLY_GENERAL_FAILURE,
            };
            socks_reply(client, code, None).await?;
            return Ok(None);
        }
    };
    let _ = upstream.set_nodelay(true);
    socks_reply(client, REPLY_SUCCEEDED, Some(upstream.local_addr()?)).await?;
    let target = if address_type == ATYP_IPV6 {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    log.lock().unwrap().connects.push(target);
    Ok(Some(upstream))
}

/// A length byte and that many bytes.
async fn read_short_string<R: AsyncRead + Unpin>(stream: &mut R) -> io::Result<Vec<u8>> {
    let len = stream.read_u8().await?;
    let mut bytes = vec![0u8; len.into()];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// VER REP RSV ATYP BND.ADDR BND.PORT; failures carry 0.0.0.0:0.
async fn socks_reply(
    client: &mut TcpStream,
    code: u8,
    bound: Option<SocketAddr>,
) -> io::Result<()> {
    let bound = bound.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut reply = vec![SOCKS_VERSION, code, 0x00];
    match bound.ip() {
        IpAddr::V4(ip) => {
            reply.push(ATYP_IPV4);
            reply.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            reply.push(ATYP_IPV6);
            reply.extend_from_slice(&ip.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&reply).await
}

// ---------------------------------------------------------------------------------------
// SOCKS5 client, for tests that speak SOCKS by hand

/// Why [`socks5_connect`] got no tunnel.
#[derive(Debug)]
pub enum SocksError {
    Io(io::Error),
    /// The proxy accepted none of the offered methods (0xFF).
    NoAcceptableMethod,
    /// The proxy refused the username/password (RFC 1929 status ≠ 0).
    AuthRefused,
    /// The CONNECT reply carried this failure code (RFC 1928 REP).
    Reply(u8),
}

impl From<io::Error> for SocksError {
    fn from(e: io::Error) -> SocksError {
        SocksError::Io(e)
    }
}

/// Opens a tunnel to `host:port` through the SOCKS5 proxy at `proxy`, offering only
/// "no authentication" without `auth`, only username/password with it. `host` is sent
/// as an IPv4 or IPv6 address when it parses as one, else as a domain name.
pub async fn socks5_connect(
    proxy: SocketAddr,
    auth: Option<(&str, &str)>,
    host: &str,
    port: u16,
) -> Result<TcpStream, SocksError> {
    let mut stream = TcpStream::connect(proxy).await?;
    let method = if auth.is_some() { USER_PASS } else { NO_AUTH };
    stream.write_all(&[SOCKS_VERSION, 1, method]).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[1] != method {
        return Err(SocksError::NoAcceptableMethod);
    }
    if let Some((user, pass)) = auth {
        let mut message = vec![0x01];
        write_short_string(&mut message, user.as_bytes());
        write_short_string(&mut message, pass.as_bytes());
        stream.write_all(&message).await?;
        let mut status = [0u8; 2];
        stream.read_exact(&mut status).await?;
        if status[1] != 0 {
            return Err(SocksError::AuthRefused);
        }
    }
    let mut request = vec![SOCKS_VERSION, CMD_CONNECT, 0x00];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(ATYP_IPV4);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(ATYP_IPV6);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            request.push(ATYP_DOMAIN);
            write_short_string(&mut request, host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    let address_len = match reply[3] {
        ATYP_IPV4 => 4,
        ATYP_IPV6 => 16,
        ATYP_DOMAIN => stream.read_u8().await?.into(),
        _ => return Err(bad("bad address type in reply").into()),
    };
    let mut bound = vec![0u8; address_len + 2];
    stream.read_exact(&mut bound).await?;
    if reply[1] != REPLY_SUCCEEDED {
        return Err(SocksError::Reply(reply[1]));
    }
    Ok(stream)
}

fn write_short_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).expect("at most 255 bytes"));
    out.extend_from_slice(bytes);
}

/// Writes `request` to `stream` and reads until the peer closes (at most 10 s),
/// for raw HTTP/1.1 exchanges with `Connection: close` through a tunnel.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> io::Result<String> {
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(String::from_utf8_lossy(&response).into_owned())
}
