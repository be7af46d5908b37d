//! Talking to the upstream: the HTTP client and which headers may cross the relay,
//! whatever the protocol.
//!
//! Request headers: the client's, minus hop-by-hop headers, reverse-proxy headers and
//! every credential header (the Carpool token never leaves)
//! ([`forwarded_request_headers`]); then what the client's protocol adds, the operator's
//! `headers` ([`apply_operator_headers`]) and the account's credential, in the order
//! [`crate::protocol::Protocol::request_headers`] gives. `Accept-Encoding` is Carpool's:
//! reqwest asks for gzip and decompresses, so the relay can always read usage from the
//! bytes it forwards (docs/protocol.md §9.6).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::Timeouts;
use crate::secret::Secret;

/// Headers never copied in either direction.
fn is_hop_or_proxy_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "cdn-loop"
            | "true-client-ip"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-real-ip"
            | "forwarded"
    ) || name.starts_with("cf-")
}

/// Client request headers that are not copied upstream.
fn is_dropped_request_header(name: &str) -> bool {
    is_hop_or_proxy_header(name)
        || is_client_credential(name)
        || matches!(
            name,
            // Set by Carpool / reqwest.
            "accept-encoding" | "content-length"
            // Negotiated between the client and Carpool, which already holds the whole body.
            | "expect"
        )
}

/// A credential of the client's: the Carpool token, a stray real key, a cookie or a
/// cloud provider's session token. None of them is the upstream's business, and some
/// would authenticate as someone else than the account Carpool picked. Matched by name
/// pattern, so spellings nobody listed are caught too: any `*api-key*`/`*apikey*`,
/// `*token*`, `*secret*`, `*password*`, `*credential*`, `*authorization*` and
/// `*subscription-key*` header (`x-amz-security-token`, `x-goog-api-key`, `openai-api-key`,
/// `ocp-apim-subscription-key`, …), and cookies. `name` is lower case, as
/// [`http::HeaderName`]s are.
fn is_client_credential(name: &str) -> bool {
    matches!(name, "cookie" | "cookie2") || CREDENTIAL_PATTERNS.is_match(name)
}

/// The name patterns of [`is_client_credential`], in one automaton: checked for every
/// header of every request, where nine substring searches cost about a microsecond.
static CREDENTIAL_PATTERNS: std::sync::LazyLock<aho_corasick::AhoCorasick> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::new([
            "api-key",
            "apikey",
            "api_key",
            "token",
            "secret",
            "password",
            "credential",
            "authorization",
            "subscription-key",
        ])
        .expect("fixed patterns build")
    });

/// Headers named in a `Connection` header are hop-by-hop too (RFC 9110 §7.6.1).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// How a request authenticates upstream.
pub enum UpstreamAuth<'a> {
    /// A subscription's OAuth access token, and for a ChatGPT login its account id
    /// (`ChatGPT-Account-Id`).
    OAuth {
        token: &'a Secret,
        account_id: Option<&'a str>,
    },
    /// An API key.
    ApiKey(&'a Secret),
}

impl<'a> UpstreamAuth<'a> {
    /// An OAuth token without an account id (a Claude login).
    pub fn oauth(token: &'a Secret) -> UpstreamAuth<'a> {
        UpstreamAuth::OAuth {
            token,
            account_id: None,
        }
    }
}

/// The client's request headers that may go upstream: all but hop-by-hop, reverse-proxy
/// and credential headers (the Carpool token never leaves), those the client's
/// `Connection` header lists, and those `owned` names (headers the protocol sets itself).
/// `room` is how many headers the protocol will add.
pub fn forwarded_request_headers(
    client: &HeaderMap,
    room: usize,
    owned: impl Fn(&str) -> bool,
) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + room);
    for (name, value) in client {
        let n = name.as_str();
        if is_dropped_request_header(n) || listed.iter().any(|l| l == n) || owned(n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The operator's `headers` from the config: each replaces same-named ones, and several
/// values for one name all go.
pub fn apply_operator_headers(out: &mut HeaderMap, operator: &[(HeaderName, HeaderValue)]) {
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in operator {
        if !replaced.contains(&name) {
            out.remove(name);
            replaced.push(name);
        }
        out.append(name.clone(), value.clone());
    }
}

/// The headers sent back to the client for an upstream response.
pub fn response_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let n = name.as_str();
        if is_hop_or_proxy_header(n) || listed.iter().any(|l| l == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The pooled client for one upstream. TCP_NODELAY: a relay that waits for Nagle adds
/// 40 ms to small writes at low concurrency, a known failure of other gateways.
///
/// `proxy` (http, https, socks5 or socks5h URL, credentials included) carries every
/// connection; without one, no proxy is used, whatever `HTTPS_PROXY` says, so traffic
/// goes where the config says. `extra_roots` are trusted for HTTPS besides the system's.
pub fn client(
    timeouts: &Timeouts,
    proxy: Option<&str>,
    extra_roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(url) = proxy {
        let proxy = reqwest::Proxy::all(url).map_err(|e| format!("proxy: {e}"))?;
        builder = builder.proxy(proxy);
    }
    if !extra_roots.is_empty() {
        builder = builder.tls_certs_merge(extra_roots.iter().cloned());
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn response_keeps_retry_after_and_rate_limit_headers() {
        let upstream = map(&[
            ("retry-after", "30"),
            ("anthropic-ratelimit-unified-5h-utilization", "0.5"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("content-type", "text/event-stream"),
        ]);
        let out = response_headers(&upstream);
        assert_eq!(out["retry-after"], "30");
        assert_eq!(out["anthropic-ratelimit-unified-5h-utilization"], "0.5");
        assert_eq!(out["content-type"], "text/event-stream");
        assert!(!out.contains_key("transfer-encoding"));
        assert!(!out.contains_key("connection"));
    }
}

/// Why [`read_capped`] gave up.
#[derive(Debug)]
pub enum CappedRead {
    /// The body is longer than the cap; the rest was not read (the connection closes).
    TooLong(usize),
    /// The connection broke or timed out while reading (the error carries no URL).
    Broken(reqwest::Error),
}

impl std::fmt::Display for CappedRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CappedRead::TooLong(limit) => write!(f, "the answer is longer than {limit} bytes"),
            CappedRead::Broken(e) => write!(f, "{e}"),
        }
    }
}

/// Reads a whole body Carpool must parse itself (token endpoint, usage endpoint), giving
/// up beyond `limit` bytes: a broken or hostile upstream cannot make it buffer more.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, CappedRead> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CappedRead::Broken(e.without_url()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(CappedRead::TooLong(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
