//! Which desktop notifications to show, from successive status snapshots: one when an
//! account reaches its reserve, when its login expires or is revoked, when refreshing
//! its login starts failing, and when that failure is over. At most one per event: a
//! notice is given when an account *enters* such a state, never again while it stays
//! there, so a snapshot every few seconds cannot make a storm.

use std::collections::HashMap;

use crate::config::AccountTag;
use crate::pool::status::{AccountState, PoolStatus};

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub body: String,
}

/// The part of an account's state that notifications are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Fine,
    ReserveReached,
    LoginExpired,
    RefreshFailing,
}

impl Condition {
    fn of(state: &AccountState) -> Condition {
        match state {
            AccountState::PausedByReserve { .. } => Condition::ReserveReached,
            AccountState::LoginExpired { .. } => Condition::LoginExpired,
            AccountState::Retrying { .. } => Condition::RefreshFailing,
            _ => Condition::Fine,
        }
    }
}

/// What the previous snapshots said, per account.
#[derive(Debug, Default)]
pub struct Notices {
    seen: HashMap<AccountTag, Condition>,
}

impl Notices {
    /// The notices `status` calls for, given the snapshots seen before. Accounts that
    /// are gone are forgotten (one added again under the same tag starts afresh).
    pub fn update(&mut self, status: &PoolStatus) -> Vec<Notice> {
        let mut notices = Vec::new();
        let mut seen = HashMap::with_capacity(status.accounts.len());
        for account in &status.accounts {
            let now = Condition::of(&account.state);
            let before = self
                .seen
                .get(&account.tag)
                .copied()
                .unwrap_or(Condition::Fine);
            if now != before
                && let Some(notice) = notice(&account.tag, before, now, &account.state)
            {
                notices.push(notice);
            }
            seen.insert(account.tag.clone(), now);
        }
        self.seen = seen;
        notices
    }
}

fn notice(
    tag: &AccountTag,
    before: Condition,
    now: Condition,
    state: &AccountState,
) -> Option<Notice> {
    let (title, body) = match (now, state) {
        (
            Condition::ReserveReached,
            AccountState::PausedByReserve {
                window, percent, ..
            },
        ) => (
            format!("{tag} reached its reserve"),
            format!(
                "Its {window} window is at {percent}%. Carpool keeps the rest for you and sends other requests to other accounts until the window resets."
            ),
        ),
        (Condition::LoginExpired, AccountState::LoginExpired { reason }) => (
            format!("{tag}: the login expired"),
            format!("{reason}. Log in again from the dashboard's Accounts page."),
        ),
        (Condition::RefreshFailing, AccountState::Retrying { reason }) => (
            format!("{tag}: cannot refresh the login"),
            format!("{reason}. Carpool keeps trying."),
        ),
        (Condition::Fine, _) if before == Condition::RefreshFailing => (
            format!("{tag} works again"),
            "Its login was refreshed.".to_owned(),
        ),
        (Condition::Fine, _) if before == Condition::LoginExpired => (
            format!("{tag} works again"),
            "It has a valid login again.".to_owned(),
        ),
        _ => return None,
    };
    Some(Notice { title, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::limits::WindowName;
    use crate::pool::status::{AccountKind, AccountStatus, RecentUse, WindowStatus};

    fn status(states: &[(&str, AccountState)]) -> PoolStatus {
        let window = WindowStatus {
            percent: None,
            resets_at: None,
            reserve: None,
            cap: 100,
        };
        let accounts = states
            .iter()
            .map(|(tag, state)| AccountStatus {
                tag: AccountTag::new(tag),
                kind: AccountKind::OAuth,
                state: state.clone(),
                five_hour: window,
                weekly: window,
                usage_updated_at: None,
                plan_weight: 1,
                active_sessions: 0,
                last_hour: RecentUse::default(),
            })
            .collect();
        PoolStatus::new(0, accounts, vec![])
    }

    fn paused(percent: u32) -> AccountState {
        AccountState::PausedByReserve {
            window: WindowName::Weekly,
            percent,
            cap: 80,
            until: None,
        }
    }

    fn titles(notices: Vec<Notice>) -> Vec<String> {
        notices.into_iter().map(|n| n.title).collect()
    }

    #[test]
    fn each_event_is_told_once_however_many_snapshots_repeat_it() {
        let mut notices = Notices::default();
        assert!(
            notices
                .update(&status(&[("work", AccountState::Ready)]))
                .is_empty()
        );
        let reached = notices.update(&status(&[("work", paused(81))]));
        assert_eq!(reached.len(), 1);
        assert_eq!(reached[0].title, "work reached its reserve");
        assert!(
            reached[0].body.contains("weekly window is at 81%"),
            "{reached:?}"
        );
        for percent in 82..100 {
            assert!(
                notices
                    .update(&status(&[("work", paused(percent))]))
                    .is_empty()
            );
        }
        // Back to ready, then over the reserve again: a new event.
        assert!(
            notices
                .update(&status(&[("work", AccountState::Ready)]))
                .is_empty()
        );
        assert_eq!(notices.update(&status(&[("work", paused(80))])).len(), 1);
    }

    #[test]
    fn an_expired_login_is_told_at_the_first_snapshot_and_its_end_too() {
        let mut notices = Notices::default();
        let expired = AccountState::LoginExpired {
            reason: "the refresh token was refused".into(),
        };
        let first = notices.update(&status(&[
            ("a", expired.clone()),
            ("b", AccountState::Ready),
        ]));
        assert_eq!(titles(first.clone()), ["a: the login expired"]);
        assert!(
            first[0]
                .body
                .starts_with("the refresh token was refused. Log in again")
        );
        assert!(notices.update(&status(&[("a", expired)])).is_empty());
        assert_eq!(
            titles(notices.update(&status(&[("a", AccountState::Ready)]))),
            ["a works again"]
        );
    }

    #[test]
    fn a_refresh_failure_and_its_recovery_are_told_once_each() {
        let mut notices = Notices::default();
        let retrying = AccountState::Retrying {
            reason: "the token endpoint answered 503".into(),
        };
        assert!(
            notices
                .update(&status(&[("a", AccountState::Ready)]))
                .is_empty()
        );
        assert_eq!(
            titles(notices.update(&status(&[("a", retrying.clone())]))),
            ["a: cannot refresh the login"]
        );
        assert!(notices.update(&status(&[("a", retrying)])).is_empty());
        assert_eq!(
            titles(notices.update(&status(&[("a", AccountState::Ready)]))),
            ["a works again"]
        );
        assert!(
            notices
                .update(&status(&[("a", AccountState::Ready)]))
                .is_empty()
        );
        // Other states are the menu's to show, not a notification's.
        assert!(
            notices
                .update(&status(&[("a", AccountState::RateLimited { until: 5 })]))
                .is_empty()
        );
    }

    #[test]
    fn an_account_removed_and_added_again_starts_afresh() {
        let mut notices = Notices::default();
        assert_eq!(notices.update(&status(&[("a", paused(90))])).len(), 1);
        assert!(notices.update(&status(&[])).is_empty());
        assert_eq!(notices.update(&status(&[("a", paused(90))])).len(), 1);
    }
}
