//! Admin access to the management API over real HTTP: signing in for a session cookie,
//! the CSRF token on writes, the Host allow-list, the Origin check, the lockout, the peer
//! check, and a walk over the OpenAPI document showing that no route but signing in is
//! reachable without admin access.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Managed, Setup};
use reqwest::header::{COOKIE, HOST, ORIGIN, RETRY_AFTER, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `POST /session` with `secret`.
async fn sign_in_with(api: &Managed, secret: &str) -> reqwest::Response {
    common::client()
        .post(api.url("/session"))
        .json(&json!({ "secret": secret }))
        .send()
        .await
        .unwrap()
}

/// Signs in; returns the `Cookie` header value to send and the CSRF token.
async fn sign_in(api: &Managed) -> (String, String) {
    let response = sign_in_with(api, &api.secret).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = cookie_of(&response);
    let body: Value = response.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

/// `carpool_session=…` from a response's `Set-Cookie`.
fn cookie_of(response: &reqwest::Response) -> String {
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_writes_need_its_csrf_token() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let client = common::client();

    let wrong = sign_in_with(&api, "cpa-not-the-secret").await;
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let (status, code, _) = error_code(wrong).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    let response = sign_in_with(&api, &api.secret).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        ["HttpOnly", "SameSite=Strict", "Path=/"],
        "{set_cookie}"
    );
    let cookie = cookie_of(&response);
    assert!(cookie.len() > "carpool_session=".len() + 40, "{cookie}");
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert!(csrf.len() >= 43);
    let expires_at = body["expires_at"].as_u64().unwrap();
    assert!(expires_at.abs_diff(unix_now() + 12 * 3600) < 60, "{body}");

    // Reads need only the cookie.
    let status = client
        .get(api.url("/status"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    // A reloaded page gets its CSRF token back.
    let session: Value = client
        .get(api.url("/session"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["via"], "session");
    assert_eq!(session["csrf_token"], csrf.as_str());
    let bearer: Value = api
        .admin(Method::GET, "/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        bearer,
        json!({"via": "bearer", "csrf_token": null, "expires_at": null})
    );

    // Writes with the cookie need the CSRF token: missing, wrong, then right.
    for token in [None, Some("wrong"), Some(&csrf[1..])] {
        let mut request = client.delete(api.url("/session")).header(COOKIE, &cookie);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let (status, code, message) = error_code(request.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{token:?}"
        );
        assert!(message.contains("x-csrf-token"), "{message}");
    }
    let signed_out = client
        .delete(api.url("/session"))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let cleared = signed_out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("carpool_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    let after = client
        .get(api.url("/status"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let (status, _, message) = error_code(after).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("sign in again"), "{message}");
    api.server.shutdown().await;
}

#[tokio::test]
async fn a_new_admin_secret_ends_every_session() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let (cookie, _) = sign_in(&api).await;
    carpool::api::reset_admin_secret(setup.dir.path()).unwrap();
    let response = common::client()
        .get(api.url("/status"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    api.server.shutdown().await;
}

#[tokio::test]
async fn a_host_the_api_does_not_answer_to_is_misdirected() {
    let mut setup = Setup::new().await;
    setup.config["admin"] = json!({"hosts": ["carpool.example.lan"]});
    let api = setup.start_managed().await;
    let port = api.server.addr.port();

    for host in ["evil.example".to_owned(), format!("rebound.example:{port}")] {
        let response = api
            .admin(Method::GET, "/status")
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_code(response).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        assert_eq!(code, "misdirected");
        assert!(message.contains("admin.hosts"), "{message}");
    }
    // Signing in is checked too.
    let response = common::client()
        .post(api.url("/session"))
        .header(HOST, "evil.example")
        .json(&json!({"secret": api.secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(response.headers().get(SET_COOKIE).is_none());

    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "carpool.example.lan".to_owned(),
        format!("Carpool.Example.Lan:{port}"),
    ] {
        let response = api
            .admin(Method::GET, "/status")
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    // The relay is not the API: it answers to any name.
    let relayed = common::client()
        .post(format!("{}/v1/messages", api.server.url()))
        .header(HOST, "evil.example")
        .bearer_auth(common::ALICE_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .json(&common::message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), StatusCode::OK);
    api.server.shutdown().await;
}

#[tokio::test]
async fn a_write_from_a_foreign_origin_is_refused() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let own = api.server.url();
    let port = api.server.addr.port();

    for origin in [
        "http://evil.example".to_owned(),
        "null".to_owned(),
        // Another web app on this machine is another origin.
        "http://127.0.0.1:1".to_owned(),
        format!("http://localhost:{port}"),
    ] {
        let response = api
            .admin(Method::DELETE, "/session")
            .header(ORIGIN, &origin)
            .send()
            .await
            .unwrap();
        let (status, code, _) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{origin}"
        );
    }
    // Signing in from a foreign page sets no cookie.
    let response = common::client()
        .post(api.url("/session"))
        .header(ORIGIN, "http://evil.example")
        .json(&json!({"secret": api.secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());

    // The API's own pages may; reads are not checked.
    let response = api
        .admin(Method::DELETE, "/session")
        .header(ORIGIN, &own)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = api
        .admin(Method::GET, "/status")
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.server.shutdown().await;
}

/// A client whose connections come from `ip` (any 127.x.y.z is this machine).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn five_wrong_secrets_lock_the_address_out_with_retry_after() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let guesser = client_from("127.0.0.1");
    let sign_in = |secret: &str| {
        guesser
            .post(api.url("/session"))
            .json(&json!({ "secret": secret }))
            .send()
    };
    for attempt in 1..=4 {
        let response = sign_in("cpa-guess").await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let fifth = sign_in("cpa-guess").await.unwrap();
    assert_eq!(fifth.status(), StatusCode::TOO_MANY_REQUESTS);

    // Locked out: even the right secret, signing in or as bearer, gets 429.
    for response in [
        sign_in(&api.secret).await.unwrap(),
        guesser
            .get(api.url("/status"))
            .bearer_auth(&api.secret)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = response.headers()[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=300).contains(&retry_after), "{retry_after}");
        let (_, code, message) = error_code(response).await;
        assert_eq!(code, "too_many_attempts");
        assert!(message.contains("try again in"), "{message}");
    }

    // Counted per address: another one is served, and wrong bearer secrets count too.
    let other = client_from("127.0.0.2");
    let response = other
        .get(api.url("/status"))
        .bearer_auth(&api.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let third = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = third
            .get(api.url("/status"))
            .bearer_auth(common::ALICE_TOKEN)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429]);
    // The relay does not care: alice's token works there from the locked address.
    let relayed = third
        .post(format!("{}/v1/messages", api.server.url()))
        .bearer_auth(common::ALICE_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .json(&common::message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), StatusCode::OK);
    api.server.shutdown().await;
}

/// Every operation of the served OpenAPI document: (method, path with `{…}` filled in,
/// path as documented).
async fn operations(api: &Managed) -> Vec<(Method, String, String)> {
    let doc: Value = api
        .admin(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let filled: String = path
            .split('/')
            .map(|part| {
                if part.starts_with('{') && part.ends_with('}') {
                    "dummy"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, _) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            if [
                "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
            ]
            .contains(&method.as_str())
            {
                found.push((method, filled.clone(), path.clone()));
            }
        }
    }
    found
}

fn is_sign_in(method: &Method, path: &str) -> bool {
    method == Method::POST && path == format!("{}/session", carpool::api::PREFIX)
}

#[tokio::test]
async fn no_route_but_signing_in_is_reachable_without_admin_access() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let operations = operations(&api).await;
    assert!(
        operations
            .iter()
            .any(|(m, _, p)| m == Method::GET && p.ends_with("/status")),
        "the walk sees the routes: {operations:?}"
    );
    assert_eq!(
        operations
            .iter()
            .filter(|(m, _, p)| is_sign_in(m, p))
            .count(),
        1
    );
    let client = common::client();
    let base = api.server.url();
    let mut unexpected = Vec::new();
    let call = |method: &Method, path: &str| {
        let mut request = client.request(method.clone(), format!("{base}{path}"));
        if method != Method::GET && method != Method::HEAD {
            request = request.json(&json!({}));
        }
        request
    };
    // The document itself is behind admin access too.
    let mut all = operations.clone();
    all.push((
        Method::GET,
        format!("{}/openapi.json", carpool::api::PREFIX),
        "openapi.json".into(),
    ));
    for (method, path, documented) in &all {
        let status = call(method, path).send().await.unwrap().status();
        let expected = if is_sign_in(method, documented) {
            // Reachable: the empty body is refused for what it is.
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::UNAUTHORIZED
        };
        if status != expected {
            unexpected.push(format!("{method} {path}: {status}, expected {expected}"));
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");

    // With a session cookie but no CSRF token, every state-changing operation is refused.
    let (cookie, _) = sign_in(&api).await;
    for (method, path, documented) in &operations {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            || is_sign_in(method, documented)
        {
            continue;
        }
        let response = call(method, path)
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::FORBIDDEN {
            unexpected.push(format!(
                "{method} {path} with a cookie, no CSRF: {}",
                response.status()
            ));
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    api.server.shutdown().await;
}

/// An address of this machine that is not loopback, if it has one: the one it would
/// send from towards a TEST-NET address (a UDP "connection" sends nothing).
fn non_loopback_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn another_machine_is_refused_unless_admin_remote_is_on() {
    // The decision itself is unit-tested (`api::auth::tests`); this shows it over a real
    // connection, where the machine has an address to make one from.
    let Some(ip) = non_loopback_address() else {
        println!("skipped: this machine has no non-loopback address to connect from");
        return;
    };
    let mut setup = Setup::new().await;
    setup.config["listen"] = json!(ip.to_string());
    setup.config["admin"] = json!({"hosts": [ip.to_string()]});
    let api = setup.start_managed().await;
    let url = |addr: SocketAddr| format!("http://{addr}{}/status", carpool::api::PREFIX);
    let response = common::client()
        .get(url(api.server.addr))
        .bearer_auth(&api.secret)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_code(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(message.contains(r#""remote": true"#), "{message}");
    // Signing in too.
    let response = common::client()
        .post(format!(
            "http://{}{}/session",
            api.server.addr,
            carpool::api::PREFIX
        ))
        .json(&json!({"secret": api.secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The relay serves that machine as before.
    let relayed = common::ask(&api.server, false).await;
    assert_eq!(relayed.status(), StatusCode::OK);
    api.server.shutdown().await;

    setup.config["admin"]["remote"] = json!(true);
    // A fresh data directory, so that the new server makes (and tells) an admin secret.
    setup.config["data_dir"] = json!(setup.dir.path().join("remote"));
    let api = setup.start_managed().await;
    let response = common::client()
        .get(url(api.server.addr))
        .bearer_auth(&api.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.server.shutdown().await;
}
