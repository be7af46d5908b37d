//! Anthropic's OAuth usage endpoint, asked only when an account's figures are stale.
//!
//! Every answer through an account carries its utilization in headers, so a busy
//! account never needs this. An idle one (or one never used since start) is polled in
//! the background when a request for its pool arrives and its figures are older than
//! the pool's `poll_interval`: the request itself never waits. The endpoint is rate
//! limited too: a 429 is honoured through its `retry-after`, other failures back off,
//! and a failed poll never takes the account out of service (protocol.md §5.2). The
//! answer is read whole but at most 64 KiB ([`MAX_USAGE_RESPONSE`]); error answers are
//! not read at all. A `retry-after` is honoured for an hour at most.

use std::sync::Arc;
use std::time::Duration;

use super::account::{Account, Auth};
use super::{Pool, unix_now};
use crate::config::Target;
use crate::credentials::oauth::{OAUTH_BETA, USER_AGENT};
use crate::tasks::Tasks;
use crate::upstream::read_capped;

const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest usage answer read (real ones are about 1 KiB); a longer one is a failed
/// poll and the rest is not read.
const MAX_USAGE_RESPONSE: usize = 64 << 10;

/// Starts a background poll (in `tasks`) for every OAuth account of `target` whose
/// figures are stale.
pub fn poll_if_stale(pool: &Pool, target: &Target, now: i64, tasks: &Tasks) {
    for account in pool.members(target) {
        if !account.is_oauth() || account.broken().is_some() {
            continue;
        }
        let interval = account.settings().poll_interval.as_secs() as i64;
        if !account.limits().needs_poll(interval, now) || !account.start_poll() {
            continue;
        }
        let account = Arc::clone(account);
        tasks.spawn(async move {
            poll(&account).await;
            account.end_poll();
        });
    }
}

async fn poll(account: &Account) {
    let token = match account.auth(None).await {
        Ok(Auth::OAuth(token)) => token,
        _ => return, // no usable login: nothing to ask with; the account shows as broken
    };
    let url = format!("{}/api/oauth/usage", account.base_url);
    let sent = account
        .http
        .get(&url)
        .bearer_auth(token.expose())
        .header("anthropic-beta", OAUTH_BETA)
        .header("user-agent", USER_AGENT)
        .header("accept", "application/json")
        .timeout(POLL_TIMEOUT)
        .send()
        .await;
    let now = unix_now();
    let outcome = match sent {
        Ok(response) if response.status().is_success() => {
            match read_capped(response, MAX_USAGE_RESPONSE).await {
                Ok(body) => account.limits().observe_usage(&body, now),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(response) if response.status().as_u16() == 429 => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            account.limits().on_poll_failed(retry_after, now);
            tracing::debug!(account = %account.tag, ?retry_after, "usage endpoint rate-limited the poll");
            return;
        }
        Ok(response) => Err(format!("status {}", response.status())),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = outcome {
        account.limits().on_poll_failed(None, now);
        tracing::debug!(account = %account.tag, "usage poll failed: {why}");
    }
}
