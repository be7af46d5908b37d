//! Self-tests of the proxy and TLS test support (`tests/common/proxy.rs`,
//! `tests/common/tls.rs`, `Mock::start_tls`), with a plain reqwest client and no Carpool:
//! HTTP forwarding (streaming and not), CONNECT to the TLS mock, 407s, and SOCKS5 spoken
//! by hand (reqwest here lacks its `socks` feature).

mod common;

use std::time::Duration;

use common::proxy::{HttpProxy, Socks5Proxy, SocksError, exchange, socks5_connect};
use common::tls::client_builder_trusting;
use common::*;

const USER: &str = "proxy-user";
const PASS: &str = "proxy-pass";

/// A client sending everything through `proxy_url`.
fn client_via(proxy_url: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .proxy(reqwest::Proxy::all(proxy_url).unwrap())
        .build()
        .unwrap()
}

async fn post_message(client: &reqwest::Client, base_url: &str, stream: bool) -> reqwest::Response {
    client
        .post(format!("{base_url}/v1/messages"))
        .header("authorization", format!("Bearer {ACCESS}"))
        .header("anthropic-version", "2023-06-01")
        .json(&message_body(stream))
        .send()
        .await
        .unwrap()
}

async fn list_models(
    client: &reqwest::Client,
    base_url: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .get(format!("{base_url}/v1/models"))
        .header("authorization", format!("Bearer {ACCESS}"))
        .send()
        .await
}

#[tokio::test]
async fn http_proxy_forwards_plain_requests() {
    let mock = Mock::start(ACCESS).await;
    let proxy = HttpProxy::start(None).await;
    let client = client_via(&proxy.url());

    // Several requests on one client: each proxied exchange closes its connection.
    for _ in 0..3 {
        let resp = post_message(&client, &mock.url(), false).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["content"][0]["text"], mock::MOCK_REPLY_TEXT);
    }

    let url = format!("{}/v1/messages", mock.url());
    assert_eq!(proxy.forwards(), vec![url.clone(), url.clone(), url]);
    assert!(proxy.connects().is_empty());
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].uri, "/v1/messages");
    assert_eq!(requests[0].headers["connection"], "close");
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body, message_body(false));
}

#[tokio::test]
async fn http_proxy_passes_streams_through_as_they_arrive() {
    let mock = Mock::start(ACCESS).await;
    let proxy = HttpProxy::start(Some((USER, PASS))).await;
    let client = client_via(&proxy.url_with_auth(USER, PASS));

    // The mock holds the stream after its first event until released: that event
    // must reach the client meanwhile.
    mock.push(Reply::GatedStream);
    let mut resp = post_message(&client, &mock.url(), true).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("first event arrives before the gate opens")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: message_start"));
    assert!(
        !mock
            .state
            .gate_passed
            .load(std::sync::atomic::Ordering::SeqCst)
    );

    mock.release();
    let mut text = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        text,
        mock::sse_events("claude-sonnet-4-5-20250929").concat()
    );

    assert_eq!(
        proxy.forwards(),
        vec![format!("{}/v1/messages", mock.url())]
    );
    assert_eq!(proxy.rejected(), 0);
    // The proxy keeps its own credentials to itself.
    let headers = &mock.requests()[0].headers;
    assert!(headers.get("proxy-authorization").is_none());
    assert_eq!(headers["authorization"], format!("Bearer {ACCESS}"));
}

#[tokio::test]
async fn http_proxy_tunnels_https_with_connect() {
    let (mock, ca_pem) = Mock::start_tls(ACCESS).await;
    assert!(mock.url().starts_with("https://127.0.0.1:"));
    let proxy = HttpProxy::start(Some((USER, PASS))).await;
    let client = client_builder_trusting(&ca_pem)
        .proxy(reqwest::Proxy::all(proxy.url_with_auth(USER, PASS)).unwrap())
        .build()
        .unwrap();

    let resp = list_models(&client, &mock.url()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post_message(&client, &mock.url(), true).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

    // One tunnel, reused for both requests; nothing forwarded in the clear.
    assert_eq!(proxy.connects(), vec![mock.addr.to_string()]);
    assert!(proxy.forwards().is_empty());
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn tls_mock_is_trusted_only_with_its_ca() {
    let (mock, ca_pem) = Mock::start_tls(ACCESS).await;
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();

    // Only the test CA (webpki verifier).
    let only = client_builder_trusting(&ca_pem).build().unwrap();
    let resp = list_models(&only, &mock.url()).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Like the real API, the TLS mock offers HTTP/2 by ALPN.
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);

    // The test CA on top of the platform roots (rustls-platform-verifier).
    let merged = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_merge([ca.clone()])
        .build()
        .unwrap();
    assert_eq!(
        list_models(&merged, &mock.url()).await.unwrap().status(),
        200
    );
    let added = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    assert_eq!(
        list_models(&added, &mock.url()).await.unwrap().status(),
        200
    );

    // The certificate also names localhost.
    let localhost = format!("https://localhost:{}", mock.addr.port());
    assert_eq!(list_models(&only, &localhost).await.unwrap().status(), 200);

    // Without the CA, verification fails.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(list_models(&plain, &mock.url()).await.is_err());
}

#[tokio::test]
async fn http_proxy_demands_credentials() {
    let mock = Mock::start(ACCESS).await;
    let (tls_mock, ca_pem) = Mock::start_tls(ACCESS).await;
    let proxy = HttpProxy::start(Some((USER, PASS))).await;

    for proxy_url in [proxy.url(), proxy.url_with_auth(USER, "wrong")] {
        // Plain HTTP: the client sees the proxy's 407.
        let resp = list_models(&client_via(&proxy_url), &mock.url())
            .await
            .unwrap();
        assert_eq!(resp.status(), 407);
        assert_eq!(resp.headers()["proxy-authenticate"], "Basic realm=\"test\"");

        // HTTPS: the CONNECT fails, so the request does.
        let client = client_builder_trusting(&ca_pem)
            .proxy(reqwest::Proxy::all(&proxy_url).unwrap())
            .build()
            .unwrap();
        assert!(list_models(&client, &tls_mock.url()).await.is_err());
    }

    assert_eq!(proxy.rejected(), 4);
    assert!(proxy.connects().is_empty());
    assert!(proxy.forwards().is_empty());
    assert!(mock.requests().is_empty());
    assert!(tls_mock.requests().is_empty());
}

/// A raw `GET /v1/models` for the mock at `port`, closing the connection after.
fn models_request(port: u16) -> String {
    format!(
        "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {ACCESS}\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn socks5_without_auth() {
    let mock = Mock::start(ACCESS).await;
    let proxy = Socks5Proxy::start(None).await;
    let port = mock.addr.port();

    // An IPv4 target, then a domain name the proxy resolves (as with socks5h://).
    for host in ["127.0.0.1", "localhost"] {
        let mut tunnel = socks5_connect(proxy.addr, None, host, port).await.unwrap();
        let response = exchange(&mut tunnel, &models_request(port)).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("claude-sonnet-4-5-20250929"));
    }

    // An IPv6 target: nothing listens on [::1] there, so a failure reply (not a hang
    // or a dropped connection) proves the address was parsed.
    match socks5_connect(proxy.addr, None, "::1", port).await {
        Err(SocksError::Reply(code)) => assert_ne!(code, 0),
        other => panic!("expected a failure reply, got {other:?}"),
    }

    // A client offering only username/password is turned away.
    assert!(matches!(
        socks5_connect(proxy.addr, Some((USER, PASS)), "127.0.0.1", port).await,
        Err(SocksError::NoAcceptableMethod)
    ));

    assert_eq!(
        proxy.connects(),
        vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")]
    );
    assert_eq!(proxy.auth_failures(), 0);
    assert_eq!(mock.requests().len(), 2);
    assert!(proxy.url().starts_with("socks5://127.0.0.1:"));
    assert!(proxy.socks5h_url().starts_with("socks5h://127.0.0.1:"));
}

#[tokio::test]
async fn socks5_with_auth() {
    let mock = Mock::start(ACCESS).await;
    let proxy = Socks5Proxy::start(Some((USER, PASS))).await;
    let port = mock.addr.port();
    assert_eq!(
        proxy.url_with_auth(USER, PASS),
        format!("socks5://{USER}:{PASS}@{}", proxy.addr)
    );

    let mut tunnel = socks5_connect(proxy.addr, Some((USER, PASS)), "127.0.0.1", port)
        .await
        .unwrap();
    let response = exchange(&mut tunnel, &models_request(port)).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    // Wrong password, wrong user: refused and counted.
    for (user, pass) in [(USER, "wrong"), ("mallory", PASS)] {
        assert!(matches!(
            socks5_connect(proxy.addr, Some((user, pass)), "127.0.0.1", port).await,
            Err(SocksError::AuthRefused)
        ));
    }
    // No credentials offered at all: no acceptable method.
    assert!(matches!(
        socks5_connect(proxy.addr, None, "127.0.0.1", port).await,
        Err(SocksError::NoAcceptableMethod)
    ));

    assert_eq!(proxy.connects(), vec![format!("127.0.0.1:{port}")]);
    assert_eq!(proxy.auth_failures(), 2);
    assert_eq!(mock.requests().len(), 1);
}
