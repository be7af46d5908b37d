//! The headers an Anthropic request carries upstream: the client's that may cross
//! ([`crate::upstream::forwarded_request_headers`]); then `anthropic-beta`, which gets the
//! OAuth beta Anthropic requires for subscription tokens; then the operator's `headers`;
//! finally the account's credential, which nothing overrides: `Authorization: Bearer
//! <token>` for an OAuth login, `x-api-key` for an API key.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::credentials::oauth::OAUTH_BETA;
use crate::upstream::{self, UpstreamAuth};

const BETA: &str = "anthropic-beta";

/// The headers sent upstream for a client request.
pub fn request_headers(
    client: &HeaderMap,
    operator: &[(HeaderName, HeaderValue)],
    auth: UpstreamAuth<'_>,
) -> HeaderMap {
    // The beta list and the credential are set below.
    let mut out = upstream::forwarded_request_headers(client, 2, |name| name == BETA);

    // Several anthropic-beta headers mean one comma-separated list.
    let client_betas: Vec<&str> = client
        .get_all(BETA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    let beta = if client_betas.contains(&OAUTH_BETA) || matches!(auth, UpstreamAuth::ApiKey(_)) {
        client_betas.join(",")
    } else {
        std::iter::once(OAUTH_BETA)
            .chain(client_betas)
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Ok(v) = HeaderValue::from_str(&beta)
        && !beta.is_empty()
    {
        out.insert(BETA, v);
    }

    upstream::apply_operator_headers(&mut out, operator);

    let (name, mut value) = match auth {
        UpstreamAuth::OAuth { token, .. } => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token")),
        ),
        UpstreamAuth::ApiKey(key) => (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_str(key.expose())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid-key")),
        ),
    };
    value.set_sensitive(true);
    out.insert(name, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn credentials_and_hop_headers_never_go_upstream() {
        let client = map(&[
            ("authorization", "Bearer cpk-user-token"),
            ("x-api-key", "cpk-user-token"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("host", "carpool.local"),
            ("expect", "100-continue"),
            ("accept-encoding", "br"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("anthropic-version", "2023-06-01"),
            ("x-claude-code-session-id", "abc"),
            ("user-agent", "claude-cli/2.1.330 (external, cli)"),
        ]);
        let out = request_headers(
            &client,
            &[],
            UpstreamAuth::oauth(&Secret::new("sk-ant-oat01-acct")),
        );
        assert_eq!(out["authorization"], "Bearer sk-ant-oat01-acct");
        assert!(out["authorization"].is_sensitive());
        for gone in [
            "x-api-key",
            "connection",
            "x-custom-hop",
            "host",
            "expect",
            "accept-encoding",
            "cf-connecting-ip",
            "x-forwarded-for",
        ] {
            assert!(!out.contains_key(gone), "{gone} leaked");
        }
        assert_eq!(out["anthropic-version"], "2023-06-01");
        assert_eq!(out["x-claude-code-session-id"], "abc");
        assert_eq!(out["user-agent"], "claude-cli/2.1.330 (external, cli)");
        assert!(!format!("{out:?}").contains("cpk-user-token"));
    }

    #[test]
    fn no_client_credential_of_any_kind_goes_upstream() {
        let client = map(&[
            ("cookie", "session=abc"),
            ("anthropic-api-key", "sk-ant-api03-x"),
            ("openai-api-key", "sk-x"),
            ("x-goog-api-key", "g"),
            ("api-key", "azure"),
            ("x-amz-security-token", "aws"),
            ("x-goog-iam-authorization-token", "gcp"),
            ("ocp-apim-subscription-key", "azure"),
            ("x-auth-token", "t"),
            ("x-client-secret", "s"),
            ("x-credential", "c"),
            ("x-authorization", "Bearer y"),
            ("anthropic-version", "2023-06-01"),
            ("x-stainless-retry-count", "0"),
            ("x-app", "cli"),
            ("idempotency-key", "k-1"),
        ]);
        let out = request_headers(&client, &[], UpstreamAuth::oauth(&Secret::new("acct")));
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "anthropic-version",
                "x-stainless-retry-count",
                "x-app",
                "idempotency-key",
                "anthropic-beta",
                "authorization"
            ]
        );
        assert_eq!(out["authorization"], "Bearer acct");
    }

    #[test]
    fn oauth_beta_is_prepended_once() {
        let secret = Secret::new("t");
        let none = request_headers(&HeaderMap::new(), &[], UpstreamAuth::oauth(&secret));
        assert_eq!(none["anthropic-beta"], OAUTH_BETA);
        let some = request_headers(
            &map(&[(
                "anthropic-beta",
                "claude-code-20250219, context-1m-2025-08-07",
            )]),
            &[],
            UpstreamAuth::oauth(&secret),
        );
        assert_eq!(
            some["anthropic-beta"],
            "oauth-2025-04-20,claude-code-20250219,context-1m-2025-08-07"
        );
        let already = request_headers(
            &map(&[
                ("anthropic-beta", "a"),
                ("anthropic-beta", "oauth-2025-04-20"),
            ]),
            &[],
            UpstreamAuth::oauth(&secret),
        );
        assert_eq!(already["anthropic-beta"], "a,oauth-2025-04-20");
    }

    #[test]
    fn api_keys_go_as_x_api_key_without_the_oauth_beta() {
        let key = Secret::new("sk-ant-api03-key");
        let client = map(&[
            ("authorization", "Bearer cpk-user-token"),
            ("anthropic-beta", "context-1m-2025-08-07"),
        ]);
        let out = request_headers(&client, &[], UpstreamAuth::ApiKey(&key));
        assert_eq!(out["x-api-key"], "sk-ant-api03-key");
        assert!(out.get("authorization").is_none());
        assert_eq!(out["anthropic-beta"], "context-1m-2025-08-07");
        let bare = request_headers(&HeaderMap::new(), &[], UpstreamAuth::ApiKey(&key));
        assert!(bare.get("anthropic-beta").is_none());
    }

    #[test]
    fn operator_headers_replace_client_ones_but_not_authorization() {
        let client = map(&[("user-agent", "client"), ("x-keep", "1")]);
        let operator = vec![
            (
                HeaderName::from_static("user-agent"),
                HeaderValue::from_static("op"),
            ),
            (
                HeaderName::from_static("x-multi"),
                HeaderValue::from_static("a"),
            ),
            (
                HeaderName::from_static("x-multi"),
                HeaderValue::from_static("b"),
            ),
        ];
        let out = request_headers(&client, &operator, UpstreamAuth::oauth(&Secret::new("tok")));
        assert_eq!(out["user-agent"], "op");
        assert_eq!(out["x-keep"], "1");
        let multi: Vec<_> = out.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(out["authorization"], "Bearer tok");
    }
}
