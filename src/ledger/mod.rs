//! The usage ledger: what every request cost, kept in SQLite, for reports and charts.
//!
//! ```text
//! relay ─ tap (extract) ─► UsageRecord ─► Ledger::record ─ bounded channel ─► writer thread
//!                                                                              │ one transaction per batch
//!                                                                              ▼
//!                                              SQLite (store): requests + hourly rollup
//!                                                                              │
//!                                     `carpool usage`, dashboard ◄── query ◄───┘
//! ```
//!
//! - [`extract`] reads usage from the response bytes as they pass, without holding up
//!   or copying the body.
//! - [`prices`] turns tokens into micro-dollars from a versioned price table.
//! - [`store`] owns the schema, migrations and the writer.
//! - [`query`] answers totals and zero-filled time series, bucketed in any time zone, as
//!   serde types the CLI and the management API share.
//! - [`csv`] writes a report as CSV, for the CLI and the API alike.
//! - [`range`] reads the ranges people type (`today`, `7d`, `2026-11`) for both.
//! - [`live`] sends each finished request's metadata to whoever watches (the API's live
//!   feed).
//! - [`ccm`] writes sing-box ccm's `usages_path` file, for people moving from sing-box;
//!   [`ocm`] the ocm one (Codex and OpenAI accounts), through the same [`ccm::CcmFile`].

pub mod ccm;
pub mod csv;
pub mod extract;
pub mod live;
pub mod ocm;
pub mod prices;
pub mod query;
pub mod range;
mod record;
pub mod store;
mod writer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::tasks::lock;
use prices::PriceTable;
pub use record::{Billing, Tokens, Usage, UsageRecord};
pub use writer::{Ledger, LedgerOptions, Sink};

/// The price table plus the memory of which unknown models were already warned about.
pub struct Pricing {
    table: Arc<PriceTable>,
    warned: Mutex<HashSet<String>>,
}

/// All recording a request needs: the ledger to write to and the prices to cost it.
/// The request path holds this, never the engine.
#[derive(Clone)]
pub struct Recorder {
    ledger: Arc<Ledger>,
    pricing: Arc<Pricing>,
}

impl Recorder {
    pub fn new(ledger: Arc<Ledger>, pricing: Arc<Pricing>) -> Recorder {
        Recorder { ledger, pricing }
    }

    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// Queues `record` for the ledger's writer (see [`Ledger::record`]).
    pub fn record(&self, record: UsageRecord) {
        self.ledger.record(record);
    }
}

impl Pricing {
    pub fn new(table: Arc<PriceTable>) -> Pricing {
        Pricing {
            table,
            warned: Mutex::new(HashSet::new()),
        }
    }

    pub fn table(&self) -> &PriceTable {
        &self.table
    }

    /// What a response cost, in micro-dollars. A response without tokens costs 0 whatever
    /// the model. `None` when the model (or its fast mode) has no known price: the request
    /// is still recorded, with its tokens, and the first such request per model logs a
    /// warning saying how to add the price.
    pub fn cost(&self, model: &str, tokens: &Tokens, billing: &Billing) -> Option<i64> {
        if tokens.is_empty() && tokens.web_search_requests == 0 {
            return Some(0);
        }
        let cost = self.table.cost_micros(model, tokens, billing);
        if cost.is_none() {
            let what = if billing.is_fast() {
                format!("{model} (fast mode)")
            } else {
                model.to_owned()
            };
            let first = lock(&self.warned).insert(what.clone());
            if first {
                tracing::warn!(
                    model = %what,
                    prices = self.table.version(),
                    "no price known for this model: its requests are recorded with their tokens but an unknown cost; add it under `prices` in the Carpool config"
                );
            }
        }
        cost
    }
}

/// Requests whose input (fresh + cached) exceeds this used the 1M-token context window.
pub const STANDARD_CONTEXT: u64 = 200_000;
pub const LONG_CONTEXT: u32 = 1_000_000;

/// The context window a request with these tokens needed (docs/protocol.md §6.2). sing-box
/// also requires a `context-1m` beta; a request over 200,000 input tokens cannot have
/// been served by a 200K window, and newer models have 1M natively, so the tokens decide.
pub fn context_window(tokens: &Tokens) -> u32 {
    if tokens.total_input() > STANDARD_CONTEXT {
        LONG_CONTEXT
    } else {
        STANDARD_CONTEXT as u32
    }
}

/// OpenAI requests whose input (cached included) exceeds this are in the long-context
/// tier: a 1,050,000-token window and, for the models that have one, premium prices
/// (docs/protocol.md §7.7).
pub const OPENAI_STANDARD_CONTEXT: u64 = 272_000;
pub const OPENAI_LONG_CONTEXT: u32 = 1_050_000;

/// The context window an OpenAI request with these tokens needed: 272,000 or 1,050,000,
/// as sing-box ocm's usage file records it.
pub fn openai_context_window(tokens: &Tokens) -> u32 {
    if tokens.total_input() > OPENAI_STANDARD_CONTEXT {
        OPENAI_LONG_CONTEXT
    } else {
        OPENAI_STANDARD_CONTEXT as u32
    }
}
