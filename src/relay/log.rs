//! One log line per request: who, which account, which model, status, how long.
//!
//! The line is written when the [`RequestLog`] is dropped, which for a relayed response
//! is when its body ends: completed, cut by a timeout, or abandoned by the client. So a
//! streaming request is logged once, with its real duration, whatever happens to it.
//! No field ever holds a token: the user is its configured name.

use std::time::Instant;

use http::Method;

use crate::error::RelayError;

pub struct RequestLog {
    armed: bool,
    started: Instant,
    method: Method,
    path: String,
    pub user: String,
    pub credential: String,
    pub model: String,
    pub status: u16,
    pub bytes: u64,
    /// How the response ended; starts as `client_closed`, the outcome when the body is
    /// dropped before it finished.
    pub outcome: &'static str,
}

impl RequestLog {
    pub fn start(method: &Method, path: &str) -> RequestLog {
        RequestLog {
            armed: true,
            started: Instant::now(),
            method: method.clone(),
            path: path.to_owned(),
            user: "-".into(),
            credential: "-".into(),
            model: "-".into(),
            status: 0,
            bytes: 0,
            outcome: "client_closed",
        }
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
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::info!(
            target: "carpool::request",
            user = %self.user,
            credential = %self.credential,
            model = %self.model,
            status = self.status,
            duration_ms = self.started.elapsed().as_millis() as u64,
            bytes = self.bytes,
            outcome = self.outcome,
            "{} {}",
            self.method,
            self.path,
        );
    }
}
