//! `/accounts` over real HTTP: the Claude login against a mock authorize/token/profile
//! server, API-key and credentials-file accounts, reserves applied live, removal refused
//! while in use, secrets kept out of the config, everything read back after a restart,
//! and `carpool login claude` / `carpool account` from a terminal.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Managed, Setup};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A Setup whose logins go to its mock and whose secrets go to files in its data
/// directory (never to the keyring of the machine running the tests).
async fn setup() -> Setup {
    let mut setup = Setup::new().await;
    let mock = setup.mock.clone();
    setup.config["secret_store"] = json!("file");
    // With several accounts every user names one.
    setup.config["users"][1]["credential"] = json!("main");
    setup.config["oauth"] = json!({"claude": {
        "authorize_url": mock.authorize_url(),
        "token_url": mock.token_url(),
        "profile_url": mock.profile_url(),
    }});
    setup
}

fn secrets_dir(setup: &Setup) -> PathBuf {
    setup.dir.path().join("secrets")
}

/// The stored secrets' contents.
fn stored(setup: &Setup) -> Vec<String> {
    match std::fs::read_dir(secrets_dir(setup)) {
        Ok(entries) => entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn config_text(setup: &Setup) -> String {
    std::fs::read_to_string(setup.config_path()).unwrap()
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn post(api: &Managed, path: &str, body: Value) -> (StatusCode, Value) {
    json_of(
        api.admin(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Binds user `bob` to `credential` by editing the file by hand, and waits until the
/// running Carpool has applied it.
async fn bind_bob_by_hand(setup: &Setup, api: &Managed, credential: &str) {
    let mut doc: Value = serde_json::from_str(&config_text(setup)).unwrap();
    let bob = doc["users"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|u| u["name"] == "bob")
        .unwrap();
    bob["credential"] = json!(credential);
    std::fs::write(
        setup.config_path(),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
    for _ in 0..200 {
        let state = api.server.engine.state();
        let user = state
            .config
            .users
            .iter()
            .find(|u| *u.name == *"bob")
            .unwrap();
        if user.targets.names(credential) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the hand edit was not applied");
}

async fn ask_as_bob(base_url: &str) -> reqwest::Response {
    common::client()
        .post(format!("{base_url}/v1/messages"))
        .header("authorization", format!("Bearer {}", common::BOB_TOKEN))
        .header("anthropic-version", "2023-06-01")
        .json(&common::message_body(false))
        .send()
        .await
        .unwrap()
}

fn last_bearer(setup: &Setup) -> String {
    let requests = setup.mock.requests();
    let last = requests
        .iter()
        .rev()
        .find(|r| r.uri.starts_with("/v1/messages"))
        .unwrap();
    last.headers["authorization"].to_str().unwrap().to_owned()
}

/// The Claude login from start to a relayed request: the state and the code are
/// checked, the tokens go to the secret store (not the config), the profile gives the
/// email and plan, the account serves requests with the obtained access token,
/// refreshes with the obtained refresh token (the rotated one saved back), and all of it
/// is read back after a restart.
#[tokio::test]
async fn a_claude_login_adds_an_account_that_relays_refreshes_and_survives_a_restart() {
    let setup = setup().await;
    let api = setup.start_managed_on_file(true).await;

    // A login that could not be added is refused before it starts.
    let (status, body) = post(&api, "/accounts/login", json!({"tag": "main"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = post(
        &api,
        "/accounts/login",
        json!({"tag": "x", "proxy": "ftp://nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, started) = post(
        &api,
        "/accounts/login",
        json!({"tag": "mine", "base_url": setup.mock.url()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let login_id = started["login_id"].as_str().unwrap();
    let authorize_url = started["authorize_url"].as_str().unwrap();
    assert!(
        authorize_url.starts_with(&setup.mock.authorize_url()),
        "{authorize_url}"
    );
    assert!(started["expires_at"].as_i64().unwrap() > 0);
    let state = reqwest::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();

    // A code with another login's state is refused before anything is exchanged.
    let finish = format!("/accounts/login/{login_id}");
    let (status, body) = post(&api, &finish, json!({"code": "mock-code-1#someone-elses"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "login_state_mismatch");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("state"),
        "{body}"
    );
    assert_eq!(
        setup
            .mock
            .state
            .logins
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // A code the provider never issued is refused by it, with what to do.
    let (status, body) = post(
        &api,
        &finish,
        json!({"code": format!("not-a-code#{state}")}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "login_code_refused");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("authorize URL again"), "{message}");

    // An unknown login.
    let (status, body) = post(&api, "/accounts/login/nope", json!({"code": "x#y"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "login_not_found");

    // The person logs in and pastes what the page shows: `<code>#<state>`.
    let pasted = setup.mock.log_in(authorize_url).await;
    let (status, account) = post(&api, &finish, json!({"code": pasted})).await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["tag"], "mine");
    assert_eq!(account["kind"], "oauth");
    assert_eq!(account["email"], "login@example.com");
    assert_eq!(account["plan"], "max");
    assert_eq!(account["secret"]["store"], "data_dir");
    assert_eq!(account["status"]["state"]["state"], "ready");
    let reference = account["secret"]["reference"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("file:mine-"), "{reference}");
    // The login is used once.
    let (status, _) = post(&api, &finish, json!({"code": pasted})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The tokens are in the secret store, the config has only the reference.
    let (access, refresh) = setup.mock.last_issued().unwrap();
    let text = config_text(&setup);
    assert!(text.contains(&reference), "{text}");
    assert!(
        !text.contains(&access) && !text.contains(&refresh),
        "{text}"
    );
    let secret_file = secrets_dir(&setup).join(reference.trim_start_matches("file:"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&secret_file).unwrap()).unwrap();
    assert_eq!(doc["claudeAiOauth"]["accessToken"], access.as_str());
    assert_eq!(doc["claudeAiOauth"]["refreshToken"], refresh.as_str());
    assert_eq!(doc["oauthAccount"]["emailAddress"], "login@example.com");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The account serves a request with the obtained access token.
    bind_bob_by_hand(&setup, &api, "mine").await;
    let base = api.server.url();
    let response = ask_as_bob(&base).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(last_bearer(&setup), format!("Bearer {access}"));

    // The upstream stops taking that token: Carpool refreshes with the obtained refresh
    // token, and saves the rotated tokens back into the secret store.
    setup.mock.set_valid_access("sk-ant-oat01-not-this-one");
    let refreshes = setup.mock.refreshes();
    let response = ask_as_bob(&base).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(setup.mock.refreshes(), refreshes + 1);
    let bodies = setup.mock.state.refresh_bodies.lock().unwrap().clone();
    assert_eq!(bodies.last().unwrap()["refresh_token"], refresh.as_str());
    let (new_access, new_refresh) = setup.mock.last_issued().unwrap();
    assert_eq!(last_bearer(&setup), format!("Bearer {new_access}"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&secret_file).unwrap()).unwrap();
    assert_eq!(doc["claudeAiOauth"]["refreshToken"], new_refresh.as_str());
    assert_eq!(doc["oauthAccount"]["emailAddress"], "login@example.com");
    api.server.shutdown().await;

    // After a restart the account comes back from the config and the store.
    let config = carpool::Config::load(&setup.config_path()).unwrap();
    let server = carpool::Server::bind(config).await.unwrap().spawn();
    let response = ask_as_bob(&server.url()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(last_bearer(&setup), format!("Bearer {new_access}"));
    server.shutdown().await;
}

/// An API key pasted into the API goes to the secret store; the config gets a
/// reference; the relay sends the key; removing the account deletes it. Refused adds
/// leave nothing stored.
#[tokio::test]
async fn an_api_key_is_kept_out_of_the_config_and_removal_waits_until_nobody_uses_it() {
    let setup = setup().await;
    let api = setup.start_managed_on_file(true).await;
    const KEY: &str = "sk-ant-api03-test-key-0000000000000001";

    // Refused: a taken tag, both sources, a config the key would not make valid.
    let (status, body) = post(&api, "/accounts", json!({"tag": "main", "api_key": KEY})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("main"));
    let (status, _) = post(
        &api,
        "/accounts",
        json!({"tag": "x", "api_key": KEY, "credential_path": "/x"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = post(
        &api,
        "/accounts",
        json!({"tag": "x", "api_key": KEY, "proxy": "ftp://nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("proxy"),
        "{body}"
    );
    assert!(
        stored(&setup).is_empty(),
        "a refused add leaves no secret behind"
    );
    assert!(!body.to_string().contains(KEY));

    let (status, account) = post(
        &api,
        "/accounts",
        json!({"tag": "spare", "api_key": KEY, "base_url": setup.mock.url(),
               "proxy": "http://me:hunter2@127.0.0.1:9"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["kind"], "api_key");
    assert_eq!(account["secret"]["store"], "data_dir");
    assert_eq!(account["proxy"], "http://me:***@127.0.0.1:9");
    assert!(!account.to_string().contains(KEY));
    assert!(!account.to_string().contains("hunter2"));
    assert!(!config_text(&setup).contains(KEY));
    assert_eq!(stored(&setup), [KEY]);

    // The proxy was only to be shown masked; the relay goes straight to the mock.
    let response = api
        .admin(Method::PATCH, "/accounts/spare")
        .json(&json!({"proxy": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The relay sends the stored key.
    bind_bob_by_hand(&setup, &api, "spare").await;
    setup.mock.set_valid_access(KEY);
    let response = ask_as_bob(&api.server.url()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let requests = setup.mock.requests();
    let last = requests.last().unwrap();
    assert_eq!(last.headers["x-api-key"], KEY);

    // In use by bob: refused, naming him; the file and the store are untouched.
    let before = config_text(&setup);
    let response = api
        .admin(Method::DELETE, "/accounts/spare")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`bob`"),
        "{body}"
    );
    assert_eq!(config_text(&setup), before);
    assert_eq!(stored(&setup), [KEY]);

    bind_bob_by_hand(&setup, &api, "main").await;
    let response = api
        .admin(Method::DELETE, "/accounts/spare")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(stored(&setup).is_empty(), "its key was deleted");
    let (_, accounts) = json_of(api.admin(Method::GET, "/accounts").send().await.unwrap()).await;
    let tags: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["main"]);
    assert!(api.server.engine.state().pool.account("spare").is_none());
    api.server.shutdown().await;
}

/// An account from a credentials file, and reserves changed live: the status shows
/// them at once, and after a restart.
#[tokio::test]
async fn a_credentials_file_account_and_reserves_applied_live() {
    let setup = setup().await;
    let second = setup.dir.path().join("second.json");
    common::write_credentials(
        &second,
        common::ACCESS,
        common::REFRESH,
        common::now_ms() + 8 * common::HOUR_MS,
    );
    let api = setup.start_managed_on_file(true).await;
    let (status, account) = post(
        &api,
        "/accounts",
        json!({"tag": "second", "credential_path": second, "base_url": setup.mock.url()}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["secret"]["store"], "credentials_file");
    assert_eq!(account["secret"]["location"], second.display().to_string());
    assert_eq!(account["plan"], "max");
    assert_eq!(account["status"]["state"]["state"], "ready");

    let response = api
        .admin(Method::PATCH, "/accounts/main")
        .json(&json!({"reserve_5h": 30, "reserve_weekly": 10}))
        .send()
        .await
        .unwrap();
    let (status, account) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["reserve_5h"], 30);
    assert_eq!(account["status"]["five_hour"]["reserve"], 30);
    let (_, status_now) = json_of(api.admin(Method::GET, "/status").send().await.unwrap()).await;
    let main = status_now["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["tag"] == "main")
        .unwrap();
    assert_eq!(main["five_hour"]["reserve"], 30);
    assert_eq!(main["weekly"]["reserve"], 10);

    let response = api
        .admin(Method::PATCH, "/accounts/main")
        .json(&json!({"reserve_5h": 150}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reserve_5h"),
        "{body}"
    );
    let response = api
        .admin(Method::PATCH, "/accounts/nope")
        .json(&json!({"reserve_5h": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // alice uses `main`: it cannot go.
    let (status, body) = json_of(
        api.admin(Method::DELETE, "/accounts/main")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`alice`"),
        "{body}"
    );
    api.server.shutdown().await;

    // Read back after a restart.
    let config = carpool::Config::load(&setup.config_path()).unwrap();
    let main = config
        .credentials
        .iter()
        .find(|c| *c.tag == *"main")
        .unwrap();
    assert_eq!((main.reserve_5h, main.reserve_weekly), (Some(30), Some(10)));
    assert!(config.credentials.iter().any(|c| *c.tag == *"second"));
}

fn write_cli_config(setup: &Setup) -> PathBuf {
    let path = setup.write_config();
    // A hand-written comment, to see the CLI keeps it.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("// mine, keep me\n{text}")).unwrap();
    path
}

/// `carpool login claude` in a terminal: prints the address, reads the code from
/// stdin, stores the login and adds the account; then `carpool account list` shows it
/// and `remove` takes it out again with its stored login.
#[tokio::test]
async fn carpool_login_claude_reads_the_code_from_stdin() {
    let setup = setup().await;
    let path = write_cli_config(&setup);
    let mut cmd = common::process::command(setup.dir.path());
    cmd.args(["login", "claude", "--tag", "cli", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "no URL printed");
        if let Some(url) = line.trim().strip_prefix("http") {
            break format!("http{url}");
        }
    };
    assert!(url.starts_with(&setup.mock.authorize_url()), "{url}");

    // A wrong paste first: it says so and waits for another.
    writeln!(stdin, "mock-code-7#wrong-state").unwrap();
    let pasted = setup.mock.log_in(&url).await;
    writeln!(stdin, "{pasted}").unwrap();
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, rest, err)
    })
    .await
    .unwrap();
    let (status, out, err) = output;
    assert!(status.success(), "{out}\n{err}");
    assert!(err.contains("belongs to another login"), "{err}");
    assert!(
        out.contains("Added account `cli` (login@example.com, max)"),
        "{out}"
    );
    let (access, refresh) = setup.mock.last_issued().unwrap();
    assert!(!out.contains(&access) && !err.contains(&access));

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("// mine, keep me\n"), "{text}");
    assert!(text.contains("\"login_ref\": \"file:cli-"), "{text}");
    assert!(
        text.contains(&setup.mock.token_url()),
        "refreshes at the mock: {text}"
    );
    assert!(!text.contains(&access) && !text.contains(&refresh));
    let stored = stored(&setup);
    assert_eq!(stored.len(), 1);
    assert!(stored[0].contains(&refresh));
    carpool::Config::load(&path).expect("still a valid config");

    let list = cli(&setup, &["account", "list", "--config"], &path, "");
    assert!(list.contains("cli\tclaude login"), "{list}");
    assert!(list.contains("secrets/cli-"), "{list}");
    let removed = cli(&setup, &["account", "remove", "cli", "--config"], &path, "");
    assert!(removed.contains("Removed account `cli`"), "{removed}");
    assert!(self::stored(&setup).is_empty());
}

/// `carpool account add --api-key-stdin` and `--credential-path`.
#[tokio::test]
async fn carpool_account_add_keeps_keys_out_of_the_config() {
    let setup = setup().await;
    let path = write_cli_config(&setup);
    const KEY: &str = "sk-ant-api03-cli-key-0000000000000002";
    let out = cli(
        &setup,
        &[
            "account",
            "add",
            "--tag",
            "k",
            "--api-key-stdin",
            "--config",
        ],
        &path,
        &format!("{KEY}\n"),
    );
    assert!(out.contains("Added account `k`"), "{out}");
    assert!(!std::fs::read_to_string(&path).unwrap().contains(KEY));
    assert_eq!(stored(&setup), [KEY]);
    let path_text = path.display().to_string();
    let args = [
        "account",
        "add",
        "--tag",
        "f",
        "--config",
        &path_text,
        "--credential-path",
    ];
    let out = cli(&setup, &args, &setup.cred_path, "");
    assert!(out.contains("Added account `f`"), "{out}");
    let config = carpool::Config::load(&path).unwrap();
    let tags: Vec<&str> = config.credentials.iter().map(|c| c.tag.as_str()).collect();
    assert_eq!(tags, ["main", "k", "f"]);
}

/// Runs `carpool ARGS PATH` with `input` on stdin; returns stdout (empty on failure).
fn cli(setup: &Setup, args: &[&str], path: &Path, input: &str) -> String {
    let mut cmd = common::process::command(setup.dir.path());
    cmd.args(args).arg(path).stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        String::from_utf8(output.stdout).unwrap()
    } else {
        String::new()
    }
}

/// `provider: "openai"` adds an OpenAI key (`openai_api_key`) or a Codex `auth.json`
/// (`codex`); the key stays out of the config, and the accounts show their provider.
#[tokio::test]
async fn openai_keys_and_codex_files_are_added_as_openai_accounts() {
    let setup = setup().await;
    let api = setup.start_managed_on_file(true).await;
    let key = "sk-proj-api-added-key-0001";
    let (status, account) = post(
        &api,
        "/accounts",
        json!({"tag": "gpt", "api_key": key, "provider": "openai", "base_url": "http://127.0.0.1:9/v1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["provider"], "openai");
    assert_eq!(account["kind"], "api_key");
    let text = config_text(&setup);
    assert!(text.contains("\"openai_api_key\""), "{text}");
    assert!(!text.contains(key));
    assert_eq!(stored(&setup), [key]);

    let auth = setup.dir.path().join("auth.json");
    let (status, account) = post(
        &api,
        "/accounts",
        json!({"tag": "codex", "credential_path": auth, "provider": "openai"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["provider"], "openai");
    assert_eq!(account["kind"], "oauth");
    assert!(config_text(&setup).contains("\"codex\""));
    let (status, claude) = post(
        &api,
        "/accounts",
        json!({"tag": "console", "api_key": "sk-ant-x"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{claude}");
    assert_eq!(claude["provider"], "anthropic");
}
