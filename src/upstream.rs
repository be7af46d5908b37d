//! Talking to the upstream: the HTTP client and which headers cross the relay.
//!
//! Request headers: the client's, minus hop-by-hop headers, reverse-proxy headers and
//! every credential header (the Carpool token never leaves); then `anthropic-beta` gets
//! the OAuth beta Anthropic requires for subscription tokens; then the operator's
//! `headers`; finally `Authorization: Bearer <account token>`, which nothing overrides.
//! `Accept-Encoding` is Carpool's: reqwest asks for gzip and decompresses, so the relay
//! can always read usage from the bytes it forwards (protocol.md §9.6).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::Timeouts;
use crate::secret::Secret;

/// Anthropic accepts OAuth (subscription) access tokens only with this beta.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

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

/// The headers sent upstream for a client request.
/// How a request authenticates upstream.
pub enum UpstreamAuth<'a> {
    /// A Claude subscription's OAuth access token: `Authorization: Bearer`, plus the
    /// OAuth beta flag Anthropic requires for such tokens.
    OAuth(&'a Secret),
    /// An API key: `x-api-key`, no OAuth beta.
    ApiKey(&'a Secret),
}

pub fn request_headers(
    client: &HeaderMap,
    operator: &[(HeaderName, HeaderValue)],
    auth: UpstreamAuth<'_>,
) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        let n = name.as_str();
        if is_dropped_request_header(n) || listed.iter().any(|l| l == n) || n == "anthropic-beta" {
            continue;
        }
        out.append(name.clone(), value.clone());
    }

    // Several anthropic-beta headers mean one comma-separated list.
    let client_betas: Vec<&str> = client
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    let beta = if client_betas.contains(&OAUTH_BETA) || matches!(auth, UpstreamAuth::ApiKey(_)) {
        client_betas.join(",")
    } else {
        std::iter::once(OAUTH_BETA)
            .chain(client_betas)
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Ok(v) = HeaderValue::from_str(&beta) {
        if !beta.is_empty() {
            out.insert("anthropic-beta", v);
        }
    }

    // Operator headers replace same-named ones; several values for one name all go.
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in operator {
        if !replaced.contains(&name) {
            out.remove(name);
            replaced.push(name);
        }
        out.append(name.clone(), value.clone());
    }

    let (name, value) = match auth {
        UpstreamAuth::OAuth(token) => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token")),
        ),
        UpstreamAuth::ApiKey(key) => (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_str(key.expose())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid-key")),
        ),
    };
    let mut value = value;
    value.set_sensitive(true);
    out.insert(name, value);
    out
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
    fn credentials_and_hop_headers_never_go_upstream() {
        let client = map(&[
            ("authorization", "Bearer cpk-user-token"),
            ("x-api-key", "cpk-user-token"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("host", "carpool.local"),
            ("expect", "100-continue"),
            ("accept-encoding", "br"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("anthropic-version", "2023-06-01"),
            ("x-claude-code-session-id", "abc"),
            ("user-agent", "claude-cli/2.1.330 (external, cli)"),
        ]);
        let out = request_headers(
            &client,
            &[],
            UpstreamAuth::OAuth(&Secret::new("sk-ant-oat01-acct")),
        );
        assert_eq!(out["authorization"], "Bearer sk-ant-oat01-acct");
        assert!(out["authorization"].is_sensitive());
        for gone in [
            "x-api-key",
            "connection",
            "x-custom-hop",
            "host",
            "expect",
            "accept-encoding",
            "cf-connecting-ip",
            "x-forwarded-for",
        ] {
            assert!(!out.contains_key(gone), "{gone} leaked");
        }
        assert_eq!(out["anthropic-version"], "2023-06-01");
        assert_eq!(out["x-claude-code-session-id"], "abc");
        assert_eq!(out["user-agent"], "claude-cli/2.1.330 (external, cli)");
        assert!(!format!("{out:?}").contains("cpk-user-token"));
    }

    #[test]
    fn no_client_credential_of_any_kind_goes_upstream() {
        let client = map(&[
            ("cookie", "session=abc"),
            ("anthropic-api-key", "sk-ant-api03-x"),
            ("openai-api-key", "sk-x"),
            ("x-goog-api-key", "g"),
            ("api-key", "azure"),
            ("x-amz-security-token", "aws"),
            ("x-goog-iam-authorization-token", "gcp"),
            ("ocp-apim-subscription-key", "azure"),
            ("x-auth-token", "t"),
            ("x-client-secret", "s"),
            ("x-credential", "c"),
            ("x-authorization", "Bearer y"),
            ("anthropic-version", "2023-06-01"),
            ("x-stainless-retry-count", "0"),
            ("x-app", "cli"),
            ("idempotency-key", "k-1"),
        ]);
        let out = request_headers(&client, &[], UpstreamAuth::OAuth(&Secret::new("acct")));
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "anthropic-version",
                "x-stainless-retry-count",
                "x-app",
                "idempotency-key",
                "anthropic-beta",
                "authorization"
            ]
        );
        assert_eq!(out["authorization"], "Bearer acct");
    }

    #[test]
    fn oauth_beta_is_prepended_once() {
        let secret = Secret::new("t");
        let none = request_headers(&HeaderMap::new(), &[], UpstreamAuth::OAuth(&secret));
        assert_eq!(none["anthropic-beta"], OAUTH_BETA);
        let some = request_headers(
            &map(&[(
                "anthropic-beta",
                "claude-code-20250219, context-1m-2025-08-07",
            )]),
            &[],
            UpstreamAuth::OAuth(&secret),
        );
        assert_eq!(
            some["anthropic-beta"],
            "oauth-2025-04-20,claude-code-20250219,context-1m-2025-08-07"
        );
        let already = request_headers(
            &map(&[
                ("anthropic-beta", "a"),
                ("anthropic-beta", "oauth-2025-04-20"),
            ]),
            &[],
            UpstreamAuth::OAuth(&secret),
        );
        assert_eq!(already["anthropic-beta"], "a,oauth-2025-04-20");
    }

    #[test]
    fn api_keys_go_as_x_api_key_without_the_oauth_beta() {
        let key = Secret::new("sk-ant-api03-key");
        let client = map(&[
            ("authorization", "Bearer cpk-user-token"),
            ("anthropic-beta", "context-1m-2025-08-07"),
        ]);
        let out = request_headers(&client, &[], UpstreamAuth::ApiKey(&key));
        assert_eq!(out["x-api-key"], "sk-ant-api03-key");
        assert!(out.get("authorization").is_none());
        assert_eq!(out["anthropic-beta"], "context-1m-2025-08-07");
        let bare = request_headers(&HeaderMap::new(), &[], UpstreamAuth::ApiKey(&key));
        assert!(bare.get("anthropic-beta").is_none());
    }

    #[test]
    fn operator_headers_replace_client_ones_but_not_authorization() {
        let client = map(&[("user-agent", "client"), ("x-keep", "1")]);
        let operator = vec![
            (
                HeaderName::from_static("user-agent"),
                HeaderValue::from_static("op"),
            ),
            (
                HeaderName::from_static("x-multi"),
                HeaderValue::from_static("a"),
            ),
            (
                HeaderName::from_static("x-multi"),
                HeaderValue::from_static("b"),
            ),
        ];
        let out = request_headers(&client, &operator, UpstreamAuth::OAuth(&Secret::new("tok")));
        assert_eq!(out["user-agent"], "op");
        assert_eq!(out["x-keep"], "1");
        let multi: Vec<_> = out.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(out["authorization"], "Bearer tok");
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
