//! Carpool: a relay that lets several machines and people share Claude Code
//! subscriptions. See docs/design.md for the shape; the request path is in [`relay`].

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod dashboard;
pub mod desktop;
pub mod engine;
pub mod error;
mod fsutil;
pub mod launch;
pub mod ledger;
pub mod listener;
pub mod logging;
pub mod pool;
#[cfg(test)]
mod proptest_cases;
pub mod protocol;
pub mod relay;
pub mod secret;
pub mod secrets;
pub mod state;
pub mod tasks;
pub mod tls;
pub mod translate;
pub mod upstream;

pub use config::Config;
pub use engine::{Engine, RunningServer, Server};
