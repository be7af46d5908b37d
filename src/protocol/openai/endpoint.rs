//! The OpenAI endpoints Carpool relays to a Codex login or an OpenAI key, and the upstream
//! path each reaches.
//!
//! Both kinds of account take the client's path without its `/v1` after their base URL
//! (docs/protocol.md §7.4): a Codex login's base is ChatGPT's Codex backend
//! (`https://chatgpt.com/backend-api/codex`, so `/v1/responses` becomes
//! `…/codex/responses`), an OpenAI key's is `https://api.openai.com/v1`. As for
//! Anthropic ([`crate::protocol::anthropic::endpoint`]), the upstream path is built from
//! fixed strings and checked, never pasted from the client's.

use crate::error::RelayError;

/// An OpenAI endpoint Carpool relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/responses`: a model turn (Codex, the OpenAI SDKs).
    Responses,
    /// `POST /v1/responses/compact`: Codex's conversation compaction.
    Compact,
    /// `GET /v1/models`: the upstream's model list (Codex asks with `client_version`).
    Models,
}

impl Endpoint {
    /// The endpoint for a request path (raw, still percent-encoded).
    pub fn of(path: &str) -> Option<Endpoint> {
        match path {
            "/v1/responses" => Some(Endpoint::Responses),
            "/v1/responses/compact" => Some(Endpoint::Compact),
            "/v1/models" => Some(Endpoint::Models),
            _ => None,
        }
    }

    /// The path after the account's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Responses => "/responses",
            Endpoint::Compact => "/responses/compact",
            Endpoint::Models => "/models",
        }
    }

    /// Whether answers carry token usage.
    pub fn is_model_call(self) -> bool {
        matches!(self, Endpoint::Responses | Endpoint::Compact)
    }
}

impl crate::protocol::Endpoint for Endpoint {
    fn name(&self) -> &'static str {
        match self {
            Endpoint::Responses => "responses",
            Endpoint::Compact => "responses_compact",
            Endpoint::Models => "models",
        }
    }

    fn upstream_url(
        &self,
        base: &reqwest::Url,
        query: Option<&str>,
    ) -> Result<reqwest::Url, String> {
        crate::protocol::upstream_url_at(base, self.path(), query)
    }
}

/// The error for a path that is not relayed, saying which ones are.
pub fn not_relayed(method: &http::Method, path: &str) -> RelayError {
    let shown: String = path.chars().take(200).collect();
    RelayError::not_found(format!(
        "Carpool does not relay {method} {shown}. For OpenAI clients it serves POST /v1/responses, POST /v1/responses/compact, POST /v1/chat/completions and GET /v1/models."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Endpoint as _;

    fn url(base: &str, endpoint: Endpoint, query: Option<&str>) -> String {
        endpoint
            .upstream_url(&reqwest::Url::parse(base).unwrap(), query)
            .unwrap()
            .to_string()
    }

    #[test]
    fn paths_map_onto_either_base_without_v1() {
        let codex = "https://chatgpt.com/backend-api/codex";
        assert_eq!(
            url(codex, Endpoint::Responses, None),
            "https://chatgpt.com/backend-api/codex/responses"
        );
        assert_eq!(
            url(codex, Endpoint::Compact, None),
            "https://chatgpt.com/backend-api/codex/responses/compact"
        );
        assert_eq!(
            url(codex, Endpoint::Models, Some("client_version=0.169.0")),
            "https://chatgpt.com/backend-api/codex/models?client_version=0.169.0"
        );
        assert_eq!(
            url("https://api.openai.com/v1", Endpoint::Responses, None),
            "https://api.openai.com/v1/responses"
        );
    }

    #[test]
    fn only_the_relayed_paths_are_endpoints() {
        assert_eq!(Endpoint::of("/v1/responses"), Some(Endpoint::Responses));
        assert_eq!(
            Endpoint::of("/v1/responses/compact"),
            Some(Endpoint::Compact)
        );
        assert_eq!(Endpoint::of("/v1/models"), Some(Endpoint::Models));
        for path in [
            "/v1/responses/",
            "/v1/responses/../models",
            "/responses",
            "/v1/files",
        ] {
            assert_eq!(Endpoint::of(path), None, "{path}");
        }
        let e = not_relayed(&http::Method::GET, "/v1/files");
        assert!(e.message.contains("/v1/responses"), "{}", e.message);
    }
}
