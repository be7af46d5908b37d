//! How handlers change the configuration: through the engine's one write path
//! ([`Engine::edit_config`]: comment-preserving, 409 on an unread hand edit, validated,
//! atomic, applied), off the async threads since it reads and writes a file.

use std::net::SocketAddr;

use axum::http::HeaderMap;

use super::{Api, ApiError};
use crate::config::edit::{ConfigDoc, EditError};
use crate::engine::{Edited, Engine};

/// Runs `edit` on the config file of `api`'s engine and applies it; a refusal is the
/// [`ApiError`] that says why (422 naming the field, 404, 409, 503 without a file).
pub async fn edit<T: Send + 'static>(
    api: &Api,
    edit: impl FnOnce(&mut ConfigDoc) -> Result<T, EditError> + Send + 'static,
) -> Result<Edited<T>, ApiError> {
    blocking(api, move |engine| {
        engine.edit_config(edit).map_err(ApiError::from)
    })
    .await
}

/// Runs a blocking operation on the engine (file and keyring I/O, a config edit) off the
/// async threads.
pub async fn blocking<T: Send + 'static>(
    api: &Api,
    op: impl FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine: std::sync::Arc<Engine> = api.engine.clone();
    tokio::task::spawn_blocking(move || op(&engine))
        .await
        .map_err(|_| ApiError::internal("the operation stopped unexpectedly"))?
}

/// The address clients should use: the host this request came to (what the admin typed
/// in the browser or script, so it is reachable from there), else the listen address.
pub fn client_base_url(headers: &HeaderMap, listen: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()));
    match host {
        Some(host) => format!("{scheme}://{host}"),
        None => listen_url(listen, tls),
    }
}

/// The URL other machines use for a listen address: the host name for a wildcard
/// listener, else the address; `https://` when Carpool serves TLS.
pub fn listen_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if addr.ip().is_unspecified() {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        if !host.is_empty() {
            return format!("{scheme}://{host}:{}", addr.port());
        }
    }
    format!("{scheme}://{addr}")
}
