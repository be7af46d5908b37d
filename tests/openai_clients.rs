//! Real OpenAI clients against Carpool: the official Python `openai` SDK and the Codex CLI,
//! each pointed at an in-process Carpool in front of the OpenAI mock
//! (tests/common/openai_mock.rs) through an OpenAI key account (Codex also through a Codex
//! login on the mock's ChatGPT backend), and for Chat Completions on Claude models the
//! Anthropic mock through a Claude login.
//!
//! The clients are installed by `scripts/test.sh` (pinned in tests/clients/), which passes
//! their paths in `CARPOOL_TEST_PYTHON` and `CARPOOL_TEST_CODEX`. Without them a test
//! prints a "skipped" line and passes, unless `CARPOOL_REQUIRE_REAL_CLIENTS=1` (as the
//! script sets), when a missing client is a failure.
//!
//! Nothing here reaches the network: every base URL is Carpool on 127.0.0.1, and Codex
//! runs with the offline settings of docs/protocol.md §12 (plugins off, its own
//! `CODEX_HOME`, stdin closed, a custom provider without WebSockets).

mod common;

use std::path::Path;
use std::time::Duration;

use common::clients::{self, client_from_env, manifest_dir, run, text};
use common::openai_mock::{self, OpenAiMock, OpenAiReply};
use common::*;
use serde_json::{Value, json};

/// The OpenAI key account's key, the one the mock accepts.
const KEY: &str = "sk-proj-mock-client-key-000000000000";
const GPT_MODEL: &str = "gpt-5.1-codex";
const CLAUDE_MODEL: &str = "claude-sonnet-4-5";

/// Env vars of the developer's shell that would steer a client elsewhere.
const SCRUBBED: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_ORGANIZATION",
    "OPENAI_PROJECT_ID",
    "OPENAI_LOG",
    "CODEX_HOME",
    "CODEX_API_KEY",
    "CODEX_CA_CERTIFICATE",
    "CODEX_SANDBOX",
    "CODEX_SANDBOX_NETWORK_DISABLED",
    "AZURE_OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "RUST_LOG",
];

/// One line per request a mock saw, for failure messages.
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
                "  {} {} user-agent={} originator={} session-id={} ({} body bytes)",
                r.method,
                r.uri,
                header("user-agent"),
                header("originator"),
                header("session-id"),
                r.body.len()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn body_json(r: &Recorded) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// Every request reached the OpenAI upstream with the account's key and nothing of
/// Alice's token.
fn assert_key_only(requests: &[Recorded]) {
    for r in requests {
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {KEY}").as_str()),
            "{} {} must carry the account's key",
            r.method,
            r.uri
        );
        let everything = format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(
            !everything.contains(ALICE_TOKEN),
            "the Carpool token leaked upstream in {} {}",
            r.method,
            r.uri
        );
    }
}

/// A Claude login on the Anthropic mock (`main`) and an OpenAI key (`gpt`) on the OpenAI
/// mock, alice bound to both.
async fn setup() -> (Setup, OpenAiMock) {
    let mut setup = Setup::new().await;
    let mock = OpenAiMock::start(KEY).await;
    setup.config["credentials"].as_array_mut().unwrap().push(
        json!({"tag": "gpt", "type": "openai_api_key", "api_key": KEY,
                     "base_url": mock.api_base()}),
    );
    setup.config["users"][0]["credential"] = json!(["main", "gpt"]);
    setup.config["users"][1]["credential"] = json!("main");
    (setup, mock)
}

/// Runs tests/clients/openai_sdk.py in `mode` against Carpool; its stdout and a context
/// for failure messages, after checking it succeeded.
async fn run_sdk(
    python: &Path,
    mode: &str,
    base_url: &str,
    setup: &Setup,
    mock: &OpenAiMock,
) -> (String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = clients::command(python, SCRUBBED);
    cmd.arg(manifest_dir().join("tests/clients/openai_sdk.py"))
        .arg(mode)
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("OPENAI_BASE_URL", format!("{base_url}/v1"))
        .env("OPENAI_API_KEY", ALICE_TOKEN)
        .env("CARPOOL_GPT_MODEL", GPT_MODEL)
        .env("CARPOOL_CLAUDE_MODEL", CLAUDE_MODEL)
        .env("CARPOOL_EXPECT_GPT_TEXT", openai_mock::REPLY_TEXT)
        .env(
            "CARPOOL_EXPECT_GPT_INPUT",
            openai_mock::INPUT_TOKENS.to_string(),
        )
        .env(
            "CARPOOL_EXPECT_GPT_CACHED",
            openai_mock::CACHED_TOKENS.to_string(),
        )
        .env(
            "CARPOOL_EXPECT_GPT_OUTPUT",
            openai_mock::OUTPUT_TOKENS.to_string(),
        )
        .env(
            "CARPOOL_EXPECT_GPT_REASONING",
            openai_mock::REASONING_TOKENS.to_string(),
        )
        .env("CARPOOL_EXPECT_CLAUDE_TEXT", mock::MOCK_REPLY_TEXT)
        .env(
            "CARPOOL_EXPECT_CLAUDE_INPUT",
            mock::INPUT_TOKENS.to_string(),
        )
        .env(
            "CARPOOL_EXPECT_CLAUDE_OUTPUT",
            mock::OUTPUT_TOKENS.to_string(),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = run(cmd, Duration::from_secs(60), "the OpenAI SDK script").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let context = format!(
        "--- stdout\n{stdout}--- stderr\n{stderr}--- the OpenAI mock saw\n{}\n--- the Anthropic mock saw\n{}",
        describe(&mock.requests()),
        describe(&setup.mock.requests())
    );
    assert!(
        output.status.success(),
        "the SDK script ({mode}) failed\n{context}"
    );
    (stdout, context)
}

fn assert_lines(stdout: &str, lines: &[String], context: &str) {
    for line in lines {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing line {line:?}\n{context}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_responses_plain_and_streaming_through_carpool() {
    let Some(python) = client_from_env("CARPOOL_TEST_PYTHON", "the Python openai SDK") else {
        return;
    };
    let (setup, mock) = setup().await;
    let carpool = setup.start().await;
    let (stdout, context) = run_sdk(&python, "responses", &carpool.url(), &setup, &mock).await;

    let reply = openai_mock::REPLY_TEXT;
    let usage = format!(
        "input={} cached={} output={} reasoning={}",
        openai_mock::INPUT_TOKENS,
        openai_mock::CACHED_TOKENS,
        openai_mock::OUTPUT_TOKENS,
        openai_mock::REASONING_TOKENS
    );
    assert_lines(
        &stdout,
        &[
            format!("responses.create: text='{reply}' {usage}"),
            format!("responses.stream: text='{reply}' events=10 {usage}"),
            format!("responses.stream helper: text='{reply}'"),
            "all responses calls passed".to_owned(),
        ],
        &context,
    );

    let seen = mock.requests();
    assert_eq!(seen.len(), 3, "three requests upstream\n{context}");
    for (r, stream) in seen.iter().zip([false, true, true]) {
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("POST", "/v1/responses")
        );
        let body = body_json(r);
        assert_eq!(body["model"], GPT_MODEL, "{context}");
        assert_eq!(body["stream"] == true, stream, "{body}");
    }
    assert_eq!(body_json(&seen[0])["instructions"], "You are terse.");
    assert_key_only(&seen);
    assert!(setup.mock.requests().is_empty(), "{context}");
    carpool.shutdown().await;
}

/// `POST /v1/chat/completions` (docs/protocol.md §13): a GPT model answered through the
/// Responses API of the OpenAI account, a Claude model through the Messages API of the
/// Claude login, each plain and streamed with the final usage chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_chat_completions_for_gpt_and_claude_through_carpool() {
    let Some(python) = client_from_env("CARPOOL_TEST_PYTHON", "the Python openai SDK") else {
        return;
    };
    let (setup, mock) = setup().await;
    let carpool = setup.start().await;
    let (stdout, context) = run_sdk(&python, "chat", &carpool.url(), &setup, &mock).await;

    let gpt = openai_mock::REPLY_TEXT;
    let claude = mock::MOCK_REPLY_TEXT;
    let (gi, gc, go) = (
        openai_mock::INPUT_TOKENS,
        openai_mock::CACHED_TOKENS,
        openai_mock::OUTPUT_TOKENS,
    );
    let (ci, co) = (mock::INPUT_TOKENS, mock::OUTPUT_TOKENS);
    assert_lines(
        &stdout,
        &[
            format!(
                "chat.create gpt: text='{gpt}' finish=stop prompt={gi} cached={gc} completion={go}"
            ),
            format!(
                "chat.create claude: text='{claude}' finish=stop prompt={ci} cached=0 completion={co}"
            ),
            "all chat calls passed".to_owned(),
        ],
        &context,
    );
    for (name, text, prompt, completion) in [("gpt", gpt, gi, go), ("claude", claude, ci, co)] {
        let prefix = format!("chat.stream {name}: text='{text}' chunks=");
        let suffix = format!(" finish=stop prompt={prompt} completion={completion}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.ends_with(&suffix)),
            "no {prefix}…{suffix} line\n{context}"
        );
    }

    // The GPT turns went to the OpenAI account as Responses requests…
    let seen = mock.requests();
    assert_eq!(seen.len(), 2, "{context}");
    for r in &seen {
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("POST", "/v1/responses"),
            "{context}"
        );
        let body = body_json(r);
        assert_eq!(body["model"], GPT_MODEL, "{body}");
        let input = body["input"].to_string();
        assert!(
            input.contains("Say hello") && input.contains("You are terse."),
            "{body}"
        );
    }
    assert_key_only(&seen);
    // … and the Claude turns to the Claude login as Messages requests.
    let claude_seen = setup.mock.requests();
    assert_eq!(claude_seen.len(), 2, "{context}");
    for r in &claude_seen {
        assert!(r.uri.starts_with("/v1/messages"), "{context}");
        let body = body_json(r);
        assert_eq!(body["model"], CLAUDE_MODEL, "{body}");
        assert!(
            body["system"].to_string().contains("You are terse."),
            "{body}"
        );
        assert_eq!(body["messages"][0]["role"], "user", "{body}");
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {ACCESS}").as_str())
        );
    }
    carpool.shutdown().await;
}

/// Codex's `config.toml` for a custom provider at Carpool, offline (docs/protocol.md §12).
fn codex_config(base_url: &str) -> String {
    format!(
        r#"model = "{GPT_MODEL}"
model_provider = "carpool"
check_for_update_on_startup = false

[model_providers.carpool]
name = "Carpool"
base_url = "{base_url}/v1"
env_key = "CARPOOL_TOKEN"
wire_api = "responses"
supports_websockets = false
request_max_retries = 0
stream_max_retries = 0

[features]
plugins = false
remote_plugin = false

[analytics]
enabled = false
"#
    )
}

/// Runs `codex exec --json` on `prompt` with Carpool at `base_url` as its provider and
/// checks it succeeded; the JSON events it printed, what the mock saw, and a context for
/// failure messages.
async fn codex_exec(
    codex: &Path,
    base_url: &str,
    prompt: &str,
    mock: &OpenAiMock,
) -> (Vec<Value>, Vec<Recorded>, String) {
    // CODEX_HOME outside /tmp (Codex refuses some state under it: §12).
    let codex_home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(
        codex_home.path().join("config.toml"),
        codex_config(base_url),
    )
    .unwrap();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut cmd = clients::command(codex, SCRUBBED);
    cmd.args([
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--color",
        "never",
    ])
    // The tool runs unsandboxed: this test is about the relay. Codex's Linux sandbox
    // (bubblewrap) mounts a /tmp of its own, which hides a workspace that lives under /tmp
    // (a checkout cloned there: the tool's cwd would be missing and its output lost).
    .args(["--sandbox", "danger-full-access"])
    .arg("-C")
    .arg(work.path())
    .arg(prompt)
    .current_dir(work.path())
    .env("HOME", codex_home.path())
    .env("CODEX_HOME", codex_home.path())
    .env("CARPOOL_TOKEN", ALICE_TOKEN);
    let output = run(cmd, Duration::from_secs(120), "codex exec").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let seen = mock.requests();
    let context = format!(
        "--- stdout\n{stdout}--- stderr\n{stderr}--- the OpenAI mock saw\n{}",
        describe(&seen)
    );
    assert!(output.status.success(), "codex exec failed\n{context}");
    let events = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (events, seen, context)
}

/// What Codex said (its `agent_message` items).
fn agent_messages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == "agent_message")
        .filter_map(|e| e["item"]["text"].as_str())
        .collect()
}

/// The usage of the turn (`turn.completed`), summed over its requests by Codex.
fn turn_usage(events: &[Value], context: &str) -> Value {
    events
        .iter()
        .find(|e| e["type"] == "turn.completed")
        .map(|e| e["usage"].clone())
        .unwrap_or_else(|| panic!("no turn.completed\n{context}"))
}

/// The usage Codex shows for `requests` answers of the mock.
fn assert_usage(usage: &Value, requests: u64) {
    for (field, each) in [
        ("input_tokens", openai_mock::INPUT_TOKENS),
        ("cached_input_tokens", openai_mock::CACHED_TOKENS),
        ("output_tokens", openai_mock::OUTPUT_TOKENS),
        ("reasoning_output_tokens", openai_mock::REASONING_TOKENS),
    ] {
        assert_eq!(usage[field], requests * each, "{field}: {usage}");
    }
}

/// `codex exec` through Carpool: a turn in which the model (the mock) calls Codex's shell
/// tool, Codex runs it and sends the output back, and the model answers with text. Codex
/// prints the final text and the turn's usage (`--json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_exec_with_a_tool_round_trip_through_carpool() {
    let Some(codex) = client_from_env("CARPOOL_TEST_CODEX", "the Codex CLI") else {
        return;
    };
    let (setup, mock) = setup().await;
    let carpool = setup.start().await;
    // The shell computes the marker, so the output can only come from running it.
    mock.push(OpenAiReply::ShellCall {
        command: "echo carpool-tool-$((6*7))".into(),
    });
    let (events, seen, context) = codex_exec(
        &codex,
        &carpool.url(),
        "Run the marker command and tell me what it printed.",
        &mock,
    )
    .await;

    // Two model turns upstream: the tool call, then the answer with the tool's output.
    let turns: Vec<&Recorded> = seen
        .iter()
        .filter(|r| r.method == "POST" && r.uri == "/v1/responses")
        .collect();
    assert_eq!(turns.len(), 2, "{context}");
    let first = body_json(turns[0]);
    assert_eq!(first["model"], GPT_MODEL, "{context}");
    // Codex 0.169 offers its shell as `exec_command` (unified exec); the mock called it.
    let offered = first["tools"].to_string();
    assert!(offered.contains(r#""name":"exec_command""#), "{offered}");
    assert_eq!(first["stream"], true, "{context}");
    let second = body_json(turns[1]);
    let outputs: Vec<&Value> = second["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 1, "{second}");
    assert_eq!(outputs[0]["call_id"], openai_mock::call_id(1), "{second}");
    assert!(
        outputs[0]["output"].to_string().contains("carpool-tool-42"),
        "the shell's output reached the model: {second}"
    );
    // Both turns of one conversation carry Codex's session header (§12 item 11).
    let session = turns[0].headers.get("session-id").cloned();
    assert!(session.is_some(), "{context}");
    assert_eq!(turns[1].headers.get("session-id").cloned(), session);
    assert_key_only(&seen);

    // Codex printed the final text and the turn's usage: both answers' tokens.
    assert_eq!(
        agent_messages(&events),
        [openai_mock::REPLY_TEXT],
        "{context}"
    );
    assert_usage(&turn_usage(&events, &context), 2);
    carpool.shutdown().await;
}

/// `codex exec` through Carpool to a Codex login (`"type": "codex"`): the turn reaches
/// the mock's ChatGPT backend with the login's token and account id, and Codex shows the
/// answer and its usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_exec_through_carpool_on_a_codex_login() {
    use openai_mock::{CODEX_ACCESS, CODEX_ACCOUNT_ID, CODEX_REFRESH};
    let Some(codex) = client_from_env("CARPOOL_TEST_CODEX", "the Codex CLI") else {
        return;
    };
    let mut setup = Setup::new().await;
    let mock = OpenAiMock::start(KEY).await;
    let auth = setup.dir.path().join("codex-auth.json");
    std::fs::write(
        &auth,
        openai_mock::auth_json(
            CODEX_ACCESS,
            CODEX_REFRESH,
            &jiff::Timestamp::now().to_string(),
        ),
    )
    .unwrap();
    setup.config["credentials"].as_array_mut().unwrap().push(
        json!({"tag": "codex", "type": "codex", "credential_path": auth,
                     "base_url": mock.codex_base(), "token_url": mock.token_url()}),
    );
    setup.config["users"][0]["credential"] = json!(["main", "codex"]);
    setup.config["users"][1]["credential"] = json!("main");
    let carpool = setup.start().await;

    let (events, seen, context) = codex_exec(&codex, &carpool.url(), "Say hello.", &mock).await;
    let turns: Vec<&Recorded> = seen
        .iter()
        .filter(|r| r.method == "POST" && r.uri == "/backend-api/codex/responses")
        .collect();
    assert_eq!(turns.len(), 1, "{context}");
    assert_eq!(
        turns[0].headers["authorization"],
        format!("Bearer {CODEX_ACCESS}")
    );
    assert_eq!(turns[0].headers["chatgpt-account-id"], CODEX_ACCOUNT_ID);
    for r in &seen {
        let everything = format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(!everything.contains(ALICE_TOKEN), "{context}");
    }
    assert_eq!(
        agent_messages(&events),
        [openai_mock::REPLY_TEXT],
        "{context}"
    );
    assert_usage(&turn_usage(&events, &context), 1);
    assert_eq!(mock.refreshes(), 0);
    carpool.shutdown().await;
}
