//! Admin access to the management API.
//!
//! The admin secret is made at first start and shown once; only its SHA-256 is kept, in
//! `<data_dir>/admin.json` (0600). `carpool admin reset` replaces it; a running Carpool
//! sees the new file at the next request. Scripts send the secret as
//! `Authorization: Bearer cpa-…`. The relay never accepts it (its `cpa-` prefix is no
//! user token), and no user token is ever accepted here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{Api, ApiError};
use crate::secret::{TokenHash, generate_admin_secret};
use crate::tasks::{read, write};

/// The file holding the admin secret's hash, in Carpool's data directory.
pub const ADMIN_FILE: &str = "admin.json";

#[derive(Serialize, Deserialize)]
struct AdminFile {
    /// `sha256:<64 hex>` of the admin secret.
    secret_hash: String,
}

/// The admin secret's hash, read again whenever its file changes.
pub struct Admin {
    path: PathBuf,
    known: RwLock<Known>,
}

struct Known {
    hash: Option<TokenHash>,
    modified: Option<SystemTime>,
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
                modified: None,
            }),
        };
        admin.refresh();
        Ok((admin, created))
    }

    /// Reads the file again if it changed since it was last read.
    fn refresh(&self) -> Option<TokenHash> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        {
            let known = read(&self.known);
            if known.modified == modified && modified.is_some() {
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
        *write(&self.known) = Known { hash, modified };
        hash
    }

    /// Whether `secret` is the admin secret.
    pub fn accepts(&self, secret: &str) -> bool {
        self.refresh()
            .is_some_and(|hash| hash.ct_eq(&TokenHash::of(secret)))
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

/// Lets a request through only with admin access.
pub async fn require_admin(
    State(api): State<Arc<Api>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(secret) if api.admin.accepts(secret.trim()) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::unauthorized(
            "wrong admin secret; `carpool admin reset` on the Carpool machine makes a new one",
        )),
        None => Err(ApiError::unauthorized(
            "sign in first, or send the admin secret as `Authorization: Bearer cpa-…`",
        )),
    }
}
