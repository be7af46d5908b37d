//! The Codex login that adds an account, against a mock of OpenAI's login
//! (`common::codex_oauth`): through the management API (the dashboard pastes the address
//! the browser was sent to), through `carpool login codex` pasting that address, and
//! through `carpool login codex` catching the redirect on its local port. Each time the
//! tokens go to the secret store as an `auth.json` document, the config gets only
//! `"type": "codex"` and the `login_ref`, no token reaches the output, and the stored login
//! is then refreshed from the secret store and saved back there.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::codex_oauth::{self, CodexOAuth};
use common::{Managed, Setup};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A Setup whose Codex logins go to `oauth` and whose secrets go to files in its data
/// directory (never to the keyring of the machine running the tests).
async fn setup(oauth: &CodexOAuth) -> Setup {
    let mut setup = Setup::new().await;
    setup.config["secret_store"] = json!("file");
    // With several Claude accounts every user names one.
    setup.config["users"][1]["credential"] = json!("main");
    setup.config["oauth"] = json!({"codex": {
        "authorize_url": oauth.authorize_url(),
        "token_url": oauth.token_url(),
    }});
    setup
}

/// Where a new Codex account sends its requests and usage polls: the mock, never
/// chatgpt.com.
fn codex_base(setup: &Setup) -> String {
    format!("{}/backend-api/codex", setup.mock.url())
}

fn secrets_dir(setup: &Setup) -> PathBuf {
    setup.dir.path().join("secrets")
}

/// The stored secrets: file name → content.
fn stored(setup: &Setup) -> Vec<(String, String)> {
    match std::fs::read_dir(secrets_dir(setup)) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The stored login of `reference` (`file:<id>`) as JSON.
fn stored_doc(setup: &Setup, reference: &str) -> Value {
    let path = secrets_dir(setup).join(reference.trim_start_matches("file:"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The config entry of account `tag`, as written.
fn entry(path: &Path, tag: &str) -> Value {
    let config = carpool::Config::load(path).expect("a valid config");
    assert!(config.credentials.iter().any(|c| *c.tag == *tag));
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find(&format!("\"tag\": \"{tag}\"")).unwrap();
    let open = text[..start].rfind('{').unwrap();
    let close = start + text[start..].find('}').unwrap();
    serde_json::from_str(&text[open..=close]).unwrap()
}

/// The login as stored is the `auth.json` Codex writes, with the tokens the mock issued.
fn assert_is_the_issued_login(doc: &Value, oauth: &CodexOAuth) {
    let (access, refresh) = oauth.last_issued().unwrap();
    assert_eq!(doc["auth_mode"], "chatgpt");
    assert_eq!(doc["OPENAI_API_KEY"], Value::Null);
    assert_eq!(doc["tokens"]["access_token"], access.as_str());
    assert_eq!(doc["tokens"]["refresh_token"], refresh.as_str());
    assert_eq!(doc["tokens"]["id_token"], codex_oauth::id_token().as_str());
    assert_eq!(doc["tokens"]["account_id"], codex_oauth::ACCOUNT_ID);
    assert!(doc["last_refresh"].is_string(), "{doc}");
}

/// No token the mock issued appears in `text`.
fn assert_no_tokens(text: &str, oauth: &CodexOAuth) {
    for (access, refresh) in oauth.state.issued.lock().unwrap().iter() {
        assert!(!text.contains(access.as_str()), "an access token leaked");
        assert!(!text.contains(refresh.as_str()), "a refresh token leaked");
    }
}

async fn post(api: &Managed, path: &str, body: Value) -> (StatusCode, Value) {
    let response = api
        .admin(Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn state_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

/// The API's login with `"provider": "codex"`: the authorize URL is OpenAI's (the mock),
/// a paste with another login's state is refused before any exchange, the pasted
/// redirect finishes it, the account is an OpenAI one with the id_token's plan and
/// email, its tokens are in the secret store as an `auth.json` and not in the config;
/// the stored login is then refreshed (its access token is about to expire) and the
/// rotated tokens saved back into the secret store. A login without a provider is still
/// Claude's.
#[tokio::test]
async fn the_api_adds_a_codex_account_from_the_pasted_redirect() {
    let oauth = CodexOAuth::start().await;
    // Five seconds outside the one-minute refresh margin: the new account's checks below
    // run before its timer refreshes it.
    *oauth.state.login_access_secs.lock().unwrap() = 65;
    let setup = setup(&oauth).await;
    let api = setup.start_managed_on_file(true).await;

    let (status, body) = post(
        &api,
        "/accounts/login",
        json!({"tag": "cx", "provider": "chatgpt"}),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, claude) = post(&api, "/accounts/login", json!({"tag": "cl"})).await;
    assert_eq!(status, StatusCode::OK, "{claude}");
    assert!(
        claude["authorize_url"]
            .as_str()
            .unwrap()
            .starts_with("https://claude.ai/oauth/authorize"),
        "{claude}"
    );

    let (status, started) = post(
        &api,
        "/accounts/login",
        json!({"tag": "cx", "provider": "codex", "base_url": codex_base(&setup)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["tag"], "cx");
    let authorize_url = started["authorize_url"].as_str().unwrap();
    assert!(
        authorize_url.starts_with(&oauth.authorize_url()),
        "{authorize_url}"
    );
    let finish = format!("/accounts/login/{}", started["login_id"].as_str().unwrap());

    // The person logs in; the browser is sent to localhost:1455, which nobody serves
    // here: they paste its address.
    let redirect = oauth.log_in(authorize_url).await;
    assert!(
        redirect.starts_with("http://localhost:1455/auth/callback?code="),
        "{redirect}"
    );
    let wrong = redirect.replace(&state_of(&redirect), "someone-elses");
    let (status, body) = post(&api, &finish, json!({"code": wrong})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "login_state_mismatch");
    assert!(oauth.state.exchanges.lock().unwrap().is_empty());

    let (status, account) = post(&api, &finish, json!({"code": redirect})).await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["tag"], "cx");
    assert_eq!(account["provider"], "openai");
    assert_eq!(account["kind"], "oauth");
    assert_eq!(account["plan"], codex_oauth::PLAN);
    assert_eq!(account["email"], codex_oauth::EMAIL);
    assert_eq!(account["secret"]["store"], "data_dir");
    let reference = account["secret"]["reference"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("file:cx-"), "{reference}");
    assert_eq!(oauth.logins(), 1);
    let form = oauth
        .state
        .exchanges
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(form["redirect_uri"], "http://localhost:1455/auth/callback");

    // The config names the stored login, never a token.
    let entry = entry(&setup.config_path(), "cx");
    assert_eq!(entry["type"], "codex");
    assert_eq!(entry["login_ref"], reference.as_str());
    assert_eq!(entry["token_url"], oauth.token_url().as_str());
    assert_eq!(entry["base_url"], codex_base(&setup).as_str());
    let text = std::fs::read_to_string(setup.config_path()).unwrap();
    assert_no_tokens(&text, &oauth);
    assert_is_the_issued_login(&stored_doc(&setup, &reference), &oauth);

    // The access token is about to expire: the account refreshes it from the secret
    // store and saves the rotated tokens back there.
    let (_, login_refresh) = oauth.last_issued().unwrap();
    assert_eq!(oauth.refreshes(), 0, "too early");
    assert!(
        common::eventually(30, || async { oauth.refreshes() >= 1 }).await,
        "the stored login was not refreshed"
    );
    let sent = oauth.state.refresh_bodies.lock().unwrap()[0].clone();
    assert_eq!(sent["refresh_token"], login_refresh.as_str());
    assert!(
        common::eventually(10, || async {
            stored_doc(&setup, &reference)["tokens"]["refresh_token"] == "rt-mock-refreshed-1"
        })
        .await,
        "the rotated tokens were not saved back"
    );
    let doc = stored_doc(&setup, &reference);
    assert_is_the_issued_login(&doc, &oauth);
    let response = api.admin(Method::GET, "/accounts").send().await.unwrap();
    let accounts: Value = response.json().await.unwrap();
    let cx = accounts
        .as_array()
        .or_else(|| accounts["accounts"].as_array())
        .unwrap()
        .iter()
        .find(|a| a["tag"] == "cx")
        .cloned()
        .unwrap();
    assert_eq!(cx["status"]["state"]["state"], "ready", "{cx}");
    assert_eq!(cx["plan"], codex_oauth::PLAN);
    api.server.shutdown().await;
}

/// Reads the child's stdout up to the authorize URL it prints.
fn authorize_url_of(stdout: &mut impl BufRead) -> String {
    loop {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "no URL printed");
        if let Some(url) = line.trim().strip_prefix("http") {
            return format!("http{url}");
        }
    }
}

/// Waits for the child; returns its status, the rest of stdout and stderr.
async fn finish_child(
    mut child: Child,
    mut stdout: BufReader<std::process::ChildStdout>,
) -> (std::process::ExitStatus, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, rest, err)
    })
    .await
    .unwrap()
}

/// `carpool login codex` where it cannot listen on the redirect's port (taken): it says
/// so, reads the pasted address (a wrong one first: it says why and waits for another),
/// stores the login and adds the account; `carpool account list` shows it.
#[tokio::test]
async fn carpool_login_codex_reads_the_pasted_address_when_it_cannot_listen() {
    let oauth = CodexOAuth::start().await;
    let setup = setup(&oauth).await;
    let path = setup.write_config();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let base = codex_base(&setup);
    let mut cmd = common::process::command(setup.dir.path());
    cmd.args([
        "login",
        "codex",
        "--callback-port",
        &port,
        "--base-url",
        &base,
    ])
    .arg("--config")
    .arg(&path)
    .stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let url = authorize_url_of(&mut stdout);
    assert!(url.starts_with(&oauth.authorize_url()), "{url}");

    let redirect = oauth.log_in(&url).await;
    assert!(
        redirect.starts_with(&format!("http://localhost:{port}/auth/callback?")),
        "{redirect}"
    );
    writeln!(stdin, "{}", redirect.replace(&state_of(&redirect), "wrong")).unwrap();
    writeln!(stdin, "{redirect}").unwrap();
    drop(stdin);
    let (status, out, err) = finish_child(child, stdout).await;
    drop(taken);
    assert!(status.success(), "{out}\n{err}");
    assert!(err.contains("Cannot listen on localhost"), "{err}");
    assert!(err.contains("belongs to another login"), "{err}");
    assert!(
        out.contains(&format!(
            "Added account `codex` ({}, {})",
            codex_oauth::EMAIL,
            codex_oauth::PLAN
        )),
        "{out}"
    );
    assert_no_tokens(&out, &oauth);
    assert_no_tokens(&err, &oauth);

    let entry = entry(&path, "codex");
    assert_eq!(entry["type"], "codex");
    let reference = entry["login_ref"].as_str().unwrap();
    assert!(reference.starts_with("file:codex-"), "{reference}");
    assert_no_tokens(&std::fs::read_to_string(&path).unwrap(), &oauth);
    assert_eq!(stored(&setup).len(), 1);
    assert_is_the_issued_login(&stored_doc(&setup, reference), &oauth);

    let mut list = common::process::command(setup.dir.path());
    list.args(["account", "list", "--config"]).arg(&path);
    let listed = list.output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("codex\tcodex login"), "{listed}");
    assert_no_tokens(&listed, &oauth);
}

/// `carpool login codex` catching the browser's redirect on its port: a visit with
/// another login's state gets an error page and the login keeps waiting; the real
/// redirect is exchanged, the account added, and the browser told to close the tab.
#[tokio::test]
async fn carpool_login_codex_catches_the_redirect_on_its_port() {
    let oauth = CodexOAuth::start().await;
    let setup = setup(&oauth).await;
    let path = setup.write_config();
    // A free port for the callback (1455 is the default; it may be busy here).
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().to_string()
    };
    let base = codex_base(&setup);
    let mut cmd = common::process::command(setup.dir.path());
    cmd.args(["login", "codex", "--tag", "desk", "--callback-port", &port])
        .args(["--base-url", &base, "--config"])
        .arg(&path);
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let url = authorize_url_of(&mut stdout);
    let redirect = oauth.log_in(&url).await;
    // What the browser opens, on 127.0.0.1 (tests talk to nothing else).
    let local = redirect.replacen("http://localhost:", "http://127.0.0.1:", 1);
    let browser = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |url: String| {
        let browser = browser.clone();
        async move {
            for _ in 0..200 {
                if let Ok(response) = browser.get(&url).send().await {
                    return response;
                }
                // The listener may not be up yet.
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("nothing listens at {url}");
        }
    };

    let stray = get(local.replace(&state_of(&local), "another-login")).await;
    assert_eq!(stray.status(), StatusCode::BAD_REQUEST);
    let page = stray.text().await.unwrap();
    assert!(page.contains("belongs to another login"), "{page}");
    assert_eq!(oauth.logins(), 0);

    let done = get(local).await;
    assert_eq!(done.status(), StatusCode::OK);
    let page = done.text().await.unwrap();
    assert!(page.contains("You can close this tab"), "{page}");
    assert_no_tokens(&page, &oauth);

    let (status, out, err) = finish_child(child, stdout).await;
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("Added account `desk`"), "{out}");
    assert_no_tokens(&out, &oauth);
    assert_no_tokens(&err, &oauth);
    let entry = entry(&path, "desk");
    assert_eq!(entry["type"], "codex");
    assert_is_the_issued_login(
        &stored_doc(&setup, entry["login_ref"].as_str().unwrap()),
        &oauth,
    );
    // The listener is gone with the command.
    assert!(std::net::TcpListener::bind(format!("127.0.0.1:{port}")).is_ok());
}
