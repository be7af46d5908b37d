//! The headers an OpenAI request carries upstream: the client's that may cross
//! ([`crate::upstream::forwarded_request_headers`]: Codex's `originator`, `version`,
//! `session-id`, `x-codex-*`, `openai-beta`… pass; the client's credentials never do); then
//! the operator's `headers`; finally the account's credential, which nothing overrides:
//! `Authorization: Bearer <token or key>`, and for a ChatGPT login its
//! `ChatGPT-Account-Id` (docs/protocol.md §7.5). A client's own `chatgpt-account-id` is
//! dropped: it names the client's account, not the one Carpool sends the request with.
//!
//! **WebSocket upgrades** (Codex's `supports_websockets`, docs/protocol.md §7.4): the
//! client's `Upgrade: websocket` goes upstream with `Connection: upgrade` and its
//! `Sec-WebSocket-Key`/`-Version`, as sing-box ocm does, with
//! `OpenAI-Beta: responses_websockets=2026-02-06` when the client named no beta. Its
//! `Sec-WebSocket-Extensions` does not: without compression the frames stay readable,
//! so Carpool can read each answer's usage as it passes.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::upstream::{self, UpstreamAuth};

const ACCOUNT_ID: &str = "chatgpt-account-id";

/// The headers sent upstream for a client request.
pub fn request_headers(
    client: &HeaderMap,
    operator: &[(HeaderName, HeaderValue)],
    auth: UpstreamAuth<'_>,
) -> HeaderMap {
    let mut out = upstream::forwarded_request_headers(client, 5, |name| {
        name == ACCOUNT_ID || name == "sec-websocket-extensions"
    });
    let websocket = client
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if websocket {
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if !out.contains_key("openai-beta") {
            out.insert(
                "openai-beta",
                HeaderValue::from_static("responses_websockets=2026-02-06"),
            );
        }
    }
    upstream::apply_operator_headers(&mut out, operator);
    let (token, account) = match auth {
        UpstreamAuth::OAuth { token, account_id } => (token, account_id),
        UpstreamAuth::ApiKey(key) => (key, None),
    };
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token"));
    bearer.set_sensitive(true);
    out.insert(header::AUTHORIZATION, bearer);
    match account.and_then(|id| HeaderValue::from_str(id).ok()) {
        Some(id) => {
            out.insert(HeaderName::from_static(ACCOUNT_ID), id);
        }
        None => {
            out.remove(ACCOUNT_ID);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn client() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer carpool-user-token"),
            ("chatgpt-account-id", "client-account"),
            ("originator", "codex_cli_rs"),
            ("session-id", "s1"),
            ("x-codex-installation-id", "inst"),
            ("openai-beta", "responses=experimental"),
            ("connection", "keep-alive"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_chatgpt_login_sends_its_token_and_account_and_codex_headers_pass() {
        let token = Secret::new("access-token");
        let out = request_headers(
            &client(),
            &[],
            UpstreamAuth::OAuth {
                token: &token,
                account_id: Some("acct-1"),
            },
        );
        assert_eq!(out["authorization"], "Bearer access-token");
        assert!(out["authorization"].is_sensitive());
        assert_eq!(out["chatgpt-account-id"], "acct-1");
        assert_eq!(out["originator"], "codex_cli_rs");
        assert_eq!(out["session-id"], "s1");
        assert_eq!(out["x-codex-installation-id"], "inst");
        assert_eq!(out["openai-beta"], "responses=experimental");
        assert!(out.get("connection").is_none());
        assert!(!format!("{out:?}").contains("carpool-user-token"));
    }

    #[test]
    fn a_websocket_upgrade_crosses_without_compression_and_with_the_beta() {
        let mut client = client();
        client.remove("openai-beta");
        for (k, v) in [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ] {
            client.insert(k, v.parse().unwrap());
        }
        let key = Secret::new("sk-proj-key");
        let out = request_headers(&client, &[], UpstreamAuth::ApiKey(&key));
        assert_eq!(out["upgrade"], "websocket");
        assert_eq!(out["connection"], "upgrade");
        assert_eq!(out["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(out["sec-websocket-version"], "13");
        assert!(out.get("sec-websocket-extensions").is_none());
        assert_eq!(out["openai-beta"], "responses_websockets=2026-02-06");
        // Not an upgrade: none of it.
        let plain = request_headers(&super::tests::client(), &[], UpstreamAuth::ApiKey(&key));
        assert!(plain.get("upgrade").is_none());
        assert_eq!(plain["openai-beta"], "responses=experimental");
    }

    #[test]
    fn an_api_key_is_a_bearer_and_the_clients_account_never_crosses() {
        let key = Secret::new("sk-proj-key");
        let operator = [(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer operator"),
        )];
        let out = request_headers(&client(), &operator, UpstreamAuth::ApiKey(&key));
        assert_eq!(out["authorization"], "Bearer sk-proj-key");
        assert!(out.get("chatgpt-account-id").is_none());
    }
}
