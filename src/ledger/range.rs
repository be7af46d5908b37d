//! Time ranges as people type them (`--since 7d`, `--until 2026-11`) and as the dashboard
//! sends them, turned into the instants a [`super::query::Query`] takes. One parser for
//! the CLI and the management API, so both read `today` or `2026-11-05` the same way.
//!
//! Everything is read in a time zone: "today" is the caller's today, and a date or a
//! month names the whole of it — its first instant as a start, the first instant after it
//! as an end, so `--since 2026-11-01 --until 2026-11-30` covers all of November 30th.
//! Instants (`now`, an age such as `7d`, an RFC 3339 time) are the same at both ends.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};

/// The forms a bound may take, for error messages.
const FORMS: &str = "use now, today, yesterday, this-month, last-month, a date (2026-11-01), \
    a month (2026-11), a local time (2026-11-01T09:00), a time with its offset \
    (2026-11-01T09:00:00Z) or an age (30m, 12h, 7d, 2w)";

/// `[since, until)`, non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub since: Timestamp,
    pub until: Timestamp,
}

/// Which end of a range a text names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Since,
    /// A date or a month counts whole: its end.
    Until,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bound::Since => "since",
            Bound::Until => "until",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{bound} `{value}` is not a time: {FORMS}")]
    NotATime { bound: Bound, value: String },
    #[error("{bound} `{value}` is too far from now")]
    OutOfRange { bound: Bound, value: String },
    #[error("the range is empty: until ({until}) is not after since ({since})")]
    Empty { since: String, until: String },
    #[error("`{0}` is not a time zone: use an IANA name such as Europe/Paris, or UTC")]
    UnknownTimeZone(String),
    #[error(
        "`{0}` is not a named range: use today, yesterday, this-month, last-month or an age (24h, 7d, 30d)"
    )]
    NotARange(String),
}

impl Range {
    /// The range `since` .. `until` as typed, read at `now` in its time zone. Without
    /// `since`: the last 30 days, today included (from midnight 29 days ago). Without
    /// `until`: now.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        now: &Zoned,
    ) -> Result<Range, RangeError> {
        let since_at = match since {
            Some(text) => parse_bound(text, Bound::Since, now)?,
            None => now
                .start_of_day()
                .and_then(|day| day.checked_sub(29.days()))
                .map(|day| day.timestamp())
                .map_err(|_| RangeError::OutOfRange {
                    bound: Bound::Since,
                    value: "30 days ago".into(),
                })?,
        };
        let until_at = match until {
            Some(text) => parse_bound(text, Bound::Until, now)?,
            None => now.timestamp(),
        };
        Range::new(since_at, until_at, now.time_zone()).map_err(|error| match error {
            // Say what was typed too: `--until 2026-11-01` ends at midnight after it.
            RangeError::Empty {
                since: since_shown,
                until: until_shown,
            } => {
                let with_text = |text: Option<&str>, shown: String| match text {
                    Some(text) => format!("`{}`, {shown}", text.trim()),
                    None => shown,
                };
                RangeError::Empty {
                    since: with_text(since, since_shown),
                    until: with_text(until, until_shown),
                }
            }
            other => other,
        })
    }

    /// A range by name, read at `now` in its time zone: `today`, `yesterday`,
    /// `this-month` and `last-month` are the whole of that day or month (the rest of
    /// today included, so a chart of today has all its hours); an age (`24h`, `7d`) is
    /// from then to now. `_` may stand for `-` (`this_month`).
    pub fn named(name: &str, now: &Zoned) -> Result<Range, RangeError> {
        let not_a_range = || RangeError::NotARange(name.to_owned());
        let key = name.trim().to_ascii_lowercase().replace('_', "-");
        let (since, until) = match key.as_str() {
            "today" | "yesterday" | "this-month" | "month" | "last-month" => (
                parse_bound(&key, Bound::Since, now)?,
                parse_bound(&key, Bound::Until, now)?,
            ),
            age => match parse_age(age) {
                Some(_) => (parse_bound(age, Bound::Since, now)?, now.timestamp()),
                None => return Err(not_a_range()),
            },
        };
        Range::new(since, until, now.time_zone()).map_err(|_| not_a_range())
    }

    /// `[since, until)`, refused when empty (the error shows both in `tz`).
    pub fn new(since: Timestamp, until: Timestamp, tz: &TimeZone) -> Result<Range, RangeError> {
        if until <= since {
            let show = |t: Timestamp| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %:z")
                    .to_string()
            };
            return Err(RangeError::Empty {
                since: show(since),
                until: show(until),
            });
        }
        Ok(Range { since, until })
    }

    pub fn since_ms(&self) -> i64 {
        self.since.as_millisecond()
    }

    pub fn until_ms(&self) -> i64 {
        self.until.as_millisecond()
    }
}

/// The time zone named `name` (IANA, such as Europe/Paris), or this machine's.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, RangeError> {
    match name {
        Some(name) => {
            TimeZone::get(name.trim()).map_err(|_| RangeError::UnknownTimeZone(name.to_owned()))
        }
        None => Ok(TimeZone::system()),
    }
}

/// One end of a range, read at `now` in its time zone; see the module documentation.
pub fn parse_bound(text: &str, bound: Bound, now: &Zoned) -> Result<Timestamp, RangeError> {
    let out_of_range = || RangeError::OutOfRange {
        bound,
        value: text.to_owned(),
    };
    let trimmed = text.trim();
    let tz = now.time_zone().clone();
    // The first instant of the day or month, or of the next one for an end.
    let day = |z: Zoned| -> Result<Timestamp, jiff::Error> {
        Ok(match bound {
            Bound::Since => z.start_of_day()?.timestamp(),
            Bound::Until => z.tomorrow()?.start_of_day()?.timestamp(),
        })
    };
    let month = |z: Zoned| -> Result<Timestamp, jiff::Error> {
        let first = z.first_of_month()?.start_of_day()?;
        Ok(match bound {
            Bound::Since => first.timestamp(),
            Bound::Until => first.checked_add(1.month())?.timestamp(),
        })
    };
    let preset = match trimmed.to_ascii_lowercase().replace('_', "-").as_str() {
        "now" => Some(Ok(now.timestamp())),
        "today" => Some(day(now.clone())),
        "yesterday" => Some(now.yesterday().and_then(day)),
        "month" | "this-month" => Some(month(now.clone())),
        "last-month" => Some(
            now.first_of_month()
                .and_then(|first| first.yesterday())
                .and_then(month),
        ),
        _ => None,
    };
    if let Some(result) = preset {
        return result.map_err(|_| out_of_range());
    }
    if let Some(age) = parse_age(trimmed) {
        return age
            .and_then(|seconds| {
                now.timestamp()
                    .checked_sub(SignedDuration::from_secs(seconds))
                    .ok()
            })
            .ok_or_else(out_of_range);
    }
    if let Ok(t) = trimmed.parse::<Timestamp>() {
        return Ok(t);
    }
    // By length first: the civil parsers are lenient (a date-time parser takes a bare
    // date as its midnight), and a date must count whole as an end.
    match trimmed.len() {
        // A date: `2026-11-05`.
        10 => {
            if let Ok(d) = trimmed.parse::<jiff::civil::Date>() {
                return d.to_zoned(tz).and_then(day).map_err(|_| out_of_range());
            }
        }
        // A month: `2026-11`.
        7 => {
            if let Ok(d) = format!("{trimmed}-01").parse::<jiff::civil::Date>() {
                return d.to_zoned(tz).and_then(month).map_err(|_| out_of_range());
            }
        }
        // A local date and time: `2026-11-05T09:00`, `2026-11-05 09:00:30`.
        _ => {
            if let Ok(dt) = trimmed.parse::<jiff::civil::DateTime>() {
                return dt
                    .to_zoned(tz)
                    .map(|z| z.timestamp())
                    .map_err(|_| out_of_range());
            }
        }
    }
    Err(RangeError::NotATime {
        bound,
        value: text.to_owned(),
    })
}

/// An age: digits and a unit (`30m`, `12h`, `7d`, `2w`). `None`: not shaped like one;
/// `Some(None)`: shaped like one but too long to be a time.
fn parse_age(text: &str) -> Option<Option<i64>> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let unit_secs = match unit {
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(
        number
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_secs)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        "2026-11-22T15:30:00+01:00[Europe/Paris]".parse().unwrap()
    }

    fn when(text: &str, bound: Bound) -> String {
        parse_bound(text, bound, &now())
            .unwrap()
            .to_zoned(now().time_zone().clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    }

    #[test]
    fn times_people_type() {
        assert_eq!(when("now", Bound::Since), "2026-11-22 15:30");
        assert_eq!(when("today", Bound::Since), "2026-11-22 00:00");
        assert_eq!(when(" Today ", Bound::Until), "2026-11-23 00:00");
        assert_eq!(when("yesterday", Bound::Since), "2026-11-21 00:00");
        assert_eq!(when("yesterday", Bound::Until), "2026-11-22 00:00");
        assert_eq!(when("month", Bound::Since), "2026-11-01 00:00");
        assert_eq!(when("this-month", Bound::Until), "2026-12-01 00:00");
        assert_eq!(when("last-month", Bound::Since), "2026-10-01 00:00");
        assert_eq!(when("last-month", Bound::Until), "2026-11-01 00:00");
        assert_eq!(when("2026-11-05", Bound::Since), "2026-11-05 00:00");
        assert_eq!(when("2026-11-05", Bound::Until), "2026-11-06 00:00");
        assert_eq!(when("2026-02", Bound::Since), "2026-02-01 00:00");
        assert_eq!(when("2026-02", Bound::Until), "2026-03-01 00:00");
        assert_eq!(when("2026-12", Bound::Until), "2027-01-01 00:00");
        assert_eq!(when("7d", Bound::Since), "2026-11-15 15:30");
        assert_eq!(when("2w", Bound::Until), "2026-11-08 15:30");
        assert_eq!(when("12h", Bound::Since), "2026-11-22 03:30");
        assert_eq!(when("30m", Bound::Since), "2026-11-22 15:00");
        assert_eq!(when("90min", Bound::Since), "2026-11-22 14:00");
        assert_eq!(when("0d", Bound::Since), "2026-11-22 15:30");
        // An instant with its offset, shown in Paris; a local time read in Paris.
        assert_eq!(
            when("2026-11-01T09:00:00Z", Bound::Since),
            "2026-11-01 10:00"
        );
        assert_eq!(when("2026-11-01T09:00", Bound::Until), "2026-11-01 09:00");
        assert_eq!(when("2026-11-01 09:15", Bound::Since), "2026-11-01 09:15");
    }

    #[test]
    fn last_month_of_january_is_last_december() {
        let january: Zoned = "2027-01-10T08:00:00+01:00[Europe/Paris]".parse().unwrap();
        let at = |bound| {
            parse_bound("last-month", bound, &january)
                .unwrap()
                .to_zoned(january.time_zone().clone())
                .date()
                .to_string()
        };
        assert_eq!(at(Bound::Since), "2026-12-01");
        assert_eq!(at(Bound::Until), "2027-01-01");
    }

    #[test]
    fn a_day_is_the_local_day_even_when_it_is_25_hours_long() {
        let berlin: Zoned = "2026-10-26T12:00:00+01:00[Europe/Berlin]".parse().unwrap();
        let since = parse_bound("2026-10-25", Bound::Since, &berlin).unwrap();
        let until = parse_bound("2026-10-25", Bound::Until, &berlin).unwrap();
        assert_eq!(since.to_string(), "2026-10-24T22:00:00Z");
        assert_eq!(until.as_second() - since.as_second(), 25 * 3600);
    }

    #[test]
    fn bad_input_names_the_value_and_the_forms() {
        for text in [
            "last tuesday",
            "7y",
            "-7d",
            "d",
            "",
            "2026-13-01",
            "2026-1",
            "12:00",
        ] {
            let error = parse_bound(text, Bound::Since, &now()).unwrap_err();
            assert_eq!(
                error,
                RangeError::NotATime {
                    bound: Bound::Since,
                    value: text.to_owned()
                }
            );
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("since `{text}` is not a time: use now, today")),
                "{message}"
            );
            assert!(message.contains("2026-11-01T09:00:00Z"), "{message}");
        }
        for text in ["99999999999w", "99999999999999999999d", "9999-12-31"] {
            let error = parse_bound(text, Bound::Until, &now()).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("until `{text}` is too far from now"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_range_has_defaults_and_is_never_empty() {
        let r = Range::parse(None, None, &now()).unwrap();
        assert_eq!(
            r.since.to_zoned(now().time_zone().clone()).to_string(),
            "2026-10-24T00:00:00+02:00[Europe/Paris]",
            "30 days with today, from local midnight (summer time then)"
        );
        assert_eq!(r.until, now().timestamp());
        let r = Range::parse(Some("2026-11-01"), Some("2026-11-01"), &now()).unwrap();
        assert_eq!(r.until_ms() - r.since_ms(), 24 * 3_600_000);
        let error = Range::parse(Some("today"), Some("yesterday"), &now()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the range is empty: until (`yesterday`, 2026-11-22 00:00:00 +01:00) is not after since (`today`, 2026-11-22 00:00:00 +01:00)"
        );
        let error = Range::parse(Some("now"), None, &now()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the range is empty: until (2026-11-22 15:30:00 +01:00) is not after since (`now`, 2026-11-22 15:30:00 +01:00)"
        );
        assert!(matches!(
            Range::parse(Some("soon"), None, &now()),
            Err(RangeError::NotATime {
                bound: Bound::Since,
                ..
            })
        ));
        assert!(matches!(
            Range::parse(None, Some("later"), &now()),
            Err(RangeError::NotATime {
                bound: Bound::Until,
                ..
            })
        ));
    }

    #[test]
    fn named_ranges_cover_their_whole_period_or_reach_now() {
        let shown = |name: &str| {
            let r = Range::named(name, &now()).unwrap();
            let tz = now().time_zone().clone();
            let fmt = |t: Timestamp| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            };
            (fmt(r.since), fmt(r.until))
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(shown("today"), pair("2026-11-22 00:00", "2026-11-23 00:00"));
        assert_eq!(
            shown("Yesterday"),
            pair("2026-11-21 00:00", "2026-11-22 00:00")
        );
        assert_eq!(
            shown("this_month"),
            pair("2026-11-01 00:00", "2026-12-01 00:00")
        );
        assert_eq!(
            shown("last-month"),
            pair("2026-10-01 00:00", "2026-11-01 00:00")
        );
        assert_eq!(shown("7d"), pair("2026-11-15 15:30", "2026-11-22 15:30"));
        assert_eq!(when("this_month", Bound::Since), "2026-11-01 00:00");
        for bad in ["now", "2026-11", "fortnight", "0d"] {
            assert_eq!(
                Range::named(bad, &now()).unwrap_err().to_string(),
                format!(
                    "`{bad}` is not a named range: use today, yesterday, this-month, last-month or an age (24h, 7d, 30d)"
                )
            );
        }
    }

    #[test]
    fn time_zones_by_name() {
        assert_eq!(
            time_zone(Some("Europe/Berlin")).unwrap().iana_name(),
            Some("Europe/Berlin")
        );
        assert_eq!(
            time_zone(Some("Mars/Olympus")).unwrap_err().to_string(),
            "`Mars/Olympus` is not a time zone: use an IANA name such as Europe/Paris, or UTC"
        );
        assert!(time_zone(None).is_ok());
    }
}
