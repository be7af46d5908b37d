use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/carpool/config.json"))
}

/// The field a rejected config is blamed on.
fn field_of(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected a rejection for {text}, got {other:?}"),
    }
}

fn oauth_path(c: &Config, i: usize) -> &Path {
    match &c.credentials[i].source {
        Source::OAuthFile { path, .. } => path,
        other => panic!("{other:?}"),
    }
}

const USER: &str = r#"{"name": "me", "token": "0123456789abcdef0123"}"#;

#[test]
fn an_empty_config_means_loopback_default_account_no_users() {
    let c = parse("{}").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7676");
    assert_eq!(c.credentials.len(), 1);
    assert_eq!(c.credentials[0].tag, "default");
    assert_eq!(c.credentials[0].base_url, DEFAULT_BASE_URL);
    match &c.credentials[0].source {
        Source::OAuthFile { token_url, .. } => assert_eq!(token_url, DEFAULT_TOKEN_URL),
        other => panic!("{other:?}"),
    }
    assert!(c.pools.is_empty());
    assert!(c.users.is_empty());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.connections, Connections::default());
    assert_eq!(c.max_body_bytes, 64 * 1024 * 1024);
}

#[test]
fn comments_are_allowed() {
    let c = parse(
        r#"// top
        { /* block */ "listen_port": 9000 // trailing
        }"#,
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9000);
}

#[test]
fn credential_paths_are_resolved_against_the_config_directory() {
    let c = parse(r#"{"credential_path": "creds/claude.json"}"#).unwrap();
    assert_eq!(
        oauth_path(&c, 0),
        Path::new("/etc/carpool/creds/claude.json")
    );
    let c = parse(r#"{"credentials": [{"tag": "a", "credential_path": "/abs/c.json", "base_url": "http://127.0.0.1:9/"}]}"#).unwrap();
    assert_eq!(oauth_path(&c, 0), Path::new("/abs/c.json"));
    assert_eq!(
        c.credentials[0].base_url, "http://127.0.0.1:9",
        "trailing slash trimmed"
    );
}

#[test]
fn users_bind_to_credentials_by_tag() {
    let c = parse(
        r#"{"credentials": [{"tag": "a"}, {"tag": "b"}],
            "users": [{"name": "x", "token": "0123456789abcdef0123", "credential": "b"}]}"#,
    )
    .unwrap();
    assert_eq!(
        c.users[0].targets.anthropic,
        Some(Target::Account("b".into()))
    );
    // With one credential the binding may be left out.
    let c = parse(&format!(r#"{{"users": [{USER}]}}"#)).unwrap();
    assert_eq!(
        c.users[0].targets.anthropic,
        Some(Target::Account("default".into()))
    );
}

#[test]
fn timeouts_and_headers_are_read() {
    let c = parse(
        r#"{"timeouts": {"connect": "3s", "first_byte": "1m 30s", "idle": "45s", "request": "15m", "shutdown_grace": "5s"},
            "headers": {"x-one": "1", "x-many": ["a", "b"]}}"#,
    )
    .unwrap();
    assert_eq!(c.timeouts.connect, Duration::from_secs(3));
    assert_eq!(c.timeouts.first_byte, Duration::from_secs(90));
    assert_eq!(c.timeouts.request, Duration::from_secs(900));
    assert_eq!(c.headers.len(), 3);
}

#[test]
fn connection_limits_are_read() {
    let c = parse(
        r#"{"connections": {"max": 200, "max_header_bytes": 16384, "header_timeout": "5s",
            "keep_alive": "2m", "body_timeout": "1m"}}"#,
    )
    .unwrap();
    assert_eq!(
        c.connections,
        Connections {
            max: 200,
            max_header_bytes: 16384,
            header_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(120),
            body_timeout: Duration::from_secs(60),
        }
    );
    // Partly set: the rest keep their defaults.
    let c = parse(r#"{"connections": {"keep_alive": "5s"}}"#).unwrap();
    assert_eq!(c.connections.keep_alive, Duration::from_secs(5));
    assert_eq!(c.connections.max, Connections::default().max);
}

#[test]
fn every_rejection_names_its_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"listen": "everywhere"}"#, "listen"),
        (r#"{"listen_port": 70000}"#, "listen_port"),
        (r#"{"unknown_field": 1}"#, "unknown_field"),
        (
            r#"{"credential_path": "/a", "credentials": [{"tag": "x"}]}"#,
            "credential_path",
        ),
        (r#"{"credentials": [{"tag": ""}]}"#, "credentials[0].tag"),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "a"}]}"#,
            "credentials[1].tag",
        ),
        (
            r#"{"credentials": [{"tag": "a", "type": "balancer"}]}"#,
            "credentials[0].credentials",
        ),
        (
            r#"{"credentials": [{"tag": "a", "type": "cluster"}]}"#,
            "credentials[0].type",
        ),
        // Pools: unknown tags, themselves, other pools, duplicates, account fields.
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a", "b"]}]}"#,
            "credentials[1].credentials[1]",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["p"]}]}"#,
            "credentials[1].credentials[0]",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "fallback", "credentials": ["a"]}, {"tag": "q", "type": "balancer", "credentials": ["p"]}]}"#,
            "credentials[2].credentials[0]",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a", "a"]}]}"#,
            "credentials[1].credentials[1]",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a"], "reserve_5h": 10}]}"#,
            "credentials[1].reserve_5h",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a"], "strategy": "fastest"}]}"#,
            "credentials[1].strategy",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "fallback", "credentials": ["a"], "strategy": "random"}]}"#,
            "credentials[1].strategy",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a"], "poll_interval": "often"}]}"#,
            "credentials[1].poll_interval",
        ),
        // Accounts: reserves, pool fields, proxies, API keys, sing-box's detour.
        (
            r#"{"credentials": [{"tag": "a", "reserve_5h": 0}]}"#,
            "credentials[0].reserve_5h",
        ),
        (
            r#"{"credentials": [{"tag": "a", "reserve_weekly": 100}]}"#,
            "credentials[0].reserve_weekly",
        ),
        (
            r#"{"credentials": [{"tag": "a", "credentials": ["x"]}]}"#,
            "credentials[0].credentials",
        ),
        (
            r#"{"credentials": [{"tag": "a", "proxy": "ftp://x:1"}]}"#,
            "credentials[0].proxy",
        ),
        (
            r#"{"credentials": [{"tag": "a", "proxy": "not a url"}]}"#,
            "credentials[0].proxy",
        ),
        (
            r#"{"credentials": [{"tag": "a", "detour": "out"}]}"#,
            "credentials[0].detour",
        ),
        (
            r#"{"credentials": [{"tag": "a", "type": "api_key"}]}"#,
            "credentials[0].api_key",
        ),
        (
            r#"{"credentials": [{"tag": "a", "type": "api_key", "api_key": "k", "credential_path": "/x"}]}"#,
            "credentials[0].credential_path",
        ),
        (
            r#"{"credentials": [{"tag": "a", "type": "api_key", "api_key": "k", "reserve_5h": 5}]}"#,
            "credentials[0].reserve_5h",
        ),
        (
            r#"{"credentials": [{"tag": "a", "api_key": "k"}]}"#,
            "credentials[0].api_key",
        ),
        (
            r#"{"credentials": [{"tag": "a", "base_url": "ftp://x"}]}"#,
            "credentials[0].base_url",
        ),
        (
            r#"{"credentials": [{"tag": "a", "token_url": "not a url"}]}"#,
            "credentials[0].token_url",
        ),
        (
            r#"{"credentials": [{"tag": "a", "base_url": "https://u:p@x"}]}"#,
            "credentials[0].base_url",
        ),
        (
            r#"{"credentials": [{"tag": "a", "colour": "red"}]}"#,
            "credentials[0]",
        ),
        (
            r#"{"users": [{"name": "", "token": "0123456789abcdef0123"}]}"#,
            "users[0].name",
        ),
        (r#"{"users": [{"name": "a"}]}"#, "users[0].token_hash"),
        (
            r#"{"users": [{"name": "a", "token": "short"}]}"#,
            "users[0].token",
        ),
        (
            r#"{"users": [{"name": "a", "token": "0123456789abcdef0123", "token_hash": "sha256:00"}]}"#,
            "users[0].token",
        ),
        (
            r#"{"users": [{"name": "a", "token_hash": "0123"}]}"#,
            "users[0].token_hash",
        ),
        (
            r#"{"users": [{"name": "a", "token": "0123456789abcdef0123"}, {"name": "a", "token": "0123456789abcdef0124"}]}"#,
            "users[1].name",
        ),
        (
            r#"{"users": [{"name": "a", "token": "0123456789abcdef0123"}, {"name": "b", "token": "0123456789abcdef0123"}]}"#,
            "users[1].token",
        ),
        (
            r#"{"users": [{"name": "a", "token": "0123456789abcdef0123", "credential": "nope"}]}"#,
            "users[0].credential",
        ),
        (
            r#"{"credentials": [{"tag": "a"}, {"tag": "b"}], "users": [{"name": "a", "token": "0123456789abcdef0123"}]}"#,
            "users[0].credential",
        ),
        (r#"{"listen": "0.0.0.0"}"#, "users"),
        (r#"{"headers": {"bad header": "x"}}"#, "headers.bad header"),
        (
            r#"{"headers": {"authorization": "Bearer x"}}"#,
            "headers.authorization",
        ),
        (r#"{"headers": {"x-a": "line\nbreak"}}"#, "headers.x-a"),
        (r#"{"max_body_bytes": 0}"#, "max_body_bytes"),
        (r#"{"timeouts": {"idle": "0s"}}"#, "timeouts.idle"),
        (r#"{"timeouts": {"connect": "fast"}}"#, "timeouts.connect"),
        (r#"{"timeouts": {"idel": "1s"}}"#, "timeouts.idel"),
        (r#"{"connections": {"max": 0}}"#, "connections.max"),
        (r#"{"connections": {"max": -1}}"#, "connections.max"),
        (
            r#"{"connections": {"max_header_bytes": 8191}}"#,
            "connections.max_header_bytes",
        ),
        (
            r#"{"connections": {"header_timeout": "0s"}}"#,
            "connections.header_timeout",
        ),
        (
            r#"{"connections": {"keep_alive": "forever"}}"#,
            "connections.keep_alive",
        ),
        (
            r#"{"connections": {"body_timeout": "0ms"}}"#,
            "connections.body_timeout",
        ),
        (r#"{"connections": {"idle": "1s"}}"#, "connections.idle"),
        (r#"{"usage_queue": 0}"#, "usage_queue"),
        (r#"{"database": ""}"#, "database"),
        (
            r#"{"prices": {"my-model": {"input": -1, "output": 1, "cache_read": 0, "cache_write_5m": 0, "cache_write_1h": 0}}}"#,
            "prices.my-model",
        ),
        (
            r#"{"prices": {"my-model": {"input": 1, "output": 1}}}"#,
            "prices.my-model",
        ),
        (
            r#"{"prices": {"my-model": {"input": 1, "output": 1, "cache_read": 0, "cache_write_5m": 0, "cache_write_1h": 0, "aliases": ["claude-sonnet-4-6"]}}}"#,
            "prices",
        ),
        (
            r#"{"credentials": [{"tag": "a", "usages_path": 7}]}"#,
            "credentials[0].usages_path",
        ),
    ];
    for (text, field) in cases {
        let got = field_of(text);
        assert!(
            got.starts_with(field),
            "{text}: blamed `{got}`, expected `{field}`"
        );
    }
}

#[test]
fn the_message_names_the_file_field_and_problem() {
    let err = parse(
        r#"{"users": [{"name": "a", "token": "0123456789abcdef0123", "credential": "nope"}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "config /etc/carpool/config.json: users[0].credential: unknown credential tag `nope` (known: default)"
    );
}

#[test]
fn a_wildcard_listener_with_users_is_fine() {
    let c = parse(&format!(r#"{{"listen": "0.0.0.0", "users": [{USER}]}}"#)).unwrap();
    assert!(c.listen.ip().is_unspecified());
}

#[test]
fn usage_settings_default_and_resolve_against_the_config_directory() {
    let c = parse("{}").unwrap();
    assert!(
        c.usage.database.ends_with("carpool/usage.db"),
        "{:?}",
        c.usage.database
    );
    assert_eq!(c.usage.queue, 10_000);
    assert!(c.usage.usages_path.is_none());
    let c = parse(
        r#"{
            "database": "data/usage.db",
            "usages_path": "/var/lib/ccm/usages.json",
            "usage_queue": 50,
            "credentials": [{"tag": "a", "usages_path": "a-usages.json"}],
            "prices": {"my-model": {"input": 1, "output": 2, "cache_read": 0.1, "cache_write_5m": 1.25, "cache_write_1h": 2}}
        }"#,
    )
    .unwrap();
    assert_eq!(c.usage.database, Path::new("/etc/carpool/data/usage.db"));
    assert_eq!(
        c.usage.usages_path.as_deref(),
        Some(Path::new("/var/lib/ccm/usages.json"))
    );
    assert_eq!(c.usage.queue, 50);
    assert_eq!(
        c.credentials[0].usages_path.as_deref(),
        Some(Path::new("/etc/carpool/a-usages.json"))
    );
    let tokens = crate::ledger::Tokens {
        input: 1000,
        output: 1000,
        ..Default::default()
    };
    assert_eq!(
        c.usage
            .prices
            .cost_micros("my-model", &tokens, &Default::default()),
        Some(3000)
    );
}

#[test]
fn pools_bind_users_and_keep_their_accounts_in_order() {
    let c = parse(
        r#"{
            "credentials": [
                {"tag": "a", "credential_path": "/a.json", "reserve_5h": 20, "reserve_weekly": 10, "proxy": "socks5://u:p@127.0.0.1:1080"},
                {"tag": "key", "type": "api_key", "api_key": " sk-ant-api03-x ", "base_url": "https://gateway.example/"},
                {"tag": "b", "credential_path": "/b.json"},
                {"tag": "pool", "type": "balancer", "strategy": "round-robin", "credentials": ["b", "a", "key"], "poll_interval": "30s", "session_ttl": "2h"},
                {"tag": "backup", "type": "fallback", "credentials": ["a", "b"]}
            ],
            "users": [
                {"name": "me", "token": "0123456789abcdef0123", "credential": "pool"},
                {"name": "you", "token": "0123456789abcdef0124", "credential": "key"}
            ]
        }"#,
    )
    .unwrap();
    assert_eq!(c.credentials.len(), 3);
    assert_eq!(c.credentials[0].reserve_5h, Some(20));
    assert_eq!(c.credentials[0].reserve_weekly, Some(10));
    assert_eq!(
        c.credentials[0].proxy.as_deref(),
        Some("socks5://u:p@127.0.0.1:1080")
    );
    match &c.credentials[1].source {
        Source::ApiKey(key) => assert_eq!(key.expose(), "sk-ant-api03-x"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.credentials[1].base_url, "https://gateway.example");
    assert_eq!(c.pools.len(), 2);
    assert_eq!(c.pools[0].strategy, Strategy::RoundRobin);
    assert_eq!(c.pools[0].members, ["b", "a", "key"]);
    assert_eq!(c.pools[0].poll_interval, Duration::from_secs(30));
    assert_eq!(c.pools[0].session_ttl, Duration::from_secs(7200));
    assert_eq!(c.pools[1].strategy, Strategy::Fallback);
    assert_eq!(c.pools[1].members, ["a", "b"]);
    assert_eq!(
        c.users[0].targets.anthropic,
        Some(Target::Pool("pool".into()))
    );
    assert_eq!(
        c.users[1].targets.anthropic,
        Some(Target::Account("key".into()))
    );
    assert_eq!(
        c.anonymous_target(Provider::Anthropic),
        Some(Target::Pool("pool".into()))
    );
    // The API key never shows in Debug output.
    assert!(!format!("{c:?}").contains("sk-ant-api03-x"));
}

#[cfg(unix)]
#[test]
fn clear_secrets_in_a_file_others_can_read_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let write = |text: &str, mode: u32| {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let clear = r#"{
      "credentials": [
        {"tag": "a", "credential_path": "/x/.credentials.json"},
        {"tag": "k", "type": "api_key", "api_key": "sk-ant-api03-secret", "proxy": "socks5://u:pw@127.0.0.1:1080"}
      ],
      "users": [{"name": "bob", "token": "a-long-clear-token-0001", "credential": "a"}],
      "headers": {"X-Upstream-Key": "k"}
    }"#;
    write(clear, 0o644);
    let config = Config::load(&path).unwrap();
    let warning = config.exposure_warning(&path).expect("a warning");
    for field in [
        "users[0].token",
        "credentials[1].api_key",
        "credentials[1].proxy",
        "headers.x-upstream-key",
        "chmod 600",
    ] {
        assert!(warning.contains(field), "{field}: {warning}");
    }
    assert!(!warning.contains("sk-ant-api03-secret") && !warning.contains("pw@"));
    write(clear, 0o600);
    assert_eq!(Config::load(&path).unwrap().exposure_warning(&path), None);
    let hashed = format!(
        r#"{{"users": [{{"name": "bob", "token_hash": "{}"}}]}}"#,
        crate::secret::TokenHash::of("x").to_config_string()
    );
    write(&hashed, 0o644);
    assert_eq!(
        Config::load(&path).unwrap().exposure_warning(&path),
        None,
        "hashes are not secrets"
    );
}

/// The field and problem of a rejected config.
fn rejection(text: &str) -> (String, String) {
    match parse(text) {
        Err(ConfigError::Invalid { field, problem, .. }) => (field, problem),
        other => panic!("expected a rejection for {text:?}, got {other:?}"),
    }
}

#[test]
fn config_errors_never_print_a_question_mark_path() {
    // (text, field blamed, words the problem must contain)
    let cases: &[(&str, &str, &str)] = &[
        ("", "(top level)", "empty; write `{}`"),
        ("  // only a comment\n", "(top level)", "empty"),
        (
            "{",
            "(top level)",
            "`}` or `]` is missing (line 1 column 1)",
        ),
        (
            r#"{"listen": "x",}"#,
            "(top level)",
            "comma after the last entry",
        ),
        (
            "{\"listen\": \"x\" // c\n,}",
            "(top level)",
            "comma after the last entry is not allowed in JSON; remove it (line 2 column 2)",
        ),
        (
            r#"{"timeouts": {"idle": "1s",}}"#,
            "timeouts",
            "comma after the last entry",
        ),
        (
            r#"{"users": [{"name": "a",}]}"#,
            "users[0]",
            "comma after the last entry",
        ),
        (
            r#"{"headers": {"x-a": "1",}}"#,
            "headers",
            "comma after the last entry",
        ),
        (
            r#"{"credentials": [{"tag": "a"},]}"#,
            "credentials",
            "(line 1 column 31)",
        ),
        (
            "{1: 2}",
            "(top level)",
            "field name must be in double quotes",
        ),
        (
            r#"{"headers": {"x-a": 1}}"#,
            "headers.x-a",
            "a string or a list of strings",
        ),
        (
            r#"{"headers": {"x-a": [1]}}"#,
            "headers.x-a",
            "a string or a list of strings",
        ),
        (r#"{"headers": {1: "x"}}"#, "headers", "double quotes"),
        (
            r#"{"prices": {"m": 1}}"#,
            "prices.m",
            "an object of prices such as",
        ),
        (
            r#"{"prices": {"m": {"input": "x"}}}"#,
            "prices.m.input",
            "non-negative number",
        ),
        (
            r#"{"prices": {"m": {"input": 1, "output": 1, "cache_read": 0, "cache_write_5m": 0, "cache_write_1h": 0, "fast": 3}}}"#,
            "prices.m.fast",
            "an object of prices",
        ),
        (
            r#"{"prices": {"m": {"input": 1,}}}"#,
            "prices.m",
            "comma after the last entry",
        ),
        (
            "{/* never closed",
            "(top level)",
            "`/*` comment that starts at line 1 column 2 is never closed",
        ),
        (
            "{\"listen\": \"oops}",
            "(top level)",
            "string that starts at line 1 column 12 is never closed",
        ),
        (
            "{\"listen_port\": 1 / 2}",
            "(top level)",
            "`/` that starts no comment",
        ),
        (
            "[]",
            "(top level)",
            "must be a JSON object `{ … }`, not an array",
        ),
        ("\n  7", "(top level)", "not a number (line 2 column 3)"),
        ("null", "(top level)", "not null"),
        (r#"{"users": [7]}"#, "users[0]", "a user: an object such as"),
        (
            r#"{"credentials": [7]}"#,
            "credentials[0]",
            "an account or a pool",
        ),
        (r#"{"timeouts": 7}"#, "timeouts", "an object of durations"),
        // Found by the near-valid property: an empty key read `prices..aliases`.
        (
            r#"{"prices": {"": {"aliases": 1}}}"#,
            "prices.\"\".aliases",
            "a sequence",
        ),
    ];
    for (text, field, words) in cases {
        let (got_field, problem) = rejection(text);
        let message = parse(text).unwrap_err().to_string();
        assert!(!message.contains('?'), "{text:?}: {message}");
        assert!(!message.contains("Raw"), "{text:?}: {message}");
        assert_eq!(&got_field, field, "{text:?}: {message}");
        assert!(problem.contains(words), "{text:?}: {message}");
    }
}

#[test]
fn an_array_is_not_read_as_a_config() {
    // serde reads a struct from an array too, field by field: `["0.0.0.0"]` was a config
    // listening everywhere.
    assert_eq!(rejection("[]").0, "(top level)");
    assert!(parse(r#"["0.0.0.0", 7676]"#).is_err());
}

#[test]
fn text_after_the_config_is_refused() {
    // The first object used to be read and the rest ignored.
    for text in [r#"{} {"listen": "0.0.0.0"}"#, "{}x", "{}\n}"] {
        let (field, problem) = rejection(text);
        assert_eq!(field, "(top level)");
        assert!(problem.contains("after the closing `}`"), "{problem}");
    }
    parse("{}\n// a comment after the end\n").unwrap();
}

#[test]
fn line_numbers_count_the_lines_of_block_comments() {
    let (_, problem) = rejection("{\n/* one\ntwo\nthree */\n\"listen_port\": \"x\"}");
    assert!(problem.ends_with("line 5 column 18"), "{problem}");
}

#[test]
fn a_byte_order_mark_and_hash_comments_are_allowed() {
    let c = parse("\u{FEFF}{\n# a shell-style comment\n\"listen_port\": 9001}").unwrap();
    assert_eq!(c.listen.port(), 9001);
    // Comment markers inside strings are text.
    let c = parse(r#"{"headers": {"x-a": "a // b /* c # d"}}"#).unwrap();
    assert_eq!(c.headers[0].1, "a // b /* c # d");
}

#[test]
fn bindings_list_tags_and_users_even_before_the_first_user() {
    let path = Path::new("/etc/carpool/config.json");
    // A wildcard listener without users is not a valid config yet, but `carpool token`
    // is how its first user is made.
    let b = Bindings::parse(
        r#"{"listen": "0.0.0.0", "credentials": [{"tag": "a"}, {"tag": "k", "type": "api_key", "api_key": "x"},
            {"tag": "team", "type": "balancer", "credentials": ["a", "k"]}]}"#,
        path,
    )
    .unwrap();
    assert_eq!(b.accounts, ["a", "k"]);
    assert_eq!(b.pools, ["team"]);
    assert!(b.users.is_empty());
    let b = Bindings::parse(&format!(r#"{{"users": [{USER}]}}"#), path).unwrap();
    assert_eq!(
        (b.accounts, b.users),
        (vec!["default".to_string()], vec!["me".to_string()])
    );
    // Broken accounts are still errors.
    let err = Bindings::parse(r#"{"credentials": [{"tag": ""}]}"#, path).unwrap_err();
    assert!(err.to_string().contains("credentials[0].tag"), "{err}");
}

#[test]
fn admin_hosts_are_normalised_and_bad_ones_refused() {
    let c = parse("{}").unwrap();
    assert_eq!(c.admin, AdminConfig::default());
    assert!(!c.admin.remote);
    let c = parse(
        r#"{"admin": {"hosts": ["Carpool.Example.LAN.", "fd00::2", "[FD00::2]", "192.0.2.2"], "remote": true}}"#,
    )
    .unwrap();
    assert_eq!(
        c.admin.hosts,
        ["carpool.example.lan", "[fd00::2]", "192.0.2.2"]
    );
    assert!(c.admin.remote);
    for bad in [
        r#""http://carpool.lan""#,
        r#""carpool.lan:7676""#,
        r#""carpool.lan/dashboard""#,
        r#""""#,
    ] {
        let (field, problem) = rejection(&format!(r#"{{"admin": {{"hosts": [{bad}]}}}}"#));
        assert_eq!(field, "admin.hosts[0]", "{bad}");
        assert!(!problem.is_empty());
    }
    assert_eq!(field_of(r#"{"admin": {"remote": "yes"}}"#), "admin.remote");
    assert_eq!(field_of(r#"{"admin": {"host": []}}"#), "admin.host");
}

#[test]
fn tls_needs_a_certificate_and_a_key_resolved_against_the_config_directory() {
    let c = parse(r#"{"tls": {"certificate": "tls/cert.pem", "key": "/abs/key.pem"}}"#).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.certificate, Path::new("/etc/carpool/tls/cert.pem"));
    assert_eq!(tls.key, Path::new("/abs/key.pem"));
    assert!(parse("{}").unwrap().tls.is_none());
    assert_eq!(field_of(r#"{"tls": {"certificate": "c.pem"}}"#), "tls");
    assert_eq!(
        field_of(r#"{"tls": {"certificate": "", "key": "k.pem"}}"#),
        "tls.certificate"
    );
}

#[test]
fn a_user_token_with_the_admin_secrets_prefix_is_refused() {
    let (field, problem) =
        rejection(r#"{"users": [{"name": "me", "token": "cpa-0123456789abcdef0123456789"}]}"#);
    assert_eq!(field, "users[0].token");
    assert!(problem.contains("admin secret"), "{problem}");
}

/// On a Mac, an OAuth account with no `credential_path` reads Claude Code's Keychain item
/// first and the default file after it; with a path, or on any other OS, only the file
/// (docs/protocol.md §1.3). The environment is an argument: nothing here reads or changes
/// the process's own.
#[test]
fn a_claude_code_login_is_looked_for_in_the_keychain_only_on_a_mac_without_a_path() {
    use std::ffi::OsString;
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let home_file = dirs::home_dir()
        .unwrap()
        .join(".claude")
        .join(".credentials.json");
    let alice = env(&[("USER", "alice")]);

    let (path, keychain) = claude_code_login("macos", None, &alice).unwrap();
    assert_eq!(path, home_file, "the fallback file");
    assert_eq!(
        keychain,
        Some(KeychainItem {
            services: vec!["Claude Code-credentials".into()],
            account: "alice".into(),
        })
    );

    let explicit = PathBuf::from("/Users/alice/elsewhere/.credentials.json");
    assert_eq!(
        claude_code_login("macos", Some(explicit.clone()), &alice).unwrap(),
        (explicit.clone(), None),
        "an explicit path is only the file"
    );
    for os in ["linux", "windows", "freebsd"] {
        assert_eq!(
            claude_code_login(os, None, &alice).unwrap(),
            (home_file.clone(), None),
            "{os}"
        );
        assert_eq!(
            claude_code_login(os, Some(explicit.clone()), &alice).unwrap(),
            (explicit.clone(), None)
        );
    }

    let (path, keychain) = claude_code_login(
        "macos",
        None,
        &env(&[
            ("USER", "alice"),
            ("CLAUDE_CONFIG_DIR", "/Users/test/.claude-work"),
        ]),
    )
    .unwrap();
    assert_eq!(
        path,
        Path::new("/Users/test/.claude-work/.credentials.json")
    );
    assert_eq!(
        keychain.unwrap().services,
        [
            "Claude Code-credentials-03abf0ee",
            "Claude Code-credentials"
        ]
    );
    let (path, keychain) = claude_code_login(
        "macos",
        None,
        &env(&[("USER", "alice"), ("CLAUDE_CONFIG_DIR", "")]),
    )
    .unwrap();
    assert_eq!(
        path, home_file,
        "an empty CLAUDE_CONFIG_DIR counts as unset"
    );
    assert_eq!(keychain.unwrap().services, ["Claude Code-credentials"]);

    assert_eq!(
        claude_code_login("macos", None, &env(&[])).unwrap(),
        (home_file, None),
        "no user name, no item to look up: the file"
    );
}

/// The config a process parses picks the source for the OS it runs on: on Linux, the
/// file, as before.
#[cfg(not(target_os = "macos"))]
#[test]
fn off_a_mac_the_default_account_reads_only_the_file() {
    let c = parse("{}").unwrap();
    assert!(matches!(
        &c.credentials[0].source,
        Source::OAuthFile { keychain: None, .. }
    ));
}

/// Codex logins (sing-box's `ocm` type name too) and OpenAI keys are OpenAI accounts with
/// their own default endpoints; users bind one target per provider.
#[test]
fn codex_and_openai_accounts_and_per_provider_bindings() {
    let c = parse(
        r#"{
            "credentials": [
                {"tag": "max", "credential_path": "claude.json"},
                {"tag": "codex", "type": "codex", "credential_path": "codex/auth.json"},
                {"tag": "ocm", "type": "ocm", "credential_path": "/srv/auth.json", "reserve_5h": 20},
                {"tag": "gpt", "type": "openai_api_key", "api_key": "sk-proj-x"},
                {"tag": "chatgpt", "type": "balancer", "credentials": ["codex", "ocm"]}
            ],
            "users": [
                {"name": "both", "token": "0123456789abcdef0123", "credential": ["max", "chatgpt"]},
                {"name": "gpt", "token": "0123456789abcdef0124", "credential": "gpt"}
            ]
        }"#,
    )
    .unwrap();
    let provider = |i: usize| c.credentials[i].provider;
    assert_eq!(provider(0), Provider::Anthropic);
    assert_eq!(provider(1), Provider::OpenAi);
    match &c.credentials[1].source {
        Source::CodexFile { path, token_url } => {
            assert_eq!(path, Path::new("/etc/carpool/codex/auth.json"));
            assert_eq!(token_url, CODEX_TOKEN_URL);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.credentials[1].base_url, CODEX_BASE_URL);
    assert_eq!(c.credentials[2].reserve_5h, Some(20));
    assert_eq!(c.credentials[3].base_url, OPENAI_BASE_URL);
    assert!(matches!(c.credentials[3].source, Source::ApiKey(_)));
    assert_eq!(c.pools[0].provider, Provider::OpenAi);
    let both = &c.users[0].targets;
    assert_eq!(both.anthropic, Some(Target::Account("max".into())));
    assert_eq!(both.openai, Some(Target::Pool("chatgpt".into())));
    assert_eq!(both.to_string(), "max, chatgpt");
    assert_eq!(c.users[1].targets.anthropic, None);
    assert_eq!(
        c.users[1].targets.openai,
        Some(Target::Account("gpt".into()))
    );
    assert_eq!(
        c.anonymous_target(Provider::OpenAi),
        Some(Target::Pool("chatgpt".into()))
    );
    assert!(!format!("{c:?}").contains("sk-proj-x"));
}

#[test]
fn the_codex_login_is_in_codex_home_else_the_home_directory() {
    let home = Some(PathBuf::from("/home/alice"));
    let none = |_: &str| None;
    assert_eq!(
        codex_login_path(&none, home.clone()).unwrap(),
        PathBuf::from("/home/alice/.codex/auth.json")
    );
    let set = |name: &str| (name == "CODEX_HOME").then(|| OsString::from("/srv/codex"));
    assert_eq!(
        codex_login_path(&set, home.clone()).unwrap(),
        PathBuf::from("/srv/codex/auth.json")
    );
    let empty = |_: &str| Some(OsString::new());
    assert_eq!(
        codex_login_path(&empty, home).unwrap(),
        PathBuf::from("/home/alice/.codex/auth.json"),
        "an empty CODEX_HOME is not set"
    );
    assert!(codex_login_path(&none, None).is_err());
}

/// Without `credential`, a user gets each provider's only account; several accounts of
/// one provider, a pool mixing providers, two targets of one provider are refused with the
/// field named.
#[test]
fn provider_bindings_are_checked() {
    let c = parse(&format!(
        r#"{{"credentials": [{{"tag": "max"}}, {{"tag": "codex", "type": "codex"}}], "users": [{USER}]}}"#
    ))
    .unwrap();
    assert_eq!(
        c.users[0].targets.anthropic,
        Some(Target::Account("max".into()))
    );
    assert_eq!(
        c.users[0].targets.openai,
        Some(Target::Account("codex".into()))
    );

    let two_codex = format!(
        r#"{{"credentials": [{{"tag": "max"}}, {{"tag": "c1", "type": "codex"}}, {{"tag": "c2", "type": "codex"}}], "users": [{USER}]}}"#
    );
    assert_eq!(field_of(&two_codex), "users[0].credential");
    let mixed = r#"{"credentials": [{"tag": "max"}, {"tag": "codex", "type": "codex"},
        {"tag": "p", "type": "balancer", "credentials": ["max", "codex"]}]}"#;
    assert_eq!(field_of(mixed), "credentials[2].credentials[1]");
    let twice = r#"{"credentials": [{"tag": "a"}, {"tag": "b"}],
        "users": [{"name": "me", "token": "0123456789abcdef0123", "credential": ["a", "b"]}]}"#;
    assert_eq!(field_of(twice), "users[0].credential[1]");
    let key_on_codex = r#"{"credentials": [{"tag": "c", "type": "codex", "api_key": "sk-x"}]}"#;
    assert_eq!(field_of(key_on_codex), "credentials[0].api_key");
    let no_key = r#"{"credentials": [{"tag": "k", "type": "openai_api_key"}]}"#;
    assert_eq!(field_of(no_key), "credentials[0].api_key");
}

/// A Codex login Carpool stored (`login_ref`), and the Codex login's endpoints.
#[test]
fn a_stored_codex_login_and_the_codex_login_endpoints() {
    let c = parse(
        r#"{
            "credentials": [
                {"tag": "cx", "type": "codex", "login_ref": "file:cx-1234"},
                {"tag": "cy", "type": "codex", "login_ref": "file:cy-1", "token_url": "http://127.0.0.1:9/t"}
            ],
            "users": [{"name": "a", "token": "0123456789abcdef0123", "credential": "cx"}]
        }"#,
    )
    .unwrap();
    assert_eq!(c.credentials[0].provider, Provider::OpenAi);
    assert_eq!(c.credentials[0].base_url, CODEX_BASE_URL);
    match &c.credentials[0].source {
        Source::CodexStored { login, token_url } => {
            assert_eq!(login.to_string(), "file:cx-1234");
            assert_eq!(token_url, CODEX_TOKEN_URL);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &c.credentials[1].source,
        Source::CodexStored { token_url, .. } if token_url == "http://127.0.0.1:9/t"
    ));
    assert_eq!(c.codex_login, CodexLoginEndpoints::codex());
    assert_eq!(c.codex_login.authorize_url, CODEX_AUTHORIZE_URL);

    assert_eq!(
        field_of(
            r#"{"credentials": [{"tag": "cx", "type": "codex", "login_ref": "file:a", "credential_path": "/a.json"}]}"#
        ),
        "credentials[0].login_ref"
    );
    assert_eq!(
        field_of(r#"{"credentials": [{"tag": "cx", "type": "codex", "login_ref": "nope"}]}"#),
        "credentials[0].login_ref"
    );

    let c = parse(
        r#"{"oauth": {"codex": {"authorize_url": "http://127.0.0.1:9/authorize", "token_url": "http://127.0.0.1:9/token"}}}"#,
    )
    .unwrap();
    assert_eq!(c.codex_login.authorize_url, "http://127.0.0.1:9/authorize");
    assert_eq!(c.codex_login.token_url, "http://127.0.0.1:9/token");
    assert_eq!(c.claude_login, LoginEndpoints::claude(), "unchanged");
    assert_eq!(
        field_of(r#"{"oauth": {"codex": {"token_url": "not a url"}}}"#),
        "oauth.codex.token_url"
    );
    assert!(parse(r#"{"oauth": {"codex": {"profile_url": "http://127.0.0.1:9/p"}}}"#).is_err());
}
