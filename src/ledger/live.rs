//! The live feed: one [`RequestEvent`] per finished relayed request, for whoever watches
//! (the management API's `GET /requests/live`, as Server-Sent Events).
//!
//! Every request ends in one place (the relay's request context is dropped), refused
//! ones included; that place asks [`LiveFeed::is_watched`] first and builds nothing when
//! nobody listens, so the request path pays one atomic load for the feed. Events go
//! through a `tokio::sync::broadcast` channel: sending never waits, and a subscriber that
//! falls more than [`CAPACITY`] events behind loses the oldest ones and is told how many
//! ([`Recv::Lagged`]) instead of slowing anyone down.
//!
//! An event carries metadata only: never a prompt or an answer, never a token or a
//! header. The user is the configured name.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use utoipa::ToSchema;

/// Events a subscriber may fall behind by before it loses the oldest.
pub const CAPACITY: usize = 1024;

/// One finished relayed request, as the live feed sends it (the data of a `request`
/// event). Metadata only: no prompt, no answer, no token, no header.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RequestEvent {
    /// When the request arrived: RFC 3339, UTC, with milliseconds.
    pub at: String,
    /// The same instant in Unix milliseconds.
    pub at_ms: i64,
    /// The HTTP method.
    pub method: String,
    /// The path asked for, without the query string.
    pub path: String,
    /// The relayed endpoint (`messages`, `count_tokens`, `models`); `null` for a path
    /// Carpool does not relay.
    pub endpoint: Option<String>,
    /// The Carpool user's name; `null` when the caller did not authenticate (a refused
    /// token) or used Carpool anonymously on loopback.
    pub user: Option<String>,
    /// The tag of the account that answered (the last one tried); `null` if none did.
    pub account: Option<String>,
    /// The model that answered, else the one asked for; `null` if neither is known.
    pub model: Option<String>,
    /// The HTTP status the client got.
    pub status: u16,
    /// How the request ended: `complete`, `upstream_error` (the answer inside a whole
    /// body was not whole), `client_closed`, `upstream_broke`, `request_timeout`,
    /// `idle_timeout`, or `error` (Carpool refused it with an error of its own; see
    /// `error`).
    pub outcome: String,
    /// Why Carpool refused the request, when `outcome` is `error`: `bad_token`,
    /// `not_found`, `method_not_allowed`, `too_large`, `bad_request`, `body_stalled`,
    /// `needs_owner`, `no_credential`, `exhausted`, `unreachable` or `timeout`.
    pub error: Option<String>,
    /// The answer was an event stream (`stream: true`).
    pub streamed: bool,
    /// Fresh input tokens.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (5-minute and 1-hour).
    pub cache_write_tokens: u64,
    /// What the request cost, in millionths of a dollar; `null` when its model has no
    /// known price (or it was not costed: refused before authentication).
    pub cost_micros: Option<i64>,
    /// The same in dollars.
    pub cost_usd: Option<f64>,
    /// From arrival to the last byte sent, in milliseconds.
    pub duration_ms: u64,
    /// From arrival to the first byte of the answer, in milliseconds; `null` if no byte
    /// of a relayed answer was sent.
    pub ttfb_ms: Option<u64>,
    /// Bytes of the answer's body relayed to the client.
    pub bytes: u64,
}

/// Events were lost because this subscriber fell behind (the data of a `lagged` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct LaggedEvent {
    /// How many `request` events this subscriber missed.
    pub missed: u64,
}

/// The sending side, shared by the engine and every request in flight. Cloning is one
/// reference count.
#[derive(Clone)]
pub struct LiveFeed(Arc<Inner>);

struct Inner {
    events: broadcast::Sender<Arc<RequestEvent>>,
    /// Set when the server shuts down: open feeds end, so they do not hold the
    /// graceful shutdown for its whole grace period.
    closed: watch::Sender<bool>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed::new(CAPACITY)
    }
}

impl LiveFeed {
    pub fn new(capacity: usize) -> LiveFeed {
        LiveFeed(Arc::new(Inner {
            events: broadcast::Sender::new(capacity),
            closed: watch::Sender::new(false),
        }))
    }

    /// Whether anyone listens: when not, the caller should not even build the event.
    pub fn is_watched(&self) -> bool {
        self.0.events.receiver_count() > 0
    }

    /// Sends an event to every subscriber; never waits.
    pub fn send(&self, event: RequestEvent) {
        // An error only means nobody listens any more.
        let _ = self.0.events.send(Arc::new(event));
    }

    /// A new subscriber, receiving the events sent from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            events: self.0.events.subscribe(),
            closed: self.0.closed.subscribe(),
        }
    }

    /// Ends every subscription, now and to come: the server is shutting down.
    pub fn close(&self) {
        self.0.closed.send_replace(true);
    }
}

/// What a subscription receives next.
#[derive(Debug, Clone, PartialEq)]
pub enum Recv {
    Event(Arc<RequestEvent>),
    /// This many events were dropped because the subscriber fell behind.
    Lagged(u64),
    /// The feed closed (shutdown): nothing more will come.
    Closed,
}

pub struct Subscription {
    events: broadcast::Receiver<Arc<RequestEvent>>,
    closed: watch::Receiver<bool>,
}

impl Subscription {
    /// The next event, waiting for it.
    pub async fn recv(&mut self) -> Recv {
        if *self.closed.borrow() {
            return Recv::Closed;
        }
        tokio::select! {
            received = self.events.recv() => match received {
                Ok(event) => Recv::Event(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => Recv::Lagged(missed),
                Err(broadcast::error::RecvError::Closed) => Recv::Closed,
            },
            _ = self.closed.wait_for(|closed| *closed) => Recv::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> RequestEvent {
        RequestEvent {
            at: String::new(),
            at_ms: n,
            method: "POST".into(),
            path: "/v1/messages".into(),
            endpoint: Some("messages".into()),
            user: Some("alice".into()),
            account: None,
            model: None,
            status: 200,
            outcome: "complete".into(),
            error: None,
            streamed: false,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_micros: None,
            cost_usd: None,
            duration_ms: 0,
            ttfb_ms: None,
            bytes: 0,
        }
    }

    #[tokio::test]
    async fn subscribers_get_events_sent_after_they_came_and_laggards_are_told() {
        let feed = LiveFeed::new(4);
        assert!(!feed.is_watched());
        feed.send(event(0)); // nobody listens: lost, and no error
        let mut fast = feed.subscribe();
        let mut slow = feed.subscribe();
        assert!(feed.is_watched());
        feed.send(event(1));
        assert_eq!(fast.recv().await, Recv::Event(Arc::new(event(1))));
        for n in 2..=7 {
            feed.send(event(n));
        }
        // The slow one fell 7 behind a buffer of 4: the 3 oldest are gone.
        assert_eq!(slow.recv().await, Recv::Lagged(3));
        assert_eq!(slow.recv().await, Recv::Event(Arc::new(event(4))));
        drop((fast, slow));
        assert!(!feed.is_watched());
    }

    #[tokio::test]
    async fn closing_ends_every_subscription() {
        let feed = LiveFeed::default();
        let mut before = feed.subscribe();
        // The subscriber is already waiting when the feed closes.
        let (received, ()) = tokio::join!(before.recv(), async {
            tokio::task::yield_now().await;
            feed.close();
        });
        assert_eq!(received, Recv::Closed);
        assert_eq!(feed.subscribe().recv().await, Recv::Closed);
    }
}
