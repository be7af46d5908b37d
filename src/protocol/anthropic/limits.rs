//! What Anthropic's answers say about the account that got them: the unified rate-limit
//! headers every answer carries (docs/protocol.md §5.1), whether a 429 is the account's quota
//! (§5.4), and whether a 400/403 says the provider disabled the account for good (§8.2).
//! Pure functions of headers, body prefixes and `now`; what follows from them (pauses,
//! reserves, the circuit breaker) is [`crate::pool::limits`]'s bookkeeping, and the
//! quarantine [`crate::pool::account`]'s.

use http::HeaderMap;

use crate::pool::limits::{
    LimitSignals, MAX_RESET_AHEAD_SECS, MAX_UNBACKED_PAUSE_SECS, Window, percent_from_percent,
};
use crate::protocol::Refusal;
use crate::protocol::values::{header_seconds, header_str, retry_after};

/// How long a quota 429 pauses the account when the upstream says nothing about when.
const DEFAULT_QUOTA_PAUSE_SECS: i64 = 60;

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

/// Bodies of 429s that are not about the account's quota (docs/protocol.md §5.4), lowercase.
const NOT_QUOTA_BODIES: [&str; 3] = [
    "extra usage is required",
    "usage credits are required",
    "long context",
];

/// Phrases of an error message saying the provider disabled the account or its
/// organization for good (docs/protocol.md §8.2), lowercase; see [`disabled_reason`].
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

/// The unified rate-limit headers of an answer (docs/protocol.md §5.1), if it has any:
/// `-5h-utilization` / `-7d-utilization` (fractions, percent = ceil(fraction × 100)) and
/// `-5h-reset` / `-7d-reset` (Unix seconds). A `rejected` status (`-status`,
/// `-5h-status`, `-7d-status`) is a quota hit, until [`quota_reset`]. Unparsable values
/// are left out; any unified header counts as fresh information.
pub fn limit_signals(headers: &HeaderMap, now: i64) -> Option<LimitSignals> {
    let any_unified = headers
        .keys()
        .any(|name| name.as_str().starts_with(HEADER_PREFIX));
    if !any_unified {
        return None;
    }
    let window = |utilization, reset| Window {
        percent: header_fraction(headers, utilization),
        resets_at: header_seconds(headers, reset),
    };
    let quota = [STATUS, STATUS_5H, STATUS_7D]
        .iter()
        .any(|name| is_rejected(headers, name));
    Some(LimitSignals {
        five_hour: window(UTILIZATION_5H, RESET_5H),
        weekly: window(UTILIZATION_7D, RESET_7D),
        quota_until: quota.then(|| quota_reset(headers, now)),
    })
}

/// `-7d-reset` as the answer states it (an integer), for the usage ledger.
pub fn weekly_reset(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(RESET_7D)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a 429 from the upstream is this account's quota (docs/protocol.md §5.4).
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
pub fn classify_429(headers: &HeaderMap, body: &[u8], now: i64) -> Refusal {
    let retry_after = retry_after(headers);
    let text = String::from_utf8_lossy(body).to_lowercase();
    if NOT_QUOTA_BODIES.iter().any(|needle| text.contains(needle)) {
        return Refusal::RateLimited { retry_after };
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
        Refusal::Quota {
            until: quota_reset(headers, now),
        }
    } else {
        Refusal::RateLimited { retry_after }
    }
}

/// A reset header, ignored when it is more than [`MAX_RESET_AHEAD_SECS`] ahead.
fn header_reset(headers: &HeaderMap, name: &str, now: i64) -> Option<i64> {
    header_seconds(headers, name).filter(|&t| t <= now.saturating_add(MAX_RESET_AHEAD_SECS))
}

/// When a quota hit ends; see [`classify_429`].
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

/// A utilization header (a fraction 0..1) as a whole percent.
fn header_fraction(headers: &HeaderMap, name: &str) -> Option<u32> {
    let fraction: f64 = header_str(headers, name)?.parse().ok()?;
    fraction
        .is_finite()
        .then(|| percent_from_percent(fraction * 100.0))
}

fn is_rejected(headers: &HeaderMap, name: &str) -> bool {
    header_str(headers, name).is_some_and(|value| value.eq_ignore_ascii_case("rejected"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::limits::{Availability, LimitState, Reserves, WindowName};
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

    /// What the relay does with every answer's headers.
    fn observe(state: &mut LimitState, headers: &HeaderMap, now: i64) {
        if let Some(signals) = limit_signals(headers, now) {
            state.observe(&signals, now);
        }
    }

    fn state_from(pairs: &[(&str, &str)]) -> LimitState {
        let mut state = LimitState::default();
        observe(&mut state, &headers(pairs), NOW);
        state
    }

    fn reserve(percent: u32) -> Reserves {
        Reserves {
            five_hour: Some(percent),
            weekly: Some(percent),
        }
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
        observe(&mut state, &map, NOW);
        assert_eq!(state.five_hour(NOW).percent, None);

        let mut untouched = LimitState::default();
        observe(
            &mut untouched,
            &headers(&[("content-type", "text/plain")]),
            NOW,
        );
        assert_eq!(untouched.last_update(), None);
    }

    #[test]
    fn a_lower_percent_needs_a_later_reset() {
        let reset = (NOW + HOUR).to_string();
        let mut state = state_from(&[(UTILIZATION_5H, "0.40"), (RESET_5H, &reset)]);

        // Same window, lower value: a stale or out-of-order response; ignored.
        observe(
            &mut state,
            &headers(&[(UTILIZATION_5H, "0.10"), (RESET_5H, &reset)]),
            NOW + 10,
        );
        assert_eq!(state.five_hour(NOW + 10).percent, Some(40));
        assert_eq!(state.last_update(), Some(NOW + 10));

        // Same window, higher value: taken.
        observe(&mut state, &headers(&[(UTILIZATION_5H, "0.45")]), NOW + 20);
        assert_eq!(state.five_hour(NOW + 20).percent, Some(45));

        // An earlier reset never moves the reset back.
        let earlier = (NOW + HOUR - 100).to_string();
        observe(
            &mut state,
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
        observe(
            &mut state,
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
        observe(
            &mut state,
            &headers(&[(UTILIZATION_7D, "0.01")]),
            NOW + 2 * HOUR,
        );
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

    fn classify(pairs: &[(&str, &str)], body: &str) -> Refusal {
        classify_429(&headers(pairs), body.as_bytes(), NOW)
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
        assert_eq!(throttle, Refusal::Quota { until: NOW + HOUR });
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
            Refusal::Quota {
                until: NOW + 90 * HOUR
            }
        );
        assert_eq!(
            classify(&pairs("7d"), ""),
            Refusal::Quota {
                until: NOW + 90 * HOUR
            }
        );
        assert_eq!(
            classify(&pairs("five_hour"), ""),
            Refusal::Quota { until: NOW + HOUR }
        );
        // A claim without status headers is enough.
        assert_eq!(
            classify(&[(CLAIM, "five_hour"), (RESET_5H, reset_5h.as_str())], "{}"),
            Refusal::Quota { until: NOW + HOUR }
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
            Refusal::Quota {
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
            Refusal::Quota {
                until: NOW + 90 * HOUR
            }
        );
    }

    #[test]
    fn quota_429_with_only_the_unified_reset() {
        let reset = (NOW + 2 * HOUR).to_string();
        assert_eq!(
            classify(&[(RESET, &reset)], ""),
            Refusal::Quota {
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
            Refusal::Quota {
                until: NOW + 2 * HOUR
            }
        );
        // retry-after, at most a minute (no window's reset behind it).
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "45")], ""),
            Refusal::Quota { until: NOW + 45 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "120")], ""),
            Refusal::Quota { until: NOW + 60 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), (CLAIM, "something_new")], ""),
            Refusal::Quota { until: NOW + 60 }
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
            Refusal::RateLimited { retry_after: None }
        );
        assert_eq!(
            classify(&[], "Usage credits are required for fast mode"),
            Refusal::RateLimited { retry_after: None }
        );
    }

    #[test]
    fn plain_429_is_a_cooldown_not_quota() {
        assert_eq!(
            classify(&[("retry-after", "30")], "slow down"),
            Refusal::RateLimited {
                retry_after: Some(30)
            }
        );
        assert_eq!(
            classify(&[], ""),
            Refusal::RateLimited { retry_after: None }
        );
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
            Refusal::RateLimited {
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
            Refusal::RateLimited { .. } | Refusal::Quota { .. }
        ));

        let mut map = HeaderMap::new();
        map.insert(STATUS, HeaderValue::from_bytes(b"rej\xffected").unwrap());
        map.insert(CLAIM, HeaderValue::from_bytes(b"\xfe").unwrap());
        map.insert("retry-after", HeaderValue::from_static("-5"));
        // Unreadable values count as absent: no unified header left, no retry-after.
        assert_eq!(
            classify_429(&map, b"\xff\xfe", NOW),
            Refusal::RateLimited { retry_after: None }
        );
        let mut state = LimitState::default();
        observe(&mut state, &map, NOW);
        observe(
            &mut state,
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
    fn a_quota_429_without_a_reset_time_pauses_briefly() {
        // retry-after, clamped to 1..=60 s (no window's reset behind it).
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "86400")], ""),
            Refusal::Quota { until: NOW + 60 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "1e300")], ""),
            Refusal::Quota { until: NOW + 60 }
        );
        assert_eq!(
            classify(&[(STATUS, "rejected"), ("retry-after", "0")], ""),
            Refusal::Quota { until: NOW + 1 }
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
                Refusal::Quota { until: NOW + 60 },
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
            Refusal::Quota {
                until: NOW + 7 * 86_400
            }
        );
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
}
