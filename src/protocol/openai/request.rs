//! What the relay reads from an OpenAI request: the body's `model`, `stream`,
//! `prompt_cache_key` and number of `input` items, and the client's ids.
//!
//! **Session.** Requests of one conversation stay on one account. Codex names the
//! conversation in a header: `session-id` (hyphenated, Codex 0.169) or `session_id`
//! (older versions); other clients may only send `prompt_cache_key` in the body, which
//! Codex also sets to its session id (docs/protocol.md §7.5, §12.11). The first present wins.
//! **Device.** `x-codex-installation-id`, Codex's id of the machine.

use http::HeaderMap;
use serde::Deserialize;

use crate::protocol::{ClientIds, Peek};

/// Longest id kept; anything longer is cut.
const MAX_ID: usize = 128;

/// What the relay reads from a request.
pub fn peek(headers: &HeaderMap, body: &[u8]) -> Peek {
    let fields: Fields = if body.is_empty() {
        Fields::default()
    } else {
        serde_json::from_slice(body).unwrap_or_default()
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(cut)
    };
    let session = header("session-id")
        .or_else(|| header("session_id"))
        .or_else(|| fields.prompt_cache_key.as_deref().map(cut))
        .unwrap_or_default();
    Peek {
        model: fields.model.unwrap_or_default(),
        stream: fields.stream == Some(true),
        messages: fields.input,
        ids: ClientIds {
            device: header("x-codex-installation-id").unwrap_or_default(),
            session,
        },
    }
}

fn cut(id: &str) -> String {
    id.chars().take(MAX_ID).collect()
}

/// The body fields the relay reads; everything else passes untouched.
#[derive(Deserialize, Default)]
struct Fields {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    prompt_cache_key: Option<String>,
    /// How many items `input` has (a string input counts as one).
    #[serde(default, deserialize_with = "count_input")]
    input: u32,
}

fn count_input<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => Ok(u32::try_from(items.len()).unwrap_or(u32::MAX)),
        serde_json::Value::String(_) => Ok(1),
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_model_stream_input_and_codex_ids() {
        let body = br#"{"model":"gpt-5.1-codex","stream":true,"input":[{"role":"developer"},{"role":"user"}],"prompt_cache_key":"pck"}"#;
        let p = peek(
            &headers(&[("session-id", "s-new"), ("x-codex-installation-id", "inst")]),
            body,
        );
        assert_eq!(p.model, "gpt-5.1-codex");
        assert!(p.stream);
        assert_eq!(p.messages, 2);
        assert_eq!(p.ids.session, "s-new");
        assert_eq!(p.ids.device, "inst");
    }

    #[test]
    fn the_session_is_the_first_of_both_headers_then_the_cache_key() {
        let body = br#"{"model":"m","prompt_cache_key":"pck","input":"hi"}"#;
        assert_eq!(
            peek(&headers(&[("session_id", "old")]), body).ids.session,
            "old"
        );
        let p = peek(&HeaderMap::new(), body);
        assert_eq!(p.ids.session, "pck");
        assert_eq!(p.messages, 1);
        assert!(!p.stream);
        assert_eq!(peek(&HeaderMap::new(), b"not json"), Peek::default());
        let long = "x".repeat(500);
        let p = peek(&headers(&[("session-id", &long)]), b"{}");
        assert_eq!(p.ids.session.len(), MAX_ID);
    }
}
