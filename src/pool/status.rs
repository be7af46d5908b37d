//! The status snapshot: what the dashboard, the tray and the management API show about
//! the accounts and pools, as serde types. [`super::Pool::status`] builds it; the JSON is
//! these types serialized as they are, so a field renamed here is renamed for every
//! client.
//!
//! Times are Unix seconds. [`PoolStatus::at`] is the server's clock when the snapshot was
//! taken, so a client can count down to an `until` or a `resets_at` without trusting its
//! own clock. Every state a person can act on has its own variant; a `reason` is there
//! only to be read, never to be matched on.

use serde::Serialize;

use super::limits::{Availability, Reserves, Window, WindowName};
use crate::config::{AccountTag, PoolTag, Strategy};
use crate::credentials::{LoginStore, Status};

/// Every account and every pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// When the snapshot was taken.
    pub at: i64,
    /// Sorted by tag.
    pub accounts: Vec<AccountStatus>,
    /// Sorted by tag.
    pub pools: Vec<PoolSummary>,
}

impl PoolStatus {
    /// The snapshot with accounts and pools sorted by tag: it does not depend on the
    /// order of the config's lists, which may change at any reload.
    pub fn new(
        at: i64,
        mut accounts: Vec<AccountStatus>,
        mut pools: Vec<PoolSummary>,
    ) -> PoolStatus {
        accounts.sort_by(|a, b| a.tag.cmp(&b.tag));
        pools.sort_by(|a, b| a.tag.cmp(&b.tag));
        PoolStatus {
            at,
            accounts,
            pools,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PoolSummary {
    pub tag: PoolTag,
    pub strategy: Strategy,
    /// Its accounts' tags, in the pool's own order (the order `fallback` tries them).
    pub accounts: Vec<AccountTag>,
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountStatus {
    pub tag: AccountTag,
    pub kind: AccountKind,
    pub state: AccountState,
    pub five_hour: WindowStatus,
    pub weekly: WindowStatus,
    /// When the upstream last told Carpool about the windows (response headers or the
    /// usage endpoint); `None`: not yet.
    pub usage_updated_at: Option<i64>,
    /// Its weight for `least_used`: Max 20x 10, Max 5x 5, others 1.
    pub plan_weight: u32,
    /// Conversations pinned to it now.
    pub active_sessions: usize,
    pub last_hour: RecentUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A Claude Code login (subscription).
    #[serde(rename = "oauth")]
    OAuth,
    ApiKey,
}

/// One quota window: how much is used, when it resets and where the owner's reserve
/// starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WindowStatus {
    /// Percent used, `0..=100`, rounded up; `None` until the upstream said.
    pub percent: Option<u32>,
    /// `None` when unknown, or when the last known reset has passed (the window then
    /// reads 0 %).
    pub resets_at: Option<i64>,
    /// The percent the owner keeps for themselves (config `reserve_5h`,
    /// `reserve_weekly`), if any.
    pub reserve: Option<u32>,
    /// The percent at which Carpool stops using the account: 100 − reserve.
    pub cap: u32,
}

impl WindowStatus {
    pub fn new(window: Window, reserve: Option<u32>, cap: u32) -> WindowStatus {
        WindowStatus {
            percent: window.percent,
            resets_at: window.resets_at,
            reserve,
            cap,
        }
    }

    pub fn five_hour(window: Window, reserves: Reserves) -> WindowStatus {
        WindowStatus::new(window, reserves.five_hour, reserves.five_hour_cap())
    }

    pub fn weekly(window: Window, reserves: Reserves) -> WindowStatus {
        WindowStatus::new(window, reserves.weekly, reserves.weekly_cap())
    }
}

/// Requests that finished in the last 60 minutes, and their tokens (input, output and
/// cache, as recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecentUse {
    pub requests: u64,
    pub tokens: u64,
}

/// Whether an account takes requests, and if not why and until when. First match wins:
/// `disabled`, then what the login says (`file_missing`, `login_expired`,
/// `waiting_for_owner`, `retrying`), then the limits (see [`super::limits`] for their
/// order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AccountState {
    Ready,
    /// A window reached the cap the owner's reserve leaves; back when it resets.
    PausedByReserve {
        window: WindowName,
        percent: u32,
        cap: u32,
        until: Option<i64>,
    },
    /// A window is used up; back when it resets.
    QuotaExhausted {
        window: WindowName,
        until: Option<i64>,
    },
    /// The upstream refused a request for quota (a 429); back at `until`.
    RateLimited {
        until: i64,
    },
    /// A short pause after a rate limit that was not about the quota.
    CoolingDown {
        until: i64,
    },
    /// Failing (5xx, connection errors) `failures` times in a row: not used until
    /// `until`, then one probe request decides. An `until` in the past means that probe
    /// is due.
    CircuitOpen {
        until: i64,
        failures: u32,
    },
    /// The provider disabled the account (its words in `reason`); out until the login
    /// changes or the owner clears it.
    Disabled {
        reason: String,
        since: i64,
    },
    /// The refresh token was refused: someone must log in again.
    LoginExpired {
        reason: String,
    },
    /// No credentials file yet at `path`: someone must log in with `claude`.
    FileMissing {
        path: String,
    },
    /// The owner must fix something (an invalid credentials file, a directory Carpool
    /// cannot save a refreshed token in).
    WaitingForOwner {
        reason: String,
    },
    /// A passing failure (the file could not be read, a token refresh failed); Carpool
    /// tries again by itself.
    Retrying {
        reason: String,
    },
}

impl AccountState {
    /// What a login's state says, if it keeps the account out (`None`: ready).
    pub fn of_login(status: Status, store: &LoginStore) -> Option<AccountState> {
        Some(match status {
            Status::Ready => return None,
            Status::Missing => match store.path() {
                Some(path) => AccountState::FileMissing {
                    path: path.display().to_string(),
                },
                // A login Carpool stored itself is gone: only a new login brings it back.
                None => AccountState::WaitingForOwner {
                    reason: format!("{} {}", store.describe(), store.missing_hint()),
                },
            },
            Status::Invalid(why) => AccountState::WaitingForOwner {
                reason: store.status_words(&Status::Invalid(why)),
            },
            Status::Unsaveable(reason) => AccountState::WaitingForOwner { reason },
            Status::LoginExpired(reason) => AccountState::LoginExpired { reason },
            Status::Broken(reason) => AccountState::Retrying { reason },
        })
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, AccountState::Ready)
    }
}

impl From<Availability> for AccountState {
    fn from(availability: Availability) -> AccountState {
        match availability {
            Availability::Ready => AccountState::Ready,
            Availability::PausedByReserve {
                window,
                percent,
                cap,
                until,
            } => AccountState::PausedByReserve {
                window,
                percent,
                cap,
                until,
            },
            Availability::QuotaExhausted { window, until } => {
                AccountState::QuotaExhausted { window, until }
            }
            Availability::RateLimited { until } => AccountState::RateLimited { until },
            Availability::CoolingDown { until } => AccountState::CoolingDown { until },
            Availability::CircuitOpen { until, failures } => {
                AccountState::CircuitOpen { until, failures }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json(state: AccountState) -> serde_json::Value {
        serde_json::to_value(state).unwrap()
    }

    #[test]
    fn each_state_has_its_tag_and_fields() {
        let paused = Availability::PausedByReserve {
            window: WindowName::Weekly,
            percent: 81,
            cap: 80,
            until: None,
        };
        assert_eq!(
            json(paused.into()),
            json!({"state": "paused_by_reserve", "window": "weekly", "percent": 81, "cap": 80, "until": null})
        );
        let exhausted = Availability::QuotaExhausted {
            window: WindowName::FiveHour,
            until: Some(5),
        };
        assert_eq!(
            json(exhausted.into()),
            json!({"state": "quota_exhausted", "window": "five_hour", "until": 5})
        );
        assert_eq!(json(Availability::Ready.into()), json!({"state": "ready"}));
        assert_eq!(
            json(
                Availability::CircuitOpen {
                    until: 9,
                    failures: 3
                }
                .into()
            ),
            json!({"state": "circuit_open", "until": 9, "failures": 3})
        );
        assert_eq!(
            json(AccountState::Disabled {
                reason: "This organization has been disabled.".into(),
                since: 7
            }),
            json!({"state": "disabled", "reason": "This organization has been disabled.", "since": 7})
        );
    }

    #[test]
    fn a_logins_state_says_who_must_act() {
        let path = &LoginStore::File("/home/a/.claude/.credentials.json".into());
        assert_eq!(AccountState::of_login(Status::Ready, path), None);
        let state = |status| json(AccountState::of_login(status, path).unwrap());
        assert_eq!(
            state(Status::Missing),
            json!({"state": "file_missing", "path": "/home/a/.claude/.credentials.json"})
        );
        assert_eq!(
            state(Status::LoginExpired(
                "the refresh token was rejected".into()
            )),
            json!({"state": "login_expired", "reason": "the refresh token was rejected"})
        );
        assert_eq!(
            state(Status::Invalid("no `claudeAiOauth`".into())),
            json!({"state": "waiting_for_owner", "reason": "invalid credentials file: no `claudeAiOauth`"})
        );
        assert_eq!(
            state(Status::Unsaveable("cannot create files in /x".into()))["state"],
            "waiting_for_owner"
        );
        assert_eq!(
            state(Status::Broken("HTTP 500".into())),
            json!({"state": "retrying", "reason": "HTTP 500"})
        );
    }

    #[test]
    fn windows_carry_their_reserve_and_cap() {
        let reserves = Reserves {
            five_hour: Some(25),
            weekly: None,
        };
        let window = Window {
            percent: Some(31),
            resets_at: Some(100),
        };
        assert_eq!(
            serde_json::to_value(WindowStatus::five_hour(window, reserves)).unwrap(),
            json!({"percent": 31, "resets_at": 100, "reserve": 25, "cap": 75})
        );
        assert_eq!(
            serde_json::to_value(WindowStatus::weekly(Window::default(), reserves)).unwrap(),
            json!({"percent": null, "resets_at": null, "reserve": null, "cap": 100})
        );
    }

    #[test]
    fn the_snapshot_is_sorted_by_tag_whatever_the_config_order() {
        let account = |tag: &str| AccountStatus {
            tag: tag.into(),
            kind: AccountKind::ApiKey,
            state: AccountState::Ready,
            five_hour: WindowStatus::five_hour(Window::default(), Reserves::default()),
            weekly: WindowStatus::weekly(Window::default(), Reserves::default()),
            usage_updated_at: None,
            plan_weight: 1,
            active_sessions: 0,
            last_hour: RecentUse::default(),
        };
        let pool = |tag: &str, accounts: &[&str]| PoolSummary {
            tag: tag.into(),
            strategy: Strategy::Fallback,
            accounts: accounts.iter().map(|&a| a.into()).collect(),
        };
        let one = PoolStatus::new(
            1,
            vec![account("b"), account("a")],
            vec![pool("team", &["b", "a"]), pool("solo", &["a"])],
        );
        let other = PoolStatus::new(
            1,
            vec![account("a"), account("b")],
            vec![pool("solo", &["a"]), pool("team", &["b", "a"])],
        );
        assert_eq!(one, other);
        let value = serde_json::to_value(&one).unwrap();
        assert_eq!(value["accounts"][0]["tag"], "a");
        assert_eq!(value["accounts"][0]["kind"], "api_key");
        assert_eq!(value["pools"][0]["tag"], "solo");
        assert_eq!(value["pools"][1]["strategy"], "fallback");
        // A pool's own order is kept: it is the order `fallback` tries them in.
        assert_eq!(value["pools"][1]["accounts"], json!(["b", "a"]));
    }
}
