//! The OAuth refresh call to Anthropic's token endpoint (docs/protocol.md §2). Its answer is
//! read whole but at most 64 KiB ([`MAX_TOKEN_RESPONSE`]); [`post_json`], which does that,
//! serves Codex's refresh too ([`super::codex`]).

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::upstream::CappedRead;

use crate::secret::Secret;

/// Claude Code's public OAuth client id (docs/protocol.md §2.1; same in every implementation).
pub const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

/// Sent as `User-Agent` to the token endpoint. Which one it wants is unconfirmed
/// (docs/protocol.md §2.1); this is the form current Claude Code uses for itself.
pub const USER_AGENT: &str = "claude-cli/2.1.330 (external, cli)";

/// Anthropic accepts OAuth (subscription) access tokens only with this beta
/// (`anthropic-beta`), on relayed requests and on the usage endpoint alike.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// Used when the endpoint does not say how long the new access token lives.
const DEFAULT_EXPIRES_IN: u64 = 3600;
/// The longest token-endpoint answer read (real ones are about 1 KiB); the rest of a
/// longer one is not read.
const MAX_TOKEN_RESPONSE: usize = 64 << 10;
/// Bounds for the lifetime the endpoint announces (`expires_in`), which is trusted no
/// further than this: a huge value must not overflow the expiry time, and zero or a
/// negative one must not make every request refresh (and rotate) again. The floor is
/// well above the one-minute refresh margin for that reason.
const MIN_EXPIRES_IN: u64 = 5 * 60;
const MAX_EXPIRES_IN: u64 = 365 * 24 * 3600;

#[derive(Debug)]
pub struct Refreshed {
    pub access: Secret,
    /// The rotated refresh token; `None` means keep the old one.
    pub refresh: Option<Secret>,
    pub expires_in: Duration,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The refresh token is dead (revoked, rotated by someone else, expired): Anthropic's
    /// `invalid_grant`, Codex's `refresh_token_expired` / `_reused` / `_invalidated`.
    /// Only a new login fixes that.
    /// The credential adds how to log in again, which depends on where the login is.
    #[error("the refresh token was rejected ({0})")]
    InvalidGrant(String),
    #[error("the token endpoint answered HTTP {status}{detail}")]
    Http {
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the token endpoint: {0}")]
    Transport(String),
    #[error("the token endpoint sent an unusable answer: {0}")]
    BadResponse(String),
}

impl RefreshError {
    pub fn is_terminal(&self) -> bool {
        matches!(self, RefreshError::InvalidGrant(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RefreshError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
    /// Any JSON number (or none): a float or a negative number must not make an
    /// otherwise good answer unusable, the refresh token having rotated already.
    expires_in: Option<serde_json::Number>,
    scope: Option<String>,
    account: Option<TokenAccount>,
}

#[derive(Deserialize)]
struct TokenAccount {
    email_address: Option<String>,
}

/// `expires_in` as a lifetime within [`MIN_EXPIRES_IN`]..=[`MAX_EXPIRES_IN`].
fn lifetime(expires_in: Option<&serde_json::Number>) -> Duration {
    let secs = match expires_in.and_then(serde_json::Number::as_f64) {
        Some(s) if s.is_finite() => s.clamp(MIN_EXPIRES_IN as f64, MAX_EXPIRES_IN as f64) as u64,
        _ => DEFAULT_EXPIRES_IN,
    };
    Duration::from_secs(secs)
}

/// OAuth error bodies: `{"error": "invalid_grant", "error_description": "…"}`. Only these
/// two fields are ever shown, so nothing else the endpoint echoes can leak.
#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn refresh(
    http: &reqwest::Client,
    token_url: &str,
    refresh_token: &Secret,
) -> Result<Refreshed, RefreshError> {
    let body = serde_json::json!({
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
        "client_id": CLIENT_ID,
    });
    let answer = token_request(http, token_url, &body).await?;
    Ok(answer.tokens)
}

/// A token endpoint's answer as it came: its status, `Retry-After` (seconds) and body.
pub struct TokenHttp {
    pub status: http::StatusCode,
    pub retry_after: Option<Duration>,
    /// The body, at most [`MAX_TOKEN_RESPONSE`] bytes; empty for an error status whose
    /// body was longer.
    pub bytes: Bytes,
}

/// Sends `request` (a POST to a token endpoint, with the caller's headers) with `body`
/// as JSON, and reads the answer whole but capped. Used by every login format's refresh.
pub async fn post_json(
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<TokenHttp, RefreshError> {
    send_capped(request.json(body)).await
}

/// Like [`post_json`], with `pairs` as an `application/x-www-form-urlencoded` body (the
/// Codex login's code exchange, docs/protocol.md §7.3).
pub async fn post_form(
    request: reqwest::RequestBuilder,
    pairs: &[(&str, &str)],
) -> Result<TokenHttp, RefreshError> {
    // `Url`'s query serializer is the form-urlencoded one (the `url` crate's
    // `form_urlencoded`), which saves a dependency for one body.
    let mut encoder = reqwest::Url::parse("http://form.invalid/").expect("a valid URL");
    encoder.query_pairs_mut().extend_pairs(pairs);
    let body = encoder.query().unwrap_or_default().to_owned();
    send_capped(
        request
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body),
    )
    .await
}

/// Sends a token request and reads the answer whole but capped.
async fn send_capped(request: reqwest::RequestBuilder) -> Result<TokenHttp, RefreshError> {
    let response = request
        .header(http::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| RefreshError::Transport(e.without_url().to_string()))?;

    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = match crate::upstream::read_capped(response, MAX_TOKEN_RESPONSE).await {
        Ok(bytes) => bytes,
        Err(CappedRead::Broken(e)) => return Err(RefreshError::Transport(e.to_string())),
        // An error status is reported as such, whatever came with it.
        Err(CappedRead::TooLong(_)) if !status.is_success() => Bytes::new(),
        Err(e @ CappedRead::TooLong(_)) => return Err(RefreshError::BadResponse(e.to_string())),
    };
    Ok(TokenHttp {
        status,
        retry_after,
        bytes,
    })
}

/// A token endpoint's answer: the tokens, and the account it names (docs/protocol.md
/// §2.2), which a login uses when the profile cannot be read.
#[derive(Debug)]
pub struct TokenAnswer {
    pub tokens: Refreshed,
    /// `account.email_address`.
    pub email: Option<String>,
}

/// POSTs `body` as JSON to the token endpoint and reads its answer (refresh and login
/// alike). Error answers are reduced to `error` and `error_description`.
pub async fn token_request(
    http: &reqwest::Client,
    token_url: &str,
    body: &serde_json::Value,
) -> Result<TokenAnswer, RefreshError> {
    let request = http
        .post(token_url)
        .header(http::header::USER_AGENT, USER_AGENT);
    let TokenHttp {
        status,
        retry_after,
        bytes,
    } = post_json(request, body).await?;

    if !status.is_success() {
        let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = err.error.unwrap_or_default();
        let mut detail = match (code.is_empty(), err.error_description) {
            (true, _) => String::new(),
            (false, Some(d)) => format!(": {code}: {d}"),
            (false, None) => format!(": {code}"),
        };
        detail.truncate(300);
        if code == "invalid_grant" {
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

    let parsed: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|e| RefreshError::BadResponse(format!("not the expected JSON ({e})")))?;
    let access = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RefreshError::BadResponse("no access_token".into()))?;
    Ok(TokenAnswer {
        tokens: Refreshed {
            access: Secret::new(access),
            refresh: parsed
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            expires_in: lifetime(parsed.expires_in.as_ref()),
            scopes: parsed
                .scope
                .map(|s| s.split_whitespace().map(str::to_owned).collect()),
        },
        email: parsed.account.and_then(|a| a.email_address),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(text: &str) -> Duration {
        let parsed: TokenResponse = serde_json::from_str(text).unwrap();
        lifetime(parsed.expires_in.as_ref())
    }

    #[test]
    fn the_announced_lifetime_is_kept_within_sane_bounds() {
        let min = Duration::from_secs(MIN_EXPIRES_IN);
        let max = Duration::from_secs(MAX_EXPIRES_IN);
        assert_eq!(
            from_json(r#"{"expires_in": 28800}"#),
            Duration::from_secs(28800)
        );
        assert_eq!(
            from_json(r#"{"expires_in": 28800.9}"#),
            Duration::from_secs(28800)
        );
        assert_eq!(from_json(r#"{"expires_in": 0}"#), min);
        assert_eq!(from_json(r#"{"expires_in": -5}"#), min);
        assert_eq!(from_json(r#"{"expires_in": -1e300}"#), min);
        assert_eq!(from_json(r#"{"expires_in": 18446744073709551615}"#), max);
        assert_eq!(from_json(r#"{"expires_in": 1e300}"#), max);
        assert_eq!(from_json(r#"{}"#), Duration::from_secs(DEFAULT_EXPIRES_IN));
        // The expiry computed from the largest lifetime fits easily.
        let ms = i64::try_from(max.as_millis()).unwrap();
        assert!(ms.checked_add(4_102_444_800_000).is_some());
    }
}
