//! What a request leaves behind: one log line, and one row in the usage ledger.
//!
//! A request's state is a [`RequestContext`], filled in as the request goes through the
//! relay's phases. Both the line and the row are written when it is dropped, which for a
//! relayed response is when its body ends: completed, cut by a timeout, or abandoned by
//! the client. So a streaming request is logged and recorded once, with its real
//! duration and whatever usage its bytes carried, whatever happens to it. Recording needs
//! the ledger and the prices alone ([`Recorder`]), not the engine. No field ever holds a
//! token: the user is its configured name.
//!
//! The line is one `tracing` event whose fields are formatted only if the event is
//! enabled: nothing is built for it when `carpool::request` is filtered out.
//!
//! The same drop sends the request's metadata to the live feed ([`LiveFeed`]), every
//! request's, refused ones included (their log lines are rate-limited, the feed is not:
//! a subscriber that falls behind is told how many it missed). Nothing is built for
//! the feed when nobody watches it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};

use crate::config::Provider;
use crate::error::ErrorKind;
use crate::ledger::extract::UsageTap;
use crate::ledger::live::{LiveFeed, RequestEvent};
use crate::ledger::{Recorder, Usage, UsageRecord, context_window, openai_context_window};
use crate::pool::account::Account;
use crate::protocol::Peek;
use crate::tasks::lock;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The body reached its end.
    Completed,
    /// The body ended normally but the answer inside it was not whole: an `error` event
    /// mid-stream (e.g. overloaded), or no `message_stop`. Found when it is recorded.
    UpstreamError,
    /// The client went away before the end; also what a request is until it ends.
    ClientClosed,
    /// The upstream connection broke in the middle of the body.
    UpstreamBroke,
    /// The body was cut by a timeout.
    TimedOut(Timer),
    /// Carpool answered with an error of its own instead of relaying.
    Refused(ErrorKind),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which timeout cut a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// `timeouts.request`: the whole request, for non-streaming ones.
    Request,
    /// `timeouts.idle`: the longest silence between two chunks.
    Idle,
}

impl Outcome {
    /// As the ledger keeps it (its `outcome` column) and the log line shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "complete",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamBroke => "upstream_broke",
            Outcome::TimedOut(Timer::Request) => "request_timeout",
            Outcome::TimedOut(Timer::Idle) => "idle_timeout",
            Outcome::Refused(_) => "error",
        }
    }
}

/// One request's state, from its first byte to the end of its answer.
pub struct RequestContext {
    armed: bool,
    started: Instant,
    at_ms: i64,
    method: Method,
    path: String,
    /// Which relayed endpoint ([`crate::protocol::Endpoint::name`]).
    pub endpoint: &'static str,
    /// Whose API answered: how the context window is told.
    pub provider: Provider,
    /// Set once the caller authenticated: only then is the request recorded.
    recorder: Option<Recorder>,
    /// The user's name; empty for anonymous use on loopback.
    pub user: String,
    /// The model the request asked for.
    pub model: String,
    pub device: String,
    pub session: String,
    pub messages: u32,
    pub status: u16,
    pub bytes: u64,
    pub first_byte: Option<Instant>,
    /// The account that answered (the last one tried).
    pub account: Option<Arc<Account>>,
    /// Reads usage from the response body as it passes.
    pub tap: Option<UsageTap>,
    /// When the account's weekly window resets, as the answer said.
    pub week_reset: Option<i64>,
    pub outcome: Outcome,
    /// The answer is an event stream.
    pub streamed: bool,
    /// Where the request's metadata goes when it ends; `None` once taken.
    feed: Option<LiveFeed>,
}

impl RequestContext {
    /// A request that just arrived; when it ends, its metadata goes to `feed` if anyone
    /// watches it.
    pub fn start(method: &Method, path: &str, feed: &LiveFeed) -> RequestContext {
        let mut context = RequestContext::disarmed(method, path);
        context.armed = true;
        context.feed = Some(feed.clone());
        context
    }

    /// A context that writes nothing when dropped.
    fn disarmed(method: &Method, path: &str) -> RequestContext {
        RequestContext {
            armed: false,
            started: Instant::now(),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            method: method.clone(),
            path: path.to_owned(),
            endpoint: "",
            provider: Provider::Anthropic,
            recorder: None,
            user: String::new(),
            model: String::new(),
            device: String::new(),
            session: String::new(),
            messages: 0,
            status: 0,
            bytes: 0,
            first_byte: None,
            account: None,
            tap: None,
            week_reset: None,
            outcome: Outcome::ClientClosed,
            streamed: false,
            feed: None,
        }
    }

    /// From now on the request goes into the usage ledger.
    pub fn authenticated(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// What the request said about itself.
    pub fn peeked(&mut self, peek: Peek) {
        self.model = peek.model;
        self.device = peek.ids.device;
        self.session = peek.ids.session;
        self.messages = peek.messages;
    }

    /// Carpool answered with an error of its own, with this status; the line is written
    /// on drop.
    pub fn refused(&mut self, kind: ErrorKind, status: StatusCode) {
        self.status = status.as_u16();
        self.outcome = Outcome::Refused(kind);
    }

    /// The tag of the account that answered; empty if none did.
    pub fn credential(&self) -> &str {
        self.account.as_ref().map_or("", |a| a.tag.as_str())
    }

    /// Moves the state out (into a response body); `self` will write nothing.
    /// Nothing of this request is recorded or logged: what it started is recorded
    /// otherwise (a WebSocket's handshake, whose answers are recorded one by one).
    pub fn forget(&mut self) {
        self.armed = false;
    }

    pub fn take(&mut self) -> RequestContext {
        std::mem::replace(self, RequestContext::disarmed(&Method::GET, ""))
    }

    /// What the live feed shows of this request.
    fn event(
        &self,
        model: &str,
        usage: &Usage,
        outcome: Outcome,
        cost: Option<i64>,
        duration: Duration,
    ) -> RequestEvent {
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let tokens = &usage.tokens;
        RequestEvent {
            at: jiff::Timestamp::from_millisecond(self.at_ms)
                .map(|t| format!("{t:.3}"))
                .unwrap_or_default(),
            at_ms: self.at_ms,
            method: self.method.to_string(),
            path: self.path.clone(),
            endpoint: text(self.endpoint),
            user: text(&self.user),
            account: text(self.credential()),
            model: text(model),
            status: self.status,
            outcome: outcome.as_str().to_owned(),
            error: match outcome {
                Outcome::Refused(kind) => Some(refusal_name(kind).to_owned()),
                _ => None,
            },
            streamed: self.streamed,
            input_tokens: tokens.input,
            output_tokens: tokens.output,
            cache_read_tokens: tokens.cache_read,
            cache_write_tokens: tokens.cache_write(),
            cost_micros: cost,
            cost_usd: cost.map(|micros| micros as f64 / 1e6),
            duration_ms: ms(duration),
            ttfb_ms: self.first_byte.map(|t| ms(t.duration_since(self.started))),
            bytes: self.bytes,
        }
    }

    /// The outcome, with what the usage says about the answer inside the body.
    fn final_outcome(&self, usage: &Usage) -> Outcome {
        if self.outcome == Outcome::Completed
            && self.tap.is_some()
            && !usage.complete
            && self.status < 400
        {
            // The upstream ended the body normally but the answer inside it was not
            // whole: an `error` event mid-stream (e.g. overloaded), or no message_stop.
            return Outcome::UpstreamError;
        }
        self.outcome
    }
}

/// Why Carpool refused a request, as the live feed names it: the kind's name.
fn refusal_name(kind: ErrorKind) -> &'static str {
    kind.name()
}

/// Log lines for requests refused before authentication: at most
/// [`RefusalLog::PER_MINUTE`] a minute, then one line saying how many were left out.
static REFUSALS: RefusalLog = RefusalLog::new();

struct RefusalLog {
    /// (minute, lines logged in it, lines left out in it)
    state: Mutex<(i64, u32, u64)>,
}

impl RefusalLog {
    const PER_MINUTE: u32 = 20;

    const fn new() -> RefusalLog {
        RefusalLog {
            state: Mutex::new((0, 0, 0)),
        }
    }

    /// Whether a refusal at `now` (Unix seconds) gets its log line. The first refusal
    /// of a minute after one with lines left out says how many.
    fn admit(&self, now: i64) -> bool {
        let minute = now.div_euclid(60);
        let mut state = lock(&self.state);
        let (current, _, left_out) = &mut *state;
        if *current != minute {
            if *left_out > 0 {
                tracing::warn!(
                    target: "carpool::request",
                    left_out = *left_out,
                    "{} more requests were refused in the minute before (bad token or unknown path); their lines were left out",
                    *left_out
                );
            }
            *state = (minute, 0, 0);
        }
        let (_, logged, left_out) = &mut *state;
        if *logged < Self::PER_MINUTE {
            *logged += 1;
            true
        } else {
            *left_out += 1;
            false
        }
    }
}

/// A log field that may be empty: `-` then.
struct Dash<'a>(&'a str);

impl fmt::Display for Dash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "-" } else { self.0 })
    }
}

/// A cost in micro-dollars as dollars, `-` when unknown.
struct Dollars(Option<i64>);

impl fmt::Display for Dollars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(micros) => write!(f, "{:.6}", micros as f64 / 1e6),
            None => f.write_str("-"),
        }
    }
}

impl Drop for RequestContext {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let recorder = self.recorder.take();
        let feed = self.feed.take().filter(LiveFeed::is_watched);
        // Refused before authentication (bad token, unknown path): anyone can cause
        // these, so their lines are rate-limited; a flood must not flood the log.
        let logged = recorder.is_some() || REFUSALS.admit(crate::pool::unix_now());
        if !logged && feed.is_none() {
            return;
        }
        // Only recorded requests are costed.
        let mut usage = match (&recorder, self.tap.as_mut()) {
            (Some(_), Some(tap)) => tap.usage(),
            _ => Usage::default(),
        };
        let outcome = match recorder {
            Some(_) => self.final_outcome(&usage),
            None => self.outcome,
        };
        let model = match usage.model.take().filter(|m| !m.is_empty()) {
            Some(model) => model,
            None => std::mem::take(&mut self.model),
        };
        let cost = recorder
            .as_ref()
            .and_then(|r| r.pricing().cost(&model, &usage.tokens, &usage.billing));
        let duration = self.started.elapsed();
        if let Some(feed) = feed {
            feed.send(self.event(&model, &usage, outcome, cost, duration));
        }
        if !logged {
            return;
        }
        tracing::info!(
            target: "carpool::request",
            user = %Dash(&self.user),
            credential = %Dash(self.credential()),
            model = %Dash(&model),
            status = self.status,
            duration_ms = duration.as_millis() as u64,
            bytes = self.bytes,
            input_tokens = usage.tokens.total_input(),
            output_tokens = usage.tokens.output,
            cost_usd = %Dollars(cost),
            outcome = %outcome,
            "{} {}",
            self.method,
            self.path,
        );
        let Some(recorder) = recorder else {
            return;
        };
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let record = UsageRecord {
            at_ms: self.at_ms,
            user: std::mem::take(&mut self.user),
            credential: self.credential().to_owned(),
            endpoint: self.endpoint.to_owned(),
            cost_micros: cost,
            model,
            device: std::mem::take(&mut self.device),
            session: std::mem::take(&mut self.session),
            status: self.status,
            outcome: outcome.as_str().to_owned(),
            speed: if usage.billing.is_fast() {
                "fast".into()
            } else {
                String::new()
            },
            context_window: match self.provider {
                Provider::Anthropic => context_window(&usage.tokens),
                Provider::OpenAi => openai_context_window(&usage.tokens),
            },
            tokens: usage.tokens,
            duration_ms: ms(duration),
            ttfb_ms: self.first_byte.map(|t| ms(t.duration_since(self.started))),
            messages: self.messages,
            week_reset: self.week_reset,
            service_tier: usage.billing.service_tier.clone().unwrap_or_default(),
        };
        if let Some(account) = &self.account {
            let tokens = record.tokens.total_input() + record.tokens.output;
            account.note_request(tokens, record.at_ms / 1000);
        }
        recorder.record(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_are_limited_per_minute() {
        let log = RefusalLog::new();
        let minute = 1_000 * 60;
        let admitted = (0..100).filter(|_| log.admit(minute + 5)).count();
        assert_eq!(admitted, RefusalLog::PER_MINUTE as usize);
        assert_eq!(log.state.lock().unwrap().2, 80, "counted, not logged");
        assert!(log.admit(minute + 60), "a new minute starts afresh");
        assert_eq!(*log.state.lock().unwrap(), (1_001, 1, 0));
    }

    /// The ledger's `outcome` column keeps these words; reports count everything but
    /// `complete` under a success status as cut short.
    #[test]
    fn outcomes_keep_their_ledger_names() {
        let table = [
            (Outcome::Completed, "complete"),
            (Outcome::UpstreamError, "upstream_error"),
            (Outcome::ClientClosed, "client_closed"),
            (Outcome::UpstreamBroke, "upstream_broke"),
            (Outcome::TimedOut(Timer::Request), "request_timeout"),
            (Outcome::TimedOut(Timer::Idle), "idle_timeout"),
            (Outcome::Refused(ErrorKind::BadToken), "error"),
        ];
        for (outcome, name) in table {
            assert_eq!(outcome.as_str(), name);
        }
    }

    #[test]
    fn log_fields_show_a_dash_for_nothing() {
        assert_eq!(Dash("").to_string(), "-");
        assert_eq!(Dash("alice").to_string(), "alice");
        assert_eq!(Dollars(None).to_string(), "-");
        assert_eq!(Dollars(Some(1_234_567)).to_string(), "1.234567");
    }
}
