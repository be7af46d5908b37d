//! sing-box ccm's `usages_path` statistics file, kept in its exact layout so that
//! people moving from sing-box keep their scripts (protocol.md §6.4).
//!
//! The file is one JSON object, written the way Go's `json.MarshalIndent(v, "", "  ")`
//! writes sing-box's structs: 2-space indentation, fields in struct order, map keys
//! sorted, no trailing newline, `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026`,
//! floats in Go's shortest form (`3`, not `3.0`).
//!
//! ```text
//! {
//!   "last_updated": "2026-03-17T09:02:03.45+08:00",      time of the last counted request
//!   "costs": {
//!     "total_usd": 4.37,                                 sum of the combinations' totals
//!     "by_user": {"alice": 1.23},                        always present, maybe {}
//!     "by_week": {"2026-03-09 08:00:00 UTC+8": 4.24},    omitted when empty
//!     "by_user_and_week": {"alice": {"…": 1.23}}         omitted when empty
//!   },
//!   "combinations": [                                    one per (model, context window, week)
//!     {"model", "context_window", "week_start_unix" (omitted when 0), "total": Stats, "by_user": {user: Stats}}
//!   ]
//! }
//! Stats = request_count, messages_count, input_tokens, output_tokens, cache_read_input_tokens,
//!         cache_creation_input_tokens, cache_creation_5m_input_tokens (omitted when 0),
//!         cache_creation_1h_input_tokens (omitted when 0), cost_usd
//! ```
//!
//! Money is kept in integer micro-dollars and turned into dollars only when written:
//! every Stats' `cost_usd` is its micro-dollars rounded to cents (half away from zero,
//! like Go's `math.Round`), and every figure in `costs` is a sum of those rounded
//! values, which is what sing-box's "sum the rounded floats, round again" amounts to.
//! sing-box prices the summed tokens with its own table; Carpool sums the cost of each
//! request from its own price table (unknown price: tokens counted, no cost).
//!
//! A week is the account's weekly rate-limit window: `week_start_unix` is the
//! `anthropic-ratelimit-unified-7d-reset` of the response minus seven days, 0 when the
//! response had none. The week keys of `costs` are that instant in the server's local
//! time zone, `YYYY-MM-DD HH:MM:SS UTC+8` (or `UTC+5:30`, `UTC-3`, `UTC+0`).
//!
//! Loading reads `last_updated` and `combinations` only (`costs` is derived), like
//! sing-box, but keeps each Stats' `cost_usd` as the history's cost. Saving follows
//! sing-box's policy: at most once per interval (a minute) while there are changes,
//! and once more at shutdown; see [`run_saver`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Deserializer};

use super::UsageRecord;

/// Length of the weekly rate-limit window, in seconds.
const WEEK_SECONDS: i64 = 7 * 24 * 60 * 60;
/// Mode of the written file, as sing-box writes it.
const FILE_MODE: u32 = 0o644;
/// What Go writes for a zero `time.Time` (a file nothing was ever recorded in).
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Token counts and cost of a group of requests: sing-box's `UsageStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct Stats {
    request_count: u64,
    messages_count: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_creation_5m_input_tokens: u64,
    cache_creation_1h_input_tokens: u64,
    /// Micro-dollars; the file holds dollars (`cost_usd`).
    #[serde(rename = "cost_usd", deserialize_with = "usd_to_micros")]
    cost_micros: i64,
}

impl Stats {
    fn add(&mut self, record: &UsageRecord) {
        let tokens = &record.tokens;
        self.request_count += 1;
        self.messages_count += u64::from(record.messages);
        self.input_tokens += tokens.input;
        self.output_tokens += tokens.output;
        self.cache_read_input_tokens += tokens.cache_read;
        self.cache_creation_input_tokens += tokens.cache_write();
        self.cache_creation_5m_input_tokens += tokens.cache_write_5m;
        self.cache_creation_1h_input_tokens += tokens.cache_write_1h;
        self.cost_micros += record.cost_micros.unwrap_or(0);
    }

    fn cents(&self) -> i64 {
        micros_to_cents(self.cost_micros)
    }

    fn to_json(&self) -> Json {
        let mut fields = vec![
            field("request_count", Json::number(self.request_count)),
            field("messages_count", Json::number(self.messages_count)),
            field("input_tokens", Json::number(self.input_tokens)),
            field("output_tokens", Json::number(self.output_tokens)),
            field(
                "cache_read_input_tokens",
                Json::number(self.cache_read_input_tokens),
            ),
            field(
                "cache_creation_input_tokens",
                Json::number(self.cache_creation_input_tokens),
            ),
        ];
        if self.cache_creation_5m_input_tokens != 0 {
            fields.push(field(
                "cache_creation_5m_input_tokens",
                Json::number(self.cache_creation_5m_input_tokens),
            ));
        }
        if self.cache_creation_1h_input_tokens != 0 {
            fields.push(field(
                "cache_creation_1h_input_tokens",
                Json::number(self.cache_creation_1h_input_tokens),
            ));
        }
        fields.push(field("cost_usd", Json::usd(self.cents())));
        Json::Object(fields)
    }
}

/// One (model, context window, week) group: sing-box's `CostCombination`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct Combination {
    model: String,
    context_window: u32,
    week_start_unix: i64,
    total: Stats,
    by_user: BTreeMap<String, Stats>,
}

impl Combination {
    fn to_json(&self) -> Json {
        let mut fields = vec![
            field("model", Json::Str(self.model.clone())),
            field("context_window", Json::number(self.context_window)),
        ];
        if self.week_start_unix != 0 {
            fields.push(field("week_start_unix", Json::number(self.week_start_unix)));
        }
        fields.push(field("total", self.total.to_json()));
        let by_user = self
            .by_user
            .iter()
            .map(|(user, stats)| (user.clone(), stats.to_json()))
            .collect();
        fields.push(field("by_user", Json::Object(by_user)));
        Json::Object(fields)
    }
}

/// The fields of the file that loading reads.
#[derive(Deserialize)]
struct FileContent {
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    combinations: Vec<Combination>,
}

/// The aggregate behind one usages_path file.
#[derive(Debug, Clone, Default)]
pub struct CcmUsage {
    /// When the last counted request finished; `None` before the first.
    last_updated: Option<Timestamp>,
    /// The UTC offset `last_updated` was read with from a file, kept so that a loaded
    /// file is written back the way it was; cleared once a request is counted.
    loaded_offset: Option<Offset>,
    /// In order of first appearance, as sing-box appends them.
    combinations: Vec<Combination>,
}

impl CcmUsage {
    pub fn new() -> CcmUsage {
        CcmUsage::default()
    }

    /// Reads an existing file (only `last_updated` and `combinations`, as sing-box
    /// does); a missing file is empty; a corrupt file is an error naming the path.
    pub fn load(path: &Path) -> io::Result<CcmUsage> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CcmUsage::new()),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading {}: {e}", path.display()),
                ));
            }
        };
        let corrupt = |message: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a ccm usage file: {message}", path.display()),
            )
        };
        let content: FileContent =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let (last_updated, loaded_offset) = match content.last_updated.as_deref() {
            None | Some(GO_ZERO_TIME) => (None, None),
            Some(text) => {
                let (at, offset) = parse_go_time(text)
                    .map_err(|e| corrupt(format!("last_updated {text:?}: {e}")))?;
                (Some(at), Some(offset))
            }
        };
        Ok(CcmUsage {
            last_updated,
            loaded_offset,
            combinations: content.combinations,
        })
    }

    /// Adds one request (only if record.has_usage(), as sing-box counts). Combination
    /// key = (model, context_window, week_start_unix) where week_start_unix =
    /// record.week_reset - 604800 (0 when week_reset is None). Users: record.user;
    /// empty user → only `total`.
    pub fn add(&mut self, record: &UsageRecord) {
        if !counts(record) {
            return;
        }
        let week_start_unix = record.week_reset.map_or(0, |reset| reset - WEEK_SECONDS);
        let index = match self.combinations.iter().position(|c| {
            c.model == record.model
                && c.context_window == record.context_window
                && c.week_start_unix == week_start_unix
        }) {
            Some(index) => index,
            None => {
                self.combinations.push(Combination {
                    model: record.model.clone(),
                    context_window: record.context_window,
                    week_start_unix,
                    ..Combination::default()
                });
                self.combinations.len() - 1
            }
        };
        let combination = &mut self.combinations[index];
        combination.total.add(record);
        if !record.user.is_empty() {
            combination
                .by_user
                .entry(record.user.clone())
                .or_default()
                .add(record);
        }
        // sing-box stamps the time the response ended.
        let finished_ms = record.at_ms.saturating_add(i64::from(record.duration_ms));
        if let Ok(at) = Timestamp::from_millisecond(finished_ms) {
            self.last_updated = Some(at);
            self.loaded_offset = None;
        }
    }

    /// The file's JSON text, with week keys formatted in `tz`.
    pub fn to_json(&self, tz: &TimeZone) -> String {
        let mut total_cents = 0;
        let mut by_user: BTreeMap<&str, i64> = BTreeMap::new();
        let mut by_week: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_user_and_week: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
        let mut combinations = Vec::with_capacity(self.combinations.len());
        for combination in &self.combinations {
            let cents = combination.total.cents();
            total_cents += cents;
            // sing-box leaves combinations without a week out of the weekly figures.
            let week = (combination.week_start_unix > 0)
                .then(|| week_key(combination.week_start_unix, tz));
            if let Some(week) = &week {
                *by_week.entry(week.clone()).or_default() += cents;
            }
            for (user, stats) in &combination.by_user {
                let cents = stats.cents();
                *by_user.entry(user).or_default() += cents;
                if let Some(week) = &week {
                    *by_user_and_week
                        .entry(user)
                        .or_default()
                        .entry(week.clone())
                        .or_default() += cents;
                }
            }
            combinations.push(combination.to_json());
        }

        let mut costs = vec![
            field("total_usd", Json::usd(total_cents)),
            field("by_user", usd_object(by_user)),
        ];
        if !by_week.is_empty() {
            costs.push(field("by_week", usd_object(by_week)));
        }
        if !by_user_and_week.is_empty() {
            let object = by_user_and_week
                .into_iter()
                .map(|(user, weeks)| (user.to_owned(), usd_object(weeks)))
                .collect();
            costs.push(field("by_user_and_week", Json::Object(object)));
        }

        let last_updated = match self.last_updated {
            None => GO_ZERO_TIME.to_owned(),
            Some(at) => {
                let offset = self.loaded_offset.unwrap_or_else(|| tz.to_offset(at));
                go_time(at, offset)
            }
        };
        Json::Object(vec![
            field("last_updated", Json::Str(last_updated)),
            field("costs", Json::Object(costs)),
            field("combinations", Json::Array(combinations)),
        ])
        .render()
    }
}

/// Whether sing-box would count this request: an upstream 200 that named a model,
/// needed a context window and reported input or output tokens.
fn counts(record: &UsageRecord) -> bool {
    record.status == 200
        && record.has_usage()
        && !record.model.is_empty()
        && record.context_window > 0
}

/// A usages_path file kept up to date: sing-box's save policy.
pub struct CcmFile {
    path: PathBuf,
    credential: Option<String>,
    time_zone: TimeZone,
    state: Mutex<FileState>,
    /// Held for a whole save, so two saves never write out of order.
    saving: Mutex<()>,
}

struct FileState {
    usage: CcmUsage,
    /// Something was counted since the last successful save.
    dirty: bool,
}

impl CcmFile {
    /// `credential`: Some(tag) to count only that credential's requests (sing-box's
    /// per-credential usages_path), None for all. Loads what the file holds; week keys
    /// and `last_updated` are written in the system's time zone.
    pub fn open(path: PathBuf, credential: Option<String>) -> io::Result<CcmFile> {
        let usage = CcmUsage::load(&path)?;
        Ok(CcmFile {
            path,
            credential,
            time_zone: TimeZone::system(),
            state: Mutex::new(FileState {
                usage,
                dirty: false,
            }),
            saving: Mutex::new(()),
        })
    }

    /// Writes times in `tz` instead of the system's time zone.
    pub fn with_time_zone(mut self, tz: TimeZone) -> CcmFile {
        self.time_zone = tz;
        self
    }

    /// Counts one request (if it is this file's credential's and sing-box would count
    /// it). Cheap: no I/O.
    pub fn record(&self, record: &UsageRecord) {
        if let Some(credential) = &self.credential {
            if *credential != record.credential {
                return;
            }
        }
        if !counts(record) {
            return;
        }
        let mut state = self.state();
        state.usage.add(record);
        state.dirty = true;
    }

    /// Writes the file atomically (mode 0644) if something was counted since the last
    /// save; otherwise does nothing.
    pub fn save(&self) -> io::Result<()> {
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let json = {
            let mut state = self.state();
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            state.usage.to_json(&self.time_zone)
        };
        crate::fsutil::write_atomic(&self.path, json.as_bytes(), FILE_MODE).map_err(|e| {
            // Try again next time.
            self.state().dirty = true;
            io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, FileState> {
        // A panic elsewhere while holding the lock leaves consistent counts behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Saves every `interval` (sing-box: at most once a minute) while there are changes,
/// and once more when `shutdown` completes. Errors are logged (tracing::warn with the
/// path), never panics.
pub async fn run_saver(
    files: Vec<Arc<CcmFile>>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the first save is one interval away.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => save_all(&files).await,
        }
    }
    save_all(&files).await;
}

/// Saves each file on the blocking pool (a save syncs to disk), logging failures.
async fn save_all(files: &[Arc<CcmFile>]) {
    for file in files {
        let saving = Arc::clone(file);
        match tokio::task::spawn_blocking(move || saving.save()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(
                path = %file.path().display(),
                %error,
                "could not save the ccm usage file"
            ),
            Err(error) => tracing::warn!(
                path = %file.path().display(),
                %error,
                "saving the ccm usage file failed"
            ),
        }
    }
}

/// Micro-dollars to cents, rounding half away from zero (Go's `math.Round`).
fn micros_to_cents(micros: i64) -> i64 {
    let cents = (micros.unsigned_abs() + 5_000) / 10_000;
    let cents = i64::try_from(cents).unwrap_or(i64::MAX);
    if micros < 0 { -cents } else { cents }
}

/// Dollars from a file, as micro-dollars.
fn usd_to_micros<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let usd = f64::deserialize(deserializer)?;
    // `as` saturates; no cost in a real file comes near.
    Ok((usd * 1_000_000.0).round() as i64)
}

/// A cents amount the way Go prints the float64 `cents / 100`: the shortest decimal
/// that reads back as the same number (`3`, `0.1`, `1234.56`), which for such a float
/// is the decimal amount itself.
fn format_usd(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let (whole, fraction) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
    match fraction {
        0 => format!("{sign}{whole}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{}", f / 10),
        f => format!("{sign}{whole}.{f:02}"),
    }
}

/// The key of a week in `costs`: its start in `tz`, `2026-03-09 08:00:00 UTC+8`.
fn week_key(week_start_unix: i64, tz: &TimeZone) -> String {
    let Ok(start) = Timestamp::from_second(week_start_unix) else {
        // Beyond year 9999: no real file has one; keep it distinct and readable.
        return week_start_unix.to_string();
    };
    let offset = tz.to_offset(start);
    let local = offset.to_datetime(start);
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let (hours, minutes) = (seconds.abs() / 3600, seconds.abs() % 3600 / 60);
    let mut key = local.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    if minutes == 0 {
        let _ = write!(key, "{sign}{hours}");
    } else {
        let _ = write!(key, "{sign}{hours}:{minutes:02}");
    }
    key
}

/// `at` the way Go's `time.Time` marshals to JSON (RFC 3339 with nanoseconds, trailing
/// zeros dropped, `Z` for a zero offset): `2026-03-09T08:00:00.123+08:00`.
fn go_time(at: Timestamp, offset: Offset) -> String {
    let mut text = offset
        .to_datetime(at)
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let nanos = at.subsec_nanosecond().unsigned_abs();
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    let seconds = offset.seconds();
    if seconds == 0 {
        text.push('Z');
    } else {
        // Go prints whole minutes only.
        let minutes = seconds.abs() / 60;
        let sign = if seconds < 0 { '-' } else { '+' };
        let _ = write!(text, "{sign}{:02}:{:02}", minutes / 60, minutes % 60);
    }
    text
}

/// Reads a Go `time.Time` JSON string: the instant and the offset it was written with.
fn parse_go_time(text: &str) -> Result<(Timestamp, Offset), jiff::Error> {
    let at: Timestamp = text.parse()?;
    let offset = jiff::fmt::temporal::Pieces::parse(text)?
        .to_numeric_offset()
        .unwrap_or(Offset::UTC);
    Ok((at, offset))
}

/// A JSON value in the shape Go's encoder writes it.
enum Json {
    /// A number, already formatted.
    Number(String),
    Str(String),
    /// Fields in order (Go writes struct fields in declaration order and map keys
    /// sorted; the builder decides).
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
}

fn field(name: &str, value: Json) -> (String, Json) {
    (name.to_owned(), value)
}

/// A map of dollar amounts (cents in) as a JSON object.
fn usd_object<K: Into<String>>(cents: BTreeMap<K, i64>) -> Json {
    Json::Object(
        cents
            .into_iter()
            .map(|(key, cents)| (key.into(), Json::usd(cents)))
            .collect(),
    )
}

impl Json {
    fn number(value: impl std::fmt::Display) -> Json {
        Json::Number(value.to_string())
    }

    fn usd(cents: i64) -> Json {
        Json::Number(format_usd(cents))
    }

    /// The text `json.MarshalIndent(value, "", "  ")` produces.
    fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            Json::Number(text) => out.push_str(text),
            Json::Str(text) => write_go_string(out, text),
            Json::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Object(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    new_line(out, depth + 1);
                    write_go_string(out, name);
                    out.push_str(": ");
                    value.write(out, depth + 1);
                }
                new_line(out, depth);
                out.push('}');
            }
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    new_line(out, depth + 1);
                    item.write(out, depth + 1);
                }
                new_line(out, depth);
                out.push(']');
            }
        }
    }
}

fn new_line(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// A JSON string escaped the way Go's `encoding/json` escapes it (Go 1.22 and later):
/// HTML-sensitive `<`, `>`, `&` and the JavaScript line separators U+2028/U+2029 as
/// `\uXXXX`, `\b \f \n \r \t` short, other control characters as `\u00xx`.
fn write_go_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
