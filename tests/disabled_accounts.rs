//! Accounts the provider disabled, and short 429s, with the upstream's real error
//! shapes (docs/protocol.md §8.2, §4.2, §5.4).
//!
//! A refusal for good (organization disabled, OAuth not allowed for it, account
//! suspended) quarantines the account with the reason: the request fails over before any
//! byte reached the client, the account is not tried again until its login changes or
//! its owner clears it, and the status says why. A 429 without a reset time pauses an
//! account for a minute at most, whatever its `retry-after` says.

mod common;

use common::fleet::{Fleet, access, account_status, ok, refresh, send};
use common::mock::Reply;
use common::*;
use serde_json::json;

fn unix_now() -> i64 {
    now_ms() / 1000
}

/// An Anthropic error answer.
fn error(status: u16, kind: &str, message: &str, headers: &[(&str, &str)]) -> (Reply, String) {
    let body = json!({"type":"error","error":{"type":kind,"message":message},"request_id":"req_011CDisabled"})
        .to_string();
    let mut all = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("request-id".to_owned(), "req_011CDisabled".to_owned()),
    ];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let reply = Reply::Status {
        status,
        headers: all,
        body: body.clone(),
    };
    (reply, body)
}

const ORG_DISABLED: &str = "This organization has been disabled.";

#[tokio::test]
async fn a_disabled_organization_fails_over_and_stays_out_until_a_new_login() {
    let fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    fleet.mocks[0].push(error(403, "permission_error", ORG_DISABLED, &[]).0);
    let carpool = fleet.start().await;
    let before = unix_now();

    // The client does not notice: the second account answers.
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [1, 1]);
    let state = account_status(&carpool, "a0")["state"].clone();
    assert_eq!(state["state"], "disabled", "{state}");
    assert_eq!(state["reason"], ORG_DISABLED);
    let since = state["since"].as_i64().unwrap();
    assert!((before..=unix_now()).contains(&since), "{state}");

    // Never picked again, however many requests come (the fallback pool would start
    // with it).
    for _ in 0..5 {
        ok(&carpool, None).await;
    }
    assert_eq!(fleet.served(), [1, 6]);

    // The file is rewritten with the same login (a later expiry): still out.
    let path = fleet.cred_path(0);
    write_credentials(&path, &access(0), &refresh(0), now_ms() + 9 * HOUR_MS);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(account_status(&carpool, "a0")["state"]["state"], "disabled");
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [1, 7]);

    // Its owner logs in again: a new login in the file brings it back.
    let fresh = "sk-ant-oat01-fleet-account-0-relogin";
    fleet.mocks[0].set_valid_access(fresh);
    write_credentials(
        &path,
        fresh,
        "sk-ant-ort01-fleet-0-relogin",
        now_ms() + 8 * HOUR_MS,
    );
    assert!(
        eventually(5, || async {
            account_status(&carpool, "a0")["state"]["state"] == "ready"
        })
        .await,
        "{}",
        account_status(&carpool, "a0")["state"]
    );
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [2, 7]);
    carpool.shutdown().await;
}

#[tokio::test]
async fn with_no_other_account_the_refusal_reaches_the_client_as_it_came() {
    let setup = Setup::new().await;
    let message = "OAuth authentication is currently not allowed for this organization.";
    let (reply, body) = error(400, "invalid_request_error", message, &[]);
    setup.mock.push(reply);
    let carpool = setup.start().await;
    let r = ask(&carpool, false).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["request-id"], "req_011CDisabled");
    assert_eq!(r.text().await.unwrap(), body);

    // From then on the account is out without asking upstream: the user is sent to the
    // owner at once, and the owner's status says why.
    let r = ask(&carpool, false).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let text = r.text().await.unwrap();
    assert!(text.contains("owner"), "{text}");
    assert!(!text.contains("`main`"), "{text}");
    assert_eq!(setup.mock.messages(), 1);
    let status = serde_json::to_value(carpool.engine.status()).unwrap();
    assert_eq!(status["accounts"][0]["state"]["state"], "disabled");
    assert_eq!(status["accounts"][0]["state"]["reason"], message);

    // The owner clears it (the coming management API): it is used again.
    assert!(carpool.engine.state().pool.accounts()[0].clear_quarantine());
    assert!(!carpool.engine.state().pool.accounts()[0].clear_quarantine());
    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(setup.mock.messages(), 2);
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_suspended_api_key_account_is_left_out_too() {
    let fleet = Fleet::with_api_keys(2, json!({"type": "fallback"}), &[0]).await;
    fleet.mocks[0].push(
        error(
            403,
            "permission_error",
            "Your account has been suspended. Please contact support.",
            &[],
        )
        .0,
    );
    let carpool = fleet.start().await;
    ok(&carpool, None).await;
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [1, 2]);
    let state = account_status(&carpool, "a0")["state"].clone();
    assert_eq!(state["state"], "disabled", "{state}");
    assert!(state["reason"].as_str().unwrap().contains("suspended"));
    carpool.shutdown().await;
}

#[tokio::test]
async fn ordinary_400s_and_403s_reach_the_client_and_disable_nothing() {
    let fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    let cases = [
        (
            403,
            "permission_error",
            "Your organization does not have access to this model.",
        ),
        (403, "permission_error", "Request not allowed"),
        // The right phrase, but not a permission error: about this request.
        (403, "invalid_request_error", ORG_DISABLED),
        (
            400,
            "invalid_request_error",
            "This credential is only authorized for use with Claude Code and cannot be used for other API requests.",
        ),
        // The right phrase with a status that is not a refusal.
        (404, "not_found_error", ORG_DISABLED),
    ];
    let carpool = fleet.start().await;
    for (i, (status, kind, message)) in cases.iter().enumerate() {
        let (reply, body) = error(*status, kind, message, &[]);
        fleet.mocks[0].push(reply);
        let r = send(&carpool, None).await;
        assert_eq!(r.status().as_u16(), *status, "{message}");
        assert_eq!(r.text().await.unwrap(), body);
        assert_eq!(fleet.served(), [i + 1, 0], "no failover for {message}");
        assert_eq!(account_status(&carpool, "a0")["state"]["state"], "ready");
    }
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [cases.len() + 1, 0]);
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_429_with_only_a_day_long_retry_after_pauses_an_api_key_for_a_minute_at_most() {
    let fleet = Fleet::with_api_keys(2, json!({"type": "fallback"}), &[0]).await;
    fleet.mocks[0].push(
        error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            &[("retry-after", "86400")],
        )
        .0,
    );
    let carpool = fleet.start().await;
    let before = unix_now();
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [1, 1]);
    let state = account_status(&carpool, "a0")["state"].clone();
    assert_eq!(state["state"], "cooling_down", "{state}");
    let until = state["until"].as_i64().unwrap();
    assert!(
        until > before && until <= unix_now() + 60,
        "paused until {until}, now {}",
        unix_now()
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_quota_429_without_a_reset_time_pauses_for_a_minute_at_most() {
    let fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    // Rejected, but no reset header at all; a reset far beyond any window is ignored.
    let far = (unix_now() + 400 * 86_400).to_string();
    fleet.mocks[0].push(
        error(
            429,
            "rate_limit_error",
            "This request would exceed your account's rate limit. Please try again later.",
            &[
                ("anthropic-ratelimit-unified-status", "rejected"),
                ("anthropic-ratelimit-unified-7d-reset", &far),
                ("retry-after", "86400"),
            ],
        )
        .0,
    );
    let carpool = fleet.start().await;
    let before = unix_now();
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [1, 1]);
    let state = account_status(&carpool, "a0")["state"].clone();
    assert_eq!(state["state"], "rate_limited", "{state}");
    let until = state["until"].as_i64().unwrap();
    assert!(until > before && until <= unix_now() + 60, "{state}");
    carpool.shutdown().await;
}
