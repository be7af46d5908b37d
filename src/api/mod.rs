//! The management API: `/api/v1/…`, JSON in and out, for the dashboard, the tray app
//! and scripts. No relayed client path starts with `/api/`.
//!
//! The OpenAPI 3.1 document is generated from the handlers and types here (utoipa) and
//! served at `/api/v1/openapi.json`; `carpool openapi` prints it without a running
//! server, which is what the dashboard's typed client is generated from.
//!
//! Every route needs admin access ([`auth`]).

pub mod accounts;
mod auth;
mod error;
mod status;

use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use axum::{Json, Router, middleware};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::Engine;

pub use auth::{ADMIN_FILE, Admin, reset as reset_admin_secret};
pub use error::{ApiError, ErrorBody, ErrorDetail};

/// Where the API's routes start.
pub const PREFIX: &str = "/api/v1";

/// What every handler is given.
pub struct Api {
    pub engine: Arc<Engine>,
    pub admin: Admin,
    pub started: Instant,
    /// OAuth logins started and waiting for their code (`POST /accounts/login`).
    pub logins: crate::credentials::login::Logins,
}

impl Api {
    pub fn new(engine: Arc<Engine>, admin: Admin) -> Arc<Api> {
        Arc::new(Api {
            engine,
            admin,
            started: Instant::now(),
            logins: Default::default(),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Carpool management API",
        description = "Manage a running Carpool: accounts, pools, users, settings, usage and a live feed of requests.",
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "status", description = "The engine, every account and pool"),
        (name = "accounts", description = "Upstream accounts: Claude logins, credentials files, API keys"),
    )
)]
struct Doc;

fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(Doc::openapi()).nest(
        PREFIX,
        OpenApiRouter::new()
            .routes(routes!(status::get_status))
            .routes(routes!(accounts::list_accounts, accounts::create_account))
            .routes(routes!(accounts::update_account, accounts::delete_account))
            .routes(routes!(accounts::start_login))
            .routes(routes!(accounts::finish_login)),
    )
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The API's routes, all behind admin access, and its OpenAPI document.
pub fn router(api: Arc<Api>) -> Router {
    let (routes, doc) = routes().split_for_parts();
    let doc = Arc::new(doc);
    routes
        .route(
            &format!("{PREFIX}/openapi.json"),
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .layer(middleware::from_fn_with_state(
            api.clone(),
            auth::require_admin,
        ))
        .with_state(api)
}
