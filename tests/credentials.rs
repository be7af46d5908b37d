//! The Claude Code credentials file as a source: refresh before expiry and after a 401,
//! single flight, adopting tokens the official CLI rotated, failures and their backoff,
//! and watching the file appear, change and disappear.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn error_message(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

fn file_json(setup: &Setup) -> Value {
    serde_json::from_slice(&std::fs::read(&setup.cred_path).unwrap()).unwrap()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_and_written_back_keeping_everything_else() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() + 30_000);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&setup.cred_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let carpool = setup.start().await;

    let r = ask(&carpool, false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(setup.mock.refreshes(), 1);
    let sent = setup.mock.state.refresh_bodies.lock().unwrap()[0].clone();
    assert_eq!(sent["grant_type"], "refresh_token");
    assert_eq!(sent["refresh_token"], REFRESH);
    assert_eq!(sent["client_id"], carpool::credentials::oauth::CLIENT_ID);

    let (new_access, new_refresh) = setup.mock.last_issued().unwrap();
    assert_eq!(
        setup.mock.requests()[0].headers["authorization"],
        format!("Bearer {new_access}")
    );
    let doc = file_json(&setup);
    let oauth = &doc["claudeAiOauth"];
    assert_eq!(oauth["accessToken"], new_access.as_str());
    assert_eq!(oauth["refreshToken"], new_refresh.as_str());
    let expires = oauth["expiresAt"].as_i64().unwrap();
    assert!(
        (expires - (now_ms() + 28_800_000)).abs() < 60_000,
        "expiresAt from expires_in"
    );
    assert_eq!(
        oauth["rateLimitTier"], "default_claude_max_20x",
        "other fields kept"
    );
    assert_eq!(oauth["refreshTokenExpiresAt"], 1_900_000_000_000i64);
    assert_eq!(doc["mcpOAuth"]["github"]["accessToken"], "mcp-keep-me");
    #[cfg(unix)]
    assert_eq!(mode(&setup.cred_path), 0o640, "permissions kept");
    let leftovers: Vec<_> = std::fs::read_dir(setup.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The next request uses the stored token without refreshing again.
    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(setup.mock.refreshes(), 1);
    carpool.shutdown().await;
}

#[tokio::test]
async fn fifty_concurrent_requests_on_an_expired_token_refresh_exactly_once() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    // A slow token endpoint, so every request arrives while the refresh is in flight.
    setup.mock.set_token_default(TokenReply::Ok {
        delay: Duration::from_millis(300),
    });
    let carpool = setup.start().await;

    let requests = (0..50).map(|_| ask(&carpool, false));
    let responses = futures_util::future::join_all(requests).await;
    for r in responses {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(setup.mock.refreshes(), 1, "one refresh for all fifty");
    let (new_access, _) = setup.mock.last_issued().unwrap();
    let want = format!("Bearer {new_access}");
    assert!(
        setup
            .mock
            .requests()
            .iter()
            .all(|r| r.headers["authorization"] == want.as_str())
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn tokens_rotated_by_the_official_cli_are_adopted_instead_of_refreshing() {
    let setup = Setup::without_file().await;
    write_credentials(
        &setup.cred_path,
        "sk-ant-oat01-stale",
        REFRESH,
        now_ms() - 1000,
    );
    let carpool = setup.start().await;

    // Claude Code on this machine refreshed: new tokens in the file.
    write_credentials(
        &setup.cred_path,
        ACCESS,
        "sk-ant-ort01-cli-rotated",
        now_ms() + 8 * HOUR_MS,
    );
    let r = ask(&carpool, false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        setup.mock.refreshes(),
        0,
        "no refresh: the file already had fresh tokens"
    );
    assert_eq!(
        setup.mock.requests()[0].headers["authorization"],
        format!("Bearer {ACCESS}")
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn an_upstream_401_refreshes_and_retries_once_unnoticed() {
    let setup = Setup::without_file().await;
    // Not expired by the clock, but revoked upstream.
    write_credentials(
        &setup.cred_path,
        "sk-ant-oat01-revoked",
        REFRESH,
        now_ms() + 8 * HOUR_MS,
    );
    let carpool = setup.start().await;

    let r = ask(&carpool, true).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("message_stop"));
    assert_eq!(setup.mock.refreshes(), 1);
    let seen = setup.mock.requests();
    assert_eq!(
        seen.len(),
        2,
        "the first try, then the retry on the new token"
    );
    assert_eq!(
        seen[0].headers["authorization"],
        "Bearer sk-ant-oat01-revoked"
    );
    assert_eq!(seen[0].body, seen[1].body, "the same body replayed");
    carpool.shutdown().await;
}

#[tokio::test]
async fn invalid_grant_stops_the_account_until_the_file_changes() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    setup.mock.set_token_default(TokenReply::InvalidGrant);
    let before = std::fs::read(&setup.cred_path).unwrap();
    let carpool = setup.start().await;

    let response = ask(&carpool, false).await;
    assert_eq!(
        response.headers()["x-should-retry"],
        "false",
        "retrying cannot help"
    );
    let (status, message) = error_message(response).await;
    assert_eq!(status, 503);
    assert!(message.contains("owner"), "{message}");
    // The owner's status (and log) says why.
    let carpool::credentials::Status::Broken(reason) = first_login_status(&carpool) else {
        panic!("the login is broken")
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(reason.contains("log in again"), "{reason}");
    assert!(!reason.contains(REFRESH) && !message.contains(REFRESH));
    assert_eq!(
        std::fs::read(&setup.cred_path).unwrap(),
        before,
        "file left intact"
    );

    // Terminal: no further attempts with the dead token.
    let (status, _) = error_message(ask(&carpool, false).await).await;
    assert_eq!(status, 503);
    assert_eq!(setup.mock.refreshes(), 1);

    // A new login writes a new file: the account works again.
    setup.mock.set_valid_access("sk-ant-oat01-after-login");
    write_credentials(
        &setup.cred_path,
        "sk-ant-oat01-after-login",
        "sk-ant-ort01-after-login",
        now_ms() + 8 * HOUR_MS,
    );
    assert!(eventually(5, || async { ask(&carpool, false).await.status() == 200 }).await);
    assert_eq!(setup.mock.refreshes(), 1);
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_failed_refresh_backs_off_then_recovers() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    setup.mock.push_token(TokenReply::ServerError);
    let before = std::fs::read(&setup.cred_path).unwrap();
    let carpool = setup.start().await;

    let r = ask(&carpool, false).await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after));
    assert!(r.headers().get("x-should-retry").is_none(), "it passes");
    let (status, message) = error_message(r).await;
    assert_eq!(status, 503);
    assert!(
        message.contains(&format!("again in {retry_after} s")),
        "says when: {message}"
    );
    let carpool::credentials::Status::Broken(reason) = first_login_status(&carpool) else {
        panic!("the refresh failed")
    };
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert_eq!(
        std::fs::read(&setup.cred_path).unwrap(),
        before,
        "file left intact"
    );

    // Within the backoff nobody hammers the token endpoint.
    assert_eq!(ask(&carpool, false).await.status(), 503);
    assert_eq!(setup.mock.refreshes(), 1);

    // After it, the next request tries again and succeeds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(setup.mock.refreshes(), 2);
    carpool.shutdown().await;
}

#[tokio::test]
async fn the_file_may_appear_after_start_and_its_deletion_stops_the_account_at_once() {
    let setup = Setup::without_file().await;
    let carpool = setup.start().await;

    let response = ask(&carpool, false).await;
    assert_eq!(response.headers()["x-should-retry"], "false");
    let (status, message) = error_message(response).await;
    assert_eq!(status, 503);
    assert!(message.contains("owner"), "says who can fix it: {message}");
    assert!(
        !message.contains(&*setup.dir.path().to_string_lossy()),
        "no owner's path: {message}"
    );
    assert_eq!(
        first_login_status(&carpool),
        carpool::credentials::Status::Missing,
        "the owner's status says why"
    );

    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() + 8 * HOUR_MS);
    assert!(
        eventually(5, || async {
            first_login_status(&carpool) == carpool::credentials::Status::Ready
        })
        .await,
        "the watcher notices the new file"
    );
    assert_eq!(ask(&carpool, false).await.status(), 200);

    std::fs::remove_file(&setup.cred_path).unwrap();
    assert!(
        eventually(5, || async {
            first_login_status(&carpool) == carpool::credentials::Status::Missing
        })
        .await,
        "the watcher notices the deletion"
    );
    assert_eq!(ask(&carpool, false).await.status(), 503);

    std::fs::write(&setup.cred_path, "{ not json").unwrap();
    assert!(
        eventually(5, || async {
            matches!(
                first_login_status(&carpool),
                carpool::credentials::Status::Invalid(_)
            )
        })
        .await
    );
    let (status, message) = error_message(ask(&carpool, false).await).await;
    assert_eq!(status, 503);
    assert!(message.contains("owner"), "{message}");
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_directory_that_does_not_exist_yet_is_picked_up_when_created() {
    let mut setup = Setup::without_file().await;
    let nested = setup.dir.path().join("later").join(".credentials.json");
    setup.config["credentials"][0]["credential_path"] =
        nested.to_string_lossy().into_owned().into();
    let carpool = setup.start().await;
    assert_eq!(ask(&carpool, false).await.status(), 503);
    std::fs::create_dir_all(nested.parent().unwrap()).unwrap();
    write_credentials(&nested, ACCESS, REFRESH, now_ms() + 8 * HOUR_MS);
    assert!(eventually(5, || async { ask(&carpool, false).await.status() == 200 }).await);
    carpool.shutdown().await;
}

/// Regression: after `rm -rf ~/.claude` the watch stayed on the removed directory's
/// inode, so the next login was never noticed.
#[tokio::test]
async fn a_removed_and_recreated_directory_is_watched_again() {
    let mut setup = Setup::without_file().await;
    let dir = setup.dir.path().join("claude-home");
    let path = dir.join(".credentials.json");
    std::fs::create_dir_all(&dir).unwrap();
    write_credentials(&path, ACCESS, REFRESH, now_ms() + 8 * HOUR_MS);
    setup.config["credentials"][0]["credential_path"] = path.to_string_lossy().into_owned().into();
    let carpool = setup.start().await;
    assert_eq!(ask(&carpool, false).await.status(), 200);

    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        eventually(5, || async {
            first_login_status(&carpool) == carpool::credentials::Status::Missing
        })
        .await
    );
    // Give the watcher time to notice the directory is gone and wait for a new one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::create_dir_all(&dir).unwrap();
    // Wait past a directory retry, so only a working watch can notice what comes next.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    write_credentials(&path, ACCESS, REFRESH, now_ms() + 8 * HOUR_MS);
    assert!(
        eventually(3, || async {
            first_login_status(&carpool) == carpool::credentials::Status::Ready
        })
        .await,
        "the new login is noticed"
    );
    carpool.shutdown().await;
}

/// The state of the first account's Claude Code login.
fn first_login_status(carpool: &carpool::RunningServer) -> carpool::credentials::Status {
    carpool.engine.pool.accounts()[0]
        .credential()
        .expect("an OAuth account")
        .status()
}
