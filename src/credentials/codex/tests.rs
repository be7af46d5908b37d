//! Codex's `auth.json` through the credential's machinery: the Claude file's behaviours,
//! against a token endpoint on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::credentials::{Credential, Status, spawn_watcher};
use crate::fsutil::file_mode;

const DAY_MS: i64 = 24 * 3_600_000;

fn now_ms() -> i64 {
    super::super::now_ms()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned JWT with `claims` as its payload.
fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.sig",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// An access token named `name`, expiring `valid_ms` from now.
fn access(name: &str, valid_ms: i64) -> String {
    jwt(json!({"name": name, "exp": (now_ms() + valid_ms) / 1000}))
}

fn id_token(plan: &str, account: &str) -> String {
    jwt(json!({"email": "alice@example.com",
               AUTH_CLAIMS: {"chatgpt_plan_type": plan, "chatgpt_account_id": account,
                             "chatgpt_user_id": "user-1"}}))
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

/// A ChatGPT login as Codex writes it, with fields Carpool does not know.
fn auth_doc(access: &str, refresh: &str, last_refresh_ms: Option<i64>) -> Value {
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": id_token("plus", "acct-claim"), "access_token": access,
                   "refresh_token": refresh, "account_id": "acct-file",
                   "future_token_field": "keep-me-too"},
        "last_refresh": last_refresh_ms.map(rfc3339),
        "agent_identity": {"id": "agent-1"},
        "some_future_field": [1, 2, 3]
    })
}

/// Writes `doc` as Codex does its own file (mode 0600), by a rename.
fn write_doc(path: &Path, doc: &Value) {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::rename(&tmp, path).unwrap();
}

fn read_doc(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A temporary `CODEX_HOME` with an `auth.json` holding `doc`.
fn auth_file(doc: &Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    write_doc(&path, doc);
    (dir, path)
}

fn codex_credential(path: &Path, token_url: &str) -> Arc<Credential> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Credential::codex(
        "cx",
        path,
        "http://127.0.0.1:9/backend-api/codex",
        token_url,
        http,
    )
}

/// Nothing listens there: a refresh through it would fail.
const NO_ENDPOINT: &str = "http://127.0.0.1:9/oauth/token";

type Handler = Arc<dyn Fn(&Value) -> (StatusCode, Value) + Send + Sync>;

/// A token endpoint on 127.0.0.1 answering with `handler` after `delay`; records the
/// bodies it was sent. Runs in `tasks`.
async fn endpoint(
    tasks: &mut tokio::task::JoinSet<()>,
    delay: Duration,
    handler: Handler,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    let sent = Arc::new(Mutex::new(Vec::<Value>::new()));
    let seen = sent.clone();
    let app = axum::Router::new().route(
        "/oauth/token",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            let handler = handler.clone();
            async move {
                seen.lock().unwrap().push(body.clone());
                tokio::time::sleep(delay).await;
                let (status, answer) = handler(&body);
                (status, axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
    tasks.spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, sent)
}

/// Answers every refresh with `access-new` (10 days), `rt-new` and an id_token of plan
/// `pro`.
fn answers_new() -> Handler {
    Arc::new(|_| {
        (
            StatusCode::OK,
            json!({"access_token": access("new", 10 * DAY_MS), "refresh_token": "rt-new",
                   "id_token": id_token("pro", "acct-claim"), "expires_in": 864000}),
        )
    })
}

fn name_of(token: &Secret) -> String {
    jwt_payload(token.expose()).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..400 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn loaded(read: FileRead) -> OAuthTokens {
    match read {
        FileRead::Loaded(t) => t,
        other => panic!("{other:?}"),
    }
}

/// The login, the account id (the file's, else the claim), the plan and email from the
/// id_token, the access token's expiry and `last_refresh`.
#[test]
fn a_chatgpt_login_is_read_with_its_claims() {
    let last = now_ms() - DAY_MS;
    let doc = auth_doc(&access("a", 5 * DAY_MS), "rt-a", Some(last));
    let t = loaded(parse(doc.to_string().as_bytes()));
    assert_eq!(name_of(&t.access), "a");
    assert_eq!(t.refresh.expose(), "rt-a");
    assert_eq!(t.account_id.as_deref(), Some("acct-file"));
    assert_eq!(t.subscription_type.as_deref(), Some("plus"));
    assert_eq!(t.email.as_deref(), Some("alice@example.com"));
    assert_eq!(t.last_refresh_ms, Some(last));
    assert!((t.expires_at_ms - (now_ms() + 5 * DAY_MS)).abs() < 2_000);
    assert!(!t.api_key);

    // No `account_id` in the file: the id_token's claim.
    let mut doc = doc;
    doc["tokens"]["account_id"] = Value::Null;
    let t = loaded(parse(doc.to_string().as_bytes()));
    assert_eq!(t.account_id.as_deref(), Some("acct-claim"));

    // The email under the profile claim, when the top-level one is missing.
    doc["tokens"]["id_token"] = jwt(json!({PROFILE_CLAIMS: {"email": "bob@example.com"}})).into();
    let t = loaded(parse(doc.to_string().as_bytes()));
    assert_eq!(t.email.as_deref(), Some("bob@example.com"));
    assert_eq!(t.account_id, None);
    assert_eq!(t.subscription_type, None);
}

/// A JWT that does not decode loses its details, not the login; a `last_refresh` that
/// does not parse makes a refresh due.
#[test]
fn malformed_jwts_and_times_do_not_lose_the_login() {
    let payload_not_json = format!("{}.{}.sig", b64(b"{}"), b64(b"not json"));
    let payload_not_object = format!("{}.{}.sig", b64(b"{}"), b64(b"[1]"));
    for bad in [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "x.!!!notbase64!!!.y",
        payload_not_json.as_str(),
        payload_not_object.as_str(),
        "",
    ] {
        let mut doc = auth_doc(bad, "rt-a", Some(now_ms()));
        doc["tokens"]["id_token"] = bad.into();
        if bad.is_empty() {
            doc["tokens"]["access_token"] = "opaque-access".into();
        }
        let t = loaded(parse(doc.to_string().as_bytes()));
        assert_eq!(t.expires_at_ms, 0, "{bad}: no expiry known");
        assert_eq!(t.subscription_type, None, "{bad}");
        assert_eq!(t.email, None, "{bad}");
        assert_eq!(t.account_id.as_deref(), Some("acct-file"), "{bad}");
    }
    // A non-numeric `exp` is no expiry either.
    let doc = auth_doc(&jwt(json!({"exp": "soon"})), "rt-a", Some(now_ms()));
    assert_eq!(loaded(parse(doc.to_string().as_bytes())).expires_at_ms, 0);

    let mut doc = auth_doc(&access("a", DAY_MS), "rt-a", None);
    doc["last_refresh"] = "yesterday".into();
    let t = loaded(parse(doc.to_string().as_bytes()));
    assert_eq!(t.last_refresh_ms, None);
    assert_eq!(refresh_at_ms(&t), Some(0), "due now");
}

#[test]
fn api_key_mode_and_invalid_files() {
    let key_only = json!({"OPENAI_API_KEY": "sk-proj-key", "tokens": null});
    let t = loaded(parse(key_only.to_string().as_bytes()));
    assert!(t.api_key);
    assert_eq!(t.access.expose(), "sk-proj-key");
    assert_eq!(refresh_at_ms(&t), None, "an API key is never refreshed");

    // Both: the tokens, unless `auth_mode` asks for the key (as Codex resolves it).
    let mut both = auth_doc(&access("a", DAY_MS), "rt-a", Some(now_ms()));
    both["OPENAI_API_KEY"] = "sk-proj-key".into();
    assert!(!loaded(parse(both.to_string().as_bytes())).api_key);
    both["auth_mode"] = "apikey".into();
    assert!(loaded(parse(both.to_string().as_bytes())).api_key);

    let cases = [
        "sk-proj-secret not json".to_string(),
        "[1]".into(),
        json!({"OPENAI_API_KEY": ""}).to_string(),
        json!({"tokens": "sk-proj-secret"}).to_string(),
        json!({"tokens": {"refresh_token": "sk-proj-secret"}}).to_string(),
    ];
    for case in cases {
        match parse(case.as_bytes()) {
            FileRead::Invalid(why) => assert!(!why.contains("secret"), "{why}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    match parse(b"{}") {
        FileRead::Invalid(why) => assert!(why.contains("codex login"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// Due when `last_refresh` is older than 8 days or missing, or one minute before the
/// access token's `exp`, whichever comes first.
#[test]
fn a_refresh_is_due_after_eight_days_or_near_the_tokens_expiry() {
    let due = |doc: Value| {
        let (_dir, path) = auth_file(&doc);
        codex_credential(&path, NO_ENDPOINT).refresh_due()
    };
    let fresh = due(auth_doc(&access("a", 30 * DAY_MS), "rt", Some(now_ms()))).unwrap();
    let eight_days = Duration::from_millis(REFRESH_INTERVAL_MS as u64);
    assert!(
        fresh <= eight_days && fresh > eight_days - Duration::from_secs(60),
        "{fresh:?}"
    );
    let old = Some(now_ms() - 8 * DAY_MS - 1000);
    assert_eq!(
        due(auth_doc(&access("a", 30 * DAY_MS), "rt", old)),
        Some(Duration::ZERO)
    );
    assert_eq!(
        due(auth_doc(&access("a", 30 * DAY_MS), "rt", None)),
        Some(Duration::ZERO),
        "no last_refresh"
    );
    let soon = due(auth_doc(&access("a", 3_600_000), "rt", Some(now_ms()))).unwrap();
    assert!(
        soon <= Duration::from_secs(3600 - 60) && soon > Duration::from_secs(3500),
        "the access token's exp comes first: {soon:?}"
    );
    assert_eq!(
        due(auth_doc(&access("a", 30_000), "rt", Some(now_ms()))),
        Some(Duration::ZERO),
        "inside the margin"
    );
    assert_eq!(
        due(auth_doc(&access("a", DAY_MS), "", None)),
        None,
        "no refresh token"
    );
    assert_eq!(due(json!({"OPENAI_API_KEY": "sk-proj-key"})), None);
}

/// Carpool starts before `codex login` ran; the account waits with words for a Codex
/// login, and is ready as soon as the file appears.
#[tokio::test]
async fn a_missing_file_is_waited_for_and_used_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let cred = codex_credential(&path, NO_ENDPOINT);
    assert_eq!(cred.status(), Status::Missing);
    let why = cred.needs_attention().unwrap();
    assert!(
        why.starts_with("Codex account `cx`")
            && why.contains("run `codex login` on the Carpool machine")
            && why.contains(&path.display().to_string()),
        "{why}"
    );
    assert!(!why.contains("claude") && !why.contains("Claude"), "{why}");
    let error = cred.access_token(None).await.unwrap_err();
    assert!(error.reason.contains("codex login"), "{}", error.reason);
    assert_eq!(cred.account_id(), None);

    let mut tasks = tokio::task::JoinSet::new();
    spawn_watcher(cred.clone(), &mut tasks);
    write_doc(
        &path,
        &auth_doc(&access("first", 9 * DAY_MS), "rt-1", Some(now_ms())),
    );
    assert!(
        eventually(async || {
            cred.access_token(None)
                .await
                .is_ok_and(|t| name_of(&t) == "first")
        })
        .await
    );
    assert_eq!(cred.status(), Status::Ready);
    assert_eq!(cred.account_id().as_deref(), Some("acct-file"));
    assert_eq!(cred.plan(), (Some("plus".into()), None));
    assert_eq!(cred.email().as_deref(), Some("alice@example.com"));
    assert!(!cred.is_api_key());

    // Deleted: unusable at once.
    std::fs::remove_file(&path).unwrap();
    assert!(eventually(async || cred.status() == Status::Missing).await);
    tasks.abort_all();
}

/// A login last refreshed 9 days ago is refreshed with Codex's request, and the answer
/// is written back changing only the tokens and `last_refresh`: every other field (the
/// unknown ones, `auth_mode`, `OPENAI_API_KEY`, `account_id`), the key order and the
/// 0600 mode are kept.
#[tokio::test]
async fn an_old_login_is_refreshed_and_written_back_keeping_everything_else() {
    let mut tasks = tokio::task::JoinSet::new();
    let (url, sent) = endpoint(&mut tasks, Duration::ZERO, answers_new()).await;
    let before = auth_doc(
        &access("old", 2 * DAY_MS),
        "rt-old",
        Some(now_ms() - 9 * DAY_MS),
    );
    let (_dir, path) = auth_file(&before);
    let cred = codex_credential(&path, &url);

    let token = cred.access_token(None).await.unwrap();
    assert_eq!(name_of(&token), "new");
    {
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0],
            json!({"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token",
                   "refresh_token": "rt-old", "scope": "openid profile email"})
        );
    }

    let after = read_doc(&path);
    assert_eq!(
        name_of(&Secret::new(
            after["tokens"]["access_token"].as_str().unwrap()
        )),
        "new"
    );
    assert_eq!(after["tokens"]["refresh_token"], "rt-new");
    assert_eq!(after["tokens"]["id_token"], id_token("pro", "acct-claim"));
    assert_eq!(after["tokens"]["account_id"], "acct-file");
    assert_eq!(after["tokens"]["future_token_field"], "keep-me-too");
    assert_eq!(after["auth_mode"], "chatgpt");
    assert_eq!(after["OPENAI_API_KEY"], Value::Null);
    assert_eq!(after["agent_identity"], before["agent_identity"]);
    assert_eq!(after["some_future_field"], before["some_future_field"]);
    let last: jiff::Timestamp = after["last_refresh"].as_str().unwrap().parse().unwrap();
    assert!((now_ms() - last.as_millisecond()).abs() < 60_000);
    let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
    let keys_before: Vec<&String> = before.as_object().unwrap().keys().collect();
    assert_eq!(keys, keys_before, "key order kept");
    #[cfg(unix)]
    assert_eq!(file_mode(&path), Some(0o600));
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1,
        "no temporary file left"
    );

    assert_eq!(
        cred.plan().0.as_deref(),
        Some("pro"),
        "the new id_token's plan"
    );
    assert_eq!(cred.status(), Status::Ready);
    let due = cred.refresh_due().unwrap();
    assert!(
        due > Duration::from_millis((REFRESH_INTERVAL_MS - 60_000) as u64),
        "{due:?}"
    );
    assert_eq!(name_of(&cred.access_token(None).await.unwrap()), "new");
    assert_eq!(sent.lock().unwrap().len(), 1, "no second refresh");
    tasks.abort_all();
}

/// An answer may leave out any token: the old one is kept, in memory and in the file.
#[tokio::test]
async fn tokens_missing_from_the_answer_are_kept() {
    let mut tasks = tokio::task::JoinSet::new();
    let handler: Handler = Arc::new(|_| {
        (
            StatusCode::OK,
            json!({"access_token": access("only-access", 10 * DAY_MS)}),
        )
    });
    let (url, _sent) = endpoint(&mut tasks, Duration::ZERO, handler).await;
    let before = auth_doc(&access("old", DAY_MS), "rt-old", None);
    let (_dir, path) = auth_file(&before);
    let cred = codex_credential(&path, &url);
    assert_eq!(
        name_of(&cred.access_token(None).await.unwrap()),
        "only-access"
    );
    let after = read_doc(&path);
    assert_eq!(after["tokens"]["refresh_token"], "rt-old");
    assert_eq!(after["tokens"]["id_token"], before["tokens"]["id_token"]);
    assert!(after["last_refresh"].is_string());

    // An answer with no token at all is unusable: a passing failure.
    let empty: Handler = Arc::new(|_| (StatusCode::OK, json!({"token_type": "Bearer"})));
    let (url, _) = endpoint(&mut tasks, Duration::ZERO, empty).await;
    let (_dir2, path2) = auth_file(&auth_doc(&access("old", -1000), "rt-old", None));
    let cred = codex_credential(&path2, &url);
    let error = cred.access_token(None).await.unwrap_err();
    assert!(error.reason.contains("unusable answer"), "{}", error.reason);
    assert!(error.retry_after.is_some());
    tasks.abort_all();
}

/// A 401 from the upstream forces a refresh of a token that is not due yet; if Codex
/// already wrote newer tokens, they are taken instead.
#[tokio::test]
async fn a_rejected_token_is_refreshed_unless_the_file_has_a_newer_one() {
    let mut tasks = tokio::task::JoinSet::new();
    let (url, sent) = endpoint(&mut tasks, Duration::ZERO, answers_new()).await;
    let (_dir, path) = auth_file(&auth_doc(&access("a", 9 * DAY_MS), "rt-a", Some(now_ms())));
    let cred = codex_credential(&path, &url);
    let token = cred.access_token(None).await.unwrap();
    assert_eq!(name_of(&token), "a", "not due");
    assert!(sent.lock().unwrap().is_empty());

    let token = cred.access_token(Some(&token)).await.unwrap();
    assert_eq!(name_of(&token), "new");
    assert_eq!(sent.lock().unwrap().len(), 1);
    assert_eq!(read_doc(&path)["tokens"]["refresh_token"], "rt-new");

    // Codex on this machine refreshed meanwhile (no watcher runs here): the rejection
    // reads the file first and adopts its tokens without refreshing.
    write_doc(
        &path,
        &auth_doc(&access("codex", 9 * DAY_MS), "rt-codex", Some(now_ms())),
    );
    let generation = cred.generation();
    let token = cred.access_token(Some(&token)).await.unwrap();
    assert_eq!(name_of(&token), "codex");
    assert_eq!(sent.lock().unwrap().len(), 1, "no second refresh");
    assert!(cred.generation() > generation);
    tasks.abort_all();
}

/// Concurrent requests that all find the token due make one refresh: refresh tokens
/// rotate, and two refreshes would revoke each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_refresh() {
    let mut tasks = tokio::task::JoinSet::new();
    let (url, sent) = endpoint(&mut tasks, Duration::from_millis(300), answers_new()).await;
    let (_dir, path) = auth_file(&auth_doc(&access("old", -1000), "rt-old", None));
    let cred = codex_credential(&path, &url);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let cred = cred.clone();
        callers.spawn(async move { cred.access_token(None).await });
    }
    let mut names = Vec::new();
    while let Some(done) = callers.join_next().await {
        names.push(name_of(&done.unwrap().unwrap()));
    }
    assert_eq!(names, vec!["new"; 8]);
    assert_eq!(
        sent.lock().unwrap().len(),
        1,
        "one refresh for eight callers"
    );
    tasks.abort_all();
}

/// Codex rewrote auth.json while our refresh was at the token endpoint: its login wins,
/// ours is dropped and the file is left exactly as Codex wrote it.
#[tokio::test]
async fn a_file_codex_rewrote_while_refreshing_is_adopted_never_overwritten() {
    let mut tasks = tokio::task::JoinSet::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    write_doc(&path, &auth_doc(&access("old", -1000), "rt-old", None));
    let theirs = auth_doc(&access("theirs", 9 * DAY_MS), "rt-theirs", Some(now_ms()));
    let (rewrite_path, rewrite_doc) = (path.clone(), theirs.clone());
    let handler: Handler = Arc::new(move |body| {
        // Codex refreshes the same login first and writes its file.
        write_doc(&rewrite_path, &rewrite_doc);
        answers_new()(body)
    });
    let (url, sent) = endpoint(&mut tasks, Duration::ZERO, handler).await;
    let cred = codex_credential(&path, &url);
    let written = {
        let token = cred.access_token(None).await.unwrap();
        assert_eq!(name_of(&token), "theirs");
        std::fs::read(&path).unwrap()
    };
    assert_eq!(read_doc(&path), theirs);
    assert_eq!(std::fs::read(&path).unwrap(), written);
    assert_eq!(sent.lock().unwrap().len(), 1);
    assert_eq!(cred.next_retry(), None, "nothing left to save");
    assert_eq!(cred.status(), Status::Ready);
    tasks.abort_all();
}

/// The rotation errors are final until the file changes: no retry by requests or the
/// timer, words for a Codex login; a new login in the file brings the account back.
#[tokio::test]
async fn rotation_errors_are_final_until_the_file_changes() {
    let bodies = [
        json!({"error": "refresh_token_expired", "error_description": "expired"}),
        json!({"error": {"code": "refresh_token_reused", "message": "already used"}}),
        json!({"error": {"code": "refresh_token_invalidated"}}),
    ];
    for body in bodies {
        let mut tasks = tokio::task::JoinSet::new();
        let refused = Arc::new(Mutex::new(true));
        let (answer, refusing) = (body.clone(), refused.clone());
        let handler: Handler = Arc::new(move |b| {
            if *refusing.lock().unwrap() {
                (StatusCode::UNAUTHORIZED, answer.clone())
            } else {
                answers_new()(b)
            }
        });
        let (url, sent) = endpoint(&mut tasks, Duration::ZERO, handler).await;
        let (_dir, path) = auth_file(&auth_doc(&access("old", -1000), "rt-old", None));
        let before = std::fs::read(&path).unwrap();
        let cred = codex_credential(&path, &url);

        let error = cred.access_token(None).await.unwrap_err();
        assert_eq!(error.retry_after, None, "{body}: final");
        assert!(
            error.reason.starts_with("Codex account `cx`")
                && error.reason.contains("refresh token was rejected")
                && error.reason.contains("log in again with `codex login`"),
            "{}",
            error.reason
        );
        assert!(!error.reason.contains("claude"), "{}", error.reason);
        assert!(!error.reason.contains("rt-old"), "{}", error.reason);
        assert!(matches!(cred.status(), Status::LoginExpired(_)), "{body}");
        assert!(cred.needs_attention().unwrap().contains("codex login"));
        assert_eq!(cred.refresh_due(), None, "the timer waits for a new login");
        cred.access_token(None).await.unwrap_err();
        assert_eq!(sent.lock().unwrap().len(), 1, "{body}: not tried again");
        assert_eq!(std::fs::read(&path).unwrap(), before, "file left alone");

        // `codex login` again: a new refresh token in the file.
        *refused.lock().unwrap() = false;
        write_doc(
            &path,
            &auth_doc(&access("relogin", -1000), "rt-relogin", None),
        );
        cred.reload();
        assert_eq!(cred.status(), Status::Ready);
        assert_eq!(name_of(&cred.access_token(None).await.unwrap()), "new");
        assert_eq!(sent.lock().unwrap()[1]["refresh_token"], "rt-relogin");
        tasks.abort_all();
    }
}

/// Any other failure backs off and is retried; the token is used while it lasts.
#[tokio::test]
async fn other_refresh_failures_back_off() {
    let mut tasks = tokio::task::JoinSet::new();
    let handler: Handler = Arc::new(|_| {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "invalid_request", "message": "try later"}}),
        )
    });
    let (url, sent) = endpoint(&mut tasks, Duration::ZERO, handler).await;
    // Due by age, but the access token still works for a day.
    let (_dir, path) = auth_file(&auth_doc(&access("old", DAY_MS), "rt-old", None));
    let cred = codex_credential(&path, &url);
    assert_eq!(name_of(&cred.access_token(None).await.unwrap()), "old");
    assert_eq!(sent.lock().unwrap().len(), 1);
    assert_eq!(cred.status(), Status::Ready, "the token still works");
    let backoff = cred.refresh_due().unwrap();
    assert!(backoff > Duration::ZERO, "backing off: {backoff:?}");
    assert_eq!(name_of(&cred.access_token(None).await.unwrap()), "old");
    assert_eq!(sent.lock().unwrap().len(), 1, "not before the back-off");

    // Expired: the failure is a retryable error, not a dead login.
    let (_dir2, path2) = auth_file(&auth_doc(&access("old", -1000), "rt-old", None));
    let cred = codex_credential(&path2, &url);
    let error = cred.access_token(None).await.unwrap_err();
    assert!(error.retry_after.is_some());
    assert!(
        error.reason.contains("invalid_request: try later"),
        "{}",
        error.reason
    );
    assert!(matches!(cred.status(), Status::Broken(_)));
    assert_eq!(cred.needs_attention(), None, "fixes itself");
    tasks.abort_all();
}

/// API-key mode: the key is the bearer, never refreshed; a rejected key is an error that
/// names the file, never the key.
#[tokio::test]
async fn an_api_key_login_is_served_and_never_refreshed() {
    let mut tasks = tokio::task::JoinSet::new();
    let (url, sent) = endpoint(&mut tasks, Duration::ZERO, answers_new()).await;
    let (_dir, path) = auth_file(&json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-proj-k1"}));
    let before = std::fs::read(&path).unwrap();
    let cred = codex_credential(&path, &url);
    assert!(cred.is_api_key());
    assert_eq!(cred.status(), Status::Ready);
    assert_eq!(cred.refresh_due(), None);
    assert_eq!(cred.account_id(), None);
    let key = cred.access_token(None).await.unwrap();
    assert_eq!(key.expose(), "sk-proj-k1");

    let error = cred.access_token(Some(&key)).await.unwrap_err();
    assert!(
        error
            .reason
            .contains("rejected the API key (`OPENAI_API_KEY`)")
            && error.reason.contains(&path.display().to_string()),
        "{}",
        error.reason
    );
    assert!(!error.reason.contains("sk-proj-k1"), "{}", error.reason);
    assert!(sent.lock().unwrap().is_empty(), "no refresh");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // A new key in the file is used.
    write_doc(&path, &json!({"OPENAI_API_KEY": "sk-proj-k2"}));
    let key = cred.access_token(Some(&key)).await.unwrap();
    assert_eq!(key.expose(), "sk-proj-k2");
    tasks.abort_all();
}

/// The merge on its own: a document that does not parse gives way to a minimal one (the
/// rotated tokens must not be lost), and an absent id_token is not written.
#[test]
fn the_merge_writes_only_the_tokens_and_last_refresh() {
    let (a, r) = (Secret::new("at"), Secret::new("rt"));
    let update = Update {
        access: &a,
        refresh: &r,
        id_token: None,
        last_refresh_ms: 1_700_000_000_000,
    };
    let doc: Value = serde_json::from_slice(&merge(Some(b"not json"), &update).unwrap()).unwrap();
    assert_eq!(
        doc,
        json!({"tokens": {"access_token": "at", "refresh_token": "rt"},
               "last_refresh": "2023-11-14T22:13:20Z"})
    );
    let doc: Value = serde_json::from_slice(
        &merge(Some(br#"{"tokens": "x", "OPENAI_API_KEY": null}"#), &update).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["tokens"]["access_token"], "at");
    assert_eq!(doc["OPENAI_API_KEY"], Value::Null);
    assert_eq!(update.format(), LoginFormat::Codex);
}

/// A form-encoded token endpoint on 127.0.0.1 (the code exchange): records each body's
/// fields and answers with `handler`.
async fn form_endpoint(
    tasks: &mut tokio::task::JoinSet<()>,
    handler: Handler,
) -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let seen = sent.clone();
    let app = axum::Router::new().route(
        "/oauth/token",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            let handler = handler.clone();
            async move {
                let fields: serde_json::Map<String, Value> =
                    reqwest::Url::parse(&format!("http://x/?{body}"))
                        .unwrap()
                        .query_pairs()
                        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
                        .collect();
                let fields = Value::Object(fields);
                let kind = headers[axum::http::header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .to_owned();
                seen.lock().unwrap().push((kind, fields.clone()));
                let (status, answer) = handler(&fields);
                (status, axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
    tasks.spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, sent)
}

/// The code exchange (§7.3) sends the five fields form-encoded and reads the tokens; a
/// refusal and an answer without an access token are errors.
#[tokio::test]
async fn the_code_exchange_sends_the_form_and_reads_the_tokens() {
    let mut tasks = tokio::task::JoinSet::new();
    let handler: Handler = Arc::new(|fields| match fields["code"].as_str() {
        Some("good") => (
            StatusCode::OK,
            json!({"access_token": access("login", DAY_MS), "refresh_token": "rt-login",
                   "id_token": id_token("pro", "acct-1"), "expires_in": 864000}),
        ),
        Some("no-access") => (StatusCode::OK, json!({"refresh_token": "rt-only"})),
        _ => (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "bad code"}),
        ),
    });
    let (url, sent) = form_endpoint(&mut tasks, handler).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let redirect = "http://localhost:1455/auth/callback";
    let verifier = Secret::new("the-verifier+/=");

    let renewal = exchange_code(&http, &url, "good", redirect, &verifier)
        .await
        .unwrap();
    assert_eq!(name_of(renewal.access.as_ref().unwrap()), "login");
    assert_eq!(renewal.refresh.unwrap().expose(), "rt-login");
    let claims = id_claims(renewal.id_token.as_ref());
    assert_eq!(claims.account_id.as_deref(), Some("acct-1"));
    assert_eq!(claims.plan_type.as_deref(), Some("pro"));
    assert_eq!(claims.email.as_deref(), Some("alice@example.com"));
    {
        let sent = sent.lock().unwrap();
        assert_eq!(sent[0].0, "application/x-www-form-urlencoded");
        assert_eq!(
            sent[0].1,
            json!({"grant_type": "authorization_code", "client_id": CLIENT_ID, "code": "good",
                   "redirect_uri": redirect, "code_verifier": "the-verifier+/="})
        );
    }

    let refused = exchange_code(&http, &url, "spent", redirect, &verifier)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RefreshError::Http { status: 400, detail, .. } if detail.contains("invalid_grant")),
        "{refused:?}"
    );
    let unusable = exchange_code(&http, &url, "no-access", redirect, &verifier)
        .await
        .unwrap_err();
    assert!(
        matches!(unusable, RefreshError::BadResponse(_)),
        "{unusable:?}"
    );
    tasks.abort_all();
}

/// The document a login is stored as is Codex's own `auth.json` and reads back with
/// its account, plan, email and `last_refresh`.
#[test]
fn a_login_document_reads_back_as_a_codex_login() {
    let at = now_ms();
    let bytes = login_document(
        &Secret::new(access("login", DAY_MS)),
        &Secret::new("rt-login"),
        Some(&Secret::new(id_token("plus", "acct-1"))),
        Some("acct-1"),
        at,
    )
    .unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["auth_mode"], "chatgpt");
    assert_eq!(doc["OPENAI_API_KEY"], Value::Null);
    assert_eq!(doc["tokens"]["account_id"], "acct-1");
    let t = loaded(parse(&bytes));
    assert_eq!(name_of(&t.access), "login");
    assert_eq!(t.refresh.expose(), "rt-login");
    assert_eq!(t.account_id.as_deref(), Some("acct-1"));
    assert_eq!(t.subscription_type.as_deref(), Some("plus"));
    assert_eq!(t.email.as_deref(), Some("alice@example.com"));
    assert_eq!(t.last_refresh_ms, Some(at));
    assert!(!t.api_key);
    // Fresh: not due before the access token nears its expiry.
    assert!(refresh_at_ms(&t).unwrap() > now_ms() + DAY_MS / 2);

    // Without an id_token (an endpoint that sent none) it still loads.
    let bare = login_document(&Secret::new("at"), &Secret::new("rt"), None, None, at).unwrap();
    let t = loaded(parse(&bare));
    assert_eq!(t.access.expose(), "at");
    assert_eq!(t.account_id, None);
}

/// A Codex login Carpool stored (`carpool login codex`) is refreshed like the file and
/// saved back into the secret store as an `auth.json`, the account id kept; a stored
/// login replaced meanwhile wins.
#[tokio::test]
async fn a_stored_codex_login_is_refreshed_and_saved_back_into_the_secret_store() {
    use crate::secrets::{MemoryKeyring, SecretStore, StoreChoice};
    let mut tasks = tokio::task::JoinSet::new();
    let (url, sent) = endpoint(&mut tasks, Duration::ZERO, answers_new()).await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = Arc::new(SecretStore::with_keyring(
        dir.path(),
        StoreChoice::Auto,
        Arc::new(MemoryKeyring::default()),
    ));
    // Logged in 9 days ago: due.
    let bytes = login_document(
        &Secret::new(access("old", 2 * DAY_MS)),
        &Secret::new("rt-old"),
        Some(&Secret::new(id_token("plus", "acct-1"))),
        Some("acct-1"),
        now_ms() - 9 * DAY_MS,
    )
    .unwrap();
    let reference = secrets
        .store_new("cx", &Secret::new(String::from_utf8(bytes).unwrap()))
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let cred = Credential::stored(
        LoginFormat::Codex,
        "cx",
        secrets.clone(),
        reference.clone(),
        "http://127.0.0.1:9/backend-api/codex",
        &url,
        http,
    );
    assert_eq!(cred.status(), Status::Ready);
    assert_eq!(cred.account_id().as_deref(), Some("acct-1"));
    assert_eq!(cred.plan().0.as_deref(), Some("plus"));

    assert_eq!(name_of(&cred.access_token(None).await.unwrap()), "new");
    assert_eq!(sent.lock().unwrap()[0]["refresh_token"], "rt-old");
    let stored: Value =
        serde_json::from_str(secrets.get(&reference).unwrap().unwrap().expose()).unwrap();
    assert_eq!(stored["tokens"]["refresh_token"], "rt-new");
    assert_eq!(stored["tokens"]["account_id"], "acct-1");
    assert_eq!(stored["auth_mode"], "chatgpt");
    assert_eq!(cred.plan().0.as_deref(), Some("pro"), "the new id_token's");

    // A dead refresh token asks for a new `carpool login codex`.
    let (dead_url, _) = endpoint(
        &mut tasks,
        Duration::ZERO,
        Arc::new(|_| {
            (
                StatusCode::UNAUTHORIZED,
                json!({"error": {"code": "refresh_token_reused", "message": "reused"}}),
            )
        }),
    )
    .await;
    let old = login_document(
        &Secret::new(access("old", -1000)),
        &Secret::new("rt-dead"),
        None,
        Some("acct-1"),
        now_ms() - 9 * DAY_MS,
    )
    .unwrap();
    let dead_ref = secrets
        .store_new("dead", &Secret::new(String::from_utf8(old).unwrap()))
        .unwrap();
    let dead = Credential::stored(
        LoginFormat::Codex,
        "dead",
        secrets.clone(),
        dead_ref,
        "http://127.0.0.1:9/backend-api/codex",
        &dead_url,
        reqwest::Client::builder().no_proxy().build().unwrap(),
    );
    let error = dead.access_token(None).await.unwrap_err();
    let text = format!("{error:?} {}", dead.needs_attention().unwrap_or_default());
    assert!(text.contains("carpool login codex"), "{text}");
    assert!(!text.contains("rt-dead"), "{text}");
    tasks.abort_all();
}
