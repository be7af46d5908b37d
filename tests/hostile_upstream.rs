//! A hostile (or broken) API-compatible upstream: multi-GB error bodies, an endless
//! stream, one giant SSE event, a huge JSON answer. The real `carpool` binary runs as a
//! subprocess and its memory is watched from `/proc/<pid>/status`: it must stay flat
//! (well under [`RSS_LIMIT`]) whatever the upstream sends, and the client must still get
//! a sensible answer. The upstream generates its bodies on the fly from one repeated
//! chunk: nothing big is ever allocated, here or (if Carpool is right) there.
//!
//! A watchdog kills Carpool as soon as its resident memory passes the limit, so a
//! regression fails fast instead of filling the machine's memory.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use common::process::{self, Process};
use common::*;
use serde_json::json;

/// Carpool's resident memory must stay below this, whatever the upstream sends. Its
/// baseline is about 15 MB; today's bounds (a 64 KiB error prefix, 1 MiB per SSE event,
/// 64 KiB of JSON values, the sockets' and hyper's buffers) add a few MB at most.
const RSS_LIMIT_KB: u64 = 100 * 1024;
const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;
/// How much of an endless or huge body the test client reads before it hangs up.
const CLIENT_READS: u64 = 300 * MB;

/// One 64 KiB run of filler, shared by every chunk the upstream sends.
static FILLER: [u8; 64 * 1024] = [b'a'; 64 * 1024];

// ---------------------------------------------------------------------------------------
// The hostile upstream.

#[derive(Default)]
struct Counters {
    /// Bytes handed to the server for sending, all answers together.
    sent: AtomicU64,
    /// Answers whose body was dropped before it ended (the connection closed).
    cut: AtomicUsize,
    /// Answers whose body was sent to the end.
    finished: AtomicUsize,
    requests: AtomicUsize,
}

struct Hostile {
    addr: SocketAddr,
    counters: Arc<Counters>,
}

impl Hostile {
    async fn start() -> Hostile {
        let counters = Arc::new(Counters::default());
        let app = Router::new().fallback(answer).with_state(counters.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Hostile { addr, counters }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::SeqCst)
    }

    fn cut(&self) -> usize {
        self.counters.cut.load(Ordering::SeqCst)
    }
}

/// A body: `head`, then `filler` bytes of [`FILLER`] (`u64::MAX`: for ever), then `tail`,
/// generated as it is sent.
struct Generated {
    counters: Arc<Counters>,
    head: Option<Bytes>,
    unit: Bytes,
    left: u64,
    tail: Option<Bytes>,
    done: bool,
}

impl Generated {
    /// The whole body was sent.
    fn end(mut self) {
        self.done = true;
    }
}

impl Drop for Generated {
    fn drop(&mut self) {
        let which = if self.done {
            &self.counters.finished
        } else {
            &self.counters.cut
        };
        which.fetch_add(1, Ordering::SeqCst);
    }
}

fn generated(
    counters: &Arc<Counters>,
    head: String,
    unit: Bytes,
    filler: u64,
    tail: String,
) -> Body {
    let state = Generated {
        counters: counters.clone(),
        head: Some(Bytes::from(head)),
        unit,
        left: filler,
        tail: Some(Bytes::from(tail)),
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut g| async move {
        let chunk = if let Some(head) = g.head.take() {
            head
        } else if g.left > 0 {
            let n = g.left.min(g.unit.len() as u64) as usize;
            if g.left != u64::MAX {
                g.left -= n as u64;
            }
            g.unit.slice(..n)
        } else if let Some(tail) = g.tail.take() {
            tail
        } else {
            g.end();
            return None;
        };
        g.counters
            .sent
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Some((Ok::<_, Infallible>(chunk), g))
    });
    Body::from_stream(stream)
}

fn filler() -> Bytes {
    Bytes::from_static(&FILLER)
}

/// The answer is chosen by the request's `?mode=` (Carpool passes the query on).
async fn answer(State(counters): State<Arc<Counters>>, request: Request) -> Response {
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let query = request.uri().query().unwrap_or("").to_owned();
    let mode = if request.uri().path() == "/api/oauth/usage" {
        "endless_json"
    } else {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("mode="))
            .unwrap_or("")
    };
    let reset = (now_ms() / 1000 + 3600).to_string();
    let error_head =
        |kind: &str| format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"ooooh no "#);
    let (status, headers, body): (u16, Vec<(&str, String)>, Body) = match mode {
        // A 429 that says nothing about quota, 2 GB long.
        "429" => (
            429,
            vec![("content-type", "application/json".into())],
            generated(
                &counters,
                error_head("rate_limit_error"),
                filler(),
                2 * GB,
                "\"}}".into(),
            ),
        ),
        // A quota 429 (the account's window is used up), 2 GB long.
        "quota429" => (
            429,
            vec![
                ("content-type", "application/json".into()),
                ("anthropic-ratelimit-unified-status", "rejected".into()),
                ("anthropic-ratelimit-unified-5h-status", "rejected".into()),
                (
                    "anthropic-ratelimit-unified-representative-claim",
                    "five_hour".into(),
                ),
                ("anthropic-ratelimit-unified-5h-reset", reset),
            ],
            generated(
                &counters,
                error_head("rate_limit_error"),
                filler(),
                2 * GB,
                "\"}}".into(),
            ),
        ),
        "500" => (
            500,
            vec![("content-type", "application/json".into())],
            generated(
                &counters,
                error_head("api_error"),
                filler(),
                2 * GB,
                "\"}}".into(),
            ),
        ),
        // A 200 event stream that never ends.
        "endless" => {
            let text = "a".repeat(60 * 1024);
            let event = format!(
                "event: content_block_delta\ndata: {}\n\n",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}})
            );
            let head = mock::sse_events("claude-sonnet-4-5-20250929")[..2].concat();
            (
                200,
                vec![("content-type", "text/event-stream; charset=utf-8".into())],
                generated(&counters, head, Bytes::from(event), u64::MAX, String::new()),
            )
        }
        // A `message_start` whose data line is 200 MB long, then the rest of a message.
        "giant_event" => {
            let head = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_giant","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"usage":{"input_tokens":5,"output_tokens":1},"padding":""#;
            let tail = format!(
                "\"}}}}\n\n{}",
                mock::sse_events("claude-sonnet-4-5-20250929")[1..].concat()
            );
            (
                200,
                vec![("content-type", "text/event-stream; charset=utf-8".into())],
                generated(&counters, head.into(), filler(), 200 * MB, tail),
            )
        }
        // A non-streaming Message of 200 MB: its usage comes at the very end.
        "huge_json" => {
            let head = r#"{"id":"msg_huge","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":""#;
            let tail = r#""}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":11}}"#;
            (
                200,
                vec![("content-type", "application/json".into())],
                generated(&counters, head.into(), filler(), 200 * MB, tail.into()),
            )
        }
        // A JSON answer that never ends (the usage endpoint's).
        "endless_json" => (
            200,
            vec![("content-type", "application/json".into())],
            generated(
                &counters,
                r#"{"five_hour":{"utilization":12,"resets_at":""#.into(),
                filler(),
                u64::MAX,
                String::new(),
            ),
        ),
        // An ordinary small Message.
        "small" => (
            200,
            vec![("content-type", "application/json".into())],
            Body::from(
                r#"{"id":"msg_small","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"small"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#,
            ),
        ),
        _ => (404, vec![], Body::from("unknown mode")),
    };
    let mut response = Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, http::HeaderValue::from_str(&value).unwrap());
    }
    response
}

// ---------------------------------------------------------------------------------------
// Carpool as a process, under a memory watchdog.

struct Watched {
    process: Process,
    peak_kb: Arc<AtomicU64>,
    killed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl Watched {
    /// `carpool serve` with `credentials` as its accounts and alice bound to `target`.
    fn start(setup: &mut Setup, credentials: serde_json::Value, target: &str) -> Watched {
        setup.config["credentials"] = credentials;
        setup.config["users"] =
            json!([{"name": "alice", "token": ALICE_TOKEN, "credential": target}]);
        let process = process::serve(setup, &[("RUST_LOG", "info")]);
        let pid = process.child.id();
        let peak_kb = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (peak_kb, killed, stop) = (peak_kb.clone(), killed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some(rss) = status_kb(pid, "VmRSS:") else {
                        return;
                    };
                    peak_kb.fetch_max(rss, Ordering::SeqCst);
                    if rss > RSS_LIMIT_KB {
                        killed.store(true, Ordering::SeqCst);
                        let _ = std::process::Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        Watched {
            process,
            peak_kb,
            killed,
            stop,
        }
    }

    fn url(&self) -> &str {
        &self.process.url
    }

    /// The highest resident memory of the process so far (`VmHWM`, or what the watchdog
    /// saw if the process is gone).
    fn peak_kb(&self) -> u64 {
        let seen = self.peak_kb.load(Ordering::SeqCst);
        status_kb(self.process.child.id(), "VmHWM:").map_or(seen, |hwm| hwm.max(seen))
    }

    /// Asserts the memory bound, stops Carpool and returns its stderr.
    fn finish(self, case: &str) -> String {
        let peak = self.peak_kb();
        self.stop.store(true, Ordering::SeqCst);
        let killed = self.killed.load(Ordering::SeqCst);
        if !killed {
            process::sigterm(&self.process.child);
        }
        let (_, stderr) = process::finish(self.process);
        assert!(
            !killed && peak < RSS_LIMIT_KB,
            "{case}: carpool's resident memory reached {} MB (limit {} MB){}",
            peak / 1024,
            RSS_LIMIT_KB / 1024,
            if killed {
                "; the watchdog killed it"
            } else {
                ""
            }
        );
        eprintln!("{case}: peak RSS {} MB", peak / 1024);
        stderr
    }
}

fn api_key_account(tag: &str, base_url: &str) -> serde_json::Value {
    json!({"tag": tag, "type": "api_key", "api_key": format!("sk-ant-api03-hostile-{tag}-0000"), "base_url": base_url})
}

/// `POST /v1/messages?mode=…` as alice.
async fn ask(url: &str, mode: &str, stream: bool) -> reqwest::Response {
    let mut body = message_body(stream);
    body.as_object_mut().unwrap().remove("metadata");
    client()
        .post(format!("{url}/v1/messages?mode={mode}"))
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Reads the body, discarding it, until it ends or `limit` bytes came; returns the
/// count and the first bytes.
async fn drain(mut response: reqwest::Response, limit: u64) -> (u64, Vec<u8>) {
    let mut total = 0u64;
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while total < limit {
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
            .await
            .expect("the body kept flowing")
            .expect("the body did not break");
        let Some(chunk) = chunk else { break };
        if first.len() < 256 {
            first.extend_from_slice(&chunk[..chunk.len().min(256 - first.len())]);
        }
        total += chunk.len() as u64;
    }
    (total, first)
}

// ---------------------------------------------------------------------------------------
// (1), (2): giant error bodies.

/// One account: the client gets the upstream's status and its body, streamed: the
/// first bytes are the upstream's own, and it reads 300 MB of them without Carpool
/// holding any of it.
async fn giant_error_is_streamed(mode: &str, status: u16) {
    let mut setup = Setup::new().await;
    let hostile = Hostile::start().await;
    let carpool = Watched::start(
        &mut setup,
        json!([api_key_account("h", &hostile.url())]),
        "h",
    );
    let response = ask(carpool.url(), mode, false).await;
    assert_eq!(response.status(), status);
    let (read, first) = drain(response, CLIENT_READS).await;
    assert!(read >= CLIENT_READS, "the body is streamed on");
    assert!(
        first.starts_with(br#"{"type":"error","error":{"type":""#),
        "{}",
        String::from_utf8_lossy(&first)
    );
    // The client hung up: Carpool let go of the upstream too.
    assert!(
        eventually(10, || async { hostile.cut() == 1 }).await,
        "upstream body not dropped"
    );
    carpool.finish(mode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gb_429_reaches_the_client_streamed_with_flat_memory() {
    giant_error_is_streamed("429", 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gb_500_reaches_the_client_streamed_with_flat_memory() {
    giant_error_is_streamed("500", 500).await;
}

/// Two accounts: the first answers a giant error, the second 200. The client gets the
/// 200; the first answer was read no further than its prefix (and what the sockets
/// hold) and its connection was closed.
async fn giant_error_fails_over(mode: &str) {
    let mut setup = Setup::new().await;
    let hostile = Hostile::start().await;
    let credentials = json!([
        api_key_account("h", &hostile.url()),
        {"tag": "good", "type": "api_key", "api_key": ACCESS, "base_url": setup.mock.url()},
        {"tag": "pool", "type": "fallback", "credentials": ["h", "good"]},
    ]);
    let carpool = Watched::start(&mut setup, credentials, "pool");
    let response = ask(carpool.url(), mode, false).await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains(mock::MOCK_REPLY_TEXT)
    );
    assert_eq!(setup.mock.messages(), 1);
    assert!(
        eventually(10, || async { hostile.cut() == 1 }).await,
        "the first account's answer was not dropped"
    );
    let sent = hostile.sent();
    assert!(
        sent < 64 * MB,
        "{mode}: the upstream got to send {} MB",
        sent / MB
    );
    carpool.finish(&format!("{mode} then 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gb_quota_429_fails_over_without_being_read() {
    giant_error_fails_over("quota429").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gb_500_fails_over_without_being_read() {
    giant_error_fails_over("500").await;
}

// ---------------------------------------------------------------------------------------
// (3), (4), (5): successful answers that never end or are huge.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_event_stream_keeps_memory_flat() {
    let mut setup = Setup::new().await;
    let hostile = Hostile::start().await;
    let carpool = Watched::start(
        &mut setup,
        json!([api_key_account("h", &hostile.url())]),
        "h",
    );
    let response = ask(carpool.url(), "endless", true).await;
    assert_eq!(response.status(), 200);
    let (read, first) = drain(response, CLIENT_READS).await;
    assert!(read >= CLIENT_READS);
    assert!(first.starts_with(b"event: message_start"));
    assert!(eventually(10, || async { hostile.cut() == 1 }).await);
    carpool.finish("endless SSE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_giant_sse_event_passes_whole_with_flat_memory() {
    let mut setup = Setup::new().await;
    let hostile = Hostile::start().await;
    let carpool = Watched::start(
        &mut setup,
        json!([api_key_account("h", &hostile.url())]),
        "h",
    );
    let response = ask(carpool.url(), "giant_event", true).await;
    assert_eq!(response.status(), 200);
    let (read, _) = drain(response, u64::MAX).await;
    assert!(read > 200 * MB, "{read}");
    assert_eq!(read, hostile.sent(), "every byte reached the client");
    carpool.finish("giant SSE event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_json_answer_passes_whole_and_its_usage_is_recorded() {
    let mut setup = Setup::new().await;
    let hostile = Hostile::start().await;
    let carpool = Watched::start(
        &mut setup,
        json!([api_key_account("h", &hostile.url())]),
        "h",
    );
    let response = ask(carpool.url(), "huge_json", false).await;
    assert_eq!(response.status(), 200);
    let (read, _) = drain(response, u64::MAX).await;
    assert_eq!(read, hostile.sent(), "every byte reached the client");
    carpool.finish("200 MB JSON");
    // The usage at the end of the body was read, without keeping the body.
    let conn = carpool::ledger::store::open_existing(&setup.dir.path().join("usage.db")).unwrap();
    let (model, input, output, outcome): (String, i64, i64, String) = conn
        .query_row(
            "SELECT model, input_tokens, output_tokens, outcome FROM requests ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (model.as_str(), input, output, outcome.as_str()),
        ("claude-sonnet-4-5-20250929", 7, 11, "complete")
    );
}

// ---------------------------------------------------------------------------------------
// The answers Carpool reads whole for itself: the token and usage endpoints.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_endpoint_answer_is_not_read_whole() {
    let mut setup = Setup::new().await;
    // The access token expired: the first request needs a refresh.
    write_credentials(&setup.cred_path, ACCESS, REFRESH, now_ms() - 60_000);
    let hostile = Hostile::start().await;
    let account = json!({
        "tag": "o",
        "credential_path": setup.cred_path,
        "base_url": hostile.url(),
        "token_url": format!("{}/v1/oauth/token?mode=huge_json", hostile.url()),
    });
    let carpool = Watched::start(&mut setup, json!([account]), "o");
    let response = ask(carpool.url(), "small", false).await;
    assert_eq!(response.status(), 503);
    let text = response.text().await.unwrap();
    assert!(text.contains("tries again in"), "{text}");
    assert!(eventually(10, || async { hostile.cut() >= 1 }).await);
    assert!(hostile.sent() < 64 * MB, "{} MB sent", hostile.sent() / MB);
    let log = carpool.finish("200 MB token answer");
    assert!(
        log.contains("longer than 65536 bytes"),
        "the owner's log says why: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_usage_endpoint_answer_is_not_read_whole() {
    let mut setup = Setup::new().await;
    let hostile = Hostile::start().await;
    let account = json!({
        "tag": "o",
        "credential_path": setup.cred_path,
        "base_url": hostile.url(),
        "token_url": setup.mock.token_url(),
    });
    let carpool = Watched::start(&mut setup, json!([account]), "o");
    // Never polled yet: this request starts a background poll, which gets an endless
    // answer.
    let response = ask(carpool.url(), "small", false).await;
    assert_eq!(response.status(), 200);
    assert!(
        eventually(10, || async { hostile.cut() >= 1 }).await,
        "the poll never let go"
    );
    assert!(hostile.sent() < 64 * MB, "{} MB sent", hostile.sent() / MB);
    // The failed poll did not take the account out of service.
    assert_eq!(ask(carpool.url(), "small", false).await.status(), 200);
    carpool.finish("endless usage answer");
}
