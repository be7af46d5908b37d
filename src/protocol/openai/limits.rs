//! What a Codex backend's answers say about the account (docs/protocol.md §7.6).
//!
//! **Windows.** The active limit family is `x-codex-active-limit` (default `codex`,
//! lower-cased, `_` read as `-`); the family `<id>` reports `x-<id>-primary-*` and
//! `x-<id>-secondary-*`: `used-percent` (0–100), `reset-at` (Unix seconds),
//! `reset-after-seconds` and `window-minutes`. Which of the two is the 5-hour window and
//! which the weekly one is decided by `window-minutes`, not by position: a plan with only
//! a weekly limit reports it as primary. Without `window-minutes`, primary is read as the
//! 5-hour window and secondary as the weekly one (sing-box's reading).
//!
//! **429s.** A 429 is the account's quota when it says so — an
//! `x-codex-rate-limit-reached-type` header, a `usage_limit_reached` error in its body, or
//! a window at 100 % — and then lasts until that window resets (else the latest reset
//! stated, else `retry-after`, else five minutes, as sing-box). Any other 429 is a rate
//! limit for the client to see.

use http::HeaderMap;

use crate::pool::limits::{LimitSignals, MAX_RESET_AHEAD_SECS, Window, percent_from_percent};
use crate::protocol::Refusal;
use crate::protocol::values::{header_seconds, header_str, retry_after};

/// How long a quota 429 pauses the account when nothing says until when (sing-box's).
const DEFAULT_QUOTA_PAUSE_SECS: i64 = 300;
const REACHED_TYPE: &str = "x-codex-rate-limit-reached-type";
/// A window this long or shorter is the 5-hour one; longer, the weekly one.
const FIVE_HOUR_MAX_MINUTES: i64 = 12 * 60;

/// One of the two windows an answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported {
    window: Window,
    minutes: Option<i64>,
}

/// The family's primary and secondary windows, as reported (absent ones skipped).
fn reported(headers: &HeaderMap, now: i64) -> Vec<(Reported, bool)> {
    let family = header_str(headers, "x-codex-active-limit")
        .filter(|f| !f.is_empty())
        .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        .unwrap_or_else(|| "codex".into());
    ["primary", "secondary"]
        .into_iter()
        .filter_map(|which| {
            let name = |field: &str| format!("x-{family}-{which}-{field}");
            let percent = header_str(headers, &name("used-percent"))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|p| p.is_finite())
                .map(percent_from_percent);
            let resets_at = header_seconds(headers, &name("reset-at"))
                .or_else(|| {
                    header_seconds(headers, &name("reset-after-seconds"))
                        .map(|after| now.saturating_add(after.max(0)))
                })
                .filter(|&t| t <= now.saturating_add(MAX_RESET_AHEAD_SECS));
            let minutes = header_seconds(headers, &name("window-minutes")).filter(|&m| m > 0);
            (percent.is_some() || resets_at.is_some()).then_some((
                Reported {
                    window: Window { percent, resets_at },
                    minutes,
                },
                which == "primary",
            ))
        })
        .collect()
}

/// The 5-hour and weekly windows an answer reports.
fn windows(headers: &HeaderMap, now: i64) -> Option<(Window, Window)> {
    let reported = reported(headers, now);
    if reported.is_empty() {
        return None;
    }
    let (mut five_hour, mut weekly) = (Window::default(), Window::default());
    for (r, primary) in reported {
        let is_five_hour = match r.minutes {
            Some(minutes) => minutes <= FIVE_HOUR_MAX_MINUTES,
            None => primary,
        };
        if is_five_hour {
            five_hour = r.window;
        } else {
            weekly = r.window;
        }
    }
    Some((five_hour, weekly))
}

/// The rate-limit windows an answer's headers report.
pub fn limit_signals(headers: &HeaderMap, now: i64) -> Option<LimitSignals> {
    let (five_hour, weekly) = windows(headers, now)?;
    Some(LimitSignals {
        five_hour,
        weekly,
        quota_until: None,
    })
}

/// The weekly window's reset, for the usage ledger.
pub fn weekly_reset(headers: &HeaderMap, now: i64) -> Option<i64> {
    windows(headers, now).and_then(|(_, weekly)| weekly.resets_at)
}

/// What a 429 means; see the module documentation.
pub fn classify_429(headers: &HeaderMap, body: &[u8], now: i64) -> Refusal {
    let (five_hour, weekly) = windows(headers, now).unwrap_or_default();
    let full = |w: &Window| w.percent.is_some_and(|p| p >= 100);
    let said = header_str(headers, REACHED_TYPE).is_some_and(|t| !t.is_empty())
        || String::from_utf8_lossy(body).contains("usage_limit_reached");
    if !said && !full(&five_hour) && !full(&weekly) {
        return Refusal::RateLimited {
            retry_after: retry_after(headers),
        };
    }
    let future = |w: &Window| w.resets_at.filter(|&t| t > now);
    let exhausted = [weekly, five_hour]
        .iter()
        .filter(|w| full(w))
        .filter_map(future)
        .max();
    let latest = [five_hour, weekly].iter().filter_map(future).max();
    let until = exhausted
        .or(latest)
        .or_else(|| retry_after(headers).map(|s| now.saturating_add(s)))
        .unwrap_or(now + DEFAULT_QUOTA_PAUSE_SECS);
    Refusal::Quota { until }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn pair(which: &str, percent: &str, reset: i64, minutes: i64) -> Vec<(String, String)> {
        vec![
            (format!("x-codex-{which}-used-percent"), percent.into()),
            (format!("x-codex-{which}-reset-at"), reset.to_string()),
            (
                format!("x-codex-{which}-window-minutes"),
                minutes.to_string(),
            ),
        ]
    }

    fn map(pairs: Vec<(String, String)>) -> HeaderMap {
        let owned: Vec<(&str, String)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        headers(&owned)
    }

    #[test]
    fn windows_are_told_apart_by_their_length_in_either_order() {
        let usual = map([
            pair("primary", "12.5", NOW + 3600, 300),
            pair("secondary", "40", NOW + 86_400, 10_080),
        ]
        .concat());
        let reversed = map([
            pair("primary", "40", NOW + 86_400, 10_080),
            pair("secondary", "12.5", NOW + 3600, 300),
        ]
        .concat());
        for h in [usual, reversed] {
            let s = limit_signals(&h, NOW).unwrap();
            assert_eq!(s.five_hour.percent, Some(13), "{h:?}");
            assert_eq!(s.five_hour.resets_at, Some(NOW + 3600));
            assert_eq!(s.weekly.percent, Some(40));
            assert_eq!(s.weekly.resets_at, Some(NOW + 86_400));
            assert_eq!(weekly_reset(&h, NOW), Some(NOW + 86_400));
        }
        // Only a weekly limit, reported as primary.
        let weekly_only = map(pair("primary", "70", NOW + 5 * 86_400, 10_080));
        let s = limit_signals(&weekly_only, NOW).unwrap();
        assert_eq!(s.weekly.percent, Some(70));
        assert_eq!(s.five_hour, Window::default());
    }

    #[test]
    fn the_active_family_and_relative_resets_are_read() {
        let h = headers(&[
            ("x-codex-active-limit", "Premium_Tier".into()),
            ("x-premium-tier-primary-used-percent", "55".into()),
            ("x-premium-tier-primary-reset-after-seconds", "120".into()),
            ("x-codex-primary-used-percent", "1".into()),
        ]);
        let s = limit_signals(&h, NOW).unwrap();
        assert_eq!(s.five_hour.percent, Some(55));
        assert_eq!(s.five_hour.resets_at, Some(NOW + 120));
        assert_eq!(limit_signals(&HeaderMap::new(), NOW), None);
    }

    #[test]
    fn a_quota_429_pauses_until_the_full_window_resets() {
        let mut pairs = [
            pair("primary", "100", NOW + 3600, 300),
            pair("secondary", "60", NOW + 86_400, 10_080),
        ]
        .concat();
        pairs.push((REACHED_TYPE.into(), "primary".into()));
        assert_eq!(
            classify_429(&map(pairs), b"", NOW),
            Refusal::Quota { until: NOW + 3600 }
        );
        let weekly_full = map([
            pair("primary", "20", NOW + 3600, 300),
            pair("secondary", "100", NOW + 86_400, 10_080),
        ]
        .concat());
        assert_eq!(
            classify_429(&weekly_full, b"", NOW),
            Refusal::Quota {
                until: NOW + 86_400
            }
        );
        let body = br#"{"error":{"type":"usage_limit_reached","message":"limit"}}"#;
        let with_retry = headers(&[("retry-after", "90".into())]);
        assert_eq!(
            classify_429(&with_retry, body, NOW),
            Refusal::Quota { until: NOW + 90 }
        );
        assert_eq!(
            classify_429(&HeaderMap::new(), body, NOW),
            Refusal::Quota {
                until: NOW + DEFAULT_QUOTA_PAUSE_SECS
            }
        );
    }

    #[test]
    fn other_429s_are_the_clients_to_see() {
        let h = map([pair("primary", "30", NOW + 3600, 300)].concat());
        let mut with_retry = h.clone();
        with_retry.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            classify_429(
                &with_retry,
                br#"{"error":{"type":"rate_limit_exceeded"}}"#,
                NOW
            ),
            Refusal::RateLimited {
                retry_after: Some(7)
            }
        );
        assert_eq!(
            classify_429(&HeaderMap::new(), b"", NOW),
            Refusal::RateLimited { retry_after: None }
        );
    }
}
