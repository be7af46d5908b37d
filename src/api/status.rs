//! `GET /status`: the engine and every account and pool.
//!
//! A dashboard polls it to show live meters, so each call keeps the status watched
//! ([`crate::Engine::watch_status`]) for [`STATUS_LEASE`] after it: idle accounts' usage
//! is polled meanwhile, and stops being polled a minute after the last look.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Api, ApiError};
use crate::pool::{PoolStatus, StatusWatch};
use crate::tasks::{Tasks, lock};

/// How long one `GET /status` keeps the status watched.
pub const STATUS_LEASE: Duration = Duration::from_secs(60);

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
    api.status_lease
        .renew(|| api.engine.watch_status(), api.engine.tasks());
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

/// A watch of the status held until a while after it was last renewed.
pub struct Lease {
    length: Duration,
    state: Arc<Mutex<Held>>,
}

struct Held {
    watch: Option<StatusWatch>,
    until: tokio::time::Instant,
    /// A task is waiting to let the watch go.
    timer: bool,
}

impl Lease {
    pub fn new(length: Duration) -> Lease {
        Lease {
            length,
            state: Arc::new(Mutex::new(Held {
                watch: None,
                until: tokio::time::Instant::now(),
                timer: false,
            })),
        }
    }

    /// Holds a watch (from `watch` if none is held) until `length` from now; one task
    /// in `tasks` lets it go once that time passes without another renewal.
    pub fn renew(&self, watch: impl FnOnce() -> StatusWatch, tasks: &Tasks) {
        let mut held = lock(&self.state);
        held.until = tokio::time::Instant::now() + self.length;
        if held.watch.is_none() {
            held.watch = Some(watch());
        }
        if held.timer {
            return;
        }
        held.timer = true;
        let state = self.state.clone();
        tasks.spawn(async move {
            loop {
                let until = lock(&state).until;
                tokio::time::sleep_until(until).await;
                let mut held = lock(&state);
                if tokio::time::Instant::now() >= held.until {
                    held.watch = None;
                    held.timer = false;
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::StatusWatchers;

    #[tokio::test(start_paused = true)]
    async fn a_lease_watches_until_a_while_after_the_last_renewal() {
        let watchers = StatusWatchers::default();
        let tasks = Tasks::new();
        let lease = Lease::new(Duration::from_secs(60));
        assert_eq!(watchers.count(), 0);
        lease.renew(|| watchers.watch(), &tasks);
        assert_eq!(watchers.count(), 1);
        tokio::time::sleep(Duration::from_secs(40)).await;
        // Renewed: one watch still, now until 100 s.
        lease.renew(|| watchers.watch(), &tasks);
        assert_eq!(watchers.count(), 1);
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert_eq!(watchers.count(), 1, "90 s: 10 s left");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(watchers.count(), 0, "a minute after the last renewal");
        // And again from nothing.
        lease.renew(|| watchers.watch(), &tasks);
        assert_eq!(watchers.count(), 1);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(watchers.count(), 0);
        tasks.shutdown().await;
    }
}
