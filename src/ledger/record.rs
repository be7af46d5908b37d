//! What one relayed request leaves in the ledger.

use serde::{Deserialize, Serialize};

/// Token counts of one response, as the upstream reported them (docs/protocol.md §6.1,
/// §7.6 for OpenAI).
///
/// OpenAI counts cached input inside its input count; here `input` is the fresh part
/// only (`input_tokens − cached_tokens`) and `cache_read` the cached part, as for Claude,
/// so that `total_input()` is the prompt's size for both.
///
/// Cache writes are kept split by TTL because they are priced differently. The
/// upstream's `cache_creation_input_tokens` is always `cache_write_5m + cache_write_1h`
/// here: when the response has no 5m/1h split, every write counts as a 5-minute one
/// (what both Anthropic's billing and sing-box assume).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    /// `usage.server_tool_use.web_search_requests`: billed per search.
    pub web_search_requests: u64,
    /// `usage.server_tool_use.web_fetch_requests`: free beyond its tokens, counted for reports.
    pub web_fetch_requests: u64,
    /// OpenAI's `output_tokens_details.reasoning_tokens` (docs/protocol.md §7.6): the part
    /// of `output` the model spent reasoning. Already counted in `output` and priced as
    /// output there; kept for reports. Always 0 for Claude (thinking is plain output).
    #[serde(default)]
    pub reasoning: u64,
}

impl Tokens {
    /// `cache_creation_input_tokens` as the upstream reports it.
    pub fn cache_write(&self) -> u64 {
        self.cache_write_5m + self.cache_write_1h
    }

    /// Every input token the model read: fresh, cached and newly cached.
    pub fn total_input(&self) -> u64 {
        self.input + self.cache_read + self.cache_write()
    }

    /// True when the upstream reported any token at all.
    pub fn is_empty(&self) -> bool {
        self.input == 0 && self.output == 0 && self.cache_read == 0 && self.cache_write() == 0
    }
}

/// How a response was priced beyond its token counts (fields of the response's `usage`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billing {
    /// `usage.speed`: `"fast"` for fast mode, which has its own prices.
    pub speed: Option<String>,
    /// `usage.service_tier` (Anthropic: `standard`, `priority`, `batch`) or the
    /// response's `service_tier` (OpenAI: `default`, `auto`, `flex`, `priority`, `scale`),
    /// which picks OpenAI's price tier (docs/protocol.md §7.7).
    pub service_tier: Option<String>,
    /// `usage.inference_geo`: `"us"` carries a surcharge on token prices.
    pub inference_geo: Option<String>,
}

impl Billing {
    pub fn is_fast(&self) -> bool {
        self.speed.as_deref() == Some("fast")
    }
}

/// The usage the tap read from one response body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// `model` of the response (`message.model` in a stream), when it said.
    pub model: Option<String>,
    pub tokens: Tokens,
    pub billing: Billing,
    /// The response ended the way a whole one does: the JSON parsed to its end, or the
    /// stream reached `message_stop`. False for a stream cut short, whatever was seen.
    pub complete: bool,
}

/// One row of the ledger: one request that passed authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRecord {
    /// When the request arrived, Unix milliseconds.
    pub at_ms: i64,
    /// The Carpool user's name; empty for anonymous loopback use.
    pub user: String,
    /// Tag of the credential that served it.
    pub credential: String,
    /// `messages`, `count_tokens` or `models`.
    pub endpoint: String,
    /// The model that answered (the response's), else the one asked for; empty if neither.
    pub model: String,
    /// Claude Code's device id (`metadata.user_id`); empty when the client sent none.
    pub device: String,
    /// Claude Code's session id (`X-Claude-Code-Session-Id` or `metadata.user_id`).
    pub session: String,
    /// HTTP status the client got.
    pub status: u16,
    /// How the response ended: `complete`, `client_closed`, `idle_timeout`,
    /// `request_timeout`, `upstream_broke` or `error` (Carpool's own error answer).
    pub outcome: String,
    pub tokens: Tokens,
    /// `fast` when the response was priced as fast mode; empty otherwise.
    pub speed: String,
    /// 200,000 or 1,000,000: which context window the request needed (docs/protocol.md §6.2).
    pub context_window: u32,
    /// Cost in millionths of a US dollar; `None` when the model has no known price.
    pub cost_micros: Option<i64>,
    /// From arrival to the last byte sent.
    pub duration_ms: u32,
    /// From arrival to the first response byte sent; `None` if none was.
    pub ttfb_ms: Option<u32>,
    /// Entries in the request's `messages` array (sing-box's `messages_count`).
    pub messages: u32,
    /// `anthropic-ratelimit-unified-7d-reset` of the response (Unix seconds): the end of
    /// the account's weekly window, which sing-box's usage file groups by. For a Codex
    /// answer, the reset of its weekly `x-codex-*` window (docs/protocol.md §7.6).
    pub week_reset: Option<i64>,
    /// The service tier the response was billed at, as the upstream named it (OpenAI's
    /// `service_tier`: `default`, `flex`, `priority`, …; Anthropic's `standard`, …); empty
    /// when it said none. Only sing-box's ocm file reads it (it groups by tier); not stored.
    pub service_tier: String,
}

impl UsageRecord {
    /// True when the row carries tokens (what sing-box's usage file counts).
    pub fn has_usage(&self) -> bool {
        self.tokens.input > 0 || self.tokens.output > 0
    }
}
