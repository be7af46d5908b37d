//! Logging in to add an account: OAuth 2 authorization code with PKCE (S256).
//!
//! The flow, whoever drives it (the management API, `carpool login claude`):
//!
//! 1. [`Logins::start`] makes a verifier, its challenge and a `state`, keeps them in
//!    memory for [`LOGIN_TTL`] under a random login id, and returns the authorize URL;
//! 2. the person opens it, logs in, and pastes back what the provider shows:
//!    `<code>#<state>` for Claude (docs/protocol.md §3), or the whole redirect URL;
//! 3. [`Logins::finish`] checks the state, exchanges the code at the token endpoint and
//!    reads the account's profile (email, plan). What it returns, [`Obtained`], becomes
//!    a login in Carpool's secret store ([`Obtained::document`]), in Claude Code's format.
//!
//! A pending login survives a wrong paste (a mismatched state, a refused code) so the
//! person can paste again, at most [`MAX_ATTEMPTS`] times; it is forgotten when it
//! succeeds or expires.
//!
//! [`Provider`] says what differs per provider. The ChatGPT/Codex login
//! ([`Provider::Codex`], docs/protocol.md §7.3) has OpenAI's endpoints, redirects to
//! `http://localhost:1455/auth/callback` (a listener there catches it,
//! `carpool login codex`; or the person pastes that address, the dashboard), exchanges the
//! code form-encoded without the state, and reads the account (id, plan, email) from the
//! id_token's claims; it is stored as an `auth.json`-shaped document
//! ([`LoginFormat::Codex`]). The pending logins, the checks and the callers are the same.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::codex;
use super::format::LoginFormat;
use super::oauth::{self, CLIENT_ID, OAUTH_BETA, RefreshError, USER_AGENT};
use crate::config::{CODEX_TOKEN_URL, CodexLoginEndpoints, DEFAULT_TOKEN_URL, LoginEndpoints};
use crate::secret::Secret;
use crate::tasks::lock;

/// How long a started login waits for its code. Authorization codes themselves live
/// for minutes; this leaves time to log in.
pub const LOGIN_TTL: Duration = Duration::from_secs(15 * 60);
/// Pastes a pending login accepts before it is dropped.
pub const MAX_ATTEMPTS: u32 = 5;
/// Most logins pending at once; starting another drops the oldest.
const MAX_PENDING: usize = 32;

/// Where the person is sent back: Anthropic's page that shows the code to paste
/// (docs/protocol.md §3, the manual flow).
pub const CLAUDE_REDIRECT_URI: &str = "https://platform.claude.com/oauth/code/callback";
/// What the login asks for: inference, the profile (email, plan) and Claude Code's
/// own scopes, as Claude Code does (docs/protocol.md §3, CPA's list). No
/// `org:create_api_key`: Carpool never makes API keys.
pub const CLAUDE_SCOPES: &str =
    "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload";
/// The port of the Codex login's redirect, `http://localhost:1455/auth/callback`: the
/// only one OpenAI's client accepts (docs/protocol.md §7.3).
pub const CODEX_CALLBACK_PORT: u16 = 1455;
/// The path of the Codex login's redirect.
pub const CODEX_CALLBACK_PATH: &str = "/auth/callback";
/// What the Codex login asks for (docs/protocol.md §7.3); `offline_access` brings the
/// refresh token.
pub const CODEX_SCOPES: &str = "openid profile email offline_access";
/// The longest profile answer read.
const MAX_PROFILE: usize = 64 << 10;

/// Who the person logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// A Claude account (Pro, Max, Team, Enterprise), with these endpoints.
    Claude(LoginEndpoints),
    /// A ChatGPT account's Codex login (Plus, Pro, Team, …), with these endpoints,
    /// redirected to `http://localhost:<port>/auth/callback` ([`Provider::codex`]: port
    /// [`CODEX_CALLBACK_PORT`]; another one only for tests and compatible providers).
    Codex {
        endpoints: CodexLoginEndpoints,
        port: u16,
    },
}

impl Provider {
    /// The Codex login with `endpoints`, redirected to port [`CODEX_CALLBACK_PORT`].
    pub fn codex(endpoints: CodexLoginEndpoints) -> Provider {
        Provider::Codex {
            endpoints,
            port: CODEX_CALLBACK_PORT,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Provider::Claude(_) => "claude",
            Provider::Codex { .. } => "codex",
        }
    }

    /// Where the new account refreshes its tokens.
    pub fn token_url(&self) -> &str {
        match self {
            Provider::Claude(e) => &e.token_url,
            Provider::Codex { endpoints, .. } => &endpoints.token_url,
        }
    }

    /// The token endpoint an account of this kind refreshes at when its config entry
    /// names none.
    pub fn default_token_url(&self) -> &'static str {
        match self {
            Provider::Claude(_) => DEFAULT_TOKEN_URL,
            Provider::Codex { .. } => CODEX_TOKEN_URL,
        }
    }

    /// The config entry's `type` of the account a login adds (`None`: the default, a
    /// Claude login).
    pub fn account_type(&self) -> Option<&'static str> {
        match self {
            Provider::Claude(_) => None,
            Provider::Codex { .. } => Some("codex"),
        }
    }

    /// The format of the document a login of this provider is stored as.
    pub fn format(&self) -> LoginFormat {
        match self {
            Provider::Claude(_) => LoginFormat::Claude,
            Provider::Codex { .. } => LoginFormat::Codex,
        }
    }

    /// Where the provider sends the person after they log in.
    pub fn redirect_uri(&self) -> String {
        match self {
            Provider::Claude(_) => CLAUDE_REDIRECT_URI.to_owned(),
            Provider::Codex { port, .. } => {
                format!("http://localhost:{port}{CODEX_CALLBACK_PATH}")
            }
        }
    }

    fn authorize_url(&self, challenge: &str, state: &str) -> String {
        match self {
            Provider::Claude(e) => {
                let mut url = reqwest::Url::parse(&e.authorize_url)
                    .expect("checked when the config was read");
                url.query_pairs_mut()
                    .append_pair("code", "true")
                    .append_pair("client_id", CLIENT_ID)
                    .append_pair("response_type", "code")
                    .append_pair("redirect_uri", CLAUDE_REDIRECT_URI)
                    .append_pair("scope", CLAUDE_SCOPES)
                    .append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256")
                    .append_pair("state", state);
                url.into()
            }
            // Codex CLI's parameters and order (docs/protocol.md §7.3).
            Provider::Codex { endpoints, .. } => {
                let mut url = reqwest::Url::parse(&endpoints.authorize_url)
                    .expect("checked when the config was read");
                url.query_pairs_mut()
                    .append_pair("response_type", "code")
                    .append_pair("client_id", codex::CLIENT_ID)
                    .append_pair("redirect_uri", &self.redirect_uri())
                    .append_pair("scope", CODEX_SCOPES)
                    .append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256")
                    .append_pair("id_token_add_organizations", "true")
                    .append_pair("codex_cli_simplified_flow", "true")
                    .append_pair("state", state);
                url.into()
            }
        }
    }

    async fn exchange(
        &self,
        http: &reqwest::Client,
        code: &str,
        verifier: &Secret,
        state: &Secret,
    ) -> Result<Obtained, LoginError> {
        match self {
            Provider::Claude(e) => {
                // Claude Code's key order (docs/protocol.md §3).
                let body = serde_json::json!({
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": CLAUDE_REDIRECT_URI,
                    "client_id": CLIENT_ID,
                    "code_verifier": verifier.expose(),
                    "state": state.expose(),
                });
                let answer = oauth::token_request(http, &e.token_url, &body)
                    .await
                    .map_err(exchange_error)?;
                let tokens = answer.tokens;
                let lifetime_ms = i64::try_from(tokens.expires_in.as_millis()).unwrap_or(i64::MAX);
                let profile = match claude_profile(http, &e.profile_url, &tokens.access).await {
                    Ok(profile) => profile,
                    Err(why) => {
                        // The login worked; the account is usable without its profile.
                        tracing::warn!(
                            "logged in, but the account's profile could not be read ({why}); adding it without its plan"
                        );
                        Profile::default()
                    }
                };
                Ok(Obtained {
                    format: LoginFormat::Claude,
                    access: tokens.access,
                    refresh: tokens.refresh.unwrap_or_default(),
                    id_token: None,
                    account_id: None,
                    expires_at_ms: now_ms().saturating_add(lifetime_ms),
                    scopes: tokens
                        .scopes
                        .unwrap_or_else(|| CLAUDE_SCOPES.split(' ').map(str::to_owned).collect()),
                    profile: Profile {
                        email: profile.email.or(answer.email),
                        ..profile
                    },
                })
            }
            Provider::Codex { endpoints, .. } => {
                let renewal = codex::exchange_code(
                    http,
                    &endpoints.token_url,
                    code,
                    &self.redirect_uri(),
                    verifier,
                )
                .await
                .map_err(exchange_error)?;
                let access = renewal.access.expect("checked by exchange_code");
                // The account, its plan and email are the id_token's claims (§7.1, §7.3).
                let claims = codex::id_claims(renewal.id_token.as_ref());
                if claims.account_id.is_none() {
                    tracing::warn!(
                        "logged in, but the id_token names no ChatGPT account; adding the account without its ChatGPT-Account-Id"
                    );
                }
                Ok(Obtained {
                    format: LoginFormat::Codex,
                    expires_at_ms: codex::jwt_exp_ms(&access).unwrap_or(0),
                    access,
                    refresh: renewal.refresh.unwrap_or_default(),
                    id_token: renewal.id_token,
                    account_id: claims.account_id,
                    scopes: CODEX_SCOPES.split(' ').map(str::to_owned).collect(),
                    profile: Profile {
                        email: claims.email,
                        plan: claims.plan_type,
                        rate_limit_tier: None,
                        organization: None,
                    },
                })
            }
        }
    }
}

/// A failed code exchange as a [`LoginError`]: a refusal (the provider's 4xx) means the
/// code is spent or wrong; anything else is the provider's trouble.
fn exchange_error(error: RefreshError) -> LoginError {
    match error {
        RefreshError::InvalidGrant(detail) => LoginError::CodeRefused(detail),
        RefreshError::Http { status, detail, .. } if status < 500 => {
            LoginError::CodeRefused(format!("HTTP {status}{detail}"))
        }
        other => LoginError::Provider(format!("the token endpoint: {other}")),
    }
}

/// What the profile says about the account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub email: Option<String>,
    /// `pro`, `max`, `team`, `enterprise` (Claude Code's `subscriptionType`).
    pub plan: Option<String>,
    /// e.g. `default_claude_max_20x` (Claude Code's `rateLimitTier`).
    pub rate_limit_tier: Option<String>,
    pub organization: Option<String>,
}

/// The tokens and profile a login obtained.
#[derive(Debug)]
pub struct Obtained {
    /// The document format it is stored in ([`Obtained::document`]).
    pub format: LoginFormat,
    pub access: Secret,
    /// Empty when the endpoint gave none (the account then lasts until the token expires).
    pub refresh: Secret,
    /// Codex: the OpenID id_token, kept in the document (its claims name the account).
    pub id_token: Option<Secret>,
    /// Codex: the ChatGPT account id (the id_token's `chatgpt_account_id`).
    pub account_id: Option<String>,
    /// Unix ms; 0 when unknown.
    pub expires_at_ms: i64,
    pub scopes: Vec<String>,
    pub profile: Profile,
}

impl Obtained {
    /// The login as the document Carpool stores, in [`Obtained::format`], read back by
    /// [`super::Credential`] like a file of that format. Claude: Claude Code's credentials
    /// format (docs/protocol.md §1.2), with the profile under `oauthAccount` as Claude
    /// Code names it in `~/.claude.json`. Codex: the `auth.json` Codex writes (§7.1).
    pub fn document(&self) -> Secret {
        match self.format {
            LoginFormat::Claude => self.claude_document(),
            LoginFormat::Codex => {
                let bytes = codex::login_document(
                    &self.access,
                    &self.refresh,
                    self.id_token.as_ref(),
                    self.account_id.as_deref(),
                    now_ms(),
                )
                .expect("the current time is a valid timestamp");
                Secret::new(String::from_utf8(bytes).expect("serde_json writes UTF-8"))
            }
        }
    }

    fn claude_document(&self) -> Secret {
        let mut oauth = serde_json::json!({
            "accessToken": self.access.expose(),
            "refreshToken": self.refresh.expose(),
            "expiresAt": self.expires_at_ms,
            "scopes": self.scopes,
        });
        let fields = oauth.as_object_mut().expect("an object");
        if let Some(plan) = &self.profile.plan {
            fields.insert("subscriptionType".into(), plan.clone().into());
        }
        if let Some(tier) = &self.profile.rate_limit_tier {
            fields.insert("rateLimitTier".into(), tier.clone().into());
        }
        let mut doc = serde_json::json!({ "claudeAiOauth": oauth });
        let mut account = serde_json::Map::new();
        if let Some(email) = &self.profile.email {
            account.insert("emailAddress".into(), email.clone().into());
        }
        if let Some(org) = &self.profile.organization {
            account.insert("organizationName".into(), org.clone().into());
        }
        if !account.is_empty() {
            doc[super::file::ACCOUNT_KEY] = account.into();
        }
        Secret::new(serde_json::to_string_pretty(&doc).expect("serializable"))
    }
}

/// Why a login could not finish. Messages say what to do; they hold no token or code.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "no login `{0}` is waiting: it finished, expired (logins wait {mins} minutes) or was never started; start a new one",
        mins = LOGIN_TTL.as_secs() / 60
    )]
    NotFound(String),
    #[error(
        "nothing to use in what was pasted: paste the code the login page shows (Claude's looks like `<code>#<state>`), or the whole address the browser was sent to after logging in (Codex's starts with `http://localhost:1455/auth/callback?code=`)"
    )]
    NoCode,
    #[error(
        "the pasted code belongs to another login: its state does not match this login's. Open this login's authorize URL again and paste the code it shows"
    )]
    StateMismatch,
    #[error(
        "the code was refused ({0}). A code works once and only for a few minutes: open the authorize URL again, log in, and paste the new code"
    )]
    CodeRefused(String),
    /// The provider could not be reached or answered with an error of its own.
    #[error("{0}; try again in a moment")]
    Provider(String),
}

/// The logins started and not finished yet, in memory only.
#[derive(Default)]
pub struct Logins {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    provider: Provider,
    /// The tag the new account gets.
    tag: String,
    options: AccountOptions,
    verifier: Secret,
    state: Secret,
    started: Instant,
    attempts: u32,
}

/// A started login: what the person opens, and until when it waits.
#[derive(Debug, Clone)]
pub struct Started {
    pub login_id: String,
    pub authorize_url: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Settings of the account a login adds, given when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountOptions {
    pub base_url: Option<String>,
    pub proxy: Option<String>,
}

/// A finished login: the account to add.
#[derive(Debug)]
pub struct Finished {
    pub tag: String,
    pub options: AccountOptions,
    pub provider: Provider,
    pub obtained: Obtained,
}

impl Logins {
    pub fn new() -> Logins {
        Logins::default()
    }

    /// Starts a login that will add the account `tag`.
    pub fn start(&self, provider: Provider, tag: &str, options: AccountOptions) -> Started {
        let verifier = Secret::new(random_b64(64));
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.expose().as_bytes()));
        let state = Secret::new(random_b64(32));
        let login_id = random_b64(16);
        let authorize_url = provider.authorize_url(&challenge, state.expose());
        let expires_at = SystemTime::now() + LOGIN_TTL;
        let mut pending = lock(&self.pending);
        sweep(&mut pending);
        while pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => pending.remove(&id),
                None => break,
            };
        }
        pending.insert(
            login_id.clone(),
            Pending {
                provider,
                tag: tag.to_owned(),
                options,
                verifier,
                state,
                started: Instant::now(),
                attempts: 0,
            },
        );
        Started {
            login_id,
            authorize_url,
            expires_at: unix_secs(expires_at),
        }
    }

    /// The tag a pending login will add, if it is still waiting.
    pub fn tag_of(&self, login_id: &str) -> Option<String> {
        let mut pending = lock(&self.pending);
        sweep(&mut pending);
        pending.get(login_id).map(|p| p.tag.clone())
    }

    /// Finishes the login `login_id` with what the person pasted: checks the state,
    /// exchanges the code, reads the profile. On a mistake the login keeps waiting
    /// (up to [`MAX_ATTEMPTS`] pastes).
    pub async fn finish(
        &self,
        login_id: &str,
        pasted: &str,
        http: &reqwest::Client,
    ) -> Result<Finished, LoginError> {
        // Taken out while it is being finished: a second paste meanwhile finds nothing.
        let mut login = {
            let mut pending = lock(&self.pending);
            sweep(&mut pending);
            pending
                .remove(login_id)
                .ok_or_else(|| LoginError::NotFound(login_id.to_owned()))?
        };
        login.attempts += 1;
        let result = async {
            let (code, state) = parse_paste(pasted).ok_or(LoginError::NoCode)?;
            if let Some(state) = state
                && !bool::from(state.as_bytes().ct_eq(login.state.expose().as_bytes()))
            {
                return Err(LoginError::StateMismatch);
            }
            login
                .provider
                .exchange(http, &code, &login.verifier, &login.state)
                .await
        }
        .await;
        match result {
            Ok(obtained) => Ok(Finished {
                tag: login.tag,
                options: login.options,
                provider: login.provider,
                obtained,
            }),
            Err(error) => {
                if login.attempts < MAX_ATTEMPTS {
                    lock(&self.pending).insert(login_id.to_owned(), login);
                }
                Err(error)
            }
        }
    }
}

/// Forgets the logins that expired.
fn sweep(pending: &mut HashMap<String, Pending>) {
    pending.retain(|_, p| p.started.elapsed() < LOGIN_TTL);
}

/// The code and, when given, the state from what the person pasted: `<code>#<state>`
/// (Claude's page), a bare code, or a redirect URL with `code` and `state` in its query
/// (a localhost redirect, as the Codex login has). Anything after a `&` in a pasted
/// code is dropped, as CRS does.
pub fn parse_paste(pasted: &str) -> Option<(String, Option<String>)> {
    let pasted = pasted.trim();
    if pasted.contains("://")
        && let Ok(url) = reqwest::Url::parse(pasted)
    {
        let get = |key: &str| {
            url.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
        };
        return get("code").map(|code| (code, get("state")));
    }
    let (code, state) = match pasted.split_once('#') {
        Some((code, state)) => (code, Some(state)),
        None => (pasted, None),
    };
    let code = code.split('&').next().unwrap_or("").trim();
    let state = state
        .map(|s| s.split('&').next().unwrap_or("").trim().to_owned())
        .filter(|s| !s.is_empty());
    (!code.is_empty()).then(|| (code.to_owned(), state))
}

#[derive(Deserialize, Default)]
struct ProfileAnswer {
    #[serde(default)]
    account: Option<ProfileAccount>,
    #[serde(default)]
    organization: Option<ProfileOrganization>,
}

#[derive(Deserialize, Default)]
struct ProfileAccount {
    email_address: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize, Default)]
struct ProfileOrganization {
    name: Option<String>,
    organization_type: Option<String>,
    rate_limit_tier: Option<String>,
}

/// Reads the account's profile (docs/protocol.md §3): email, plan, rate-limit tier.
async fn claude_profile(
    http: &reqwest::Client,
    url: &str,
    access: &Secret,
) -> Result<Profile, String> {
    let response = http
        .get(url)
        .bearer_auth(access.expose())
        .header("anthropic-beta", OAUTH_BETA)
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(http::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let bytes = crate::upstream::read_capped(response, MAX_PROFILE)
        .await
        .map_err(|e| e.to_string())?;
    let answer: ProfileAnswer =
        serde_json::from_slice(&bytes).map_err(|e| format!("not the expected JSON ({e})"))?;
    let account = answer.account.unwrap_or_default();
    let org = answer.organization.unwrap_or_default();
    Ok(Profile {
        email: account.email_address.or(account.email),
        plan: org.organization_type.as_deref().map(plan_of),
        rate_limit_tier: org.rate_limit_tier,
        organization: org.name,
    })
}

/// `claude_max` → `max`, as Claude Code writes `subscriptionType`.
fn plan_of(organization_type: &str) -> String {
    organization_type
        .strip_prefix("claude_")
        .unwrap_or(organization_type)
        .to_owned()
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    super::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claude() -> Provider {
        Provider::Claude(LoginEndpoints::claude())
    }

    #[test]
    fn the_authorize_url_carries_pkce_and_state() {
        let logins = Logins::new();
        let started = logins.start(claude(), "work", AccountOptions::default());
        let url = reqwest::Url::parse(&started.authorize_url).unwrap();
        assert_eq!(url.host_str(), Some("claude.ai"));
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], CLIENT_ID);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code"], "true");
        assert_eq!(q["redirect_uri"], CLAUDE_REDIRECT_URI);
        assert_eq!(q["code_challenge_method"], "S256");
        let pending = lock(&logins.pending);
        let login = &pending[&started.login_id];
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(login.verifier.expose().as_bytes()));
        assert_eq!(q["code_challenge"], expected);
        assert_eq!(q["state"], login.state.expose());
        assert!((43..=128).contains(&login.verifier.expose().len()));
        let left = started.expires_at - unix_secs(SystemTime::now());
        assert!((LOGIN_TTL.as_secs() as i64 - 5..=LOGIN_TTL.as_secs() as i64).contains(&left));
        drop(pending);
        assert_eq!(logins.tag_of(&started.login_id).as_deref(), Some("work"));
        let other = logins.start(claude(), "work", AccountOptions::default());
        assert_ne!(other.login_id, started.login_id);
        assert_ne!(other.authorize_url, started.authorize_url);
    }

    #[test]
    fn pastes_are_read_in_every_form() {
        let p = |s: &str| parse_paste(s);
        assert_eq!(p("abc#xyz"), Some(("abc".into(), Some("xyz".into()))));
        assert_eq!(p("  abc#xyz\n"), Some(("abc".into(), Some("xyz".into()))));
        assert_eq!(p("abc"), Some(("abc".into(), None)));
        assert_eq!(p("abc&foo=1#xyz"), Some(("abc".into(), Some("xyz".into()))));
        assert_eq!(
            p("http://localhost:1455/auth/callback?code=abc&state=xyz"),
            Some(("abc".into(), Some("xyz".into())))
        );
        assert_eq!(p("http://localhost:1455/auth/callback?state=xyz"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("#xyz"), None);
    }

    #[tokio::test]
    async fn a_wrong_state_is_refused_and_the_login_keeps_waiting_a_few_times() {
        let logins = Logins::new();
        let started = logins.start(claude(), "work", AccountOptions::default());
        // Nothing listens here: a state mismatch must be refused before any request.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for attempt in 1..=MAX_ATTEMPTS {
            let error = logins
                .finish(&started.login_id, "code#not-the-state", &http)
                .await
                .unwrap_err();
            assert!(matches!(error, LoginError::StateMismatch), "{error}");
            assert_eq!(
                logins.tag_of(&started.login_id).is_some(),
                attempt < MAX_ATTEMPTS,
                "attempt {attempt}"
            );
        }
        let error = logins
            .finish(&started.login_id, "code#x", &http)
            .await
            .unwrap_err();
        assert!(matches!(error, LoginError::NotFound(_)), "{error}");
        assert!(error.to_string().contains("start a new one"));
        let error = logins.finish("nope", "", &http).await.unwrap_err();
        assert!(matches!(error, LoginError::NotFound(_)));
    }

    #[test]
    fn the_stored_document_reads_back_as_a_login() {
        let obtained = Obtained {
            format: LoginFormat::Claude,
            access: Secret::new("sk-ant-oat01-a"),
            refresh: Secret::new("sk-ant-ort01-a"),
            id_token: None,
            account_id: None,
            expires_at_ms: 1_900_000_000_000,
            scopes: vec!["user:inference".into()],
            profile: Profile {
                email: Some("a@example.com".into()),
                plan: Some(plan_of("claude_max")),
                rate_limit_tier: Some("default_claude_max_20x".into()),
                organization: None,
            },
        };
        let doc = obtained.document();
        let super::super::file::FileRead::Loaded(t) =
            super::super::file::snapshot_of(doc.expose().as_bytes()).read
        else {
            panic!("loads")
        };
        assert_eq!(t.access.expose(), "sk-ant-oat01-a");
        assert_eq!(t.refresh.expose(), "sk-ant-ort01-a");
        assert_eq!(t.expires_at_ms, 1_900_000_000_000);
        assert_eq!(t.subscription_type.as_deref(), Some("max"));
        assert_eq!(t.rate_limit_tier.as_deref(), Some("default_claude_max_20x"));
        assert_eq!(t.email.as_deref(), Some("a@example.com"));
    }

    fn codex_at(authorize_url: &str, token_url: &str) -> Provider {
        Provider::Codex {
            endpoints: CodexLoginEndpoints {
                authorize_url: authorize_url.into(),
                token_url: token_url.into(),
            },
            port: 4567,
        }
    }

    #[test]
    fn the_codex_authorize_url_is_codex_clis() {
        let logins = Logins::new();
        let provider = Provider::codex(CodexLoginEndpoints::codex());
        assert_eq!(
            provider.redirect_uri(),
            "http://localhost:1455/auth/callback"
        );
        assert_eq!(provider.account_type(), Some("codex"));
        assert_eq!(provider.format(), LoginFormat::Codex);
        assert_eq!(provider.token_url(), CODEX_TOKEN_URL);
        let started = logins.start(provider, "cx", AccountOptions::default());
        let url = reqwest::Url::parse(&started.authorize_url).unwrap();
        assert_eq!(
            format!(
                "{}://{}{}",
                url.scheme(),
                url.host_str().unwrap(),
                url.path()
            ),
            "https://auth.openai.com/oauth/authorize"
        );
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "code_challenge",
                "code_challenge_method",
                "id_token_add_organizations",
                "codex_cli_simplified_flow",
                "state"
            ]
        );
        let q: HashMap<String, String> = q.into_iter().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "app_EMoamEEZ73f0CkXaXp7hrann");
        assert_eq!(q["redirect_uri"], "http://localhost:1455/auth/callback");
        assert_eq!(q["scope"], "openid profile email offline_access");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["id_token_add_organizations"], "true");
        assert_eq!(q["codex_cli_simplified_flow"], "true");
        let pending = lock(&logins.pending);
        let login = &pending[&started.login_id];
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(login.verifier.expose().as_bytes()));
        assert_eq!(q["code_challenge"], expected);
        assert_eq!(q["state"], login.state.expose());
        // Another port (tests): the redirect names it, for the authorize URL and the
        // exchange alike.
        assert_eq!(
            codex_at("http://127.0.0.1:1/a", "http://127.0.0.1:1/t").redirect_uri(),
            "http://localhost:4567/auth/callback"
        );
    }

    /// A token endpoint on 127.0.0.1 that takes the code `good` with the verifier whose
    /// challenge it was told, answers a JWT id_token with the account's claims, refuses
    /// the code `spent` and fails on `boom`. Returns its URL and the bodies sent.
    async fn codex_token_endpoint(
        tasks: &mut tokio::task::JoinSet<()>,
        challenge: std::sync::Arc<Mutex<String>>,
    ) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        let sent = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen = sent.clone();
        let app = axum::Router::new().route(
            "/oauth/token",
            axum::routing::post(move |body: String| {
                let seen = seen.clone();
                let challenge = challenge.clone();
                async move {
                    lock(&seen).push(body.clone());
                    let form: HashMap<String, String> =
                        reqwest::Url::parse(&format!("http://x/?{body}"))
                            .unwrap()
                            .query_pairs()
                            .into_owned()
                            .collect();
                    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                        Sha256::digest(form.get("code_verifier").cloned().unwrap_or_default()),
                    );
                    let b64 = |v: serde_json::Value| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(v.to_string().as_bytes())
                    };
                    let id_token = format!(
                        "{}.{}.sig",
                        b64(serde_json::json!({"alg": "RS256"})),
                        b64(serde_json::json!({"email": "cx@example.com",
                            "https://api.openai.com/auth": {"chatgpt_plan_type": "pro",
                                                            "chatgpt_account_id": "acct-9"}}))
                    );
                    match form.get("code").map(String::as_str) {
                        Some("good") if computed == *lock(&challenge) => (
                            http::StatusCode::OK,
                            axum::Json(serde_json::json!({"access_token": "at-login",
                                "refresh_token": "rt-login", "id_token": id_token})),
                        ),
                        Some("boom") => (
                            http::StatusCode::BAD_GATEWAY,
                            axum::Json(serde_json::json!({})),
                        ),
                        _ => (
                            http::StatusCode::BAD_REQUEST,
                            axum::Json(serde_json::json!({"error": "invalid_grant"})),
                        ),
                    }
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

    /// The Codex login from the pasted redirect: the state is checked, the code exchanged
    /// with its verifier at the redirect the authorize URL named, a refused code or a
    /// provider failure keeps the login waiting, and what it obtained is stored as an
    /// auth.json naming the account, its plan and email.
    #[tokio::test]
    async fn a_codex_login_finishes_from_the_pasted_redirect() {
        let mut tasks = tokio::task::JoinSet::new();
        let challenge = std::sync::Arc::new(Mutex::new(String::new()));
        let (token_url, sent) = codex_token_endpoint(&mut tasks, challenge.clone()).await;
        let logins = Logins::new();
        let started = logins.start(
            codex_at("http://127.0.0.1:1/oauth/authorize", &token_url),
            "cx",
            AccountOptions::default(),
        );
        let q: HashMap<String, String> = reqwest::Url::parse(&started.authorize_url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        *lock(&challenge) = q["code_challenge"].clone();
        let state = &q["state"];
        let redirect = |code: &str, state: &str| {
            format!("http://localhost:4567/auth/callback?code={code}&scope=openid&state={state}")
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();

        let error = logins
            .finish(&started.login_id, &redirect("good", "other"), &http)
            .await
            .unwrap_err();
        assert!(matches!(error, LoginError::StateMismatch), "{error}");
        assert!(lock(&sent).is_empty(), "refused before any exchange");
        let error = logins
            .finish(&started.login_id, &redirect("spent", state), &http)
            .await
            .unwrap_err();
        assert!(matches!(error, LoginError::CodeRefused(_)), "{error}");
        let error = logins
            .finish(&started.login_id, &redirect("boom", state), &http)
            .await
            .unwrap_err();
        assert!(matches!(error, LoginError::Provider(_)), "{error}");
        let error = logins
            .finish(
                &started.login_id,
                "http://localhost:4567/auth/callback?state=x",
                &http,
            )
            .await
            .unwrap_err();
        assert!(matches!(error, LoginError::NoCode), "{error}");

        let finished = logins
            .finish(&started.login_id, &redirect("good", state), &http)
            .await
            .unwrap();
        assert_eq!(finished.tag, "cx");
        assert_eq!(finished.provider.name(), "codex");
        let form: HashMap<String, String> =
            reqwest::Url::parse(&format!("http://x/?{}", lock(&sent).last().unwrap()))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["client_id"], codex::CLIENT_ID);
        assert_eq!(form["redirect_uri"], "http://localhost:4567/auth/callback");
        assert!(!form.contains_key("state"));
        let obtained = &finished.obtained;
        assert_eq!(obtained.account_id.as_deref(), Some("acct-9"));
        assert_eq!(obtained.profile.plan.as_deref(), Some("pro"));
        assert_eq!(obtained.profile.email.as_deref(), Some("cx@example.com"));
        assert!(
            !format!("{obtained:?}").contains("rt-login"),
            "secrets are redacted"
        );

        let doc = obtained.document();
        let super::super::file::FileRead::Loaded(t) =
            LoginFormat::Codex.parse(doc.expose().as_bytes())
        else {
            panic!("loads")
        };
        assert_eq!(t.access.expose(), "at-login");
        assert_eq!(t.refresh.expose(), "rt-login");
        assert_eq!(t.account_id.as_deref(), Some("acct-9"));
        assert_eq!(t.subscription_type.as_deref(), Some("pro"));
        assert!(t.last_refresh_ms.is_some());
        // Finished: the login is gone.
        assert!(logins.tag_of(&started.login_id).is_none());
        tasks.abort_all();
    }
}
