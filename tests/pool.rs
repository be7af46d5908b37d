//! Several accounts behind one Carpool: strategies, sticky sessions, reserves (from the
//! rate-limit headers and from the usage endpoint), failover the client does not notice,
//! everything exhausted, API keys in the same pool, outbound proxies, and idle accounts'
//! usage polled while the status is watched.

mod common;

use std::time::Duration;

use common::fleet::{Fleet, account_status, body, ok, send};
use common::mock::{Mock, Reply};
use common::proxy::{HttpProxy, Socks5Proxy};
use common::*;
use serde_json::{Value, json};

fn unix_now() -> i64 {
    now_ms() / 1000
}

/// Unified headers of a subscription at these utilizations (fractions), resets in an
/// hour (5h) and in three days (weekly).
fn unified(five_hour: &str, weekly: &str) -> Vec<(String, String)> {
    let now = unix_now();
    vec![
        (
            "anthropic-ratelimit-unified-5h-utilization".into(),
            five_hour.into(),
        ),
        (
            "anthropic-ratelimit-unified-5h-reset".into(),
            (now + 3600).to_string(),
        ),
        (
            "anthropic-ratelimit-unified-7d-utilization".into(),
            weekly.into(),
        ),
        (
            "anthropic-ratelimit-unified-7d-reset".into(),
            (now + 3 * 86_400).to_string(),
        ),
        (
            "anthropic-ratelimit-unified-status".into(),
            "allowed".into(),
        ),
    ]
}

fn set_unified(mock: &Mock, five_hour: &str, weekly: &str) {
    let headers = unified(five_hour, weekly);
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    mock.set_unified(&pairs);
}

/// A quota 429 as Anthropic sends it when a subscription window is used up.
fn quota_429(claim: &str, reset: i64) -> Reply {
    Reply::Status {
        status: 429,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("anthropic-ratelimit-unified-status".into(), "rejected".into()),
            ("anthropic-ratelimit-unified-5h-status".into(), "rejected".into()),
            ("anthropic-ratelimit-unified-representative-claim".into(), claim.into()),
            ("anthropic-ratelimit-unified-5h-reset".into(), reset.to_string()),
            ("anthropic-ratelimit-unified-reset".into(), reset.to_string()),
        ],
        body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your account's rate limit. Please try again later."}}"#.into(),
    }
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    let fleet = Fleet::new(3, json!({"type": "balancer", "strategy": "round_robin"})).await;
    let carpool = fleet.start().await;
    for _ in 0..30 {
        ok(&carpool, None).await;
    }
    assert_eq!(fleet.served(), [10, 10, 10]);
    carpool.shutdown().await;
}

#[tokio::test]
async fn random_uses_every_account() {
    let fleet = Fleet::new(3, json!({"type": "balancer", "strategy": "random"})).await;
    let carpool = fleet.start().await;
    for _ in 0..60 {
        ok(&carpool, None).await;
    }
    let served = fleet.served();
    assert_eq!(served.iter().sum::<usize>(), 60);
    assert!(served.iter().all(|&n| n > 0), "{served:?}");
    carpool.shutdown().await;
}

#[tokio::test]
async fn fallback_uses_the_first_account_until_it_runs_out() {
    let fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    let carpool = fleet.start().await;
    for _ in 0..5 {
        ok(&carpool, Some("s")).await;
    }
    assert_eq!(fleet.served(), [5, 0]);
    fleet.mocks[0].push(quota_429("5h", unix_now() + 3600));
    for _ in 0..5 {
        ok(&carpool, Some("s")).await;
    }
    // The 429 was answered by the second account, and so was everything after it.
    assert_eq!(fleet.served(), [6, 5]);
    carpool.shutdown().await;
}

#[tokio::test]
async fn least_used_sends_new_conversations_to_the_account_with_most_left() {
    let fleet = Fleet::new(2, json!({"type": "balancer"})).await;
    set_unified(&fleet.mocks[0], "0.10", "0.60");
    set_unified(&fleet.mocks[1], "0.10", "0.20");
    let carpool = fleet.start().await;
    // Nothing is known at first: the first account takes a conversation and learns it
    // is at 60% of its week; the second then takes one and shows 20%.
    ok(&carpool, Some("first")).await;
    ok(&carpool, Some("second")).await;
    assert_eq!(fleet.served(), [1, 1]);
    for i in 0..10 {
        ok(&carpool, Some(&format!("new-{i}"))).await;
    }
    assert_eq!(fleet.served(), [1, 11]);
    // Existing conversations stay where they are.
    ok(&carpool, Some("first")).await;
    assert_eq!(fleet.served(), [2, 11]);
    carpool.shutdown().await;
}

#[tokio::test]
async fn one_conversation_stays_on_one_account_over_100_requests() {
    let fleet = Fleet::new(3, json!({"type": "balancer", "strategy": "round_robin"})).await;
    let carpool = fleet.start().await;
    for i in 0..100 {
        ok(&carpool, Some("the-conversation")).await;
        // Other conversations in between move the round-robin counter along.
        ok(&carpool, Some(&format!("other-{i}"))).await;
    }
    let served = fleet.served();
    assert_eq!(served.iter().sum::<usize>(), 200);
    let pinned = served
        .iter()
        .position(|&n| n >= 100)
        .expect("one account took the conversation");
    // The others got only the other conversations, spread over them.
    assert!(
        served
            .iter()
            .enumerate()
            .all(|(i, &n)| i == pinned || n >= 30),
        "{served:?}"
    );
    let sessions = account_status(&carpool, &format!("a{pinned}"))["active_sessions"].as_u64();
    assert!(sessions.is_some_and(|n| n >= 1), "{sessions:?}");
    carpool.shutdown().await;
}

#[tokio::test]
async fn an_account_pauses_exactly_at_its_reserve_from_the_headers() {
    let mut fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    fleet.config["credentials"][0]["reserve_5h"] = json!(20);
    set_unified(&fleet.mocks[0], "0.79", "0.10");
    let carpool = fleet.start().await;
    ok(&carpool, None).await;
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [2, 0], "79% is below the 80% cap");
    assert_eq!(account_status(&carpool, "a0")["state"]["state"], "ready");
    // The next answer reports 80%: from then on the owner's 20% is left alone.
    set_unified(&fleet.mocks[0], "0.80", "0.10");
    ok(&carpool, None).await;
    ok(&carpool, None).await;
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [3, 2]);
    let a0 = account_status(&carpool, "a0");
    assert_eq!(a0["state"]["state"], "paused_by_reserve", "{a0}");
    assert_eq!(a0["state"]["percent"], 80);
    assert_eq!(a0["state"]["cap"], 80);
    assert_eq!(a0["five_hour"]["percent"], 80);
    carpool.shutdown().await;
}

#[tokio::test]
async fn an_account_pauses_at_its_reserve_from_the_usage_endpoint() {
    let mut fleet = Fleet::new(2, json!({"type": "fallback", "poll_interval": "1s"})).await;
    fleet.config["credentials"][0]["reserve_weekly"] = json!(10);
    let resets = jiff::Timestamp::from_second(unix_now() + 86_400)
        .unwrap()
        .to_string();
    fleet.mocks[0].set_usage(
        200,
        json!({
            "five_hour": {"utilization": 12.0, "resets_at": resets},
            "seven_day": {"utilization": 90.0, "resets_at": resets},
        }),
        &[],
    );
    // The second account's usage endpoint is rate-limited itself.
    fleet.mocks[1].set_usage(429, json!({"type":"error"}), &[("retry-after", "120")]);
    let carpool = fleet.start().await;
    // Nothing known yet: the first account serves, and both are polled meanwhile.
    ok(&carpool, None).await;
    assert!(
        eventually(5, || async {
            account_status(&carpool, "a0")["state"]["state"] == "paused_by_reserve"
        })
        .await,
        "{}",
        account_status(&carpool, "a0")
    );
    assert_eq!(account_status(&carpool, "a0")["weekly"]["percent"], 90);
    for _ in 0..4 {
        ok(&carpool, None).await;
    }
    assert_eq!(fleet.served(), [1, 4]);
    // The failed poll did not take the second account out of service, and its
    // retry-after is honoured: no second poll within it, however many requests come.
    assert!(eventually(5, || async { fleet.mocks[1].polls() == 1 }).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ok(&carpool, None).await;
    ok(&carpool, None).await;
    assert_eq!(fleet.mocks[1].polls(), 1);
    assert_eq!(account_status(&carpool, "a1")["state"]["state"], "ready");
    carpool.shutdown().await;
}

#[tokio::test]
async fn failover_before_the_first_byte_is_invisible_to_the_client() {
    let mut fleet = Fleet::new(3, json!({"type": "fallback"})).await;
    // The first account's upstream cannot be reached at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    fleet.config["credentials"][0]["base_url"] = json!(dead);
    // The second answers 500 once; the third answers.
    fleet.mocks[1].push(Reply::Status {
        status: 500,
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#
            .into(),
    });
    let carpool = fleet.start().await;
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [0, 1, 1]);
    // A streamed answer fails over the same way.
    fleet.mocks[1].push(Reply::Status {
        status: 503,
        headers: vec![],
        body: "unavailable".into(),
    });
    let r = client()
        .post(format!("{}/v1/messages", carpool.url()))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .json(&{
            let mut b = body();
            b["stream"] = json!(true);
            b
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("message_stop"));
    carpool.shutdown().await;
}

#[tokio::test]
async fn overloaded_is_retried_on_the_same_account_then_passed_on_never_rotated() {
    let fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    let overloaded = || Reply::Status {
        status: 529,
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            .into(),
    };
    // Once: the retry on the same account succeeds.
    fleet.mocks[0].push(overloaded());
    let carpool = fleet.start().await;
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [2, 0]);
    // Twice: the client gets the 529; the other account is not touched or marked.
    fleet.mocks[0].push(overloaded());
    fleet.mocks[0].push(overloaded());
    let r = send(&carpool, None).await;
    assert_eq!(r.status(), 529);
    assert_eq!(fleet.served(), [4, 0]);
    assert_eq!(account_status(&carpool, "a0")["state"]["state"], "ready");
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_429_that_is_not_about_quota_reaches_the_client_and_pauses_nothing() {
    let fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    fleet.mocks[0].push(Reply::Status {
        status: 429,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("anthropic-ratelimit-unified-status".into(), "allowed".into()),
        ],
        body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"Extra usage is required for long context requests."}}"#.into(),
    });
    let carpool = fleet.start().await;
    let r = send(&carpool, None).await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("Extra usage is required"));
    assert_eq!(fleet.served(), [1, 0]);
    assert_eq!(account_status(&carpool, "a0")["state"]["state"], "ready");
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [2, 0]);
    carpool.shutdown().await;
}

#[tokio::test]
async fn every_account_exhausted_is_a_429_that_says_when() {
    let fleet = Fleet::new(2, json!({"type": "balancer"})).await;
    let now = unix_now();
    fleet.mocks[0].push(quota_429("five_hour", now + 7200));
    fleet.mocks[1].push(quota_429("5h", now + 3600));
    let carpool = fleet.start().await;
    let r = send(&carpool, Some("s")).await;
    assert_eq!(r.status(), 429);
    let retry_after: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&retry_after), "{retry_after}");
    let message: Value = r.json().await.unwrap();
    let text = message["error"]["message"].as_str().unwrap();
    assert_eq!(message["error"]["type"], "rate_limit_error");
    assert!(
        text.contains("None of the 2 Claude accounts") && text.contains("earliest is back"),
        "{text}"
    );
    assert_eq!(fleet.served(), [1, 1]);
    // While they are out, nothing goes upstream.
    assert_eq!(send(&carpool, None).await.status(), 429);
    assert_eq!(fleet.served(), [1, 1]);
    let a1 = account_status(&carpool, "a1");
    assert_eq!(a1["state"]["state"], "rate_limited");
    assert_eq!(a1["state"]["until"], now + 3600);
    carpool.shutdown().await;
}

#[tokio::test]
async fn no_usable_account_is_a_503_that_stops_clients_and_keeps_the_owners_details() {
    let fleet = Fleet::new(2, json!({"type": "balancer"})).await;
    for i in 0..2 {
        std::fs::remove_file(fleet.cred_path(i)).unwrap();
    }
    let carpool = fleet.start().await;
    let r = send(&carpool, None).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-should-retry"], "false");
    assert!(r.headers().get("retry-after").is_none());
    let text = r.text().await.unwrap();
    assert!(text.contains("owner"), "says who can fix it: {text}");
    let dir = fleet.dir.path().to_string_lossy().into_owned();
    for secret in ["`a0`", "`a1`", "does not exist yet", dir.as_str()] {
        assert!(!text.contains(secret), "{secret} disclosed: {text}");
    }
    // The owner sees what is wrong in the status snapshot (and the log).
    let a0 = account_status(&carpool, "a0");
    assert_eq!(a0["state"]["state"], "file_missing", "{a0}");
    assert_eq!(
        a0["state"]["path"],
        fleet.cred_path(0).display().to_string(),
        "the owner sees where the login is expected"
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn api_key_accounts_share_a_pool_with_subscriptions() {
    let mut fleet = Fleet::new(1, json!({"type": "balancer", "strategy": "round_robin"})).await;
    let key = "sk-ant-api03-fleet-key-0000000000";
    let console = Mock::start(key).await;
    let credentials = fleet.config["credentials"].as_array_mut().unwrap();
    credentials.insert(
        1,
        json!({"tag": "console", "type": "api_key", "api_key": key, "base_url": console.url()}),
    );
    credentials[2]["credentials"] = json!(["a0", "console"]);
    let carpool = fleet.start().await;
    for _ in 0..4 {
        ok(&carpool, None).await;
    }
    assert_eq!((fleet.mocks[0].messages(), console.messages()), (2, 2));
    for r in console.requests() {
        assert_eq!(r.headers["x-api-key"], key);
        assert!(r.headers.get("authorization").is_none());
        let beta = r
            .headers
            .get("anthropic-beta")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            !beta.unwrap_or_default().contains("oauth"),
            "no OAuth beta for an API key"
        );
    }
    let status = account_status(&carpool, "console");
    assert_eq!(status["kind"], "api_key");
    assert_eq!(status["last_hour"]["requests"], 2);
    carpool.shutdown().await;
}

#[tokio::test]
async fn an_account_can_go_through_an_http_proxy_with_credentials() {
    let mut fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    let proxy = HttpProxy::start(Some(("carpool", "s3cret"))).await;
    fleet.config["credentials"][0]["proxy"] = json!(proxy.url_with_auth("carpool", "s3cret"));
    let carpool = fleet.start().await;
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [1, 0]);
    // The request went through the proxy, and so did the account's usage poll.
    let forwarded = proxy.forwards();
    let base = fleet.mocks[0].url();
    assert!(
        forwarded.contains(&format!("{base}/v1/messages")),
        "{forwarded:?}"
    );
    assert!(
        forwarded.iter().all(|u| u.starts_with(&base)),
        "{forwarded:?}"
    );
    assert_eq!(proxy.rejected(), 0);
    carpool.shutdown().await;
}

#[tokio::test]
async fn an_https_upstream_is_reached_through_an_http_connect_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, ca_pem) = Mock::start_tls(ACCESS).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let cred = dir.path().join("creds.json");
    write_credentials(&cred, ACCESS, REFRESH, now_ms() + 8 * HOUR_MS);
    let proxy = HttpProxy::start(None).await;
    let config = json!({
        "listen": "127.0.0.1", "listen_port": 0,
        "ca_file": ca_file,
        "credentials": [{"tag": "tls", "credential_path": cred, "base_url": mock.url(), "token_url": mock.token_url(), "proxy": proxy.url()}],
        "users": [{"name": "alice", "token": ALICE_TOKEN}],
        "database": dir.path().join("usage.db"),
    });
    let config = carpool::Config::parse(&config.to_string(), &dir.path().join("c.json")).unwrap();
    let carpool = carpool::Server::bind(config).await.unwrap().spawn();
    ok(&carpool, None).await;
    ok(&carpool, None).await;
    assert_eq!(mock.messages(), 2);
    let tunnels = proxy.connects();
    assert!(!tunnels.is_empty(), "went through CONNECT");
    assert!(
        tunnels.iter().all(|t| *t == mock.addr.to_string()),
        "{tunnels:?}"
    );
    assert!(proxy.forwards().is_empty());
    carpool.shutdown().await;
}

#[tokio::test]
async fn an_account_can_go_through_a_socks5_proxy_with_credentials() {
    let mut fleet = Fleet::new(1, json!({"type": "fallback"})).await;
    let proxy = Socks5Proxy::start(Some(("carpool", "s3cret"))).await;
    fleet.config["credentials"][0]["proxy"] = json!(proxy.url_with_auth("carpool", "s3cret"));
    let carpool = fleet.start().await;
    ok(&carpool, None).await;
    ok(&carpool, None).await;
    assert_eq!(fleet.served(), [2]);
    let connects = proxy.connects();
    assert!(!connects.is_empty());
    assert!(
        connects
            .iter()
            .all(|c| *c == fleet.mocks[0].addr.to_string()),
        "{connects:?}"
    );
    assert_eq!(proxy.auth_failures(), 0);
    carpool.shutdown().await;
}

#[tokio::test]
async fn the_status_snapshot_shows_windows_sessions_and_the_last_hour() {
    let mut fleet = Fleet::new(2, json!({"type": "balancer"})).await;
    fleet.config["credentials"][0]["reserve_5h"] = json!(25);
    set_unified(&fleet.mocks[0], "0.31", "0.47");
    let carpool = fleet.start().await;
    ok(&carpool, Some("one")).await;
    ok(&carpool, Some("one")).await;
    let a0 = account_status(&carpool, "a0");
    assert_eq!(a0["kind"], "oauth");
    assert_eq!(a0["state"]["state"], "ready");
    assert_eq!(a0["five_hour"]["percent"], 31);
    assert_eq!(a0["weekly"]["percent"], 47);
    assert!(a0["weekly"]["resets_at"].as_i64().unwrap() > unix_now());
    assert_eq!(a0["five_hour"]["reserve"], 25);
    assert_eq!(a0["five_hour"]["cap"], 75);
    assert_eq!(a0["weekly"]["cap"], 100);
    assert!(a0["usage_updated_at"].as_i64().unwrap() <= unix_now());
    assert_eq!(a0["plan_weight"], 10, "the test login is Max 20x");
    assert_eq!(a0["active_sessions"], 1);
    assert_eq!(a0["last_hour"]["requests"], 2);
    assert_eq!(a0["last_hour"]["tokens"], 2 * (25 + 12));
    let status = serde_json::to_value(carpool.engine.status()).unwrap();
    assert_eq!(status["pools"][0]["tag"], "pool");
    assert_eq!(status["pools"][0]["strategy"], "least_used");
    assert_eq!(status["pools"][0]["accounts"], json!(["a0", "a1"]));
    carpool.shutdown().await;
}

#[tokio::test]
async fn repeated_failures_open_the_circuit_and_traffic_goes_elsewhere() {
    let fleet = Fleet::new(2, json!({"type": "fallback"})).await;
    let failure = || Reply::Status {
        status: 500,
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#
            .into(),
    };
    for _ in 0..3 {
        fleet.mocks[0].push(failure());
    }
    let carpool = fleet.start().await;
    // Three failures, each answered by the second account instead.
    for _ in 0..3 {
        ok(&carpool, None).await;
    }
    assert_eq!(fleet.served(), [3, 3]);
    let a0 = account_status(&carpool, "a0");
    assert_eq!(a0["state"]["state"], "circuit_open", "{a0}");
    assert_eq!(a0["state"]["failures"], 3);
    // While it is open the first account is not even tried.
    for _ in 0..5 {
        ok(&carpool, None).await;
    }
    assert_eq!(fleet.served(), [3, 8]);
    carpool.shutdown().await;
}

/// The dashboard's and tray's live meters: with no traffic at all, idle accounts' usage
/// is polled at their `poll_interval` while something watches the status, and not at
/// all when nothing does.
#[tokio::test]
async fn idle_accounts_are_polled_only_while_the_status_is_watched() {
    let fleet =
        Fleet::with_api_keys(3, json!({"type": "balancer", "poll_interval": "1s"}), &[2]).await;
    let resets = jiff::Timestamp::from_second(unix_now() + 86_400)
        .unwrap()
        .to_string();
    for (i, mock) in fleet.mocks.iter().enumerate() {
        mock.set_usage(
            200,
            json!({
                "five_hour": {"utilization": 10.0, "resets_at": resets},
                "seven_day": {"utilization": 30.0 + i as f64, "resets_at": resets},
            }),
            &[],
        );
    }
    let carpool = fleet.start().await;
    let polls = || fleet.mocks.iter().map(Mock::polls).collect::<Vec<_>>();

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(polls(), [0, 0, 0], "nobody watches: nobody is asked");

    let watch = carpool.engine.watch_status();
    assert!(
        eventually(3, || async {
            account_status(&carpool, "a1")["weekly"]["percent"] == 31
        })
        .await,
        "the meters fill in without a request: {}",
        account_status(&carpool, "a1")
    );
    assert_eq!(account_status(&carpool, "a0")["weekly"]["percent"], 30);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // About 6 s watched; figures count as older than 1 s after 2 whole seconds.
    let watched = polls();
    assert!(
        watched[..2].iter().all(|n| (2..=5).contains(n)),
        "{watched:?}"
    );
    assert_eq!(watched[2], 0, "an API key has no usage endpoint");

    drop(watch);
    // A poll under way when the last watcher left may still arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = polls();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(polls(), after, "no poll once nobody watches");
    assert_eq!(fleet.served(), [0, 0, 0], "not one request");
    carpool.shutdown().await;
}
