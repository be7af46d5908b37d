//! The Claude Code credentials file as a source: refresh before expiry and after a 401,
//! single flight, adopting tokens the official CLI rotated, failures and their backoff,
//! the background timer that refreshes idle logins, and watching the file appear,
//! change and disappear.

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

    // Claude Code on this machine refreshed: new tokens in the file. (Nothing has run
    // in the server yet on this single-threaded runtime: whichever comes first, the
    // refresh timer or the request, reads the file again before refreshing.)
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
    let carpool::credentials::Status::LoginExpired(reason) = first_login_status(&carpool) else {
        panic!("the login has expired")
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(reason.contains("log in again"), "{reason}");
    assert_eq!(first_account_state(&carpool)["state"], "login_expired");
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
    let state = first_account_state(&carpool);
    assert_eq!(state["state"], "retrying", "it passes: {state}");
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

/// Nobody uses the account: its token is refreshed all the same, one minute before it
/// expires, and saved; the next request finds it fresh.
#[tokio::test]
async fn an_idle_token_is_refreshed_ahead_of_expiry_and_written_back() {
    let setup = Setup::without_file().await;
    // Enters the one-minute refresh margin three seconds from now.
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() + 63_000);
    let carpool = setup.start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(setup.mock.refreshes(), 0, "not before the margin");

    // The mock counts a refresh when it arrives and records the tokens as it answers.
    assert!(
        eventually(10, || async {
            setup.mock.refreshes() == 1 && setup.mock.last_issued().is_some()
        })
        .await,
        "refreshed with no request"
    );
    let (new_access, new_refresh) = setup.mock.last_issued().unwrap();
    assert!(
        eventually(5, || async {
            file_json(&setup)["claudeAiOauth"]["refreshToken"] == new_refresh.as_str()
        })
        .await,
        "written back"
    );
    let doc = file_json(&setup);
    assert_eq!(doc["claudeAiOauth"]["accessToken"], new_access.as_str());
    assert_eq!(
        doc["claudeAiOauth"]["rateLimitTier"],
        "default_claude_max_20x"
    );
    assert_eq!(doc["mcpOAuth"]["github"]["accessToken"], "mcp-keep-me");
    assert!(setup.mock.requests().is_empty(), "no request was made");

    // One refresh per expiry: the new token lasts eight hours.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(setup.mock.refreshes(), 1);
    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(setup.mock.refreshes(), 1);
    assert_eq!(
        setup.mock.requests()[0].headers["authorization"],
        format!("Bearer {new_access}")
    );
    carpool.shutdown().await;
}

/// The timer shares the requests' back-off: a failing token endpoint sees one attempt
/// per back-off step (2 s, then 4 s), however many requests come meanwhile.
#[tokio::test]
async fn a_failing_token_endpoint_is_not_stormed_by_the_timer_and_requests() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    setup.mock.set_token_default(TokenReply::ServerError);
    let before = std::fs::read(&setup.cred_path).unwrap();
    let carpool = setup.start().await;

    // The first attempt at once, the second after 2 s.
    assert!(eventually(5, || async { setup.mock.refreshes() == 2 }).await);
    for _ in 0..5 {
        assert_eq!(ask(&carpool, false).await.status(), 503);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(setup.mock.refreshes(), 2, "the 4 s back-off holds");
    assert!(
        eventually(5, || async { setup.mock.refreshes() == 3 }).await,
        "then the timer tries again"
    );
    assert_eq!(std::fs::read(&setup.cred_path).unwrap(), before);
    carpool.shutdown().await;
}

/// A login the token endpoint refused for good is not tried again by the timer either;
/// the next login in the file is refreshed without waiting for a request.
#[tokio::test]
async fn the_timer_leaves_a_refused_login_alone_until_a_new_one_comes() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    setup.mock.set_token_default(TokenReply::InvalidGrant);
    let carpool = setup.start().await;

    assert!(eventually(5, || async { setup.mock.refreshes() == 1 }).await);
    let credential = first_credential(&carpool);
    assert!(
        matches!(credential.status(), carpool::credentials::Status::LoginExpired(r) if r.contains("invalid_grant"))
    );
    // Longer than the first back-off: a passing failure would have been retried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup.mock.refreshes(), 1, "no second try with a dead token");

    // The owner logs in again; that login is about to expire too.
    setup.mock.set_token_default(TokenReply::Ok {
        delay: Duration::ZERO,
    });
    write_credentials(
        &setup.cred_path,
        NEW_LOGIN_ACCESS,
        NEW_LOGIN_REFRESH,
        now_ms() + 30_000,
    );
    assert!(eventually(10, || async { setup.mock.refreshes() == 2 }).await);
    let sent = setup.mock.state.refresh_bodies.lock().unwrap()[1].clone();
    assert_eq!(sent["refresh_token"], NEW_LOGIN_REFRESH);
    // The mock counts a refresh when it arrives and records its tokens as it answers.
    assert!(eventually(5, || async { setup.mock.last_issued().is_some() }).await);
    let (_, rotated) = setup.mock.last_issued().unwrap();
    assert!(
        eventually(5, || async {
            file_json(&setup)["claudeAiOauth"]["refreshToken"] == rotated.as_str()
        })
        .await
    );
    assert_eq!(credential.status(), carpool::credentials::Status::Ready);
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
    carpool.engine.state().pool.accounts()[0]
        .credential()
        .expect("an OAuth account")
        .status()
}

/// The first account's state in the status snapshot.
fn first_account_state(carpool: &carpool::RunningServer) -> serde_json::Value {
    serde_json::to_value(carpool.engine.status()).unwrap()["accounts"][0]["state"].clone()
}

/// Makes a directory refuse new files while the files in it stay writable: `chattr +i`
/// as root (permission bits do not stop root), mode 0500 otherwise. Undone on drop, so
/// the temporary directory can be removed.
#[cfg(unix)]
struct Unwritable {
    dir: std::path::PathBuf,
    immutable: bool,
}

#[cfg(unix)]
impl Unwritable {
    fn make(dir: &std::path::Path) -> Option<Unwritable> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = std::fs::metadata(dir)
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let guard = if root {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| Unwritable {
                dir: dir.to_owned(),
                immutable: true,
            })
        } else {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).ok()?;
            Some(Unwritable {
                dir: dir.to_owned(),
                immutable: false,
            })
        }?;
        // Only a directory that really refuses a new file makes the test meaningful.
        match std::fs::File::create(dir.join("probe-by-test")) {
            Ok(_) => {
                let _ = std::fs::remove_file(dir.join("probe-by-test"));
                None
            }
            Err(_) => Some(guard),
        }
    }
}

#[cfg(unix)]
impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.dir)
                .status();
        } else {
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        }
    }
}

/// A setup whose credentials file lives in its own directory `claude/` (so that
/// directory can be made unwritable without touching the database beside the config).
async fn setup_in_own_dir(expires_at_ms: i64) -> (Setup, std::path::PathBuf) {
    let mut setup = Setup::without_file().await;
    let claude_dir = setup.dir.path().join("claude");
    std::fs::create_dir(&claude_dir).unwrap();
    setup.cred_path = claude_dir.join(".credentials.json");
    setup.config["credentials"][0]["credential_path"] =
        setup.cred_path.to_string_lossy().into_owned().into();
    write_credentials(&setup.cred_path, ACCESS, REFRESH, expires_at_ms);
    (setup, claude_dir)
}

fn first_credential(
    carpool: &carpool::RunningServer,
) -> std::sync::Arc<carpool::credentials::Credential> {
    carpool.engine.state().pool.accounts()[0]
        .credential()
        .expect("an OAuth account")
        .clone()
}

/// Names of leftover temporary files in `dir`.
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp") || n.contains("carpool"))
        .collect()
}

#[cfg(unix)]
#[tokio::test]
async fn a_login_whose_directory_refuses_new_files_is_not_refreshed_and_says_why() {
    let (setup, claude_dir) = setup_in_own_dir(now_ms() - 1000).await;
    let before = std::fs::read(&setup.cred_path).unwrap();
    let Some(guard) = Unwritable::make(&claude_dir) else {
        eprintln!(
            "SKIPPED: cannot make a directory refuse new files here (neither chattr +i nor chmod 0500 works)"
        );
        return;
    };
    // The attacker's setup: the file itself is writable, only the rename cannot happen.
    assert!(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&setup.cred_path)
            .is_ok()
    );
    let carpool = setup.start().await;

    let (status, message) = error_message(ask(&carpool, false).await).await;
    assert_eq!(status, 503);
    let dir_name = claude_dir.display().to_string();
    // The user is sent to the owner; the owner's status names the directory (below).
    assert!(message.contains("owner"), "{message}");
    assert!(!message.contains(&dir_name), "{message}");
    assert!(!message.contains(REFRESH) && !message.contains(ACCESS));
    assert_eq!(
        setup.mock.refreshes(),
        0,
        "no refresh reached the token endpoint"
    );
    assert_eq!(
        std::fs::read(&setup.cred_path).unwrap(),
        before,
        "file untouched"
    );
    let credential = first_credential(&carpool);
    let attention = credential.needs_attention().expect("needs attention");
    assert!(attention.contains(&dir_name), "{attention}");
    assert!(matches!(
        credential.status(),
        carpool::credentials::Status::Unsaveable(r) if r.contains(&dir_name)
    ));
    let state = first_account_state(&carpool);
    assert_eq!(state["state"], "waiting_for_owner", "{state}");
    assert!(
        state["reason"].as_str().unwrap().contains(&dir_name),
        "{state}"
    );

    // Still nothing while the directory stays as it is.
    assert_eq!(ask(&carpool, false).await.status(), 503);
    assert_eq!(setup.mock.refreshes(), 0);

    // Fixed by its owner: noticed without a file event, then refreshed and saved.
    drop(guard);
    assert!(
        eventually(10, || async { credential.needs_attention().is_none() }).await,
        "the directory is checked again"
    );
    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(setup.mock.refreshes(), 1);
    let (_, new_refresh) = setup.mock.last_issued().unwrap();
    assert_eq!(
        file_json(&setup)["claudeAiOauth"]["refreshToken"],
        new_refresh.as_str()
    );
    carpool.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn an_unsaveable_login_keeps_serving_with_its_token_until_it_expires() {
    // Inside the refresh margin, but not expired yet.
    let (setup, claude_dir) = setup_in_own_dir(now_ms() + 30_000).await;
    let before = std::fs::read(&setup.cred_path).unwrap();
    let Some(_guard) = Unwritable::make(&claude_dir) else {
        eprintln!(
            "SKIPPED: cannot make a directory refuse new files here (neither chattr +i nor chmod 0500 works)"
        );
        return;
    };
    let carpool = setup.start().await;

    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(
        setup.mock.requests()[0].headers["authorization"],
        format!("Bearer {ACCESS}")
    );
    assert_eq!(setup.mock.refreshes(), 0);
    assert_eq!(std::fs::read(&setup.cred_path).unwrap(), before);
    let credential = first_credential(&carpool);
    assert_eq!(credential.needs_attention(), None, "still usable");
    assert_eq!(credential.status(), carpool::credentials::Status::Ready);
    carpool.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_credentials_file_stays_a_symlink_and_its_target_gets_the_new_tokens() {
    let setup = Setup::without_file().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let real = elsewhere.path().join("claude-login.json");
    write_credentials(&real, ACCESS, REFRESH, now_ms() - 1000);
    std::os::unix::fs::symlink(&real, &setup.cred_path).unwrap();
    let carpool = setup.start().await;

    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(setup.mock.refreshes(), 1);
    let (new_access, new_refresh) = setup.mock.last_issued().unwrap();
    let link = std::fs::symlink_metadata(&setup.cred_path).unwrap();
    assert!(link.file_type().is_symlink(), "still a symlink");
    assert_eq!(std::fs::read_link(&setup.cred_path).unwrap(), real);
    let doc: Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    assert_eq!(doc["claudeAiOauth"]["accessToken"], new_access.as_str());
    assert_eq!(doc["claudeAiOauth"]["refreshToken"], new_refresh.as_str());
    assert_eq!(doc["mcpOAuth"]["github"]["accessToken"], "mcp-keep-me");
    assert!(temp_files(setup.dir.path()).is_empty());
    assert!(temp_files(elsewhere.path()).is_empty());

    // A change made in the target's directory is noticed too.
    let mut doc = doc;
    doc["claudeAiOauth"]["subscriptionType"] = "pro".into();
    let tmp = elsewhere.path().join("write.tmp-test");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, &real).unwrap();
    let credential = first_credential(&carpool);
    assert!(
        eventually(5, || async {
            credential.plan().0.as_deref() == Some("pro")
        })
        .await,
        "the watcher follows the symlink's target"
    );
    carpool.shutdown().await;
}

const NEW_LOGIN_ACCESS: &str = "sk-ant-oat01-test-new-login-000000002";
const NEW_LOGIN_REFRESH: &str = "sk-ant-ort01-test-new-login-000000002";

/// Starts a request that needs a refresh, with the token endpoint holding its answer,
/// and waits until the refresh is in flight.
async fn request_during_a_held_refresh(
    setup: &Setup,
    carpool: &carpool::RunningServer,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let url = carpool.url();
    #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
    let request = tokio::spawn(async move { ask_at(&url, false).await });
    assert!(eventually(5, || async { setup.mock.refreshes() == 1 }).await);
    request
}

#[tokio::test]
async fn a_login_written_while_refreshing_is_never_overwritten_and_is_used() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    setup.mock.set_token_default(TokenReply::Held);
    setup.mock.set_valid_access(NEW_LOGIN_ACCESS);
    let carpool = setup.start().await;

    let request = request_during_a_held_refresh(&setup, &carpool).await;
    // Meanwhile the official CLI writes a new login.
    write_credentials(
        &setup.cred_path,
        NEW_LOGIN_ACCESS,
        NEW_LOGIN_REFRESH,
        now_ms() + 8 * HOUR_MS,
    );
    let written = std::fs::read(&setup.cred_path).unwrap();
    setup.mock.release_token();

    let response = request.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        std::fs::read(&setup.cred_path).unwrap(),
        written,
        "the new login is left exactly as written"
    );
    let seen = setup.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {NEW_LOGIN_ACCESS}"),
        "the upstream request used the login on disk"
    );
    assert_eq!(ask(&carpool, false).await.status(), 200);
    assert_eq!(setup.mock.refreshes(), 1);
    assert_eq!(std::fs::read(&setup.cred_path).unwrap(), written);
    assert!(temp_files(setup.dir.path()).is_empty());
    carpool.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_written_while_refreshing_are_adopted_and_refreshed_next() {
    let setup = Setup::without_file().await;
    // Valid by the clock, so the refresh timer leaves it alone, but revoked upstream:
    // the request's 401 makes it the one refreshing.
    write_credentials(
        &setup.cred_path,
        "sk-ant-oat01-revoked",
        REFRESH,
        now_ms() + 8 * HOUR_MS,
    );
    setup.mock.set_token_default(TokenReply::Held);
    let carpool = setup.start().await;

    let request = request_during_a_held_refresh(&setup, &carpool).await;
    write_credentials(
        &setup.cred_path,
        NEW_LOGIN_ACCESS,
        NEW_LOGIN_REFRESH,
        now_ms() - 1000,
    );
    let written = std::fs::read(&setup.cred_path).unwrap();
    // The held refresh has its answer already; the next one (ours or the usage
    // poll's) is answered at once.
    setup.mock.set_token_default(TokenReply::Ok {
        delay: Duration::ZERO,
    });
    setup.mock.release_token();

    let response = request.await.unwrap();
    assert!(response.headers().contains_key("retry-after"), "retryable");
    let (status, message) = error_message(response).await;
    assert_eq!(status, 503);
    assert!(message.contains("tries again in"), "{message}");
    assert!(!message.contains("sk-ant-"), "{message}");
    assert_eq!(std::fs::read(&setup.cred_path).unwrap(), written);

    // The next refresh (the next request's, or the timer's if it comes first) is of the
    // file's login, not ours.
    let (status, message) = error_message(ask(&carpool, false).await).await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(setup.mock.refreshes(), 2);
    let sent = setup.mock.state.refresh_bodies.lock().unwrap()[1].clone();
    assert_eq!(sent["refresh_token"], NEW_LOGIN_REFRESH);
    // The mock counts a refresh when it arrives and records its tokens as it answers.
    assert!(eventually(5, || async { setup.mock.last_issued().is_some() }).await);
    let (_, rotated) = setup.mock.last_issued().unwrap();
    assert_eq!(
        file_json(&setup)["claudeAiOauth"]["refreshToken"],
        rotated.as_str()
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn other_fields_changed_while_refreshing_are_kept_beside_the_new_tokens() {
    let setup = Setup::without_file().await;
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 1000);
    setup.mock.set_token_default(TokenReply::Held);
    let carpool = setup.start().await;

    let request = request_during_a_held_refresh(&setup, &carpool).await;
    // The CLI stores an MCP server's token; the Claude login is unchanged.
    let mut doc = file_json(&setup);
    doc["mcpOAuth"]["github"]["accessToken"] = "mcp-changed".into();
    let tmp = setup.cred_path.with_extension("tmp-test");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, &setup.cred_path).unwrap();
    // Held answers do not change the valid token; the first one issued is this.
    setup.mock.set_valid_access("sk-ant-oat01-mock-refreshed-1");
    setup.mock.release_token();
    assert_eq!(request.await.unwrap().status(), 200);

    let (_, new_refresh) = setup.mock.last_issued().unwrap();
    let doc = file_json(&setup);
    assert_eq!(
        doc["claudeAiOauth"]["refreshToken"],
        new_refresh.as_str(),
        "the rotated token is saved: the login had not changed"
    );
    assert_eq!(doc["mcpOAuth"]["github"]["accessToken"], "mcp-changed");
    carpool.shutdown().await;
}
