//! Properties of config loading: any text is refused or accepted without a panic, and
//! every refusal names a field that is in the file (or the top level), never `?`.
//!
//! Next to the code to reach `strip_comments`. Bounded case counts; `PROPTEST_CASES=N`
//! runs more.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::raw::RawCredential;
use super::{Config, ConfigError, strip_comments};

use crate::proptest_cases::cases as config;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/carpool/config.json"))
}

/// Short text without `?`, `.` or brackets, so a field path can be looked up unambiguously.
fn word() -> impl Strategy<Value = String> {
    "[a-z0-9 _/:-]{0,12}"
}

fn tag() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["a", "b", "team", "default", ""]).prop_map(Value::from),
        word().prop_map(Value::from),
    ]
}

/// A value of some plausible or wrong type.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..100_000).prop_map(Value::from),
        word().prop_map(Value::from),
        prop::sample::select(vec![
            "1s",
            "0s",
            "2m",
            "1h 30m",
            "fast",
            "http://127.0.0.1:9",
            "socks5://h:1"
        ])
        .prop_map(Value::from),
        Just(json!(["a", "b"])),
        Just(json!({})),
    ]
}

/// An object with some of `fields`, each with a value of `value`, and maybe one the
/// schema does not have.
fn object_of(
    fields: impl Into<Vec<&'static str>>,
    value: BoxedStrategy<Value>,
) -> BoxedStrategy<Value> {
    let fields: Vec<&'static str> = fields.into();
    let most = fields.len() + 1;
    (
        prop::collection::vec((prop::sample::select(fields), value), 0..most),
        prop::option::weighted(0.1, (word(), scalar())),
    )
        .prop_map(|(entries, unknown)| {
            let mut map: Map<String, Value> = entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            if let Some((k, v)) = unknown {
                map.insert(k, v);
            }
            Value::Object(map)
        })
        .boxed()
}

fn credential() -> BoxedStrategy<Value> {
    let fields: Vec<&'static str> = std::iter::once("type")
        .chain(RawCredential::ACCOUNT_FIELDS.iter().copied())
        .chain(RawCredential::POOL_FIELDS.iter().copied())
        .collect();
    (
        tag(),
        prop::sample::select(vec!["default", "api_key", "balancer", "fallback", "bogus"]),
        object_of(fields, scalar().boxed()),
    )
        .prop_map(|(tag, kind, mut object)| {
            object["tag"] = tag;
            if object.get("type").is_some_and(|t| !t.is_string()) {
                object["type"] = json!(kind);
            }
            object
        })
        .boxed()
}

fn user() -> BoxedStrategy<Value> {
    let token = prop_oneof![
        Just(json!("0123456789abcdef0123")),
        Just(json!("short")),
        (0u32..1000).prop_map(|n| json!(format!("token-{n:016}"))),
    ];
    let hash = prop_oneof![
        Just(json!("sha256:00")),
        Just(json!(format!("sha256:{}", "ab".repeat(32)))),
        word().prop_map(Value::from),
    ];
    (
        tag(),
        prop::option::of(token),
        prop::option::of(hash),
        prop::option::of(tag()),
    )
        .prop_map(|(name, token, hash, credential)| {
            let mut user = json!({ "name": name });
            if let Some(t) = token {
                user["token"] = t;
            }
            if let Some(h) = hash {
                user["token_hash"] = h;
            }
            if let Some(c) = credential {
                user["credential"] = c;
            }
            user
        })
        .boxed()
}

fn prices() -> BoxedStrategy<Value> {
    let rate = prop_oneof![
        (0u32..20).prop_map(Value::from),
        Just(json!(-1)),
        Just(json!(0.125)),
        Just(json!("x"))
    ];
    let model = object_of(
        [
            "input",
            "output",
            "cache_read",
            "cache_write_5m",
            "cache_write_1h",
            "web_search",
            "aliases",
        ],
        rate.boxed(),
    );
    prop::collection::btree_map("[a-z0-9-]{1,10}", model, 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

/// A config close to a real one: the right fields, mostly the right shapes.
fn near_valid() -> BoxedStrategy<Value> {
    let header = prop_oneof![
        word().prop_map(Value::from),
        Just(json!(["a", "b"])),
        scalar()
    ];
    let fields: Vec<(&'static str, BoxedStrategy<Value>)> = vec![
        (
            "listen",
            prop_oneof![
                Just(json!("127.0.0.1")),
                Just(json!("0.0.0.0")),
                Just(json!("localhost")),
                scalar()
            ]
            .boxed(),
        ),
        (
            "listen_port",
            prop_oneof![(0u32..70_000).prop_map(Value::from), scalar()].boxed(),
        ),
        ("credential_path", scalar().boxed()),
        (
            "credentials",
            prop::collection::vec(credential(), 0..4)
                .prop_map(Value::Array)
                .boxed(),
        ),
        (
            "users",
            prop::collection::vec(user(), 0..3)
                .prop_map(Value::Array)
                .boxed(),
        ),
        (
            "headers",
            prop::collection::btree_map(
                prop_oneof![Just("authorization".to_string()), "[a-z-]{1,8}", word()],
                header,
                0..3,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed(),
        ),
        ("max_body_bytes", scalar().boxed()),
        (
            "timeouts",
            object_of(
                ["connect", "first_byte", "idle", "request", "shutdown_grace"],
                scalar().boxed(),
            ),
        ),
        ("database", scalar().boxed()),
        ("usages_path", scalar().boxed()),
        ("usage_queue", scalar().boxed()),
        ("prices", prices()),
        ("ca_file", scalar().boxed()),
    ];
    let strategies: Vec<BoxedStrategy<Option<(&'static str, Value)>>> = fields
        .into_iter()
        .map(|(name, s)| prop::option::of(s.prop_map(move |v| (name, v))).boxed())
        .collect();
    strategies
        .prop_map(|entries| {
            Value::Object(
                entries
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            )
        })
        .boxed()
}

/// Looks up `users[0].name`-style paths; `None` when a step is not in `value`.
fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut at = value;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        match key {
            "" => {}
            "\"\"" => at = at.get("")?,
            key => at = at.get(key)?,
        }
        for index in indices.split('[').skip(1) {
            at = at.get(index.strip_suffix(']')?.parse::<usize>().ok()?)?;
        }
    }
    Some(at)
}

/// The refusal of `text`, checked: it reads well and names a field that exists in the
/// file (its last step may be one that is missing, when the message says so).
fn check_refusal(text: &str) -> Result<(), TestCaseError> {
    let Err(error) = parse(text) else {
        return Ok(());
    };
    let message = error.to_string();
    prop_assert!(
        !message.contains("?:") && !message.contains(".?"),
        "{}",
        message
    );
    prop_assert!(!message.contains("Raw"), "{}", message);
    let ConfigError::Invalid { field, problem, .. } = error else {
        return Err(TestCaseError::fail(format!("not an Invalid: {message}")));
    };
    if field == "(top level)" {
        return Ok(());
    }
    // Only a file that is still JSON can be looked in.
    let Ok(value) = strip_comments(text).map(|t| serde_json::from_str::<Value>(&t)) else {
        return Ok(());
    };
    let Ok(value) = value else { return Ok(()) };
    let (parent, _) = field.rsplit_once('.').unwrap_or(("", &field));
    let parent = parent.split('[').next().filter(|_| !parent.is_empty());
    if let Some(parent) = parent {
        prop_assert!(
            lookup(&value, parent).is_some(),
            "{} names `{}`, not in {}",
            message,
            parent,
            text
        );
    }
    let names_what_is_missing = ["missing", "no users", "cannot find"]
        .iter()
        .any(|w| problem.contains(w));
    prop_assert!(
        lookup(&value, &field).is_some() || names_what_is_missing,
        "{} names `{}`, not in {}",
        message,
        field,
        text
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_text_is_refused_or_read_without_panicking(
        text in prop_oneof![
            any::<String>(),
            "[{}\\[\\]\",:/* \n\\\\a-z0-9#]{0,80}",
        ],
    ) {
        check_refusal(&text)?;
    }

    #[test]
    fn near_valid_configs_name_a_real_field_when_refused(
        config in near_valid(),
        pretty in any::<bool>(),
        edit in 0usize..6,
        at in any::<prop::sample::Index>(),
    ) {
        let mut text = if pretty {
            serde_json::to_string_pretty(&config).unwrap()
        } else {
            config.to_string()
        };
        // Now and then a slip a person makes: a trailing comma, a comment, a lost byte
        // (the text is ASCII: any byte is a character).
        match edit {
            0 => {
                let closes: Vec<usize> = text.match_indices(['}', ']']).map(|(i, _)| i).collect();
                if !closes.is_empty() {
                    text.insert(closes[at.index(closes.len())], ',');
                }
            }
            1 => {
                let i = at.index(text.len() + 1);
                let i = text[..i].rfind(['\n', ',', '{']).map_or(0, |n| n + 1);
                text.insert_str(i, " /* note */ // line\n");
            }
            2 if !text.is_empty() => {
                text.remove(at.index(text.len()));
            }
            _ => {}
        }
        check_refusal(&text)?;
    }
}
