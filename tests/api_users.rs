//! `/api/v1/users` over real HTTP: every endpoint, every change written into the config
//! file (a hand-written comment and odd formatting kept byte for byte) and still there
//! after a restart, tokens refused or accepted from the next request, and the write
//! refused (409) when the file was edited by hand since Carpool last read it.

mod common;

use common::{ALICE_TOKEN, BOB_TOKEN, Managed, Setup, changed_span, client, eventually};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// `POST /v1/messages` with `token`; the status.
async fn relay_status(api: &Managed, token: &str) -> StatusCode {
    client()
        .post(format!("{}/v1/messages", api.server.url()))
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .json(&common::message_body(false))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn users_are_listed_created_rotated_renamed_rebound_and_revoked() {
    let setup = Setup::new().await;
    let (path, original) = setup.write_commented_config();
    let api = setup.start_managed_on_file(true).await;

    // The list: never a token or a hash.
    let (status, users) = api.call(Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users[0]["name"], "alice");
    assert_eq!(users[0]["token_storage"], "clear");
    assert_eq!(users[1]["name"], "bob");
    assert_eq!(users[1]["token_storage"], "hashed");
    assert_eq!(users[1]["credential"], "main");
    assert_eq!(users[1]["credential_kind"], "account");
    assert!(!users.to_string().contains(ALICE_TOKEN) && !users.to_string().contains("sha256:"));

    // A new user: the token once, the setup at the address the request came to, and only
    // the hash in the file, appended with every other byte of it as it was.
    let (status, created) = api
        .call(Method::POST, "/users", Some(json!({"name": "carol"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cpk-"));
    assert_eq!(created["user"]["credential"], "main", "the only account");
    assert_eq!(created["setup"]["base_url"], api.server.url());
    assert!(
        created["setup"]["shell"]
            .as_str()
            .unwrap()
            .contains(&format!("ANTHROPIC_AUTH_TOKEN={token}"))
    );
    assert!(
        created["setup"]["python"]
            .as_str()
            .unwrap()
            .contains(&token)
    );
    assert!(
        created["setup"]["typescript"]
            .as_str()
            .unwrap()
            .contains(&token)
    );
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains(&token));
    let (old, new) = changed_span(&original, &written);
    assert!(
        old.len() <= 2,
        "only the end of bob's entry may change: {old:?}"
    );
    assert!(
        new.contains("\"carol\"")
            && new.contains(&carpool::auth::TokenHash::of(&token).to_config_string()),
        "{new}"
    );
    assert_eq!(relay_status(&api, &token).await, StatusCode::OK);

    // Rotate: the old token is refused from the next request, the new one accepted.
    let (status, rotated) = api.call(Method::POST, "/users/carol/rotate", None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let rotated = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, token);
    assert_eq!(relay_status(&api, &token).await, StatusCode::FORBIDDEN);
    assert_eq!(relay_status(&api, &rotated).await, StatusCode::OK);

    // Rename and rebind; refusals name the field.
    let (status, renamed) = api
        .call(
            Method::PATCH,
            "/users/carol",
            Some(json!({"name": "caroline"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "caroline");
    let (status, body) = api
        .call(
            Method::PATCH,
            "/users/caroline",
            Some(json!({"credential": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("credential: "),
        "{body}"
    );
    let (status, _) = api
        .call(
            Method::PATCH,
            "/users/nobody",
            Some(json!({"credential": "main"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .call(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already has a user `bob`"),
        "{body}"
    );
    let (status, _) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"name": "x", "token": "mine"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );
    let (status, _) = api.call(Method::POST, "/users/nobody/rotate", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.starts_with("// Carpool\n/* keep me */\n{\n  // written by hand\n   \"max_body_bytes\" :   65536 ,  /* odd */\n"), "{written}");
    assert!(written.ends_with("}\n// the end\n"));

    // A restart reads it all back from the file.
    api.server.shutdown().await;
    let api = setup.start_managed_on_file(true).await;
    let (_, users) = api.call(Method::GET, "/users", None).await;
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "caroline"]);
    assert_eq!(users[2]["token_storage"], "hashed");
    assert_eq!(relay_status(&api, &rotated).await, StatusCode::OK);
    // This month's usage comes from the ledger.
    assert_eq!(relay_status(&api, BOB_TOKEN).await, StatusCode::OK);
    let counted = eventually(5, || async {
        let (_, users) = api.call(Method::GET, "/users", None).await;
        users[1]["this_month"]["requests"] == 1
    })
    .await;
    assert!(counted, "bob's request is counted in the list");

    // Revoke: refused from the next request, and gone from the file.
    let (status, _) = api.call(Method::DELETE, "/users/caroline", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(relay_status(&api, &rotated).await, StatusCode::FORBIDDEN);
    let (status, _) = api.call(Method::DELETE, "/users/caroline", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.server.shutdown().await;
    let config = carpool::Config::load(&path).unwrap();
    assert_eq!(config.users.len(), 2);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("/* keep me */")
    );
}

/// With a Claude account and an OpenAI key, a user is bound to one target per provider
/// (`credentials`), shown in `bindings`; `credential` rebinds one provider only; the
/// new token's setup has Codex's and the OpenAI SDKs' snippets; pools show their provider.
#[tokio::test]
async fn users_are_bound_per_provider_and_get_the_codex_setup() {
    let mut setup = Setup::new().await;
    let mock = setup.mock.url();
    setup.config["credentials"].as_array_mut().unwrap().extend([
        json!({"tag": "gpt", "type": "openai_api_key", "api_key": "sk-test-key", "base_url": mock}),
        json!({"tag": "gpt-pool", "type": "balancer", "credentials": ["gpt"]}),
    ]);
    // With an OpenAI pool, a user without `credential` would be ambiguous.
    setup.config["users"][1]["credential"] = json!("main");
    let (path, _) = setup.write_commented_config();
    let api = setup.start_managed_on_file(true).await;

    let (status, created) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"name": "dana", "credentials": ["gpt-pool", "main"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        created["user"]["bindings"],
        json!([
            {"provider": "anthropic", "credential": "main", "credential_kind": "account"},
            {"provider": "openai", "credential": "gpt-pool", "credential_kind": "pool"},
        ])
    );
    assert_eq!(created["user"]["credential"], "main");
    let codex = created["setup"]["codex_config"].as_str().unwrap();
    assert!(
        codex.contains(&format!("base_url = \"{}/v1\"", api.server.url())),
        "{codex}"
    );
    assert!(codex.contains("wire_api = \"responses\""));
    assert_eq!(
        created["setup"]["codex_shell"],
        format!("export CARPOOL_TOKEN={token}\n")
    );
    assert!(
        created["setup"]["openai_python"]
            .as_str()
            .unwrap()
            .contains(&token)
    );
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains(r#""credential": ["main", "gpt-pool"]"#),
        "{written}"
    );

    // `credential` rebinds its provider only; `credentials` sets exactly the list.
    let (status, user) = api
        .call(
            Method::PATCH,
            "/users/dana",
            Some(json!({"credential": "gpt"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["bindings"][0]["credential"], "main");
    assert_eq!(user["bindings"][1]["credential"], "gpt");
    let (status, user) = api
        .call(
            Method::PATCH,
            "/users/dana",
            Some(json!({"credentials": ["gpt-pool"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(
        user["bindings"],
        json!([{"provider": "openai", "credential": "gpt-pool", "credential_kind": "pool"}])
    );
    assert_eq!(user["credential"], "gpt-pool");

    // Refusals name the field.
    for (body, field) in [
        (
            json!({"credentials": ["gpt", "gpt-pool"]}),
            "credentials[1]: ",
        ),
        (json!({"credentials": []}), "credentials: "),
        (json!({"credentials": ["nope"]}), "credentials[0]: "),
        (
            json!({"credential": "gpt", "credentials": ["gpt"]}),
            "credentials: ",
        ),
    ] {
        let (status, answer) = api
            .call(Method::PATCH, "/users/dana", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let (status, answer) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"name": "eve", "credentials": ["main", "main"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    let (_, pools) = api.call(Method::GET, "/pools", None).await;
    assert_eq!(pools[0]["tag"], "gpt-pool");
    assert_eq!(pools[0]["provider"], "openai");
    let (_, accounts) = api.call(Method::GET, "/accounts", None).await;
    assert_eq!(accounts[0]["provider"], "anthropic");
    assert_eq!(accounts[1]["provider"], "openai");
    assert!(!accounts.to_string().contains("sk-test-key"));
    api.server.shutdown().await;
}

#[tokio::test]
async fn a_write_after_a_hand_edit_carpool_has_not_read_is_refused_with_409() {
    let setup = Setup::new().await;
    let (path, original) = setup.write_commented_config();
    // No watcher: the hand edit below is never read.
    let api = setup.start_managed_on_file(false).await;
    let hand = original.replace("// the end", "// edited by hand");
    std::fs::write(&path, &hand).unwrap();
    let (status, body) = api
        .call(Method::POST, "/users", Some(json!({"name": "carol"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("changed on disk since Carpool last read it"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        hand,
        "the hand edit is kept"
    );
    let (_, users) = api.call(Method::GET, "/users", None).await;
    assert_eq!(users.as_array().unwrap().len(), 2);
    api.server.shutdown().await;
}

#[tokio::test]
async fn once_the_watcher_has_read_a_hand_edit_a_write_builds_on_it() {
    let setup = Setup::new().await;
    let (path, original) = setup.write_commented_config();
    let api = setup.start_managed_on_file(true).await;
    let hand = original
        .replace("// the end", "// edited by hand")
        .replace("65536", "12345");
    std::fs::write(&path, &hand).unwrap();
    let engine = api.server.engine.clone();
    assert!(
        eventually(5, || async {
            engine.state().config.max_body_bytes == 12345
        })
        .await
    );
    let (status, body) = api
        .call(Method::POST, "/users", Some(json!({"name": "carol"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains("// edited by hand")
            && written.contains("12345")
            && written.contains("carol")
    );
    api.server.shutdown().await;
}

#[tokio::test]
async fn without_a_config_file_writes_are_unavailable() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let (status, body) = api
        .call(Method::POST, "/users", Some(json!({"name": "carol"})))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without a config file"),
        "{body}"
    );
    // Reading still works.
    let (status, _) = api.call(Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::OK);
    api.server.shutdown().await;
}
