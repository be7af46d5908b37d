//! Reports: totals and time series over any range, bucketed by hour, day or month in
//! the caller's time zone, grouped by one dimension, with top-N.
//!
//! A [`Report`] is what `carpool usage --json` prints and what the management API will
//! answer: serde types, one row per (period, group). A bucketed report has every period
//! of the range, oldest first, including those without any request (zero-filled), so a
//! chart's axis has no holes; a period without requests has one row of zeros whose
//! group key is `null`. Top-N keeps the N groups that cost the most over the whole
//! range and sums the rest, per period, into rows marked `other`. Periods are local:
//! the day of a DST change is 23 or 25 hours long, and the hour repeated when clocks go
//! back appears twice, once per offset ([`Period`]).
//!
//! SQLite cannot bucket by local day (it knows no time zones), so the work is split:
//! SQL sums per UTC slot and group key, Rust maps each slot to its local bucket. Slots
//! are UTC hours read from the `usage_hourly` rollup (see [`super::store`] for why it
//! keeps reports fast), or quarter hours read from `requests` when the rollup cannot
//! answer: grouping or filtering by session, a time zone whose offset is not a whole
//! number of hours (India, Nepal, parts of Australia), and the partial hours at the ends
//! of a range that does not start or end on the hour. Every UTC offset in use is a
//! multiple of 15 minutes, so a quarter hour always falls within one local bucket.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use rusqlite::{Connection, ToSql};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use super::{UsageRecord, store};

const HOUR_MS: i64 = 3_600_000;
const QUARTER_MS: i64 = 900_000;
/// The most periods one report may have (about 11 years of hours): every period gets a
/// row, so a whole-history report by hour is refused rather than made huge.
pub const MAX_PERIODS: usize = 100_000;

/// How long each period of a series is, in the report's time zone. In JSON `hour`,
/// `day` or `month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
    Month,
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Month => "month",
        })
    }
}

/// What rows are grouped by. In JSON its column's name: `user`, `model`, `credential`
/// (the account's tag), `device` or `session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    User,
    Model,
    Credential,
    Device,
    Session,
}

impl Dimension {
    pub fn column(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Model => "model",
            Dimension::Credential => "credential",
            Dimension::Device => "device",
            Dimension::Session => "session",
        }
    }
}

/// Only count requests matching every field that is set.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user: Option<String>,
    pub model: Option<String>,
    pub credential: Option<String>,
    pub device: Option<String>,
    pub session: Option<String>,
}

impl Filter {
    fn conditions(&self) -> Vec<(&'static str, &str)> {
        [
            ("user", &self.user),
            ("model", &self.model),
            ("credential", &self.credential),
            ("device", &self.device),
            ("session", &self.session),
        ]
        .into_iter()
        .filter_map(|(column, value)| value.as_deref().map(|v| (column, v)))
        .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    /// Range `[since_ms, until_ms)`, Unix milliseconds.
    pub since_ms: i64,
    pub until_ms: i64,
    /// Time zone of the buckets.
    pub tz: TimeZone,
    /// `None`: one row per group over the whole range.
    pub bucket: Option<Bucket>,
    /// `None`: one row per bucket.
    pub group: Option<Dimension>,
    /// Keep the `top` groups with the highest cost (over the whole range); the rest are
    /// summed into rows marked `other`.
    pub top: Option<usize>,
    pub filter: Filter,
}

impl Query {
    /// From `since` until now (what was recorded this very millisecond included), in
    /// `now`'s time zone, one row per `group` (or one row), unfiltered.
    pub fn up_to_now(since: &Zoned, now: &Zoned, group: Option<Dimension>) -> Query {
        Query {
            since_ms: since.timestamp().as_millisecond(),
            until_ms: now.timestamp().as_millisecond() + 1,
            tz: now.time_zone().clone(),
            bucket: None,
            group,
            top: None,
            filter: Filter::default(),
        }
    }
}

/// Sums over a set of requests. Serialized as [`Figures`], with the derived figures a
/// reader wants (means, cost in dollars, cache hit rate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(into = "Figures")]
pub struct Totals {
    pub requests: i64,
    /// Answered with status 400 or above.
    pub errors: i64,
    /// Status below 400 but the response was cut short.
    pub incomplete: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub web_search_requests: i64,
    pub web_fetch_requests: i64,
    /// Part of `output_tokens` (OpenAI's reasoning tokens).
    pub reasoning_tokens: i64,
    /// Sum of the known costs, in millionths of a dollar.
    pub cost_micros: i64,
    /// Requests with tokens whose model had no known price (not in `cost_micros`).
    pub unpriced: i64,
    pub duration_ms: i64,
    pub ttfb_ms: i64,
    pub ttfb_count: i64,
}

impl Totals {
    /// Counts one request.
    pub fn add_record(&mut self, r: &UsageRecord) {
        let t = &r.tokens;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.add(&Totals {
            requests: 1,
            errors: i64::from(r.status >= 400),
            incomplete: i64::from(r.status < 400 && r.outcome != "complete"),
            input_tokens: count(t.input),
            output_tokens: count(t.output),
            cache_read_tokens: count(t.cache_read),
            cache_write_5m_tokens: count(t.cache_write_5m),
            cache_write_1h_tokens: count(t.cache_write_1h),
            web_search_requests: count(t.web_search_requests),
            web_fetch_requests: count(t.web_fetch_requests),
            reasoning_tokens: count(t.reasoning),
            cost_micros: r.cost_micros.unwrap_or(0),
            unpriced: i64::from(r.cost_micros.is_none() && !t.is_empty()),
            duration_ms: i64::from(r.duration_ms),
            ttfb_ms: r.ttfb_ms.map_or(0, i64::from),
            ttfb_count: i64::from(r.ttfb_ms.is_some()),
        });
    }

    /// The counters in the order of the rollup tables' columns.
    pub fn columns(&self) -> [i64; 16] {
        [
            self.requests,
            self.errors,
            self.incomplete,
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_5m_tokens,
            self.cache_write_1h_tokens,
            self.web_search_requests,
            self.web_fetch_requests,
            self.cost_micros,
            self.unpriced,
            self.duration_ms,
            self.ttfb_ms,
            self.ttfb_count,
            self.reasoning_tokens,
        ]
    }

    /// Adds another set of sums to this one.
    pub fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.incomplete += o.incomplete;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_5m_tokens += o.cache_write_5m_tokens;
        self.cache_write_1h_tokens += o.cache_write_1h_tokens;
        self.web_search_requests += o.web_search_requests;
        self.web_fetch_requests += o.web_fetch_requests;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_micros += o.cost_micros;
        self.unpriced += o.unpriced;
        self.duration_ms += o.duration_ms;
        self.ttfb_ms += o.ttfb_ms;
        self.ttfb_count += o.ttfb_count;
    }

    pub fn cache_write_tokens(&self) -> i64 {
        self.cache_write_5m_tokens + self.cache_write_1h_tokens
    }

    /// Every token: input, output, cache reads and writes.
    pub fn total_tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens()
    }

    /// Mean time to first byte, in milliseconds.
    pub fn mean_ttfb_ms(&self) -> Option<i64> {
        (self.ttfb_count > 0).then(|| self.ttfb_ms / self.ttfb_count)
    }

    /// Mean request duration, in milliseconds (0 without requests).
    pub fn mean_duration_ms(&self) -> i64 {
        if self.requests > 0 {
            self.duration_ms / self.requests
        } else {
            0
        }
    }

    /// The share of prompt tokens read from the prompt cache, `0.0..=1.0`: cache reads
    /// over all input (fresh, cache writes and cache reads). `None` without input. A
    /// relay that breaks caching shows here first.
    pub fn cache_hit_rate(&self) -> Option<f64> {
        let prompt = self.input_tokens + self.cache_write_tokens() + self.cache_read_tokens;
        (prompt > 0).then(|| self.cache_read_tokens as f64 / prompt as f64)
    }
}

/// [`Totals`] as they are shown: the sums, and what is derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[schema(as = UsageFigures)]
pub struct Figures {
    /// Model calls (`messages`, `responses`, `chat_completions` requests that passed
    /// authentication).
    pub requests: i64,
    /// Answered with status 400 or above.
    pub errors: i64,
    /// Status below 400 but the response was cut short.
    pub incomplete: i64,
    /// Fresh input tokens.
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: i64,
    /// Input tokens written to the prompt cache for 5 minutes.
    pub cache_write_5m_tokens: i64,
    /// Input tokens written to the prompt cache for an hour.
    pub cache_write_1h_tokens: i64,
    /// Input, output, cache reads and writes.
    pub total_tokens: i64,
    /// Web searches the model ran (billed per search).
    pub web_search_requests: i64,
    /// Web pages the model fetched.
    pub web_fetch_requests: i64,
    /// Output tokens the model spent reasoning (OpenAI models; part of `output_tokens`).
    pub reasoning_tokens: i64,
    /// Known costs, in millionths of a dollar.
    pub cost_micros: i64,
    /// The same in dollars.
    pub cost_usd: f64,
    /// Requests with tokens whose model had no known price (not in the cost).
    pub unpriced_requests: i64,
    /// Mean time from a request's arrival to its last byte, in milliseconds.
    pub mean_duration_ms: i64,
    /// Mean time to the first byte of the answer, in milliseconds; `null` when no
    /// request got one.
    #[schema(required = true)]
    pub mean_ttfb_ms: Option<i64>,
    /// The share of prompt tokens read from the cache, 0 to 1: cache reads over all
    /// input (fresh, cache writes and reads). `null` without input.
    #[schema(required = true)]
    pub cache_hit_rate: Option<f64>,
}

impl From<Totals> for Figures {
    fn from(t: Totals) -> Figures {
        Figures {
            requests: t.requests,
            errors: t.errors,
            incomplete: t.incomplete,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cache_read_tokens: t.cache_read_tokens,
            cache_write_5m_tokens: t.cache_write_5m_tokens,
            cache_write_1h_tokens: t.cache_write_1h_tokens,
            total_tokens: t.total_tokens(),
            web_search_requests: t.web_search_requests,
            web_fetch_requests: t.web_fetch_requests,
            reasoning_tokens: t.reasoning_tokens,
            cost_micros: t.cost_micros,
            cost_usd: t.cost_micros as f64 / 1_000_000.0,
            unpriced_requests: t.unpriced,
            mean_duration_ms: t.mean_duration_ms(),
            mean_ttfb_ms: t.mean_ttfb_ms(),
            cache_hit_rate: t.cache_hit_rate(),
        }
    }
}

/// One period of a series: a local hour, day or month in the report's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub bucket: Bucket,
    pub start: Zoned,
    /// The next period's start (a local day is 23 to 25 hours long).
    pub end: Zoned,
}

impl Period {
    /// As a person reads it: `2026-11-05 14:00`, `2026-11-05` or `2026-11`. An hour that
    /// happens twice (clocks going back) carries its offset: `2026-10-25 02:00 +02:00`,
    /// then `2026-10-25 02:00 +01:00`.
    pub fn label(&self) -> String {
        match self.bucket {
            Bucket::Hour => {
                let repeated = matches!(
                    self.start
                        .time_zone()
                        .to_ambiguous_timestamp(self.start.datetime())
                        .offset(),
                    AmbiguousOffset::Fold { .. }
                );
                let format = if repeated {
                    "%Y-%m-%d %H:00 %:z"
                } else {
                    "%Y-%m-%d %H:00"
                };
                self.start.strftime(format).to_string()
            }
            Bucket::Day => self.start.strftime("%Y-%m-%d").to_string(),
            Bucket::Month => self.start.strftime("%Y-%m").to_string(),
        }
    }
}

/// `bucket` (the label), `bucket_start` and `bucket_end` (RFC 9557 times with the zone:
/// `2026-11-05T00:00:00+01:00[Europe/Berlin]`).
impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("bucket", &self.label())?;
        map.serialize_entry("bucket_start", &self.start.to_string())?;
        map.serialize_entry("bucket_end", &self.end.to_string())?;
        map.end()
    }
}

/// Which group a row sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKey {
    pub dimension: Dimension,
    /// The group's value (`""`: requests without one, e.g. no device id). `None` in the
    /// `other` row and in the zero row of a period without requests.
    pub key: Option<String>,
    /// This row sums the groups beyond `top`.
    pub other: bool,
}

/// The key under its dimension's name (`"user": "alice"`), and `other`.
impl Serialize for GroupKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.dimension.column(), &self.key)?;
        map.serialize_entry("other", &self.other)?;
        map.end()
    }
}

/// One row: a period, a group, or both, and their sums, all in one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// When bucketed.
    #[serde(flatten)]
    pub period: Option<Period>,
    /// When grouped.
    #[serde(flatten)]
    pub group: Option<GroupKey>,
    #[serde(flatten)]
    pub totals: Totals,
}

impl Row {
    /// The group's value; `None` when not grouped, in the `other` row and in a zero row.
    pub fn key(&self) -> Option<&str> {
        self.group.as_ref()?.key.as_deref()
    }

    pub fn is_other(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.other)
    }

    /// A period without requests (zero-filled).
    pub fn is_empty(&self) -> bool {
        self.totals.requests == 0
    }

    pub fn start(&self) -> Option<Timestamp> {
        self.period.as_ref().map(|p| p.start.timestamp())
    }
}

/// A report: what was asked, the rows and their total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = UsageReport)]
pub struct Report {
    /// Start of the range (inclusive): an RFC 9557 time with its zone,
    /// `2026-11-01T00:00:00+01:00[Europe/Paris]`.
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    pub since: Zoned,
    /// End of the range (exclusive), in the same form.
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    pub until: Zoned,
    /// The time zone of the range and the periods (IANA name); `null` for a system zone
    /// without a name.
    #[schema(required = true)]
    pub time_zone: Option<String>,
    /// How long each period is; `null`: one row per group over the whole range.
    #[schema(required = true)]
    pub bucket: Option<Bucket>,
    /// What the rows are grouped by; `null`: not grouped. A row holds the group's value
    /// under this name (`"user": "alice"`).
    #[schema(required = true)]
    pub group: Option<Dimension>,
    /// How many groups are kept (the costliest over the range); the rest are summed
    /// per period into rows marked `other`. `null`: all.
    #[schema(required = true)]
    pub top: Option<usize>,
    /// By period (oldest first, every period of the range, zero-filled), then the kept
    /// groups by cost (highest first), then `other`.
    #[schema(value_type = Vec<RowShape>)]
    pub rows: Vec<Row>,
    /// Sums over the whole range, `other` included.
    #[schema(value_type = Figures)]
    pub total: Totals,
    /// Which table answered, for tests and `--verbose`: `rollup`, `requests` or both.
    #[serde(skip)]
    pub source: &'static str,
}

// What a [`Row`] looks like in JSON, for the OpenAPI document: [`Row`] serializes its
// period and group by hand (the group's value sits under the dimension's name), so the
// schema is described here. `tests/api_usage.rs` holds the two together.
/// One row of a report: a period, a group or both, and their figures. A bucketed
/// report has a row for every period of the range; a period without requests has one
/// row of zeros whose group value is `null`.
#[derive(ToSchema)]
#[schema(as = UsageRow)]
#[allow(dead_code)]
struct RowShape {
    /// The period as a person reads it: `2026-11-05 14:00`, `2026-11-05` or `2026-11`;
    /// an hour that happens twice (clocks going back) carries its offset,
    /// `2026-10-25 02:00 +01:00`. Only when bucketed.
    #[schema(required = false)]
    bucket: String,
    /// The period's first instant (RFC 9557 time with its zone). Only when bucketed.
    #[schema(required = false)]
    bucket_start: String,
    /// The next period's first instant: a local day is 23 to 25 hours long. Only when
    /// bucketed.
    #[schema(required = false)]
    bucket_end: String,
    /// The user, when grouped by user (`""`: anonymous use). `null` in the `other`
    /// row and in the zero row of a period without requests.
    #[schema(required = false)]
    user: Option<String>,
    /// The model, when grouped by model; `null` as for `user`.
    #[schema(required = false)]
    model: Option<String>,
    /// The account's tag, when grouped by credential; `null` as for `user`.
    #[schema(required = false)]
    credential: Option<String>,
    /// Claude Code's device id, when grouped by device (`""`: none sent); `null` as
    /// for `user`.
    #[schema(required = false)]
    device: Option<String>,
    /// Claude Code's session id, when grouped by session (`""`: none sent); `null` as
    /// for `user`.
    #[schema(required = false)]
    session: Option<String>,
    /// This row sums the groups beyond `top`. Only when grouped.
    #[schema(required = false)]
    other: bool,
    #[serde(flatten)]
    figures: Figures,
}

fn as_text<S: Serializer>(value: &Zoned, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(
        "the range holds more than {MAX_PERIODS} periods of one {bucket}; choose a shorter range or longer periods"
    )]
    TooManyPeriods { bucket: Bucket },
}

/// Sums for (UTC slot start, key).
type Slots = Vec<(i64, Option<String>, Totals)>;

pub fn report(conn: &Connection, q: &Query) -> Result<Report, ReportError> {
    report_from(conn, q, false)
}

/// [`report`] answered from the `requests` table alone, never the rollup: the baseline
/// the benchmark compares against, and a cross-check in tests.
pub fn report_without_rollup(conn: &Connection, q: &Query) -> Result<Report, ReportError> {
    report_from(conn, q, true)
}

fn report_from(conn: &Connection, q: &Query, requests_only: bool) -> Result<Report, ReportError> {
    let since = q.since_ms.max(0);
    let until = q.until_ms.max(since);
    // Before any SQL: a range with too many periods is refused at once.
    let periods = match q.bucket {
        Some(bucket) => periods(bucket, &q.tz, timestamp(since), timestamp(until))?,
        None => Vec::new(),
    };
    let raw_only = requests_only
        || q.group == Some(Dimension::Session)
        || q.filter.session.is_some()
        || !whole_hour_offsets(&q.tz, since, until);
    // The rollup answers whole hours; the partial hours at the ends come from `requests`.
    let first_hour =
        since.div_euclid(HOUR_MS) * HOUR_MS + if since % HOUR_MS == 0 { 0 } else { HOUR_MS };
    let last_hour = until.div_euclid(HOUR_MS) * HOUR_MS;
    let mut slots = Slots::new();
    let source = if raw_only || first_hour >= last_hour {
        read_requests(conn, q, since, until, &mut slots)?;
        "requests"
    } else {
        read_rollup(conn, q, first_hour, last_hour, &mut slots)?;
        let mut edges = false;
        if since < first_hour {
            read_requests(conn, q, since, first_hour, &mut slots)?;
            edges = true;
        }
        if last_hour < until {
            read_requests(conn, q, last_hour, until, &mut slots)?;
            edges = true;
        }
        if edges { "rollup+requests" } else { "rollup" }
    };
    Ok(assemble(q, periods, slots, source))
}

/// The instant `ms` milliseconds after the epoch, clamped to what jiff can represent
/// (years −9999 to 9999).
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Every period of `bucket` that overlaps `[since, until)`, oldest first: the first may
/// start before `since`, the last end after `until`.
fn periods(
    bucket: Bucket,
    tz: &TimeZone,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<Period>, ReportError> {
    let mut out = Vec::new();
    let Some(mut start) = bucket_start(bucket, tz, since) else {
        return Ok(out);
    };
    while start < until {
        if out.len() == MAX_PERIODS {
            return Err(ReportError::TooManyPeriods { bucket });
        }
        let Some(end) = bucket_end(bucket, tz, start) else {
            break;
        };
        out.push(Period {
            bucket,
            start: start.to_zoned(tz.clone()),
            end: end.to_zoned(tz.clone()),
        });
        start = end;
    }
    Ok(out)
}

/// True when every UTC offset `tz` uses in `[since, until]` is a whole number of hours.
fn whole_hour_offsets(tz: &TimeZone, since_ms: i64, until_ms: i64) -> bool {
    let (Ok(since), Ok(until)) = (
        Timestamp::from_millisecond(since_ms),
        Timestamp::from_millisecond(until_ms),
    ) else {
        return false;
    };
    if tz.to_offset(since).seconds() % 3600 != 0 {
        return false;
    }
    tz.following(since)
        .take_while(|t| t.timestamp() <= until)
        .all(|t| t.offset().seconds() % 3600 == 0)
}

const SUMS_ROLLUP: &str = "SUM(requests), SUM(errors), SUM(incomplete), SUM(input_tokens),
    SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_5m_tokens),
    SUM(cache_write_1h_tokens), SUM(web_search_requests), SUM(web_fetch_requests),
    SUM(cost_micros), SUM(unpriced), SUM(duration_ms), SUM(ttfb_ms), SUM(ttfb_count),
    SUM(reasoning_tokens)";

const SUMS_REQUESTS: &str = "COUNT(*), SUM(status >= 400),
    SUM(status < 400 AND outcome <> 'complete'), SUM(input_tokens), SUM(output_tokens),
    SUM(cache_read_tokens), SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens),
    SUM(web_search_requests), SUM(web_fetch_requests), COALESCE(SUM(cost_micros), 0),
    SUM(cost_micros IS NULL AND input_tokens + output_tokens + cache_read_tokens
        + cache_write_5m_tokens + cache_write_1h_tokens > 0),
    SUM(duration_ms), COALESCE(SUM(ttfb_ms), 0), COUNT(ttfb_ms), SUM(reasoning_tokens)";

/// One SQL read: which table, how its rows map to slots and keys, which filters.
struct Read<'a> {
    table: &'static str,
    time_column: &'static str,
    /// `[from, to)` in the table's time unit.
    from: i64,
    to: i64,
    /// Expression for the slot start in Unix ms; `None` when not bucketing.
    slot: Option<&'static str>,
    /// Expression for the group key; `None` when not grouping.
    key: Option<&'static str>,
    sums: &'static str,
    /// Fixed conditions (`column = value`).
    conditions: Vec<(&'static str, &'a str)>,
}

fn read_rollup(
    conn: &Connection,
    q: &Query,
    from_ms: i64,
    to_ms: i64,
    out: &mut Slots,
) -> rusqlite::Result<()> {
    let slot = q.bucket.map(|_| "hour * 1000");
    let read = match per_dimension(q) {
        // The narrow rollup: only the rows of the one dimension asked for.
        Some(dimension) => {
            let mut conditions = vec![("dimension", dimension)];
            conditions.extend(q.filter.conditions().into_iter().map(|(_, v)| ("key", v)));
            Read {
                table: "usage_hourly_by",
                time_column: "hour",
                from: from_ms / 1000,
                to: to_ms / 1000,
                slot,
                key: q.group.map(|_| "key"),
                sums: SUMS_ROLLUP,
                conditions,
            }
        }
        None => Read {
            table: "usage_hourly",
            time_column: "hour",
            from: from_ms / 1000,
            to: to_ms / 1000,
            slot,
            key: q.group.map(Dimension::column),
            sums: SUMS_ROLLUP,
            conditions: q.filter.conditions(),
        },
    };
    run(conn, &read, out)
}

/// The `usage_hourly_by` dimension that can answer this report: when it groups and
/// filters on at most one of user, model, credential or device (`""`: neither grouped
/// nor filtered, the all-requests rows). `None`: only `usage_hourly` can.
fn per_dimension(q: &Query) -> Option<&'static str> {
    let filtered = match q.filter.conditions().as_slice() {
        [] => None,
        [(column, _)] => Some(*column),
        _ => return None,
    };
    let dimension = match (q.group.map(Dimension::column), filtered) {
        (None, None) => "",
        (Some(g), None) => g,
        (None, Some(f)) => f,
        (Some(g), Some(f)) if g == f => g,
        _ => return None,
    };
    (dimension != "session").then_some(dimension)
}

fn read_requests(
    conn: &Connection,
    q: &Query,
    from_ms: i64,
    to_ms: i64,
    out: &mut Slots,
) -> rusqlite::Result<()> {
    debug_assert_eq!(QUARTER_MS, 900_000);
    let read = Read {
        table: "requests",
        time_column: "at_ms",
        from: from_ms,
        to: to_ms,
        slot: q.bucket.map(|_| "(at_ms / 900000) * 900000"),
        key: q.group.map(Dimension::column),
        sums: SUMS_REQUESTS,
        conditions: q.filter.conditions(),
    };
    run(conn, &read, out)
}

fn run(conn: &Connection, read: &Read, out: &mut Slots) -> rusqlite::Result<()> {
    let Read {
        table,
        time_column,
        from,
        to,
        slot,
        key,
        sums,
        ..
    } = read;
    let mut sql = format!(
        "SELECT {} AS slot, {} AS key, {sums} FROM {table} WHERE {time_column} >= ?1 AND {time_column} < ?2",
        slot.unwrap_or("0"),
        key.unwrap_or("NULL"),
    );
    if *table == "requests" {
        // Only model calls (the rollups hold nothing else). The names are constants.
        let names: Vec<String> = store::REPORTED_ENDPOINTS
            .iter()
            .map(|name| format!("'{name}'"))
            .collect();
        sql.push_str(&format!(" AND endpoint IN ({})", names.join(", ")));
    }
    for (i, (column, _)) in read.conditions.iter().enumerate() {
        sql.push_str(&format!(" AND {column} = ?{}", i + 3));
    }
    // Group by the table's own columns where possible, so SQLite can walk the primary
    // key in order instead of sorting.
    let group: Vec<&str> = [
        slot.map(|_| *time_column)
            .filter(|_| *table != "requests")
            .or(slot.map(|_| "slot")),
        *key,
    ]
    .into_iter()
    .flatten()
    .collect();
    if !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    }
    let mut params: Vec<&dyn ToSql> = vec![from, to];
    for (_, value) in &read.conditions {
        params.push(value);
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params.as_slice())?;
    while let Some(row) = rows.next()? {
        let n =
            |i: usize| -> rusqlite::Result<i64> { Ok(row.get::<_, Option<i64>>(i)?.unwrap_or(0)) };
        out.push((
            row.get(0)?,
            row.get(1)?,
            Totals {
                requests: n(2)?,
                errors: n(3)?,
                incomplete: n(4)?,
                input_tokens: n(5)?,
                output_tokens: n(6)?,
                cache_read_tokens: n(7)?,
                cache_write_5m_tokens: n(8)?,
                cache_write_1h_tokens: n(9)?,
                web_search_requests: n(10)?,
                web_fetch_requests: n(11)?,
                cost_micros: n(12)?,
                unpriced: n(13)?,
                duration_ms: n(14)?,
                ttfb_ms: n(15)?,
                ttfb_count: n(16)?,
                reasoning_tokens: n(17)?,
            },
        ));
    }
    Ok(())
}

/// Maps slots to local periods, applies top-N, adds a zero row for each period without
/// requests and orders the rows.
fn assemble(q: &Query, periods: Vec<Period>, slots: Slots, source: &'static str) -> Report {
    let mut starts: HashMap<i64, Option<Timestamp>> = HashMap::new();
    let mut merged: BTreeMap<(Option<Timestamp>, Option<String>), Totals> = BTreeMap::new();
    let mut total = Totals::default();
    let mut by_key: HashMap<Option<String>, Totals> = HashMap::new();
    for (slot, key, totals) in slots {
        let start = q.bucket.and_then(|b| {
            *starts
                .entry(slot)
                .or_insert_with(|| bucket_start(b, &q.tz, timestamp(slot)))
        });
        total.add(&totals);
        by_key.entry(key.clone()).or_default().add(&totals);
        merged.entry((start, key)).or_default().add(&totals);
    }

    let kept: Option<HashSet<Option<String>>> = q.top.map(|n| {
        let mut ranked: Vec<_> = by_key.into_iter().collect();
        ranked.sort_by(|(ka, a), (kb, b)| {
            b.cost_micros
                .cmp(&a.cost_micros)
                .then(b.requests.cmp(&a.requests))
                .then(ka.cmp(kb))
        });
        ranked.into_iter().take(n).map(|(k, _)| k).collect()
    });

    let mut sums: BTreeMap<(Option<Timestamp>, bool, Option<String>), Totals> = BTreeMap::new();
    for ((start, key), totals) in merged {
        let other = kept.as_ref().is_some_and(|k| !k.contains(&key));
        let key = if other { None } else { key };
        sums.entry((start, other, key)).or_default().add(&totals);
    }

    let mut periods: BTreeMap<Timestamp, (Period, bool)> = periods
        .into_iter()
        .map(|p| (p.start.timestamp(), (p, false)))
        .collect();
    let mut period_of = |start: Option<Timestamp>| -> Option<Period> {
        let (b, start) = (q.bucket?, start?);
        let (period, used) = periods.entry(start).or_insert_with(|| {
            // Not among the range's periods: cannot happen for a slot in the range, but
            // a row is never dropped for it.
            let end = bucket_end(b, &q.tz, start).unwrap_or(start);
            let period = Period {
                bucket: b,
                start: start.to_zoned(q.tz.clone()),
                end: end.to_zoned(q.tz.clone()),
            };
            (period, false)
        });
        *used = true;
        Some(period.clone())
    };
    let mut rows: Vec<Row> = sums
        .into_iter()
        .map(|((start, other, key), totals)| Row {
            period: period_of(start),
            group: q.group.map(|dimension| GroupKey {
                dimension,
                key: if other {
                    None
                } else {
                    Some(key.unwrap_or_default())
                },
                other,
            }),
            totals,
        })
        .collect();
    rows.extend(
        periods
            .into_values()
            .filter(|(_, used)| !used)
            .map(|(period, _)| Row {
                period: Some(period),
                group: q.group.map(|dimension| GroupKey {
                    dimension,
                    key: None,
                    other: false,
                }),
                totals: Totals::default(),
            }),
    );
    rows.sort_by(|a, b| {
        a.start()
            .cmp(&b.start())
            .then(a.is_other().cmp(&b.is_other()))
            .then(b.totals.cost_micros.cmp(&a.totals.cost_micros))
            .then(b.totals.requests.cmp(&a.totals.requests))
            .then(a.key().cmp(&b.key()))
    });
    Report {
        since: timestamp(q.since_ms).to_zoned(q.tz.clone()),
        until: timestamp(q.until_ms).to_zoned(q.tz.clone()),
        time_zone: q.tz.iana_name().map(str::to_owned),
        bucket: q.bucket,
        group: q.group,
        top: q.top,
        rows,
        total,
        source,
    }
}

/// The first instant of the local hour, day or month containing `t`.
fn bucket_start(bucket: Bucket, tz: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    let zoned = t.to_zoned(tz.clone());
    match bucket {
        // Back by the minutes and seconds past the local hour. Rounding the civil time
        // instead would be ambiguous in the hour that happens twice when clocks go back.
        Bucket::Hour => {
            let time = zoned.time();
            let past = SignedDuration::new(
                i64::from(time.minute()) * 60 + i64::from(time.second()),
                time.subsec_nanosecond(),
            );
            t.checked_sub(past).ok()
        }
        Bucket::Day => Some(zoned.start_of_day().ok()?.timestamp()),
        Bucket::Month => Some(
            zoned
                .first_of_month()
                .ok()?
                .start_of_day()
                .ok()?
                .timestamp(),
        ),
    }
}

/// The end of the period starting at `start` (the next one's start).
pub fn bucket_end(bucket: Bucket, tz: &TimeZone, start: Timestamp) -> Option<Timestamp> {
    let zoned = start.to_zoned(tz.clone());
    let next = match bucket {
        // The local hour after the next 60 minutes: the same as adding an hour, except
        // across an offset change that is not a whole hour (Lord Howe Island's 30 minutes).
        Bucket::Hour => return bucket_start(bucket, tz, start.checked_add(1.hour()).ok()?),
        Bucket::Day => zoned.tomorrow().ok()?.start_of_day().ok()?,
        Bucket::Month => zoned
            .checked_add(1.month())
            .ok()?
            .first_of_month()
            .ok()?
            .start_of_day()
            .ok()?,
    };
    Some(next.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::store;
    use crate::ledger::{Tokens, UsageRecord};

    fn ts(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn rec(at: &str, user: &str, model: &str, cost: i64) -> UsageRecord {
        UsageRecord {
            at_ms: ts(at),
            user: user.into(),
            credential: "main".into(),
            endpoint: "messages".into(),
            model: model.into(),
            device: format!("{user}-laptop"),
            session: format!("{user}-s1"),
            status: 200,
            outcome: "complete".into(),
            tokens: Tokens {
                input: 100,
                output: 10,
                ..Tokens::default()
            },
            context_window: 200_000,
            cost_micros: Some(cost),
            duration_ms: 50,
            ttfb_ms: Some(5),
            messages: 1,
            ..UsageRecord::default()
        }
    }

    fn db(records: &[UsageRecord]) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store::open(&dir.path().join("usage.db")).unwrap();
        store::insert_batch(&mut conn, records).unwrap();
        (dir, conn)
    }

    fn query(since: &str, until: &str, tz: &str) -> Query {
        Query {
            since_ms: ts(since),
            until_ms: ts(until),
            tz: TimeZone::get(tz).unwrap(),
            bucket: None,
            group: None,
            top: None,
            filter: Filter::default(),
        }
    }

    /// (period start as local date-time text, key, requests, cost) of the rows with
    /// requests.
    fn summary(r: &Report, tz: &str) -> Vec<(String, String, i64, i64)> {
        let tz = TimeZone::get(tz).unwrap();
        r.rows
            .iter()
            .filter(|row| !row.is_empty())
            .map(|row| {
                let bucket = row
                    .start()
                    .map(|b| {
                        b.to_zoned(tz.clone())
                            .strftime("%Y-%m-%d %H:%M")
                            .to_string()
                    })
                    .unwrap_or_default();
                let key = if row.is_other() {
                    "(other)".into()
                } else {
                    row.key().unwrap_or_default().to_owned()
                };
                (bucket, key, row.totals.requests, row.totals.cost_micros)
            })
            .collect()
    }

    /// Every row's period label and requests, zero rows included.
    fn series(r: &Report) -> Vec<(String, i64)> {
        r.rows
            .iter()
            .map(|row| {
                let label = row.period.as_ref().map(Period::label).unwrap_or_default();
                (label, row.totals.requests)
            })
            .collect()
    }

    #[test]
    fn days_follow_the_callers_time_zone() {
        // 03:30 UTC on Nov 2 is still Nov 1 in New York (UTC-4 until 06:00 UTC that day).
        let (_d, conn) = db(&[
            rec("2026-11-01T12:00:00Z", "alice", "claude-opus-4-8", 100),
            rec("2026-11-02T03:30:00Z", "alice", "claude-opus-4-8", 20),
            rec("2026-11-02T12:00:00Z", "bob", "claude-opus-4-8", 3),
        ]);
        let mut q = query("2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z", "UTC");
        q.bucket = Some(Bucket::Day);
        let utc = report(&conn, &q).unwrap();
        assert_eq!(utc.source, "rollup");
        assert_eq!(
            summary(&utc, "UTC"),
            [
                ("2026-11-01 00:00".into(), String::new(), 1, 100),
                ("2026-11-02 00:00".into(), String::new(), 2, 23),
            ]
        );
        q.tz = TimeZone::get("America/New_York").unwrap();
        let ny = report(&conn, &q).unwrap();
        assert_eq!(
            summary(&ny, "America/New_York"),
            [
                ("2026-11-01 00:00".into(), String::new(), 2, 120),
                ("2026-11-02 00:00".into(), String::new(), 1, 3),
            ]
        );
        assert_eq!(ny.total.requests, 3);
        assert_eq!(ny.total.cost_micros, 123);
        // The local day of the DST change is 25 hours long.
        let nov1 = ny.rows.iter().find(|r| !r.is_empty()).unwrap();
        let period = nov1.period.as_ref().unwrap();
        assert_eq!(period.label(), "2026-11-01");
        let start = period.start.timestamp();
        assert_eq!(
            bucket_end(Bucket::Day, &q.tz, start),
            Some(period.end.timestamp())
        );
        assert_eq!(
            period.end.timestamp().as_second() - start.as_second(),
            25 * 3600
        );
        // Every New York day the range touches has its row (zero-filled): from the
        // evening of September 30th (UTC midnight) to November 30th.
        assert_eq!(ny.rows.len(), 1 + 31 + 30);
        assert_eq!(series(&ny)[0], ("2026-09-30".into(), 0));
        assert_eq!(series(&ny)[61], ("2026-11-30".into(), 0));
    }

    #[test]
    fn months_hours_groups_and_top_n() {
        let (_d, conn) = db(&[
            rec("2026-10-31T23:59:59Z", "carol", "claude-haiku-4-5", 1),
            rec("2026-11-01T00:00:00Z", "alice", "claude-opus-4-8", 500),
            rec("2026-11-01T00:10:00Z", "alice", "claude-sonnet-4-6", 50),
            rec("2026-11-01T01:10:00Z", "bob", "claude-sonnet-4-6", 70),
            rec("2026-11-20T10:00:00Z", "carol", "claude-haiku-4-5", 2),
        ]);
        let mut q = query("2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z", "UTC");
        q.bucket = Some(Bucket::Month);
        q.group = Some(Dimension::User);
        assert_eq!(
            summary(&report(&conn, &q).unwrap(), "UTC"),
            [
                ("2026-10-01 00:00".into(), "carol".into(), 1, 1),
                ("2026-11-01 00:00".into(), "alice".into(), 2, 550),
                ("2026-11-01 00:00".into(), "bob".into(), 1, 70),
                ("2026-11-01 00:00".into(), "carol".into(), 1, 2),
            ]
        );
        // Top 1 user over the whole range is alice; the others become "(other)".
        q.top = Some(1);
        assert_eq!(
            summary(&report(&conn, &q).unwrap(), "UTC"),
            [
                ("2026-10-01 00:00".into(), "(other)".into(), 1, 1),
                ("2026-11-01 00:00".into(), "alice".into(), 2, 550),
                ("2026-11-01 00:00".into(), "(other)".into(), 2, 72),
            ]
        );
        // Hours, grouped by model, filtered to alice.
        q.top = None;
        q.bucket = Some(Bucket::Hour);
        q.group = Some(Dimension::Model);
        q.filter.user = Some("alice".into());
        assert_eq!(
            summary(&report(&conn, &q).unwrap(), "UTC"),
            [
                ("2026-11-01 00:00".into(), "claude-opus-4-8".into(), 1, 500),
                ("2026-11-01 00:00".into(), "claude-sonnet-4-6".into(), 1, 50),
            ]
        );
        // No bucket: one row per group over the range, highest cost first.
        q.bucket = None;
        q.filter = Filter::default();
        q.group = Some(Dimension::Device);
        assert_eq!(
            summary(&report(&conn, &q).unwrap(), "UTC"),
            [
                (String::new(), "alice-laptop".into(), 2, 550),
                (String::new(), "bob-laptop".into(), 1, 70),
                (String::new(), "carol-laptop".into(), 2, 3),
            ]
        );
    }

    #[test]
    fn range_ends_off_the_hour_and_half_hour_zones_read_requests() {
        let (_d, conn) = db(&[
            rec("2026-11-01T10:05:00Z", "alice", "m", 1),
            rec("2026-11-01T10:40:00Z", "alice", "m", 10),
            rec("2026-11-01T11:20:00Z", "alice", "m", 100),
            rec("2026-11-01T12:50:00Z", "alice", "m", 1000),
            rec("2026-11-01T18:40:00Z", "alice", "m", 10000),
        ]);
        // 10:30 → 12:55: the 10:40 and 12:50 requests come from `requests`, 11:20 from the rollup.
        let mut q = query("2026-11-01T10:30:00Z", "2026-11-01T12:55:00Z", "UTC");
        let r = report(&conn, &q).unwrap();
        assert_eq!(r.source, "rollup+requests");
        assert_eq!((r.total.requests, r.total.cost_micros), (3, 1110));
        // India is UTC+5:30: 18:40 UTC is 00:10 on Nov 2 there, 12:50 UTC still Nov 1.
        q = query(
            "2026-11-01T00:00:00Z",
            "2026-11-03T00:00:00Z",
            "Asia/Kolkata",
        );
        q.bucket = Some(Bucket::Day);
        let r = report(&conn, &q).unwrap();
        assert_eq!(r.source, "requests");
        assert_eq!(
            summary(&r, "Asia/Kolkata"),
            [
                ("2026-11-01 00:00".into(), String::new(), 4, 1111),
                ("2026-11-02 00:00".into(), String::new(), 1, 10000),
            ]
        );
    }

    #[test]
    fn sessions_come_from_requests() {
        let mut a = rec("2026-11-01T10:05:00Z", "alice", "m", 1);
        a.session = "s-a".into();
        let mut b = rec("2026-11-01T10:06:00Z", "alice", "m", 2);
        b.session = "s-b".into();
        let mut c = rec("2026-11-01T11:06:00Z", "alice", "m", 4);
        c.session = "s-a".into();
        let (_d, conn) = db(&[a, b, c]);
        let mut q = query("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "UTC");
        q.group = Some(Dimension::Session);
        let r = report(&conn, &q).unwrap();
        assert_eq!(r.source, "requests");
        assert_eq!(
            summary(&r, "UTC"),
            [
                (String::new(), "s-a".into(), 2, 5),
                (String::new(), "s-b".into(), 1, 2)
            ]
        );
        q.group = None;
        q.filter.session = Some("s-b".into());
        assert_eq!(report(&conn, &q).unwrap().total.cost_micros, 2);
    }

    #[test]
    fn unpriced_errors_and_incomplete_are_counted_the_same_from_both_tables() {
        let mut unpriced = rec("2026-11-01T10:05:00Z", "alice", "mystery", 0);
        unpriced.cost_micros = None;
        let mut failed = rec("2026-11-01T10:06:00Z", "alice", "m", 0);
        failed.status = 429;
        failed.tokens = Tokens::default();
        failed.cost_micros = None;
        failed.ttfb_ms = None;
        let mut cut = rec("2026-11-01T10:07:00Z", "alice", "m", 7);
        cut.outcome = "client_closed".into();
        // Kept in `requests`, not counted in reports.
        let mut count_tokens = rec("2026-11-01T10:08:00Z", "alice", "m", 0);
        count_tokens.endpoint = "count_tokens".into();
        count_tokens.status = 500;
        let mut models = rec("2026-11-01T10:08:30Z", "alice", "m", 0);
        models.endpoint = "models".into();
        // OpenAI model calls count like `messages`, their reasoning tokens too.
        let mut responses = rec("2026-11-01T10:09:00Z", "alice", "gpt-5.4", 20);
        responses.endpoint = "responses".into();
        responses.tokens.reasoning = 40;
        let mut chat = rec("2026-11-01T10:10:00Z", "bob", "gpt-5.4", 30);
        chat.endpoint = "chat_completions".into();
        chat.tokens.reasoning = 2;
        let (_d, conn) = db(&[unpriced, failed, cut, count_tokens, models, responses, chat]);
        let q = query("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "UTC");
        let rollup = report(&conn, &q).unwrap();
        let requests = report_from(&conn, &q, true).unwrap();
        assert_eq!(rollup.source, "rollup");
        assert_eq!(requests.source, "requests");
        assert_eq!(rollup.total, requests.total);
        let t = rollup.total;
        assert_eq!(
            (
                t.requests,
                t.errors,
                t.incomplete,
                t.unpriced,
                t.cost_micros
            ),
            (5, 1, 1, 1, 57)
        );
        assert_eq!(t.reasoning_tokens, 42);
        assert_eq!((t.ttfb_count, t.mean_ttfb_ms()), (4, Some(5)));
    }

    /// The rollup and the requests table agree on any range, zone, bucket and group.
    #[test]
    fn rollup_and_requests_agree_on_random_history() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let start = ts("2026-03-01T00:00:00Z");
        let users = ["alice", "bob", "carol"];
        let models = ["claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5"];
        let records: Vec<UsageRecord> = (0..3000)
            .map(|_| {
                let mut r = rec(
                    "2026-03-01T00:00:00Z",
                    users[rng.random_range(0..3)],
                    models[rng.random_range(0..3)],
                    rng.random_range(0..5000),
                );
                r.at_ms = start + rng.random_range(0..60 * 24 * HOUR_MS);
                r.credential = ["a", "b"][rng.random_range(0..2)].into();
                r.tokens.input = rng.random_range(0..100_000);
                r.status = [200, 200, 200, 429, 500][rng.random_range(0..5)];
                r
            })
            .collect();
        let (_d, conn) = db(&records);
        for (i, tz) in [
            "UTC",
            "America/New_York",
            "Europe/Berlin",
            "Australia/Sydney",
        ]
        .iter()
        .enumerate()
        {
            for bucket in [
                None,
                Some(Bucket::Hour),
                Some(Bucket::Day),
                Some(Bucket::Month),
            ] {
                let since = start + rng.random_range(0..30 * 24 * HOUR_MS);
                let until = since + rng.random_range(2 * 24 * HOUR_MS..30 * 24 * HOUR_MS);
                let q = Query {
                    since_ms: since,
                    until_ms: until,
                    tz: TimeZone::get(tz).unwrap(),
                    bucket,
                    group: [
                        None,
                        Some(Dimension::User),
                        Some(Dimension::Model),
                        Some(Dimension::Credential),
                    ][i],
                    top: (i == 2).then_some(2),
                    filter: Filter {
                        user: (i == 1 || i == 3).then(|| "bob".to_string()),
                        ..Filter::default()
                    },
                };
                let fast = report(&conn, &q).unwrap();
                let slow = report_from(&conn, &q, true).unwrap();
                assert!(fast.source.starts_with("rollup"), "{tz} {bucket:?}");
                assert_eq!(fast.rows, slow.rows, "{tz} {bucket:?}");
                assert_eq!(fast.total, slow.total);
                assert!(fast.total.requests > 0);
            }
        }
    }

    /// Both tables answer the same, zero rows included; the report is returned.
    fn checked(conn: &Connection, q: &Query) -> Report {
        let fast = report(conn, q).unwrap();
        let slow = report_without_rollup(conn, q).unwrap();
        assert_eq!(fast.rows, slow.rows);
        assert_eq!(fast.total, slow.total);
        fast
    }

    #[test]
    fn hours_follow_berlins_clock_when_it_goes_back_and_forward() {
        // Clocks go back at 03:00 CEST on October 25th: 02:00–03:00 happens twice.
        let (_d, conn) = db(&[
            rec("2026-10-25T00:30:00Z", "alice", "m", 1), // 02:30 CEST
            rec("2026-10-25T01:30:00Z", "alice", "m", 2), // 02:30 CET
            rec("2026-10-25T01:40:00Z", "alice", "m", 4), // 02:40 CET
            rec("2026-03-29T00:30:00Z", "alice", "m", 8), // 01:30 CET, before the jump
            rec("2026-03-29T01:30:00Z", "alice", "m", 16), // 03:30 CEST, after it
        ]);
        // The whole local October 25th.
        let mut q = query(
            "2026-10-24T22:00:00Z",
            "2026-10-25T23:00:00Z",
            "Europe/Berlin",
        );
        q.bucket = Some(Bucket::Hour);
        let r = checked(&conn, &q);
        assert_eq!(r.source, "rollup");
        let hours = series(&r);
        assert_eq!(hours.len(), 25, "a 25-hour day: {hours:?}");
        assert_eq!(hours[0], ("2026-10-25 00:00".into(), 0));
        assert_eq!(hours[1], ("2026-10-25 01:00".into(), 0));
        assert_eq!(hours[2], ("2026-10-25 02:00 +02:00".into(), 1));
        assert_eq!(hours[3], ("2026-10-25 02:00 +01:00".into(), 2));
        assert_eq!(hours[4], ("2026-10-25 03:00".into(), 0));
        assert_eq!(hours[24], ("2026-10-25 23:00".into(), 0));
        assert!(r.rows.iter().all(|row| {
            let p = row.period.as_ref().unwrap();
            p.end.timestamp().as_second() - p.start.timestamp().as_second() == 3600
        }));
        // By day, the same day is one period of 25 hours.
        q.bucket = Some(Bucket::Day);
        let r = checked(&conn, &q);
        assert_eq!(series(&r), [("2026-10-25".to_owned(), 3)]);

        // Clocks go forward at 02:00 CET on March 29th: there is no 02:00.
        let mut q = query(
            "2026-03-28T23:00:00Z",
            "2026-03-29T22:00:00Z",
            "Europe/Berlin",
        );
        q.bucket = Some(Bucket::Hour);
        let hours = series(&checked(&conn, &q));
        assert_eq!(hours.len(), 23, "a 23-hour day: {hours:?}");
        assert_eq!(hours[1], ("2026-03-29 01:00".into(), 1));
        assert_eq!(hours[2], ("2026-03-29 03:00".into(), 1));
        assert!(!hours.iter().any(|(label, _)| label.contains(" 02:")));
        // Days around it: 24, 23 and 24 hours.
        let mut q = query(
            "2026-03-27T23:00:00Z",
            "2026-03-30T22:00:00Z",
            "Europe/Berlin",
        );
        q.bucket = Some(Bucket::Day);
        let r = checked(&conn, &q);
        let lengths: Vec<(String, i64)> = r
            .rows
            .iter()
            .map(|row| {
                let p = row.period.as_ref().unwrap();
                let hours =
                    (p.end.timestamp().as_second() - p.start.timestamp().as_second()) / 3600;
                (p.label(), hours)
            })
            .collect();
        assert_eq!(
            lengths,
            [
                ("2026-03-28".to_owned(), 24),
                ("2026-03-29".to_owned(), 23),
                ("2026-03-30".to_owned(), 24)
            ]
        );
        assert_eq!(series(&r)[1], ("2026-03-29".into(), 2));
    }

    #[test]
    fn months_are_zero_filled_from_the_first_touched_to_the_last() {
        let (_d, conn) = db(&[
            rec("2026-02-10T12:00:00Z", "alice", "m", 5),
            // Midnight of March 1st in Berlin is still February in UTC.
            rec("2026-02-28T23:30:00Z", "bob", "m", 7),
        ]);
        let mut q = query(
            "2026-01-15T00:00:00Z",
            "2026-04-10T00:00:00Z",
            "Europe/Berlin",
        );
        q.bucket = Some(Bucket::Month);
        let r = checked(&conn, &q);
        assert_eq!(
            series(&r),
            [
                ("2026-01".to_owned(), 0),
                ("2026-02".to_owned(), 1),
                ("2026-03".to_owned(), 1),
                ("2026-04".to_owned(), 0)
            ]
        );
        // The first period starts before the range, the last ends after it.
        let first = r.rows[0].period.as_ref().unwrap();
        assert_eq!(
            first.start.to_string(),
            "2026-01-01T00:00:00+01:00[Europe/Berlin]"
        );
        let last = r.rows[3].period.as_ref().unwrap();
        assert_eq!(
            last.end.to_string(),
            "2026-05-01T00:00:00+02:00[Europe/Berlin]"
        );
        assert_eq!(r.total.requests, 2);
    }

    #[test]
    fn an_empty_range_has_no_rows_and_a_quiet_one_only_zeros() {
        let (_d, conn) = db(&[rec("2026-11-01T10:00:00Z", "alice", "m", 1)]);
        let mut q = query("2026-11-05T00:00:00Z", "2026-11-05T00:00:00Z", "UTC");
        q.bucket = Some(Bucket::Day);
        q.group = Some(Dimension::User);
        let r = checked(&conn, &q);
        assert!(r.rows.is_empty());
        assert_eq!(r.total, Totals::default());
        // Three days without a request: three zero rows, no group key.
        q.until_ms = ts("2026-11-08T00:00:00Z");
        let r = checked(&conn, &q);
        assert_eq!(r.rows.len(), 3);
        assert!(
            r.rows
                .iter()
                .all(|row| row.is_empty() && row.key().is_none() && !row.is_other())
        );
        let json = serde_json::to_value(&r.rows[0]).unwrap();
        assert_eq!(json["bucket"], "2026-11-05");
        assert_eq!(json["user"], serde_json::Value::Null);
        assert_eq!(json["other"], false);
        assert_eq!(json["requests"], 0);
        assert_eq!(json["cache_hit_rate"], serde_json::Value::Null);
        // Not bucketed: no rows to fill.
        q.bucket = None;
        assert!(checked(&conn, &q).rows.is_empty());
    }

    #[test]
    fn top_n_keeps_the_costliest_groups_and_sums_the_rest_as_other_in_each_period() {
        let (_d, conn) = db(&[
            rec("2026-11-01T10:00:00Z", "alice", "m", 500),
            rec("2026-11-01T11:00:00Z", "carol", "m", 3),
            rec("2026-11-01T12:00:00Z", "dave", "m", 4),
            rec("2026-11-03T10:00:00Z", "bob", "m", 70),
            rec("2026-11-03T11:00:00Z", "dave", "m", 1),
            // Same cost as dave over the range, fewer requests: ranked after him.
            rec("2026-11-03T12:00:00Z", "erin", "m", 5),
        ]);
        let mut q = query("2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z", "UTC");
        q.bucket = Some(Bucket::Day);
        q.group = Some(Dimension::User);
        q.top = Some(3);
        let r = checked(&conn, &q);
        let rows: Vec<(String, String, i64)> = r
            .rows
            .iter()
            .map(|row| {
                let key = if row.is_other() {
                    "(other)".to_owned()
                } else {
                    row.key().unwrap_or("-").to_owned()
                };
                (
                    row.period.as_ref().unwrap().label(),
                    key,
                    row.totals.cost_micros,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-11-01".to_owned(), "alice".to_owned(), 500),
                ("2026-11-01".to_owned(), "dave".to_owned(), 4),
                ("2026-11-01".to_owned(), "(other)".to_owned(), 3),
                ("2026-11-02".to_owned(), "-".to_owned(), 0),
                ("2026-11-03".to_owned(), "bob".to_owned(), 70),
                ("2026-11-03".to_owned(), "dave".to_owned(), 1),
                ("2026-11-03".to_owned(), "(other)".to_owned(), 5),
            ]
        );
        assert_eq!(r.total.cost_micros, 583, "other is in the total too");
        // As many as there are groups: no `other`. None: everything is `other`.
        q.top = Some(5);
        assert!(!checked(&conn, &q).rows.iter().any(Row::is_other));
        q.top = Some(0);
        q.bucket = None;
        let r = checked(&conn, &q);
        assert_eq!(r.rows.len(), 1);
        assert!(r.rows[0].is_other());
        assert_eq!(r.rows[0].totals.cost_micros, 583);
    }

    #[test]
    fn too_many_periods_are_refused_before_any_query() {
        let (_d, conn) = db(&[]);
        let mut q = query("2000-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "UTC");
        q.bucket = Some(Bucket::Hour);
        let error = report(&conn, &q).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the range holds more than 100000 periods of one hour; choose a shorter range or longer periods"
        );
        q.bucket = Some(Bucket::Day);
        assert_eq!(report(&conn, &q).unwrap().rows.len(), 9497);
    }

    #[test]
    fn the_cache_hit_rate_is_cache_reads_over_all_input() {
        let t = Totals {
            input_tokens: 100,
            cache_write_5m_tokens: 50,
            cache_write_1h_tokens: 50,
            cache_read_tokens: 800,
            output_tokens: 999,
            ..Totals::default()
        };
        assert_eq!(t.cache_hit_rate(), Some(0.8));
        assert_eq!(Totals::default().cache_hit_rate(), None);
        let output_only = Totals {
            output_tokens: 5,
            ..Totals::default()
        };
        assert_eq!(output_only.cache_hit_rate(), None);
    }

    #[test]
    fn a_report_serializes_with_its_question_its_rows_and_its_total() {
        let mut cached = rec(
            "2026-11-01T10:00:00Z",
            "alice",
            "claude-opus-4-8",
            1_234_567,
        );
        cached.tokens.cache_read = 300;
        let (_d, conn) = db(&[cached, rec("2026-11-02T10:00:00Z", "bob", "m", 5)]);
        let mut q = query(
            "2026-11-01T00:00:00Z",
            "2026-11-03T00:00:00Z",
            "Europe/Berlin",
        );
        q.bucket = Some(Bucket::Day);
        q.group = Some(Dimension::User);
        q.top = Some(1);
        let json = serde_json::to_value(report(&conn, &q).unwrap()).unwrap();
        assert_eq!(json["since"], "2026-11-01T01:00:00+01:00[Europe/Berlin]");
        assert_eq!(json["until"], "2026-11-03T01:00:00+01:00[Europe/Berlin]");
        assert_eq!(json["time_zone"], "Europe/Berlin");
        assert_eq!(json["bucket"], "day");
        assert_eq!(json["group"], "user");
        assert_eq!(json["top"], 1);
        assert!(json.get("source").is_none());
        assert_eq!(
            json["rows"][0],
            serde_json::json!({
                "bucket": "2026-11-01",
                "bucket_start": "2026-11-01T00:00:00+01:00[Europe/Berlin]",
                "bucket_end": "2026-11-02T00:00:00+01:00[Europe/Berlin]",
                "user": "alice",
                "other": false,
                "requests": 1,
                "errors": 0,
                "incomplete": 0,
                "input_tokens": 100,
                "output_tokens": 10,
                "cache_read_tokens": 300,
                "cache_write_5m_tokens": 0,
                "cache_write_1h_tokens": 0,
                "total_tokens": 410,
                "web_search_requests": 0,
                "web_fetch_requests": 0,
                "reasoning_tokens": 0,
                "cost_micros": 1_234_567,
                "cost_usd": 1.234567,
                "unpriced_requests": 0,
                "mean_duration_ms": 50,
                "mean_ttfb_ms": 5,
                "cache_hit_rate": 0.75,
            })
        );
        assert_eq!(json["rows"][1]["user"], serde_json::Value::Null);
        assert_eq!(json["rows"][1]["other"], true);
        assert_eq!(json["rows"][1]["cost_micros"], 5);
        assert_eq!(
            json["rows"].as_array().unwrap().len(),
            3,
            "Nov 1, 2 and 3 in Berlin"
        );
        assert_eq!(json["total"]["requests"], 2);
        assert_eq!(json["total"]["cost_micros"], 1_234_572);
    }
}
