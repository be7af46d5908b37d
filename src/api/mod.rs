//! The management API: `/api/v1/…`, JSON in and out, for the dashboard, the tray app
//! and scripts. No relayed client path starts with `/api/`.
//!
//! The OpenAPI 3.1 document is generated from the handlers and types here (utoipa) and
//! served at `/api/v1/openapi.json`; `carpool openapi` prints it without a running
//! server, which is what the dashboard's typed client is generated from.
//!
//! Every route needs admin access ([`auth`]), except signing in and the desktop window's
//! hand-over ([`session`]).

pub mod accounts;
mod auth;
mod error;
mod live;
mod lockout;
mod pools;
mod requests;
mod session;
mod settings;
mod status;
mod usage;
mod users;
pub mod write;

use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use axum::{Json, Router, middleware};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::Engine;
use crate::ledger::live::{LaggedEvent, RequestEvent};

pub use auth::{ADMIN_FILE, Admin, reset as reset_admin_secret};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use session::{COOKIE as SESSION_COOKIE, CSRF_HEADER};
pub use users::{ClientSetup, lead_provider};

/// Where the API's routes start.
pub const PREFIX: &str = "/api/v1";

/// What every handler is given.
pub struct Api {
    pub engine: Arc<Engine>,
    pub admin: Admin,
    pub started: Instant,
    /// Keeps the status watched for a while after each `GET /status`.
    status_lease: status::Lease,
    /// OAuth logins started and waiting for their code (`POST /accounts/login`).
    pub logins: crate::credentials::login::Logins,
}

impl Api {
    pub fn new(engine: Arc<Engine>, admin: Admin) -> Arc<Api> {
        Arc::new(Api {
            engine,
            admin,
            started: Instant::now(),
            status_lease: status::Lease::new(status::STATUS_LEASE),
            logins: Default::default(),
        })
    }

    /// A one-time ticket that signs a window in at `GET /api/v1/session/handover`, for
    /// the desktop app's own window: only code in this process can make one.
    pub fn handover_ticket(&self) -> String {
        self.admin.handovers.issue(Instant::now())
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Carpool management API",
        description = "Manage a running Carpool: accounts, pools, users, settings, usage and a live feed of requests.",
    ),
    components(schemas(ErrorBody, RequestEvent, LaggedEvent)),
    tags(
        (name = "status", description = "The engine, every account and pool"),
        (name = "users", description = "Who may use the relay: their tokens (shown once) and what they are bound to"),
        (name = "pools", description = "Groups of accounts that users can be bound to"),
        (name = "settings", description = "The relay's settings, and where Carpool keeps its files"),
        (name = "session", description = "Signing in with the admin secret: a session cookie and its CSRF token"),
        (name = "usage", description = "What was used and what it cost, over any range"),
        (name = "requests", description = "Relayed requests: as they end, live, and the latest ones the ledger kept"),
        (name = "accounts", description = "Upstream accounts: Claude logins, credentials files, API keys"),
    )
)]
struct Doc;

fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(Doc::openapi()).nest(
        PREFIX,
        OpenApiRouter::new()
            .routes(routes!(status::get_status))
            .routes(routes!(users::list_users, users::create_user))
            .routes(routes!(users::update_user, users::delete_user))
            .routes(routes!(users::rotate_user))
            .routes(routes!(pools::list_pools, pools::create_pool))
            .routes(routes!(pools::update_pool, pools::delete_pool))
            .routes(routes!(settings::get_settings, settings::update_settings))
            .routes(routes!(
                session::sign_in,
                session::get_session,
                session::sign_out
            ))
            .routes(routes!(session::hand_over))
            .routes(routes!(usage::get_usage))
            .routes(routes!(live::watch_requests))
            .routes(routes!(requests::recent_requests))
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
    auth::warn_if_open(&api.engine.state().config, api.engine.serves_tls());
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
