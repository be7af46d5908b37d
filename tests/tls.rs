//! Carpool serving HTTPS itself (`tls`): relay and API on the one listener over TLS, with
//! HTTP/2 and HTTP/1.1 by ALPN; a renewed certificate taken without a restart (and a bad
//! one not); TLS turned on by a live reload. The Python SDK over HTTPS is in
//! `real_clients.rs`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::tls::{TestCerts, client_builder_trusting};
use common::{Managed, Setup};
use reqwest::header::SET_COOKIE;
use reqwest::{StatusCode, Version};
use serde_json::json;

/// A setup whose config serves TLS with `certs` (written into its directory).
async fn tls_setup(certs: &TestCerts) -> Setup {
    let mut setup = Setup::new().await;
    let (certificate, key) = certs.write_pem(setup.dir.path());
    setup.config["tls"] = json!({"certificate": certificate, "key": key});
    setup
}

/// A client trusting only `ca_pem`, opening a new connection for every request (so each
/// request sees the certificate served at that moment).
fn fresh_client(ca_pem: &str) -> reqwest::Client {
    client_builder_trusting(ca_pem)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn ask(client: &reqwest::Client, base_url: &str) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base_url}/v1/messages"))
        .bearer_auth(common::ALICE_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .json(&common::message_body(false))
        .send()
        .await
}

async fn status(client: &reqwest::Client, api: &Managed) -> reqwest::Result<reqwest::Response> {
    client
        .get(api.url("/status"))
        .bearer_auth(&api.secret)
        .send()
        .await
}

#[tokio::test]
async fn relay_and_api_are_served_over_https_with_h2_and_http1() {
    let certs = TestCerts::generate();
    let setup = tls_setup(&certs).await;
    let api = setup.start_managed().await;
    let base = api.server.url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let h2 = client_builder_trusting(&certs.ca_pem).build().unwrap();
    let relayed = ask(&h2, &base).await.unwrap();
    assert_eq!(relayed.status(), StatusCode::OK);
    assert_eq!(relayed.version(), Version::HTTP_2, "ALPN offers h2");
    let body: serde_json::Value = relayed.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], common::mock::MOCK_REPLY_TEXT);

    let http1 = client_builder_trusting(&certs.ca_pem)
        .http1_only()
        .build()
        .unwrap();
    let relayed = ask(&http1, &base).await.unwrap();
    assert_eq!(relayed.status(), StatusCode::OK);
    assert_eq!(relayed.version(), Version::HTTP_11);
    assert_eq!(setup.mock.messages(), 2);

    for client in [&h2, &http1] {
        let response = status(client, &api).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Over TLS the session cookie is `Secure`.
    let signed_in = h2
        .post(api.url("/session"))
        .json(&json!({"secret": api.secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let cookie = signed_in.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // Plain HTTP to the TLS port is told what to do instead of cut off.
    let plain = ask(&common::client(), &format!("http://{}", api.server.addr))
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
    assert!(plain.text().await.unwrap().contains("https://"));
    // A client that does not trust the certificate does not get through.
    let untrusting = TestCerts::generate();
    assert!(ask(&fresh_client(&untrusting.ca_pem), &base).await.is_err());
    api.server.shutdown().await;
}

/// Waits until a new connection trusting `ca_pem` gets through, for at most `limit`.
async fn served_with(ca_pem: &str, base: &str, limit: Duration) -> bool {
    let client = fresh_client(ca_pem);
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if ask(&client, base)
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_bad_one_is_not() {
    let first = TestCerts::generate();
    let setup = tls_setup(&first).await;
    let carpool = setup.start().await;
    let base = carpool.url();
    assert!(served_with(&first.ca_pem, &base, Duration::from_secs(5)).await);

    let second = TestCerts::generate();
    second.write_pem(setup.dir.path());
    let changed = Instant::now();
    assert!(
        served_with(&second.ca_pem, &base, Duration::from_secs(10)).await,
        "the new certificate was not served within 10 s"
    );
    println!("new certificate served after {:?}", changed.elapsed());
    assert!(ask(&fresh_client(&first.ca_pem), &base).await.is_err());

    // A key that does not belong to the certificate: logged, and the one in use stays.
    write_key_of(&TestCerts::generate(), setup.dir.path());
    // Past the re-check interval, so a connection looks at the files again.
    tokio::time::sleep(carpool::tls::RECHECK + Duration::from_millis(300)).await;
    for _ in 0..3 {
        let response = ask(&fresh_client(&second.ca_pem), &base).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    carpool.shutdown().await;
}

/// Replaces only the key file in `dir` with `certs`' key.
fn write_key_of(certs: &TestCerts, dir: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let (_, key) = certs.write_pem(scratch.path());
    std::fs::copy(key, dir.join("key.pem.tmp")).unwrap();
    std::fs::rename(dir.join("key.pem.tmp"), dir.join("key.pem")).unwrap();
}

#[tokio::test]
async fn a_live_reload_turns_tls_on_and_a_bad_certificate_refuses_the_edit() {
    let certs = TestCerts::generate();
    let mut setup = Setup::new().await;
    let carpool = setup.start().await;
    let plain = common::ask(&carpool, false).await;
    assert_eq!(plain.status(), StatusCode::OK);

    let (certificate, key) = certs.write_pem(setup.dir.path());
    setup.config["tls"] = json!({"certificate": certificate, "key": key});
    let config = carpool::Config::parse(&setup.config.to_string(), &setup.config_path()).unwrap();
    let changes = carpool.engine.apply(config).unwrap();
    assert_eq!(changes.settings, ["tls"]);
    assert!(changes.needs_restart.is_empty());
    assert!(carpool.url().starts_with("https://"));
    let https = ask(&fresh_client(&certs.ca_pem), &carpool.url())
        .await
        .unwrap();
    assert_eq!(https.status(), StatusCode::OK);

    setup.config["tls"]["key"] = json!(setup.dir.path().join("missing.pem"));
    let config = carpool::Config::parse(&setup.config.to_string(), &setup.config_path()).unwrap();
    let refused = carpool.engine.apply(config).unwrap_err().to_string();
    assert!(
        refused.contains("missing.pem") && refused.contains("cannot read the key file"),
        "{refused}"
    );
    let still = ask(&fresh_client(&certs.ca_pem), &carpool.url())
        .await
        .unwrap();
    assert_eq!(still.status(), StatusCode::OK);
    carpool.shutdown().await;
}

/// An address of this machine that is not loopback, if it has one (a UDP "connection"
/// towards a TEST-NET address sends nothing).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn carpool_serve_prints_https_and_warns_only_about_plain_http() {
    use common::process::{finish, serve, sigterm};

    // With TLS, listening beyond loopback where the machine allows it, and the API open
    // to other machines: nothing to warn about.
    let certs = TestCerts::generate();
    let mut setup = tls_setup(&certs).await;
    if let Some(ip) = non_loopback_address() {
        setup.config["listen"] = json!(ip.to_string());
    }
    setup.config["admin"] = json!({"remote": true});
    let p = serve(&setup, &[]);
    assert!(p.url.starts_with("https://"), "{:?}", p.stdout);
    let banner = p.stdout.join("\n");
    assert!(banner.contains("ANTHROPIC_BASE_URL=https://"), "{banner}");
    sigterm(&p.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("plain HTTP"), "{stderr}");

    // Without TLS, an API open to other machines is warned about at start.
    let mut setup = Setup::new().await;
    setup.config["admin"] = json!({"remote": true});
    let p = serve(&setup, &[]);
    assert!(p.url.starts_with("http://"), "{:?}", p.stdout);
    sigterm(&p.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("`admin.remote` is true and Carpool serves plain HTTP"),
        "{stderr}"
    );
}
