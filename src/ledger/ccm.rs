//! sing-box ccm's `usages_path` statistics file, kept in its exact layout so that
//! people moving from sing-box keep their scripts (docs/protocol.md §6.4).
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
//! sing-box, but keeps each Stats' `cost_usd` as the history's cost (sing-box re-prices
//! the loaded tokens instead); the file holds cents, so loaded history is worth its
//! rounded cents from then on. Saving follows sing-box's policy: at most once per
//! interval (a minute) while there are changes, and once more at shutdown; see
//! [`run_saver`].

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
use super::ocm::OcmUsage;
use crate::tasks::lock;

/// Length of the weekly rate-limit window, in seconds.
pub(super) const WEEK_SECONDS: i64 = 7 * 24 * 60 * 60;
/// Mode of the written file. sing-box writes 0644; the file names every user and what
/// they spent, so Carpool keeps it to its owner.
const FILE_MODE: u32 = 0o600;
/// What Go writes for a zero `time.Time` (a file nothing was ever recorded in).
pub(super) const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

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
        let week_start_unix = record
            .week_reset
            .map_or(0, |reset| reset.saturating_sub(WEEK_SECONDS));
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

/// Which sing-box layout a usages_path file has: ccm's for Claude accounts, ocm's for
/// Codex and OpenAI accounts ([`super::ocm`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    #[default]
    Ccm,
    Ocm,
}

/// What a file aggregates, in its layout.
enum Aggregate {
    Ccm(CcmUsage),
    Ocm(OcmUsage),
}

impl Aggregate {
    fn load(path: &Path, layout: Layout) -> io::Result<Aggregate> {
        Ok(match layout {
            Layout::Ccm => Aggregate::Ccm(CcmUsage::load(path)?),
            Layout::Ocm => Aggregate::Ocm(OcmUsage::load(path)?),
        })
    }

    fn counts(&self, record: &UsageRecord) -> bool {
        match self {
            Aggregate::Ccm(_) => counts(record),
            Aggregate::Ocm(_) => super::ocm::counts(record),
        }
    }

    fn add(&mut self, record: &UsageRecord) {
        match self {
            Aggregate::Ccm(usage) => usage.add(record),
            Aggregate::Ocm(usage) => usage.add(record),
        }
    }

    fn to_json(&self, tz: &TimeZone) -> String {
        match self {
            Aggregate::Ccm(usage) => usage.to_json(tz),
            Aggregate::Ocm(usage) => usage.to_json(tz),
        }
    }
}

/// A usages_path file kept up to date: sing-box's save policy. Its layout is ccm's
/// ([`CcmFile::open`]) or ocm's ([`CcmFile::open_with_layout`]).
pub struct CcmFile {
    path: PathBuf,
    credential: Option<String>,
    time_zone: TimeZone,
    state: Mutex<FileState>,
    /// Held for a whole save, so two saves never write out of order.
    saving: Mutex<()>,
}

struct FileState {
    usage: Aggregate,
    /// Something was counted since the last successful save.
    dirty: bool,
}

impl CcmFile {
    /// `credential`: Some(tag) to count only that credential's requests (sing-box's
    /// per-credential usages_path), None for all. Loads what the file holds; week keys
    /// and `last_updated` are written in the system's time zone.
    pub fn open(path: PathBuf, credential: Option<String>) -> io::Result<CcmFile> {
        CcmFile::open_with_layout(path, credential, Layout::Ccm)
    }

    /// As [`CcmFile::open`], in `layout`: [`Layout::Ocm`] for a Codex or OpenAI account's
    /// file (sing-box ocm's `usages_path`).
    pub fn open_with_layout(
        path: PathBuf,
        credential: Option<String>,
        layout: Layout,
    ) -> io::Result<CcmFile> {
        let usage = Aggregate::load(&path, layout)?;
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
        if let Some(credential) = &self.credential
            && *credential != record.credential
        {
            return;
        }
        let mut state = self.state();
        if !state.usage.counts(record) {
            return;
        }
        state.usage.add(record);
        state.dirty = true;
    }

    /// Writes the file atomically (mode 0600) if something was counted since the last
    /// save; otherwise does nothing.
    pub fn save(&self) -> io::Result<()> {
        let _saving = lock(&self.saving);
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
        // Consistent counts whatever a panic interrupted: see the policy in `crate::tasks`.
        lock(&self.state)
    }
}

/// Saves every `interval` (sing-box: at most once a minute) while there are changes,
/// and once more when `shutdown` completes. Errors are logged (tracing::warn with the
/// path), never panics. (sing-box saves a change at once when its last save is a
/// minute old; here a change waits for the next tick, at most one interval.)
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
pub(super) fn micros_to_cents(micros: i64) -> i64 {
    let cents = (micros.unsigned_abs() + 5_000) / 10_000;
    let cents = i64::try_from(cents).unwrap_or(i64::MAX);
    if micros < 0 { -cents } else { cents }
}

/// Dollars from a file, as micro-dollars.
pub(super) fn usd_to_micros<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
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
pub(super) fn week_key(week_start_unix: i64, tz: &TimeZone) -> String {
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
pub(super) fn go_time(at: Timestamp, offset: Offset) -> String {
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
pub(super) fn parse_go_time(text: &str) -> Result<(Timestamp, Offset), jiff::Error> {
    let at: Timestamp = text.parse()?;
    let offset = jiff::fmt::temporal::Pieces::parse(text)?
        .to_numeric_offset()
        .unwrap_or(Offset::UTC);
    Ok((at, offset))
}

/// A JSON value in the shape Go's encoder writes it.
pub(super) enum Json {
    /// A number, already formatted.
    Number(String),
    Str(String),
    /// Fields in order (Go writes struct fields in declaration order and map keys
    /// sorted; the builder decides).
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
}

pub(super) fn field(name: &str, value: Json) -> (String, Json) {
    (name.to_owned(), value)
}

/// A map of dollar amounts (cents in) as a JSON object.
pub(super) fn usd_object<K: Into<String>>(cents: BTreeMap<K, i64>) -> Json {
    Json::Object(
        cents
            .into_iter()
            .map(|(key, cents)| (key.into(), Json::usd(cents)))
            .collect(),
    )
}

impl Json {
    pub(super) fn number(value: impl std::fmt::Display) -> Json {
        Json::Number(value.to_string())
    }

    pub(super) fn usd(cents: i64) -> Json {
        Json::Number(format_usd(cents))
    }

    /// The text `json.MarshalIndent(value, "", "  ")` produces.
    pub(super) fn render(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Tokens;

    /// 2026-03-09T00:00:00Z, a Monday: the start of week A.
    const WEEK_A: i64 = 1_773_014_400;
    /// 2026-03-16T00:00:00Z: the start of week B.
    const WEEK_B: i64 = WEEK_A + WEEK_SECONDS;

    fn tz(hours: i8, minutes: i8) -> TimeZone {
        let seconds = i32::from(hours) * 3600 + i32::from(minutes) * 60;
        TimeZone::fixed(Offset::from_seconds(seconds).unwrap())
    }

    /// A counted request: 200, 200K window, arrived 2026-03-10T04:00:00Z.
    fn request(user: &str, model: &str, week_start: Option<i64>) -> UsageRecord {
        UsageRecord {
            at_ms: 1_773_115_200_000,
            user: user.to_owned(),
            credential: "main".to_owned(),
            endpoint: "messages".to_owned(),
            model: model.to_owned(),
            status: 200,
            outcome: "complete".to_owned(),
            context_window: 200_000,
            messages: 1,
            week_reset: week_start.map(|start| start + WEEK_SECONDS),
            ..UsageRecord::default()
        }
    }

    fn tokens(input: u64, output: u64, cache_read: u64, w5m: u64, w1h: u64) -> Tokens {
        Tokens {
            input,
            output,
            cache_read,
            cache_write_5m: w5m,
            cache_write_1h: w1h,
            ..Tokens::default()
        }
    }

    /// The records behind [`EXPECTED_PLUS_8`], with the figures worked out by hand.
    fn sample_records() -> Vec<UsageRecord> {
        // Combination 1: claude-sonnet-4-6, 200K, week A.
        let r1 = UsageRecord {
            tokens: tokens(1000, 500, 2000, 100, 0),
            messages: 3,
            cost_micros: Some(1_230_000),
            ..request("alice", "claude-sonnet-4-6", Some(WEEK_A))
        };
        let r2 = UsageRecord {
            tokens: tokens(10, 20, 0, 0, 400),
            messages: 5,
            cost_micros: Some(4_000),
            ..request("alice", "claude-sonnet-4-6", Some(WEEK_A))
        };
        let r3 = UsageRecord {
            tokens: tokens(5, 5, 0, 0, 0),
            cost_micros: Some(4_000),
            ..request("bob", "claude-sonnet-4-6", Some(WEEK_A))
        };
        // Not counted: no input or output tokens (sing-box's rule).
        let cache_only = UsageRecord {
            tokens: tokens(0, 0, 50, 0, 0),
            cost_micros: Some(1_000_000),
            ..request("alice", "claude-sonnet-4-6", Some(WEEK_A))
        };
        // Combination 2: claude-opus-4-6, 1M, week A, anonymous.
        let r4 = UsageRecord {
            tokens: tokens(250_000, 1000, 60_000, 0, 0),
            context_window: 1_000_000,
            messages: 40,
            cost_micros: Some(3_000_000),
            ..request("", "claude-opus-4-6", Some(WEEK_A))
        };
        // Combination 3: claude-sonnet-4-6, 200K, week B.
        let r5 = UsageRecord {
            tokens: tokens(100, 200, 0, 0, 0),
            messages: 2,
            cost_micros: Some(125_000),
            ..request("bob", "claude-sonnet-4-6", Some(WEEK_B))
        };
        // Combination 4: claude-haiku-4-5, 200K, no week; unknown price. Finished
        // 2026-03-17T01:02:03.450Z, the last counted request.
        let r6 = UsageRecord {
            tokens: tokens(7, 9, 0, 0, 0),
            cost_micros: None,
            at_ms: 1_773_709_323_000,
            duration_ms: 450,
            ..request("alice", "claude-haiku-4-5", None)
        };
        // Not counted, and later: no model; an error status.
        let no_model = UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            at_ms: 1_773_800_000_000,
            ..request("alice", "", Some(WEEK_A))
        };
        let failed = UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            status: 500,
            at_ms: 1_773_800_000_000,
            ..request("alice", "claude-sonnet-4-6", Some(WEEK_A))
        };
        vec![r1, cache_only, r2, r3, r4, r5, r6, no_model, failed]
    }

    // Costs, in cents rounded half away from zero:
    // - combination 1: total 1_230_000 + 4_000 + 4_000 = 1_238_000 µ$ = 123.8 ¢ → 1.24;
    //   alice 1_234_000 µ$ = 123.4 ¢ → 1.23; bob 4_000 µ$ = 0.4 ¢ → 0
    //   (the users' rounded costs add up to 1.23, not the total's 1.24: as in sing-box).
    // - combination 2: 3_000_000 µ$ → 3 (printed `3`, as Go does); no users.
    // - combination 3: bob 125_000 µ$ = 12.5 ¢ → 13 → 0.13.
    // - combination 4: alice, unknown price → 0; no week, so in no weekly figure.
    // total_usd = 1.24 + 3 + 0.13 + 0 = 4.37
    // by_user: alice = 1.23 + 0 = 1.23; bob = 0 + 0.13 = 0.13
    // by_week: A = 1.24 + 3 = 4.24; B = 0.13
    // by_user_and_week: alice A = 1.23; bob A = 0, B = 0.13
    // Tokens of combination 1: input 1000+10+5 = 1015, output 500+20+5 = 525,
    // cache read 2000, writes 100 (5m) + 400 (1h) = 500, messages 3+5+1 = 9.
    const EXPECTED_PLUS_8: &str = r#"{
  "last_updated": "2026-03-17T09:02:03.45+08:00",
  "costs": {
    "total_usd": 4.37,
    "by_user": {
      "alice": 1.23,
      "bob": 0.13
    },
    "by_week": {
      "2026-03-09 08:00:00 UTC+8": 4.24,
      "2026-03-16 08:00:00 UTC+8": 0.13
    },
    "by_user_and_week": {
      "alice": {
        "2026-03-09 08:00:00 UTC+8": 1.23
      },
      "bob": {
        "2026-03-09 08:00:00 UTC+8": 0,
        "2026-03-16 08:00:00 UTC+8": 0.13
      }
    }
  },
  "combinations": [
    {
      "model": "claude-sonnet-4-6",
      "context_window": 200000,
      "week_start_unix": 1773014400,
      "total": {
        "request_count": 3,
        "messages_count": 9,
        "input_tokens": 1015,
        "output_tokens": 525,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
        "cache_creation_5m_input_tokens": 100,
        "cache_creation_1h_input_tokens": 400,
        "cost_usd": 1.24
      },
      "by_user": {
        "alice": {
          "request_count": 2,
          "messages_count": 8,
          "input_tokens": 1010,
          "output_tokens": 520,
          "cache_read_input_tokens": 2000,
          "cache_creation_input_tokens": 500,
          "cache_creation_5m_input_tokens": 100,
          "cache_creation_1h_input_tokens": 400,
          "cost_usd": 1.23
        },
        "bob": {
          "request_count": 1,
          "messages_count": 1,
          "input_tokens": 5,
          "output_tokens": 5,
          "cache_read_input_tokens": 0,
          "cache_creation_input_tokens": 0,
          "cost_usd": 0
        }
      }
    },
    {
      "model": "claude-opus-4-6",
      "context_window": 1000000,
      "week_start_unix": 1773014400,
      "total": {
        "request_count": 1,
        "messages_count": 40,
        "input_tokens": 250000,
        "output_tokens": 1000,
        "cache_read_input_tokens": 60000,
        "cache_creation_input_tokens": 0,
        "cost_usd": 3
      },
      "by_user": {}
    },
    {
      "model": "claude-sonnet-4-6",
      "context_window": 200000,
      "week_start_unix": 1773619200,
      "total": {
        "request_count": 1,
        "messages_count": 2,
        "input_tokens": 100,
        "output_tokens": 200,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cost_usd": 0.13
      },
      "by_user": {
        "bob": {
          "request_count": 1,
          "messages_count": 2,
          "input_tokens": 100,
          "output_tokens": 200,
          "cache_read_input_tokens": 0,
          "cache_creation_input_tokens": 0,
          "cost_usd": 0.13
        }
      }
    },
    {
      "model": "claude-haiku-4-5",
      "context_window": 200000,
      "total": {
        "request_count": 1,
        "messages_count": 1,
        "input_tokens": 7,
        "output_tokens": 9,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cost_usd": 0
      },
      "by_user": {
        "alice": {
          "request_count": 1,
          "messages_count": 1,
          "input_tokens": 7,
          "output_tokens": 9,
          "cache_read_input_tokens": 0,
          "cache_creation_input_tokens": 0,
          "cost_usd": 0
        }
      }
    }
  ]
}"#;

    fn sample_usage() -> CcmUsage {
        let mut usage = CcmUsage::new();
        for record in sample_records() {
            usage.add(&record);
        }
        usage
    }

    #[test]
    fn sample_file_is_exactly_what_sing_box_writes() {
        assert_eq!(sample_usage().to_json(&tz(8, 0)), EXPECTED_PLUS_8);
    }

    #[test]
    fn week_keys_and_last_updated_follow_the_time_zone() {
        let json = sample_usage().to_json(&tz(5, 30));
        assert!(json.contains(r#""last_updated": "2026-03-17T06:32:03.45+05:30""#));
        assert!(json.contains(r#""2026-03-09 05:30:00 UTC+5:30": 4.24"#));
        assert!(json.contains(r#""2026-03-16 05:30:00 UTC+5:30": 0.13"#));

        let json = sample_usage().to_json(&tz(-3, -30));
        assert!(json.contains(r#""last_updated": "2026-03-16T21:32:03.45-03:30""#));
        assert!(json.contains(r#""2026-03-08 20:30:00 UTC-3:30": 4.24"#));

        let json = sample_usage().to_json(&TimeZone::UTC);
        assert!(json.contains(r#""last_updated": "2026-03-17T01:02:03.45Z""#));
        assert!(json.contains(r#""2026-03-09 00:00:00 UTC+0": 4.24"#));

        // A zone with daylight saving time (Berlin's rules, without needing a tzdb):
        // the offset in force at each week's start.
        let berlin = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let mut usage = sample_usage();
        // 2026-07-06T00:00:00Z
        usage.add(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            cost_micros: Some(10_000),
            ..request("", "claude-sonnet-4-6", Some(1_783_296_000))
        });
        let json = usage.to_json(&berlin);
        assert!(
            json.contains(r#""2026-03-09 01:00:00 UTC+1": 4.24"#),
            "{json}"
        );
        assert!(
            json.contains(r#""2026-07-06 02:00:00 UTC+2": 0.01"#),
            "{json}"
        );
        // last_updated: 2026-03-10T04:00:00Z, the request added last.
        assert!(json.contains(r#""last_updated": "2026-03-10T05:00:00+01:00""#));
    }

    #[test]
    fn empty_file_is_what_sing_box_writes_before_any_usage() {
        let expected = r#"{
  "last_updated": "0001-01-01T00:00:00Z",
  "costs": {
    "total_usd": 0,
    "by_user": {}
  },
  "combinations": []
}"#;
        assert_eq!(CcmUsage::new().to_json(&tz(8, 0)), expected);
    }

    #[test]
    fn weekly_figures_are_omitted_without_weeks_and_users() {
        let mut usage = CcmUsage::new();
        usage.add(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            cost_micros: Some(10_000),
            ..request("", "claude-sonnet-4-6", Some(WEEK_A))
        });
        let json = usage.to_json(&tz(8, 0));
        // A week but no user: by_week only.
        assert!(json.contains(r#""by_week""#));
        assert!(!json.contains("by_user_and_week"));

        let mut usage = CcmUsage::new();
        usage.add(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            ..request("alice", "claude-sonnet-4-6", None)
        });
        let json = usage.to_json(&tz(8, 0));
        assert!(!json.contains("by_week"));
        assert!(!json.contains("week_start_unix"));
        assert!(json.contains("\"by_user\": {\n      \"alice\": 0\n    }"));
    }

    #[test]
    fn dollars_print_like_go_float64() {
        // serde_json keeps a fraction on whole floats; Go does not.
        assert_eq!(serde_json::to_string(&3.0_f64).unwrap(), "3.0");
        assert_eq!(format_usd(300), "3");
        assert_eq!(format_usd(0), "0");
        assert_eq!(format_usd(12), "0.12");
        assert_eq!(format_usd(5), "0.05");
        assert_eq!(format_usd(120), "1.2");
        assert_eq!(format_usd(123_456), "1234.56");
        assert_eq!(format_usd(-5), "-0.05");
        // Go's strconv 'f', -1 is the shortest round-tripping decimal, as is Rust's
        // Display for f64; both agree with the integer formatting of cents / 100.
        for cents in (0..200_000).chain(99_999_000..100_001_000) {
            assert_eq!(format_usd(cents), format!("{}", cents as f64 / 100.0));
        }
    }

    #[test]
    fn cents_round_half_away_from_zero() {
        assert_eq!(micros_to_cents(0), 0);
        assert_eq!(micros_to_cents(4_999), 0);
        assert_eq!(micros_to_cents(5_000), 1);
        assert_eq!(micros_to_cents(124_999), 12);
        assert_eq!(micros_to_cents(125_000), 13);
        assert_eq!(micros_to_cents(-5_000), -1);
        assert_eq!(micros_to_cents(i64::MIN), -922_337_203_685_478);
    }

    #[test]
    fn strings_are_escaped_like_go() {
        let mut out = String::new();
        write_go_string(
            &mut out,
            "a<b>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{2028}\u{2029}é€",
        );
        assert_eq!(
            out,
            r#""a\u003cb\u003e\u0026\"\\\n\r\t\b\f\u0001\u001f\u2028\u2029é€""#
        );
    }

    #[test]
    fn times_print_like_go() {
        let at = Timestamp::new(1_773_014_400, 123_456_789).unwrap();
        assert_eq!(
            go_time(at, Offset::constant(8)),
            "2026-03-09T08:00:00.123456789+08:00"
        );
        let at = Timestamp::new(1_773_014_400, 100_000_000).unwrap();
        assert_eq!(go_time(at, Offset::UTC), "2026-03-09T00:00:00.1Z");
        let at = Timestamp::from_second(1_773_014_400).unwrap();
        assert_eq!(
            go_time(at, Offset::constant(-7)),
            "2026-03-08T17:00:00-07:00"
        );
        let odd = Offset::from_seconds(5 * 3600 + 30 * 60 + 15).unwrap();
        assert_eq!(go_time(at, odd), "2026-03-09T05:30:15+05:30");
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("usages.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn load_then_write_gives_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, EXPECTED_PLUS_8);
        let usage = CcmUsage::load(&path).unwrap();
        assert_eq!(usage.to_json(&tz(8, 0)), EXPECTED_PLUS_8);
        // The loaded last_updated keeps its offset, as Go's time.Time does; week keys
        // follow the zone they are written in.
        let json = usage.to_json(&TimeZone::UTC);
        assert!(json.contains(r#""last_updated": "2026-03-17T09:02:03.45+08:00""#));
        assert!(json.contains(r#""2026-03-09 00:00:00 UTC+0": 4.24"#));
    }

    #[test]
    fn load_add_keeps_history_and_costs() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, EXPECTED_PLUS_8);
        let mut usage = CcmUsage::load(&path).unwrap();
        // The file holds cents, so that is what history is worth now: combination 1
        // loads as total 1_240_000 µ$, alice 1_230_000 µ$. alice again there, 6_000 µ$:
        // total 1_246_000 µ$ = 124.6 ¢ → 1.25; alice 1_236_000 µ$ = 123.6 ¢ → 1.24.
        // carol, new combination (it comes last): 200_000 µ$ → 0.2.
        // total_usd = 1.25 + 3 + 0.13 + 0 + 0.2 = 4.58; week A = 1.25 + 3 = 4.25;
        // week B = 0.13 + 0.2 = 0.33.
        usage.add(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            cost_micros: Some(6_000),
            at_ms: 1_773_900_000_000,
            ..request("alice", "claude-sonnet-4-6", Some(WEEK_A))
        });
        usage.add(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            cost_micros: Some(200_000),
            at_ms: 1_773_900_000_000,
            ..request("carol", "claude-opus-4-5", Some(WEEK_B))
        });
        let json = usage.to_json(&tz(8, 0));
        let expected = EXPECTED_PLUS_8
            .replace(
                r#""last_updated": "2026-03-17T09:02:03.45+08:00""#,
                r#""last_updated": "2026-03-19T14:00:00+08:00""#,
            )
            .replace(r#""total_usd": 4.37"#, r#""total_usd": 4.58"#)
            .replace(
                "\"alice\": 1.23,\n      \"bob\": 0.13\n",
                "\"alice\": 1.24,\n      \"bob\": 0.13,\n      \"carol\": 0.2\n",
            )
            .replace(
                r#""2026-03-09 08:00:00 UTC+8": 4.24,"#,
                r#""2026-03-09 08:00:00 UTC+8": 4.25,"#,
            )
            .replace(
                r#""2026-03-16 08:00:00 UTC+8": 0.13
    },"#,
                r#""2026-03-16 08:00:00 UTC+8": 0.33
    },"#,
            )
            .replace(
                r#""2026-03-09 08:00:00 UTC+8": 1.23
      },"#,
                r#""2026-03-09 08:00:00 UTC+8": 1.24
      },"#,
            )
            .replace(
                r#""2026-03-16 08:00:00 UTC+8": 0.13
      }
    }"#,
                r#""2026-03-16 08:00:00 UTC+8": 0.13
      },
      "carol": {
        "2026-03-16 08:00:00 UTC+8": 0.2
      }
    }"#,
            )
            .replace(
                r#""request_count": 3,
        "messages_count": 9,
        "input_tokens": 1015,
        "output_tokens": 525,"#,
                r#""request_count": 4,
        "messages_count": 10,
        "input_tokens": 1016,
        "output_tokens": 526,"#,
            )
            .replace(
                r#""cache_creation_1h_input_tokens": 400,
        "cost_usd": 1.24"#,
                r#""cache_creation_1h_input_tokens": 400,
        "cost_usd": 1.25"#,
            )
            .replace(
                r#""request_count": 2,
          "messages_count": 8,
          "input_tokens": 1010,
          "output_tokens": 520,
          "cache_read_input_tokens": 2000,
          "cache_creation_input_tokens": 500,
          "cache_creation_5m_input_tokens": 100,
          "cache_creation_1h_input_tokens": 400,
          "cost_usd": 1.23"#,
                r#""request_count": 3,
          "messages_count": 9,
          "input_tokens": 1011,
          "output_tokens": 521,
          "cache_read_input_tokens": 2000,
          "cache_creation_input_tokens": 500,
          "cache_creation_5m_input_tokens": 100,
          "cache_creation_1h_input_tokens": 400,
          "cost_usd": 1.24"#,
            );
        let expected = format!(
            "{}{}",
            expected.strip_suffix("\n  ]\n}").unwrap(),
            r#",
    {
      "model": "claude-opus-4-5",
      "context_window": 200000,
      "week_start_unix": 1773619200,
      "total": {
        "request_count": 1,
        "messages_count": 1,
        "input_tokens": 1,
        "output_tokens": 1,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cost_usd": 0.2
      },
      "by_user": {
        "carol": {
          "request_count": 1,
          "messages_count": 1,
          "input_tokens": 1,
          "output_tokens": 1,
          "cache_read_input_tokens": 0,
          "cache_creation_input_tokens": 0,
          "cost_usd": 0.2
        }
      }
    }
  ]
}"#
        );
        assert_eq!(json, expected);
    }

    /// A file as sing-box 1.13 wrote it: no weeks, no 5m/1h split, and a field
    /// Carpool does not know.
    const SING_BOX_1_13_FILE: &str = r#"{
  "last_updated": "2026-01-05T10:11:12.987654321-05:00",
  "costs": {
    "total_usd": 12.5,
    "by_user": {
      "dave": 12.5
    }
  },
  "combinations": [
    {
      "model": "claude-opus-4-1-20250805",
      "context_window": 200000,
      "total": {
        "request_count": 10,
        "messages_count": 120,
        "input_tokens": 500000,
        "output_tokens": 20000,
        "cache_read_input_tokens": 1000000,
        "cache_creation_input_tokens": 40000,
        "cost_usd": 12.5
      },
      "by_user": {
        "dave": {
          "request_count": 10,
          "messages_count": 120,
          "input_tokens": 500000,
          "output_tokens": 20000,
          "cache_read_input_tokens": 1000000,
          "cache_creation_input_tokens": 40000,
          "cost_usd": 12.5,
          "note": "ignored"
        }
      }
    }
  ]
}"#;

    #[test]
    fn older_sing_box_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, SING_BOX_1_13_FILE);
        let mut usage = CcmUsage::load(&path).unwrap();
        assert_eq!(
            usage.to_json(&tz(8, 0)),
            SING_BOX_1_13_FILE.replace(",\n          \"note\": \"ignored\"", "",)
        );
        usage.add(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            cost_micros: Some(10_000),
            ..request("dave", "claude-opus-4-1-20250805", None)
        });
        let json = usage.to_json(&tz(8, 0));
        assert!(json.contains(r#""total_usd": 12.51"#));
        assert!(json.contains(r#""request_count": 11"#));
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let usage = CcmUsage::load(&dir.path().join("absent.json")).unwrap();
        assert!(usage.combinations.is_empty());
        assert_eq!(usage.last_updated, None);
        assert!(usage.to_json(&tz(8, 0)).contains(GO_ZERO_TIME));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "{not json",
            "",
            r#"{"last_updated": "yesterday", "combinations": []}"#,
            r#"{"combinations": {}}"#,
            r#"{"combinations": [{"model": "m", "total": {"input_tokens": "many"}}]}"#,
        ] {
            let path = write(&dir, text);
            let error = CcmUsage::load(&path).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{text}");
            assert!(
                error.to_string().contains(&path.display().to_string()),
                "{error}"
            );
            assert!(CcmFile::open(path, None).is_err());
        }
    }

    fn dir_names(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_counts_only_its_credential() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usages.json");
        let file = CcmFile::open(path.clone(), Some("main".to_owned()))
            .unwrap()
            .with_time_zone(tz(8, 0));
        let mine = UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            ..request("alice", "claude-sonnet-4-6", Some(WEEK_A))
        };
        let other = UsageRecord {
            credential: "spare".to_owned(),
            ..mine.clone()
        };
        file.record(&other);
        file.save().unwrap();
        assert!(
            !path.exists(),
            "a request of another credential made a change"
        );
        file.record(&mine);
        file.record(&other);
        file.save().unwrap();
        let usage = CcmUsage::load(&path).unwrap();
        assert_eq!(usage.combinations.len(), 1);
        assert_eq!(usage.combinations[0].total.request_count, 1);

        // Without a filter every credential counts.
        let all = CcmFile::open(dir.path().join("all.json"), None).unwrap();
        all.record(&mine);
        all.record(&other);
        all.save().unwrap();
        let usage = CcmUsage::load(all.path()).unwrap();
        assert_eq!(usage.combinations[0].total.request_count, 2);
    }

    #[test]
    fn save_writes_atomically_with_mode_0600_only_when_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, EXPECTED_PLUS_8);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let file = CcmFile::open(path.clone(), None)
            .unwrap()
            .with_time_zone(tz(8, 0));
        assert_eq!(file.path(), path);

        // Nothing counted: nothing written, not even an unchanged copy.
        std::fs::remove_file(&path).unwrap();
        file.save().unwrap();
        assert!(!path.exists());
        // Not counted by sing-box either.
        file.record(&request("alice", "claude-sonnet-4-6", Some(WEEK_A)));
        file.save().unwrap();
        assert!(!path.exists());

        // The history loaded at open is written back with the new request.
        file.record(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            ..request("alice", "claude-sonnet-4-6", Some(WEEK_A))
        });
        file.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""total_usd": 4.37"#), "{text}");
        assert!(text.contains(r#""request_count": 4"#), "{text}");
        assert!(text.contains(r#""last_updated": "2026-03-10T12:00:00+08:00""#));
        assert_eq!(
            dir_names(&dir),
            ["usages.json"],
            "a temporary file was left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Saved: clean again.
        std::fs::remove_file(&path).unwrap();
        file.save().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn failed_save_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let missing_dir = dir.path().join("later");
        let path = missing_dir.join("usages.json");
        let file = CcmFile::open(path.clone(), None).unwrap();
        file.record(&UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            ..request("alice", "claude-sonnet-4-6", None)
        });
        let error = file.save().unwrap_err();
        assert!(error.to_string().contains(&path.display().to_string()));
        std::fs::create_dir(&missing_dir).unwrap();
        file.save().unwrap();
        assert!(path.exists());
    }

    fn counted(user: &str) -> UsageRecord {
        UsageRecord {
            tokens: tokens(1, 1, 0, 0, 0),
            ..request(user, "claude-sonnet-4-6", Some(WEEK_A))
        }
    }

    fn request_count(path: &Path) -> u64 {
        CcmUsage::load(path)
            .unwrap()
            .combinations
            .first()
            .map_or(0, |c| c.total.request_count)
    }

    /// Waits up to five seconds for `done`.
    async fn eventually(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done()
    }

    #[tokio::test]
    async fn saver_saves_after_records_and_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usages.json");
        let file = Arc::new(CcmFile::open(path.clone(), None).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        let saver = tokio::spawn(run_saver(
            vec![Arc::clone(&file)],
            Duration::from_millis(50),
            async {
                let _ = stopped.await;
            },
        ));

        file.record(&counted("alice"));
        assert!(eventually(|| path.exists()).await, "no save after a record");
        assert_eq!(request_count(&path), 1);
        file.record(&counted("bob"));
        assert!(eventually(|| request_count(&path) == 2).await);

        file.record(&counted("carol"));
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), saver)
            .await
            .expect("the saver did not stop")
            .unwrap();
        assert_eq!(request_count(&path), 3);
    }

    #[tokio::test]
    async fn saver_waits_an_interval_and_saves_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usages.json");
        let file = Arc::new(CcmFile::open(path.clone(), None).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        let saver = tokio::spawn(run_saver(
            vec![Arc::clone(&file)],
            Duration::from_secs(3600),
            async {
                let _ = stopped.await;
            },
        ));
        file.record(&counted("alice"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!path.exists(), "saved before the interval");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), saver)
            .await
            .expect("the saver did not stop")
            .unwrap();
        assert_eq!(request_count(&path), 1);
    }

    #[tokio::test]
    async fn saver_survives_failing_saves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("usages.json");
        let file = Arc::new(CcmFile::open(path, None).unwrap());
        file.record(&counted("alice"));
        let quiet = Arc::new(CcmFile::open(dir.path().join("quiet.json"), None).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        let saver = tokio::spawn(run_saver(
            vec![file, Arc::clone(&quiet)],
            Duration::from_millis(20),
            async {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), saver)
            .await
            .expect("the saver did not stop")
            .unwrap();
        // A file without changes is never written.
        assert!(!quiet.path().exists());
    }
}
