//! The price table: what a response cost, from its model and token counts.
//!
//! Prices are data. The built-in table is `prices.json` next to this file (embedded at
//! build time, with a `version` date and a `source` line); the config's `prices` object
//! replaces entries or adds models ([`PriceTable::with_overrides`]).
//!
//! # Units
//!
//! Everything is integer, nothing is a summed float:
//! - a [`Rate`] is US dollars per million tokens, held as millionths of a dollar per
//!   million tokens (`$3/MTok` is `Rate(3_000_000)`);
//! - a [`Usd`] (the web search price) is dollars held as micro-dollars (`$0.01` is 10,000);
//! - a cost is micro-dollars (`i64`), rounded half up once, at the very end.
//!
//! In JSON all three are plain numbers of dollars (`3`, `0.125`) with at most 6 decimals.
//!
//! # Matching a model name
//!
//! Predictable, no guessing. The requested name is trimmed and lowercased; a trailing
//! `[1m]` is removed; then either a trailing `-latest` or a trailing `-YYYYMMDD` date
//! (8 digits) is removed. The result must equal a table id or alias, normalized the same
//! way. So `claude-sonnet-4-5-20250929`, `claude-opus-4-6[1m]` and `CLAUDE-3-5-HAIKU-LATEST`
//! are found, while an unknown `claude-opus-4-9` is not (it never falls back to the
//! prices of `claude-opus-4`): its cost is unknown ([`None`]), never an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{Billing, Tokens};

/// The embedded table.
const BUILTIN_JSON: &str = include_str!("prices.json");

/// One dollar in micro-dollars; also the scale of every fixed-point number here.
const MICROS: u64 = 1_000_000;

/// US dollars per million tokens, held as millionths of a dollar per million tokens
/// (so `$3/MTok` = `3_000_000`). In JSON, a number of dollars such as `3` or `0.125`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u64);

impl Rate {
    pub const fn from_micros(micros_per_mtok: u64) -> Rate {
        Rate(micros_per_mtok)
    }

    /// Parses a decimal number of dollars per million tokens, such as `"3"` or `"0.125"`.
    pub fn from_usd_per_mtok(text: &str) -> Result<Rate, String> {
        parse_fixed6(text).map(Rate)
    }

    /// Takes dollars per million tokens as a float, as JSON numbers arrive.
    pub fn from_usd_per_mtok_f64(value: f64) -> Result<Rate, String> {
        fixed6_from_f64(value).map(Rate)
    }

    /// Micro-dollars per million tokens, which is also pico-dollars per token.
    pub const fn micros(self) -> u64 {
        self.0
    }

    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

/// An amount of US dollars, held as micro-dollars (`$0.01` = `10_000`). In JSON, a number
/// of dollars such as `0.01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usd(u64);

impl Usd {
    pub const fn from_micros(micros: u64) -> Usd {
        Usd(micros)
    }

    /// Parses a decimal number of dollars, such as `"0.01"`.
    pub fn from_usd(text: &str) -> Result<Usd, String> {
        parse_fixed6(text).map(Usd)
    }

    pub const fn micros(self) -> u64 {
        self.0
    }
}

/// A price multiplier such as `1.1`, held as millionths (`1_100_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Multiplier(u64);

impl Multiplier {
    const ONE: Multiplier = Multiplier(MICROS);
}

/// The five token prices of one model in one mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object of prices: input, output, cache_read, cache_write_5m, cache_write_1h"
)]
pub struct Rates {
    pub input: Rate,
    pub output: Rate,
    pub cache_read: Rate,
    pub cache_write_5m: Rate,
    pub cache_write_1h: Rate,
}

/// Prices for prompts above a size (`input + cache_read + cache writes`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "RawLongContext", into = "RawLongContext")]
pub struct LongContext {
    /// The long-context rates apply when the prompt has more tokens than this.
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// Everything the table knows about one model. In JSON the standard rates sit at the top
/// level of the entry, next to the optional parts:
///
/// ```json
/// { "input": 3, "output": 15, "cache_read": 0.3, "cache_write_5m": 3.75, "cache_write_1h": 6,
///   "web_search": 0.01, "aliases": ["claude-sonnet-4-5-20250929"] }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "RawModelPrices", into = "RawModelPrices")]
pub struct ModelPrices {
    pub standard: Rates,
    /// USD per web search request (a server tool), e.g. 0.01. Without it, a response that
    /// made web searches has an unknown cost.
    pub web_search: Option<Usd>,
    /// Higher prices when the prompt (input + cache read + cache write) exceeds
    /// `above_input_tokens`.
    pub long_context: Option<LongContext>,
    /// Fast mode prices (`usage.speed == "fast"`). Without them, a fast response has an
    /// unknown cost.
    pub fast: Option<Rates>,
    /// OpenAI's flex tier (`service_tier: "flex"`); without it, flex is priced standard.
    pub flex: Option<Tier>,
    /// OpenAI's priority tier (`service_tier: "priority"`, Codex's fast); without it,
    /// priority is priced standard (docs/protocol.md §7.7).
    pub priority: Option<Tier>,
    /// Other names of this model: dated ids, older spellings.
    pub aliases: Vec<String>,
}

/// The prices of one OpenAI service tier: rates, and optionally their long-context ones.
/// In JSON, like a model entry: `{"input": 1.25, "output": 7.5, "cache_read": 0.125,
/// "long_context": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "RawTier", into = "RawTier")]
pub struct Tier {
    pub rates: Rates,
    pub long_context: Option<LongContext>,
}

#[derive(Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object of tier prices such as {\"input\": 1.25, \"output\": 7.5, \"cache_read\": 0.125}"
)]
struct RawTier {
    input: Rate,
    output: Rate,
    cache_read: Rate,
    #[serde(default, skip_serializing_if = "Rate::is_zero")]
    cache_write_5m: Rate,
    #[serde(default, skip_serializing_if = "Rate::is_zero")]
    cache_write_1h: Rate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    long_context: Option<LongContext>,
}

impl From<RawTier> for Tier {
    fn from(raw: RawTier) -> Tier {
        Tier {
            rates: Rates {
                input: raw.input,
                output: raw.output,
                cache_read: raw.cache_read,
                cache_write_5m: raw.cache_write_5m,
                cache_write_1h: raw.cache_write_1h,
            },
            long_context: raw.long_context,
        }
    }
}

impl From<Tier> for RawTier {
    fn from(tier: Tier) -> RawTier {
        let Rates {
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
        } = tier.rates;
        RawTier {
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
            long_context: tier.long_context,
        }
    }
}

// serde's `flatten` does not work together with `deny_unknown_fields`, so the JSON shapes
// of `ModelPrices` and `LongContext` are spelled out field by field here.

#[derive(Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object of prices such as {\"input\": 3, \"output\": 15, \"cache_read\": 0.3, \"cache_write_5m\": 3.75, \"cache_write_1h\": 6}"
)]
struct RawModelPrices {
    input: Rate,
    output: Rate,
    cache_read: Rate,
    // OpenAI models have no cache writes: their entries leave these out (0).
    #[serde(default, skip_serializing_if = "Rate::is_zero")]
    cache_write_5m: Rate,
    #[serde(default, skip_serializing_if = "Rate::is_zero")]
    cache_write_1h: Rate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    web_search: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    long_context: Option<LongContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fast: Option<Rates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flex: Option<Tier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<Tier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
}

impl From<RawModelPrices> for ModelPrices {
    fn from(raw: RawModelPrices) -> ModelPrices {
        ModelPrices {
            standard: Rates {
                input: raw.input,
                output: raw.output,
                cache_read: raw.cache_read,
                cache_write_5m: raw.cache_write_5m,
                cache_write_1h: raw.cache_write_1h,
            },
            web_search: raw.web_search,
            long_context: raw.long_context,
            fast: raw.fast,
            flex: raw.flex,
            priority: raw.priority,
            aliases: raw.aliases,
        }
    }
}

impl From<ModelPrices> for RawModelPrices {
    fn from(prices: ModelPrices) -> RawModelPrices {
        let Rates {
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
        } = prices.standard;
        RawModelPrices {
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
            web_search: prices.web_search,
            long_context: prices.long_context,
            fast: prices.fast,
            flex: prices.flex,
            priority: prices.priority,
            aliases: prices.aliases,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with above_input_tokens and the prices input, output, cache_read, cache_write_5m, cache_write_1h"
)]
struct RawLongContext {
    above_input_tokens: u64,
    input: Rate,
    output: Rate,
    cache_read: Rate,
    #[serde(default, skip_serializing_if = "Rate::is_zero")]
    cache_write_5m: Rate,
    #[serde(default, skip_serializing_if = "Rate::is_zero")]
    cache_write_1h: Rate,
}

impl From<RawLongContext> for LongContext {
    fn from(raw: RawLongContext) -> LongContext {
        LongContext {
            above_input_tokens: raw.above_input_tokens,
            rates: Rates {
                input: raw.input,
                output: raw.output,
                cache_read: raw.cache_read,
                cache_write_5m: raw.cache_write_5m,
                cache_write_1h: raw.cache_write_1h,
            },
        }
    }
}

impl From<LongContext> for RawLongContext {
    fn from(long: LongContext) -> RawLongContext {
        let Rates {
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
        } = long.rates;
        RawLongContext {
            above_input_tokens: long.above_input_tokens,
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
        }
    }
}

impl ModelPrices {
    /// The rates a response is priced at, or `None` when the table has none for its mode.
    ///
    /// Fast mode has its own rates and no long-context tier (Claude Code returns the fast
    /// rates as they are); otherwise the long-context rates apply to prompts above the
    /// threshold.
    ///
    /// OpenAI's service tier (docs/protocol.md §7.7) picks the flex or priority prices
    /// when the entry has them; `auto`, `default`, `scale`, none and a tier without an
    /// entry are priced standard. Each tier has its own long-context rates.
    pub fn rates_for(&self, tokens: &Tokens, billing: &Billing) -> Option<&Rates> {
        if billing.is_fast() {
            return self.fast.as_ref();
        }
        let (rates, long_context) = match self.tier(billing) {
            Some(tier) => (&tier.rates, tier.long_context.as_ref()),
            None => (&self.standard, self.long_context.as_ref()),
        };
        match long_context {
            Some(long) if tokens.total_input() > long.above_input_tokens => Some(&long.rates),
            _ => Some(rates),
        }
    }

    /// The flex or priority prices, when the response's service tier names one this
    /// model has.
    fn tier(&self, billing: &Billing) -> Option<&Tier> {
        let tier = billing.service_tier.as_deref()?.trim();
        if tier.eq_ignore_ascii_case("flex") {
            self.flex.as_ref()
        } else if tier.eq_ignore_ascii_case("priority") {
            self.priority.as_ref()
        } else {
            None
        }
    }
}

/// The prices of every known model, looked up by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    version: String,
    source: String,
    /// `usage.inference_geo` → multiplier of the token part of a cost.
    geo_multipliers: BTreeMap<String, Multiplier>,
    /// Canonical id → prices.
    models: BTreeMap<String, ModelPrices>,
    /// Every normalized id and alias → canonical id.
    names: HashMap<String, String>,
}

/// The layout of `prices.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    version: String,
    source: String,
    #[serde(default)]
    inference_geo_multipliers: BTreeMap<String, Multiplier>,
    models: BTreeMap<String, ModelPrices>,
}

impl PriceTable {
    /// The table shipped with Carpool (`src/ledger/prices.json`).
    pub fn builtin() -> PriceTable {
        // A unit test parses it, so this cannot fail in a tested build.
        PriceTable::from_json(BUILTIN_JSON).expect("the built-in prices.json is valid")
    }

    /// Reads a table in the layout of `prices.json`. Ids must be written normalized
    /// (lowercase, no date or `-latest`), and no name may belong to two models.
    pub fn from_json(text: &str) -> Result<PriceTable, String> {
        let file: PriceFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut table = PriceTable {
            version: file.version,
            source: file.source,
            geo_multipliers: file.inference_geo_multipliers,
            models: BTreeMap::new(),
            names: HashMap::new(),
        };
        for (id, prices) in file.models {
            let normalized = normalize_model(&id);
            if normalized != id {
                return Err(format!("model id `{id}` must be written `{normalized}`"));
            }
            table.insert(id, prices)?;
        }
        Ok(table)
    }

    /// The date of the built-in figures, e.g. `2026-11-22`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the built-in figures come from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Applies the config's `prices`: each key names a model (matched like a requested
    /// name, so `claude-sonnet-4-5-20250929` means `claude-sonnet-4-5`) whose prices are
    /// replaced whole, or a new model, added under the normalized key. A replaced model
    /// keeps its built-in aliases and gains the override's. Errors name the models
    /// involved: an alias already belonging to another model, or two keys for one model.
    pub fn with_overrides(
        mut self,
        overrides: BTreeMap<String, ModelPrices>,
    ) -> Result<PriceTable, String> {
        // Canonical id → the override key that set it, to catch two keys for one model.
        let mut set_by: BTreeMap<String, String> = BTreeMap::new();
        for (key, mut prices) in overrides {
            let name = normalize_model(&key);
            if name.is_empty() {
                return Err(format!("`{key}` is not a model name"));
            }
            let id = match self.names.get(&name) {
                Some(id) => {
                    let id = id.clone();
                    // Built-in aliases first, then the override's new ones.
                    let mut aliases = self.remove(&id).aliases;
                    for alias in prices.aliases {
                        if !aliases.contains(&alias) {
                            aliases.push(alias);
                        }
                    }
                    prices.aliases = aliases;
                    id
                }
                None => name,
            };
            if let Some(earlier) = set_by.insert(id.clone(), key.clone()) {
                return Err(format!(
                    "`{earlier}` and `{key}` both set the prices of `{id}`"
                ));
            }
            self.insert(id, prices)
                .map_err(|e| format!("prices of `{key}`: {e}"))?;
        }
        Ok(self)
    }

    /// The canonical id and prices of a model, by any of its names (see the module doc).
    pub fn lookup(&self, model: &str) -> Option<(&str, &ModelPrices)> {
        let id = self.names.get(&normalize_model(model))?;
        let (id, prices) = self.models.get_key_value(id)?;
        Some((id, prices))
    }

    /// What a response cost, in micro-dollars; `None` when the model is unknown, the
    /// table has no prices for its mode (fast) or its web searches, or the figure would
    /// not fit an `i64` (only for absurd token counts).
    ///
    /// This mirrors how Claude Code 2.1.330 prices a response (`Rfn` and `K0` in its
    /// bundled cli, with `XA`/`Np` picking fast rates and `M0` the geo multiplier):
    ///
    /// ```text
    /// cost = (input·in + output·out + cache_read·read + write_5m·w5m + write_1h·w1h) / 1e6
    ///          × (inference_geo == "us" ? 1.1 : 1)
    ///        + web_search_requests × web_search
    /// ```
    ///
    /// where the rates are the fast ones for `speed == "fast"`, else the long-prompt ones
    /// when `input + cache_read + cache_creation > above_prompt_tokens`, else standard.
    /// Claude Code sums floats; here every step is integer and the result is rounded half
    /// up to whole micro-dollars once, at the end.
    pub fn cost_micros(&self, model: &str, tokens: &Tokens, billing: &Billing) -> Option<i64> {
        let (_, prices) = self.lookup(model)?;
        let rates = prices.rates_for(tokens, billing)?;

        // Tokens × (µ$ per MTok) = pico-dollars (1e-12 $, 1e-6 µ$).
        let token_pico = [
            (tokens.input, rates.input),
            (tokens.output, rates.output),
            (tokens.cache_read, rates.cache_read),
            (tokens.cache_write_5m, rates.cache_write_5m),
            (tokens.cache_write_1h, rates.cache_write_1h),
        ]
        .into_iter()
        .try_fold(0u128, |sum, (count, rate)| {
            sum.checked_add(u128::from(count) * u128::from(rate.micros()))
        })?;

        // The geo multiplier is in millionths: token_pico × multiplier is in 1e-18 $.
        let geo = billing
            .inference_geo
            .as_deref()
            .and_then(|geo| self.geo_multipliers.get(geo))
            .copied()
            .unwrap_or(Multiplier::ONE);
        let tokens_atto = token_pico.checked_mul(u128::from(geo.0))?;

        // Web searches are not multiplied by the geo surcharge.
        let web_micros = match (tokens.web_search_requests, prices.web_search) {
            (0, _) => 0,
            (requests, Some(price)) => u128::from(requests) * u128::from(price.micros()),
            (_, None) => return None,
        };
        const ATTO_PER_MICRO: u128 = 1_000_000_000_000;
        let total_atto = tokens_atto.checked_add(web_micros.checked_mul(ATTO_PER_MICRO)?)?;

        // Round half up to whole micro-dollars.
        let micros = total_atto.checked_add(ATTO_PER_MICRO / 2)? / ATTO_PER_MICRO;
        i64::try_from(micros).ok()
    }

    /// Every model with its prices, by canonical id.
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelPrices)> {
        self.models.iter().map(|(id, prices)| (id.as_str(), prices))
    }

    /// Adds a model under `id` and indexes its names, refusing a name another model has.
    fn insert(&mut self, id: String, prices: ModelPrices) -> Result<(), String> {
        let names = std::iter::once(id.as_str()).chain(prices.aliases.iter().map(String::as_str));
        for name in names {
            let normalized = normalize_model(name);
            if normalized.is_empty() {
                return Err(format!("`{id}` has an empty alias"));
            }
            match self.names.get(&normalized) {
                Some(owner) if *owner != id => {
                    return Err(format!("`{name}` is a name of both `{owner}` and `{id}`"));
                }
                _ => {
                    self.names.insert(normalized, id.clone());
                }
            }
        }
        self.models.insert(id, prices);
        Ok(())
    }

    /// Takes a model and its names out of the table.
    fn remove(&mut self, id: &str) -> ModelPrices {
        self.names.retain(|_, owner| owner != id);
        self.models
            .remove(id)
            .expect("every indexed name has a model")
    }
}

/// The form a model name is matched in (see the module doc): trimmed, lowercase, without
/// a trailing `[1m]`, then without a trailing `-latest` or `-YYYYMMDD`.
pub fn normalize_model(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    let name = lower.strip_suffix("[1m]").unwrap_or(&lower);
    let name = match name.strip_suffix("-latest") {
        Some(rest) => rest,
        None => strip_date(name),
    };
    name.to_string()
}

/// `name` without a trailing `-` and 8 digits, if it has them.
fn strip_date(name: &str) -> &str {
    let bytes = name.as_bytes();
    let n = bytes.len();
    if n >= 9 && bytes[n - 9] == b'-' && bytes[n - 8..].iter().all(u8::is_ascii_digit) {
        &name[..n - 9]
    } else {
        name
    }
}

// Fixed-point numbers with 6 decimals: `Rate`, `Usd` and `Multiplier` are all read from a
// JSON number of dollars (or a factor) and held as an integer count of millionths.

/// Parses a plain decimal (`3`, `0.125`, `.5`) into millionths, exactly.
fn parse_fixed6(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.starts_with('-') {
        return Err(format!("{s} is negative"));
    }
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return Err(format!("{s:?} is not a decimal number of dollars"));
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 6 {
        return Err(format!(
            "{s} has more than 6 decimals (the smallest step is 0.000001)"
        ));
    }
    let too_large = || format!("{s} is too large");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let fraction: u64 = format!("{fraction:0<6}").parse().expect("six digits");
    whole
        .checked_mul(MICROS)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(too_large)
}

/// Converts a JSON float into millionths by way of its shortest decimal form, so `0.3`
/// becomes exactly 300,000.
fn fixed6_from_f64(value: f64) -> Result<u64, String> {
    if !value.is_finite() {
        return Err(format!("{value} is not a finite number"));
    }
    if value == 0.0 {
        return Ok(0); // also -0.0
    }
    // `Display` for f64 writes the shortest round-tripping decimal, never an exponent.
    parse_fixed6(&value.to_string())
}

/// Writes millionths as a JSON number: an integer when whole, else a float whose shortest
/// form is the exact decimal (true below 2^53 millionths).
fn serialize_fixed6<S: Serializer>(millionths: u64, serializer: S) -> Result<S::Ok, S::Error> {
    if millionths.is_multiple_of(MICROS) {
        serializer.serialize_u64(millionths / MICROS)
    } else {
        serializer.serialize_f64(millionths as f64 / MICROS as f64)
    }
}

/// Writes millionths as a decimal: `3`, `0.125`.
fn fmt_fixed6(millionths: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (whole, fraction) = (millionths / MICROS, millionths % MICROS);
    if fraction == 0 {
        write!(f, "{whole}")
    } else {
        let fraction = format!("{fraction:06}");
        write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
    }
}

/// Reads a JSON number into millionths.
struct Fixed6Visitor;

impl Visitor<'_> for Fixed6Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number with at most 6 decimals, such as 3 or 0.125")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        v.checked_mul(MICROS)
            .ok_or_else(|| E::custom(format!("{v} is too large")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("{v} is negative"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        fixed6_from_f64(v).map_err(E::custom)
    }
}

macro_rules! fixed6_serde {
    ($($ty:ident),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
                deserializer.deserialize_any(Fixed6Visitor).map($ty)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_fixed6(self.0, serializer)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_fixed6(self.0, f)
            }
        }
    )*};
}

fixed6_serde!(Rate, Usd, Multiplier);

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, output: u64, cache_read: u64, write_5m: u64, write_1h: u64) -> Tokens {
        Tokens {
            input,
            output,
            cache_read,
            cache_write_5m: write_5m,
            cache_write_1h: write_1h,
            ..Tokens::default()
        }
    }

    fn standard() -> Billing {
        Billing::default()
    }

    fn fast() -> Billing {
        Billing {
            speed: Some("fast".into()),
            ..Billing::default()
        }
    }

    fn geo(geo: &str) -> Billing {
        Billing {
            inference_geo: Some(geo.into()),
            ..Billing::default()
        }
    }

    fn rate(text: &str) -> Rate {
        Rate::from_usd_per_mtok(text).unwrap()
    }

    /// Rates from "input/output/cache_write_5m/cache_write_1h/cache_read", the order the
    /// catalog and the brief list them in.
    fn rates(spec: &str) -> Rates {
        let v: Vec<Rate> = spec.split('/').map(rate).collect();
        Rates {
            input: v[0],
            output: v[1],
            cache_write_5m: v[2],
            cache_write_1h: v[3],
            cache_read: v[4],
        }
    }

    fn prices_json(json: &str) -> ModelPrices {
        serde_json::from_str(json).unwrap()
    }

    fn overrides(json: &str) -> BTreeMap<String, ModelPrices> {
        serde_json::from_str(json).unwrap()
    }

    fn cost(table: &PriceTable, model: &str, tokens: &Tokens, billing: &Billing) -> Option<i64> {
        table.cost_micros(model, tokens, billing)
    }

    /// OpenAI entries in the built-in table (docs/protocol.md §7.7).
    const OPENAI_MODELS: usize = 34;

    fn tier(tier: &str) -> Billing {
        Billing {
            service_tier: Some(tier.into()),
            ..Billing::default()
        }
    }

    /// OpenAI tokens as the tap maps them: `input` total with `cached` of it cached.
    fn openai_tokens(input: u64, cached: u64, output: u64, reasoning: u64) -> Tokens {
        Tokens {
            input: input - cached,
            cache_read: cached,
            output,
            reasoning,
            ..Tokens::default()
        }
    }

    /// Costs of each OpenAI tier, by hand from §7.7's figures: one million fresh input,
    /// one million cached and one million output tokens cost in + cached + out dollars.
    #[test]
    fn openai_tiers_and_the_long_context_premium() {
        let table = PriceTable::builtin();
        let million = openai_tokens(2_000_000, 1_000_000, 1_000_000, 0);
        let base = openai_tokens(200_000, 100_000, 100_000, 0);
        // Under 272K input the premium does not apply: 100K in (40K cached), 10K out.
        let small = openai_tokens(100_000, 40_000, 10_000, 4_000);
        // 300K input (100K cached) is above 272K: the premium applies to all of it.
        let large = openai_tokens(300_000, 100_000, 2_000, 1_500);
        let cases: &[(&str, &str, &Tokens, i64)] = &[
            // gpt-5.4: standard 2.5 / 15 / 0.25, flex 1.25 / 7.5 / 0.125, priority 5 / 30 / 0.5;
            // 100K fresh, 100K cached, 100K out.
            ("gpt-5.4", "default", &base, 1_775_000),
            ("gpt-5.4", "auto", &base, 1_775_000),
            ("gpt-5.4", "", &base, 1_775_000),
            ("gpt-5.4", "scale", &base, 1_775_000),
            ("gpt-5.4", "flex", &base, 887_500),
            ("gpt-5.4", "FLEX", &base, 887_500),
            ("gpt-5.4", "priority", &base, 3_550_000),
            // 60K × 2.5 + 40K × 0.25 + 10K × 15 = 0.15 + 0.01 + 0.15 $.
            ("gpt-5.4", "default", &small, 310_000),
            // Premium 5 / 22.5 / 0.5: 200K × 5 + 100K × 0.5 + 2K × 22.5 = 1 + 0.05 + 0.045.
            ("gpt-5.4", "default", &large, 1_095_000),
            // Flex premium 2.5 / 11.25 / 0.25: 0.5 + 0.025 + 0.0225.
            ("gpt-5.4", "flex", &large, 547_500),
            // Priority premium 10 / 45 / 1: 2 + 0.1 + 0.09.
            ("gpt-5.4", "priority", &large, 2_190_000),
            // gpt-5.4-pro: 30 / 180 / 30, premium 60 / 270 / 60; no priority entry.
            ("gpt-5.4-pro", "default", &base, 24_000_000),
            ("gpt-5.4-pro", "priority", &base, 24_000_000),
            ("gpt-5.4-pro", "flex", &base, 12_000_000),
            ("gpt-5.4-pro", "default", &large, 18_540_000),
            // Models without a premium are priced flat above 272K.
            (
                "gpt-5.3-codex",
                "default",
                &large,
                350_000 + 17_500 + 28_000,
            ),
            // A million of each, which has no premium: 3.5 + 0.35 + 28.
            ("gpt-5.3-codex", "priority", &million, 31_850_000),
            // A tier the model has no entry for falls back to standard.
            ("gpt-5.1-codex-mini", "priority", &million, 2_275_000),
            ("gpt-5-mini", "flex", &million, 1_137_500),
            ("o3", "priority", &million, 18_375_000),
            ("gpt-4o", "priority", &million, 23_375_000),
            // Dated ids and `-latest` names.
            ("gpt-5-2025-08-07", "default", &million, 11_375_000),
            ("gpt-4.1-mini-2025-04-14", "default", &million, 2_100_000),
            ("gpt-5.2-chat-latest", "default", &million, 15_925_000),
            ("chatgpt-4o-latest", "default", &million, 13_750_000),
        ];
        for &(model, service_tier, tokens, expected) in cases {
            assert_eq!(
                table.cost_micros(model, tokens, &tier(service_tier)),
                Some(expected),
                "{model} {service_tier}"
            );
        }
        // Reasoning tokens are part of the output: they change nothing.
        let mut with_reasoning = base;
        with_reasoning.reasoning = 80_000;
        assert_eq!(
            table.cost_micros("gpt-5.4", &with_reasoning, &tier("default")),
            Some(1_775_000)
        );
        // Unknown models have no cost: no family guessing.
        for model in ["gpt-5.9", "gpt-5.4-turbo", "o5", "gpt-4o-2024-05-13"] {
            assert_eq!(
                table.cost_micros(model, &million, &tier("default")),
                None,
                "{model}"
            );
        }
        // Claude models have no priority entry: Anthropic's `priority` is standard.
        let claude = tokens(1_000_000, 0, 0, 0, 0);
        assert_eq!(
            table.cost_micros("claude-sonnet-4-5", &claude, &tier("priority")),
            table.cost_micros("claude-sonnet-4-5", &claude, &tier("standard"))
        );
    }

    #[test]
    fn tiers_parse_round_trip_and_reject_unknown_fields() {
        let json = r#"{"input": 2, "output": 8, "cache_read": 0.5,
            "flex": {"input": 1, "output": 4, "cache_read": 0.25,
                     "long_context": {"above_input_tokens": 272000, "input": 2, "output": 8, "cache_read": 0.5}},
            "priority": {"input": 3.5, "output": 14, "cache_read": 0.875}}"#;
        let prices: ModelPrices = serde_json::from_str(json).unwrap();
        assert_eq!(prices.standard.cache_write_5m, Rate(0));
        let flex = prices.flex.as_ref().unwrap();
        assert_eq!(flex.rates.input, Rate(1_000_000));
        assert_eq!(
            flex.long_context.as_ref().unwrap().above_input_tokens,
            272_000
        );
        assert_eq!(
            prices.priority.as_ref().unwrap().rates.cache_read,
            Rate(875_000)
        );
        let again: ModelPrices =
            serde_json::from_str(&serde_json::to_string(&prices).unwrap()).unwrap();
        assert_eq!(again, prices);
        // Cache writes of zero are left out when written.
        assert!(
            !serde_json::to_string(&prices)
                .unwrap()
                .contains("cache_write")
        );
        let bad = r#"{"input": 2, "output": 8, "cache_read": 0.5, "flex": {"input": 1, "output": 4, "cache_read": 0.25, "speed": 2}}"#;
        assert!(serde_json::from_str::<ModelPrices>(bad).is_err());
        let missing = r#"{"input": 2, "output": 8, "cache_read": 0.5, "priority": {"input": 1}}"#;
        assert!(serde_json::from_str::<ModelPrices>(missing).is_err());
    }

    #[test]
    fn builtin_parses() {
        let table = PriceTable::builtin();
        assert_eq!(table.version(), "2026-11-22");
        assert!(table.source().contains("Claude Code 2.1.330"));
        assert_eq!(table.models().count(), 27 + OPENAI_MODELS);
        assert_eq!(
            table.geo_multipliers.get("us"),
            Some(&Multiplier(1_100_000))
        );
    }

    /// Every model with its tier, as extracted from Claude Code 2.1.330's catalog and
    /// docs/protocol.md §6.3 (input/output/cache_write_5m/cache_write_1h/cache_read), and its
    /// fast prices. This is the data typed a second time, so a typo in either shows.
    #[test]
    fn builtin_figures() {
        const T3_15: &str = "3/15/3.75/6/0.3";
        const T5_25: &str = "5/25/6.25/10/0.5";
        const T15_75: &str = "15/75/18.75/30/1.5";
        const T10_50: &str = "10/50/12.5/20/1";
        const T10_50_R025: &str = "10/50/12.5/20/0.25";
        const T8_40_R020: &str = "8/40/10/16/0.2";
        let expected: [(&str, &str, Option<&str>); 27] = [
            ("claude-3-haiku", "0.25/1.25/0.3/0.5/0.03", None),
            ("claude-3-5-haiku", "0.8/4/1/1.6/0.08", None),
            ("claude-haiku-4-5", "1/5/1.25/2/0.1", None),
            ("claude-haiku-5-5", "0.1/0.5/0.125/0.2/0.01", None),
            ("claude-3-sonnet", T3_15, None),
            ("claude-3-5-sonnet", T3_15, None),
            ("claude-3-7-sonnet", T3_15, None),
            ("claude-sonnet-4-0", T3_15, None),
            ("claude-sonnet-4-5", T3_15, None),
            ("claude-sonnet-4-6", T3_15, None),
            ("claude-sonnet-5", "2/10/2.5/4/0.2", None),
            ("claude-sonnet-5-5", "2/10/2.5/4/0.1", None),
            ("claude-3-opus", T15_75, None),
            ("claude-opus-4-0", T15_75, None),
            ("claude-opus-4-1", T15_75, None),
            ("claude-opus-4-5", T5_25, None),
            ("claude-opus-4-6", T5_25, Some("30/150/37.5/60/3")),
            ("claude-opus-4-7", T5_25, Some("30/150/37.5/60/3")),
            ("claude-opus-4-8", T5_25, Some("10/50/12.5/20/1")),
            ("claude-opus-5", T5_25, Some("10/50/12.5/20/1")),
            ("claude-opus-5-5", "4/20/5/8/0.2", Some("8/40/10/16/0.4")),
            ("claude-fable-5", T10_50, None),
            ("claude-fable-5-1", T10_50_R025, None),
            ("claude-fable-5-2", T8_40_R020, Some("16/80/20/32/0.4")),
            ("claude-mythos-5", T10_50, None),
            ("claude-mythos-5-1", T10_50_R025, None),
            ("claude-mythos-5-2", T8_40_R020, Some("16/80/20/32/0.4")),
        ];
        let table = PriceTable::builtin();
        for (id, standard, fast) in expected {
            let (found, prices) = table.lookup(id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(found, id);
            assert_eq!(prices.standard, rates(standard), "{id}");
            assert_eq!(prices.fast, fast.map(rates), "{id} fast");
            assert_eq!(prices.web_search, Some(Usd(10_000)), "{id} web search");
            if id == "claude-haiku-5-5" {
                let long = prices.long_context.as_ref().unwrap();
                assert_eq!(long.above_input_tokens, 100_000);
                assert_eq!(long.rates, rates("0.5/2.5/0.625/1/0.05"));
            } else {
                assert_eq!(prices.long_context, None, "{id} long context");
            }
        }
    }

    #[test]
    fn every_name_resolves() {
        let table = PriceTable::builtin();
        let names = [
            ("claude-3-haiku-20240307", "claude-3-haiku"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
            ("claude-4-5-haiku", "claude-haiku-4-5"),
            ("claude-haiku-5-5", "claude-haiku-5-5"),
            ("claude-3-sonnet-20240229", "claude-3-sonnet"),
            ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
            ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet"),
            ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4-0"),
            ("claude-sonnet-4", "claude-sonnet-4-0"),
            ("claude-4-sonnet", "claude-sonnet-4-0"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-4-5-sonnet", "claude-sonnet-4-5"),
            ("claude-sonnet-4-6", "claude-sonnet-4-6"),
            ("claude-4-6-sonnet", "claude-sonnet-4-6"),
            ("claude-3-opus-20240229", "claude-3-opus"),
            ("claude-opus-3", "claude-3-opus"),
            ("claude-opus-4-20250514", "claude-opus-4-0"),
            ("claude-opus-4", "claude-opus-4-0"),
            ("claude-4-opus", "claude-opus-4-0"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
            ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ];
        for (name, id) in names {
            assert_eq!(table.lookup(name).map(|(id, _)| id), Some(id), "{name}");
        }
        // Every id and alias in the table, too.
        for (id, prices) in table.models() {
            assert_eq!(table.lookup(id).unwrap().0, id);
            for alias in &prices.aliases {
                assert_eq!(table.lookup(alias).unwrap().0, id, "{alias}");
            }
        }
    }

    #[test]
    fn no_name_belongs_to_two_models() {
        let table = PriceTable::builtin();
        let mut owners: HashMap<String, &str> = HashMap::new();
        for (id, prices) in table.models() {
            for name in std::iter::once(id).chain(prices.aliases.iter().map(String::as_str)) {
                if let Some(other) = owners.insert(normalize_model(name), id) {
                    assert_eq!(other, id, "{name} names {other} and {id}");
                }
            }
        }

        // And a file that does it is refused, naming both models.
        let rates =
            r#""input": 1, "output": 1, "cache_read": 1, "cache_write_5m": 1, "cache_write_1h": 1"#;
        let json = format!(
            r#"{{ "version": "x", "source": "y", "models": {{
                "model-a": {{ {rates}, "aliases": ["shared"] }},
                "model-b": {{ {rates}, "aliases": ["shared-20250101"] }} }} }}"#
        );
        let err = PriceTable::from_json(&json).unwrap_err();
        assert!(
            err.contains("`model-a`") && err.contains("`model-b`"),
            "{err}"
        );

        // Ids must be written normalized.
        let json = format!(
            r#"{{ "version": "x", "source": "y", "models": {{ "Model-A": {{ {rates} }} }} }}"#
        );
        assert!(
            PriceTable::from_json(&json)
                .unwrap_err()
                .contains("model-a")
        );
    }

    #[test]
    fn matching() {
        let table = PriceTable::builtin();
        let id = |name: &str| table.lookup(name).map(|(id, _)| id);
        assert_eq!(id("claude-sonnet-4-5-20250929"), Some("claude-sonnet-4-5"));
        assert_eq!(id("claude-opus-4-20250514"), Some("claude-opus-4-0"));
        assert_eq!(id("claude-opus-4-6[1m]"), Some("claude-opus-4-6"));
        assert_eq!(
            id("claude-sonnet-4-5-20250929[1m]"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(id("claude-3-5-haiku-latest"), Some("claude-3-5-haiku"));
        assert_eq!(id("claude-3-7-sonnet-latest"), Some("claude-3-7-sonnet"));
        assert_eq!(id("  CLAUDE-Opus-4-6[1M] "), Some("claude-opus-4-6"));
        assert_eq!(id("Claude-Sonnet-4-5-20250929"), Some("claude-sonnet-4-5"));

        // No guessing: unknown models, even close ones, are unknown.
        assert_eq!(id("claude-opus-4-9"), None);
        assert_eq!(id("claude-opus-4-9-20270101"), None);
        assert_eq!(id("claude-opus-4-6-fast"), None);
        assert_eq!(id("claude-sonnet"), None);
        assert_eq!(id("opus"), None);
        assert_eq!(id(""), None);
        // Only one suffix goes: a date, or `-latest`, not both.
        assert_eq!(id("claude-sonnet-4-5-20250929-latest"), None);
        // A date is exactly 8 digits.
        assert_eq!(id("claude-sonnet-4-5-2025092"), None);
        assert_eq!(
            cost(
                &table,
                "claude-opus-4-9",
                &tokens(1000, 0, 0, 0, 0),
                &standard()
            ),
            None
        );

        assert_eq!(normalize_model("claude-opus-4-20250514"), "claude-opus-4");
        assert_eq!(
            normalize_model("claude-3-5-haiku-latest[1m]"),
            "claude-3-5-haiku"
        );
        assert_eq!(normalize_model("20250514"), "20250514");
    }

    #[test]
    fn standard_cost() {
        let table = PriceTable::builtin();
        // 1000×3 + 500×15 + 2000×0.3 + 3000×3.75 + 4000×6 µ$
        // = 3000 + 7500 + 600 + 11250 + 24000 = 46,350 µ$.
        let t = tokens(1000, 500, 2000, 3000, 4000);
        assert_eq!(
            cost(&table, "claude-sonnet-4-5-20250929", &t, &standard()),
            Some(46_350)
        );
        // The same on Opus 4.0: 1000×15 + 500×75 + 2000×1.5 + 3000×18.75 + 4000×30
        // = 15000 + 37500 + 3000 + 56250 + 120000 = 231,750 µ$.
        assert_eq!(
            cost(&table, "claude-opus-4", &t, &standard()),
            Some(231_750)
        );
        // Sonnet 4.5 stays flat above 200K input (the catalog has no premium for it):
        // 300,000 × 3 = 900,000 µ$.
        let big = tokens(300_000, 0, 0, 0, 0);
        assert_eq!(
            cost(&table, "claude-sonnet-4-5[1m]", &big, &standard()),
            Some(900_000)
        );
        // No tokens, no cost.
        assert_eq!(
            cost(&table, "claude-opus-4-6", &Tokens::default(), &standard()),
            Some(0)
        );
    }

    #[test]
    fn fast_cost() {
        let table = PriceTable::builtin();
        let t = tokens(1000, 1000, 1000, 1000, 1000);
        // Opus 4.6 fast: 1000 × (30 + 150 + 3 + 37.5 + 60) = 1000 × 280.5 = 280,500 µ$,
        // against 1000 × (5 + 25 + 0.5 + 6.25 + 10) = 46,750 µ$ standard.
        assert_eq!(cost(&table, "claude-opus-4-6", &t, &fast()), Some(280_500));
        assert_eq!(
            cost(&table, "claude-opus-4-6", &t, &standard()),
            Some(46_750)
        );
        // Opus 5.5 fast: 1000 × (8 + 40 + 0.4 + 10 + 16) = 74,400 µ$.
        assert_eq!(cost(&table, "claude-opus-5-5", &t, &fast()), Some(74_400));
        // A model without fast prices: unknown, not standard.
        assert_eq!(cost(&table, "claude-sonnet-4-5", &t, &fast()), None);
        assert_eq!(cost(&table, "claude-haiku-5-5", &t, &fast()), None);
        // Another speed value is standard.
        let other = Billing {
            speed: Some("standard".into()),
            ..Billing::default()
        };
        assert_eq!(cost(&table, "claude-opus-4-6", &t, &other), Some(46_750));
    }

    #[test]
    fn long_context_threshold() {
        let table = PriceTable::builtin();
        // Haiku 5.5, prompt = 60,000 + 30,000 cache read + 10,000 cache write = 100,000:
        // not above the threshold, standard rates:
        // 60000×0.1 + 1000×0.5 + 30000×0.01 + 10000×0.125 = 6000 + 500 + 300 + 1250 = 8050.
        let at = tokens(60_000, 1000, 30_000, 10_000, 0);
        assert_eq!(at.total_input(), 100_000);
        assert_eq!(
            cost(&table, "claude-haiku-5-5", &at, &standard()),
            Some(8050)
        );
        // One more input token: long-context rates for every part:
        // 60001×0.5 + 1000×2.5 + 30000×0.05 + 10000×0.625
        // = 30000.5 + 2500 + 1500 + 6250 = 40250.5 → rounds half up to 40,251.
        let above = tokens(60_001, 1000, 30_000, 10_000, 0);
        assert_eq!(
            cost(&table, "claude-haiku-5-5", &above, &standard()),
            Some(40_251)
        );
    }

    #[test]
    fn inference_geo_and_web_search() {
        let table = PriceTable::builtin();
        let t = Tokens {
            web_search_requests: 2,
            ..tokens(1000, 1000, 0, 0, 0)
        };
        // Tokens: 1000×3 + 1000×15 = 18,000 µ$; searches: 2 × 10,000 = 20,000 µ$.
        assert_eq!(
            cost(&table, "claude-sonnet-4-5", &t, &standard()),
            Some(38_000)
        );
        // US inference: 18,000 × 1.1 = 19,800, searches not multiplied: 39,800.
        assert_eq!(
            cost(&table, "claude-sonnet-4-5", &t, &geo("us")),
            Some(39_800)
        );
        // Other geos carry no surcharge.
        assert_eq!(
            cost(&table, "claude-sonnet-4-5", &t, &geo("global")),
            Some(38_000)
        );
        // US on a fraction: haiku-3, 3 input tokens = 0.75 µ$ × 1.1 = 0.825 → 1.
        let three = tokens(3, 0, 0, 0, 0);
        assert_eq!(cost(&table, "claude-3-haiku", &three, &geo("us")), Some(1));
        // Fetches are free beyond their tokens.
        let fetch = Tokens {
            web_fetch_requests: 5,
            ..tokens(1000, 0, 0, 0, 0)
        };
        assert_eq!(
            cost(&table, "claude-sonnet-4-5", &fetch, &standard()),
            Some(3000)
        );
    }

    #[test]
    fn rounding_half_up() {
        let table = PriceTable::builtin();
        let haiku3 = |input| {
            cost(
                &table,
                "claude-3-haiku-20240307",
                &tokens(input, 0, 0, 0, 0),
                &standard(),
            )
        };
        // $0.25/MTok = 0.25 µ$ per token.
        assert_eq!(haiku3(1), Some(0)); // 0.25
        assert_eq!(haiku3(2), Some(1)); // 0.5, half up
        assert_eq!(haiku3(3), Some(1)); // 0.75
        assert_eq!(haiku3(6), Some(2)); // 1.5
        // Parts are summed before rounding: 1 input (0.25) + 1 cache read (0.03)
        // + 1 write 5m (0.3) = 0.58 → 1, where rounding each part would give 0.
        let t = tokens(1, 0, 1, 1, 0);
        assert_eq!(cost(&table, "claude-3-haiku", &t, &standard()), Some(1));
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let table = PriceTable::builtin();
        let n = 1_000_000_000_000; // 10^12 of everything
        let t = Tokens {
            web_search_requests: n,
            ..tokens(n, n, n, n, n)
        };
        // Opus 4.0: 10^12/10^6 MTok × (15 + 75 + 1.5 + 18.75 + 30) $ = 10^6 × 140.25 $
        // = 140,250,000 $ = 140,250,000,000,000 µ$.
        let no_search = tokens(n, n, n, n, n);
        assert_eq!(
            cost(&table, "claude-opus-4-0", &no_search, &standard()),
            Some(140_250_000_000_000)
        );
        // × 1.1 = 154,275,000,000,000 µ$, plus 10^12 searches × 10,000 µ$ = 10^16 µ$.
        assert_eq!(
            cost(&table, "claude-opus-4-0", &t, &geo("us")),
            Some(10_154_275_000_000_000)
        );
        // Beyond i64: unknown, no panic.
        let max = tokens(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(cost(&table, "claude-opus-4-0", &max, &geo("us")), None);
    }

    #[test]
    fn rate_parsing() {
        assert_eq!(rate("3"), Rate(3_000_000));
        assert_eq!(rate("0.125"), Rate(125_000));
        assert_eq!(rate("18.75"), Rate(18_750_000));
        assert_eq!(rate("0.000001"), Rate(1));
        assert_eq!(rate("1.500000000"), Rate(1_500_000));
        assert_eq!(Rate::from_usd_per_mtok_f64(0.3), Ok(Rate(300_000)));
        assert_eq!(
            Rate::from_usd_per_mtok_f64(0.1 + 0.2),
            Err(
                "0.30000000000000004 has more than 6 decimals (the smallest step is 0.000001)"
                    .into()
            )
        );
        assert_eq!(Rate::from_usd_per_mtok_f64(-0.0), Ok(Rate(0)));
        assert!(
            Rate::from_usd_per_mtok("-1")
                .unwrap_err()
                .contains("negative")
        );
        assert!(
            Rate::from_usd_per_mtok("0.000000001")
                .unwrap_err()
                .contains("6 decimals")
        );
        assert!(Rate::from_usd_per_mtok("NaN").is_err());
        assert!(Rate::from_usd_per_mtok("1e3").is_err());
        assert!(Rate::from_usd_per_mtok("").is_err());
        assert!(Rate::from_usd_per_mtok(".").is_err());
        assert!(
            Rate::from_usd_per_mtok("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            Rate::from_usd_per_mtok_f64(f64::NAN)
                .unwrap_err()
                .contains("finite")
        );
        assert!(
            Rate::from_usd_per_mtok_f64(f64::INFINITY)
                .unwrap_err()
                .contains("finite")
        );
        assert!(
            Rate::from_usd_per_mtok_f64(-1.0)
                .unwrap_err()
                .contains("negative")
        );

        // As JSON.
        let from_json = |json: &str| serde_json::from_str::<Rate>(json).map_err(|e| e.to_string());
        assert_eq!(from_json("3"), Ok(Rate(3_000_000)));
        assert_eq!(from_json("0.125"), Ok(Rate(125_000)));
        assert_eq!(from_json("3.0"), Ok(Rate(3_000_000)));
        assert!(from_json("-1").unwrap_err().contains("negative"));
        assert!(from_json("-0.5").unwrap_err().contains("negative"));
        assert!(from_json("1e-9").unwrap_err().contains("6 decimals"));
        assert!(from_json("\"NaN\"").is_err());
        assert!(from_json("\"3\"").is_err());
        assert!(from_json("1e300").unwrap_err().contains("too large"));

        // Written back as the same numbers.
        assert_eq!(serde_json::to_string(&Rate(3_000_000)).unwrap(), "3");
        assert_eq!(serde_json::to_string(&Rate(125_000)).unwrap(), "0.125");
        assert_eq!(serde_json::to_string(&Usd(10_000)).unwrap(), "0.01");
        assert_eq!(Rate(18_750_000).to_string(), "18.75");
        assert_eq!(Usd(10_000).to_string(), "0.01");
    }

    #[test]
    fn round_trip_through_json() {
        let table = PriceTable::builtin();
        for (id, prices) in table.models() {
            let json = serde_json::to_string(prices).unwrap();
            assert_eq!(
                &serde_json::from_str::<ModelPrices>(&json).unwrap(),
                prices,
                "{id}: {json}"
            );
        }
        let haiku = serde_json::to_value(table.lookup("claude-haiku-5-5").unwrap().1).unwrap();
        assert_eq!(haiku["input"], serde_json::json!(0.1));
        assert_eq!(
            haiku["long_context"]["above_input_tokens"],
            serde_json::json!(100_000)
        );
        assert_eq!(haiku.get("fast"), None);
    }

    #[test]
    fn model_prices_reject_unknown_fields() {
        let err = serde_json::from_str::<ModelPrices>(
            r#"{ "input": 1, "ouput": 5, "cache_read": 0.1, "cache_write_5m": 1.25, "cache_write_1h": 2 }"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("ouput"), "{err}");
        let err = serde_json::from_str::<ModelPrices>(
            r#"{ "input": 1, "output": 5, "cache_read": 0.1, "cache_write_5m": 1.25, "cache_write_1h": 2,
                 "fast": { "input": 1, "output": 5, "cache_read": 0.1, "cache_write_5m": 1.25 } }"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cache_write_1h"), "{err}");
        let err = serde_json::from_str::<ModelPrices>(
            r#"{ "input": -1, "output": 5, "cache_read": 0.1, "cache_write_5m": 1.25, "cache_write_1h": 2 }"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("-1 is negative"), "{err}");
    }

    #[test]
    fn override_replaces_a_model() {
        let table = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "claude-sonnet-4-5": { "input": 4, "output": 20, "cache_read": 0.4,
                     "cache_write_5m": 5, "cache_write_1h": 8, "aliases": ["my-sonnet"] } }"#,
            ))
            .unwrap();
        // 1000×4 + 500×20 + 2000×0.4 + 3000×5 + 4000×8 = 4000 + 10000 + 800 + 15000 + 32000
        // = 61,800 µ$ (46,350 before).
        let t = tokens(1000, 500, 2000, 3000, 4000);
        for name in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "claude-4-5-sonnet",
            "my-sonnet",
        ] {
            assert_eq!(cost(&table, name, &t, &standard()), Some(61_800), "{name}");
            assert_eq!(table.lookup(name).unwrap().0, "claude-sonnet-4-5");
        }
        let aliases = &table.lookup("claude-sonnet-4-5").unwrap().1.aliases;
        assert_eq!(
            aliases,
            &[
                "claude-sonnet-4-5-20250929",
                "claude-4-5-sonnet",
                "my-sonnet"
            ]
        );
        // The entry is replaced whole: this one has no web search price.
        let search = Tokens {
            web_search_requests: 1,
            ..t
        };
        assert_eq!(
            cost(&table, "claude-sonnet-4-5", &search, &standard()),
            None
        );
        // Others are untouched.
        assert_eq!(
            cost(&table, "claude-sonnet-4-6", &t, &standard()),
            Some(46_350)
        );
        assert_eq!(table.models().count(), 27 + OPENAI_MODELS);
        assert_eq!(table.version(), "2026-11-22");
    }

    #[test]
    fn override_by_dated_name_or_alias() {
        // A key is matched like a requested name: a dated id or an alias means its model.
        let table = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "claude-opus-4-20250514": { "input": 1, "output": 2, "cache_read": 0,
                     "cache_write_5m": 0, "cache_write_1h": 0 },
                     "Claude-Sonnet-4": { "input": 1, "output": 1, "cache_read": 0,
                     "cache_write_5m": 0, "cache_write_1h": 0 } }"#,
            ))
            .unwrap();
        assert_eq!(table.models().count(), 27 + OPENAI_MODELS);
        // 1000×1 + 1000×2 = 3000 µ$.
        let t = tokens(1000, 1000, 0, 0, 0);
        assert_eq!(cost(&table, "claude-opus-4-0", &t, &standard()), Some(3000));
        assert_eq!(cost(&table, "claude-4-opus", &t, &standard()), Some(3000));
        assert_eq!(
            cost(&table, "claude-sonnet-4-0", &t, &standard()),
            Some(2000)
        );

        // Two keys for the same model are refused.
        let err = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "claude-opus-4": { "input": 1, "output": 2, "cache_read": 0,
                     "cache_write_5m": 0, "cache_write_1h": 0 },
                     "claude-opus-4-0": { "input": 1, "output": 2, "cache_read": 0,
                     "cache_write_5m": 0, "cache_write_1h": 0 } }"#,
            ))
            .unwrap_err();
        assert!(
            err.contains("`claude-opus-4`") && err.contains("`claude-opus-4-0`"),
            "{err}"
        );
    }

    #[test]
    fn override_adds_a_model() {
        let table = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "claude-opus-4-9": { "input": 6, "output": 30, "cache_read": 0.6,
                     "cache_write_5m": 7.5, "cache_write_1h": 12, "web_search": 0.02,
                     "fast": { "input": 12, "output": 60, "cache_read": 1.2,
                               "cache_write_5m": 15, "cache_write_1h": 24 },
                     "aliases": ["claude-4-9-opus"] } }"#,
            ))
            .unwrap();
        assert_eq!(table.models().count(), 28 + OPENAI_MODELS);
        // 1000×6 + 100×30 = 9000 µ$, plus 1 search × 20,000 µ$ = 29,000.
        let t = Tokens {
            web_search_requests: 1,
            ..tokens(1000, 100, 0, 0, 0)
        };
        for name in [
            "claude-opus-4-9",
            "claude-opus-4-9-20270101",
            "claude-4-9-opus-latest",
        ] {
            assert_eq!(table.lookup(name).unwrap().0, "claude-opus-4-9", "{name}");
            assert_eq!(cost(&table, name, &t, &standard()), Some(29_000), "{name}");
        }
        // Fast: 1000×12 + 100×60 = 18,000 + 20,000 = 38,000.
        assert_eq!(cost(&table, "claude-opus-4-9", &t, &fast()), Some(38_000));

        // A new model's id is the normalized key.
        let table = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "My-Model-20260101": { "input": 1, "output": 1, "cache_read": 1,
                     "cache_write_5m": 1, "cache_write_1h": 1 } }"#,
            ))
            .unwrap();
        assert_eq!(table.lookup("my-model").unwrap().0, "my-model");

        // A long-context tier can be restored for a model (sing-box's old 200K premium).
        let table = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "claude-sonnet-4-5": { "input": 3, "output": 15, "cache_read": 0.3,
                     "cache_write_5m": 3.75, "cache_write_1h": 6,
                     "long_context": { "above_input_tokens": 200000, "input": 6, "output": 22.5,
                       "cache_read": 0.6, "cache_write_5m": 7.5, "cache_write_1h": 12 } } }"#,
            ))
            .unwrap();
        // 200,001 × 6 = 1,200,006 µ$.
        let big = tokens(200_001, 0, 0, 0, 0);
        assert_eq!(
            cost(&table, "claude-sonnet-4-5", &big, &standard()),
            Some(1_200_006)
        );
    }

    #[test]
    fn override_alias_clash() {
        let err = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "my-model": { "input": 1, "output": 1, "cache_read": 1,
                     "cache_write_5m": 1, "cache_write_1h": 1,
                     "aliases": ["claude-4-5-sonnet"] } }"#,
            ))
            .unwrap_err();
        assert!(
            err.contains("`my-model`") && err.contains("`claude-sonnet-4-5`"),
            "{err}"
        );

        // Also through normalization: a dated spelling of another model's id.
        let err = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "my-model": { "input": 1, "output": 1, "cache_read": 1,
                     "cache_write_5m": 1, "cache_write_1h": 1,
                     "aliases": ["claude-opus-4-6-20260101"] } }"#,
            ))
            .unwrap_err();
        assert!(
            err.contains("`my-model`") && err.contains("`claude-opus-4-6`"),
            "{err}"
        );

        // Giving a replaced model an alias of another model is refused too.
        let err = PriceTable::builtin()
            .with_overrides(overrides(
                r#"{ "claude-sonnet-4-6": { "input": 1, "output": 1, "cache_read": 1,
                     "cache_write_5m": 1, "cache_write_1h": 1, "aliases": ["claude-sonnet-4"] } }"#,
            ))
            .unwrap_err();
        assert!(
            err.contains("`claude-sonnet-4-6`") && err.contains("`claude-sonnet-4-0`"),
            "{err}"
        );

        let err = PriceTable::builtin()
            .with_overrides(BTreeMap::from([(" [1m]".to_string(), prices_json(
                r#"{ "input": 1, "output": 1, "cache_read": 1, "cache_write_5m": 1, "cache_write_1h": 1 }"#,
            ))]))
            .unwrap_err();
        assert!(err.contains("not a model name"), "{err}");
    }
}
