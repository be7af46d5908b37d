//! Relay overhead benchmark: `/v1/messages` through Carpool versus directly against the
//! same mock upstream (the test mock, `tests/common/mock.rs`), non-streaming and
//! streaming, at concurrency 1 and 16.
//!
//! Run with `cargo bench --bench relay` (optimised build). Everything listens on
//! 127.0.0.1; nothing leaves the machine. See bench/README.md for figures and how to
//! read them.
//!
//! Environment:
//! - `BENCH_QUICK=1`: a tenth of the requests (a smoke run of a few seconds);
//! - `BENCH_SCALE=<float>`: multiply the request counts by this factor;
//! - `BENCH_MAX_SECS=<secs>`: time cap per measured scenario (default 10);
//! - `BENCH_HIGH_CONCURRENCY=<n>`: the high concurrency level (default 16).

#[path = "../tests/common/mock.rs"]
mod mock;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mock::Mock;
use serde_json::json;

const ACCESS: &str = "sk-ant-oat01-bench-access-00000000001";
const REFRESH: &str = "sk-ant-ort01-bench-refresh-0000000001";
const USER_TOKEN: &str = "cpk-bench-token-000000000001";
const HOUR_MS: u128 = 3_600_000;

/// Requests per measured scenario at scale 1.
const LOW_REQUESTS: usize = 5_000;
const HIGH_REQUESTS: usize = 30_000;
/// Warm-up requests per scenario at scale 1 (connections opened, pools filled).
const WARMUP_LOW: usize = 500;
const WARMUP_HIGH: usize = 2_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Carpool,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Carpool => "carpool",
        }
    }
}

struct Target {
    url: String,
    auth: String,
}

#[derive(Default)]
struct Samples {
    /// Whole request: send → last byte of the body.
    total: Vec<Duration>,
    /// Streaming only: send → first body chunk (the first SSE event).
    first_chunk: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

struct Outcome {
    stream: bool,
    concurrency: usize,
    route: Route,
    requests: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    capped: bool,
    total: Summary,
    first_chunk: Option<Summary>,
    /// CPU time of the whole process (client, upstream and Carpool) per request.
    cpu_per_request: Option<Duration>,
}

#[derive(Clone, Copy)]
struct Summary {
    p50: Duration,
    p99: Duration,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

fn summary(mut v: Vec<Duration>) -> Summary {
    v.sort_unstable();
    Summary {
        p50: percentile(&v, 0.50),
        p99: percentile(&v, 0.99),
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// A Claude-Code-like request body (a few hundred bytes).
fn body(stream: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hello in one short sentence."}]},
        ],
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "bench"},
    }))
    .unwrap()
}

/// A fresh keep-alive client per scenario, as an SDK would hold one.
fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency.max(1) * 2)
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One request; returns (first chunk, whole request) times.
async fn one(
    client: &reqwest::Client,
    target: &Target,
    body: &bytes::Bytes,
    stream: bool,
) -> Result<(Duration, Duration), String> {
    let started = Instant::now();
    let mut response = client
        .post(&target.url)
        .header("authorization", &target.auth)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "claude-code-20250219")
        .body(body.clone())
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let mut first = None;
    let mut received = Vec::with_capacity(2048);
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("body: {e}"))? {
        if first.is_none() {
            first = Some(started.elapsed());
        }
        received.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    if !status.is_success() {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&received)
        ));
    }
    let complete = if stream {
        memmem(&received, b"event: message_stop")
    } else {
        memmem(&received, b"\"end_turn\"")
    };
    if !complete {
        return Err(format!(
            "incomplete body: {}",
            String::from_utf8_lossy(&received)
        ));
    }
    Ok((first.unwrap_or(total), total))
}

fn memmem(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `concurrency` workers share `requests`; each stops when none are left or at `deadline`.
async fn load(
    client: &reqwest::Client,
    target: &Arc<Target>,
    stream: bool,
    concurrency: usize,
    requests: usize,
    cap: Duration,
) -> (Samples, Duration, bool) {
    let remaining = Arc::new(AtomicUsize::new(requests));
    let body = bytes::Bytes::from(body(stream));
    let started = Instant::now();
    let deadline = started + cap;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let target = target.clone();
        let remaining = remaining.clone();
        let body = body.clone();
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        workers.push(tokio::spawn(async move {
            let mut s = Samples {
                total: Vec::with_capacity(requests / concurrency + 1),
                first_chunk: Vec::with_capacity(if stream {
                    requests / concurrency + 1
                } else {
                    0
                }),
                ..Samples::default()
            };
            while Instant::now() < deadline
                && remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                match one(&client, &target, &body, stream).await {
                    Ok((first, total)) => {
                        s.total.push(total);
                        if stream {
                            s.first_chunk.push(first);
                        }
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.first_error.get_or_insert(e);
                    }
                }
            }
            s
        }));
    }
    let mut all = Samples::default();
    for w in workers {
        let s = w.await.expect("worker panicked");
        all.total.extend(s.total);
        all.first_chunk.extend(s.first_chunk);
        all.errors += s.errors;
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
    }
    let elapsed = started.elapsed();
    let capped = remaining.load(Ordering::Relaxed) > 0;
    (all, elapsed, capped)
}

struct Plan {
    scale: f64,
    cap: Duration,
}

impl Plan {
    fn n(&self, base: usize) -> usize {
        ((base as f64 * self.scale).round() as usize).max(10)
    }
}

async fn scenario(
    plan: &Plan,
    target: &Arc<Target>,
    route: Route,
    stream: bool,
    concurrency: usize,
    (warm, measured): (usize, usize),
) -> Outcome {
    let client = client(concurrency);
    let (w, _, _) = load(&client, target, stream, concurrency, warm, plan.cap).await;
    if w.errors > 0 {
        panic!(
            "{} warm-up failed ({} errors): {}",
            route.name(),
            w.errors,
            w.first_error.unwrap_or_default()
        );
    }
    let cpu_before = process_cpu();
    let (s, elapsed, capped) = load(&client, target, stream, concurrency, measured, plan.cap).await;
    let cpu_per_request = match (cpu_before, process_cpu()) {
        // Below 20 ticks the figure says more about tick rounding than about the relay.
        (Some(a), Some(b)) if !s.total.is_empty() && b - a >= Duration::from_millis(200) => {
            Some((b - a) / s.total.len() as u32)
        }
        _ => None,
    };
    Outcome {
        stream,
        concurrency,
        route,
        requests: s.total.len(),
        errors: s.errors,
        first_error: s.first_error,
        elapsed,
        capped,
        total: summary(s.total),
        first_chunk: stream.then(|| summary(s.first_chunk)),
        cpu_per_request,
    }
}

/// User + system CPU time of this process so far (Linux: /proc/self/stat, in clock ticks
/// of 10 ms; scenarios run long enough for that to be precise to a few percent).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn write_credentials(path: &Path) {
    let text = serde_json::to_string_pretty(&json!({
        "claudeAiOauth": {
            "accessToken": ACCESS,
            "refreshToken": REFRESH,
            "expiresAt": (now_ms() + 8 * HOUR_MS) as u64,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"
        }
    }))
    .unwrap();
    std::fs::write(path, text).unwrap();
}

fn main() -> ExitCode {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let scale = env_f64("BENCH_SCALE").unwrap_or(1.0) * if quick { 0.1 } else { 1.0 };
    let cap = Duration::from_secs_f64(env_f64("BENCH_MAX_SECS").unwrap_or(10.0));
    let high = env_f64("BENCH_HIGH_CONCURRENCY").map_or(16, |v| v.max(2.0) as usize);
    let plan = Plan { scale, cap };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(plan, high))
}

async fn run(plan: Plan, high: usize) -> ExitCode {
    let run_started = Instant::now();
    // The only upstream, for both paths. Its token endpoint is never called (the token
    // is valid for 8 hours), and it keeps no requests (it would otherwise hold them all).
    let mock = Mock::start(ACCESS).await;
    mock.state.recording.store(false, Ordering::Relaxed);

    let dir = tempfile::tempdir().unwrap();
    let cred_path = dir.path().join(".credentials.json");
    write_credentials(&cred_path);
    let config = json!({
        "listen": "127.0.0.1",
        "listen_port": 0,
        "credentials": [
            {"tag": "mock", "credential_path": cred_path, "base_url": mock.url(), "token_url": mock.token_url()},
        ],
        "users": [
            {"name": "bench", "token": USER_TOKEN, "credential": "mock"},
        ],
    });
    let text = serde_json::to_string(&config).unwrap();
    let cfg = carpool::Config::parse(&text, &dir.path().join("config.json")).unwrap();
    let server = carpool::Server::bind(cfg).await.unwrap().spawn();

    let target = |url: &str, token: &str| {
        Arc::new(Target {
            url: format!("{url}/v1/messages"),
            auth: format!("Bearer {token}"),
        })
    };
    let direct = target(&mock.url(), ACCESS);
    let via = target(&server.url(), USER_TOKEN);

    println!(
        "carpool relay bench: {} CPUs, tokio multi-thread runtime shared by client, upstream and Carpool",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "scale {}, cap {:?} per scenario; upstream {} (tests/common/mock.rs), carpool {}",
        plan.scale,
        plan.cap,
        mock.url(),
        server.url()
    );
    println!("latencies in ms; ttfc = time to the first body chunk (the first SSE event)");
    println!(
        "a Nagle stall (a small write waiting for a delayed ACK) would show as ~40 ms in the streaming c=1 rows"
    );
    println!();

    let mut outcomes = Vec::new();
    for stream in [false, true] {
        for concurrency in [1, high] {
            let counts = if concurrency == 1 {
                (plan.n(WARMUP_LOW), plan.n(LOW_REQUESTS))
            } else {
                (plan.n(WARMUP_HIGH), plan.n(HIGH_REQUESTS))
            };
            for route in [Route::Direct, Route::Carpool] {
                let t = if route == Route::Direct {
                    &direct
                } else {
                    &via
                };
                let o = scenario(&plan, t, route, stream, concurrency, counts).await;
                print_row(&o);
                outcomes.push(o);
            }
        }
    }

    println!();
    println!("Carpool / direct (req/s: below 1 is slower; latency: above 1 is slower)");
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "scenario",
        "req/s",
        "p50",
        "p99",
        "ttfc p50",
        "ttfc p99",
        "+p50 ms",
        "+p99 ms",
        "+cpu us/req"
    );
    for pair in outcomes.chunks(2) {
        let (d, c) = (&pair[0], &pair[1]);
        let ratio = |a: Duration, b: Duration| ms(a) / ms(b).max(1e-9);
        let (f50, f99) = match (c.first_chunk, d.first_chunk) {
            (Some(cf), Some(df)) => (
                format!("{:.2}", ratio(cf.p50, df.p50)),
                format!("{:.2}", ratio(cf.p99, df.p99)),
            ),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "{:<20} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>9} {:>10.3} {:>10.3} {:>12}",
            label(c.stream, c.concurrency),
            c.rps() / d.rps(),
            ratio(c.total.p50, d.total.p50),
            ratio(c.total.p99, d.total.p99),
            f50,
            f99,
            ms(c.total.p50) - ms(d.total.p50),
            ms(c.total.p99) - ms(d.total.p99),
            match (c.cpu_per_request, d.cpu_per_request) {
                (Some(a), Some(b)) => format!("{:.0}", (a.as_secs_f64() - b.as_secs_f64()) * 1e6),
                _ => "-".into(),
            },
        );
    }

    server.shutdown().await;
    println!();
    println!(
        "total run time {:.1} s",
        run_started.elapsed().as_secs_f64()
    );
    let errors: usize = outcomes.iter().map(|o| o.errors).sum();
    if errors > 0 {
        for o in outcomes.iter().filter(|o| o.errors > 0) {
            eprintln!(
                "{} {}: {} errors, first: {}",
                label(o.stream, o.concurrency),
                o.route.name(),
                o.errors,
                o.first_error.as_deref().unwrap_or("?")
            );
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn label(stream: bool, concurrency: usize) -> String {
    format!(
        "{} c={concurrency}",
        if stream { "streaming" } else { "non-streaming" }
    )
}

fn print_row(o: &Outcome) {
    static HEADER: std::sync::Once = std::sync::Once::new();
    HEADER.call_once(|| {
        println!(
            "{:<20} {:<8} {:>8} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>11}",
            "scenario",
            "path",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p99 ms",
            "ttfc p50",
            "ttfc p99",
            "cpu us/req"
        );
    });
    let (f50, f99) = match o.first_chunk {
        Some(f) => (format!("{:.3}", ms(f.p50)), format!("{:.3}", ms(f.p99))),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{:<20} {:<8} {:>8} {:>6} {:>8.0} {:>9.3} {:>9.3} {:>9} {:>9} {:>11}{}",
        label(o.stream, o.concurrency),
        o.route.name(),
        o.requests,
        o.errors,
        o.rps(),
        ms(o.total.p50),
        ms(o.total.p99),
        f50,
        f99,
        o.cpu_per_request
            .map_or("-".into(), |c| format!("{:.0}", c.as_secs_f64() * 1e6)),
        if o.capped { "  (time cap hit)" } else { "" }
    );
}
