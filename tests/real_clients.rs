//! Real clients against Carpool: the official Python SDK and the Claude Code CLI, each
//! pointed at an in-process Carpool in front of the mock upstream.
//!
//! The clients are installed by `scripts/test.sh`, which passes their paths in
//! `CARPOOL_TEST_PYTHON` and `CARPOOL_TEST_CLAUDE`. Without them a test prints a
//! "skipped" line and passes, unless `CARPOOL_REQUIRE_REAL_CLIENTS=1` (as the script
//! sets), when a missing client is a failure.
//!
//! Nothing here reaches the network: every base URL is Carpool on 127.0.0.1, and Claude
//! Code runs with its non-essential traffic, telemetry and updater switched off.

mod common;

use std::path::Path;
use std::time::Duration;

use common::clients::{self, client_from_env, manifest_dir, run, text};
use common::*;
use serde_json::Value;

/// Env vars of the developer's shell that would steer a client elsewhere.
const SCRUBBED: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CONFIG_DIR",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CONFIG_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// One line per request the mock saw, for failure messages.
fn describe(requests: &[Recorded]) -> String {
    requests
        .iter()
        .map(|r| {
            let header = |name: &str| {
                r.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            format!(
                "  {} {} anthropic-version={} anthropic-beta={} user-agent={}",
                r.method,
                r.uri,
                header("anthropic-version"),
                header("anthropic-beta"),
                header("user-agent")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every request reached the upstream with the account's token and nothing of Alice's.
fn assert_account_token_only(requests: &[Recorded]) {
    for r in requests {
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {ACCESS}").as_str()),
            "{} {} must carry the account's access token",
            r.method,
            r.uri
        );
        for (name, value) in &r.headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(ALICE_TOKEN),
                "the Carpool token leaked upstream in header {name} of {} {}",
                r.method,
                r.uri
            );
        }
        assert!(
            !String::from_utf8_lossy(&r.body).contains(ALICE_TOKEN),
            "the Carpool token leaked upstream in the body of {} {}",
            r.method,
            r.uri
        );
    }
}

fn body_json(r: &Recorded) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn is_messages(r: &Recorded) -> bool {
    r.method == "POST" && (r.uri == "/v1/messages" || r.uri.starts_with("/v1/messages?"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_create_stream_and_count_tokens_through_carpool() {
    let Some(python) = client_from_env("CARPOOL_TEST_PYTHON", "the Python anthropic SDK") else {
        return;
    };
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let home = tempfile::tempdir().unwrap();

    let mut cmd = clients::command(&python, SCRUBBED);
    cmd.arg(manifest_dir().join("tests/clients/anthropic_sdk.py"))
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("ANTHROPIC_CONFIG_DIR", home.path().join(".anthropic"))
        .env("ANTHROPIC_BASE_URL", carpool.url())
        .env("ANTHROPIC_API_KEY", ALICE_TOKEN)
        .env("CARPOOL_EXPECT_TEXT", mock::MOCK_REPLY_TEXT)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = run(cmd, Duration::from_secs(60), "the Python SDK script").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let seen = setup.mock.requests();
    let context = format!(
        "--- stdout\n{stdout}--- stderr\n{stderr}--- the mock saw\n{}",
        describe(&seen)
    );
    assert!(output.status.success(), "the SDK script failed\n{context}");

    let reply = mock::MOCK_REPLY_TEXT;
    let (input, output_tokens) = (mock::INPUT_TOKENS, mock::OUTPUT_TOKENS);
    for line in [
        format!("create: text='{reply}' input_tokens={input} output_tokens={output_tokens}"),
        format!("stream: text='{reply}' input_tokens={input} output_tokens={output_tokens}"),
        "count_tokens: input_tokens=42".to_owned(),
        "all three calls passed".to_owned(),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing line {line:?}\n{context}"
        );
    }

    assert_eq!(seen.len(), 3, "exactly three requests upstream\n{context}");
    assert!(is_messages(&seen[0]), "{context}");
    assert_ne!(body_json(&seen[0])["stream"], true, "{context}");
    assert!(is_messages(&seen[1]), "{context}");
    assert_eq!(body_json(&seen[1])["stream"], true, "{context}");
    assert_eq!(seen[2].method, "POST", "{context}");
    assert!(
        seen[2].uri.starts_with("/v1/messages/count_tokens"),
        "{context}"
    );
    assert_account_token_only(&seen);
    carpool.shutdown().await;
}

/// The SDK over HTTPS: Carpool serving TLS itself (`tls`) with a throwaway certificate,
/// whose CA the SDK is given in `SSL_CERT_FILE` (httpx reads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_https_through_carpool() {
    let Some(python) = client_from_env("CARPOOL_TEST_PYTHON", "the Python anthropic SDK") else {
        return;
    };
    let mut setup = Setup::new().await;
    let certs = tls::TestCerts::generate();
    let (certificate, key) = certs.write_pem(setup.dir.path());
    let ca_file = setup.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &certs.ca_pem).unwrap();
    setup.config["tls"] = serde_json::json!({"certificate": certificate, "key": key});
    let carpool = setup.start().await;
    assert!(
        carpool.url().starts_with("https://127.0.0.1:"),
        "{}",
        carpool.url()
    );
    let home = tempfile::tempdir().unwrap();

    let mut cmd = clients::command(&python, SCRUBBED);
    cmd.arg(manifest_dir().join("tests/clients/anthropic_sdk.py"))
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("ANTHROPIC_CONFIG_DIR", home.path().join(".anthropic"))
        .env("ANTHROPIC_BASE_URL", carpool.url())
        .env("ANTHROPIC_API_KEY", ALICE_TOKEN)
        .env("SSL_CERT_FILE", &ca_file)
        .env_remove("SSL_CERT_DIR")
        .env("CARPOOL_EXPECT_TEXT", mock::MOCK_REPLY_TEXT)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = run(
        cmd,
        Duration::from_secs(60),
        "the Python SDK script over HTTPS",
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let seen = setup.mock.requests();
    let context = format!(
        "--- stdout\n{stdout}--- stderr\n{stderr}--- the mock saw\n{}",
        describe(&seen)
    );
    assert!(output.status.success(), "the SDK script failed\n{context}");
    assert!(
        stdout.lines().any(|l| l == "all three calls passed"),
        "{context}"
    );
    assert_eq!(seen.len(), 3, "exactly three requests upstream\n{context}");
    assert_account_token_only(&seen);
    carpool.shutdown().await;
}

/// `claude -p "Say hello" --output-format json` in a home of its own (no login, settings
/// or history of the developer's are read or written), against `base_url` with Alice's
/// token, with every outside lookup switched off.
fn claude_print(
    claude: &Path,
    home: &Path,
    work: &Path,
    base_url: &str,
) -> tokio::process::Command {
    let mut cmd = clients::command(claude, SCRUBBED);
    cmd.args(["-p", "Say hello", "--output-format", "json"])
        .current_dir(work)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_AUTH_TOKEN", ALICE_TOKEN)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("DISABLE_AUTOUPDATER", "1");
    cmd
}

/// With no Claude login on the Carpool machine, Claude Code must stop at once with
/// Carpool's message instead of retrying a 503 for about three minutes (what it does
/// without `x-should-retry: false`; its default retry count is kept here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_gives_up_at_once_when_the_owner_must_act() {
    let Some(claude) = client_from_env("CARPOOL_TEST_CLAUDE", "the Claude Code CLI") else {
        return;
    };
    let setup = Setup::without_file().await;
    let carpool = setup.start().await;
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("project");
    std::fs::create_dir_all(&work).unwrap();

    let cmd = claude_print(&claude, home.path(), &work, &carpool.url());
    // Without the header this run takes about three minutes; the limit is far from both.
    let output = run(cmd, Duration::from_secs(90), "claude -p (no login)").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let context = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(!output.status.success(), "it must fail\n{context}");
    assert!(
        stdout.contains("cannot be used until its owner fixes it")
            || stderr.contains("cannot be used until its owner fixes it"),
        "Carpool's message is shown\n{context}"
    );
    assert!(setup.mock.requests().is_empty(), "nothing went upstream");
    carpool.shutdown().await;

    // Carpool saw one attempt per model call, not a retry loop.
    let conn = carpool::ledger::store::open_existing(&setup.dir.path().join("usage.db")).unwrap();
    let mut rows = Vec::new();
    carpool::ledger::store::for_each_request(&conn, 0, i64::MAX, |r| rows.push(r)).unwrap();
    let refused: Vec<_> = rows
        .iter()
        .filter(|r| r.endpoint == "messages" && r.status == 503)
        .collect();
    assert!(
        (1..=2).contains(&refused.len()),
        "one request, no retries: {} refused\n{context}",
        refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_cli_print_mode_through_carpool() {
    let Some(claude) = client_from_env("CARPOOL_TEST_CLAUDE", "the Claude Code CLI") else {
        return;
    };
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    // A home of its own: no login, settings or history of the developer's are read or
    // written, and the CLI's config lands here.
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("project");
    std::fs::create_dir_all(&work).unwrap();

    let mut cmd = claude_print(&claude, home.path(), &work, &carpool.url());
    cmd.env("CLAUDE_CODE_MAX_RETRIES", "2");
    let output = run(cmd, Duration::from_secs(120), "claude -p").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let seen = setup.mock.requests();
    let context = format!(
        "--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- the mock saw\n{}",
        describe(&seen)
    );
    println!("the mock saw:\n{}", describe(&seen));
    assert!(output.status.success(), "claude -p failed\n{context}");

    let result: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("--output-format json printed no JSON ({e})\n{context}"));
    assert_eq!(result["is_error"], false, "{context}");
    assert!(
        result["result"]
            .as_str()
            .is_some_and(|r| r.contains(mock::MOCK_REPLY_TEXT)),
        "the result must hold the upstream's reply\n{context}"
    );
    assert!(
        result["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "usage.output_tokens must survive the relay\n{context}"
    );

    let turns: Vec<&Recorded> = seen.iter().filter(|r| is_messages(r)).collect();
    assert!(!turns.is_empty(), "no POST /v1/messages\n{context}");
    for r in &turns {
        let beta = r
            .headers
            .get("anthropic-beta")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            beta.starts_with("oauth-2025-04-20"),
            "{} {} anthropic-beta = {beta:?}\n{context}",
            r.method,
            r.uri
        );
    }
    assert!(
        turns
            .iter()
            .any(|r| body_json(r)["messages"].to_string().contains("Say hello")),
        "the prompt reached the upstream\n{context}"
    );
    assert_account_token_only(&seen);
    carpool.shutdown().await;

    // The ledger knows which machine and which session: Claude Code's device id (64 hex
    // digits in metadata.user_id) and its session id, one per run.
    let conn = carpool::ledger::store::open_existing(&setup.dir.path().join("usage.db")).unwrap();
    let mut rows = Vec::new();
    carpool::ledger::store::for_each_request(&conn, 0, i64::MAX, |r| rows.push(r)).unwrap();
    let messages: Vec<_> = rows.iter().filter(|r| r.endpoint == "messages").collect();
    assert_eq!(messages.len(), turns.len(), "{rows:#?}");
    for r in &messages {
        assert_eq!(r.user, "alice");
        assert!(
            r.device.len() == 64 && r.device.chars().all(|c| c.is_ascii_hexdigit()),
            "device id from metadata.user_id: {r:?}"
        );
        assert!(!r.session.is_empty(), "session id: {r:?}");
        assert_eq!(r.session, messages[0].session, "one session per run");
        assert!(
            r.tokens.output > 0 && r.cost_micros.is_some_and(|c| c > 0),
            "{r:?}"
        );
    }
}

/// The management API's document is valid OpenAPI 3.1 by an independent validator: what
/// the dashboard's generated client is made from must not depend on utoipa's reading of
/// the specification alone.
#[test]
fn the_openapi_document_passes_an_openapi_validator() {
    let Some(python) = client_from_env("CARPOOL_TEST_PYTHON", "the Python test clients") else {
        return;
    };
    let doc = serde_json::to_vec(&carpool::api::openapi()).unwrap();
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.load(sys.stdin))\n\
             print('valid')",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&doc).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "valid",
        "the OpenAPI document is not valid:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
