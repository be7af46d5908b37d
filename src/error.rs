//! Errors on the request path: what went wrong ([`ErrorKind`]), who caused it
//! ([`Origin`]), whether another account could do better, and the cause underneath (a
//! typed [`std::error::Error::source`], e.g. the reqwest error of a failed connection).
//!
//! A [`RelayError`] is data, not a response: the client's protocol renders it, in one
//! place per protocol ([`crate::protocol::Protocol::error_response`] for an answer,
//! [`crate::protocol::Protocol::stream_error`] for an event stream that already started),
//! and chooses the status there, since statuses are picked for how that protocol's
//! clients react. Errors that came back from the upstream itself are not `RelayError`s:
//! those responses are passed through untouched (status, headers, body), because clients
//! react to the real status (docs/design.md).
//!
//! | kind | origin | another account may help | the client may retry |
//! | --- | --- | --- | --- |
//! | [`BadToken`](ErrorKind::BadToken), [`NotFound`](ErrorKind::NotFound), [`MethodNotAllowed`](ErrorKind::MethodNotAllowed), [`TooLarge`](ErrorKind::TooLarge), [`BadRequest`](ErrorKind::BadRequest) | client | no | no |
//! | [`BodyStalled`](ErrorKind::BodyStalled) | client | no | yes |
//! | [`NeedsOwner`](ErrorKind::NeedsOwner) | Carpool | yes | no |
//! | [`NoCredential`](ErrorKind::NoCredential), [`Exhausted`](ErrorKind::Exhausted) | Carpool | yes | yes |
//! | [`Unreachable`](ErrorKind::Unreachable), [`Timeout`](ErrorKind::Timeout) | upstream | yes | yes |

use std::error::Error;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something we refuse (bad token, body too large, unknown path).
    Client,
    /// The upstream could not be reached, stalled, or broke off.
    Upstream,
    /// Carpool itself has no usable account for this request.
    Carpool,
}

/// What went wrong; each kind has one origin and one retry policy (the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Missing or wrong Carpool token.
    BadToken,
    /// A known user asking for something they may not use (a provider they have no
    /// account of).
    Forbidden,
    /// A path Carpool does not relay.
    NotFound,
    /// A relayed path with a method it does not take.
    MethodNotAllowed,
    /// The body is over `max_body_bytes`.
    TooLarge,
    /// The body could not be read.
    BadRequest,
    /// The client stopped sending its body (`connections.body_timeout`). Unlike other
    /// client errors it may be retried: the next attempt may get through.
    BodyStalled,
    /// No account can serve this request until its owner acts on the Carpool machine (no
    /// login yet, login revoked, credentials file broken): retrying will not help.
    NeedsOwner,
    /// No account can serve this request right now, for a reason that passes by itself
    /// (a token refresh backing off); `retry_after_secs` says when to try again.
    NoCredential,
    /// Every account the user may use is at its limit (or reserve) for now;
    /// `retry_after_secs` says when the first one is back.
    Exhausted,
    /// The upstream could not be reached or broke before answering.
    Unreachable,
    /// The upstream did not answer within a configured timeout.
    Timeout,
}

impl ErrorKind {
    pub fn origin(self) -> Origin {
        match self {
            ErrorKind::BadToken
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::TooLarge
            | ErrorKind::BadRequest
            | ErrorKind::BodyStalled => Origin::Client,
            ErrorKind::NeedsOwner | ErrorKind::NoCredential | ErrorKind::Exhausted => {
                Origin::Carpool
            }
            ErrorKind::Unreachable | ErrorKind::Timeout => Origin::Upstream,
        }
    }

    /// Whether the request may go to another account: nothing another account could
    /// change is the client's doing.
    pub fn fails_over(self) -> bool {
        self.origin() != Origin::Client
    }

    /// Whether the client may send the same request again and hope for better. False when
    /// nothing changes until someone acts (a bad token, a login that is missing or
    /// revoked), or when what the client sent will not get better by sending it again.
    pub fn client_may_retry(self) -> bool {
        match self {
            ErrorKind::NeedsOwner => false,
            ErrorKind::BodyStalled => true,
            kind => kind.origin() != Origin::Client,
        }
    }

    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadToken => "bad_token",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::BodyStalled => "body_stalled",
            ErrorKind::NeedsOwner => "needs_owner",
            ErrorKind::NoCredential => "no_credential",
            ErrorKind::Exhausted => "exhausted",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
        }
    }
}

/// A cause kept with an error.
type Source = Box<dyn Error + Send + Sync>;

/// An error of Carpool's own making on the request path; see the module documentation.
#[derive(Debug)]
pub struct RelayError {
    pub kind: ErrorKind,
    /// Carpool's words for the client; the source's, if any, follow in [`Self::detail`].
    pub message: String,
    /// When to try again, for the client (`retry-after`).
    pub retry_after_secs: Option<u64>,
    source: Option<Source>,
}

impl RelayError {
    pub fn new(kind: ErrorKind, message: String) -> Self {
        RelayError {
            kind,
            message,
            retry_after_secs: None,
            source: None,
        }
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn origin(&self) -> Origin {
        self.kind.origin()
    }

    /// See [`ErrorKind::fails_over`].
    pub fn fails_over(&self) -> bool {
        self.kind.fails_over()
    }

    /// See [`ErrorKind::client_may_retry`].
    pub fn client_may_retry(&self) -> bool {
        self.kind.client_may_retry()
    }

    /// The message with its causes, `message: cause: its cause`, leaving out a cause
    /// whose text is already there (reqwest's top-level message alone says little, and
    /// its sources often repeat each other). What the client and the log see.
    pub fn detail(&self) -> String {
        let mut text = self.message.clone();
        let mut source = self.source.as_deref().map(|s| s as &(dyn Error + 'static));
        while let Some(s) = source {
            let s_text = s.to_string();
            if !text.contains(&s_text) {
                text.push_str(": ");
                text.push_str(&s_text);
            }
            source = s.source();
        }
        text
    }

    /// Missing or wrong Carpool token.
    pub fn bad_token(message: String) -> Self {
        Self::new(ErrorKind::BadToken, message)
    }

    pub fn forbidden(message: String) -> Self {
        RelayError::new(ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: String) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn method_not_allowed(message: String) -> Self {
        Self::new(ErrorKind::MethodNotAllowed, message)
    }

    /// The body is over `max_body_bytes`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::TooLarge,
            format!(
                "Carpool: request body is larger than the configured limit of {limit} bytes (`max_body_bytes` in the Carpool config)"
            ),
        )
    }

    pub fn bad_request(message: String) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// The client stopped sending its request body (`connections.body_timeout`).
    pub fn body_stalled(message: String) -> Self {
        Self::new(ErrorKind::BodyStalled, message)
    }

    /// No account can serve this request until its owner acts on the Carpool machine.
    /// The message is for the user, who cannot see the Carpool machine: it says who can
    /// fix it, not the owner's paths or other accounts' problems, which go to the log.
    pub fn needs_owner(message: String) -> Self {
        Self::new(ErrorKind::NeedsOwner, message)
    }

    /// No account can serve this request right now, for a reason that passes by itself.
    pub fn no_credential(message: String, retry_after_secs: Option<u64>) -> Self {
        RelayError {
            retry_after_secs,
            ..Self::new(ErrorKind::NoCredential, message)
        }
    }

    /// Every account the user may use is at its limit (or reserve) for now.
    pub fn all_exhausted(message: String, retry_after_secs: Option<u64>) -> Self {
        RelayError {
            retry_after_secs,
            ..Self::new(ErrorKind::Exhausted, message)
        }
    }

    /// The upstream could not be reached or broke before answering.
    pub fn unreachable(message: String) -> Self {
        Self::new(ErrorKind::Unreachable, message)
    }

    /// The upstream did not answer within a configured timeout.
    pub fn timeout(message: String) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
}

impl std::fmt::Display for RelayError {
    /// Carpool's message alone; the causes are [`Error::source`]'s (see [`Self::detail`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for RelayError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_says_who_caused_it_and_whether_retrying_helps() {
        use ErrorKind::*;
        // (kind, origin, another account may help, the client may retry)
        let table = [
            (BadToken, Origin::Client, false, false),
            (NotFound, Origin::Client, false, false),
            (MethodNotAllowed, Origin::Client, false, false),
            (TooLarge, Origin::Client, false, false),
            (BadRequest, Origin::Client, false, false),
            (BodyStalled, Origin::Client, false, true),
            (NeedsOwner, Origin::Carpool, true, false),
            (NoCredential, Origin::Carpool, true, true),
            (Exhausted, Origin::Carpool, true, true),
            (Unreachable, Origin::Upstream, true, true),
            (Timeout, Origin::Upstream, true, true),
        ];
        for (kind, origin, fails_over, retry) in table {
            let error = RelayError::new(kind, "x".into());
            assert_eq!(error.origin(), origin, "{kind:?}");
            assert_eq!(error.fails_over(), fails_over, "{kind:?}");
            assert_eq!(error.client_may_retry(), retry, "{kind:?}");
        }
    }

    #[derive(Debug)]
    struct Cause(&'static str, Option<Box<Cause>>);
    impl std::fmt::Display for Cause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Cause {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|c| c as &(dyn Error + 'static))
        }
    }

    #[test]
    fn the_cause_is_a_typed_source_and_joins_the_detail_once() {
        let cause = Cause(
            "error sending request",
            Some(Box::new(Cause(
                "connection refused",
                Some(Box::new(Cause("connection refused", None))),
            ))),
        );
        let error =
            RelayError::unreachable("Carpool: cannot reach the upstream".into()).with_source(cause);
        assert_eq!(error.to_string(), "Carpool: cannot reach the upstream");
        assert_eq!(
            error.detail(),
            "Carpool: cannot reach the upstream: error sending request: connection refused"
        );
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<Cause>().is_some());
        assert_eq!(
            RelayError::timeout("slow".into()).detail(),
            "slow",
            "no source, no suffix"
        );
    }
}
