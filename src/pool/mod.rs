//! The account pool: which account serves a request.
//!
//! A user is bound to one account or to a pool (`balancer` or `fallback`, as in sing-box
//! ccm). For each request [`Pool::choose`] picks an account that is ready:
//!
//! - **usable**: its credentials work ([`account::Account::broken`]), it is not
//!   rate-limited, cooling down or failing, and neither of its windows reached the
//!   owner's reserve ([`limits`]);
//! - **sticky**: a conversation (Claude Code's session id) stays on the account it
//!   started on, so Anthropic's prompt cache keeps hitting; it moves only when that
//!   account stops being usable. A binding expires `session_ttl` after its last request;
//! - **by strategy** for new conversations: `least_used` (most weekly capacity left,
//!   weighed by plan and by how soon the week resets), `round_robin`, `random`, or
//!   `fallback` (first usable in order, no stickiness).
//!
//! The relay reports back what happened ([`limits::LimitState`]: rate-limit headers,
//! quota 429s, failures) and asks again, excluding the accounts it tried, until one
//! answers or none is left. Usage figures come from the headers of every answer; an
//! account whose figures are older than its `poll_interval` is polled in the background
//! at Anthropic's usage endpoint ([`poll`]): when a request for its pool comes, and
//! continuously while the status is watched ([`Pool::watch_status`]).

pub mod account;
pub mod limits;
mod poll;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{PoolConfig, Strategy, Target};
use account::{Account, AccountStatus};
use limits::{Availability, least_used_score};

pub use poll::{StatusWatch, StatusWatchers, poll_if_stale, poll_while_watched};

/// What [`Pool::choose`] found.
pub enum Choice {
    Use(Arc<Account>),
    /// Every account that could serve is paused, rate-limited or failing; the earliest
    /// is expected back at `retry_at` (Unix seconds), if known.
    Exhausted {
        retry_at: Option<i64>,
        accounts: usize,
    },
    /// No account can serve at all (credentials missing or broken); why, per account.
    Unusable {
        reasons: Vec<String>,
    },
}

/// Most conversations pinned at once. Each binding is a few hundred bytes; the TTL
/// sweep alone would let a client inventing a session id per request grow the map
/// without bound within an hour. At the cap, expired bindings are swept at once and then
/// the least recently used one makes room.
const MAX_SESSIONS: usize = 100_000;

struct Sticky {
    account: usize,
    last_used: i64,
}

pub struct Pool {
    accounts: Vec<Arc<Account>>,
    pools: Vec<PoolConfig>,
    round_robin: Vec<AtomicUsize>,
    sessions: Mutex<HashMap<(Target, String), Sticky>>,
    /// When expired sessions were last swept (Unix seconds): at most once a minute.
    last_sweep: AtomicI64,
    /// [`MAX_SESSIONS`], smaller in tests.
    max_sessions: usize,
    /// Who watches the status: while anyone does, idle accounts are polled.
    watchers: StatusWatchers,
}

impl Pool {
    pub fn new(accounts: Vec<Arc<Account>>, pools: Vec<PoolConfig>) -> Pool {
        Pool {
            round_robin: pools.iter().map(|_| AtomicUsize::new(0)).collect(),
            accounts,
            pools,
            sessions: Mutex::new(HashMap::new()),
            last_sweep: AtomicI64::new(0),
            max_sessions: MAX_SESSIONS,
            watchers: StatusWatchers::default(),
        }
    }

    /// Marks the status as watched (a dashboard or tray showing live meters) until the
    /// guard is dropped: meanwhile [`poll_while_watched`] keeps idle accounts' usage
    /// figures within their `poll_interval`.
    pub fn watch_status(&self) -> StatusWatch {
        self.watchers.watch()
    }

    /// The watcher count [`Pool::watch_status`] feeds, for [`poll_while_watched`].
    pub fn status_watchers(&self) -> StatusWatchers {
        self.watchers.clone()
    }

    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }

    /// The accounts a target may use, in config order.
    pub fn members(&self, target: Target) -> &[usize] {
        match target {
            Target::Account(i) => std::slice::from_ref(&self.accounts[i].index),
            Target::Pool(p) => &self.pools[p].members,
        }
    }

    fn strategy(&self, target: Target) -> Strategy {
        match target {
            Target::Account(_) => Strategy::Fallback,
            Target::Pool(p) => self.pools[p].strategy,
        }
    }

    fn session_ttl(&self, target: Target) -> i64 {
        match target {
            Target::Account(_) => 0,
            Target::Pool(p) => self.pools[p].session_ttl.as_secs() as i64,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<(Target, String), Sticky>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks the account for a request of `session` (empty: none) to `target`, skipping
    /// the accounts in `tried`.
    pub fn choose(&self, target: Target, session: &str, tried: &[usize], now: i64) -> Choice {
        let strategy = self.strategy(target);
        let sticky = strategy != Strategy::Fallback && !session.is_empty();
        let candidates: Vec<usize> = self
            .members(target)
            .iter()
            .copied()
            .filter(|i| !tried.contains(i))
            .collect();

        if sticky {
            let ttl = self.session_ttl(target);
            let mut sessions = self.sessions();
            self.sweep(&mut sessions, now);
            if let Some(s) = sessions
                .get_mut(&(target, session.to_owned()))
                .filter(|s| now - s.last_used < ttl)
            {
                let account = &self.accounts[s.account];
                if candidates.contains(&s.account)
                    && account.broken().is_none()
                    && account.availability(now).is_ready()
                {
                    s.last_used = now;
                    return Choice::Use(account.clone());
                }
            }
        }

        let mut ready = Vec::new();
        // Accounts whose circuit waits for its probe: ready, but for one request only.
        let mut probes = Vec::new();
        let mut waits: Vec<Option<i64>> = Vec::new();
        let mut reasons = Vec::new();
        for &i in &candidates {
            let account = &self.accounts[i];
            if let Some(reason) = account.broken() {
                reasons.push(reason);
                continue;
            }
            match account.availability(now) {
                Availability::Ready => ready.push(i),
                Availability::CircuitOpen { until, .. } if until <= now => {
                    ready.push(i);
                    probes.push(i);
                }
                other => waits.push(other.until()),
            }
        }
        let chosen = loop {
            if ready.is_empty() {
                if waits.is_empty() {
                    return Choice::Unusable { reasons };
                }
                return Choice::Exhausted {
                    retry_at: waits.iter().flatten().min().copied(),
                    accounts: waits.len(),
                };
            }
            let chosen = self.pick(target, strategy, &ready, now);
            if probes.contains(&chosen) && !self.accounts[chosen].limits().try_probe(now) {
                // Another request is probing it right now.
                ready.retain(|&i| i != chosen);
                waits.push(Some(now + 1));
                continue;
            }
            break chosen;
        };
        if sticky {
            let mut sessions = self.sessions();
            let key = (target, session.to_owned());
            if sessions.len() >= self.max_sessions && !sessions.contains_key(&key) {
                self.make_room(&mut sessions, now);
            }
            sessions.insert(
                key,
                Sticky {
                    account: chosen,
                    last_used: now,
                },
            );
        }
        Choice::Use(self.accounts[chosen].clone())
    }

    /// Drops expired session bindings, at most once a minute.
    fn sweep(&self, sessions: &mut HashMap<(Target, String), Sticky>, now: i64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now - last < 60 {
            return;
        }
        self.last_sweep.store(now, Ordering::Relaxed);
        sessions.retain(|(target, _), s| now - s.last_used < self.session_ttl(*target));
    }

    /// At the cap: drops every expired binding, and if none was, the least recently used.
    fn make_room(&self, sessions: &mut HashMap<(Target, String), Sticky>, now: i64) {
        self.last_sweep.store(now, Ordering::Relaxed);
        sessions.retain(|(target, _), s| now - s.last_used < self.session_ttl(*target));
        if sessions.len() >= self.max_sessions {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                sessions.remove(&key);
            }
        }
    }

    /// One of `ready` (not empty) by the target's strategy.
    fn pick(&self, target: Target, strategy: Strategy, ready: &[usize], now: i64) -> usize {
        match strategy {
            Strategy::Fallback => ready[0],
            Strategy::Random => ready[rand::random_range(0..ready.len())],
            Strategy::RoundRobin => {
                let Target::Pool(p) = target else {
                    return ready[0];
                };
                let members = &self.pools[p].members;
                let start = self.round_robin[p].fetch_add(1, Ordering::Relaxed);
                (0..members.len())
                    .map(|k| members[(start + k) % members.len()])
                    .find(|i| ready.contains(i))
                    .unwrap_or(ready[0])
            }
            Strategy::LeastUsed => {
                let score = |i: usize| {
                    let a = &self.accounts[i];
                    least_used_score(&a.limits(), a.reserves, a.plan_weight(), now)
                };
                // Highest score; the first in config order on a tie.
                let mut best = ready[0];
                let mut best_score = score(best);
                for &i in &ready[1..] {
                    let s = score(i);
                    if s > best_score {
                        best = i;
                        best_score = s;
                    }
                }
                best
            }
        }
    }

    /// Forgets where `session` was pinned (its account just ran out).
    pub fn unbind(&self, target: Target, session: &str) {
        if !session.is_empty() {
            self.sessions().remove(&(target, session.to_owned()));
        }
    }

    /// The state of every account, for the dashboard and the tray.
    pub fn status(&self, now: i64) -> PoolStatus {
        let mut sessions_per_account = vec![0usize; self.accounts.len()];
        for ((target, _), s) in self.sessions().iter() {
            if now - s.last_used < self.session_ttl(*target) {
                sessions_per_account[s.account] += 1;
            }
        }
        PoolStatus {
            accounts: self
                .accounts
                .iter()
                .map(|a| a.status(sessions_per_account[a.index], now))
                .collect(),
            pools: self
                .pools
                .iter()
                .map(|p| PoolSummary {
                    tag: p.tag.clone(),
                    strategy: match p.strategy {
                        Strategy::LeastUsed => "least_used",
                        Strategy::RoundRobin => "round_robin",
                        Strategy::Random => "random",
                        Strategy::Fallback => "fallback",
                    },
                    accounts: p
                        .members
                        .iter()
                        .map(|i| self.accounts[*i].tag.clone())
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub accounts: Vec<AccountStatus>,
    pub pools: Vec<PoolSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolSummary {
    pub tag: String,
    pub strategy: &'static str,
    pub accounts: Vec<String>,
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::account::Source;
    use crate::pool::limits::Reserves;
    use crate::secret::Secret;
    use std::time::Duration;

    fn pool_of_two(max_sessions: usize) -> Pool {
        let accounts = (0..2)
            .map(|i| {
                Arc::new(Account::new(
                    i,
                    format!("a{i}"),
                    "http://127.0.0.1:9".parse().unwrap(),
                    reqwest::Client::new(),
                    Source::ApiKey(Secret::new("k")),
                    Reserves::default(),
                    Duration::from_secs(60),
                ))
            })
            .collect();
        let pools = vec![PoolConfig {
            tag: "team".into(),
            strategy: Strategy::RoundRobin,
            members: vec![0, 1],
            poll_interval: Duration::from_secs(60),
            session_ttl: Duration::from_secs(3600),
        }];
        Pool {
            max_sessions,
            ..Pool::new(accounts, pools)
        }
    }

    #[test]
    fn the_session_map_has_a_hard_cap_and_evicts_the_least_recently_used() {
        let pool = pool_of_two(100);
        let team = Target::Pool(0);
        let now = 1_000_000;
        let Choice::Use(first) = pool.choose(team, "keep-me", &[], now) else {
            panic!("an account is ready")
        };
        for i in 0..1000 {
            // The conversation in use stays pinned while strangers come and go.
            if i % 10 == 0 {
                let Choice::Use(again) = pool.choose(team, "keep-me", &[], now + i) else {
                    panic!("an account is ready")
                };
                assert_eq!(again.index, first.index, "still on its account");
            }
            pool.choose(team, &format!("stranger-{i}"), &[], now + i);
            assert!(pool.sessions().len() <= 100);
        }
        assert_eq!(pool.sessions().len(), 100);
        assert!(pool.sessions().contains_key(&(team, "keep-me".to_owned())));
        assert!(
            !pool
                .sessions()
                .contains_key(&(team, "stranger-0".to_owned()))
        );
    }
}
