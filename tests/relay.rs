//! The request path over real HTTP on loopback: what reaches the upstream, what comes
//! back, streaming, errors, timeouts.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;

fn alice(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .header("anthropic-version", "2023-06-01")
}

#[tokio::test]
async fn non_streaming_message_is_relayed_with_the_account_token_and_body_unchanged() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let body = serde_json::to_vec(&message_body(false)).unwrap();

    let response = client()
        .post(format!("{}/v1/messages?beta=true", carpool.url()))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .header("anthropic-version", "2026-10-21")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("x-claude-code-session-id", "session-123")
        .header("accept-encoding", "br")
        .header("x-forwarded-for", "10.1.2.3")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The upstream's length is kept: the answer is not turned into a chunked one.
    assert!(response.headers().contains_key("content-length"));
    assert!(!response.headers().contains_key("transfer-encoding"));
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["content"][0]["text"], mock::MOCK_REPLY_TEXT);
    assert_eq!(reply["usage"]["output_tokens"], mock::OUTPUT_TOKENS);

    let seen = setup.mock.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.uri, "/v1/messages?beta=true", "query string kept");
    assert_eq!(r.body, body, "body forwarded byte for byte");
    assert_eq!(r.headers["authorization"], format!("Bearer {ACCESS}"));
    assert_eq!(
        r.headers["anthropic-beta"],
        "oauth-2025-04-20,claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    assert_eq!(r.headers["anthropic-version"], "2026-10-21");
    assert_eq!(r.headers["x-claude-code-session-id"], "session-123");
    assert_ne!(
        r.headers.get("accept-encoding").unwrap(),
        "br",
        "Carpool picks the encoding"
    );
    assert!(!r.headers.contains_key("x-forwarded-for"));
    assert!(!r.headers.contains_key("x-api-key"));
    let everything = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
    assert!(
        !everything.contains(ALICE_TOKEN),
        "the user token must never leave"
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn streaming_forwards_each_event_the_moment_it_arrives() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    setup.mock.push(Reply::GatedStream);

    let response = ask(&carpool, true).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the first event must arrive while the upstream holds back the rest")
        .unwrap()
        .unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(first.starts_with("event: message_start\n"), "{first}");
    assert!(
        !setup
            .mock
            .state
            .gate_passed
            .load(std::sync::atomic::Ordering::SeqCst),
        "the upstream has not sent the second event yet"
    );
    // The upstream waits at least 500 ms before the next event, as a slow model does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    setup.mock.release();

    let mut rest = String::new();
    while let Some(chunk) = stream.next().await {
        rest.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let expected: String = mock::sse_events("claude-sonnet-4-5-20250929")[1..].concat();
    assert_eq!(rest, expected, "every later event, unchanged");
    carpool.shutdown().await;
}

#[tokio::test]
async fn count_tokens_and_models_are_relayed() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;

    let counted: Value = alice(client().post(format!("{}/v1/messages/count_tokens", carpool.url())))
        .json(&serde_json::json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["input_tokens"], 42);

    let models = alice(client().get(format!("{}/v1/models?limit=5", carpool.url())))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    let models: Value = models.json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "claude-sonnet-4-5-20250929");

    let one = alice(client().get(format!(
        "{}/v1/models/claude-sonnet-4-5-20250929",
        carpool.url()
    )))
    .send()
    .await
    .unwrap();
    assert_eq!(one.status(), 200);

    let uris: Vec<String> = setup.mock.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        [
            "/v1/messages/count_tokens",
            "/v1/models?limit=5",
            "/v1/models/claude-sonnet-4-5-20250929"
        ]
    );
    for r in setup.mock.requests() {
        assert_eq!(r.headers["authorization"], format!("Bearer {ACCESS}"));
    }
    carpool.shutdown().await;
}

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic error shape: {body}");
    (
        status,
        body["error"]["type"].as_str().unwrap().to_owned(),
        body["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn users_authenticate_with_bearer_or_x_api_key_and_bad_tokens_get_403() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let url = format!("{}/v1/messages", carpool.url());
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = client().post(&url).json(&message_body(false));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };

    // Claude Code with ANTHROPIC_API_KEY sends x-api-key; bob's token is stored hashed.
    let r = send(vec![("x-api-key", BOB_TOKEN.into())]).await.unwrap();
    assert_eq!(r.status(), 200);
    // Both variables set: the Carpool token in one header, a real key in the other.
    let r = send(vec![
        ("authorization", format!("Bearer {ALICE_TOKEN}")),
        ("x-api-key", "sk-ant-api03-a-real-console-key".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = send(vec![
        ("authorization", "Bearer sk-ant-oat01-someone-elses".into()),
        ("x-api-key", ALICE_TOKEN.into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    for seen in setup.mock.requests() {
        let headers = format!("{:?}", seen.headers);
        assert!(
            !headers.contains("sk-ant-api03"),
            "a client key must never go upstream"
        );
        assert!(!headers.contains("someone-elses"));
        assert!(!headers.contains(ALICE_TOKEN) && !headers.contains(BOB_TOKEN));
    }

    // 403, not 401: Claude Code gives up at once instead of retrying for 3 minutes.
    let (status, kind, message) = error_of(send(vec![]).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (403, "authentication_error"));
    assert!(message.contains("ANTHROPIC_AUTH_TOKEN"), "{message}");
    let (status, _, message) = error_of(
        send(vec![(
            "authorization",
            "Bearer cpk-wrong-token-000000".into(),
        )])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(message.contains("not known"), "{message}");
    assert!(!message.contains("cpk-wrong-token"), "never echo the token");
    assert_eq!(
        setup.mock.requests().len(),
        3,
        "refused requests never reach the upstream"
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn without_users_a_loopback_listener_serves_everyone() {
    let mut setup = Setup::new().await;
    setup.config["users"] = serde_json::json!([]);
    let carpool = setup.start().await;
    let r = client()
        .post(format!("{}/v1/messages", carpool.url()))
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    carpool.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_pass_through_with_status_headers_and_body() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let cases = [
        (400, "invalid_request_error", "messages: field required"),
        (404, "not_found_error", "model: claude-nope"),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        (
            429,
            "rate_limit_error",
            "This request would exceed your account's rate limit.",
        ),
        (500, "api_error", "Internal server error"),
        (529, "overloaded_error", "Overloaded"),
        // Last: besides passing through, this one takes the only account out of service
        // (tests/disabled_accounts.rs).
        (
            403,
            "permission_error",
            "OAuth authentication is currently not allowed for this organization",
        ),
    ];
    for (status, kind, message) in cases {
        let body = serde_json::json!({"type":"error","error":{"type":kind,"message":message},"request_id":"req_x"}).to_string();
        // A 529 (overloaded, API-wide) is retried once on the same account before it
        // is passed on; script it for both tries.
        let tries = if status == 529 { 2 } else { 1 };
        for _ in 0..tries {
            setup.mock.push(Reply::Status {
                status,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("retry-after".into(), "17".into()),
                    (
                        "anthropic-ratelimit-unified-5h-utilization".into(),
                        "0.42".into(),
                    ),
                    ("request-id".into(), "req_x".into()),
                ],
                body: body.clone(),
            });
        }
        let r = ask(&carpool, false).await;
        assert_eq!(r.status().as_u16(), status, "{kind}");
        assert_eq!(r.headers()["retry-after"], "17");
        assert_eq!(
            r.headers()["anthropic-ratelimit-unified-5h-utilization"],
            "0.42"
        );
        assert_eq!(r.headers()["request-id"], "req_x");
        assert_eq!(r.text().await.unwrap(), body, "body unchanged for {status}");
    }
    assert_eq!(
        setup.mock.requests().len(),
        cases.len() + 1,
        "no retries of upstream errors, but for the one of the 529"
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_that_says_so() {
    let mut setup = Setup::new().await;
    // A port that was free a moment ago and now has nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    setup.config["credentials"][0]["base_url"] = format!("http://{closed}").into();
    let carpool = setup.start().await;
    let r = ask(&carpool, true).await;
    let (status, kind, message) = error_of(r).await;
    assert_eq!((status, kind.as_str()), (502, "api_error"));
    assert!(message.contains("cannot reach the upstream"), "{message}");
    assert!(message.contains(&closed.to_string()), "{message}");
    carpool.shutdown().await;
}

fn with_timeouts(setup: &mut Setup, timeouts: Value) {
    setup.config["timeouts"] = timeouts;
}

#[tokio::test]
async fn a_stalled_upstream_before_headers_ends_in_a_504() {
    let mut setup = Setup::new().await;
    with_timeouts(
        &mut setup,
        serde_json::json!({"first_byte": "300ms", "request": "400ms"}),
    );
    let carpool = setup.start().await;

    setup.mock.push(Reply::StallHeaders(Duration::from_secs(5)));
    let r = ask(&carpool, true).await;
    let (status, kind, message) = error_of(r).await;
    assert_eq!((status, kind.as_str()), (504, "timeout_error"));
    assert!(message.contains("timeouts.first_byte"), "{message}");

    // Non-streaming requests are bounded by the whole-request timeout instead.
    setup.mock.push(Reply::StallHeaders(Duration::from_secs(5)));
    let r = ask(&carpool, false).await;
    let (status, _, message) = error_of(r).await;
    assert_eq!(status, 504);
    assert!(message.contains("timeouts.request"), "{message}");
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_stream_that_goes_silent_ends_with_an_sse_error_event() {
    let mut setup = Setup::new().await;
    with_timeouts(&mut setup, serde_json::json!({"idle": "300ms"}));
    let carpool = setup.start().await;
    setup.mock.push(Reply::StallMidStream);
    let r = ask(&carpool, true).await;
    assert_eq!(r.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .expect("the client is never left hanging")
        .unwrap();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\ndata: "), "{last}");
    let data: Value = serde_json::from_str(last.split_once("data: ").unwrap().1).unwrap();
    assert_eq!(data["error"]["type"], "timeout_error");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeouts.idle")
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn slow_but_steady_streams_are_not_cut_by_the_idle_timeout() {
    let mut setup = Setup::new().await;
    with_timeouts(
        &mut setup,
        serde_json::json!({"idle": "400ms", "request": "500ms"}),
    );
    let carpool = setup.start().await;
    // 7 gaps of 150 ms: over a second in all, but never 400 ms of silence. The
    // whole-request timeout does not apply to streams.
    setup
        .mock
        .push(Reply::SlowEvents(Duration::from_millis(150)));
    let r = ask(&carpool, true).await;
    let text = r.text().await.unwrap();
    assert_eq!(
        text,
        mock::sse_events("claude-sonnet-4-5-20250929").concat()
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_before_going_upstream() {
    let mut setup = Setup::new().await;
    setup.config["max_body_bytes"] = 1000.into();
    let carpool = setup.start().await;
    let big = "x".repeat(2000);
    let r = alice(client().post(format!("{}/v1/messages", carpool.url())))
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": big}]}))
        .send()
        .await
        .unwrap();
    let (status, kind, message) = error_of(r).await;
    assert_eq!((status, kind.as_str()), (413, "request_too_large"));
    assert!(message.contains("max_body_bytes"), "{message}");
    assert!(setup.mock.requests().is_empty());
    carpool.shutdown().await;
}

#[tokio::test]
async fn large_bodies_within_the_limit_arrive_intact() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    // 20 MB of base64-like text, as an image-heavy Claude Code turn might send.
    let blob: String = (0..20_000_000u32)
        .map(|i| (b'A' + (i % 26) as u8) as char)
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 10,
        "messages": [{"role": "user", "content": blob}]
    }))
    .unwrap();
    let r = alice(client().post(format!("{}/v1/messages", carpool.url())))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(setup.mock.requests()[0].body, body);
    carpool.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_anthropic_errors() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let r = alice(client().post(format!("{}/v1/complete", carpool.url())))
        .send()
        .await
        .unwrap();
    let (status, kind, message) = error_of(r).await;
    assert_eq!((status, kind.as_str()), (404, "not_found_error"));
    assert!(message.contains("/v1/messages"), "{message}");
    let r = alice(client().get(format!("{}/v1/messages", carpool.url())))
        .send()
        .await
        .unwrap();
    let (status, _, _) = error_of(r).await;
    assert_eq!(status, 405);
    assert!(setup.mock.requests().is_empty());
    carpool.shutdown().await;
}

#[tokio::test]
async fn compressed_upstream_answers_reach_the_client_decoded() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    setup.mock.push(Reply::Gzipped);
    let r = ask(&carpool, false).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    // Carpool can read usage in what it forwards because it decoded it.
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["usage"]["input_tokens"], mock::INPUT_TOKENS);
    let asked = setup.mock.requests()[0].headers["accept-encoding"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(asked.contains("gzip"), "{asked}");
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_non_streaming_answer_that_stops_halfway_is_cut_at_the_request_deadline() {
    let mut setup = Setup::new().await;
    with_timeouts(
        &mut setup,
        serde_json::json!({"request": "500ms", "idle": "1h"}),
    );
    let carpool = setup.start().await;
    setup.mock.push(Reply::StallMidStream);
    let r = ask(&carpool, false).await;
    assert_eq!(r.status(), 200, "headers came in time");
    let body = tokio::time::timeout(Duration::from_secs(5), r.bytes())
        .await
        .expect("the client is never left hanging");
    assert!(
        body.is_err(),
        "a truncated JSON body is reported as broken, not as complete"
    );
    carpool.shutdown().await;
}

// Linux drops SYNs to a full backlog; other systems may refuse them instead.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_upstream_that_never_accepts_the_connection_hits_the_connect_timeout() {
    let mut setup = Setup::new().await;
    // A loopback listener that never accepts, with its backlog filled: further SYNs are
    // dropped, so a connect hangs the way it does to a dead host.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(200), s.connect(addr)).await {
            fillers.push(c);
        }
    }
    setup.config["credentials"][0]["base_url"] = format!("http://{addr}").into();
    with_timeouts(
        &mut setup,
        serde_json::json!({"connect": "300ms", "first_byte": "1h"}),
    );
    let carpool = setup.start().await;
    let r = ask(&carpool, true).await;
    let (status, kind, message) = error_of(r).await;
    assert_eq!((status, kind.as_str()), (504, "timeout_error"), "{message}");
    assert!(message.contains("timeouts.connect"), "{message}");
    drop(listener);
    carpool.shutdown().await;
}

#[tokio::test]
async fn curl_with_expect_100_continue_and_a_large_body_works() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: curl is not installed");
        return;
    }
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    let body_path = setup.dir.path().join("body.json");
    let mut body = message_body(false);
    body["messages"][0]["content"][0]["text"] = "y".repeat(3_000_000).into();
    std::fs::write(&body_path, serde_json::to_vec(&body).unwrap()).unwrap();
    let url = format!("{}/v1/messages", carpool.url());
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "20", "-H"])
        .arg(format!("authorization: Bearer {ALICE_TOKEN}"))
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "expect: 100-continue",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", body_path.display()))
        .arg(&url)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reply["content"][0]["text"], mock::MOCK_REPLY_TEXT);
    let seen = &setup.mock.requests()[0];
    assert_eq!(
        seen.body.len(),
        std::fs::metadata(&body_path).unwrap().len() as usize
    );
    assert!(!seen.headers.contains_key("expect"));
    carpool.shutdown().await;
}

/// Sends one raw HTTP/1.1 request (the path exactly as given, which reqwest would
/// normalise) and returns the status line and body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: carpool\r\nauthorization: Bearer {ALICE_TOKEN}\r\nanthropic-version: 2023-06-01\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply))
        .await
        .expect("answered in time")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply.lines().next().unwrap_or_default().to_owned();
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Regression: `GET /v1/models/..\..\api\oauth\profile` reached the upstream as
/// `/api/oauth/profile` with the owner's OAuth token, and the owner's profile came back.
#[tokio::test]
async fn path_traversal_never_reaches_the_upstream() {
    let setup = Setup::new().await;
    let carpool = setup.start().await;
    for path in [
        "/v1/models/..\\..\\api\\oauth\\profile",
        "/v1/models/..%5C..%5Capi%5Coauth%5Cprofile",
        "/v1/models/..%2F..%2Fapi%2Foauth%2Fprofile",
        "/v1/models/%2e%2e",
        "/v1/models/%2E%2E/%2E%2E/api/oauth/profile",
        "/v1/models/..",
        "/v1/models/.",
        "/v1/models/../../api/oauth/profile",
        "/v1/models/x%00y",
        "/v1/models/x%0d%0ahost:evil",
        "/v1/messages/..%2F..%2Fapi%2Foauth%2Fprofile",
        "/api/oauth/profile",
        "/v1/models/claude%2Dsonnet",
    ] {
        let (status, body) = raw_get(carpool.addr, path).await;
        assert!(
            status.starts_with("HTTP/1.1 404") || status.starts_with("HTTP/1.1 400"),
            "{path}: {status}"
        );
        if status.starts_with("HTTP/1.1 404") {
            let error: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
            assert_eq!(error["type"], "error", "{path}: Anthropic's error shape");
            assert_eq!(error["error"]["type"], "not_found_error");
        }
    }
    assert!(
        setup.mock.requests().is_empty(),
        "the upstream saw {:?}",
        setup
            .mock
            .requests()
            .into_iter()
            .map(|r| r.uri)
            .collect::<Vec<_>>()
    );
    // A real model id still works.
    let (status, _) = raw_get(carpool.addr, "/v1/models/claude-sonnet-4-5-20250929").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    carpool.shutdown().await;
}
