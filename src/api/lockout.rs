//! Locking out an address that keeps guessing the admin secret.
//!
//! [`Rules::DEFAULT`]: 5 wrong secrets (sign-ins or bearer tokens) from one address within
//! 15 minutes lock that address out of the API for 5 minutes (`429` with `retry-after`). A
//! right secret forgets the address's failures. IPv6 addresses count by their /64 prefix,
//! since one machine usually holds a whole /64 and could otherwise guess from every address
//! in it.
//!
//! Memory is bounded: at most [`Rules::capacity`] addresses are remembered; expired
//! entries are dropped first, then the oldest that is not locked out. Time is passed in,
//! so the tests walk a clock instead of sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How many failures lock an address out, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Failures within `window` that lock the address out.
    pub failures: u32,
    /// Failures older than this (counted from the first) are forgotten.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lock: Duration,
    /// Most addresses remembered at once.
    pub capacity: usize,
}

impl Rules {
    pub const DEFAULT: Rules = Rules {
        failures: 5,
        window: Duration::from_secs(15 * 60),
        lock: Duration::from_secs(5 * 60),
        capacity: 4096,
    };
}

/// The failures of every address that failed recently.
#[derive(Debug)]
pub struct Lockout {
    rules: Rules,
    entries: HashMap<IpAddr, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// The first failure counted.
    first: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    /// Nothing left to remember: the lockout is over, or the failures are out of the window.
    fn expired(&self, rules: &Rules, now: Instant) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now >= self.first + rules.window,
        }
    }
}

impl Lockout {
    pub fn new(rules: Rules) -> Lockout {
        Lockout {
            rules,
            entries: HashMap::new(),
        }
    }

    /// How long `ip` stays locked out, if it is.
    pub fn locked(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = key(ip);
        let entry = self.entries.get(&key)?;
        if entry.expired(&self.rules, now) {
            self.entries.remove(&key);
            return None;
        }
        entry.locked_until.map(|until| until - now)
    }

    /// Counts a wrong secret from `ip`; returns the lockout it starts, if it does.
    pub fn failure(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = key(ip);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.rules.capacity {
            self.make_room(now);
        }
        let rules = self.rules;
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            first: now,
            locked_until: None,
        });
        if entry.expired(&rules, now) {
            *entry = Entry {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        if let Some(until) = entry.locked_until {
            return Some(until - now);
        }
        entry.failures += 1;
        if entry.failures < rules.failures {
            return None;
        }
        entry.locked_until = Some(now + rules.lock);
        tracing::warn!(
            address = %ip,
            failures = entry.failures,
            lock_s = rules.lock.as_secs(),
            "wrong admin secrets: this address is locked out of the management API for a while"
        );
        Some(rules.lock)
    }

    /// The right secret came from `ip`: its failures are forgotten.
    pub fn success(&mut self, ip: IpAddr) {
        self.entries.remove(&key(ip));
    }

    /// Addresses remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops expired entries, then, if still full, the oldest one not locked out (or, if
    /// all are, the one whose lockout ends first).
    fn make_room(&mut self, now: Instant) {
        let rules = self.rules;
        self.entries.retain(|_, e| !e.expired(&rules, now));
        if self.entries.len() < rules.capacity {
            return;
        }
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| match e.locked_until {
                None => (0, e.first),
                Some(until) => (1, until),
            })
            .map(|(k, _)| *k);
        if let Some(victim) = victim {
            self.entries.remove(&victim);
        }
    }
}

/// The address failures are counted under: IPv4 as it is, IPv6 by its /64 (an IPv4
/// address mapped into IPv6 as the IPv4 address).
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn five_failures_lock_the_address_out_and_the_lockout_expires() {
        let mut lockout = Lockout::new(Rules::DEFAULT);
        let start = Instant::now();
        let a = ip("192.0.2.7");
        for i in 0..4 {
            let now = start + Duration::from_secs(i * 10);
            assert_eq!(lockout.failure(a, now), None, "failure {}", i + 1);
            assert_eq!(lockout.locked(a, now), None);
        }
        let fifth = start + Duration::from_secs(60);
        assert_eq!(lockout.failure(a, fifth), Some(Duration::from_secs(300)));
        assert_eq!(
            lockout.locked(a, fifth + Duration::from_secs(100)),
            Some(Duration::from_secs(200))
        );
        // Another address is not affected.
        assert_eq!(lockout.locked(ip("192.0.2.8"), fifth), None);
        // Failing again while locked out does not lengthen it.
        assert_eq!(
            lockout.failure(a, fifth + Duration::from_secs(200)),
            Some(Duration::from_secs(100))
        );
        // The lockout ends, and is forgotten; counting starts afresh.
        let after = fifth + Duration::from_secs(300);
        assert_eq!(lockout.locked(a, after), None);
        assert!(lockout.is_empty());
        assert_eq!(lockout.failure(a, after), None);
        assert_eq!(lockout.len(), 1);
    }

    #[test]
    fn failures_out_of_the_window_are_forgotten() {
        let mut lockout = Lockout::new(Rules::DEFAULT);
        let start = Instant::now();
        let a = ip("192.0.2.7");
        for _ in 0..4 {
            assert_eq!(lockout.failure(a, start), None);
        }
        // The window (15 min from the first failure) has passed: this is failure 1 again.
        let later = start + Duration::from_secs(15 * 60);
        for _ in 0..4 {
            assert_eq!(lockout.failure(a, later), None);
        }
        assert!(lockout.failure(a, later).is_some());
    }

    #[test]
    fn the_right_secret_forgets_the_failures() {
        let mut lockout = Lockout::new(Rules::DEFAULT);
        let now = Instant::now();
        let a = ip("192.0.2.7");
        for _ in 0..4 {
            lockout.failure(a, now);
        }
        lockout.success(a);
        for _ in 0..4 {
            assert_eq!(lockout.failure(a, now), None);
        }
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let mut lockout = Lockout::new(Rules::DEFAULT);
        let now = Instant::now();
        for i in 1..=5 {
            lockout.failure(ip(&format!("2001:db8:1:2::{i}")), now);
        }
        assert!(lockout.locked(ip("2001:db8:1:2:ffff::1"), now).is_some());
        assert_eq!(lockout.locked(ip("2001:db8:1:3::1"), now), None);
        // An IPv4 peer seen as an IPv4-mapped IPv6 address is the same peer.
        for _ in 0..5 {
            lockout.failure(ip("::ffff:192.0.2.9"), now);
        }
        assert!(lockout.locked(ip("192.0.2.9"), now).is_some());
    }

    #[test]
    fn memory_is_bounded_and_lockouts_are_kept_longest() {
        let rules = Rules {
            capacity: 3,
            ..Rules::DEFAULT
        };
        let mut lockout = Lockout::new(rules);
        let now = Instant::now();
        let locked = ip("192.0.2.1");
        for _ in 0..5 {
            lockout.failure(locked, now);
        }
        for i in 2..=50 {
            lockout.failure(ip(&format!("192.0.2.{i}")), now + Duration::from_secs(i));
            assert!(lockout.len() <= 3);
        }
        assert!(
            lockout
                .locked(locked, now + Duration::from_secs(60))
                .is_some()
        );
        // Expired entries go first.
        let later = now + Duration::from_secs(3600);
        lockout.failure(ip("198.51.100.1"), later);
        assert_eq!(lockout.len(), 1);
    }
}
