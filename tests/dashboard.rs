//! The dashboard as `carpool serve` serves it at `/` (src/dashboard.rs), over real HTTP
//! against a real process; and `ui/openapi.json`, the document the UI's typed client is
//! generated from, kept equal to the engine's.

mod common;

use std::io::Read;

use common::process::*;
use common::*;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A client that neither decompresses nor asks for compression by itself.
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .build()
        .unwrap()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = plain().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn value(headers: &HeaderMap, name: impl header::AsHeaderName) -> &str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

fn assert_secured(headers: &HeaderMap, what: &str) {
    assert_eq!(
        value(headers, header::CONTENT_SECURITY_POLICY),
        CSP,
        "{what}"
    );
    assert_eq!(
        value(headers, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(value(headers, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(value(headers, "x-frame-options"), "DENY", "{what}");
}

/// The `./assets/...` files index.html loads.
fn referenced_assets(html: &str) -> Vec<String> {
    html.split(['"', '\''])
        .filter_map(|part| part.strip_prefix("./assets/"))
        .map(|name| format!("/assets/{name}"))
        .collect()
}

/// `carpool serve` for one test, stopped at the end, and killed if the test fails first.
struct Serving(Option<Process>);

impl Serving {
    fn start(setup: &Setup) -> Serving {
        Serving(Some(serve(setup, &[])))
    }

    fn stop(mut self) {
        let p = self.0.take().unwrap();
        sigterm(&p.child);
        let (code, stderr) = finish(p);
        assert_eq!(code, 0, "{stderr}");
    }
}

impl std::ops::Deref for Serving {
    type Target = Process;
    fn deref(&self) -> &Process {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut p) = self.0.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn the_page_and_its_hashed_assets_are_served_with_a_strict_policy_and_right_caching() {
    let setup = Setup::new().await;
    let p = Serving::start(&setup);
    let banner = p.stdout.join("\n");
    assert!(
        banner.contains(&format!("Dashboard: {}/", p.url)),
        "{banner}"
    );

    for path in ["/", "/index.html"] {
        let response = get(&format!("{}{path}", p.url), &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_secured(&headers, path);
        assert_eq!(value(&headers, header::CACHE_CONTROL), "no-cache");
        assert_eq!(
            value(&headers, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert!(
            value(&headers, header::ETAG).starts_with('"'),
            "{headers:?}"
        );
        let html = response.text().await.unwrap();
        assert!(html.contains("<div id=\"app\">"), "{html}");
        // No inline script: the policy would block it.
        assert!(!html.contains("<script>"), "{html}");
    }

    let html = get(&format!("{}/", p.url), &[]).await.text().await.unwrap();
    let assets = referenced_assets(&html);
    let scripts: Vec<_> = assets.iter().filter(|a| a.ends_with(".js")).collect();
    let styles: Vec<_> = assets.iter().filter(|a| a.ends_with(".css")).collect();
    assert!(!scripts.is_empty() && !styles.is_empty(), "{html}");
    for asset in &assets {
        // Vite's content hash: `name-HASH.ext`, HASH 8 base64url characters.
        let stem = asset.rsplit_once('.').unwrap().0.as_bytes();
        let (name, hash) = stem.split_at(stem.len().saturating_sub(9));
        assert!(
            !name.is_empty()
                && hash[0] == b'-'
                && hash[1..]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'),
            "{asset} has no content hash"
        );
        let response = get(&format!("{}{asset}", p.url), &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let headers = response.headers().clone();
        assert_secured(&headers, asset);
        assert_eq!(value(&headers, header::CACHE_CONTROL), IMMUTABLE, "{asset}");
        let want = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(value(&headers, header::CONTENT_TYPE), want, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }

    // The icon the page names: a short cache, not an immutable one (its name has no hash).
    let icon = get(&format!("{}/favicon.svg", p.url), &[]).await;
    assert_eq!(icon.status(), StatusCode::OK);
    assert_eq!(value(icon.headers(), header::CONTENT_TYPE), "image/svg+xml");
    assert_eq!(
        value(icon.headers(), header::CACHE_CONTROL),
        "public, max-age=3600"
    );
    assert_secured(icon.headers(), "favicon.svg");

    p.stop();
}

#[tokio::test]
async fn etags_revalidate_gzip_is_served_when_asked_and_head_has_no_body() {
    let setup = Setup::new().await;
    let p = Serving::start(&setup);
    let html = get(&format!("{}/", p.url), &[]).await.text().await.unwrap();
    let script = referenced_assets(&html)
        .into_iter()
        .find(|a| a.ends_with(".js"))
        .unwrap();

    for path in ["/", script.as_str()] {
        let url = format!("{}{path}", p.url);
        let first = get(&url, &[]).await;
        let etag = value(first.headers(), header::ETAG).to_owned();
        let identity = first.bytes().await.unwrap();

        let again = get(&url, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(value(again.headers(), header::ETAG), etag);
        assert_secured(again.headers(), path);
        assert!(again.bytes().await.unwrap().is_empty());
        // A weak comparison, in a list, matches too; another tag does not.
        let listed = format!("\"other\", W/{etag}");
        let weak = get(&url, &[("if-none-match", &listed)]).await;
        assert_eq!(weak.status(), StatusCode::NOT_MODIFIED, "{path}");
        let other = get(&url, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(other.status(), StatusCode::OK, "{path}");

        let packed = get(&url, &[("accept-encoding", "br;q=0.9, gzip")]).await;
        assert_eq!(packed.status(), StatusCode::OK, "{path}");
        let headers = packed.headers().clone();
        assert_eq!(value(&headers, header::CONTENT_ENCODING), "gzip", "{path}");
        assert_eq!(value(&headers, header::VARY), "accept-encoding");
        let gz_etag = value(&headers, header::ETAG).to_owned();
        assert_ne!(gz_etag, etag, "each encoding has its own tag");
        let body = packed.bytes().await.unwrap();
        assert!(body.len() < identity.len(), "{path}");
        assert_eq!(gunzip(&body), identity, "{path}");
        let fresh = get(
            &url,
            &[("accept-encoding", "gzip"), ("if-none-match", &gz_etag)],
        )
        .await;
        assert_eq!(fresh.status(), StatusCode::NOT_MODIFIED, "{path}");

        let refused = get(&url, &[("accept-encoding", "gzip;q=0, br")]).await;
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(refused.bytes().await.unwrap(), identity);

        let head = plain().head(&url).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "{path}");
        assert_eq!(
            value(head.headers(), header::CONTENT_LENGTH),
            identity.len().to_string()
        );
        assert_eq!(value(head.headers(), header::ETAG), etag);
        assert_secured(head.headers(), path);
        assert!(head.bytes().await.unwrap().is_empty());
    }

    p.stop();
}

#[tokio::test]
async fn the_relay_and_the_api_are_unaffected() {
    let setup = Setup::new().await;
    let p = Serving::start(&setup);

    let missing = get(&format!("{}/assets/index-00000000.js", p.url), &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_secured(missing.headers(), "a missing asset");
    let elsewhere = get(&format!("{}/nothing/here", p.url), &[]).await;
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    // The relay's own 404, in the API's error shape, not the dashboard's.
    assert!(
        elsewhere
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .is_none(),
        "{:?}",
        elsewhere.headers()
    );
    let body: serde_json::Value = elsewhere.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");

    let relayed = ask_at(&p.url, false).await;
    assert_eq!(relayed.status(), StatusCode::OK);
    assert_eq!(setup.mock.messages(), 1);

    // The page needs no sign-in; the API behind it does.
    let status = plain()
        .get(format!("{}/api/v1/status", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::UNAUTHORIZED);
    let post = plain()
        .request(Method::POST, format!("{}/", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);

    p.stop();
}

/// ui/openapi.json is what the UI's types are generated from (`npm run gen`): it must be
/// the engine's document exactly, so a field renamed in Rust fails the UI's type check.
#[test]
fn ui_openapi_json_is_the_engines_document() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/openapi.json");
    let want = carpool::dashboard::openapi_json();
    if std::env::var_os("CARPOOL_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its length".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "ui/openapi.json is not the engine's OpenAPI document (first difference: {line}). \
             Regenerate it: `cargo run -- openapi > ui/openapi.json` \
             (or `CARPOOL_BLESS=1 cargo test --test dashboard`)"
        );
    }
    // What `carpool openapi` prints is that same text.
    let printed = std::process::Command::new(BIN)
        .arg("openapi")
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(String::from_utf8(printed.stdout).unwrap(), want);
}
