//! A mock of OpenAI's login for Codex (docs/protocol.md §7.2, §7.3) on 127.0.0.1: the
//! authorize page, which checks Codex CLI's parameters and redirects to the login's
//! `redirect_uri` with a code and the state, as `auth.openai.com` does after the person
//! logs in; and the token endpoint, which exchanges a code (form-encoded, checking
//! every field and the PKCE verifier against the challenge) and refreshes (JSON, as
//! Codex does), handing out JWTs whose claims name the account, its plan and email.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Value, json};
use sha2::Digest as _;

pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
pub const ACCOUNT_ID: &str = "acct-mock-codex-1";
pub const EMAIL: &str = "codex@example.com";
pub const PLAN: &str = "pro";

#[derive(Default)]
pub struct CodexOAuthState {
    /// Codes the authorize page issued: code → (PKCE challenge, redirect_uri).
    codes: Mutex<HashMap<String, (String, String)>>,
    /// The authorize queries received.
    pub authorize_queries: Mutex<Vec<HashMap<String, String>>>,
    /// The forms of the code exchanges received.
    pub exchanges: Mutex<Vec<HashMap<String, String>>>,
    /// The JSON bodies of the refreshes received.
    pub refresh_bodies: Mutex<Vec<Value>>,
    /// Tokens handed out, newest last: (access, refresh).
    pub issued: Mutex<Vec<(String, String)>>,
    pub logins: AtomicUsize,
    pub refreshes: AtomicUsize,
    /// How long an access token the exchange hands out lives, in seconds (a short one
    /// makes the new account refresh at once).
    pub login_access_secs: Mutex<i64>,
}

#[derive(Clone)]
pub struct CodexOAuth {
    pub addr: SocketAddr,
    pub state: Arc<CodexOAuthState>,
}

impl CodexOAuth {
    pub async fn start() -> CodexOAuth {
        let state = Arc::new(CodexOAuthState {
            login_access_secs: Mutex::new(3600),
            ..CodexOAuthState::default()
        });
        let app = Router::new()
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/token", post(token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        CodexOAuth { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.url())
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url())
    }

    /// What a person does with an authorize URL: opens it and logs in. Returns where
    /// the browser is then sent: the login's redirect with `code` and `state`.
    pub async fn log_in(&self, authorize_url: &str) -> String {
        let response = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(authorize_url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "the authorize page refused the URL");
        response.headers()["location"].to_str().unwrap().to_owned()
    }

    pub fn last_issued(&self) -> Option<(String, String)> {
        self.state.issued.lock().unwrap().last().cloned()
    }

    pub fn logins(&self) -> usize {
        self.state.logins.load(Ordering::SeqCst)
    }

    pub fn refreshes(&self) -> usize {
        self.state.refreshes.load(Ordering::SeqCst)
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned JWT with `claims`.
pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.mock-signature",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// The id_token OpenAI hands out: the account, plan and email in its claims.
pub fn id_token() -> String {
    jwt(json!({
        "email": EMAIL,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": ACCOUNT_ID,
            "chatgpt_plan_type": PLAN,
            "chatgpt_user_id": "user-mock-1"
        }
    }))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn query_map(query: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://mock/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// The authorize page: Codex CLI's parameters (§7.3), else 400; then the redirect.
async fn authorize(
    State(state): State<Arc<CodexOAuthState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(&query.unwrap_or_default());
    state.authorize_queries.lock().unwrap().push(q.clone());
    let expected = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("scope", "openid profile email offline_access"),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
    ];
    for (key, value) in expected {
        if q.get(key).map(String::as_str) != Some(value) {
            return json_response(400, &json!({"error": "invalid_request", "field": key}));
        }
    }
    let (Some(challenge), Some(login_state), Some(redirect)) = (
        q.get("code_challenge"),
        q.get("state"),
        q.get("redirect_uri"),
    ) else {
        return json_response(400, &json!({"error": "invalid_request"}));
    };
    let code = format!("codex-code-{}", state.codes.lock().unwrap().len() + 1);
    state
        .codes
        .lock()
        .unwrap()
        .insert(code.clone(), (challenge.clone(), redirect.clone()));
    let mut location = reqwest::Url::parse(redirect).unwrap();
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("scope", "openid profile email offline_access")
        .append_pair("state", login_state);
    Response::builder()
        .status(302)
        .header("location", location.as_str())
        .body(Body::empty())
        .unwrap()
}

fn tokens(state: &CodexOAuthState, name: &str, access_secs: i64) -> Value {
    let access = jwt(json!({"name": name, "exp": now_secs() + access_secs,
                            "https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT_ID}}));
    let refresh = format!("rt-mock-{name}");
    state
        .issued
        .lock()
        .unwrap()
        .push((access.clone(), refresh.clone()));
    json!({"id_token": id_token(), "access_token": access, "refresh_token": refresh,
           "expires_in": access_secs, "token_type": "Bearer"})
}

/// The token endpoint: a form-encoded code exchange, or a JSON refresh.
async fn token(
    State(state): State<Arc<CodexOAuthState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let kind = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if kind.starts_with("application/x-www-form-urlencoded") {
        return exchange(&state, query_map(&body));
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    state.refresh_bodies.lock().unwrap().push(body.clone());
    let latest = state.issued.lock().unwrap().last().map(|(_, r)| r.clone());
    if body["grant_type"] != "refresh_token"
        || body["client_id"] != CLIENT_ID
        || body["refresh_token"].as_str() != latest.as_deref()
    {
        return json_response(
            401,
            &json!({"error": {"code": "refresh_token_invalidated", "message": "no such refresh token"}}),
        );
    }
    let n = state.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    json_response(200, &tokens(&state, &format!("refreshed-{n}"), 3600))
}

/// The code exchange (§7.3): every field, the code once, its redirect and verifier.
fn exchange(state: &CodexOAuthState, form: HashMap<String, String>) -> Response {
    state.exchanges.lock().unwrap().push(form.clone());
    let refused = |why: &str| {
        json_response(
            400,
            &json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
    {
        return json_response(400, &json!({"error": "invalid_request"}));
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((challenge, redirect)) = state.codes.lock().unwrap().remove(&code) else {
        return refused("unknown or used code");
    };
    if form.get("redirect_uri") != Some(&redirect) {
        return refused("redirect_uri does not match");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if b64(&sha2::Sha256::digest(verifier.as_bytes())) != challenge {
        return refused("code_verifier does not match");
    }
    let n = state.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let secs = *state.login_access_secs.lock().unwrap();
    json_response(200, &tokens(state, &format!("login-{n}"), secs))
}
