//! sing-box ocm's `usages_path` statistics file, for Codex and OpenAI accounts, kept in
//! its exact layout so that people moving from sing-box keep their scripts
//! (docs/protocol.md §6.4, §7; source: SB `service/ocm/service_usage.go`).
//!
//! The envelope and the formatting are ccm's (see [`super::ccm`]: Go's
//! `json.MarshalIndent`, 2 spaces, struct field order, sorted map keys, `<>&` escaped, Go's
//! float format, no trailing newline); the combinations and their Stats are ocm's own:
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
//!   "combinations": [                          one per (model, service tier, context window, week)
//!     {"model", "service_tier" (omitted for the default tier), "context_window",
//!      "week_start_unix" (omitted when 0), "total": Stats, "by_user": {user: Stats}}
//!   ]
//! }
//! Stats = request_count, input_tokens, output_tokens, cached_tokens, cost_usd
//! ```
//!
//! - `input_tokens` is OpenAI's input count, cached tokens included (the ledger's fresh
//!   input plus its cache reads); `cached_tokens` the cached part; `output_tokens`
//!   includes reasoning. Files of older sing-box versions that wrote `prompt_tokens` /
//!   `completion_tokens` load (those count when `input_tokens` / `output_tokens` are 0).
//! - `service_tier` is the response's, normalized as sing-box does: `flex` and `priority`
//!   are kept; empty, `auto`, `default`, `scale` and anything else are the default tier.
//! - `context_window` is 1,050,000 when the request's input exceeded 272,000 tokens (the
//!   long-context tier of §7.7), else 272,000; Carpool decides it from the tokens.
//! - A week is the account's weekly Codex window: `week_start_unix` = the record's
//!   `week_reset` (the weekly `x-codex-*` window's reset, §7.6) minus seven days; 0 when
//!   the answer had none.
//!
//! The snapshots differ: SB-new (docs/protocol.md §0) has the layout above; an older
//! stored version of `service_usage.go` (SagerNet/sing-box, between SB-1.13 and SB-new)
//! has `service_tier` and `week_start_unix` but neither `context_window` nor
//! `by_user_and_week`, and writes the default tier as `"default"`. Loading accepts both.
//!
//! Money, loading and saving follow ccm's rules: micro-dollars summed per request and
//! rounded to cents when written; loaded `cost_usd` kept as history; the file is saved
//! by the same [`super::ccm::CcmFile`] and [`super::ccm::run_saver`], chosen with
//! [`super::ccm::Layout::Ocm`].

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Deserializer};

use super::ccm::{
    GO_ZERO_TIME, Json, WEEK_SECONDS, field, go_time, micros_to_cents, parse_go_time, usd_object,
    usd_to_micros, week_key,
};
use super::{UsageRecord, openai_context_window};

/// Token counts and cost of a group of requests: sing-box ocm's `UsageStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stats {
    request_count: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    cost_micros: i64,
}

/// The stats as a file holds them, older field names included.
#[derive(Deserialize)]
#[serde(default)]
#[derive(Default)]
struct RawStats {
    request_count: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    #[serde(rename = "cost_usd", deserialize_with = "usd_to_micros")]
    cost_micros: i64,
}

impl<'de> Deserialize<'de> for Stats {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Stats, D::Error> {
        let raw = RawStats::deserialize(deserializer)?;
        let or = |value: u64, older: u64| if value == 0 { older } else { value };
        Ok(Stats {
            request_count: raw.request_count,
            input_tokens: or(raw.input_tokens, raw.prompt_tokens),
            output_tokens: or(raw.output_tokens, raw.completion_tokens),
            cached_tokens: raw.cached_tokens,
            cost_micros: raw.cost_micros,
        })
    }
}

impl Stats {
    fn add(&mut self, record: &UsageRecord) {
        let tokens = &record.tokens;
        self.request_count += 1;
        self.input_tokens += tokens.input + tokens.cache_read;
        self.output_tokens += tokens.output;
        self.cached_tokens += tokens.cache_read;
        self.cost_micros += record.cost_micros.unwrap_or(0);
    }

    fn cents(&self) -> i64 {
        micros_to_cents(self.cost_micros)
    }

    fn to_json(&self) -> Json {
        Json::Object(vec![
            field("request_count", Json::number(self.request_count)),
            field("input_tokens", Json::number(self.input_tokens)),
            field("output_tokens", Json::number(self.output_tokens)),
            field("cached_tokens", Json::number(self.cached_tokens)),
            field("cost_usd", Json::usd(self.cents())),
        ])
    }
}

/// One (model, service tier, context window, week) group: sing-box ocm's
/// `CostCombination`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct Combination {
    model: String,
    /// Normalized: `flex`, `priority`, or empty for the default tier.
    #[serde(deserialize_with = "tier_from_file")]
    service_tier: String,
    /// 0 in files of sing-box versions that did not write it.
    context_window: u32,
    week_start_unix: i64,
    total: Stats,
    by_user: BTreeMap<String, Stats>,
}

impl Combination {
    fn to_json(&self) -> Json {
        let mut fields = vec![field("model", Json::Str(self.model.clone()))];
        if !self.service_tier.is_empty() {
            fields.push(field("service_tier", Json::Str(self.service_tier.clone())));
        }
        fields.push(field("context_window", Json::number(self.context_window)));
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

/// The service tier as ocm groups it: `flex` or `priority`, else the default tier
/// (written as no `service_tier` at all).
pub fn normalize_tier(tier: &str) -> &'static str {
    let tier = tier.trim();
    if tier.eq_ignore_ascii_case("flex") {
        "flex"
    } else if tier.eq_ignore_ascii_case("priority") {
        "priority"
    } else {
        ""
    }
}

fn tier_from_file<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let tier = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    Ok(normalize_tier(&tier).to_owned())
}

/// The fields of the file that loading reads.
#[derive(Deserialize)]
struct FileContent {
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    combinations: Vec<Combination>,
}

/// The aggregate behind one ocm usages_path file.
#[derive(Debug, Clone, Default)]
pub struct OcmUsage {
    last_updated: Option<Timestamp>,
    /// The offset a loaded `last_updated` was written with, until a request is counted.
    loaded_offset: Option<Offset>,
    /// In order of first appearance, as sing-box appends them.
    combinations: Vec<Combination>,
}

impl OcmUsage {
    pub fn new() -> OcmUsage {
        OcmUsage::default()
    }

    /// Reads an existing file (`last_updated` and `combinations` only); a missing file
    /// is empty; a corrupt one is an error naming the path.
    pub fn load(path: &Path) -> io::Result<OcmUsage> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OcmUsage::new()),
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
                format!("{} is not an ocm usage file: {message}", path.display()),
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
        Ok(OcmUsage {
            last_updated,
            loaded_offset,
            combinations: content.combinations,
        })
    }

    /// Adds one request if sing-box ocm would count it: a 200 that named a model and
    /// reported input or output tokens.
    pub fn add(&mut self, record: &UsageRecord) {
        if !counts(record) {
            return;
        }
        let service_tier = normalize_tier(&record.service_tier);
        let context_window = openai_context_window(&record.tokens);
        let week_start_unix = record
            .week_reset
            .map_or(0, |reset| reset.saturating_sub(WEEK_SECONDS));
        let index = match self.combinations.iter().position(|c| {
            c.model == record.model
                && c.service_tier == service_tier
                && c.context_window == context_window
                && c.week_start_unix == week_start_unix
        }) {
            Some(index) => index,
            None => {
                self.combinations.push(Combination {
                    model: record.model.clone(),
                    service_tier: service_tier.to_owned(),
                    context_window,
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
            Some(at) => go_time(at, self.loaded_offset.unwrap_or_else(|| tz.to_offset(at))),
        };
        Json::Object(vec![
            field("last_updated", Json::Str(last_updated)),
            field("costs", Json::Object(costs)),
            field("combinations", Json::Array(combinations)),
        ])
        .render()
    }
}

/// Whether sing-box ocm would count this request: an upstream 200 that named a model and
/// reported input or output tokens.
pub(super) fn counts(record: &UsageRecord) -> bool {
    record.status == 200 && record.has_usage() && !record.model.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Tokens;

    /// 2026-03-09T00:00:00Z: the start of week A.
    const WEEK_A: i64 = 1_773_014_400;
    const WEEK_B: i64 = WEEK_A + WEEK_SECONDS;

    fn tz(hours: i8) -> TimeZone {
        TimeZone::fixed(Offset::from_seconds(i32::from(hours) * 3600).unwrap())
    }

    /// A counted Codex request: 200, arrived 2026-03-10T04:00:00Z.
    fn request(user: &str, model: &str, tier: &str, week_start: Option<i64>) -> UsageRecord {
        UsageRecord {
            at_ms: 1_773_115_200_000,
            user: user.to_owned(),
            credential: "codex".to_owned(),
            endpoint: "responses".to_owned(),
            model: model.to_owned(),
            status: 200,
            outcome: "complete".to_owned(),
            service_tier: tier.to_owned(),
            week_reset: week_start.map(|start| start + WEEK_SECONDS),
            ..UsageRecord::default()
        }
    }

    /// OpenAI's counts: `input` total with `cached` of it cached.
    fn tokens(input: u64, cached: u64, output: u64, reasoning: u64) -> Tokens {
        Tokens {
            input: input - cached,
            cache_read: cached,
            output,
            reasoning,
            ..Tokens::default()
        }
    }

    fn sample_records() -> Vec<UsageRecord> {
        vec![
            // Combination 1: gpt-5.4, default tier (`auto`), 272K, week A.
            UsageRecord {
                tokens: tokens(5210, 4096, 812, 640),
                cost_micros: Some(1_230_000),
                ..request("alice", "gpt-5.4", "auto", Some(WEEK_A))
            },
            UsageRecord {
                tokens: tokens(100, 0, 20, 0),
                cost_micros: Some(4_000),
                ..request("bob", "gpt-5.4", "default", Some(WEEK_A))
            },
            // Combination 2: gpt-5.4, priority, week A.
            UsageRecord {
                tokens: tokens(300, 0, 64, 64),
                cost_micros: Some(125_000),
                ..request("alice", "gpt-5.4", "priority", Some(WEEK_A))
            },
            // Combination 3: gpt-5.4, default, long context (300K input), week B, anonymous.
            UsageRecord {
                tokens: tokens(300_000, 100_000, 2_000, 1_500),
                cost_micros: Some(1_095_000),
                ..request("", "gpt-5.4", "", Some(WEEK_B))
            },
            // Combination 4: gpt-5.3-codex, flex, no week; unknown price; the last one,
            // finished 2026-03-17T01:02:03.450Z.
            UsageRecord {
                tokens: tokens(7, 0, 9, 0),
                cost_micros: None,
                at_ms: 1_773_709_323_000,
                duration_ms: 450,
                ..request("alice", "gpt-5.3-codex", "FLEX", None)
            },
            // Not counted: an error; no tokens; no model.
            UsageRecord {
                tokens: tokens(5, 0, 5, 0),
                status: 429,
                ..request("alice", "gpt-5.4", "", Some(WEEK_A))
            },
            UsageRecord {
                cost_micros: Some(1_000_000),
                ..request("alice", "gpt-5.4", "", Some(WEEK_A))
            },
            UsageRecord {
                tokens: tokens(5, 0, 5, 0),
                at_ms: 1_773_800_000_000,
                ..request("alice", "", "", Some(WEEK_A))
            },
        ]
    }

    /// What sing-box ocm writes for the sample (SB-new layout), worked out by hand.
    const EXPECTED_PLUS_8: &str = r#"{
  "last_updated": "2026-03-17T09:02:03.45+08:00",
  "costs": {
    "total_usd": 2.46,
    "by_user": {
      "alice": 1.36,
      "bob": 0
    },
    "by_week": {
      "2026-03-09 08:00:00 UTC+8": 1.36,
      "2026-03-16 08:00:00 UTC+8": 1.1
    },
    "by_user_and_week": {
      "alice": {
        "2026-03-09 08:00:00 UTC+8": 1.36
      },
      "bob": {
        "2026-03-09 08:00:00 UTC+8": 0
      }
    }
  },
  "combinations": [
    {
      "model": "gpt-5.4",
      "context_window": 272000,
      "week_start_unix": 1773014400,
      "total": {
        "request_count": 2,
        "input_tokens": 5310,
        "output_tokens": 832,
        "cached_tokens": 4096,
        "cost_usd": 1.23
      },
      "by_user": {
        "alice": {
          "request_count": 1,
          "input_tokens": 5210,
          "output_tokens": 812,
          "cached_tokens": 4096,
          "cost_usd": 1.23
        },
        "bob": {
          "request_count": 1,
          "input_tokens": 100,
          "output_tokens": 20,
          "cached_tokens": 0,
          "cost_usd": 0
        }
      }
    },
    {
      "model": "gpt-5.4",
      "service_tier": "priority",
      "context_window": 272000,
      "week_start_unix": 1773014400,
      "total": {
        "request_count": 1,
        "input_tokens": 300,
        "output_tokens": 64,
        "cached_tokens": 0,
        "cost_usd": 0.13
      },
      "by_user": {
        "alice": {
          "request_count": 1,
          "input_tokens": 300,
          "output_tokens": 64,
          "cached_tokens": 0,
          "cost_usd": 0.13
        }
      }
    },
    {
      "model": "gpt-5.4",
      "context_window": 1050000,
      "week_start_unix": 1773619200,
      "total": {
        "request_count": 1,
        "input_tokens": 300000,
        "output_tokens": 2000,
        "cached_tokens": 100000,
        "cost_usd": 1.1
      },
      "by_user": {}
    },
    {
      "model": "gpt-5.3-codex",
      "service_tier": "flex",
      "context_window": 272000,
      "total": {
        "request_count": 1,
        "input_tokens": 7,
        "output_tokens": 9,
        "cached_tokens": 0,
        "cost_usd": 0
      },
      "by_user": {
        "alice": {
          "request_count": 1,
          "input_tokens": 7,
          "output_tokens": 9,
          "cached_tokens": 0,
          "cost_usd": 0
        }
      }
    }
  ]
}"#;

    fn sample_usage() -> OcmUsage {
        let mut usage = OcmUsage::new();
        for record in sample_records() {
            usage.add(&record);
        }
        usage
    }

    #[test]
    fn sample_file_is_exactly_what_sing_box_ocm_writes() {
        assert_eq!(sample_usage().to_json(&tz(8)), EXPECTED_PLUS_8);
    }

    #[test]
    fn empty_file() {
        assert_eq!(
            OcmUsage::new().to_json(&tz(0)),
            "{\n  \"last_updated\": \"0001-01-01T00:00:00Z\",\n  \"costs\": {\n    \"total_usd\": 0,\n    \"by_user\": {}\n  },\n  \"combinations\": []\n}"
        );
    }

    #[test]
    fn tiers_normalize_like_sing_box() {
        for (tier, normalized) in [
            ("", ""),
            ("auto", ""),
            ("default", ""),
            ("scale", ""),
            ("standard", ""),
            (" Flex ", "flex"),
            ("flex", "flex"),
            ("PRIORITY", "priority"),
        ] {
            assert_eq!(normalize_tier(tier), normalized, "{tier:?}");
        }
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("ocm-usages.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn load_then_write_gives_the_same_file_and_adds_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, EXPECTED_PLUS_8);
        let mut usage = OcmUsage::load(&path).unwrap();
        assert_eq!(usage.to_json(&tz(8)), EXPECTED_PLUS_8);
        // One more default-tier gpt-5.4 request of bob in week A joins combination 1.
        usage.add(&UsageRecord {
            tokens: tokens(1000, 0, 100, 0),
            cost_micros: Some(20_000),
            ..request("bob", "gpt-5.4", "default", Some(WEEK_A))
        });
        let json = usage.to_json(&tz(8));
        assert!(json.contains("\"request_count\": 3"), "{json}");
        assert!(json.contains("\"total_usd\": 2.48"), "{json}");
        assert!(json.contains("\"bob\": 0.02"), "{json}");
        assert_eq!(usage.combinations.len(), 4);
    }

    /// A file of the older sing-box layout: `"default"` written out, no context window,
    /// and a Stats with the oldest field names.
    const OLDER_FILE: &str = r#"{
  "last_updated": "2026-03-01T10:00:00Z",
  "costs": {
    "total_usd": 0.5,
    "by_user": {
      "carol": 0.5
    }
  },
  "combinations": [
    {
      "model": "gpt-5.2-codex",
      "service_tier": "default",
      "week_start_unix": 1772409600,
      "total": {
        "request_count": 4,
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "cached_tokens": 500,
        "cost_usd": 0.5
      },
      "by_user": {
        "carol": {
          "request_count": 4,
          "input_tokens": 1000,
          "output_tokens": 200,
          "cached_tokens": 500,
          "cost_usd": 0.5
        }
      }
    }
  ]
}"#;

    #[test]
    fn older_sing_box_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let usage = OcmUsage::load(&write(&dir, OLDER_FILE)).unwrap();
        let combination = &usage.combinations[0];
        assert_eq!(combination.service_tier, "");
        assert_eq!(combination.context_window, 0);
        assert_eq!(combination.total.input_tokens, 1000);
        assert_eq!(combination.total.output_tokens, 200);
        assert_eq!(combination.total.cost_micros, 500_000);
        let json = usage.to_json(&tz(0));
        assert!(json.contains("\"last_updated\": \"2026-03-01T10:00:00Z\""));
        assert!(!json.contains("service_tier"));
        assert!(!json.contains("prompt_tokens"));
        assert!(json.contains("\"input_tokens\": 1000"));
        assert!(json.contains("\"by_week\""));
    }

    #[test]
    fn missing_file_is_empty_and_a_corrupt_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let usage = OcmUsage::load(&dir.path().join("absent.json")).unwrap();
        assert!(usage.combinations.is_empty());
        for text in [
            "{not json",
            r#"{"last_updated": "yesterday"}"#,
            r#"{"combinations": [{"model": "m", "total": {"cached_tokens": "many"}}]}"#,
            r#"{"combinations": [{"model": "m", "service_tier": 5}]}"#,
        ] {
            let path = write(&dir, text);
            let error = OcmUsage::load(&path).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{text}");
            assert!(
                error.to_string().contains("not an ocm usage file"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_context_window_is_decided_by_the_input() {
        use crate::ledger::openai_context_window;
        assert_eq!(openai_context_window(&tokens(272_000, 0, 5, 0)), 272_000);
        assert_eq!(
            openai_context_window(&tokens(272_001, 272_001, 0, 0)),
            1_050_000
        );
        assert_eq!(openai_context_window(&Tokens::default()), 272_000);
    }

    #[test]
    fn a_ccm_file_opened_as_ocm_writes_the_ocm_layout_for_its_credential() {
        use crate::ledger::ccm::{CcmFile, Layout};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codex-usages.json");
        let file = CcmFile::open_with_layout(path.clone(), Some("codex".to_owned()), Layout::Ocm)
            .unwrap()
            .with_time_zone(tz(8));
        for record in sample_records() {
            file.record(&record);
            // Another account's requests are not this file's.
            file.record(&UsageRecord {
                credential: "claude".to_owned(),
                ..record
            });
        }
        file.save().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), EXPECTED_PLUS_8);
        // Reopened, it continues from what it wrote.
        let again = CcmFile::open_with_layout(path.clone(), None, Layout::Ocm)
            .unwrap()
            .with_time_zone(tz(8));
        again.record(&UsageRecord {
            tokens: tokens(10, 0, 10, 0),
            ..request("carol", "gpt-5-mini", "", None)
        });
        again.save().unwrap();
        let usage = OcmUsage::load(&path).unwrap();
        assert_eq!(usage.combinations.len(), 5);
    }
}
