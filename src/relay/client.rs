//! What a client says about itself: Claude Code's device and session ids.
//!
//! Claude Code identifies the machine and the conversation in every request
//! (protocol.md §5.6, §12), in one of these shapes, newest first:
//!
//! - the `X-Claude-Code-Session-Id` header (session only);
//! - `metadata.user_id` as a JSON string:
//!   `{"device_id":"<64 hex>","account_uuid":"…","session_id":"<uuid>"}` (≥ 2.1.78);
//! - `metadata.user_id` as `user_<device>_account_<uuid>_session_<uuid>` (older versions);
//! - an `x-session-id` header (other clients).
//!
//! sing-box only knows the legacy form and finds no session in current Claude Code's
//! requests; this reads all of them.

use http::HeaderMap;
use serde::Deserialize;

/// Longest id kept; anything longer is cut (ids are 64 hex digits or a UUID).
const MAX_ID: usize = 128;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientIds {
    /// Empty when the client sent none.
    pub device: String,
    pub session: String,
}

#[derive(Deserialize)]
struct UserIdJson {
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
}

impl ClientIds {
    /// From the request headers and the body's `metadata.user_id`, if any.
    pub fn of(headers: &HeaderMap, user_id: Option<&str>) -> ClientIds {
        let (mut device, mut session) = user_id.map(parse_user_id).unwrap_or_default();
        if let Some(s) = header(headers, "x-claude-code-session-id") {
            session = s.to_owned();
        } else if session.is_empty() {
            if let Some(s) = header(headers, "x-session-id") {
                session = s.to_owned();
            }
        }
        truncate(&mut device);
        truncate(&mut session);
        ClientIds { device, session }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// (device, session) from `metadata.user_id`, in either of Claude Code's shapes.
fn parse_user_id(user_id: &str) -> (String, String) {
    let user_id = user_id.trim();
    if user_id.starts_with('{') {
        return match serde_json::from_str::<UserIdJson>(user_id) {
            Ok(ids) => (
                ids.device_id.unwrap_or_default(),
                ids.session_id.unwrap_or_default(),
            ),
            Err(_) => Default::default(),
        };
    }
    let session = user_id
        .rfind("_session_")
        .map(|i| user_id[i + "_session_".len()..].to_owned())
        .unwrap_or_default();
    let device = user_id
        .strip_prefix("user_")
        .and_then(|rest| rest.find("_account_").map(|i| rest[..i].to_owned()))
        .unwrap_or_default();
    (device, session)
}

fn truncate(id: &mut String) {
    if id.len() > MAX_ID {
        let mut end = MAX_ID;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "4f1c0c5e2a9d8b7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a39";
    const SESSION: &str = "0b7e4b42-8b8e-4d27-9d0a-2f7c3c1e5a10";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn current_claude_code_json_user_id() {
        let user_id =
            format!(r#"{{"device_id":"{DEVICE}","account_uuid":"","session_id":"{SESSION}"}}"#);
        let ids = ClientIds::of(&HeaderMap::new(), Some(&user_id));
        assert_eq!(
            ids,
            ClientIds {
                device: DEVICE.into(),
                session: SESSION.into()
            }
        );
    }

    #[test]
    fn legacy_user_id() {
        let user_id =
            format!("user_{DEVICE}_account_6a1f2b3c-0000-4000-8000-000000000001_session_{SESSION}");
        let ids = ClientIds::of(&HeaderMap::new(), Some(&user_id));
        assert_eq!(
            ids,
            ClientIds {
                device: DEVICE.into(),
                session: SESSION.into()
            }
        );
    }

    #[test]
    fn the_session_header_wins_and_x_session_id_is_the_last_resort() {
        let user_id = format!(r#"{{"device_id":"{DEVICE}","session_id":"from-body"}}"#);
        let h = headers(&[
            ("x-claude-code-session-id", "from-header"),
            ("x-session-id", "other"),
        ]);
        let ids = ClientIds::of(&h, Some(&user_id));
        assert_eq!(
            (ids.device.as_str(), ids.session.as_str()),
            (DEVICE, "from-header")
        );
        let ids = ClientIds::of(&headers(&[("x-session-id", "other")]), Some(&user_id));
        assert_eq!(ids.session, "from-body");
        let ids = ClientIds::of(&headers(&[("x-session-id", "other")]), None);
        assert_eq!(
            ids,
            ClientIds {
                device: String::new(),
                session: "other".into()
            }
        );
    }

    #[test]
    fn junk_gives_nothing_and_long_ids_are_cut() {
        assert_eq!(
            ClientIds::of(&HeaderMap::new(), Some("{not json")),
            ClientIds::default()
        );
        assert_eq!(
            ClientIds::of(&HeaderMap::new(), Some("someone@example.com")),
            ClientIds::default()
        );
        let long = "é".repeat(100);
        let ids = ClientIds::of(
            &headers(&[("x-session-id", "x")]),
            Some(&format!("user_{long}_account__session_{long}")),
        );
        assert!(ids.device.len() <= MAX_ID && ids.device.starts_with('é'));
        assert!(ids.session.len() <= MAX_ID);
    }
}
