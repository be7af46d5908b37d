//! Properties of what the relay reads from a request before sending it on: the body's
//! `model`, `stream`, `metadata.user_id` and number of `messages` ([`Fields`]), and the
//! client's device and session ids ([`client_ids`]), and which upstream path a request
//! path may reach ([`Endpoint`]). All read untrusted bytes on every request.
//!
//! Next to the code (not in `tests/`) because `Fields` is private. Bounded case counts;
//! `PROPTEST_CASES=N` runs more.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::endpoint::Endpoint;
use super::request::{Fields, client_ids};
use crate::protocol::Endpoint as _;

use crate::proptest_cases::cases as config;

/// Any JSON value (no floats: they need not survive a round trip exactly).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(0.5)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

const PEEKED: [&str; 4] = ["model", "stream", "metadata", "messages"];

/// A field the relay does not read, with any value.
fn extra_field() -> impl Strategy<Value = (String, Value)> {
    (
        any::<String>().prop_filter("a field Peek reads", |k| !PEEKED.contains(&k.as_str())),
        json_value(),
    )
}

fn peek(body: &[u8]) -> Fields<'static> {
    let body = Bytes::copy_from_slice(body);
    let fields = Fields::of(&body);
    // Owned, so a property can outlive the body.
    Fields {
        model: fields.model,
        stream: fields.stream,
        user_id: fields.user_id.map(|u| u.into_owned().into()),
        messages: fields.messages,
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_bytes_peek_without_panicking(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let p = peek(&body);
        // Whatever it found, the ids derived from it stay bounded.
        let ids = client_ids(&HeaderMap::new(), p.user_id.as_deref());
        prop_assert!(ids.device.len() <= 128 && ids.session.len() <= 128);
    }

    #[test]
    fn a_request_gives_back_exactly_its_fields(
        model in prop::option::of(any::<String>()),
        stream in prop::option::of(any::<bool>()),
        metadata in prop::option::of(json_value()),
        messages in prop::option::of(prop::collection::vec(json_value(), 0..8)),
        extra in prop::collection::vec(extra_field(), 0..6),
        order in any::<u64>(),
        pretty in any::<bool>(),
    ) {
        let mut fields: Vec<(String, Value)> = extra;
        if let Some(m) = &model { fields.push(("model".into(), json!(m))); }
        if let Some(s) = stream { fields.push(("stream".into(), json!(s))); }
        if let Some(m) = &metadata { fields.push(("metadata".into(), m.clone())); }
        if let Some(m) = &messages { fields.push(("messages".into(), json!(m))); }
        // Any order of fields.
        let n = fields.len().max(1);
        fields.rotate_left((order as usize) % n);
        if order & 1 == 1 { fields.reverse(); }
        let mut object = Map::new();
        for (k, v) in fields {
            object.insert(k, v);
        }
        let body = if pretty {
            serde_json::to_vec_pretty(&Value::Object(object)).unwrap()
        } else {
            serde_json::to_vec(&Value::Object(object)).unwrap()
        };
        let p = peek(&body);
        prop_assert_eq!(p.model, model);
        prop_assert_eq!(p.stream, stream);
        // `metadata.user_id` when it is a string; nothing for any other shape.
        let user_id = metadata.as_ref().and_then(|m| m.get("user_id")).and_then(Value::as_str);
        prop_assert_eq!(p.user_id.as_deref(), user_id);
        prop_assert_eq!(p.messages as usize, messages.map_or(0, |m| m.len()));
    }

    /// `user_id` among any other metadata, in any order, with any characters (escapes
    /// included), or of another type.
    #[test]
    fn metadata_user_id_is_read_among_anything_else(
        user_id in prop_oneof![any::<String>().prop_map(Value::from), json_value()],
        extra in prop::collection::vec((any::<String>(), json_value()), 0..5),
        first in any::<bool>(),
    ) {
        let mut metadata = Map::new();
        if first { metadata.insert("user_id".into(), user_id.clone()); }
        for (k, v) in extra {
            if k != "user_id" { metadata.insert(k, v); }
        }
        if !first { metadata.insert("user_id".into(), user_id.clone()); }
        let body = json!({"model": "m", "metadata": metadata, "stream": true}).to_string();
        let p = peek(body.as_bytes());
        prop_assert_eq!(p.user_id.as_deref(), user_id.as_str());
        prop_assert_eq!((p.model.as_deref(), p.stream), (Some("m"), Some(true)));
    }

    #[test]
    fn messages_of_any_other_shape_count_zero(
        messages in json_value().prop_filter("an array", |v| !v.is_array()),
        model in "[a-z0-9-]{1,20}",
    ) {
        let body = json!({"model": model, "messages": messages}).to_string();
        let p = peek(body.as_bytes());
        prop_assert_eq!(p.messages, 0);
        prop_assert_eq!(p.model, Some(model));
    }

    #[test]
    fn client_ids_from_claude_codes_user_ids(
        device in "[0-9a-f]{64}",
        session in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        account in "[0-9a-f-]{0,36}",
        legacy in any::<bool>(),
    ) {
        let user_id = if legacy {
            format!("user_{device}_account_{account}_session_{session}")
        } else {
            json!({"device_id": device, "account_uuid": account, "session_id": session}).to_string()
        };
        let ids = client_ids(&HeaderMap::new(), Some(&user_id));
        prop_assert_eq!(ids.device, device);
        prop_assert_eq!(ids.session, session);
    }

    #[test]
    fn any_user_id_and_header_give_bounded_ids(
        user_id in prop::option::of(prop_oneof![
            any::<String>(),
            "user_.{0,200}_account_.{0,20}_session_.{0,200}",
            "\\{.{0,300}",
        ]),
        header in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
    ) {
        let mut headers = HeaderMap::new();
        let value = header.and_then(|h| HeaderValue::from_bytes(&h).ok());
        if let Some(v) = &value {
            headers.insert("x-claude-code-session-id", v.clone());
        }
        let ids = client_ids(&headers, user_id.as_deref());
        prop_assert!(ids.device.len() <= 128 && ids.session.len() <= 128);
        // A usable session header always wins, cut to the limit.
        if let Some(s) = value.as_ref().and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty()) {
            prop_assert!(s.starts_with(&ids.session) && !ids.session.is_empty());
        }
    }
}

/// serde_json stops at 128 levels; the peek must neither overflow the stack on a body
/// nested far deeper, wherever the nesting is, nor fail the request.
#[test]
fn deeply_nested_bodies_do_not_overflow_the_stack() {
    let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
    let arrays = deep("[", "]", 100_000);
    let objects = deep("{\"a\":", "}", 100_000);
    let unclosed = "[".repeat(100_000);
    for nested in [&arrays, &objects, &unclosed] {
        // (body, `messages` counted when it is read)
        for (body, count) in [
            (nested.clone(), 0),
            (format!(r#"{{"model":"m","extra":{nested}}}"#), 0),
            (format!(r#"{{"model":"m","metadata":{nested}}}"#), 0),
            (format!(r#"{{"model":"m","messages":{nested}}}"#), 1),
            (format!(r#"{{"model":"m","messages":[{nested}]}}"#), 1),
        ] {
            let p = peek(body.as_bytes());
            // Read right (serde_json skips deep arrays it does not build), or too deep
            // to read: then the body is forwarded as it is and the upstream judges it.
            let read = (p.model.as_deref(), p.messages) == (Some("m"), count);
            let unread = (p.model.as_deref(), p.messages) == (None, 0);
            assert!(
                read || unread,
                "{}…: {:?} {}",
                &body[..30],
                p.model,
                p.messages
            );
            assert!(p.user_id.is_none());
        }
    }
    // 100 levels are read.
    let body = format!(
        r#"{{"model":"m","metadata":{},"messages":[{}, 1]}}"#,
        deep("[", "]", 100),
        deep("{\"a\":", "}", 100).replace("{\"a\":}", "{\"a\":0}")
    );
    let p = peek(body.as_bytes());
    assert_eq!((p.model.as_deref(), p.messages), (Some("m"), 2));
}

/// Path pieces an attacker would try: separators, dots, their percent-encodings in both
/// cases, backslashes, control characters, and ordinary model-id characters.
fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        Just("\\".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%00".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just("\t".to_owned()),
        "[a-zA-Z0-9_:@-]{1,12}",
        any::<char>().prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// Whatever follows `/v1/models/`, Carpool either refuses it or sends exactly
    /// `/v1/models/<the same text>` to the upstream, under any base path: never a path
    /// that a URL parser resolves elsewhere.
    #[test]
    fn a_model_path_reaches_only_its_own_upstream_path(
        pieces in prop::collection::vec(path_piece(), 1..8),
        base in prop_oneof![
            Just("https://api.anthropic.com"),
            Just("http://127.0.0.1:8080/gateway/anthropic"),
        ],
    ) {
        let id: String = pieces.concat();
        let path = format!("/v1/models/{id}");
        if let Some(endpoint) = Endpoint::of(&path) {
            let url = endpoint
                .upstream_url(&base.parse().unwrap(), None)
                .expect("a relayed path builds its URL");
            let base_path = reqwest::Url::parse(base).unwrap().path().trim_end_matches('/').to_owned();
            prop_assert_eq!(url.path(), format!("{base_path}/v1/models/{id}"));
            prop_assert!(!id.contains(['/', '\\', '%']) && id != "." && id != "..");
        }
    }

    /// Any request path is either one of the four relayed endpoints or refused.
    #[test]
    fn only_the_relayed_endpoints_are_relayed(path in "/[a-z0-9/._%-]{0,40}") {
        if let Some(endpoint) = Endpoint::of(&path) {
            prop_assert_eq!(endpoint.path(), path.clone());
            prop_assert!(path.starts_with("/v1/messages") || path.starts_with("/v1/models"));
        }
    }
}
