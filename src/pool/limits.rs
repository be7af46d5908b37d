//! One account's rate-limit state: what the upstream told us about its quota windows, the
//! owner's reserves, quota 429s, cool-downs, a circuit breaker for failing upstreams and
//! the back-off of the usage poll. Pure logic: no I/O, no clock (every function that
//! needs the time takes `now`, Unix seconds), so the scheduler owns the locking and the
//! tests own the time (docs/protocol.md §5.1–§5.5).
//!
//! **Units.** A subscription has two windows, 5 hours and 7 days ("weekly"). Each is
//! kept as a whole percent `0..=100`, rounded up, and the Unix second it resets at.
//! What an answer's headers say arrives as [`LimitSignals`], read by the client's protocol
//! (`crate::protocol`; Anthropic's headers give a fraction, `0.291` → 30 %); the OAuth
//! usage endpoint gives a percent (`29.1` → 30 %). Headers never lower a window's percent
//! unless its reset moved later (a new window) or the stored reset has passed; reset times
//! only move forward. A poll overwrites both windows. A window whose reset time has passed
//! reads as 0 %.
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
//! **Refusals for good.** An answer saying the provider disabled the account or its
//! organization (the protocol recognizes it) takes the account out of the pool until its
//! login changes ([`super::account`]); that is not rate-limit state.
//!
//! **Usage poll.** [`LimitState::needs_poll`] says when the usage endpoint should be asked
//! (no fresh headers for `interval`); a failed poll only delays the next one and never
//! makes the account unavailable (sing-box does; docs/protocol.md §9.6).

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

/// What one upstream answer said about the account's windows, whatever the protocol
/// spelled it as; see [`LimitState::observe`]. A `None` is something the answer did not
/// say (or said unreadably).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSignals {
    pub five_hour: Window,
    pub weekly: Window,
    /// The answer says the quota is used up (a `rejected` status), until then.
    pub quota_until: Option<i64>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
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
    /// What an upstream answer said about the account's windows (read by the client's
    /// protocol: [`crate::protocol::Protocol::limit_signals`]). A lower percent is
    /// accepted only if that window's reset moved later or the stored one has passed;
    /// resets only move forward, and one more than [`MAX_RESET_AHEAD_SECS`] ahead is
    /// ignored. Any signal counts as fresh information. `quota_until` is a quota hit, as
    /// [`Self::on_quota_429`].
    pub fn observe(&mut self, signals: &LimitSignals, now: i64) {
        self.last_update = Some(now);
        let LimitSignals {
            five_hour,
            weekly,
            quota_until,
        } = *signals;
        let five_hour = trusted(five_hour, now);
        let weekly = trusted(weekly, now);
        update_window(
            &mut self.five_hour,
            five_hour.percent,
            five_hour.resets_at,
            now,
        );
        update_window(&mut self.weekly, weekly.percent, weekly.resets_at, now);
        if let Some(until) = quota_until {
            self.on_quota_429(until);
        }
    }

    /// Reads the OAuth usage endpoint's JSON (docs/protocol.md §5.2): `five_hour` and
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
            } else if let Some(rate_limit) = object.get("rate_limit") {
                codex_usage(rate_limit, now)?
            } else {
                return Err(
                    "usage response has neither `five_hour`/`seven_day`, `limits` nor `rate_limit`"
                        .to_owned(),
                );
            };
        self.five_hour = trusted(five_hour, now);
        self.weekly = trusted(weekly, now);
        self.last_update = Some(now);
        self.poll_not_before = None;
        self.poll_failures = 0;
        Ok(())
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

/// Plan weight for least_used (docs/protocol.md §5.5): `max` with a `max_20x` tier → 10,
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

/// least_used score, higher is better (docs/protocol.md §5.5): the weekly headroom
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
    if let Some(percent) = percent
        && (new_window || window.percent.is_none_or(|old| percent >= old))
    {
        window.percent = Some(percent);
    }
}

/// A window without a reset time too far ahead to be true.
fn trusted(window: Window, now: i64) -> Window {
    Window {
        resets_at: window
            .resets_at
            .filter(|&t| t <= now.saturating_add(MAX_RESET_AHEAD_SECS)),
        ..window
    }
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

/// Codex's usage answer (`GET /backend-api/wham/usage`, docs/protocol.md §7.6):
/// `rate_limit.primary_window` and `secondary_window`, each `{used_percent, reset_at,
/// limit_window_seconds, reset_after_seconds}`. Which is the 5-hour window is told by
/// `limit_window_seconds` (12 hours or less), as for the `x-codex-*` headers; without it,
/// primary is the 5-hour one.
fn codex_usage(rate_limit: &Value, now: i64) -> Result<(Window, Window), String> {
    let Some(rate_limit) = rate_limit.as_object() else {
        return Err("usage `rate_limit` is not an object".to_owned());
    };
    let (mut five_hour, mut weekly) = (Window::default(), Window::default());
    for (field, primary) in [("primary_window", true), ("secondary_window", false)] {
        let window = match rate_limit.get(field) {
            None | Some(Value::Null) => continue,
            Some(Value::Object(w)) => w,
            Some(other) => {
                return Err(format!(
                    "usage `rate_limit.{field}` is not an object: {other}"
                ));
            }
        };
        let number = |name: &str| {
            window
                .get(name)
                .and_then(Value::as_f64)
                .filter(|n| n.is_finite())
        };
        let resets_at = number("reset_at").map(|t| t as i64).or_else(|| {
            number("reset_after_seconds").map(|s| now.saturating_add(s.max(0.0) as i64))
        });
        let parsed = Window {
            percent: number("used_percent").map(percent_from_percent),
            resets_at,
        };
        let is_five_hour = match number("limit_window_seconds") {
            Some(seconds) if seconds > 0.0 => seconds <= 12.0 * 3600.0,
            _ => primary,
        };
        if is_five_hour {
            five_hour = parsed;
        } else {
            weekly = parsed;
        }
    }
    Ok((five_hour, weekly))
}

/// A percent (maybe fractional) as a whole percent, rounded up, 0..=100. The small
/// tolerance keeps float noise (`0.07 × 100 = 7.000000000000001`) from adding a percent.
pub fn percent_from_percent(percent: f64) -> u32 {
    if percent.is_nan() {
        return 0;
    }
    (percent - 1e-9).ceil().clamp(0.0, 100.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codex's `wham/usage`: windows told apart by their length in either order, a
    /// relative reset read against now.
    #[test]
    fn codex_usage_answers_fill_both_windows() {
        let answer = |primary: Value, secondary: Value| {
            serde_json::json!({"plan_type": "pro", "rate_limit": {
                "allowed": true, "limit_reached": false,
                "primary_window": primary, "secondary_window": secondary}})
            .to_string()
        };
        let five = serde_json::json!({"used_percent": 12.5, "reset_at": NOW + HOUR, "limit_window_seconds": 18_000});
        let week = serde_json::json!({"used_percent": 40, "reset_after_seconds": 86_400, "limit_window_seconds": 604_800});
        for body in [answer(five.clone(), week.clone()), answer(week, five)] {
            let mut state = LimitState::default();
            state.observe_usage(body.as_bytes(), NOW).unwrap();
            assert_eq!(state.five_hour(NOW).percent, Some(13), "{body}");
            assert_eq!(state.five_hour(NOW).resets_at, Some(NOW + HOUR));
            assert_eq!(state.weekly(NOW).percent, Some(40));
            assert_eq!(state.weekly(NOW).resets_at, Some(NOW + 86_400));
        }
        let mut state = LimitState::default();
        assert!(state.observe_usage(br#"{"rate_limit": 3}"#, NOW).is_err());
    }

    const NOW: i64 = 1_800_000_000;
    const HOUR: i64 = 3600;

    fn reserve(percent: u32) -> Reserves {
        Reserves {
            five_hour: Some(percent),
            weekly: Some(percent),
        }
    }

    fn window(percent: u32, resets_at: Option<i64>) -> Window {
        Window {
            percent: Some(percent),
            resets_at,
        }
    }

    /// A state told these windows, as by an answer's rate-limit headers.
    fn state_from(five_hour: Window, weekly: Window) -> LimitState {
        let mut state = LimitState::default();
        state.observe(
            &LimitSignals {
                five_hour,
                weekly,
                quota_until: None,
            },
            NOW,
        );
        state
    }

    fn iso(unix: i64) -> String {
        jiff::Timestamp::from_second(unix).unwrap().to_string()
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
        let mut state = state_from(window(60, Some(NOW + HOUR)), Window::default());
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
        let original = state_from(window(60, Some(NOW + HOUR)), Window::default());
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
        let state = state_from(window(99, Some(NOW + HOUR)), Window::default());
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
    }

    #[test]
    fn resets_too_far_ahead_are_not_trusted() {
        // From an answer's headers.
        let state = state_from(
            window(10, Some(NOW + MAX_RESET_AHEAD_SECS + 1)),
            window(50, Some(NOW + MAX_RESET_AHEAD_SECS)),
        );
        assert_eq!(state.five_hour(NOW).resets_at, None);
        assert_eq!(state.five_hour(NOW).percent, Some(10));
        assert_eq!(
            state.weekly(NOW).resets_at,
            Some(NOW + MAX_RESET_AHEAD_SECS)
        );
        // From the usage endpoint.
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
        let mut state = state_from(window(100, Some(NOW + 5 * HOUR)), Window::default());
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
        state.observe(
            &LimitSignals {
                five_hour: window(10, None),
                ..LimitSignals::default()
            },
            NOW,
        );
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

    fn weekly_state(percent: u32, reset_in: Option<i64>) -> LimitState {
        state_from(
            Window::default(),
            window(percent, reset_in.map(|secs| NOW + secs)),
        )
    }

    #[test]
    fn least_used_prefers_headroom_times_weight() {
        let none = Reserves::default();
        let max20 = weekly_state(50, None);
        let pro = weekly_state(10, None);
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
        let soon = weekly_state(40, Some(24 * HOUR));
        let later = weekly_state(40, Some(96 * HOUR));
        let soon_score = least_used_score(&soon, none, 1, NOW);
        let later_score = least_used_score(&later, none, 1, NOW);
        assert_eq!(soon_score, 60.0 * 7.0);
        assert_eq!(later_score, 60.0 * 1.75);
        assert!(soon_score > later_score);

        // At most ×168 (one hour left, or less).
        let imminent = weekly_state(40, Some(60));
        assert_eq!(least_used_score(&imminent, none, 1, NOW), 60.0 * 168.0);
        // A passed reset: the window reset, full headroom, no time factor.
        assert_eq!(least_used_score(&soon, none, 1, NOW + 24 * HOUR), 100.0);
    }
}
