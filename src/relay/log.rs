//! What a request leaves behind: one log line, and one row in the usage ledger.
//!
//! Both are written when the [`RequestLog`] is dropped, which for a relayed response is
//! when its body ends: completed, cut by a timeout, or abandoned by the client. So a
//! streaming request is logged and recorded once, with its real duration and whatever
//! usage its bytes carried, whatever happens to it. No field ever holds a token: the
//! user is its configured name.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::Method;

use crate::engine::Engine;
use crate::error::RelayError;
use crate::ledger::extract::{BodyKind, UsageTap};
use crate::ledger::{UsageRecord, context_window};

pub struct RequestLog {
    armed: bool,
    started: Instant,
    at_ms: i64,
    method: Method,
    path: String,
    /// Which relayed endpoint ([`super::endpoint::Endpoint::name`]).
    pub endpoint: &'static str,
    /// Set once the caller authenticated: only then is the request recorded.
    engine: Option<Arc<Engine>>,
    /// The user's name; empty for anonymous use on loopback.
    pub user: String,
    pub credential: String,
    /// The model the request asked for.
    pub model: String,
    pub device: String,
    pub session: String,
    pub messages: u32,
    pub status: u16,
    pub bytes: u64,
    pub first_byte: Option<Instant>,
    /// The account that answered, for its last-hour counters.
    pub account: Option<Arc<crate::pool::account::Account>>,
    /// Reads usage from the response body as it passes.
    pub tap: Option<UsageTap>,
    /// `anthropic-ratelimit-unified-7d-reset` of the response.
    pub week_reset: Option<i64>,
    /// How the response ended; starts as `client_closed`, the outcome when the body is
    /// dropped before it finished.
    pub outcome: &'static str,
}

impl RequestLog {
    pub fn start(method: &Method, path: &str) -> RequestLog {
        RequestLog {
            armed: true,
            started: Instant::now(),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            method: method.clone(),
            path: path.to_owned(),
            endpoint: "",
            engine: None,
            user: String::new(),
            credential: String::new(),
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
            outcome: "client_closed",
        }
    }

    /// From now on the request goes into the usage ledger.
    pub fn authenticated(&mut self, engine: Arc<Engine>) {
        self.engine = Some(engine);
    }

    /// Starts reading usage from a response body of this kind.
    pub fn tap(&mut self, kind: BodyKind) {
        self.tap = Some(UsageTap::new(kind));
    }

    /// Records a Carpool error response; the line is written on drop.
    pub fn finish_error(&mut self, error: &RelayError) {
        self.status = error.status.as_u16();
        self.outcome = "error";
    }

    /// Moves the record out (into a response body); `self` will write nothing.
    pub fn take(&mut self) -> RequestLog {
        let mut disarmed = RequestLog::start(&self.method, "");
        disarmed.armed = false;
        std::mem::replace(self, disarmed)
    }

    fn record(&mut self, engine: &Engine) -> UsageRecord {
        let usage = self.tap.as_mut().map(UsageTap::usage).unwrap_or_default();
        let mut outcome = self.outcome;
        if outcome == "complete" && self.tap.is_some() && !usage.complete && self.status < 400 {
            // The upstream ended the body normally but the answer inside it was not
            // whole: an `error` event mid-stream (e.g. overloaded), or no message_stop.
            outcome = "upstream_error";
        }
        let model = usage
            .model
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.model.clone());
        let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        UsageRecord {
            at_ms: self.at_ms,
            user: self.user.clone(),
            credential: self.credential.clone(),
            endpoint: self.endpoint.to_owned(),
            cost_micros: engine.pricing.cost(&model, &usage.tokens, &usage.billing),
            model,
            device: self.device.clone(),
            session: self.session.clone(),
            status: self.status,
            outcome: outcome.to_owned(),
            tokens: usage.tokens,
            speed: if usage.billing.is_fast() {
                "fast".into()
            } else {
                String::new()
            },
            context_window: context_window(&usage.tokens),
            duration_ms: ms(self.started.elapsed()),
            ttfb_ms: self.first_byte.map(|t| ms(t.duration_since(self.started))),
            messages: self.messages,
            week_reset: self.week_reset,
        }
    }
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
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
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

impl Drop for RequestLog {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let record = self.engine.take().map(|engine| {
            let record = self.record(&engine);
            (engine, record)
        });
        // Refused before authentication (bad token, unknown path): anyone can cause
        // these, so their lines are rate-limited; a flood must not flood the log.
        if record.is_none() && !REFUSALS.admit(crate::pool::unix_now()) {
            return;
        }
        let outcome = record.as_ref().map_or(self.outcome, |(_, r)| {
            if r.outcome == "upstream_error" {
                "upstream_error"
            } else {
                self.outcome
            }
        });
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        let (input, output, cost) = record.as_ref().map_or((0, 0, None), |(_, r)| {
            (r.tokens.total_input(), r.tokens.output, r.cost_micros)
        });
        tracing::info!(
            target: "carpool::request",
            user = %dash(&self.user),
            credential = %dash(&self.credential),
            model = %dash(&record.as_ref().map_or(self.model.clone(), |(_, r)| r.model.clone())),
            status = self.status,
            duration_ms = self.started.elapsed().as_millis() as u64,
            bytes = self.bytes,
            input_tokens = input,
            output_tokens = output,
            cost_usd = %cost.map_or_else(|| "-".to_owned(), |c| format!("{:.6}", c as f64 / 1e6)),
            outcome = %outcome,
            "{} {}",
            self.method,
            self.path,
        );
        if let Some((engine, record)) = record {
            if let Some(account) = &self.account {
                let tokens = record.tokens.total_input() + record.tokens.output;
                account.note_request(tokens, record.at_ms / 1000);
            }
            engine.ledger.record(record);
        }
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
}
