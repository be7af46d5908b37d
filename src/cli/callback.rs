//! The local end of the Codex login's redirect, for `carpool login codex`: after logging
//! in, OpenAI sends the browser to `http://localhost:1455/auth/callback?code=…&state=…`
//! (docs/protocol.md §7.3), as Codex CLI's own login server receives it. This listens
//! there (on 127.0.0.1 only) for the time of one login, hands each visit of the callback
//! path to the login ([`Visit`]), and answers the browser with the page the login
//! decides: "logged in, you can close this tab", or what went wrong. Any other path is a
//! 404. The state is checked by the login itself ([`crate::credentials::login::Logins`]),
//! so a visit carrying another login's state is refused there.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, oneshot, watch};

use crate::credentials::login::CODEX_CALLBACK_PATH;

/// How long the browser's connection may keep the listener after the login is over.
const LINGER: std::time::Duration = std::time::Duration::from_secs(3);

/// One visit of the callback path: its query string, and where its page goes.
pub struct Visit {
    /// The query as sent (`code=…&state=…`, or `error=…&error_description=…`).
    pub query: String,
    reply: oneshot::Sender<Page>,
}

impl Visit {
    /// Answers the browser.
    pub fn answer(self, page: Page) {
        // The browser may have gone: nothing to do then.
        let _ = self.reply.send(page);
    }
}

/// The page a visit gets.
pub enum Page {
    /// The login is done: the tab can be closed.
    Done,
    /// It did not work: this message, which holds no code or token.
    Failed(String),
}

/// A listener on `127.0.0.1:<port>` for the callback.
pub struct Callback {
    listener: tokio::net::TcpListener,
}

impl Callback {
    /// Binds `127.0.0.1:port`; `Err` when the port is taken (another login running).
    pub async fn bind(port: u16) -> std::io::Result<Callback> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        Ok(Callback { listener })
    }

    /// Serves visits into `visits` until `done` turns true, then lets the last
    /// connections finish their pages (at most [`LINGER`]).
    pub async fn serve(self, visits: mpsc::Sender<Visit>, mut done: watch::Receiver<bool>) {
        let app = Router::new()
            .route(CODEX_CALLBACK_PATH, get(visit))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(visits);
        let mut stop = done.clone();
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|d| *d).await;
        });
        let lingered = async move {
            let _ = done.wait_for(|d| *d).await;
            tokio::time::sleep(LINGER).await;
        };
        tokio::select! {
            result = server => {
                if let Err(e) = result {
                    tracing::warn!("the login's callback listener stopped: {e}");
                }
            }
            () = lingered => {}
        }
    }
}

async fn visit(State(visits): State<mpsc::Sender<Visit>>, RawQuery(query): RawQuery) -> Response {
    let (reply, page) = oneshot::channel();
    let visit = Visit {
        query: query.unwrap_or_default(),
        reply,
    };
    if visits.send(visit).await.is_err() {
        return page_of(Page::Failed("this login is over; start a new one".into()));
    }
    match page.await {
        Ok(page) => page_of(page),
        Err(_) => page_of(Page::Failed("this login is over; start a new one".into())),
    }
}

fn page_of(page: Page) -> Response {
    let (status, title, text) = match page {
        Page::Done => (
            StatusCode::OK,
            "Logged in",
            "Carpool added the account. You can close this tab.".to_owned(),
        ),
        Page::Failed(why) => (StatusCode::BAD_REQUEST, "Not logged in", why),
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Carpool: {title}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;margin:3em\"><h1>{title}</h1><p>{}</p></body></html>",
        escape(&text)
    );
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(body),
    )
        .into_response()
}

/// `text` safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn visits_reach_the_login_and_get_its_page() {
        let callback = Callback::bind(0).await.unwrap();
        let port = callback.listener.local_addr().unwrap().port();
        // A second listener on the same port is refused: a login already waits there.
        assert!(Callback::bind(port).await.is_err());
        let (visits_tx, mut visits) = mpsc::channel(4);
        let (done_tx, done) = watch::channel(false);
        let server = callback.serve(visits_tx, done);
        let client = async {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let base = format!("http://127.0.0.1:{port}");
            let other = http.get(format!("{base}/elsewhere")).send().await.unwrap();
            assert_eq!(other.status(), 404);
            let failed = http
                .get(format!("{base}{CODEX_CALLBACK_PATH}?code=c&state=<s>"))
                .send()
                .await
                .unwrap();
            assert_eq!(failed.status(), 400);
            let text = failed.text().await.unwrap();
            assert!(text.contains("wrong &lt;state&gt;"), "{text}");
            let done = http
                .get(format!("{base}{CODEX_CALLBACK_PATH}?code=c&state=s"))
                .send()
                .await
                .unwrap();
            assert_eq!(done.status(), 200);
            assert!(done.text().await.unwrap().contains("close this tab"));
        };
        let login = async {
            let first = visits.recv().await.unwrap();
            assert_eq!(first.query, "code=c&state=%3Cs%3E");
            first.answer(Page::Failed("wrong <state>".into()));
            let second = visits.recv().await.unwrap();
            assert_eq!(second.query, "code=c&state=s");
            second.answer(Page::Done);
        };
        let stop = async {
            tokio::join!(client, login);
            done_tx.send(true).unwrap();
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(server, stop)
        })
        .await
        .expect("the listener stops once the login is done");
    }
}
