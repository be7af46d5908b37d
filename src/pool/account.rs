//! One upstream account: its credentials, its HTTP client (with its proxy), what
//! Carpool knows about its rate limits, and whether the provider disabled it.
//!
//! **Quarantine.** An answer saying the provider disabled the account or its organization
//! (the client's protocol recognizes it: [`crate::protocol::Refusal::Disabled`]) takes the
//! account out of the pool with the upstream's words as the reason: [`Account::broken`]
//! returns it, so the account is not picked, not polled, and shows as
//! [`AccountState::Disabled`] in the status. It is not a cool-down that
//! ends by itself: such an account cannot come back by waiting. It ends when the login
//! changes (an OAuth account's credentials file gets other tokens:
//! [`Credential::generation`]) or when its owner clears it ([`Account::clear_quarantine`]);
//! an API-key account stays out until its key changes in the config or Carpool restarts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::limits::{Availability, LimitState, Reserves, plan_weight};
use super::status::{AccountKind, AccountState, AccountStatus, RecentUse, WindowStatus};
use crate::config::AccountTag;
use crate::credentials::{Credential, Unavailable};
use crate::secret::Secret;
use crate::tasks::lock;
use crate::upstream::UpstreamAuth;

pub enum Source {
    /// A Claude Code login, refreshed by Carpool.
    OAuth(Arc<Credential>),
    /// An API key.
    ApiKey(Secret),
}

/// A token to send, owned (the OAuth one may be refreshed at any time).
pub enum Auth {
    OAuth {
        token: Secret,
        /// A ChatGPT login's account (`ChatGPT-Account-Id`).
        account_id: Option<String>,
    },
    ApiKey(Secret),
}

impl Auth {
    pub fn upstream(&self) -> UpstreamAuth<'_> {
        match self {
            Auth::OAuth { token, account_id } => UpstreamAuth::OAuth {
                token,
                account_id: account_id.as_deref(),
            },
            Auth::ApiKey(k) => UpstreamAuth::ApiKey(k),
        }
    }
}

pub struct Account {
    pub tag: AccountTag,
    /// Without a trailing slash.
    pub base_url: String,
    /// The same, parsed once: parsing a URL (host normalisation included) costs more
    /// than the rest of building a request, so each request starts from a copy of this.
    pub base: reqwest::Url,
    /// Its own client: its proxy applies to requests, refreshes and usage polls.
    pub http: reqwest::Client,
    pub source: Source,
    /// What a config reload may change without replacing the account.
    settings: Mutex<Settings>,
    limits: Mutex<LimitState>,
    polling: AtomicBool,
    recent: Mutex<Recent>,
    /// The last state logged ([`Availability::kind`]).
    logged_state: Mutex<&'static str>,
    quarantine: Mutex<Option<Quarantine>>,
}

/// An account's settings that a config reload changes in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub reserves: Reserves,
    /// How stale its usage figures may get before polling (the shortest of its pools').
    pub poll_interval: Duration,
}

impl Settings {
    /// How stale an account's usage figures may get when no pool sets `poll_interval`.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reserves: Reserves::default(),
            poll_interval: Settings::DEFAULT_POLL_INTERVAL,
        }
    }
}

/// The provider disabled the account; see the module documentation.
#[derive(Debug, Clone)]
struct Quarantine {
    /// The upstream's message.
    reason: String,
    /// Unix seconds.
    since: i64,
    /// The credential generation the refused request used.
    generation: u64,
}

impl Account {
    pub fn new(
        tag: AccountTag,
        base: reqwest::Url,
        http: reqwest::Client,
        source: Source,
        settings: Settings,
    ) -> Account {
        Account {
            tag,
            base_url: base.as_str().trim_end_matches('/').to_owned(),
            base,
            http,
            source,
            settings: Mutex::new(settings),
            limits: Mutex::new(LimitState::default()),
            polling: AtomicBool::new(false),
            recent: Mutex::new(Recent::default()),
            logged_state: Mutex::new("ready"),
            quarantine: Mutex::new(None),
        }
    }

    /// Its reserves and poll interval as the config last set them.
    pub fn settings(&self) -> Settings {
        *lock(&self.settings)
    }

    pub fn reserves(&self) -> Reserves {
        self.settings().reserves
    }

    /// A config reload changed its reserves or poll interval: they apply from the next
    /// request on, and everything Carpool learnt about the account stays.
    pub fn update_settings(&self, settings: Settings) {
        *lock(&self.settings) = settings;
    }

    /// What this account knows that is worth keeping when a reload replaces it by a new
    /// one for the same login (its base URL or proxy changed): rate-limit and usage
    /// state, the last hour's counters, a quarantine.
    pub fn inherit(&self, from: &Account) {
        *self.limits() = from.limits().clone();
        *lock(&self.recent) = lock(&from.recent).clone();
        *lock(&self.quarantine) = lock(&from.quarantine).clone();
    }

    /// Which login the account uses: [`Credential::generation`] for an OAuth account,
    /// always 0 for an API key.
    pub fn credential_generation(&self) -> u64 {
        match &self.source {
            Source::OAuth(c) => c.generation(),
            Source::ApiKey(_) => 0,
        }
    }

    /// The provider refused a request made with login `generation` for good: the account
    /// is out until that login changes or its owner clears it. Logged once, at error
    /// level. A refusal of a login that was replaced meanwhile changes nothing.
    pub fn quarantine(&self, reason: String, generation: u64, now: i64) {
        if generation != self.credential_generation() {
            return;
        }
        let mut quarantine = lock(&self.quarantine);
        if quarantine
            .as_ref()
            .is_some_and(|q| q.generation == generation)
        {
            return;
        }
        let until = if self.is_oauth() {
            "its credentials file gets a new login"
        } else {
            "its key changes in the config or Carpool restarts"
        };
        tracing::error!(account = %self.tag, %reason, "the provider disabled this account; it is not used until {until} or its owner clears it");
        *quarantine = Some(Quarantine {
            reason,
            since: now,
            generation,
        });
    }

    /// The reason and since when the account is quarantined; lifts a quarantine whose
    /// login has been replaced.
    fn quarantined(&self) -> Option<(String, i64)> {
        let mut quarantine = lock(&self.quarantine);
        let q = quarantine.as_ref()?;
        if q.generation != self.credential_generation() {
            tracing::info!(account = %self.tag, "the credentials changed; the disabled account is tried again");
            *quarantine = None;
            return None;
        }
        Some((q.reason.clone(), q.since))
    }

    /// Ends a quarantine (for the management API: the owner says the account is back).
    /// Returns whether there was one.
    pub fn clear_quarantine(&self) -> bool {
        let cleared = lock(&self.quarantine).take().is_some();
        if cleared {
            tracing::info!(account = %self.tag, "quarantine cleared by its owner");
        }
        cleared
    }

    /// The Claude Code login behind an OAuth account.
    pub fn credential(&self) -> Option<&Arc<Credential>> {
        match &self.source {
            Source::OAuth(c) => Some(c),
            Source::ApiKey(_) => None,
        }
    }

    pub fn is_oauth(&self) -> bool {
        matches!(self.source, Source::OAuth(_))
    }

    /// The credential to send, refreshing an OAuth token if needed (`rejected`: the
    /// token the upstream just refused).
    pub async fn auth(&self, rejected: Option<&Secret>) -> Result<Auth, Unavailable> {
        match &self.source {
            // A Codex login in API-key mode (`OPENAI_API_KEY` in its auth.json) is a key.
            Source::OAuth(c) if c.is_api_key() => c.access_token(rejected).await.map(Auth::ApiKey),
            Source::OAuth(c) => c.access_token(rejected).await.map(|token| Auth::OAuth {
                token,
                account_id: c.account_id(),
            }),
            Source::ApiKey(k) => Ok(Auth::ApiKey(k.clone())),
        }
    }

    /// Why the credentials cannot be used until someone fixes them (file missing or
    /// invalid, login revoked), if so. A refresh that failed for a passing reason is
    /// not: requests keep coming to such an account, and they drive the retries.
    pub fn broken(&self) -> Option<String> {
        if let Some((reason, _)) = self.quarantined() {
            let until = if self.is_oauth() {
                "log in again (a new credentials file)"
            } else {
                "change its key in the config or restart Carpool"
            };
            let words = match &self.source {
                Source::OAuth(c) => c.format().account_words(),
                Source::ApiKey(_) => "API-key account",
            };
            return Some(format!(
                "{words} `{}` was disabled by the provider (\"{reason}\"); it is left out until its owner clears it or you {until}",
                self.tag
            ));
        }
        match &self.source {
            Source::OAuth(c) => c.needs_attention(),
            Source::ApiKey(_) => None,
        }
    }

    pub fn limits(&self) -> MutexGuard<'_, LimitState> {
        // Plain numbers: see the lock policy in `crate::tasks`.
        lock(&self.limits)
    }

    /// Whether it can take a request now. A change of state is logged once, so the
    /// owner's log tells when an account paused, was rate-limited or failed, and when
    /// it came back.
    pub fn availability(&self, now: i64) -> Availability {
        let availability = self.limits().availability(self.reserves(), now);
        if let Some(line) = self.state_change(&availability, now) {
            if availability.is_ready() {
                tracing::info!(account = %self.tag, "account {line}");
            } else {
                tracing::warn!(account = %self.tag, "account {line}");
            }
        }
        availability
    }

    /// The log line for `availability` if its kind differs from the last one seen.
    fn state_change(&self, availability: &Availability, now: i64) -> Option<String> {
        let kind = availability.kind();
        let mut last = lock(&self.logged_state);
        (*last != kind).then(|| {
            *last = kind;
            availability.describe(now)
        })
    }

    /// Plan weight for `least_used`: Max 20x 10, Max 5x 5, others 1.
    pub fn plan_weight(&self) -> u32 {
        match &self.source {
            Source::OAuth(c) => {
                let (subscription, tier) = c.plan();
                plan_weight(subscription.as_deref(), tier.as_deref())
            }
            Source::ApiKey(_) => 1,
        }
    }

    /// Claims the right to poll the usage endpoint (one poll at a time per account).
    pub fn start_poll(&self) -> bool {
        !self.polling.swap(true, Ordering::AcqRel)
    }

    pub fn end_poll(&self) {
        self.polling.store(false, Ordering::Release);
    }

    /// Counts a finished request for the status snapshot's last hour.
    pub fn note_request(&self, tokens: u64, now: i64) {
        let mut recent = lock(&self.recent);
        recent.add(now / 60, tokens);
    }

    /// Requests and tokens in the last 60 minutes.
    pub fn last_hour(&self, now: i64) -> (u64, u64) {
        let mut recent = lock(&self.recent);
        recent.sum(now / 60)
    }
}

/// Per-minute counters over the last hour.
#[derive(Default, Clone)]
struct Recent {
    minutes: VecDeque<(i64, u64, u64)>,
}

impl Recent {
    fn trim(&mut self, minute: i64) {
        while self
            .minutes
            .front()
            .is_some_and(|(m, _, _)| *m <= minute - 60)
        {
            self.minutes.pop_front();
        }
    }

    fn add(&mut self, minute: i64, tokens: u64) {
        self.trim(minute);
        match self.minutes.back_mut() {
            Some((m, requests, t)) if *m == minute => {
                *requests += 1;
                *t += tokens;
            }
            _ => self.minutes.push_back((minute, 1, tokens)),
        }
    }

    fn sum(&mut self, minute: i64) -> (u64, u64) {
        self.trim(minute);
        self.minutes
            .iter()
            .fold((0, 0), |(r, t), (_, requests, tokens)| {
                (r + requests, t + tokens)
            })
    }
}

impl Account {
    /// What the status snapshot shows for it; `active_sessions`: conversations pinned to
    /// it now.
    pub fn status(&self, active_sessions: usize, now: i64) -> AccountStatus {
        let (requests, tokens) = self.last_hour(now);
        let state = self.state(now);
        let reserves = self.reserves();
        let limits = self.limits();
        AccountStatus {
            tag: self.tag.clone(),
            kind: if self.is_oauth() {
                AccountKind::OAuth
            } else {
                AccountKind::ApiKey
            },
            state,
            five_hour: WindowStatus::five_hour(limits.five_hour(now), reserves),
            weekly: WindowStatus::weekly(limits.weekly(now), reserves),
            usage_updated_at: limits.last_update(),
            plan_weight: self.plan_weight(),
            active_sessions,
            last_hour: RecentUse { requests, tokens },
        }
    }

    /// The state for the status snapshot, in the order [`AccountState`] documents.
    fn state(&self, now: i64) -> AccountState {
        if let Some((reason, since)) = self.quarantined() {
            return AccountState::Disabled { reason, since };
        }
        if let Source::OAuth(c) = &self.source
            && let Some(state) = AccountState::of_login(c.status(), c.store())
        {
            return state;
        }
        self.availability(now).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::limits::WindowName;

    fn api_key_account() -> Account {
        Account::new(
            "console".into(),
            "http://127.0.0.1:9".parse().unwrap(),
            reqwest::Client::new(),
            Source::ApiKey(Secret::new("sk-ant-api03-unit")),
            Settings::default(),
        )
    }

    #[test]
    fn a_quarantine_holds_until_cleared_and_shows_in_the_status() {
        let account = api_key_account();
        assert!(account.broken().is_none());
        account.quarantine("This organization has been disabled.".into(), 0, 1000);
        // A second refusal changes nothing (same reason and since, logged once).
        account.quarantine("Something else".into(), 0, 2000);
        let broken = account.broken().unwrap();
        assert!(
            broken.contains("`console`") && broken.contains("This organization has been disabled."),
            "{broken}"
        );
        assert_eq!(
            account.status(0, 3000).state,
            AccountState::Disabled {
                reason: "This organization has been disabled.".into(),
                since: 1000
            }
        );
        assert!(account.clear_quarantine());
        assert!(account.broken().is_none());
        assert!(!account.clear_quarantine());
        assert_eq!(account.status(0, 3000).state, AccountState::Ready);
        // A refusal of a login that is no longer the account's changes nothing.
        account.quarantine("This organization has been disabled.".into(), 7, 4000);
        assert!(account.broken().is_none());
    }

    #[test]
    fn each_change_of_state_is_described_once() {
        let account = Account::new(
            "a".into(),
            "http://127.0.0.1:9".parse().unwrap(),
            reqwest::Client::new(),
            Source::ApiKey(Secret::new("k")),
            Settings::default(),
        );
        let now = 1_000;
        let paused = Availability::PausedByReserve {
            window: WindowName::FiveHour,
            percent: 80,
            cap: 80,
            until: Some(now + 3600),
        };
        assert_eq!(account.state_change(&Availability::Ready, now), None);
        let line = account.state_change(&paused, now).unwrap();
        assert!(
            line.contains("5h window is at 80%") && line.contains("1h"),
            "{line}"
        );
        assert_eq!(account.state_change(&paused, now + 1), None, "once");
        let open = Availability::CircuitOpen {
            until: now + 30,
            failures: 3,
        };
        let line = account.state_change(&open, now).unwrap();
        assert!(
            line.contains("3 failures") && line.contains("in 30s"),
            "{line}"
        );
        assert_eq!(
            account.state_change(&Availability::Ready, now).as_deref(),
            Some("ready again")
        );
    }

    #[test]
    fn the_last_hour_forgets_older_minutes() {
        let mut r = Recent::default();
        r.add(100, 10);
        r.add(100, 5);
        r.add(130, 1);
        assert_eq!(r.sum(130), (3, 16));
        assert_eq!(r.sum(159), (3, 16));
        assert_eq!(r.sum(160), (1, 1), "minute 100 is an hour old");
        assert_eq!(r.sum(200), (0, 0));
    }
}
