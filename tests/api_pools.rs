//! `/api/v1/pools` and `/api/v1/settings` over real HTTP: every endpoint, each change
//! written into the config file (hand-written parts kept byte for byte) and applied, and
//! still there after a restart.

mod common;

use common::{Setup, changed_span};
use reqwest::{Method, StatusCode};
use serde_json::json;

use common::error_message as message;

/// The setup with a second account (an API key) and two extra headers.
async fn setup() -> Setup {
    let mut setup = Setup::new().await;
    let url = setup.mock.url();
    setup.config["credentials"]
        .as_array_mut()
        .unwrap()
        .push(json!(
            {"tag": "key", "type": "api_key", "api_key": "sk-ant-api03-test-0000", "base_url": url}
        ));
    setup.config["users"][1]["credential"] = json!("main");
    setup.config["headers"] = json!({"x-team": "blue", "x-secret-token": "s3cret-value"});
    setup
}

#[tokio::test]
async fn pools_are_created_changed_and_removed_unless_users_are_bound() {
    let setup = setup().await;
    let (path, original) = setup.write_commented_config();
    let api = setup.start_managed_on_file(true).await;

    let (status, pools) = api.call(Method::GET, "/pools", None).await;
    assert_eq!((status, pools), (StatusCode::OK, json!([])));

    let (status, pool) = api.call(Method::POST,
        "/pools",
        Some(json!({"tag": "team", "strategy": "round_robin", "members": ["main", "key"], "session_ttl": "30m"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");
    assert_eq!(pool["strategy"], "round_robin");
    assert_eq!(pool["members"], json!(["main", "key"]));
    assert_eq!(pool["session_ttl"], "30m");
    assert_eq!(pool["poll_interval"], "1m");
    assert_eq!(api.server.engine.state().config.pools.len(), 1, "applied");
    let written = std::fs::read_to_string(&path).unwrap();
    let (old, new) = changed_span(&original, &written);
    assert!(old.len() <= 2, "{old:?}");
    assert!(new.contains("\"team\""), "{new}");

    // Refusals name the request's field.
    for (body, field) in [
        (
            json!({"tag": "team", "strategy": "random", "members": ["main"]}),
            "tag: ",
        ),
        (
            json!({"tag": "main", "strategy": "random", "members": ["main"]}),
            "tag: ",
        ),
        (
            json!({"tag": "p", "strategy": "random", "members": []}),
            "members: ",
        ),
        (
            json!({"tag": "p", "strategy": "random", "members": ["main", "nope"]}),
            "members[1]: ",
        ),
        (
            json!({"tag": "p", "strategy": "random", "members": ["team"]}),
            "members[0]: ",
        ),
        (
            json!({"tag": "p", "strategy": "random", "members": ["main"], "poll_interval": "often"}),
            "poll_interval: ",
        ),
    ] {
        let (status, answer) = api.call(Method::POST, "/pools", Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert!(message(&answer).starts_with(field), "{body} → {answer}");
    }
    let (status, answer) = api
        .call(
            Method::POST,
            "/pools",
            Some(json!({"tag": "p", "strategy": "sometimes", "members": ["main"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(message(&answer).contains("strategy"), "{answer}");

    // Edit.
    let (status, pool) = api
        .call(
            Method::PATCH,
            "/pools/team",
            Some(json!({"strategy": "fallback", "members": ["key", "main"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pool}");
    assert_eq!(pool["strategy"], "fallback");
    assert_eq!(pool["members"], json!(["key", "main"]));
    let (status, _) = api
        .call(
            Method::PATCH,
            "/pools/nope",
            Some(json!({"strategy": "random"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = api
        .call(
            Method::PATCH,
            "/pools/main",
            Some(json!({"strategy": "random"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&answer).contains("is an account"), "{answer}");

    // A user bound to it keeps it.
    let (status, _) = api
        .call(
            Method::PATCH,
            "/users/bob",
            Some(json!({"credential": "team"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, pools) = api.call(Method::GET, "/pools", None).await;
    assert_eq!(pools[0]["users"], json!(["bob"]));
    let (status, answer) = api.call(Method::DELETE, "/pools/team", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(message(&answer).contains("`bob`"), "{answer}");

    // A restart has it all.
    api.server.shutdown().await;
    let api = setup.start_managed_on_file(true).await;
    let (_, pools) = api.call(Method::GET, "/pools", None).await;
    assert_eq!(pools[0]["strategy"], "fallback");
    assert_eq!(pools[0]["users"], json!(["bob"]));

    let (status, _) = api
        .call(
            Method::PATCH,
            "/users/bob",
            Some(json!({"credential": "main"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::DELETE, "/pools/team", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, pools) = api.call(Method::GET, "/pools", None).await;
    assert_eq!(pools, json!([]));
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.starts_with("// Carpool\n/* keep me */\n{\n  // written by hand\n"),
        "{written}"
    );
    api.server.shutdown().await;
}

#[tokio::test]
async fn settings_are_shown_masked_and_changed_live() {
    let setup = setup().await;
    let (path, original) = setup.write_commented_config();
    let api = setup.start_managed_on_file(true).await;

    let (status, settings) = api.call(Method::GET, "/settings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["listen"], "127.0.0.1");
    assert_eq!(settings["max_body_bytes"], 65536);
    assert_eq!(settings["timeouts"]["idle"], "2m");
    assert_eq!(settings["headers"]["x-team"], json!(["blue"]));
    assert_eq!(settings["headers"]["x-secret-token"], json!(["********"]));
    assert!(!settings.to_string().contains("s3cret-value"));
    assert_eq!(settings["config_path"], path.display().to_string());
    assert_eq!(
        settings["database"],
        setup.dir.path().join("usage.db").display().to_string()
    );
    assert_eq!(settings["data_dir"], setup.dir.path().display().to_string());
    assert_eq!(settings["prices"], json!({}));

    let (status, changed) = api.call(Method::PATCH,
        "/settings",
        Some(json!({
            "max_body_bytes": 1000,
            "timeouts": {"idle": "5m"},
            "headers": {"x-team": null, "x-extra": ["a", "b"]},
            "prices": {"house-model": {"input": 1, "output": 2, "cache_read": 0.1, "cache_write_5m": 1.25, "cache_write_1h": 2}},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let mut applied: Vec<&str> = changed["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    applied.sort();
    assert_eq!(applied, ["headers", "max_body_bytes", "prices", "timeouts"]);
    assert_eq!(changed["needs_restart"], json!([]));
    assert_eq!(changed["settings"]["headers"]["x-extra"], json!(["a", "b"]));
    assert_eq!(changed["settings"]["headers"].get("x-team"), None);
    assert_eq!(changed["settings"]["prices"]["house-model"]["input"], 1.0);
    let running = api.server.engine.state();
    assert_eq!(running.config.max_body_bytes, 1000);
    assert_eq!(running.config.timeouts.idle.as_secs(), 300);
    // The hand-written max_body_bytes line changed only in its value.
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.starts_with("// Carpool\n/* keep me */\n{\n  // written by hand\n   \"max_body_bytes\" :   1000 ,  /* odd */\n"), "{written}");
    assert!(written.ends_with("}\n// the end\n"), "{written}");
    // The parts no edit named are as they were: the accounts and users.
    let accounts = &original
        [original.find("\"credentials\"").unwrap()..original.find("\"database\"").unwrap()];
    assert!(written.contains(accounts), "{written}");

    // Invalid values name their field and change nothing.
    for (body, field) in [
        (json!({"max_body_bytes": 0}), "max_body_bytes: "),
        (json!({"timeouts": {"idle": "soon"}}), "timeouts.idle: "),
        (
            json!({"headers": {"authorization": "x"}}),
            "headers.authorization: ",
        ),
        (json!({"headers": {"x-a": 1}}), "headers.x-a: "),
        (json!({"prices": {"m": 3}}), "prices.m: "),
        (json!({"listen": "everywhere"}), "listen: "),
        (json!({"listen_port": 0}), "listen_port: "),
    ] {
        let (status, answer) = api
            .call(Method::PATCH, "/settings", Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert!(message(&answer).starts_with(field), "{body} → {answer}");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);

    // A port change is applied live: the relay moves.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, changed) = api
        .call(
            Method::PATCH,
            "/settings",
            Some(json!({"listen_port": free})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["settings"]["listen_port"], free);
    assert_eq!(changed["applied"], json!(["listen"]));

    api.server.shutdown().await;
    let config = carpool::Config::load(&path).unwrap();
    assert_eq!(config.max_body_bytes, 1000);
    assert_eq!(config.listen.port(), free);
    assert_eq!(config.usage.price_overrides.len(), 1);
}
