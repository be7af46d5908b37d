//! `GET /requests/recent`: the latest requests the ledger kept, newest first, failed
//! ones only if asked (the overview's "recent errors").
//!
//! The ledger keeps one row per request that passed authentication (refused tokens are
//! only in the log and the live feed), so this is what those rows hold: metadata, never
//! a prompt, an answer or a token. Read through a read-only connection on a blocking
//! thread, as [`super::usage`] does.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Api, ApiError};
use crate::ledger::store;

/// The most rows one answer holds.
pub const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;

/// The questions `GET /requests/recent` takes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecentParams {
    /// Only requests that failed: the client got a status of 400 or more, or the answer
    /// did not end whole for a reason other than the client closing it (`outcome` other
    /// than `complete` and `client_closed`).
    pub failed: Option<bool>,
    /// How many rows, newest first: 1 to 500. Default: 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// One request as the ledger kept it: the live feed's `RequestEvent` fields that the
/// ledger has. Metadata only: no prompt, no answer, no token, no header.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecentRequest {
    /// When the request arrived: RFC 3339, UTC, with milliseconds.
    pub at: String,
    /// The same instant in Unix milliseconds.
    pub at_ms: i64,
    /// The relayed endpoint: `messages`, `count_tokens` or `models`.
    pub endpoint: String,
    /// The Carpool user's name; `null` for anonymous use on loopback.
    pub user: Option<String>,
    /// The tag of the account that answered (the last one tried); `null` if none did.
    pub account: Option<String>,
    /// The model that answered, else the one asked for; `null` if neither is known.
    pub model: Option<String>,
    /// The HTTP status the client got.
    pub status: u16,
    /// How the request ended: `complete`, `upstream_error`, `client_closed`,
    /// `upstream_broke`, `request_timeout`, `idle_timeout` or `error` (Carpool answered
    /// with an error of its own).
    pub outcome: String,
    /// Whether it counts as failed (see the `failed` parameter).
    pub failed: bool,
    /// Fresh input tokens.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (5-minute and 1-hour).
    pub cache_write_tokens: u64,
    /// What the request cost, in millionths of a dollar; `null` when its model has no
    /// known price.
    pub cost_micros: Option<i64>,
    /// The same in dollars.
    pub cost_usd: Option<f64>,
    /// From arrival to the last byte sent, in milliseconds.
    pub duration_ms: u64,
    /// From arrival to the first byte of the answer, in milliseconds; `null` if none
    /// was sent.
    pub ttfb_ms: Option<u64>,
}

/// The requests, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecentRequests {
    pub requests: Vec<RecentRequest>,
}

/// What makes a row failed, in SQL and in Rust alike.
const FAILED_SQL: &str = "(status >= 400 OR outcome NOT IN ('complete', 'client_closed'))";

fn is_failed(status: u16, outcome: &str) -> bool {
    status >= 400 || !matches!(outcome, "complete" | "client_closed")
}

/// The latest requests the ledger kept, newest first; only the failed ones with
/// `failed=true`.
#[utoipa::path(get, path = "/requests/recent", tag = "requests", operation_id = "recentRequests",
    params(RecentParams),
    responses(
        (status = 200, description = "The requests, newest first", body = RecentRequests),
        (status = 401, body = super::ErrorBody),
        (status = 422, description = "A parameter is wrong; the message names it", body = super::ErrorBody),
    ))]
pub async fn recent_requests(
    State(api): State<Arc<Api>>,
    params: Result<Query<RecentParams>, QueryRejection>,
) -> Result<Json<RecentRequests>, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit: {limit} is not between 1 and {MAX_LIMIT}"
        )));
    }
    let failed = params.failed.unwrap_or(false);
    let database = api.engine.ledger.path().to_owned();
    let requests = tokio::task::spawn_blocking(move || {
        let conn = store::open_read_only(&database)
            .map_err(|e| ApiError::unavailable(format!("cannot read the requests: {e}")))?;
        read(&conn, failed, limit)
            .map_err(|e| ApiError::internal(format!("cannot read the requests: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the requests failed: {e}")))??;
    Ok(Json(RecentRequests { requests }))
}

fn read(conn: &Connection, failed: bool, limit: usize) -> rusqlite::Result<Vec<RecentRequest>> {
    let filter = if failed {
        format!("WHERE {FAILED_SQL}")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT at_ms, endpoint, user, credential, model, status, outcome,
            input_tokens, output_tokens, cache_read_tokens,
            cache_write_5m_tokens + cache_write_1h_tokens, cost_micros, duration_ms, ttfb_ms
         FROM requests {filter} ORDER BY at_ms DESC, id DESC LIMIT ?1"
    );
    let text = |s: String| (!s.is_empty()).then_some(s);
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([limit as i64], |row| {
        let at_ms: i64 = row.get(0)?;
        let status: u16 = row.get(5)?;
        let outcome: String = row.get(6)?;
        let cost_micros: Option<i64> = row.get(11)?;
        Ok(RecentRequest {
            at: jiff::Timestamp::from_millisecond(at_ms)
                .map(|t| format!("{t:.3}"))
                .unwrap_or_default(),
            at_ms,
            endpoint: row.get(1)?,
            user: text(row.get(2)?),
            account: text(row.get(3)?),
            model: text(row.get(4)?),
            status,
            failed: is_failed(status, &outcome),
            outcome,
            input_tokens: count(row.get(7)?),
            output_tokens: count(row.get(8)?),
            cache_read_tokens: count(row.get(9)?),
            cache_write_tokens: count(row.get(10)?),
            cost_micros,
            cost_usd: cost_micros.map(|micros| micros as f64 / 1e6),
            duration_ms: count(row.get(12)?),
            ttfb_ms: row.get::<_, Option<i64>>(13)?.map(count),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_means_an_error_status_or_an_answer_cut_by_something_else_than_the_client() {
        assert!(!is_failed(200, "complete"));
        assert!(!is_failed(200, "client_closed"));
        assert!(is_failed(200, "upstream_broke"));
        assert!(is_failed(200, "idle_timeout"));
        assert!(is_failed(429, "complete"));
        assert!(is_failed(503, "error"));
    }
}
