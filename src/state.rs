//! The configuration in force, as the request path sees it.
//!
//! A [`State`] is one reading of the config and what was built from it: users, the
//! account pool, the recorder with this config's prices. [`Current`] holds the one in
//! force; a request takes it when it starts ([`Current::state`]) and keeps it to its end,
//! so a reload ([`crate::engine::Engine::apply`], which builds the next one and swaps it
//! in) never changes the rules under a request in flight.
//!
//! This sits below both the engine and the relay: the relay needs the current state and
//! a place for background work, not the engine that builds them, so neither imports the
//! other back.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Users;
use crate::config::Config;
use crate::ledger::Recorder;
use crate::ledger::live::LiveFeed;
use crate::pool::Pool;
use crate::tasks::Tasks;

/// One reading of the config and what was built from it.
pub struct State {
    pub config: Arc<Config>,
    pub users: Users,
    /// The accounts and pools; picks the account for each request.
    pub pool: Pool,
    /// The ledger and this config's prices: what recording a request needs.
    pub recorder: Recorder,
}

/// The state in force, swapped as one, and the engine's background tasks.
pub struct Current {
    state: ArcSwap<State>,
    tasks: Tasks,
    /// Every finished request's metadata, for whoever watches; outlives reloads.
    feed: LiveFeed,
}

impl Current {
    pub fn new(state: State) -> Current {
        Current {
            state: ArcSwap::from_pointee(state),
            tasks: Tasks::new(),
            feed: LiveFeed::default(),
        }
    }

    /// The state in force now. Hold it for the length of one request.
    pub fn state(&self) -> Arc<State> {
        // Lock-free: a reload swapping the state never blocks a request.
        self.state.load_full()
    }

    /// Makes `state` the one in force; requests that hold the previous one keep it.
    pub fn replace(&self, state: State) {
        self.state.store(Arc::new(state));
    }

    /// Where background work (credential and config watchers, usage polls) runs; stopped
    /// and waited for at shutdown.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// The live feed of finished requests.
    pub fn feed(&self) -> &LiveFeed {
        &self.feed
    }
}
