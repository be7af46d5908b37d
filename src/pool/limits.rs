//! One account's rate-limit state: what Anthropic told us about its quota windows, the
//! owner's reserves, quota 429s, cool-downs, a circuit breaker for failing upstreams and
//! the back-off of the usage poll. Pure logic: no I/O, no clock (every function that
//! needs the time takes `now`, Unix seconds), so the scheduler owns the locking and the
//! tests own the time (protocol.md §5.1–§5.5).
//!
//! **Units.** A subscription has two windows, 5 hours and 7 days ("weekly"). Each is
//! kept as a whole percent `0..=100`, rounded up, and the Unix second it resets at.
//! Response headers give a fraction (`0.291` → 30 %), the OAuth usage endpoint a percent
//! (`29.1` → 30 %). Headers never lower a window's percent unless its reset moved later
//! (a new window) or the stored reset has passed; reset times only move forward. A poll
//! overwrites both windows. A window whose reset time has passed reads as 0 %.
//!
//! **Reserves.** The owner keeps `reserve` percent of a window for themselves, so the
//! account pauses once the window reaches `cap = 100 − reserve` (no reserve: cap 100),
//! until that window resets.
//!
//! **Precedence** of [`LimitState::availability`], first match wins:
//! 1. [`Availability::RateLimited`]: a quota 429, until the window's reset;
//! 2. [`Availability::CircuitOpen`] while the breaker's open time has not passed;
//! 3. [`Availability::CoolingDown`]: a non-quota rate limit (`retry-after`);
//! 4. [`Availability::QuotaExhausted`] or [`Availability::PausedByReserve`]: the 5h
//!    window at its cap (used up: exhausted; below 100 %: the reserve), then the weekly one;
//! 5. [`Availability::CircuitOpen`] with `until <= now`: the breaker's open time passed
//!    and the account would otherwise be ready, so it may take one probe request (claim it
//!    with [`LimitState::try_probe`]); `is_ready()` is false for it;
//! 6. [`Availability::Ready`].
//!
//! **Circuit breaker.** 5xx answers (not 529, which is Anthropic-wide) and connection
//! failures count as failures; any success resets the count. The third consecutive
//! failure opens the circuit for 30 s. When that time has passed, exactly one probe
//! request may go: its success closes the circuit, its failure re-opens it for twice as
//! long (60 s, 120 s, 240 s, then 300 s at most). Failures of requests that were already in
//! flight while the circuit is open do not extend it.
//!
//! **Upstream numbers are not trusted as they come.** A pause that no window's reset
//! time backs (a non-quota 429's `retry-after`, or a quota 429 without any reset header)
//! lasts 1 to 60 s ([`MAX_UNBACKED_PAUSE_SECS`]; 30 s without `retry-after`), so a
//! transient 429 never locks an account for hours. A reset time more than 8 days ahead
//! ([`MAX_RESET_AHEAD_SECS`]; the longest window is 7 days) is ignored, from headers and
//! from the usage endpoint alike. A usage poll's `retry-after` counts for an hour at
//! most. All arithmetic on these numbers saturates.
//!
//! **Refusals for good.** [`disabled_reason`] recognizes an answer saying the provider
//! disabled the account or its organization; the account then leaves the pool until its
//! login changes ([`super::account`]).
//!
//! **Usage poll.** [`LimitState::needs_poll`] says when the usage endpoint should be asked
//! (no fresh headers for `interval`); a failed poll only delays the next one and never
//! makes the account unavailable (sing-box does; protocol.md §9.6).

use http::HeaderMap;
use serde_json::Value;

/// Percent 0..=100 of a rate-limit window used, and when it resets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub percent: Option<u32>,
    pub resets_at: Option<i64>,
}

impl Window {
    /// The window as it stands at `now`: once its reset time has passed it has reset, so
    /// it reads 0 % with an unknown next reset.
    fn at(self, now: i64) -> Window {
        match self.resets_at {
            Some(reset) if reset <= now => Window {
                percent: self.percent.map(|_| 0),
                resets_at: None,
            },
            _ => self,
        }
    }
}

/// How much of each window the owner keeps for themselves (config `reserve_5h`,
/// `reserve_weekly`, 1..=99). The account pauses when a window's utilization reaches
/// 100 − reserve. None = no reserve: cap 100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserves {
    pub five_hour: Option<u32>,
    pub weekly: Option<u32>,
}

impl Reserves {
    /// The percent of the 5h window at which the account pauses.
    pub fn five_hour_cap(self) -> u32 {
        cap(self.five_hour)
    }

    /// The percent of the weekly window at which the account pauses.
    pub fn weekly_cap(self) -> u32 {
        cap(self.weekly)
    }
}

/// The percent at which a window with this reserve pauses the account (1..=100).
fn cap(reserve: Option<u32>) -> u32 {
    100 - reserve.unwrap_or(0).min(99)
}

/// One of a subscription's two quota windows. In JSON `five_hour` or `weekly`, as the
/// status snapshot's fields; in log lines `5h` or `weekly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowName {
    FiveHour,
    Weekly,
}

impl std::fmt::Display for WindowName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WindowName::FiveHour => "5h",
            WindowName::Weekly => "weekly",
        })
    }
}

/// Why an account cannot take a request now (or that it can). The status snapshot shows
/// it as [`super::status::AccountState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// A window reached the cap the owner's reserve leaves (below 100 %); until the
    /// window resets.
    PausedByReserve {
        window: WindowName,
        percent: u32,
        cap: u32,
        until: Option<i64>,
    },
    /// A window is used up (100 %), reserve or not; until it resets. Known from the
    /// figures before any request is refused, unlike [`Availability::RateLimited`].
    QuotaExhausted {
        window: WindowName,
        until: Option<i64>,
    },
    /// A quota 429 from the upstream; until the window resets.
    RateLimited {
        until: i64,
    },
    /// A non-quota rate limit (retry-after) or a failed probe; until then.
    CoolingDown {
        until: i64,
    },
    /// Too many consecutive failures (5xx, connection errors); a probe is allowed after
    /// `until` (see [`LimitState::try_probe`]).
    CircuitOpen {
        until: i64,
        failures: u32,
    },
}

impl Availability {
    pub fn is_ready(&self) -> bool {
        matches!(self, Availability::Ready)
    }

    /// The state's name, as in the status snapshot.
    pub fn kind(&self) -> &'static str {
        match self {
            Availability::Ready => "ready",
            Availability::PausedByReserve { .. } => "paused_by_reserve",
            Availability::QuotaExhausted { .. } => "quota_exhausted",
            Availability::RateLimited { .. } => "rate_limited",
            Availability::CoolingDown { .. } => "cooling_down",
            Availability::CircuitOpen { .. } => "circuit_open",
        }
    }

    /// One line for the owner's log.
    pub fn describe(&self, now: i64) -> String {
        let until = |t: Option<i64>| match t {
            Some(t) if t > now => format!(
                " for {}",
                humantime::format_duration(std::time::Duration::from_secs((t - now) as u64))
            ),
            _ => String::new(),
        };
        match self {
            Availability::Ready => "ready again".into(),
            Availability::PausedByReserve {
                window,
                percent,
                cap,
                until: t,
            } => format!(
                "paused: its {window} window is at {percent}%, the cap its reserve leaves is {cap}%; resumes when the window resets{}",
                until(*t)
            ),
            Availability::QuotaExhausted { window, until: t } => format!(
                "paused: its {window} window is used up; resumes when the window resets{}",
                until(*t)
            ),
            Availability::RateLimited { until: t } => {
                format!("rate-limited by the upstream{}", until(Some(*t)))
            }
            Availability::CoolingDown { until: t } => {
                format!("cooling down after a rate limit{}", until(Some(*t)))
            }
            Availability::CircuitOpen { until: t, failures } => format!(
                "not used after {failures} failures in a row; one probe request{} decides",
                match until(Some(*t)) {
                    u if u.is_empty() => " now".to_owned(),
                    u => format!(" in{}", u.trim_start_matches(" for")),
                }
            ),
        }
    }

    /// When it may become ready (None if unknown or already ready). For a circuit whose
    /// open time has passed this is in the past: the account waits for its probe.
    pub fn until(&self) -> Option<i64> {
        match *self {
            Availability::Ready => None,
            Availability::PausedByReserve { until, .. }
            | Availability::QuotaExhausted { until, .. } => until,
            Availability::RateLimited { until }
            | Availability::CoolingDown { until }
            | Availability::CircuitOpen { until, .. } => Some(until),
        }
    }
}

/// What a 429 from the upstream means for the account that got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttle {
    /// The account's subscription quota is used up until `until`: pause it
    /// ([`LimitState::on_quota_429`]) and try another account.
    Quota { until: i64 },
    /// Not the account's quota (extra usage required, a plain rate limit); the account
    /// stays usable. `retry_after` (seconds) is the upstream's `retry-after`, if any.
    NotQuota { retry_after: Option<i64> },
}

/// Consecutive failures that open the circuit.
const FAILURES_TO_OPEN: u32 = 3;
/// How long the circuit stays open the first time; doubled on each re-open.
const CIRCUIT_OPEN_SECS: i64 = 30;
/// The longest the circuit stays open.
const CIRCUIT_OPEN_MAX_SECS: i64 = 300;
/// A claimed probe that never reported back (a bug, or a request dropped without an
/// outcome) frees the slot after this long, so the account cannot stay out for good.
/// Longer than the default whole-request timeout.
const PROBE_LEASE_SECS: i64 = 660;
/// Back-off after the first failed poll; doubled on each further failure.
const POLL_BACKOFF_SECS: i64 = 60;
/// The longest poll back-off.
const POLL_BACKOFF_MAX_SECS: i64 = 300;
/// Wait before the next poll after a 429 from the usage endpoint without `retry-after`.
pub const DEFAULT_POLL_RETRY_AFTER: i64 = 60;
/// How long a quota 429 pauses the account when the upstream says nothing about when.
const DEFAULT_QUOTA_PAUSE_SECS: i64 = 60;
/// The longest pause a 429 earns without a window's reset time behind it: its
/// `retry-after` is clamped to this (other relays locked accounts for hours over one
/// transient 429).
pub const MAX_UNBACKED_PAUSE_SECS: i64 = 60;
/// The pause of a non-quota 429 that has no `retry-after`.
pub const DEFAULT_COOLDOWN_SECS: i64 = 30;
/// A reset time further ahead than this is not a window's (the longest is 7 days) and is
/// ignored, as if absent.
pub const MAX_RESET_AHEAD_SECS: i64 = 8 * 86_400;
/// The longest wait a usage-endpoint 429's `retry-after` imposes on the next poll.
const MAX_POLL_RETRY_AFTER_SECS: i64 = 3600;

const HEADER_PREFIX: &str = "anthropic-ratelimit-unified-";
const STATUS: &str = "anthropic-ratelimit-unified-status";
const STATUS_5H: &str = "anthropic-ratelimit-unified-5h-status";
const STATUS_7D: &str = "anthropic-ratelimit-unified-7d-status";
const UTILIZATION_5H: &str = "anthropic-ratelimit-unified-5h-utilization";
const UTILIZATION_7D: &str = "anthropic-ratelimit-unified-7d-utilization";
const RESET: &str = "anthropic-ratelimit-unified-reset";
const RESET_5H: &str = "anthropic-ratelimit-unified-5h-reset";
const RESET_7D: &str = "anthropic-ratelimit-unified-7d-reset";
const RESET_7D_OI: &str = "anthropic-ratelimit-unified-7d_oi-reset";
const CLAIM: &str = "anthropic-ratelimit-unified-representative-claim";

/// Bodies of 429s that are not about the account's quota (protocol.md §5.4), lowercase.
const NOT_QUOTA_BODIES: [&str; 3] = [
    "extra usage is required",
    "usage credits are required",
    "long context",
];

/// Phrases of an error message saying the provider disabled the account or its
/// organization for good (protocol.md §8.2), lowercase; see [`disabled_reason`].
const DISABLED_PHRASES: [&str; 8] = [
    "organization has been disabled",
    "organization is disabled",
    "oauth authentication is currently not allowed for this organization",
    "account has been suspended",
    "account is suspended",
    "account has been disabled",
    "account is disabled",
    "account has been banned",
];
/// The longest upstream message kept as a quarantine's reason.
const MAX_REASON_CHARS: usize = 300;

/// Whether an error answer says the provider disabled this account for good, and if so
/// the upstream's message (at most 300 characters), for the status and the log.
///
/// Deliberately narrow, since a quarantined account is out until someone acts: only a
/// 403 `permission_error` or a 400 `invalid_request_error` in Anthropic's error shape
/// whose message contains one of [`DISABLED_PHRASES`] (case-insensitive): "This
/// organization has been disabled.", "OAuth authentication is currently not allowed for
/// this organization.", "Your account has been suspended", … Every other 400/403 (a model
/// or feature the plan does not include, "only authorized for use with Claude Code", a
/// malformed request) is about the request and passes to the client, pausing nothing.
/// `body` may be a prefix; one that is not whole JSON is not a refusal.
pub fn disabled_reason(status: u16, body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Wire {
        #[serde(rename = "type")]
        kind: Option<String>,
        error: Option<WireError>,
    }
    #[derive(serde::Deserialize)]
    struct WireError {
        #[serde(rename = "type")]
        kind: Option<String>,
        message: Option<String>,
    }
    let expected = match status {
        403 => "permission_error",
        400 => "invalid_request_error",
        _ => return None,
    };
    let wire: Wire = serde_json::from_slice(body).ok()?;
    let error = wire.error?;
    if wire.kind.as_deref() != Some("error") || error.kind.as_deref() != Some(expected) {
        return None;
    }
    let message = error.message?;
    let lower = message.to_lowercase();
    DISABLED_PHRASES
        .iter()
        .any(|phrase| lower.contains(phrase))
        .then(|| message.chars().take(MAX_REASON_CHARS).collect())
}

/// One account's rate-limit state; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct LimitState {
    five_hour: Window,
    weekly: Window,
    /// When headers or a poll last told us about the windows.
    last_update: Option<i64>,
    /// A quota 429 pauses the account until then.
    rate_limited_until: Option<i64>,
    /// A non-quota rate limit pauses the account until then.
    cooldown_until: Option<i64>,
    /// Consecutive failures (5xx, connection errors) since the last success.
    failures: u32,
    /// The circuit is open until then (Some while open, even after that time passed and
    /// until a probe succeeds).
    open_until: Option<i64>,
    /// How many times the circuit opened since it was last closed.
    opens: u32,
    /// When the half-open probe was claimed, while it has not come back yet.
    probe_claimed_at: Option<i64>,
    /// Do not poll the usage endpoint before then.
    poll_not_before: Option<i64>,
    /// Consecutive failed polls (429s not counted).
    poll_failures: u32,
}

impl LimitState {
    /// Reads the unified rate-limit headers of any upstream response (protocol.md §5.1):
    /// `-5h-utilization` / `-7d-utilization` (fractions, percent = ceil(fraction × 100))
    /// and `-5h-reset` / `-7d-reset` (Unix seconds). A lower percent is accepted only if
    /// that window's reset moved later or the stored one has passed; resets only move
    /// forward. Any unified header counts as fresh information. A `rejected` status
    /// (`-status`, `-5h-status`, `-7d-status`) is a quota hit, as [`Self::on_quota_429`].
    /// Unparsable values are ignored.
    pub fn observe_headers(&mut self, headers: &HeaderMap, now: i64) {
        let any_unified = headers
            .keys()
            .any(|name| name.as_str().starts_with(HEADER_PREFIX));
        if !any_unified {
            return;
        }
        self.last_update = Some(now);
        update_window(
            &mut self.five_hour,
            header_fraction(headers, UTILIZATION_5H),
            header_reset(headers, RESET_5H, now),
            now,
        );
        update_window(
            &mut self.weekly,
            header_fraction(headers, UTILIZATION_7D),
            header_reset(headers, RESET_7D, now),
            now,
        );
        if [STATUS, STATUS_5H, STATUS_7D]
            .iter()
            .any(|name| is_rejected(headers, name))
        {
            self.on_quota_429(quota_reset(headers, now));
        }
    }

    /// Reads the OAuth usage endpoint's JSON (protocol.md §5.2): `five_hour` and
    /// `seven_day` with `utilization` (a percent, maybe fractional: rounded up) and
    /// `resets_at` (ISO 8601 or null), or when both are absent the newer
    /// `limits: [{kind: "session" | "weekly_all" | …, percent, resets_at}]`. Overwrites
    /// both windows, marks the information fresh and ends any poll back-off. JSON it cannot
    /// understand is an error and leaves the state unchanged.
    pub fn observe_usage(&mut self, body: &[u8], now: i64) -> Result<(), String> {
        let json: Value = serde_json::from_slice(body)
            .map_err(|err| format!("usage response is not JSON: {err}"))?;
        let Some(object) = json.as_object() else {
            return Err("usage response is not a JSON object".to_owned());
        };
        let (five_hour, weekly) =
            if object.contains_key("five_hour") || object.contains_key("seven_day") {
                (
                    usage_window(object.get("five_hour"), "five_hour", "utilization")?,
                    usage_window(object.get("seven_day"), "seven_day", "utilization")?,
                )
            } else if let Some(limits) = object.get("limits") {
                usage_limits(limits)?
            } else {
                return Err(
                    "usage response has neither `five_hour`/`seven_day` nor `limits`".to_owned(),
                );
            };
        self.five_hour = trusted(five_hour, now);
        self.weekly = trusted(weekly, now);
        self.last_update = Some(now);
        self.poll_not_before = None;
        self.poll_failures = 0;
        Ok(())
    }

    /// Whether a 429 from the upstream is this account's quota (protocol.md §5.4).
    ///
    /// Not quota, whatever the headers say: bodies saying "Extra usage is required",
    /// "Usage credits are required" or "long context"; a 429 without unified headers;
    /// and a 429 whose unified status headers are present but none is `rejected`.
    /// Quota: a `rejected` status, else a representative claim or a unified reset header.
    ///
    /// The quota lasts until the reset of the window the representative claim names
    /// (`5h`/`five_hour`, `7d`/`seven_day`, `7d_oi`), else the latest reset among the
    /// rejected windows, else `-unified-reset`, else now + `retry-after` clamped to
    /// 1..=60 s, else now + 60 s: without a reset time the pause is short, and the next
    /// request finds out. Resets that are not in the future, or more than 8 days ahead
    /// (no window is that long), are skipped. Never panics on odd headers.
    pub fn classify_429(headers: &HeaderMap, body: &[u8], now: i64) -> Throttle {
        let retry_after = retry_after(headers);
        let text = String::from_utf8_lossy(body).to_lowercase();
        if NOT_QUOTA_BODIES.iter().any(|needle| text.contains(needle)) {
            return Throttle::NotQuota { retry_after };
        }
        let statuses: Vec<&str> = [STATUS, STATUS_5H, STATUS_7D]
            .iter()
            .filter_map(|name| header_str(headers, name))
            .collect();
        let rejected = statuses
            .iter()
            .any(|status| status.eq_ignore_ascii_case("rejected"));
        let quota = if rejected {
            true
        } else if !statuses.is_empty() {
            // The upstream says every window is still allowed: some other limit.
            false
        } else {
            header_str(headers, CLAIM).is_some_and(|claim| !claim.is_empty())
                || [RESET, RESET_5H, RESET_7D]
                    .iter()
                    .any(|name| header_seconds(headers, name).is_some())
        };
        if quota {
            Throttle::Quota {
                until: quota_reset(headers, now),
            }
        } else {
            Throttle::NotQuota { retry_after }
        }
    }

    /// A quota 429: the account is rate-limited until `until` (never shortened).
    pub fn on_quota_429(&mut self, until: i64) {
        self.rate_limited_until = Some(self.rate_limited_until.map_or(until, |t| t.max(until)));
    }

    /// A non-quota 429 with this `retry-after` (seconds): the account cools down for it,
    /// clamped to 1..=[`MAX_UNBACKED_PAUSE_SECS`], or [`DEFAULT_COOLDOWN_SECS`] without
    /// one. Returns when the cool-down ends.
    pub fn on_rate_limit(&mut self, retry_after: Option<i64>, now: i64) -> i64 {
        let secs = retry_after
            .unwrap_or(DEFAULT_COOLDOWN_SECS)
            .clamp(1, MAX_UNBACKED_PAUSE_SECS);
        let until = now.saturating_add(secs);
        self.on_cooldown(until);
        until
    }

    /// A non-quota rate limit: the account cools down until `until` (never shortened).
    pub fn on_cooldown(&mut self, until: i64) {
        self.cooldown_until = Some(self.cooldown_until.map_or(until, |t| t.max(until)));
    }

    /// A 5xx (not 529) or a connection failure. The third consecutive failure opens the
    /// circuit for 30 s; a failure once the open time has passed (the probe's) re-opens
    /// it for twice as long as last time, at most 300 s. Failures while it is open and
    /// the open time has not passed only count.
    pub fn on_failure(&mut self, now: i64) {
        self.failures = self.failures.saturating_add(1);
        let open_and_waiting = self.open_until.is_some_and(|until| until > now);
        if self.failures >= FAILURES_TO_OPEN && !open_and_waiting {
            let doublings = self.opens.min(16);
            let secs = (CIRCUIT_OPEN_SECS << doublings).min(CIRCUIT_OPEN_MAX_SECS);
            self.open_until = Some(now.saturating_add(secs));
            self.opens = self.opens.saturating_add(1);
            self.probe_claimed_at = None;
        }
    }

    /// A request succeeded: the failure count resets and the circuit closes.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.opens = 0;
        self.open_until = None;
        self.probe_claimed_at = None;
    }

    /// Claims the single half-open probe: true if the circuit is open, its open time has
    /// passed and no probe is in flight (the probe is then in flight until
    /// [`Self::on_success`] or [`Self::on_failure`], or for at most 11 minutes if it
    /// never reports). Callers ask only for accounts whose availability is
    /// [`Availability::CircuitOpen`] with `until <= now`.
    pub fn try_probe(&mut self, now: i64) -> bool {
        let due = self.open_until.is_some_and(|until| until <= now);
        let in_flight = self
            .probe_claimed_at
            .is_some_and(|claimed| now < claimed.saturating_add(PROBE_LEASE_SECS));
        if due && !in_flight {
            self.probe_claimed_at = Some(now);
            true
        } else {
            false
        }
    }

    /// Ready, or why not, given the owner's reserves; precedence in the module docs.
    pub fn availability(&self, reserves: Reserves, now: i64) -> Availability {
        if let Some(until) = self.rate_limited_until.filter(|&until| until > now) {
            return Availability::RateLimited { until };
        }
        if let Some(until) = self.open_until.filter(|&until| until > now) {
            return Availability::CircuitOpen {
                until,
                failures: self.failures,
            };
        }
        if let Some(until) = self.cooldown_until.filter(|&until| until > now) {
            return Availability::CoolingDown { until };
        }
        let windows = [
            (
                WindowName::FiveHour,
                self.five_hour(now),
                reserves.five_hour_cap(),
            ),
            (WindowName::Weekly, self.weekly(now), reserves.weekly_cap()),
        ];
        for (name, window, cap) in windows {
            if let Some(percent) = window.percent.filter(|&percent| percent >= cap) {
                if percent >= 100 {
                    return Availability::QuotaExhausted {
                        window: name,
                        until: window.resets_at,
                    };
                }
                return Availability::PausedByReserve {
                    window: name,
                    percent,
                    cap,
                    until: window.resets_at,
                };
            }
        }
        if let Some(until) = self.open_until {
            // The open time has passed: the account waits for its probe.
            return Availability::CircuitOpen {
                until,
                failures: self.failures,
            };
        }
        Availability::Ready
    }

    /// True when the last fresh information is older than `interval` seconds (or there
    /// is none) and no poll back-off is pending.
    pub fn needs_poll(&self, interval: i64, now: i64) -> bool {
        if self.poll_not_before.is_some_and(|t| t > now) {
            return false;
        }
        self.last_update
            .is_none_or(|last| now.saturating_sub(last) > interval)
    }

    /// A usage poll failed. `retry_after`: the poll got a 429 with this `retry-after`
    /// (pass [`DEFAULT_POLL_RETRY_AFTER`] when it had none); the next poll waits that long,
    /// 1 s to an hour.
    /// `None`: any other failure; the next poll waits 60 s × 2^(n−1), at most 300 s, for
    /// the n-th consecutive failure. Never makes the account unavailable.
    pub fn on_poll_failed(&mut self, retry_after: Option<i64>, now: i64) {
        let wait = match retry_after {
            Some(secs) => secs.clamp(1, MAX_POLL_RETRY_AFTER_SECS),
            None => {
                self.poll_failures = self.poll_failures.saturating_add(1);
                let doublings = (self.poll_failures - 1).min(16);
                (POLL_BACKOFF_SECS << doublings).min(POLL_BACKOFF_MAX_SECS)
            }
        };
        self.poll_not_before = Some(now.saturating_add(wait));
    }

    /// The 5-hour window at `now` (0 % once its reset has passed).
    pub fn five_hour(&self, now: i64) -> Window {
        self.five_hour.at(now)
    }

    /// The weekly window at `now` (0 % once its reset has passed).
    pub fn weekly(&self, now: i64) -> Window {
        self.weekly.at(now)
    }

    /// When headers or a poll last told us about the windows (Unix seconds).
    pub fn last_update(&self) -> Option<i64> {
        self.last_update
    }
}

/// Plan weight for least_used (protocol.md §5.5): `max` with a `max_20x` tier → 10,
/// other `max` → 5, `team` with a `max_5x` tier → 5, everything else (pro, team,
/// unknown, API keys) → 1.
pub fn plan_weight(subscription_type: Option<&str>, rate_limit_tier: Option<&str>) -> u32 {
    let subscription = subscription_type.unwrap_or("").to_ascii_lowercase();
    let tier = rate_limit_tier.unwrap_or("").to_ascii_lowercase();
    match subscription.as_str() {
        "max" if tier.contains("max_20x") => 10,
        "max" => 5,
        "team" if tier.contains("max_5x") => 5,
        _ => 1,
    }
}

/// least_used score, higher is better (protocol.md §5.5): the weekly headroom
/// (cap − percent, unknown percent = 0) × plan weight, × 168 h ÷ max(1 h, time to the
/// weekly reset) when that reset is known and in the future, so quota that is about to
/// reset anyway is used first. The 5h window only gates (availability).
pub fn least_used_score(state: &LimitState, reserves: Reserves, weight: u32, now: i64) -> f64 {
    let weekly = state.weekly(now);
    let headroom = reserves
        .weekly_cap()
        .saturating_sub(weekly.percent.unwrap_or(0));
    let score = f64::from(headroom) * f64::from(weight);
    match weekly.resets_at {
        Some(reset) if reset > now => {
            let seconds_left = reset.saturating_sub(now).max(3600) as f64;
            score * (168.0 * 3600.0) / seconds_left
        }
        _ => score,
    }
}

/// Applies one window's header values with sing-box's guard: resets only move forward,
/// and the percent only goes down when the window is new.
fn update_window(window: &mut Window, percent: Option<u32>, reset: Option<i64>, now: i64) {
    // The stored reset has passed: the window reset, and whatever comes now belongs to
    // the new one.
    let mut new_window = window.resets_at.is_some_and(|old| old <= now);
    *window = window.at(now);
    if let Some(reset) = reset {
        match window.resets_at {
            None => window.resets_at = Some(reset),
            Some(old) if reset > old => {
                new_window = true;
                window.resets_at = Some(reset);
            }
            Some(_) => {}
        }
    }
    if let Some(percent) = percent {
        if new_window || window.percent.is_none_or(|old| percent >= old) {
            window.percent = Some(percent);
        }
    }
}

/// A window from the usage endpoint without a reset time too far ahead to be true.
fn trusted(window: Window, now: i64) -> Window {
    Window {
        resets_at: window
            .resets_at
            .filter(|&t| t <= now.saturating_add(MAX_RESET_AHEAD_SECS)),
        ..window
    }
}

/// A reset header, ignored when it is more than [`MAX_RESET_AHEAD_SECS`] ahead.
fn header_reset(headers: &HeaderMap, name: &str, now: i64) -> Option<i64> {
    header_seconds(headers, name).filter(|&t| t <= now.saturating_add(MAX_RESET_AHEAD_SECS))
}

/// When a quota hit ends; see [`LimitState::classify_429`].
fn quota_reset(headers: &HeaderMap, now: i64) -> i64 {
    let future = |name: &str| header_reset(headers, name, now).filter(|&t| t > now);
    let claimed =
        header_str(headers, CLAIM).and_then(|claim| match claim.to_ascii_lowercase().as_str() {
            "5h" | "five_hour" => future(RESET_5H),
            "7d" | "seven_day" => future(RESET_7D),
            "7d_oi" | "seven_day_oi" | "seven_day_opus" => future(RESET_7D_OI).or(future(RESET_7D)),
            _ => None,
        });
    let rejected_windows = [(STATUS_5H, RESET_5H), (STATUS_7D, RESET_7D)]
        .into_iter()
        .filter(|(status, _)| is_rejected(headers, status))
        .filter_map(|(_, reset)| future(reset))
        .max();
    claimed
        .or(rejected_windows)
        .or_else(|| future(RESET))
        .or_else(|| {
            retry_after(headers)
                .map(|secs| now.saturating_add(secs.clamp(1, MAX_UNBACKED_PAUSE_SECS)))
        })
        .unwrap_or(now.saturating_add(DEFAULT_QUOTA_PAUSE_SECS))
}

/// One window of the usage JSON: `{<percent_field>: number|null, resets_at: …}` or null.
fn usage_window(value: Option<&Value>, what: &str, percent_field: &str) -> Result<Window, String> {
    let object = match value {
        None | Some(Value::Null) => return Ok(Window::default()),
        Some(Value::Object(object)) => object,
        Some(other) => return Err(format!("usage `{what}` is not an object: {other}")),
    };
    let percent = match object.get(percent_field) {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => number.as_f64().map(percent_from_percent),
        Some(other) => {
            return Err(format!(
                "usage `{what}.{percent_field}` is not a number: {other}"
            ));
        }
    };
    let resets_at = match object.get("resets_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            text.parse::<jiff::Timestamp>()
                .map_err(|err| format!("usage `{what}.resets_at` {text:?}: {err}"))?
                .as_second(),
        ),
        Some(Value::Number(number)) => number.as_f64().map(|secs| secs as i64),
        Some(other) => return Err(format!("usage `{what}.resets_at` is not a time: {other}")),
    };
    Ok(Window { percent, resets_at })
}

/// The newer `limits` array: `session` is the 5h window, `weekly_all` the weekly one.
fn usage_limits(limits: &Value) -> Result<(Window, Window), String> {
    let Some(limits) = limits.as_array() else {
        return Err("usage `limits` is not an array".to_owned());
    };
    let mut five_hour = None;
    let mut weekly = None;
    for limit in limits {
        match limit.get("kind").and_then(Value::as_str) {
            Some("session") if five_hour.is_none() => {
                five_hour = Some(usage_window(Some(limit), "limits[session]", "percent")?);
            }
            Some("weekly_all") if weekly.is_none() => {
                weekly = Some(usage_window(Some(limit), "limits[weekly_all]", "percent")?);
            }
            _ => {}
        }
    }
    if five_hour.is_none() && weekly.is_none() {
        return Err("usage `limits` has no `session` or `weekly_all` entry".to_owned());
    }
    Ok((five_hour.unwrap_or_default(), weekly.unwrap_or_default()))
}

/// A percent (maybe fractional) as a whole percent, rounded up, 0..=100. The small
/// tolerance keeps float noise (`0.07 × 100 = 7.000000000000001`) from adding a percent.
fn percent_from_percent(percent: f64) -> u32 {
    if percent.is_nan() {
        return 0;
    }
    (percent - 1e-9).ceil().clamp(0.0, 100.0) as u32
}

/// A header's value, trimmed, if it is present and visible ASCII.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn is_rejected(headers: &HeaderMap, name: &str) -> bool {
    header_str(headers, name).is_some_and(|value| value.eq_ignore_ascii_case("rejected"))
}

/// A utilization header (a fraction 0..1) as a whole percent.
fn header_fraction(headers: &HeaderMap, name: &str) -> Option<u32> {
    let fraction: f64 = header_str(headers, name)?.parse().ok()?;
    fraction
        .is_finite()
        .then(|| percent_from_percent(fraction * 100.0))
}

/// A Unix-seconds header (integer, or decimal rounded down).
fn header_seconds(headers: &HeaderMap, name: &str) -> Option<i64> {
    let text = header_str(headers, name)?;
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let secs: f64 = text.parse().ok()?;
    secs.is_finite().then_some(secs.floor() as i64)
}

/// `retry-after` in whole seconds (rounded up), if it is a non-negative number.
fn retry_after(headers: &HeaderMap) -> Option<i64> {
    let secs: f64 = header_str(headers, "retry-after")?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs.ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: i64 = 1_800_000_000;
    const HOUR: i64 = 3600;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        map
    }

    fn state_from(pairs: &[(&str, &str)]) -> LimitState {
        let mut state = LimitState::default();
        state.observe_headers(&headers(pairs), NOW);
        state
    }

    fn reserve(percent: u32) -> Reserves {
        Reserves {
            five_hour: Some(percent),
            weekly: Some(percent),
        }
    }

    fn iso(unix: i64) -> String {
        jiff::Timestamp::from_second(unix).unwrap().to_string()
    }

    #[test]
    fn headers_give_percent_rounded_up_and_resets() {
        let reset_5h = (NOW + 2 * HOUR).to_string();
        let reset_7d = (NOW + 50 * HOUR).to_string();
        let state = state_from(&[
            (UTILIZATION_5H, "0.291"),
            (UTILIZATION_7D, "0.07"),
            (RESET_5H, &reset_5h),
            (RESET_7D, &reset_7d),
        ]);
        assert_eq!(
            state.five_hour(NOW),
            Window {
                percent: Some(30),
                resets_at: Some(NOW + 2 * HOUR)
            }
        );
        assert_eq!(
            state.weekly(NOW),
            Window {
                percent: Some(7),
                resets_at: Some(NOW + 50 * HOUR)
            }
        );
        assert_eq!(state.last_update(), Some(NOW));

        let clamped = state_from(&[(UTILIZATION_5H, "1.5"), (UTILIZATION_7D, "-0.2")]);
        assert_eq!(clamped.five_hour(NOW).percent, Some(100));
        assert_eq!(clamped.weekly(NOW).percent, Some(0));
        let tiny = state_from(&[(UTILIZATION_5H, "0.0001"), (UTILIZATION_7D, "0")]);
        assert_eq!(tiny.five_hour(NOW).percent, Some(1));
        assert_eq!(tiny.weekly(NOW).percent, Some(0));
    }

    #[test]
    fn garbage_headers_are_ignored_but_count_as_fresh() {
        let state = state_from(&[
            (UTILIZATION_5H, "lots"),
            (UTILIZATION_7D, "NaN"),
            (RESET_5H, "tomorrow"),
            (RESET_7D, ""),
        ]);
        assert_eq!(state.five_hour(NOW), Window::default());
        assert_eq!(state.weekly(NOW), Window::default());
        assert_eq!(state.last_update(), Some(NOW));
        assert!(state.availability(Reserves::default(), NOW).is_ready());

        let mut map = HeaderMap::new();
        map.insert(UTILIZATION_5H, HeaderValue::from_bytes(b"0.\xff5").unwrap());
        let mut state = LimitState::default();
        state.observe_headers(&map, NOW);
        assert_eq!(state.five_hour(NOW).percent, None);

        let mut untouched = LimitState::default();
        untouched.observe_headers(&headers(&[("content-type", "text/plain")]), NOW);
        assert_eq!(untouched.last_update(), None);
    }

    #[test]
    fn a_lower_percent_needs_a_later_reset() {
        let reset = (NOW + HOUR).to_string();
        let mut state = state_from(&[(UTILIZATION_5H, "0.40"), (RESET_5H, &reset)]);

        // Same window, lower value: a stale or out-of-order response; ignored.
        state.observe_headers(
            &headers(&[(UTILIZATION_5H, "0.10"), (RESET_5H, &reset)]),
            NOW + 10,
        );
        assert_eq!(state.five_hour(NOW + 10).percent, Some(40));
        assert_eq!(state.last_update(), Some(NOW + 10));

        // Same window, higher value: taken.
        state.observe_headers(&headers(&[(UTILIZATION_5H, "0.45")]), NOW + 20);
        assert_eq!(state.five_hour(NOW + 20).percent, Some(45));

        // An earlier reset never moves the reset back.
        let earlier = (NOW + HOUR - 100).to_string();
        state.observe_headers(
            &headers(&[(UTILIZATION_5H, "0.05"), (RESET_5H, &earlier)]),
            NOW + 30,
        );
        assert_eq!(
            state.five_hour(NOW + 30),
            Window {
                percent: Some(45),
                resets_at: Some(NOW + HOUR)
            }
        );

        // The reset moved later: a new window, the lower value is the truth.
        let later = (NOW + 6 * HOUR).to_string();
        state.observe_headers(
            &headers(&[(UTILIZATION_5H, "0.02"), (RESET_5H, &later)]),
            NOW + 40,
        );
        assert_eq!(
            state.five_hour(NOW + 40),
            Window {
                percent: Some(2),
                resets_at: Some(NOW + 6 * HOUR)
            }
        );
    }

    #[test]
    fn a_lower_percent_is_taken_once_the_stored_reset_passed() {
        let reset = (NOW + HOUR).to_string();
        let mut state = state_from(&[(UTILIZATION_7D, "0.90"), (RESET_7D, &reset)]);
        state.observe_headers(&headers(&[(UTILIZATION_7D, "0.01")]), NOW + 2 * HOUR);
        assert_eq!(state.weekly(NOW + 2 * HOUR).percent, Some(1));
    }

    #[test]
    fn pauses_exactly_at_the_reserve_from_headers() {
        let reset = (NOW + 3 * HOUR).to_string();
        let at_79 = state_from(&[(UTILIZATION_5H, "0.79"), (RESET_5H, &reset)]);
        assert_eq!(at_79.availability(reserve(20), NOW), Availability::Ready);

        let at_80 = state_from(&[(UTILIZATION_5H, "0.80"), (RESET_5H, &reset)]);
        let paused = at_80.availability(reserve(20), NOW);
        assert_eq!(
            paused,
            Availability::PausedByReserve {
                window: WindowName::FiveHour,
                percent: 80,
                cap: 80,
                until: Some(NOW + 3 * HOUR)
            }
        );
        assert!(!paused.is_ready());
        assert_eq!(paused.until(), Some(NOW + 3 * HOUR));

        // No reserve: cap 100, and a full window is used up, not paused by a reserve.
        assert!(at_80.availability(Reserves::default(), NOW).is_ready());
        let full = state_from(&[(UTILIZATION_7D, "1.0")]);
        let exhausted = Availability::QuotaExhausted {
            window: WindowName::Weekly,
            until: None,
        };
        assert_eq!(full.availability(Reserves::default(), NOW), exhausted);
        // With a reserve too: the window being used up is what matters.
        assert_eq!(full.availability(reserve(20), NOW), exhausted);
        assert!(!exhausted.is_ready());
    }

    #[test]
    fn the_5h_window_is_reported_before_the_weekly_one() {
        let state = state_from(&[(UTILIZATION_5H, "0.95"), (UTILIZATION_7D, "0.95")]);
        let reserves = Reserves {
            five_hour: Some(10),
            weekly: Some(30),
        };
        assert!(matches!(
            state.availability(reserves, NOW),
            Availability::PausedByReserve {
                window: WindowName::FiveHour,
                cap: 90,
                ..
            }
        ));
        let weekly_only = Reserves {
            five_hour: None,
            weekly: Some(30),
        };
        assert!(matches!(
            state.availability(weekly_only, NOW),
            Availability::PausedByReserve {
                window: WindowName::Weekly,
                percent: 95,
                cap: 70,
                ..
            }
        ));
    }

    #[test]
    fn pauses_exactly_at_the_reserve_from_the_usage_json() {
        let resets = iso(NOW + 3 * HOUR);
        let old_shape = |five_hour: f64| {
            format!(
                r#"{{"five_hour":{{"utilization":{five_hour},"resets_at":"{resets}"}},
                    "seven_day":{{"utilization":12.5,"resets_at":null}},
                    "seven_day_opus":null,"extra_usage":{{"is_enabled":false}}}}"#
            )
        };
        let mut state = LimitState::default();
        state
            .observe_usage(old_shape(79.0).as_bytes(), NOW)
            .unwrap();
        assert_eq!(state.weekly(NOW).percent, Some(13));
        assert_eq!(state.availability(reserve(20), NOW), Availability::Ready);

        // 79.2 % rounds up to 80 %: paused.
        state
            .observe_usage(old_shape(79.2).as_bytes(), NOW)
            .unwrap();
        assert_eq!(
            state.availability(reserve(20), NOW),
            Availability::PausedByReserve {
                window: WindowName::FiveHour,
                percent: 80,
                cap: 80,
                until: Some(NOW + 3 * HOUR)
            }
        );

        let limits_shape = |weekly: f64| {
            format!(
                r#"{{"limits":[
                    {{"kind":"session","group":"all","percent":10,"severity":"ok","resets_at":"{resets}"}},
                    {{"kind":"weekly_scoped","percent":99.0,"resets_at":null}},
                    {{"kind":"weekly_all","percent":{weekly},"resets_at":"2026-11-22T10:00:00.123456+00:00"}}
                ]}}"#
            )
        };
        let weekly_reset = "2026-11-22T10:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second();
        let before = weekly_reset - 24 * HOUR;
        let mut state = LimitState::default();
        state
            .observe_usage(limits_shape(78.01).as_bytes(), before)
            .unwrap();
        assert_eq!(
            state.weekly(before),
            Window {
                percent: Some(79),
                resets_at: Some(weekly_reset)
            }
        );
        assert_eq!(state.five_hour(before).percent, Some(10));
        assert_eq!(state.availability(reserve(20), before), Availability::Ready);
        state
            .observe_usage(limits_shape(79.5).as_bytes(), before)
            .unwrap();
        assert_eq!(
            state.availability(reserve(20), before),
            Availability::PausedByReserve {
                window: WindowName::Weekly,
                percent: 80,
                cap: 80,
                until: Some(weekly_reset)
            }
        );
    }

    #[test]
    fn the_usage_json_overwrites_without_a_guard() {
        let reset = (NOW + HOUR).to_string();
        let mut state = state_from(&[(UTILIZATION_5H, "0.60"), (RESET_5H, &reset)]);
        let body = format!(
            r#"{{"five_hour":{{"utilization":20,"resets_at":"{}"}},"seven_day":null}}"#,
            iso(NOW + HOUR)
        );
        state.observe_usage(body.as_bytes(), NOW + 60).unwrap();
        assert_eq!(state.five_hour(NOW + 60).percent, Some(20));
        assert_eq!(state.weekly(NOW + 60), Window::default());
        assert_eq!(state.last_update(), Some(NOW + 60));
    }

    #[test]
    fn usage_json_it_cannot_read_is_an_error_and_changes_nothing() {
        let reset = (NOW + HOUR).to_string();
        let original = state_from(&[(UTILIZATION_5H, "0.60"), (RESET_5H, &reset)]);
        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"five_hour":"full"}"#,
            br#"{"five_hour":{"utilization":"ten"}}"#,
            br#"{"five_hour":{"utilization":10,"resets_at":"soon"}}"#,
            br#"{"limits":{}}"#,
            br#"{"limits":[{"kind":"weekly_scoped","percent":5}]}"#,
        ] {
            let mut state = original.clone();
            assert!(
                state.observe_usage(body, NOW + 5).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(state.five_hour(NOW + 5), original.five_hour(NOW + 5));
            assert_eq!(state.last_update(), Some(NOW));
        }
    }

    #[test]
    fn a_window_whose_reset_passed_is_ready_again() {
        let reset = (NOW + HOUR).to_string();
        let state = state_from(&[(UTILIZATION_5H, "0.99"), (RESET_5H, &reset)]);
        assert!(!state.availability(reserve(20), NOW + HOUR - 1).is_ready());
        assert_eq!(
            state.five_hour(NOW + HOUR),
            Window {
                percent: Some(0),
                resets_at: None
            }
        );
        assert_eq!(
            state.availability(reserve(20), NOW + HOUR),
            Availability::Ready
        );
    }

    fn classify(pairs: &[(&str, &str)], body: &str) -> Throttle {
        LimitState::classify_429(&headers(pairs), body.as_bytes(), NOW)
    }

    #[test]
    fn quota_429_with_claim_5h() {
        let reset_5h = (NOW + HOUR).to_string();
        let reset_7d = (NOW + 90 * HOUR).to_string();
        let throttle = classify(
            &[
                (STATUS, "rejected"),
                (STATUS_5H, "rejected"),
                (STATUS_7D, "allowed"),
                (CLAIM, "5h"),
                (RESET_5H, &reset_5h),
                (RESET_7D, &reset_7d),
                (RESET, &reset_5h),
            ],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"rate limited"}}"#,
        );
        assert_eq!(throttle, Throttle::Quota { until: NOW + HOUR });
    }

    #[test]
    fn quota_429_with_long_claim_spellings() {
        let reset_5h = (NOW + HOUR).to_string();
        let reset_7d = (NOW + 90 * HOUR).to_string();
        let pairs = |claim: &'static str| {
            vec![
                (STATUS, "rejected"),
                (CLAIM, claim),
                (RESET_5H, reset_5h.as_str()),
                (RESET_7D, reset_7d.as_str()),
            ]
        };
        assert_eq!(
            classify(&pairs("seven_day"), ""),
            Throttle::Quota {
                until: NOW + 90 * HOUR
            }
        );
        assert_eq!(
            classify(&pairs("7d"), ""),
            Throttle::Quota {
                until: NOW + 90 * HOUR
            }
        );
        assert_eq!(
            classify(&pairs("five_hour"), ""),
            Throttle::Quota { until: NOW + HOUR }
        );
        // A claim without status headers is enough.
        assert_eq!(
            classify(&[(CLAIM, "five_hour"), (RESET_5H, reset_5h.as_str())], "{}"),
            Throttle::Quota { until: NOW + HOUR }
        );
    }

    #[test]
    fn quota_429_without_claim_uses_the_rejected_windows() {
        let reset_5h = (NOW + HOUR).to_string();
        let reset_7d = (NOW + 90 * HOUR).to_string();
        assert_eq!(
            classify(
                &[
                    (STATUS_5H, "allowed_warning"),
                    (STATUS_7D, "rejected"),
                    (RESET_5H, &reset_5h),
                    (RESET_7D, &reset_7d),
                ],
                ""
            ),
            Throttle::Quota {
                until: NOW + 90 * HOUR
            }
        );
        // Both rejected: the later reset.
        assert_eq!(
            classify(
                &[
                    (STATUS_5H, "rejected"),
                    (STATUS_7D, "rejected"),
                    (RESET_5H, &reset_5h),
                    (RESET_7D, &reset_7d),
                ],
                ""
            ),
            Throttle::Quota {
                until: NOW + 90 * HOUR
            }
        );
    }

    #[test]
    fn quota_429_with_only_the_unified_reset() {
        let reset = (NOW + 2 * HOUR).to_string();
        assert_eq!(
            classify(&[(RESET, &reset)], ""),
            Throttle::Quota {
                until: NOW + 2 * HOUR
            }
        );
    }

    #[test]
    fn quota_429_reset_fallbacks() {
        // Claimed window's reset missing or past: the unified reset, then retry-after,
        // then a minute.
        let unified = (NOW + 2 * HOUR).to_string();
        let past = (NOW - 10).to_string();
        assert_eq!(
            classify(
                &[
                    (STATUS, "rejected"),
                    (CLAIM, "5h"),
                    (RESET_5H, &past),
                    (RESET, &unified)
                ],
                ""
            ),
            Throttle::Quota {
                until: NOW + 2 * HOUR
            }
        );
        // retry-after, at most a minute (no window's reset behind it).
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "45")], ""),
            Throttle::Quota { until: NOW + 45 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "120")], ""),
            Throttle::Quota { until: NOW + 60 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), (CLAIM, "something_new")], ""),
            Throttle::Quota { until: NOW + 60 }
        );
    }

    #[test]
    fn extra_usage_429_is_not_quota() {
        let reset = (NOW + HOUR).to_string();
        let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Extra usage is required for long context requests."}}"#;
        assert_eq!(
            classify(
                &[(STATUS, "rejected"), (CLAIM, "5h"), (RESET_5H, &reset)],
                body
            ),
            Throttle::NotQuota { retry_after: None }
        );
        assert_eq!(
            classify(&[], "Usage credits are required for fast mode"),
            Throttle::NotQuota { retry_after: None }
        );
    }

    #[test]
    fn plain_429_is_a_cooldown_not_quota() {
        assert_eq!(
            classify(&[("retry-after", "30")], "slow down"),
            Throttle::NotQuota {
                retry_after: Some(30)
            }
        );
        assert_eq!(classify(&[], ""), Throttle::NotQuota { retry_after: None });
        // Unified headers that say every window is allowed: some other limit.
        let reset = (NOW + HOUR).to_string();
        assert_eq!(
            classify(
                &[
                    (STATUS, "allowed"),
                    (STATUS_5H, "allowed"),
                    (CLAIM, "5h"),
                    (RESET_5H, &reset),
                    ("retry-after", "5")
                ],
                ""
            ),
            Throttle::NotQuota {
                retry_after: Some(5)
            }
        );
    }

    #[test]
    fn garbage_429_headers_do_not_panic() {
        let throttle = classify(
            &[
                (STATUS, "¯\\_(ツ)_/¯"),
                (CLAIM, ""),
                (RESET_5H, "-"),
                (RESET_7D, "99999999999999999999999"),
                (RESET, "1e400"),
                ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ],
            "\u{fffd}",
        );
        // The 7d reset saturates far in the future; what matters is no panic.
        assert!(matches!(
            throttle,
            Throttle::NotQuota { .. } | Throttle::Quota { .. }
        ));

        let mut map = HeaderMap::new();
        map.insert(STATUS, HeaderValue::from_bytes(b"rej\xffected").unwrap());
        map.insert(CLAIM, HeaderValue::from_bytes(b"\xfe").unwrap());
        map.insert("retry-after", HeaderValue::from_static("-5"));
        // Unreadable values count as absent: no unified header left, no retry-after.
        assert_eq!(
            LimitState::classify_429(&map, b"\xff\xfe", NOW),
            Throttle::NotQuota { retry_after: None }
        );
        let mut state = LimitState::default();
        state.observe_headers(&map, NOW);
        state.observe_headers(
            &headers(&[(STATUS, "rejected"), (RESET, "99999999999999999999")]),
            i64::MAX,
        );
    }

    fn error_body(kind: &str, message: &str) -> Vec<u8> {
        serde_json::json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn refusals_for_good_are_recognized_in_their_real_shapes() {
        let cases = [
            (
                403,
                "permission_error",
                "This organization has been disabled.",
            ),
            (
                403,
                "permission_error",
                "OAuth authentication is currently not allowed for this organization.",
            ),
            (
                400,
                "invalid_request_error",
                "OAuth authentication is currently not allowed for this organization.",
            ),
            (
                400,
                "invalid_request_error",
                "This organization has been disabled.",
            ),
            (
                403,
                "permission_error",
                "Your account has been suspended. Contact support.",
            ),
            (403, "permission_error", "This ACCOUNT IS DISABLED"),
        ];
        for (status, kind, message) in cases {
            assert_eq!(
                disabled_reason(status, &error_body(kind, message)).as_deref(),
                Some(message),
                "{status} {kind} {message}"
            );
        }
    }

    #[test]
    fn other_refusals_are_not_for_good() {
        let cases = [
            // Ordinary 403s and 400s: about the request, not the account.
            (
                403,
                "permission_error",
                "Your organization does not have access to this model.",
            ),
            (403, "permission_error", "Request not allowed"),
            (
                400,
                "invalid_request_error",
                "This credential is only authorized for use with Claude Code and cannot be used for other API requests.",
            ),
            // The phrase, but the wrong status or error type.
            (
                403,
                "invalid_request_error",
                "This organization has been disabled.",
            ),
            (
                400,
                "permission_error",
                "This organization has been disabled.",
            ),
            (
                401,
                "authentication_error",
                "This organization has been disabled.",
            ),
            (
                429,
                "rate_limit_error",
                "This organization has been disabled.",
            ),
        ];
        for (status, kind, message) in cases {
            assert_eq!(
                disabled_reason(status, &error_body(kind, message)),
                None,
                "{message}"
            );
        }
        // Not Anthropic's error shape, or not whole JSON.
        assert_eq!(
            disabled_reason(403, b"This organization has been disabled."),
            None
        );
        let body = error_body("permission_error", "This organization has been disabled.");
        assert_eq!(disabled_reason(403, &body[..body.len() - 2]), None);
        let not_error = br#"{"type":"message","error":{"type":"permission_error","message":"This organization has been disabled."}}"#;
        assert_eq!(disabled_reason(403, not_error), None);
        // A long message is cut for the status and the log.
        let long = format!("This organization has been disabled. {}", "x".repeat(1000));
        let reason = disabled_reason(403, &error_body("permission_error", &long)).unwrap();
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn a_429_without_window_information_pauses_briefly() {
        // A non-quota 429: its retry-after, clamped to 1..=60 s; 30 s without one.
        for (retry_after, pause) in [
            (Some(86_400), 60),
            (Some(i64::MAX), 60),
            (Some(5), 5),
            (Some(0), 1),
            (Some(-3), 1),
            (None, 30),
        ] {
            let mut state = LimitState::default();
            assert_eq!(state.on_rate_limit(retry_after, NOW), NOW + pause);
            assert_eq!(
                state.availability(Reserves::default(), NOW),
                Availability::CoolingDown { until: NOW + pause }
            );
        }
        // Even at the end of time.
        assert_eq!(
            LimitState::default().on_rate_limit(Some(30), i64::MAX),
            i64::MAX
        );
        // A quota 429 without a reset time: retry-after clamped the same way.
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "86400")], ""),
            Throttle::Quota { until: NOW + 60 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "1e300")], ""),
            Throttle::Quota { until: NOW + 60 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "0")], ""),
            Throttle::Quota { until: NOW + 1 }
        );
    }

    #[test]
    fn resets_too_far_ahead_are_not_trusted() {
        let far = (NOW + MAX_RESET_AHEAD_SECS + 1).to_string();
        let huge = "99999999999999999999";
        let week = (NOW + 7 * 86_400).to_string();
        // A quota 429 falls back to the next source, then to a minute.
        for reset in [far.as_str(), huge] {
            assert_eq!(
                classify(
                    &[
                        (STATUS, "rejected"),
                        (STATUS_7D, "rejected"),
                        (CLAIM, "7d"),
                        (RESET_7D, reset)
                    ],
                    ""
                ),
                Throttle::Quota { until: NOW + 60 },
                "{reset}"
            );
            let state = state_from(&[(UTILIZATION_7D, "0.5"), (RESET_7D, reset)]);
            assert_eq!(state.weekly(NOW).resets_at, None);
            assert_eq!(state.weekly(NOW).percent, Some(50));
        }
        // A real week is fine.
        assert_eq!(
            classify(
                &[(STATUS, "rejected"), (CLAIM, "7d"), (RESET_7D, &week)],
                ""
            ),
            Throttle::Quota {
                until: NOW + 7 * 86_400
            }
        );
        // The usage endpoint's resets too.
        let mut state = LimitState::default();
        let body = serde_json::json!({
            "five_hour": {"utilization": 10.0, "resets_at": iso(NOW + HOUR)},
            "seven_day": {"utilization": 20.0, "resets_at": iso(NOW + 30 * 86_400)},
        });
        state
            .observe_usage(body.to_string().as_bytes(), NOW)
            .unwrap();
        assert_eq!(state.five_hour(NOW).resets_at, Some(NOW + HOUR));
        assert_eq!(state.weekly(NOW).resets_at, None);
        assert_eq!(state.weekly(NOW).percent, Some(20));
    }

    #[test]
    fn a_usage_poll_retry_after_is_honoured_for_an_hour_at_most() {
        let mut state = LimitState::default();
        state.on_poll_failed(Some(i64::MAX), NOW);
        assert!(!state.needs_poll(0, NOW + 3599));
        assert!(state.needs_poll(0, NOW + 3600));
        state.on_poll_failed(Some(-10), NOW);
        assert!(state.needs_poll(0, NOW + 1));
    }

    #[test]
    fn a_rejected_status_in_headers_rate_limits_the_account() {
        let reset = (NOW + HOUR).to_string();
        let state = state_from(&[
            (STATUS, "rejected"),
            (STATUS_5H, "rejected"),
            (CLAIM, "5h"),
            (UTILIZATION_5H, "1.0"),
            (RESET_5H, &reset),
        ]);
        assert_eq!(
            state.availability(Reserves::default(), NOW),
            Availability::RateLimited { until: NOW + HOUR }
        );
    }

    #[test]
    fn rate_limits_and_cooldowns_only_grow_and_end() {
        let mut state = LimitState::default();
        state.on_quota_429(NOW + 100);
        state.on_quota_429(NOW + 50);
        assert_eq!(
            state.availability(Reserves::default(), NOW),
            Availability::RateLimited { until: NOW + 100 }
        );
        assert!(
            state
                .availability(Reserves::default(), NOW + 100)
                .is_ready()
        );

        state.on_cooldown(NOW + 30);
        state.on_cooldown(NOW + 10);
        assert_eq!(
            state.availability(Reserves::default(), NOW),
            Availability::RateLimited { until: NOW + 100 }
        );
        let mut cooling = LimitState::default();
        cooling.on_cooldown(NOW + 30);
        cooling.on_cooldown(NOW + 10);
        assert_eq!(
            cooling.availability(Reserves::default(), NOW),
            Availability::CoolingDown { until: NOW + 30 }
        );
        assert!(
            cooling
                .availability(Reserves::default(), NOW + 30)
                .is_ready()
        );
    }

    #[test]
    fn availability_precedence() {
        let none = Reserves::default();
        let reset = (NOW + 5 * HOUR).to_string();
        let mut state = state_from(&[(UTILIZATION_5H, "1.0"), (RESET_5H, &reset)]);
        state.on_cooldown(NOW + 300);
        for _ in 0..3 {
            state.on_failure(NOW);
        }
        state.on_quota_429(NOW + 100);

        assert_eq!(
            state.availability(none, NOW),
            Availability::RateLimited { until: NOW + 100 }
        );
        assert_eq!(
            state.availability(none, NOW + 10),
            Availability::RateLimited { until: NOW + 100 }
        );
        let mut open = state.clone();
        open.rate_limited_until = None;
        assert_eq!(
            open.availability(none, NOW + 10),
            Availability::CircuitOpen {
                until: NOW + 30,
                failures: 3
            }
        );
        // The circuit's open time passed: the cool-down shows, then the full window, and
        // only then the probe.
        assert_eq!(
            open.availability(none, NOW + 200),
            Availability::CoolingDown { until: NOW + 300 }
        );
        assert_eq!(
            open.availability(none, NOW + 300),
            Availability::QuotaExhausted {
                window: WindowName::FiveHour,
                until: Some(NOW + 5 * HOUR)
            }
        );
        assert_eq!(
            open.availability(none, NOW + 5 * HOUR),
            Availability::CircuitOpen {
                until: NOW + 30,
                failures: 3
            }
        );
        open.on_success();
        assert_eq!(open.availability(none, NOW + 5 * HOUR), Availability::Ready);
    }

    #[test]
    fn circuit_breaker_opens_probes_once_and_doubles() {
        let none = Reserves::default();
        let mut state = LimitState::default();
        state.on_failure(NOW);
        state.on_failure(NOW);
        assert!(state.availability(none, NOW).is_ready());
        assert!(
            !state.try_probe(NOW),
            "no probe while the circuit is closed"
        );

        state.on_failure(NOW);
        assert_eq!(
            state.availability(none, NOW + 29),
            Availability::CircuitOpen {
                until: NOW + 30,
                failures: 3
            }
        );
        assert!(
            !state.try_probe(NOW + 29),
            "no probe before the open time passed"
        );
        // A request that was in flight fails: counted, not extended.
        state.on_failure(NOW + 5);
        assert_eq!(state.availability(none, NOW + 29).until(), Some(NOW + 30));

        // Open time passed: waiting for a probe; exactly one may go.
        let waiting = state.availability(none, NOW + 30);
        assert!(!waiting.is_ready());
        assert_eq!(waiting.until(), Some(NOW + 30));
        assert!(state.try_probe(NOW + 30));
        assert!(!state.try_probe(NOW + 30));
        assert!(!state.try_probe(NOW + 31));

        // The probe fails: open for 60 s.
        state.on_failure(NOW + 31);
        assert_eq!(
            state.availability(none, NOW + 31),
            Availability::CircuitOpen {
                until: NOW + 91,
                failures: 5
            }
        );
        assert!(state.try_probe(NOW + 91));
        state.on_success();
        assert_eq!(state.availability(none, NOW + 91), Availability::Ready);
        assert!(!state.try_probe(NOW + 91));

        // Closed again: it takes three failures, and 30 s, from scratch.
        state.on_failure(NOW + 100);
        state.on_failure(NOW + 100);
        assert!(state.availability(none, NOW + 100).is_ready());
        state.on_failure(NOW + 100);
        assert_eq!(state.availability(none, NOW + 100).until(), Some(NOW + 130));
    }

    #[test]
    fn circuit_open_time_is_capped_at_five_minutes() {
        let mut state = LimitState::default();
        for _ in 0..3 {
            state.on_failure(NOW);
        }
        let mut now = NOW;
        let mut open_for = Vec::new();
        for _ in 0..6 {
            let until = state
                .availability(Reserves::default(), now)
                .until()
                .unwrap();
            open_for.push(until - now);
            now = until;
            assert!(state.try_probe(now));
            state.on_failure(now);
        }
        assert_eq!(open_for, [30, 60, 120, 240, 300, 300]);
    }

    #[test]
    fn a_probe_that_never_reports_frees_the_slot_eventually() {
        let mut state = LimitState::default();
        for _ in 0..3 {
            state.on_failure(NOW);
        }
        assert!(state.try_probe(NOW + 30));
        assert!(!state.try_probe(NOW + 30 + PROBE_LEASE_SECS - 1));
        assert!(state.try_probe(NOW + 30 + PROBE_LEASE_SECS));
    }

    #[test]
    fn poll_when_stale_and_back_off_when_it_fails() {
        let mut state = LimitState::default();
        assert!(state.needs_poll(3600, NOW), "never polled");
        state.observe_headers(&headers(&[(UTILIZATION_5H, "0.1")]), NOW);
        assert!(!state.needs_poll(3600, NOW + 3600));
        assert!(state.needs_poll(3600, NOW + 3601));

        // 429 from the usage endpoint: retry-after honoured, not counted as a failure.
        let t = NOW + 4000;
        state.on_poll_failed(Some(90), t);
        assert!(!state.needs_poll(3600, t + 89));
        assert!(state.needs_poll(3600, t + 90));
        assert!(state.availability(Reserves::default(), t).is_ready());

        // Other failures: 60, 120, 240, 300, 300.
        let mut now = t + 90;
        let mut waits = Vec::new();
        for _ in 0..5 {
            state.on_poll_failed(None, now);
            let mut wait = 1;
            while !state.needs_poll(3600, now + wait) {
                wait += 1;
            }
            waits.push(wait);
            now += wait;
        }
        assert_eq!(waits, [60, 120, 240, 300, 300]);
        assert!(state.availability(Reserves::default(), now).is_ready());

        // A successful poll clears the back-off: the next failure waits 60 s again.
        state.on_poll_failed(None, now);
        state
            .observe_usage(br#"{"five_hour":null,"seven_day":null}"#, now)
            .unwrap();
        assert!(!state.needs_poll(3600, now + 1));
        assert!(state.needs_poll(0, now + 1), "no back-off pending");
        state.on_poll_failed(None, now + 10);
        assert!(!state.needs_poll(0, now + 69));
        assert!(state.needs_poll(0, now + 70));
    }

    #[test]
    fn plan_weights() {
        assert_eq!(plan_weight(Some("max"), Some("default_claude_max_20x")), 10);
        assert_eq!(plan_weight(Some("max"), Some("default_claude_max_5x")), 5);
        assert_eq!(plan_weight(Some("max"), None), 5);
        assert_eq!(plan_weight(Some("team"), Some("default_claude_max_5x")), 5);
        assert_eq!(plan_weight(Some("team"), Some("default_claude_team")), 1);
        assert_eq!(plan_weight(Some("pro"), Some("default_claude_max_20x")), 1);
        assert_eq!(plan_weight(Some("pro"), None), 1);
        assert_eq!(plan_weight(None, None), 1);
    }

    fn weekly_state(percent: &str, reset_in: Option<i64>) -> LimitState {
        let reset = reset_in.map(|secs| (NOW + secs).to_string());
        let mut pairs = vec![(UTILIZATION_7D, percent)];
        if let Some(reset) = &reset {
            pairs.push((RESET_7D, reset.as_str()));
        }
        state_from(&pairs)
    }

    #[test]
    fn least_used_prefers_headroom_times_weight() {
        let none = Reserves::default();
        let max20 = weekly_state("0.50", None);
        let pro = weekly_state("0.10", None);
        let max_score =
            least_used_score(&max20, none, plan_weight(Some("max"), Some("max_20x")), NOW);
        let pro_score = least_used_score(&pro, none, plan_weight(Some("pro"), None), NOW);
        assert_eq!(max_score, 500.0);
        assert_eq!(pro_score, 90.0);
        assert!(max_score > pro_score);

        // The reserve shrinks the headroom; a window over its cap scores 0.
        assert_eq!(least_used_score(&pro, reserve(20), 1, NOW), 70.0);
        assert_eq!(least_used_score(&max20, reserve(60), 10, NOW), 0.0);
        // Unknown utilization counts as 0 %.
        assert_eq!(
            least_used_score(&LimitState::default(), none, 1, NOW),
            100.0
        );
    }

    #[test]
    fn least_used_prefers_the_sooner_weekly_reset() {
        let none = Reserves::default();
        let soon = weekly_state("0.40", Some(24 * HOUR));
        let later = weekly_state("0.40", Some(96 * HOUR));
        let soon_score = least_used_score(&soon, none, 1, NOW);
        let later_score = least_used_score(&later, none, 1, NOW);
        assert_eq!(soon_score, 60.0 * 7.0);
        assert_eq!(later_score, 60.0 * 1.75);
        assert!(soon_score > later_score);

        // At most ×168 (one hour left, or less).
        let imminent = weekly_state("0.40", Some(60));
        assert_eq!(least_used_score(&imminent, none, 1, NOW), 60.0 * 168.0);
        // A passed reset: the window reset, full headroom, no time factor.
        assert_eq!(least_used_score(&soon, none, 1, NOW + 24 * HOUR), 100.0);
    }
}
