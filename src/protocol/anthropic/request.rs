//! What the relay reads from an Anthropic Messages request: the body's `model`, `stream`,
//! `metadata.user_id` and number of `messages` ([`peek`]), and the client's device and
//! session ids ([`client_ids`]).
//!
//! **The body** is read in one pass that builds nothing but those fields: serde skips
//! every other value (and each message) without building it, `metadata` is searched for
//! `user_id` alone, and strings without escapes are borrowed from the body. A body that is
//! not JSON, or whose fields have unexpected types, gives empty fields: it is forwarded as
//! it is and the upstream says what is wrong.
//!
//! **Device and session.** Claude Code identifies the machine and the conversation in
//! every request (docs/protocol.md §5.6, §12), in one of these shapes, newest first:
//!
//! - the `X-Claude-Code-Session-Id` header (session only);
//! - `metadata.user_id` as a JSON string:
//!   `{"device_id":"<64 hex>","account_uuid":"…","session_id":"<uuid>"}` (≥ 2.1.78);
//! - `metadata.user_id` as `user_<device>_account_<uuid>_session_<uuid>` (older versions);
//! - an `x-session-id` header (other clients).
//!
//! sing-box only knows the legacy form and finds no session in current Claude Code's
//! requests; this reads all of them.

use std::borrow::Cow;

use http::HeaderMap;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::protocol::{ClientIds, Peek};

/// Longest id kept; anything longer is cut (ids are 64 hex digits or a UUID).
const MAX_ID: usize = 128;

/// What the relay reads from a request.
pub fn peek(headers: &HeaderMap, body: &[u8]) -> Peek {
    let fields = Fields::of(body);
    Peek {
        ids: client_ids(headers, fields.user_id.as_deref()),
        model: fields.model.unwrap_or_default(),
        stream: fields.stream == Some(true),
        messages: fields.messages,
    }
}

/// The body fields the relay reads; everything else passes untouched.
#[derive(Deserialize, Default)]
pub(super) struct Fields<'a> {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// `metadata.user_id` when it is a string. Kept loose: a `metadata` of another shape
    /// must not hide `model` and `stream`.
    #[serde(default, borrow, rename = "metadata", deserialize_with = "user_id")]
    pub user_id: Option<Cow<'a, str>>,
    /// How many entries `messages` has.
    #[serde(default, deserialize_with = "count_entries")]
    pub messages: u32,
}

impl<'a> Fields<'a> {
    pub fn of(body: &'a [u8]) -> Fields<'a> {
        if body.is_empty() {
            return Fields::default();
        }
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// `user_id` of a `metadata` object, if it is a string; `None` for anything else, which
/// is skipped without being built.
fn user_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Metadata;
    impl<'de> Visitor<'de> for Metadata {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut user_id = None;
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    // The last one wins, as in a JSON object read whole.
                    Key::UserId => user_id = map.next_value::<AnyStr<'de>>()?.0,
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(user_id)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Metadata)
}

/// A key of `metadata`, compared without being copied.
enum Key {
    UserId,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(if key == "user_id" {
                    Key::UserId
                } else {
                    Key::Other
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A string value, borrowed from the body when it has no escapes; `None` for any other
/// value, skipped without being built.
struct AnyStr<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for AnyStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AnyStr<'de>, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = AnyStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Owned(s))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyStr(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
        }
        d.deserialize_any(StrVisitor)
    }
}

/// The length of an array without building its elements; 0 for anything else (the
/// upstream judges a malformed body, not the relay).
fn count_entries<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u32, A::Error> {
            let mut n = 0u32;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n = n.saturating_add(1);
            }
            Ok(n)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u32, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_bool<E>(self, _: bool) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<u32, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<u32, E> {
            Ok(0)
        }
    }
    d.deserialize_any(Count)
}

#[derive(Deserialize)]
struct UserIdJson {
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
}

/// The device and session from the request headers and the body's `metadata.user_id`,
/// if any.
pub fn client_ids(headers: &HeaderMap, user_id: Option<&str>) -> ClientIds {
    let (mut device, mut session) = user_id.map(parse_user_id).unwrap_or_default();
    if let Some(s) = header(headers, "x-claude-code-session-id") {
        session = s.to_owned();
    } else if session.is_empty()
        && let Some(s) = header(headers, "x-session-id")
    {
        session = s.to_owned();
    }
    truncate(&mut device);
    truncate(&mut session);
    ClientIds { device, session }
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
        let ids = client_ids(&HeaderMap::new(), Some(&user_id));
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
        let ids = client_ids(&HeaderMap::new(), Some(&user_id));
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
        let ids = client_ids(&h, Some(&user_id));
        assert_eq!(
            (ids.device.as_str(), ids.session.as_str()),
            (DEVICE, "from-header")
        );
        let ids = client_ids(&headers(&[("x-session-id", "other")]), Some(&user_id));
        assert_eq!(ids.session, "from-body");
        let ids = client_ids(&headers(&[("x-session-id", "other")]), None);
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
            client_ids(&HeaderMap::new(), Some("{not json")),
            ClientIds::default()
        );
        assert_eq!(
            client_ids(&HeaderMap::new(), Some("someone@example.com")),
            ClientIds::default()
        );
        let long = "é".repeat(100);
        let ids = client_ids(
            &headers(&[("x-session-id", "x")]),
            Some(&format!("user_{long}_account__session_{long}")),
        );
        assert!(ids.device.len() <= MAX_ID && ids.device.starts_with('é'));
        assert!(ids.session.len() <= MAX_ID);
    }
}
