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
//! continuously while the status is watched ([`StatusWatchers`]).

pub mod account;
pub mod limits;
mod poll;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{AccountTag, PoolConfig, PoolTag, Strategy, Target};
use crate::tasks::lock;
use account::Account;
use limits::{Availability, least_used_score};

pub use poll::{StatusWatch, StatusWatchers, poll_if_stale, poll_while_watched};
use status::PoolSummary;
pub use status::{AccountKind, AccountStatus, PoolStatus};

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
    account: AccountTag,
    last_used: i64,
    /// The target's `session_ttl` when the binding was last used, in seconds.
    ttl: i64,
}

impl Sticky {
    fn alive(&self, now: i64) -> bool {
        now - self.last_used < self.ttl
    }
}

type SessionMap = HashMap<(Target, String), Sticky>;

/// The conversations pinned to accounts. It outlives a config reload: a conversation
/// stays on its account as long as the account and the target still exist.
struct Sessions {
    map: Mutex<SessionMap>,
    /// When expired sessions were last swept (Unix seconds): at most once a minute.
    last_sweep: AtomicI64,
    /// [`MAX_SESSIONS`], smaller in tests.
    max: usize,
}

impl Sessions {
    fn new(max: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            last_sweep: AtomicI64::new(0),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionMap> {
        // Plain data: see the lock policy in `crate::tasks`.
        lock(&self.map)
    }
}

/// A pool of the config: its accounts, in the order it lists them.
struct Group {
    config: PoolConfig,
    members: Vec<Arc<Account>>,
    /// Where `round_robin` starts next; kept across reloads.
    next: Arc<AtomicUsize>,
}

/// The accounts and pools of one reading of the config. A reload builds a new one from
/// the previous ([`Pool::reconfigured`]): accounts are shared, not copied, so what
/// Carpool knows about each stays, and so do the pinned conversations.
pub struct Pool {
    /// Every account, in config order.
    accounts: Vec<Arc<Account>>,
    groups: Vec<Group>,
    sessions: Arc<Sessions>,
}

impl Pool {
    pub fn new(accounts: Vec<Arc<Account>>, pools: Vec<PoolConfig>) -> Pool {
        Pool::build(
            accounts,
            pools,
            Arc::new(Sessions::new(MAX_SESSIONS)),
            |_| Arc::new(AtomicUsize::new(0)),
        )
    }

    /// The pool for a new reading of the config, keeping this one's pinned conversations
    /// (those whose account is gone are dropped) and round-robin positions.
    pub fn reconfigured(&self, accounts: Vec<Arc<Account>>, pools: Vec<PoolConfig>) -> Pool {
        self.sessions.lock().retain(|(target, _), s| {
            accounts.iter().any(|a| a.tag == s.account)
                && match target {
                    Target::Account(tag) => accounts.iter().any(|a| a.tag == *tag),
                    Target::Pool(tag) => pools.iter().any(|p| p.tag == *tag),
                }
        });
        Pool::build(accounts, pools, self.sessions.clone(), |tag| {
            self.group(tag)
                .map(|g| g.next.clone())
                .unwrap_or_else(|| Arc::new(AtomicUsize::new(0)))
        })
    }

    fn build(
        accounts: Vec<Arc<Account>>,
        pools: Vec<PoolConfig>,
        sessions: Arc<Sessions>,
        next: impl Fn(&PoolTag) -> Arc<AtomicUsize>,
    ) -> Pool {
        let groups = pools
            .into_iter()
            .map(|config| Group {
                members: config
                    .members
                    .iter()
                    .filter_map(|tag| accounts.iter().find(|a| a.tag == *tag).cloned())
                    .collect(),
                next: next(&config.tag),
                config,
            })
            .collect();
        Pool {
            accounts,
            groups,
            sessions,
        }
    }

    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }

    pub fn account(&self, tag: &str) -> Option<&Arc<Account>> {
        self.accounts.iter().find(|a| *a.tag == *tag)
    }

    fn group(&self, tag: &PoolTag) -> Option<&Group> {
        self.groups.iter().find(|g| g.config.tag == *tag)
    }

    /// The accounts a target may use, in its order; none for a target this reading of
    /// the config does not have.
    pub fn members(&self, target: &Target) -> &[Arc<Account>] {
        match target {
            Target::Account(tag) => self
                .accounts
                .iter()
                .position(|a| a.tag == *tag)
                .map_or(&[], |i| std::slice::from_ref(&self.accounts[i])),
            Target::Pool(tag) => self.group(tag).map_or(&[], |g| &g.members),
        }
    }

    fn strategy(&self, target: &Target) -> Strategy {
        match target {
            Target::Account(_) => Strategy::Fallback,
            Target::Pool(tag) => self
                .group(tag)
                .map_or(Strategy::Fallback, |g| g.config.strategy),
        }
    }

    fn session_ttl(&self, target: &Target) -> i64 {
        match target {
            Target::Account(_) => 0,
            Target::Pool(tag) => self
                .group(tag)
                .map_or(0, |g| g.config.session_ttl.as_secs() as i64),
        }
    }

    /// Picks the account for a request of `session` (empty: none) to `target`, skipping
    /// the accounts in `tried`.
    pub fn choose(&self, target: &Target, session: &str, tried: &[AccountTag], now: i64) -> Choice {
        let strategy = self.strategy(target);
        let sticky = strategy != Strategy::Fallback && !session.is_empty();
        let candidates: Vec<&Arc<Account>> = self
            .members(target)
            .iter()
            .filter(|a| !tried.contains(&a.tag))
            .collect();

        if sticky {
            let mut sessions = self.sessions.lock();
            self.sweep(&mut sessions, now);
            if let Some(s) = sessions
                .get_mut(&(target.clone(), session.to_owned()))
                .filter(|s| s.alive(now))
                && let Some(account) = candidates.iter().find(|a| a.tag == s.account)
                && account.broken().is_none()
                && account.availability(now).is_ready()
            {
                s.last_used = now;
                s.ttl = self.session_ttl(target);
                return Choice::Use(Arc::clone(account));
            }
        }

        let mut ready: Vec<&Arc<Account>> = Vec::new();
        // Accounts whose circuit waits for its probe: ready, but for one request only.
        let mut probes: Vec<&AccountTag> = Vec::new();
        let mut waits: Vec<Option<i64>> = Vec::new();
        let mut reasons = Vec::new();
        for &account in &candidates {
            if let Some(reason) = account.broken() {
                reasons.push(reason);
                continue;
            }
            match account.availability(now) {
                Availability::Ready => ready.push(account),
                Availability::CircuitOpen { until, .. } if until <= now => {
                    ready.push(account);
                    probes.push(&account.tag);
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
            if probes.contains(&&chosen.tag) && !chosen.limits().try_probe(now) {
                // Another request is probing it right now.
                ready.retain(|a| a.tag != chosen.tag);
                waits.push(Some(now + 1));
                continue;
            }
            break chosen;
        };
        if sticky {
            let mut sessions = self.sessions.lock();
            let key = (target.clone(), session.to_owned());
            if sessions.len() >= self.sessions.max && !sessions.contains_key(&key) {
                self.make_room(&mut sessions, now);
            }
            sessions.insert(
                key,
                Sticky {
                    account: chosen.tag.clone(),
                    last_used: now,
                    ttl: self.session_ttl(target),
                },
            );
        }
        Choice::Use(Arc::clone(chosen))
    }

    /// Drops expired session bindings, at most once a minute.
    fn sweep(&self, sessions: &mut SessionMap, now: i64) {
        let last = self.sessions.last_sweep.load(Ordering::Relaxed);
        if now - last < 60 {
            return;
        }
        self.sessions.last_sweep.store(now, Ordering::Relaxed);
        sessions.retain(|_, s| s.alive(now));
    }

    /// At the cap: drops every expired binding, and if none was, the least recently used.
    fn make_room(&self, sessions: &mut SessionMap, now: i64) {
        self.sessions.last_sweep.store(now, Ordering::Relaxed);
        sessions.retain(|_, s| s.alive(now));
        if sessions.len() >= self.sessions.max {
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
    fn pick<'a>(
        &self,
        target: &Target,
        strategy: Strategy,
        ready: &[&'a Arc<Account>],
        now: i64,
    ) -> &'a Arc<Account> {
        match strategy {
            Strategy::Fallback => ready[0],
            Strategy::Random => ready[rand::random_range(0..ready.len())],
            Strategy::RoundRobin => {
                let Some(group) = (match target {
                    Target::Pool(tag) => self.group(tag),
                    Target::Account(_) => None,
                }) else {
                    return ready[0];
                };
                let members = &group.members;
                let start = group.next.fetch_add(1, Ordering::Relaxed);
                (0..members.len())
                    .map(|k| &members[(start + k) % members.len()])
                    .find_map(|m| ready.iter().find(|a| a.tag == m.tag).copied())
                    .unwrap_or(ready[0])
            }
            Strategy::LeastUsed => {
                let score =
                    |a: &Account| least_used_score(&a.limits(), a.reserves(), a.plan_weight(), now);
                // Highest score; the first in the pool's order on a tie.
                let mut best = ready[0];
                let mut best_score = score(best);
                for &a in &ready[1..] {
                    let s = score(a);
                    if s > best_score {
                        best = a;
                        best_score = s;
                    }
                }
                best
            }
        }
    }

    /// Forgets where `session` was pinned (its account just ran out).
    pub fn unbind(&self, target: &Target, session: &str) {
        if !session.is_empty() {
            self.sessions
                .lock()
                .remove(&(target.clone(), session.to_owned()));
        }
    }

    /// The account a conversation is pinned to, if any (for tests and the status).
    pub fn pinned(&self, target: &Target, session: &str, now: i64) -> Option<AccountTag> {
        self.sessions
            .lock()
            .get(&(target.clone(), session.to_owned()))
            .filter(|s| s.alive(now))
            .map(|s| s.account.clone())
    }

    /// The state of every account and pool, for the dashboard and the tray; sorted by
    /// tag, whatever the order of the config's lists.
    pub fn status(&self, now: i64) -> PoolStatus {
        let mut sessions: HashMap<AccountTag, usize> = HashMap::new();
        for s in self.sessions.lock().values() {
            if s.alive(now) {
                *sessions.entry(s.account.clone()).or_default() += 1;
            }
        }
        let accounts = self
            .accounts
            .iter()
            .map(|a| a.status(sessions.get(&a.tag).copied().unwrap_or(0), now))
            .collect();
        let pools = self
            .groups
            .iter()
            .map(|g| PoolSummary {
                tag: g.config.tag.clone(),
                strategy: g.config.strategy,
                accounts: g.members.iter().map(|a| a.tag.clone()).collect(),
            })
            .collect();
        PoolStatus::new(now, accounts, pools)
    }
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
    use crate::pool::account::{Settings, Source};
    use crate::secret::Secret;
    use std::time::Duration;

    fn account(tag: &str) -> Arc<Account> {
        Arc::new(Account::new(
            tag.into(),
            "http://127.0.0.1:9".parse().unwrap(),
            reqwest::Client::new(),
            Source::ApiKey(Secret::new("k")),
            Settings::default(),
        ))
    }

    fn team(strategy: Strategy, members: &[&str]) -> PoolConfig {
        PoolConfig {
            tag: "team".into(),
            provider: crate::config::Provider::Anthropic,
            strategy,
            members: members.iter().map(|&m| m.into()).collect(),
            poll_interval: Duration::from_secs(60),
            session_ttl: Duration::from_secs(3600),
        }
    }

    fn pool_of_two(max_sessions: usize) -> Pool {
        let accounts = vec![account("a0"), account("a1")];
        let pool = Pool::new(accounts, vec![team(Strategy::RoundRobin, &["a0", "a1"])]);
        Pool {
            sessions: Arc::new(Sessions::new(max_sessions)),
            ..pool
        }
    }

    fn chosen(choice: Choice) -> AccountTag {
        match choice {
            Choice::Use(account) => account.tag.clone(),
            _ => panic!("an account is ready"),
        }
    }

    #[test]
    fn the_session_map_has_a_hard_cap_and_evicts_the_least_recently_used() {
        let pool = pool_of_two(100);
        let team = Target::Pool("team".into());
        let now = 1_000_000;
        let first = chosen(pool.choose(&team, "keep-me", &[], now));
        for i in 0..1000 {
            // The conversation in use stays pinned while strangers come and go.
            if i % 10 == 0 {
                let again = chosen(pool.choose(&team, "keep-me", &[], now + i));
                assert_eq!(again, first, "still on its account");
            }
            pool.choose(&team, &format!("stranger-{i}"), &[], now + i);
            assert!(pool.sessions.lock().len() <= 100);
        }
        assert_eq!(pool.sessions.lock().len(), 100);
        assert!(pool.pinned(&team, "keep-me", now + 1000).is_some());
        assert!(pool.pinned(&team, "stranger-0", now + 1000).is_none());
    }

    #[test]
    fn a_reconfigured_pool_keeps_conversations_whose_account_is_still_there() {
        let (a, b, c) = (account("a"), account("b"), account("c"));
        let pool = Pool::new(
            vec![a.clone(), b.clone()],
            vec![team(Strategy::RoundRobin, &["a", "b"])],
        );
        let target = Target::Pool("team".into());
        let now = 1_000_000;
        let on_a = chosen(pool.choose(&target, "s-a", &[], now));
        let on_b = chosen(pool.choose(&target, "s-b", &[], now));
        assert_ne!(on_a, on_b, "round robin spreads new conversations");

        // Reordered, one account added: both conversations stay where they were.
        let next = pool.reconfigured(
            vec![c.clone(), b.clone(), a.clone()],
            vec![team(Strategy::RoundRobin, &["c", "b", "a"])],
        );
        assert_eq!(chosen(next.choose(&target, "s-a", &[], now + 1)), on_a);
        assert_eq!(chosen(next.choose(&target, "s-b", &[], now + 1)), on_b);

        // The account of one is removed: that conversation moves, the other stays.
        let gone = on_a.clone();
        let kept: Vec<Arc<Account>> = [a, b, c].into_iter().filter(|x| x.tag != gone).collect();
        let members: Vec<&str> = kept.iter().map(|x| x.tag.as_str()).collect();
        let last = next.reconfigured(kept.clone(), vec![team(Strategy::RoundRobin, &members)]);
        assert!(
            last.pinned(&target, "s-a", now + 2).is_none(),
            "dropped with its account"
        );
        assert_eq!(chosen(last.choose(&target, "s-b", &[], now + 2)), on_b);
        assert_ne!(chosen(last.choose(&target, "s-a", &[], now + 2)), gone);

        // A target that no longer exists gets no account.
        let none = last.reconfigured(kept, Vec::new());
        assert!(none.members(&target).is_empty());
        assert!(matches!(
            none.choose(&target, "s-b", &[], now + 3),
            Choice::Unusable { .. }
        ));
    }
}
