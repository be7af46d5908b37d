//! Anthropic's endpoints, and which upstream path a request may reach.
//!
//! Carpool forwards only the endpoints it serves, and it builds the upstream path itself
//! from a fixed prefix and validated segments; it never pastes the client's path onto the
//! base URL. That matters because the upstream URL carries the owner's credentials: URL
//! parsers resolve `..`, `%2e%2e` and backslashes, so `GET /v1/models/..\..\api\oauth\profile`
//! pasted onto `https://api.anthropic.com` became `/api/oauth/profile`, sent with the
//! owner's OAuth token (a finding of the hardening review). Two independent checks stop
//! that: [`ModelId::parse`] admits only characters model ids use, and
//! `upstream_url` ([`crate::protocol::Endpoint::upstream_url`]) checks the final URL's path
//! is exactly the one intended.

use std::borrow::Cow;

use crate::error::RelayError;

/// An Anthropic endpoint Carpool relays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{id}`.
    Model(ModelId),
}

impl Endpoint {
    /// The endpoint for a request path (the raw, still percent-encoded path), or `None`
    /// for anything Carpool does not relay.
    pub fn of(path: &str) -> Option<Endpoint> {
        match path {
            "/v1/messages" => Some(Endpoint::Messages),
            "/v1/messages/count_tokens" => Some(Endpoint::CountTokens),
            "/v1/models" => Some(Endpoint::Models),
            _ => path
                .strip_prefix("/v1/models/")
                .and_then(ModelId::parse)
                .map(Endpoint::Model),
        }
    }

    /// The path sent upstream, after the base URL's own path.
    pub fn path(&self) -> Cow<'static, str> {
        match self {
            Endpoint::Messages => "/v1/messages".into(),
            Endpoint::CountTokens => "/v1/messages/count_tokens".into(),
            Endpoint::Models => "/v1/models".into(),
            Endpoint::Model(id) => format!("/v1/models/{}", id.0).into(),
        }
    }

    /// Whether answers carry token usage.
    pub fn is_model_call(&self) -> bool {
        matches!(self, Endpoint::Messages)
    }
}

impl crate::protocol::Endpoint for Endpoint {
    fn name(&self) -> &'static str {
        match self {
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::Models | Endpoint::Model(_) => "models",
        }
    }

    /// This endpoint's path after the base's own path, and the client's query. Refused
    /// unless the resulting URL's path is exactly that: the URL parser resolves `..`,
    /// `%2e%2e` and backslashes while it sets the path, and the check sees the result.
    fn upstream_url(
        &self,
        base: &reqwest::Url,
        query: Option<&str>,
    ) -> Result<reqwest::Url, String> {
        crate::protocol::upstream_url_at(base, &self.path(), query)
    }
}

/// A model id from a request path, as Anthropic spells them
/// (`claude-sonnet-4-5-20250929`, `claude-3-5-haiku-latest`) with room for other
/// providers' (`gpt-5.1-codex`, `vendor/model:tag@rev` is refused: no `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId(String);

/// Longest model id accepted; real ones are under 64 characters.
const MAX_MODEL_ID: usize = 200;

impl ModelId {
    /// Accepts ASCII letters, digits and `-`, `_`, `.`, `:`, `@`, and refuses `.` and
    /// `..` (path segments), anything percent-encoded, slashes, backslashes and control
    /// characters.
    pub fn parse(segment: &str) -> Option<ModelId> {
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@');
        let ok = !segment.is_empty()
            && segment.len() <= MAX_MODEL_ID
            && segment.chars().all(allowed)
            && segment.chars().any(|c| c != '.');
        ok.then(|| ModelId(segment.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The error for a path that is not relayed, saying which ones are.
pub fn not_relayed(method: &http::Method, path: &str) -> RelayError {
    // The path is the client's own; cut it so a log line stays a line.
    let shown: String = path.chars().take(200).collect();
    RelayError::not_found(format!(
        "Carpool does not relay {method} {shown}. It serves POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models and GET /v1/models/{{model id}}."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Endpoint as _;

    fn base(url: &str) -> reqwest::Url {
        url.parse().unwrap()
    }

    #[test]
    fn relayed_paths_and_their_upstream_urls() {
        let cases = [
            ("/v1/messages", "https://api.anthropic.com/v1/messages"),
            (
                "/v1/messages/count_tokens",
                "https://api.anthropic.com/v1/messages/count_tokens",
            ),
            ("/v1/models", "https://api.anthropic.com/v1/models"),
            (
                "/v1/models/claude-sonnet-4-5-20250929",
                "https://api.anthropic.com/v1/models/claude-sonnet-4-5-20250929",
            ),
            (
                "/v1/models/gpt-5.1-codex",
                "https://api.anthropic.com/v1/models/gpt-5.1-codex",
            ),
        ];
        for (path, url) in cases {
            let endpoint = Endpoint::of(path).unwrap_or_else(|| panic!("{path} refused"));
            let built = endpoint
                .upstream_url(&base("https://api.anthropic.com"), None)
                .unwrap();
            assert_eq!(built.as_str(), url);
        }
        let with_query = Endpoint::Messages
            .upstream_url(&base("http://127.0.0.1:9/prefix"), Some("beta=true"))
            .unwrap();
        assert_eq!(
            with_query.as_str(),
            "http://127.0.0.1:9/prefix/v1/messages?beta=true"
        );
    }

    #[test]
    fn traversal_and_odd_spellings_are_not_relayed() {
        for path in [
            "/v1/models/..",
            "/v1/models/.",
            "/v1/models/...",
            "/v1/models/..\\..\\api\\oauth\\profile",
            "/v1/models/..%2F..%2Fapi%2Foauth%2Fprofile",
            "/v1/models/%2e%2e",
            "/v1/models/%2E%2E%5Capi",
            "/v1/models/a/b",
            "/v1/models/a%00b",
            "/v1/models/a\u{0}b",
            "/v1/models/a\tb",
            "/v1/models/",
            "/v1/models//",
            "/v1/models/x?y",
            "/v1/models/x#y",
            "/v1/messages/",
            "/v1/messages/../models",
            "/api/oauth/profile",
            "/v1/messages/batches",
            "//v1/messages",
        ] {
            assert_eq!(Endpoint::of(path), None, "{path:?} must not be relayed");
        }
        let long = format!("/v1/models/{}", "a".repeat(MAX_MODEL_ID + 1));
        assert_eq!(Endpoint::of(&long), None);
    }

    #[test]
    fn the_final_url_check_catches_what_the_segment_check_would_miss() {
        // Built by hand, bypassing ModelId::parse: the URL check alone must refuse it.
        let sneaky = Endpoint::Model(ModelId("..".into()));
        assert!(
            sneaky
                .upstream_url(&base("https://api.anthropic.com"), None)
                .is_err()
        );
        let sneaky = Endpoint::Model(ModelId("%2e%2e".into()));
        assert!(
            sneaky
                .upstream_url(&base("https://api.anthropic.com"), None)
                .is_err()
        );
        assert!(
            Endpoint::Messages
                .upstream_url(&base("https://api.anthropic.com"), Some("a#b"))
                .is_err()
        );
    }
}
