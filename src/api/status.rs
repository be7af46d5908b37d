//! `GET /status`: the engine and every account and pool.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Api, ApiError};
use crate::pool::PoolStatus;

/// The engine and every account and pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Carpool's version.
    pub version: &'static str,
    /// Where the relay listens, as `ip:port`.
    pub listen: String,
    /// Seconds since this Carpool started.
    pub uptime_s: u64,
    /// Usage records written to the database since start.
    pub usage_written: u64,
    /// Usage records lost since start because the disk could not keep up.
    pub usage_dropped: u64,
    #[serde(flatten)]
    pub pool: PoolStatus,
}

/// The engine and every account and pool, now.
#[utoipa::path(get, path = "/status", tag = "status", operation_id = "getStatus",
    responses((status = 200, body = Status), (status = 401, body = super::ErrorBody)))]
pub async fn get_status(State(api): State<Arc<Api>>) -> Result<Json<Status>, ApiError> {
    let state = api.engine.state();
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        listen: state.config.listen.to_string(),
        uptime_s: api.started.elapsed().as_secs(),
        usage_written: api.engine.ledger.written(),
        usage_dropped: api.engine.ledger.dropped_count(),
        pool: api.engine.status(),
    }))
}
