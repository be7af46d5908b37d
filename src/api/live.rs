//! `GET /requests/live`: every finished relayed request as it ends, as Server-Sent
//! Events ([`crate::ledger::live`]).
//!
//! While a feed is open the status counts as watched ([`crate::Engine::watch_status`]),
//! so idle accounts' usage meters stay live on the screen showing it.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;

use super::Api;
use crate::ledger::live::{LaggedEvent, Recv};

/// The live feed of finished requests, as Server-Sent Events.
#[utoipa::path(get, path = "/requests/live", tag = "requests", operation_id = "watchRequests",
    description = "Server-Sent Events, one per relayed request as it ends (refused ones included): \
        event `request`, its data a `RequestEvent` (JSON). Metadata only: no prompt, no answer, no token. \
        A client that falls behind loses the oldest events and gets an event `lagged` whose data is a \
        `LaggedEvent` saying how many it missed. A comment every 15 seconds keeps the connection open. \
        While a feed is open, idle accounts' usage is polled so the status stays live.",
    responses(
        (status = 200, description = "An endless `text/event-stream` of `request` (`RequestEvent`) and `lagged` (`LaggedEvent`) events",
            content_type = "text/event-stream", body = String),
        (status = 401, body = super::ErrorBody),
    ))]
pub async fn watch_requests(
    State(api): State<Arc<Api>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the answer's head goes out: a client that has the head gets
    // every request that ends from then on.
    let subscription = api.engine.current().feed().subscribe();
    let watching = api.engine.watch_status();
    let events = futures_util::stream::unfold(
        (subscription, watching),
        |(mut subscription, watching)| async move {
            let event = match subscription.recv().await {
                Recv::Event(event) => sse("request", event.as_ref()),
                Recv::Lagged(missed) => sse("lagged", &LaggedEvent { missed }),
                Recv::Closed => return None,
            };
            Some((Ok(event), (subscription, watching)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn sse(name: &str, data: &impl Serialize) -> Event {
    match serde_json::to_string(data) {
        Ok(json) => Event::default().event(name).data(json),
        // Plain structs of strings and numbers: cannot fail; said rather than hidden.
        Err(e) => Event::default().event("error").data(e.to_string()),
    }
}
