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
//! - [`query`] answers totals and time series, bucketed in any time zone.
//! - [`ccm`] writes sing-box ccm's `usages_path` file, for people moving from sing-box.

pub mod ccm;
pub mod extract;
pub mod prices;
pub mod query;
mod record;
pub mod store;
mod writer;

pub use record::{Billing, Tokens, Usage, UsageRecord};
pub use writer::{Ledger, LedgerOptions};

/// Requests whose input (fresh + cached) exceeds this used the 1M-token context window.
pub const STANDARD_CONTEXT: u64 = 200_000;
pub const LONG_CONTEXT: u32 = 1_000_000;

/// The context window a request with these tokens needed (protocol.md §6.2). sing-box
/// also requires a `context-1m` beta; a request over 200,000 input tokens cannot have
/// been served by a 200K window, and newer models have 1M natively, so the tokens decide.
pub fn context_window(tokens: &Tokens) -> u32 {
    if tokens.total_input() > STANDARD_CONTEXT {
        LONG_CONTEXT
    } else {
        STANDARD_CONTEXT as u32
    }
}
