//! The dashboard (ui/), embedded in the binary and served at `/` beside the relay and the
//! management API ([`crate::engine::Server::serve_also`]).
//!
//! build.rs builds ui/ with Vite and embeds every built file with a gzip copy (made once,
//! at build time, at the best level: the files never change while the binary runs, so
//! compressing per request or caching a copy at first use would only cost CPU and memory)
//! and a content hash for its ETag.
//!
//! - `/` and `/index.html`: the page, `Cache-Control: no-cache` (revalidated by ETag, so a
//!   new binary's page is seen at the next load);
//! - `/assets/*`: Vite's content-hashed files, cached for a year as immutable;
//! - the build's other top-level files (`/favicon.svg`): cached for an hour.
//!
//! Every answer carries [`CONTENT_SECURITY_POLICY`] and the other security headers. The
//! files need no admin access: they are the same for everyone and hold no data; the API
//! behind them asks for the admin secret. Paths the dashboard does not serve stay the
//! relay's (its 404), except under `/assets/`, which is the dashboard's.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::middleware::map_response;
use axum::routing::get;

/// One built file of the dashboard.
#[derive(Debug)]
pub struct File {
    /// Its path in the build, without a leading slash: `index.html`, `assets/index-3f2a.js`.
    pub name: &'static str,
    pub body: &'static [u8],
    /// Its gzip encoding, when that is smaller.
    pub gzip: Option<&'static [u8]>,
    /// Hex of the first bytes of its SHA-256: its ETag.
    pub hash: &'static str,
}

/// Every file of the built dashboard (written by build.rs).
pub static FILES: &[File] = include!(concat!(env!("OUT_DIR"), "/dashboard.rs"));

/// Scripts, styles, images, fonts and API calls from Carpool itself only; no inline
/// `<script>` or `style="..."` attribute, no plugins, no framing, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = "index.html";
const ASSETS: &str = "assets/";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";
const SHORT: &str = "public, max-age=3600";

/// The management API's OpenAPI document as `ui/openapi.json` holds it, from which the
/// UI's typed client is generated; `carpool openapi` prints it, and tests/dashboard.rs
/// fails when the file is not this text.
pub fn openapi_json() -> String {
    let mut text = crate::api::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// The built file called `name` (`index.html`, `assets/…`).
pub fn file(name: &str) -> Option<&'static File> {
    FILES.iter().find(|f| f.name == name)
}

/// The dashboard's routes, for [`crate::engine::Server::serve_also`].
pub fn router() -> Router {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*path}", get(asset));
    for file in FILES
        .iter()
        .filter(|f| f.name != INDEX && !f.name.contains('/'))
    {
        router = router.route(
            &format!("/{}", file.name),
            get(move |headers: HeaderMap| async move { answer(file, SHORT, &headers) }),
        );
    }
    router.layer(map_response(security_headers))
}

async fn index(headers: HeaderMap) -> Response<Body> {
    match file(INDEX) {
        Some(file) => answer(file, REVALIDATE, &headers),
        None => not_found(),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response<Body> {
    match file(&format!("{ASSETS}{path}")) {
        Some(file) => answer(file, IMMUTABLE, &headers),
        None => not_found(),
    }
}

fn answer(file: &'static File, cache: &'static str, request: &HeaderMap) -> Response<Body> {
    let gzip = file.gzip.filter(|_| accepts_gzip(request));
    let etag = match gzip {
        Some(_) => format!("\"{}-gz\"", file.hash),
        None => format!("\"{}\"", file.hash),
    };
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag);
    let mut response = Response::builder()
        .header(header::CACHE_CONTROL, cache)
        .header(header::ETAG, etag);
    if file.gzip.is_some() {
        response = response.header(header::VARY, "accept-encoding");
    }
    let response = if fresh {
        response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
    } else {
        let response = response.header(header::CONTENT_TYPE, content_type(file.name));
        match gzip {
            Some(bytes) => response
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(bytes)),
            None => response.body(Body::from(file.body)),
        }
    };
    response.expect("static headers are valid")
}

fn not_found() -> Response<Body> {
    let mut response = Response::new(Body::from("no such file in Carpool's dashboard\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    response
}

async fn security_headers(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether `Accept-Encoding` allows gzip (named, with a q-value above 0).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && q > 0.0
        })
}

/// The Content-Type of a built file, by its extension.
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match extension.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn gzip_is_chosen_only_when_allowed() {
        let accepts = |v| accepts_gzip(&with(header::ACCEPT_ENCODING, v));
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("deflate, gzip ; q=1.0"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_build_has_an_index_and_hashed_assets_with_known_types() {
        let index = file(INDEX).expect("index.html is embedded");
        let html = std::str::from_utf8(index.body).unwrap();
        assert!(html.contains("./assets/"), "{html}");
        for file in FILES {
            assert_ne!(
                content_type(file.name),
                "application/octet-stream",
                "{}",
                file.name
            );
            if let Some(gzip) = file.gzip {
                assert!(gzip.len() < file.body.len(), "{}", file.name);
            }
        }
    }
}
