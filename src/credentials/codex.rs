//! Codex's login: `$CODEX_HOME/auth.json`, else `~/.codex/auth.json` (docs/protocol.md
//! §7.1), as a [`LoginFormat::Codex`]. Everything else a credential guarantees (the watch,
//! the single flight with its re-read, compare before replace, the atomic write-back
//! keeping the mode, back-off, final failures until the file changes, the keep-fresh
//! timer) is [`super::Credential`]'s, the same code as for Claude's file.
//!
//! ```json
//! {"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
//!  "tokens": {"id_token": "<JWT>", "access_token": "<JWT>", "refresh_token": "…",
//!             "account_id": "…"},
//!  "last_refresh": "2026-01-02T03:04:05.678Z", …}
//! ```
//!
//! * The login: `tokens.access_token` is the bearer, `tokens.account_id` (else the
//!   id_token's `https://api.openai.com/auth`.`chatgpt_account_id` claim) the
//!   `ChatGPT-Account-Id`; the plan is the claim `chatgpt_plan_type`, the email the claim
//!   `email` (else `https://api.openai.com/profile`.`email`). The JWTs' payloads are
//!   decoded **without verifying their signatures**: the file is our own login, written
//!   by Codex or by us, and nothing here decides whom to trust; a JWT that does not decode
//!   only loses those details (and the access token's expiry), not the login.
//! * API-key mode: a non-empty `OPENAI_API_KEY` with no `tokens` (or with `auth_mode`
//!   `apikey`, as Codex resolves it) is served as the bearer and never refreshed.
//! * When to refresh (§7.2): when `last_refresh` is missing (or unreadable) or older than
//!   [`REFRESH_INTERVAL_MS`] (8 days, Codex's and sing-box's interval), and, should the
//!   access token's JWT `exp` come first, one minute before it; and on a 401 from the
//!   upstream (the credential's rejected-token path, which re-reads the file first).
//! * The refresh: `POST https://auth.openai.com/oauth/token`, JSON `{client_id,
//!   grant_type: "refresh_token", refresh_token, scope: "openid profile email"}` (as
//!   sing-box sends it); the answer's `id_token`, `access_token` and `refresh_token` are
//!   each optional, a missing one keeps the old. The error codes
//!   `refresh_token_expired`, `refresh_token_reused` and `refresh_token_invalidated` (in
//!   the body's `error`, or `error.code`) are final until the file changes; any other
//!   failure backs off.
//! * Writing back changes only `tokens.id_token`, `tokens.access_token`,
//!   `tokens.refresh_token` and `last_refresh` (as Codex's own `persist_tokens` does),
//!   keeping every other field, known or not (`auth_mode`, `OPENAI_API_KEY`,
//!   `tokens.account_id`, …), their order and the file's mode, by a temporary file and a
//!   rename ([`super::file::write_back`]).

use std::io;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::file::{FileRead, OAuthTokens};
use super::format::{Change, LoginFormat, REFRESH_MARGIN_MS, Renewal};
use super::oauth::{RefreshError, TokenHttp, post_form, post_json};
use crate::secret::Secret;

/// Codex CLI's public OAuth client id (docs/protocol.md §7.2).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// OpenAI's token endpoint (docs/protocol.md §7.2).
pub const TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
/// The scope sing-box sends with a refresh (§7.2).
const SCOPE: &str = "openid profile email";
/// Refresh when `last_refresh` is older than this: 8 days, as Codex and sing-box do.
pub const REFRESH_INTERVAL_MS: i64 = 8 * 24 * 3_600_000;
/// The error codes that mean the refresh token is dead (Codex's
/// `classify_refresh_token_failure`, §7.2).
const FINAL_CODES: [&str; 3] = [
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
];
/// The id_token's namespaced claims.
const AUTH_CLAIMS: &str = "https://api.openai.com/auth";
const PROFILE_CLAIMS: &str = "https://api.openai.com/profile";

/// The payload of a JWT as JSON, decoded without verifying the signature (see the module
/// doc); `None` when it is not a JWT with a JSON object payload.
fn jwt_payload(jwt: &str) -> Option<Map<String, Value>> {
    let mut parts = jwt.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// What the id_token says about the account.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) struct IdClaims {
    pub email: Option<String>,
    pub plan_type: Option<String>,
    pub account_id: Option<String>,
}

pub(super) fn id_claims(id_token: Option<&Secret>) -> IdClaims {
    let Some(claims) = id_token.and_then(|t| jwt_payload(t.expose())) else {
        return IdClaims::default();
    };
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let auth = claims.get(AUTH_CLAIMS);
    IdClaims {
        email: text(claims.get("email"))
            .or_else(|| text(claims.get(PROFILE_CLAIMS).and_then(|p| p.get("email")))),
        plan_type: text(auth.and_then(|a| a.get("chatgpt_plan_type"))),
        account_id: text(auth.and_then(|a| a.get("chatgpt_account_id"))),
    }
}

/// The access token's `exp` as Unix ms; `None` when it is not a JWT with a numeric `exp`.
pub(super) fn jwt_exp_ms(token: &Secret) -> Option<i64> {
    let exp = jwt_payload(token.expose())?.get("exp")?.as_f64()?;
    (exp.is_finite() && exp > 0.0).then(|| (exp * 1000.0).min(i64::MAX as f64) as i64)
}

/// Codex's document ([`LoginFormat::Codex`]).
pub(super) fn parse(bytes: &[u8]) -> FileRead {
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        // serde_json's message names a line and column, never the content.
        Err(e) => return FileRead::Invalid(format!("not valid JSON ({e})")),
    };
    let Some(doc) = doc.as_object() else {
        return FileRead::Invalid("not a JSON object: not a Codex login".into());
    };
    let api_key = doc
        .get("OPENAI_API_KEY")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty());
    let tokens = doc.get("tokens").filter(|t| !t.is_null());
    let wants_key = doc.get("auth_mode").and_then(Value::as_str) == Some("apikey");
    if let Some(key) = api_key
        && (wants_key || tokens.is_none())
    {
        return FileRead::Loaded(OAuthTokens {
            access: Secret::new(key),
            api_key: true,
            ..OAuthTokens::default()
        });
    }
    let Some(tokens) = tokens else {
        return FileRead::Invalid(
            "holds neither `tokens` nor an `OPENAI_API_KEY`: not a Codex login (log in with `codex login`)"
                .into(),
        );
    };
    let Some(tokens) = tokens.as_object() else {
        return FileRead::Invalid("`tokens` is not an object".into());
    };
    let text = |key: &str| tokens.get(key).and_then(Value::as_str).unwrap_or("");
    let access = Secret::new(text("access_token"));
    if access.is_empty() {
        return FileRead::Invalid("`tokens.access_token` is missing or empty".into());
    }
    let id_token = Some(Secret::new(text("id_token"))).filter(|t| !t.is_empty());
    let claims = id_claims(id_token.as_ref());
    // Missing, null or not an RFC 3339 time: a refresh is due, and writes a good one.
    let last_refresh_ms = doc
        .get("last_refresh")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond());
    FileRead::Loaded(OAuthTokens {
        expires_at_ms: jwt_exp_ms(&access).unwrap_or(0),
        access,
        refresh: Secret::new(text("refresh_token")),
        subscription_type: claims.plan_type,
        rate_limit_tier: None,
        email: claims.email,
        id_token,
        account_id: Some(text("account_id"))
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .or(claims.account_id),
        last_refresh_ms,
        api_key: false,
    })
}

/// When a Codex login is due for a refresh (see the module doc); `None` for an API key
/// or a login without a refresh token, which are used until the upstream rejects them.
pub(super) fn refresh_at_ms(tokens: &OAuthTokens) -> Option<i64> {
    if tokens.api_key || tokens.refresh.is_empty() {
        return None;
    }
    let by_age = tokens
        .last_refresh_ms
        .map_or(0, |at| at.saturating_add(REFRESH_INTERVAL_MS));
    let by_expiry =
        (tokens.expires_at_ms != 0).then(|| tokens.expires_at_ms.saturating_sub(REFRESH_MARGIN_MS));
    Some(by_expiry.map_or(by_age, |at| at.min(by_age)))
}

/// Refreshes at Codex's token endpoint (see the module doc).
pub(super) async fn refresh(
    http: &reqwest::Client,
    token_url: &str,
    refresh_token: &Secret,
) -> Result<Renewal, RefreshError> {
    let body = serde_json::json!({
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
        "scope": SCOPE,
    });
    let answer = post_json(http.post(token_url), &body).await?;
    renewal_of(answer)
}

/// Exchanges a login's authorization code at Codex's token endpoint (docs/protocol.md
/// §7.3): form-urlencoded `grant_type=authorization_code`, `client_id`, `code`,
/// `redirect_uri` (the one the authorize URL named) and the PKCE `code_verifier`. The
/// answer is read as a refresh's ([`renewal_of`]); an access token is required.
pub(super) async fn exchange_code(
    http: &reqwest::Client,
    token_url: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &Secret,
) -> Result<Renewal, RefreshError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT_ID),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier.expose()),
    ];
    let answer = post_form(http.post(token_url), &form).await?;
    let renewal = renewal_of(answer)?;
    if renewal.access.is_none() {
        return Err(RefreshError::BadResponse("no access_token".into()));
    }
    Ok(renewal)
}

/// A new login as the `auth.json` document Codex itself writes after `codex login`
/// (docs/protocol.md §7.1): `auth_mode` `chatgpt`, no API key, the tokens with the
/// account id, and `last_refresh` at `now_ms`. Read back by [`parse`], refreshed and
/// merged back by the same code as a file's.
pub(super) fn login_document(
    access: &Secret,
    refresh: &Secret,
    id_token: Option<&Secret>,
    account_id: Option<&str>,
    now_ms: i64,
) -> io::Result<Vec<u8>> {
    let at = jiff::Timestamp::from_millisecond(now_ms)
        .map_err(|e| io::Error::other(format!("last_refresh: {e}")))?;
    let mut tokens = Map::new();
    tokens.insert(
        "id_token".into(),
        id_token.map(|t| t.expose()).unwrap_or_default().into(),
    );
    tokens.insert("access_token".into(), access.expose().into());
    tokens.insert("refresh_token".into(), refresh.expose().into());
    if let Some(account_id) = account_id {
        tokens.insert("account_id".into(), account_id.into());
    }
    let doc = serde_json::json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": tokens,
        "last_refresh": at.to_string(),
    });
    serde_json::to_vec_pretty(&doc).map_err(io::Error::other)
}

/// The answer of Codex's token endpoint as a [`Renewal`], or the error it means.
fn renewal_of(answer: TokenHttp) -> Result<Renewal, RefreshError> {
    let TokenHttp {
        status,
        retry_after,
        bytes,
    } = answer;
    if !status.is_success() {
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
        // `{"error": "code", "error_description": "…"}` or `{"error": {"code": "…",
        // "message": "…"}}`; only the code and its description are ever shown.
        let error = body.get("error");
        let code = match error {
            Some(Value::String(code)) => code.clone(),
            other => text(other.and_then(|e| e.get("code"))),
        };
        let description = match text(body.get("error_description")) {
            d if d.is_empty() => text(error.and_then(|e| e.get("message"))),
            d => d,
        };
        let mut detail = match (code.is_empty(), description.is_empty()) {
            (true, _) => String::new(),
            (false, true) => format!(": {code}"),
            (false, false) => format!(": {code}: {description}"),
        };
        detail.truncate(300);
        if FINAL_CODES.contains(&code.as_str()) {
            return Err(RefreshError::InvalidGrant(
                detail.trim_start_matches(": ").into(),
            ));
        }
        return Err(RefreshError::Http {
            status: status.as_u16(),
            detail,
            retry_after,
        });
    }
    let parsed: Value = serde_json::from_slice(&bytes)
        .map_err(|e| RefreshError::BadResponse(format!("not the expected JSON ({e})")))?;
    let token = |key: &str| {
        parsed
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Secret::new)
    };
    let renewal = Renewal {
        access: token("access_token"),
        refresh: token("refresh_token"),
        id_token: token("id_token"),
        // The access token's own `exp` is what counts (see `renewed`).
        expires_in: None,
        scopes: None,
    };
    if renewal.access.is_none() && renewal.refresh.is_none() && renewal.id_token.is_none() {
        return Err(RefreshError::BadResponse("no tokens in it".into()));
    }
    Ok(renewal)
}

/// The tokens after a refresh of `old` answered `new`, at `now_ms`.
pub(super) fn renewed(old: &OAuthTokens, new: Renewal, now_ms: i64) -> OAuthTokens {
    let access = new.access.unwrap_or_else(|| old.access.clone());
    let id_token = new.id_token.or_else(|| old.id_token.clone());
    let claims = id_claims(id_token.as_ref());
    OAuthTokens {
        expires_at_ms: jwt_exp_ms(&access).unwrap_or(0),
        access,
        refresh: new.refresh.unwrap_or_else(|| old.refresh.clone()),
        subscription_type: claims.plan_type.or_else(|| old.subscription_type.clone()),
        rate_limit_tier: None,
        email: claims.email.or_else(|| old.email.clone()),
        id_token,
        // The file's `tokens.account_id` is not rewritten; the claim only fills a gap.
        account_id: old.account_id.clone().or(claims.account_id),
        last_refresh_ms: Some(now_ms),
        api_key: false,
    }
}

/// Refreshed tokens to save into `auth.json`.
pub(super) struct Update<'a> {
    pub access: &'a Secret,
    pub refresh: &'a Secret,
    pub id_token: Option<&'a Secret>,
    /// Unix ms, written as RFC 3339 UTC.
    pub last_refresh_ms: i64,
}

impl Change for Update<'_> {
    fn format(&self) -> LoginFormat {
        LoginFormat::Codex
    }

    fn apply(&self, current: Option<&[u8]>) -> io::Result<Vec<u8>> {
        merge(current, self)
    }
}

/// The document `current` (`None`: none yet) with `update`'s tokens in `tokens` and its
/// time in `last_refresh`, every other field and the key order kept. A document that does
/// not parse gives way to a minimal one: the refresh token has rotated and the old one
/// is revoked, so dropping the new one would lose the account.
pub(super) fn merge(current: Option<&[u8]>, update: &Update<'_>) -> io::Result<Vec<u8>> {
    let mut doc = current
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let root = doc.as_object_mut().expect("checked above");
    let tokens = root
        .entry("tokens")
        .or_insert_with(|| Value::Object(Map::new()));
    if !tokens.is_object() {
        *tokens = Value::Object(Map::new());
    }
    let tokens = tokens.as_object_mut().expect("set above");
    if let Some(id_token) = update.id_token {
        tokens.insert("id_token".into(), id_token.expose().into());
    }
    tokens.insert("access_token".into(), update.access.expose().into());
    tokens.insert("refresh_token".into(), update.refresh.expose().into());
    let at = jiff::Timestamp::from_millisecond(update.last_refresh_ms)
        .map_err(|e| io::Error::other(format!("last_refresh: {e}")))?;
    root.insert("last_refresh".into(), at.to_string().into());
    serde_json::to_vec_pretty(&doc).map_err(io::Error::other)
}

#[cfg(test)]
mod tests;
