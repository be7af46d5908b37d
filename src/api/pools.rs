//! `/pools`: groups of accounts that users can be bound to (`balancer` and `fallback`
//! entries of the config's `credentials`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::write::edit;
use super::{Api, ApiError, ErrorBody};
use crate::config::manage::{self, PoolSpec};
use crate::config::{Config, Strategy, Target};

/// A pool as it runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pool {
    /// Its tag, unique among accounts and pools.
    pub tag: String,
    /// Whose API its accounts speak (all of them the same): `anthropic` (Claude) or
    /// `openai` (Codex, GPT models).
    pub provider: crate::config::Provider,
    /// How a new conversation picks an account.
    pub strategy: Strategy,
    /// Its accounts' tags, in order (the order matters for `fallback`).
    pub members: Vec<String>,
    /// How stale an account's usage figures may get before Carpool asks for fresh ones
    /// (as `60s`, `1m 30s`).
    pub poll_interval: String,
    /// How long a conversation stays on its account after its last request.
    pub session_ttl: String,
    /// The users bound to it.
    pub users: Vec<String>,
}

/// A new pool.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePool {
    /// Its tag: not one an account or pool already has.
    pub tag: String,
    pub strategy: Strategy,
    /// Account tags, at least one.
    pub members: Vec<String>,
    /// A duration such as `60s` (default `60s`).
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// A duration such as `1h` (default `1h`, the longest prompt-cache lifetime).
    #[serde(default)]
    pub session_ttl: Option<String>,
}

/// Changes to a pool; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePool {
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Account tags, at least one, in order.
    #[serde(default)]
    pub members: Option<Vec<String>>,
    #[serde(default)]
    pub poll_interval: Option<String>,
    #[serde(default)]
    pub session_ttl: Option<String>,
}

fn view(config: &Config, tag: &str) -> Option<Pool> {
    let pool = config.pools.iter().find(|p| p.tag.as_str() == tag)?;
    let duration = |d| humantime::format_duration(d).to_string();
    Some(Pool {
        tag: tag.to_owned(),
        provider: pool.provider,
        strategy: pool.strategy,
        members: pool.members.iter().map(|m| m.to_string()).collect(),
        poll_interval: duration(pool.poll_interval),
        session_ttl: duration(pool.session_ttl),
        users: config
            .users
            .iter()
            .filter(|u| {
                u.targets
                    .iter()
                    .any(|t| matches!(t, Target::Pool(p) if p.as_str() == tag))
            })
            .map(|u| u.name.to_string())
            .collect(),
    })
}

fn one(config: &Config, tag: &str) -> Result<Pool, ApiError> {
    view(config, tag).ok_or_else(|| ApiError::internal(format!("pool `{tag}` vanished")))
}

/// Every pool, in config order.
#[utoipa::path(get, path = "/pools", tag = "pools", operation_id = "listPools",
    responses((status = 200, body = Vec<Pool>), (status = 401, body = ErrorBody)))]
pub async fn list_pools(State(api): State<Arc<Api>>) -> Json<Vec<Pool>> {
    let state = api.engine.state();
    let config = &state.config;
    Json(
        config
            .pools
            .iter()
            .filter_map(|p| view(config, &p.tag))
            .collect(),
    )
}

/// Adds a pool of accounts.
#[utoipa::path(post, path = "/pools", tag = "pools", operation_id = "createPool",
    request_body = CreatePool,
    responses(
        (status = 201, body = Pool, description = "Created"),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The config file changed on disk since Carpool last read it"),
        (status = 422, body = ErrorBody, description = "A field is wrong (a tag in use, an unknown member)"),
        (status = 503, body = ErrorBody, description = "Carpool runs without a config file"),
    ))]
pub async fn create_pool(
    State(api): State<Arc<Api>>,
    body: Result<Json<CreatePool>, JsonRejection>,
) -> Result<(StatusCode, Json<Pool>), ApiError> {
    let Json(body) = body?;
    let tag = body.tag.clone();
    let spec = PoolSpec {
        strategy: Some(body.strategy),
        members: Some(body.members),
        poll_interval: body.poll_interval,
        session_ttl: body.session_ttl,
    };
    let edited = edit(&api, move |doc| manage::add_pool(doc, &body.tag, &spec)).await?;
    Ok((StatusCode::CREATED, Json(one(&edited.config, &tag)?)))
}

/// Changes a pool's strategy, members or durations.
#[utoipa::path(patch, path = "/pools/{tag}", tag = "pools", operation_id = "updatePool",
    params(("tag" = String, Path, description = "The pool's tag")),
    request_body = UpdatePool,
    responses(
        (status = 200, body = Pool, description = "The pool as it is now"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn update_pool(
    State(api): State<Arc<Api>>,
    UrlPath(tag): UrlPath<String>,
    body: Result<Json<UpdatePool>, JsonRejection>,
) -> Result<Json<Pool>, ApiError> {
    let Json(body) = body?;
    let spec = PoolSpec {
        strategy: body.strategy,
        members: body.members,
        poll_interval: body.poll_interval,
        session_ttl: body.session_ttl,
    };
    let at = tag.clone();
    let edited = edit(&api, move |doc| manage::update_pool(doc, &at, &spec)).await?;
    Ok(Json(one(&edited.config, &tag)?))
}

/// Removes a pool; refused while users are bound to it (they are named).
#[utoipa::path(delete, path = "/pools/{tag}", tag = "pools", operation_id = "deletePool",
    params(("tag" = String, Path, description = "The pool's tag")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Users are bound to it, or the config file changed on disk"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn delete_pool(
    State(api): State<Arc<Api>>,
    UrlPath(tag): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    edit(&api, move |doc| manage::remove_pool(doc, &tag)).await?;
    Ok(StatusCode::NO_CONTENT)
}
