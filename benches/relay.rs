//! Relay overhead benchmark: `/v1/messages` through Carpool versus directly against the
//! same mock upstream (the test mock, `tests/common/mock.rs`), non-streaming and
//! streaming (20 SSE events), at concurrency 1, 16 and 64; then the same for
//! `/v1/responses` (a Codex-like request) against the OpenAI test mock
//! (`tests/common/openai_mock.rs`) through an OpenAI API key account.
//!
//! Carpool runs as its own process (`carpool serve` with a generated config in a temp
//! dir); the mock and the load generator run in this one. So the bench can report
//! Carpool's own CPU time per request, read from `/proc/<pid>/stat` before and after each
//! scenario, usage ledger writes included: each reading waits until the ledger's writer
//! has written the scenario's records.
//!
//! Run with `cargo bench --bench relay` (optimised build). Everything listens on
//! 127.0.0.1; nothing leaves the machine. See bench/README.md for figures and how to
//! read them.
//!
//! Environment:
//! - `BENCH_QUICK=1`: a tenth of the requests (a smoke run of a few seconds);
//! - `BENCH_SCALE=<float>`: multiply the request counts by this factor;
//! - `BENCH_MAX_SECS=<secs>`: time cap per measured scenario (default 10);
//! - `BENCH_CONCURRENCY=<n,n,..>`: the concurrency levels (default `1,16,64`);
//! - `BENCH_STREAM_EVENTS=<n>`: SSE events per streamed answer (default 20, at least 7;
//!   a Responses stream has at least 9);
//! - `BENCH_WORKLOADS=<w,w>`: `messages`, `responses` or both (the default);
//! - `BENCH_CARPOOL=<path>`: the `carpool` binary to measure (default: the one cargo
//!   built for this bench), e.g. a release build or an older commit's;
//! - `BENCH_CALLGRIND=<dir>`: run Carpool under `valgrind --tool=callgrind` (dumps in
//!   `<dir>`) and report the instructions Carpool executed per request in each scenario,
//!   which unlike CPU time do not depend on what else the machine does. Slow: it defaults
//!   to the quick request counts and a 600 s cap.

#[path = "../tests/common/mock.rs"]
mod mock;
#[path = "../tests/common/openai_mock.rs"]
mod openai_mock;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mock::Mock;
use openai_mock::OpenAiMock;
use serde_json::json;

const ACCESS: &str = "sk-ant-oat01-bench-access-00000000001";
const REFRESH: &str = "sk-ant-ort01-bench-refresh-0000000001";
const USER_TOKEN: &str = "cpk-bench-token-000000000001";
const OPENAI_KEY: &str = "sk-proj-bench-openai-key-000000000001";
const HOUR_MS: u128 = 3_600_000;

/// Requests per measured scenario at scale 1, at concurrency 1 and above.
const LOW_REQUESTS: usize = 5_000;
const HIGH_REQUESTS: usize = 30_000;
/// Warm-up requests per scenario at scale 1 (connections opened, pools filled).
const WARMUP_LOW: usize = 500;
const WARMUP_HIGH: usize = 2_000;

/// Issue 9's targets for Carpool's own CPU time per request, and its throughput at
/// concurrency 64 as a share of direct (set on a 16-core machine).
const TARGET_CPU_JSON_US: f64 = 60.0;
const TARGET_CPU_STREAM_US: f64 = 100.0;
const TARGET_RPS_SHARE: f64 = 0.25;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: u64 = 100;
/// A CPU reading below this many ticks is marked as rough (±1 tick at each end).
const PRECISE_TICKS: u64 = 50;

/// What the requests are: Claude Code's `POST /v1/messages` to the Anthropic mock, or
/// Codex's `POST /v1/responses` to the OpenAI mock (through an `openai_api_key` account).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Messages,
    Responses,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Messages => "messages",
            Workload::Responses => "responses",
        }
    }

    /// The label's prefix: none for Messages, whose rows keep the labels of earlier runs.
    fn prefix(self) -> &'static str {
        match self {
            Workload::Messages => "",
            Workload::Responses => "responses ",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Workload::Messages => "/v1/messages",
            Workload::Responses => "/v1/responses",
        }
    }

    fn body(self, stream: bool) -> Vec<u8> {
        match self {
            Workload::Messages => body(stream),
            Workload::Responses => responses_body(stream),
        }
    }

    /// What a complete answer contains: the stream's last event, or the finished answer.
    fn complete(self, stream: bool) -> &'static [u8] {
        match (self, stream) {
            (Workload::Messages, true) => b"event: message_stop",
            (Workload::Messages, false) => b"\"end_turn\"",
            (Workload::Responses, true) => b"event: response.completed",
            (Workload::Responses, false) => b"\"status\":\"completed\"",
        }
    }
}

/// Width of the scenario column: 20, or the longest label when Responses rows are in.
static LABEL_WIDTH: AtomicUsize = AtomicUsize::new(20);

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
    workload: Workload,
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

/// CPU time of a scenario: the ticks it took and the requests it served.
#[derive(Clone, Copy)]
struct Cpu {
    ticks: u64,
    requests: usize,
}

impl Cpu {
    fn us_per_request(self) -> f64 {
        self.ticks as f64 * 1e6 / TICKS_PER_SEC as f64 / self.requests.max(1) as f64
    }

    fn show(self) -> String {
        let rough = if self.ticks < PRECISE_TICKS { "~" } else { "" };
        format!("{rough}{:.0}", self.us_per_request())
    }
}

struct Outcome {
    workload: Workload,
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
    /// CPU time of this process (the load generator and the mock).
    bench_cpu: Option<Cpu>,
    /// CPU time of the Carpool process (via-Carpool rows only).
    carpool_cpu: Option<Cpu>,
    /// Instructions Carpool executed per request (under callgrind only).
    carpool_ir: Option<f64>,
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

/// A Codex-like Responses request body (docs/protocol.md §12 item 11: no `instructions`,
/// the base prompt as the first `developer` message, `store: false`, `include`,
/// `prompt_cache_key`), of about the Messages body's size.
fn responses_body(stream: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "gpt-5.1-codex",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello in one short sentence."}]},
        ],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": false,
        "stream": stream,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "019a0000-bench-7000-8000-000000000001",
        "text": {"verbosity": "medium"},
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
        .timeout(Duration::from_secs(60))
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
    let request = client
        .post(&target.url)
        .header("authorization", &target.auth)
        .header("content-type", "application/json");
    let request = match target.workload {
        Workload::Messages => request
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "claude-code-20250219"),
        // Some of what Codex sends (docs/protocol.md §7.5, §12 item 11): the session and
        // installation ids are what Carpool records as session and device.
        Workload::Responses => request
            .header("originator", "codex_cli_rs")
            .header("openai-beta", "responses=experimental")
            .header("session-id", "019a0000-bench-7000-8000-000000000001")
            .header(
                "x-codex-installation-id",
                "019a0000-bench-7000-8000-0000000000aa",
            )
            .header(
                "accept",
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            ),
    };
    let mut response = request
        .body(body.clone())
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let mut first = None;
    let mut received = Vec::with_capacity(4096);
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
    if !memmem(&received, target.workload.complete(stream)) {
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
    let body = bytes::Bytes::from(target.workload.body(stream));
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
    concurrency: Vec<usize>,
    workloads: Vec<Workload>,
    /// How long Carpool is left alone before and after a measured load, so that its
    /// ledger writer (which gathers records for 100 ms) has written the warm-up's
    /// records before the first reading and the load's before the second.
    settle: Duration,
}

impl Plan {
    fn n(&self, base: usize) -> usize {
        ((base as f64 * self.scale).round() as usize).max(10)
    }
}

/// The Carpool process under measurement.
struct Carpool {
    child: Child,
    pid: u32,
    url: String,
    log: Arc<Mutex<LogTail>>,
    log_reader: std::thread::JoinHandle<()>,
    /// Where callgrind writes its dumps, when Carpool runs under it.
    callgrind: Option<PathBuf>,
}

impl Carpool {
    fn cpu_ticks(&self) -> Option<u64> {
        cpu_ticks(&format!("/proc/{}/stat", self.pid))
    }

    /// Zeroes callgrind's counters.
    fn callgrind_zero(&self) {
        if self.callgrind.is_some() {
            callgrind_control(&["-z", &self.pid.to_string()]);
        }
    }

    /// Dumps callgrind's counters since the last zero and returns the instructions.
    fn callgrind_dump(&self, label: &str) -> Option<u64> {
        let dir = self.callgrind.as_ref()?;
        let before = dumps(dir);
        callgrind_control(&["-d", label, &self.pid.to_string()]);
        // The dump is written by Carpool's own threads, shortly after the request.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let new: Vec<PathBuf> = dumps(dir)
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            if let Some(file) = new.first() {
                // The file may still be being written: wait for its totals line.
                if let Some(ir) = std::fs::read_to_string(file).ok().and_then(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("totals: "))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                }) {
                    return Some(ir);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("no callgrind dump for {label}");
        None
    }

    /// Stops Carpool (SIGTERM: it writes what its ledger holds) and returns what it logged.
    fn stop(mut self) -> LogTail {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The log pipe ends with the process.
        let _ = self.log_reader.join();
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// What Carpool logged that the bench reports: warnings and errors, and the last lines.
#[derive(Default)]
struct LogTail {
    lines: usize,
    warnings: Vec<String>,
    last: std::collections::VecDeque<String>,
}

impl LogTail {
    const KEEP: usize = 20;

    fn push(&mut self, line: String) {
        self.lines += 1;
        if (line.contains(" WARN ") || line.contains(" ERROR ")) && self.warnings.len() < Self::KEEP
        {
            self.warnings.push(line.clone());
        }
        if self.last.len() == Self::KEEP {
            self.last.pop_front();
        }
        self.last.push_back(line);
    }
}

fn callgrind_control(args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("callgrind_control {args:?} failed: {status:?}");
    }
}

fn dumps(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("callgrind.out"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// User + system CPU ticks of a process so far, all its threads (live and exited)
/// included: fields 14 and 15 of proc(5)'s `/proc/<pid>/stat`.
fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Counted from the state, which is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

struct Scenario<'a> {
    route: Route,
    target: &'a Arc<Target>,
    stream: bool,
    concurrency: usize,
    counts: (usize, usize),
}

async fn scenario(plan: &Plan, carpool: &Carpool, s: Scenario<'_>) -> Outcome {
    let Scenario {
        route,
        target,
        stream,
        concurrency,
        counts: (warm, measured),
    } = s;
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
    let via = route == Route::Carpool;
    if via {
        tokio::time::sleep(plan.settle).await;
        carpool.callgrind_zero();
    }
    let carpool_before = carpool.cpu_ticks();
    let bench_before = cpu_ticks("/proc/self/stat");
    let (s, elapsed, capped) = load(&client, target, stream, concurrency, measured, plan.cap).await;
    let bench_after = cpu_ticks("/proc/self/stat");
    if via {
        tokio::time::sleep(plan.settle).await;
    }
    let carpool_after = carpool.cpu_ticks();
    let served = s.total.len();
    let cpu = |before: Option<u64>, after: Option<u64>| {
        Some(Cpu {
            ticks: after?.checked_sub(before?)?,
            requests: served,
        })
        .filter(|_| served > 0)
    };
    let label = format!(
        "{}-{}",
        label(target.workload, stream, concurrency).replace(' ', "-"),
        route.name()
    );
    let carpool_ir = if via {
        carpool
            .callgrind_dump(&label)
            .filter(|_| served > 0)
            .map(|ir| ir as f64 / served as f64)
    } else {
        None
    };
    Outcome {
        workload: target.workload,
        stream,
        concurrency,
        route,
        requests: served,
        errors: s.errors,
        first_error: s.first_error,
        elapsed,
        capped,
        total: summary(s.total),
        first_chunk: stream.then(|| summary(s.first_chunk)),
        bench_cpu: cpu(bench_before, bench_after),
        carpool_cpu: if via {
            cpu(carpool_before, carpool_after)
        } else {
            None
        },
        carpool_ir,
    }
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

/// Starts `carpool serve` on a generated config (one account: the mock, and an OpenAI
/// API key account on the OpenAI mock when there is one; one user bound to both) and
/// reads its banner for the URL. Its log (the default `info`, one line per request, as
/// a person running it would have) goes to a pipe this process reads, as it would to
/// journald or a terminal.
///
/// The credentials file has a directory of its own, as `~/.claude/` is: Carpool watches
/// that directory, and the ledger's writes next to it would wake the watcher on every
/// batch, a cost no real setup has.
fn start_carpool(
    dir: &Path,
    mock: &Mock,
    openai: Option<&OpenAiMock>,
    callgrind: Option<PathBuf>,
) -> Carpool {
    let claude = dir.join("claude");
    std::fs::create_dir_all(&claude).unwrap();
    let cred_path = claude.join(".credentials.json");
    write_credentials(&cred_path);
    let mut config = json!({
        "listen": "127.0.0.1",
        "listen_port": 0,
        "database": dir.join("data/usage.db"),
        "credentials": [
            {"tag": "mock", "credential_path": cred_path, "base_url": mock.url(), "token_url": mock.token_url()},
        ],
        "users": [
            {"name": "bench", "token": USER_TOKEN, "credential": "mock"},
        ],
    });
    if let Some(openai) = openai {
        config["credentials"].as_array_mut().unwrap().push(json!(
            {"tag": "openai", "type": "openai_api_key", "api_key": OPENAI_KEY, "base_url": openai.api_base()}
        ));
        config["users"][0]["credential"] = json!(["mock", "openai"]);
    }
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    // It holds a user token in clear: private, or Carpool warns about it.
    std::fs::set_permissions(
        &config_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let bin = std::env::var_os("BENCH_CARPOOL").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_carpool")),
        PathBuf::from,
    );
    let mut cmd = match &callgrind {
        Some(out) => {
            std::fs::create_dir_all(out).unwrap();
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg("--dump-instr=no")
                .arg(format!(
                    "--callgrind-out-file={}",
                    out.join("callgrind.out").display()
                ))
                .arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.args(["serve", "--config"])
        .arg(&config_path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("XDG_DATA_HOME", dir.join(".local/share"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let pid = child.id();
    let log = Arc::new(Mutex::new(LogTail::default()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let sink = log.clone();
    let log_reader = std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut url = None;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(rest) = line.trim_end().split("listening on ").nth(1) {
            url = Some(rest.to_owned());
            break;
        }
        line.clear();
    }
    let Some(url) = url else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = log_reader.join();
        let tail = log.lock().unwrap().last.iter().cloned().collect::<Vec<_>>();
        panic!("carpool printed no banner; its log:\n{}", tail.join("\n"));
    };
    // Keep draining stdout so Carpool never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    Carpool {
        child,
        pid,
        url,
        log,
        log_reader,
        callgrind,
    }
}

fn main() -> ExitCode {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let callgrind = std::env::var_os("BENCH_CALLGRIND").map(PathBuf::from);
    let scale = env_f64("BENCH_SCALE").unwrap_or(1.0)
        * if quick || callgrind.is_some() {
            0.1
        } else {
            1.0
        };
    let default_cap = if callgrind.is_some() { 600.0 } else { 10.0 };
    let cap = Duration::from_secs_f64(env_f64("BENCH_MAX_SECS").unwrap_or(default_cap));
    let concurrency = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![1, 16, 64]);
    let events = env_f64("BENCH_STREAM_EVENTS").map_or(20, |v| (v as usize).max(7));
    let workloads = std::env::var("BENCH_WORKLOADS")
        .ok()
        .map(|v| {
            [Workload::Messages, Workload::Responses]
                .into_iter()
                .filter(|w| v.split(',').any(|n| n.trim() == w.name()))
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![Workload::Messages, Workload::Responses]);
    let plan = Plan {
        scale,
        cap,
        concurrency,
        workloads,
        settle: if callgrind.is_some() {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(300)
        },
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(plan, events, callgrind))
}

async fn run(plan: Plan, events: usize, callgrind: Option<PathBuf>) -> ExitCode {
    let run_started = Instant::now();
    // The only upstream, for both paths. Its token endpoint is never called (the token
    // is valid for 8 hours), and it keeps no requests (it would otherwise hold them all).
    let mock = Mock::start(ACCESS).await;
    mock.state.recording.store(false, Ordering::Relaxed);
    // message_start, content_block_start, ping, the deltas, content_block_stop,
    // message_delta, message_stop.
    mock.state.deltas.store(events - 6, Ordering::Relaxed);
    // The OpenAI upstream, when Responses are measured, set up the same way:
    // response.created, response.in_progress, response.output_item.added,
    // response.content_part.added, the deltas, response.output_text.done,
    // response.content_part.done, response.output_item.done, response.completed.
    let responses_events = events.max(9);
    let openai = if plan.workloads.contains(&Workload::Responses) {
        let openai = OpenAiMock::start(OPENAI_KEY).await;
        openai.state.recording.store(false, Ordering::Relaxed);
        openai
            .state
            .deltas
            .store(responses_events - 8, Ordering::Relaxed);
        Some(openai)
    } else {
        None
    };

    let dir = tempfile::tempdir().unwrap();
    let carpool = start_carpool(dir.path(), &mock, openai.as_ref(), callgrind);

    // The direct base URLs include what Carpool's base URL replaces: `/v1` for both.
    let target = |workload: Workload, via: bool| {
        let (base, token) = match (via, workload) {
            (true, _) => (carpool.url.clone(), USER_TOKEN),
            (false, Workload::Messages) => (mock.url(), ACCESS),
            (false, Workload::Responses) => (
                openai.as_ref().expect("the OpenAI mock runs").url(),
                OPENAI_KEY,
            ),
        };
        Arc::new(Target {
            url: format!("{base}{}", workload.path()),
            auth: format!("Bearer {token}"),
            workload,
        })
    };
    let width = plan
        .workloads
        .iter()
        .flat_map(|&w| {
            plan.concurrency
                .iter()
                .map(move |&c| label(w, true, c).len().max(label(w, false, c).len()))
        })
        .max()
        .unwrap_or(0)
        .max(20);
    LABEL_WIDTH.store(width, Ordering::Relaxed);

    // What Carpool costs doing nothing, to tell it apart from the per-request figures.
    let idle = Duration::from_secs(1);
    let idle_before = carpool.cpu_ticks();
    tokio::time::sleep(idle).await;
    let idle_ticks = match (idle_before, carpool.cpu_ticks()) {
        (Some(a), Some(b)) => format!("{} ms", (b - a) * 1000 / TICKS_PER_SEC),
        _ => "?".into(),
    };

    println!(
        "carpool relay bench: {} CPUs shared by Carpool (`carpool serve`, pid {}) and this process (load generator and mock upstream)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        carpool.pid,
    );
    println!(
        "scale {}, cap {:?} per scenario, streams of {events} SSE events; upstream {} (tests/common/mock.rs), carpool {}",
        plan.scale,
        plan.cap,
        mock.url(),
        carpool.url
    );
    if let Some(openai) = &openai {
        println!(
            "responses: /v1/responses (Codex-like) via an openai_api_key account; upstream {} (tests/common/openai_mock.rs), streams of {responses_events} SSE events, {} bytes (messages: {} bytes)",
            openai.url(),
            openai_mock::sse_events_split("gpt-5.1-codex", 1, responses_events - 8)
                .concat()
                .len(),
            mock::sse_events_split("claude-sonnet-4-5-20250929", events - 6)
                .concat()
                .len(),
        );
    }
    println!("Carpool's CPU while idle: {idle_ticks} in {idle:?}");
    println!(
        "latencies in ms; ttfc = time to the first body chunk (the first SSE event); cpu in us per request"
    );
    println!(
        "cpu: bench = this process (client + mock), carpool = the Carpool process, ledger writes included; ~ = under {PRECISE_TICKS} ticks of 10 ms, rough"
    );
    println!(
        "a Nagle stall (a small write waiting for a delayed ACK) would show as ~40 ms in the streaming c=1 rows"
    );
    println!();

    let mut outcomes = Vec::new();
    for &workload in &plan.workloads {
        let direct = target(workload, false);
        let via = target(workload, true);
        for stream in [false, true] {
            for &concurrency in &plan.concurrency {
                let counts = if concurrency == 1 {
                    (plan.n(WARMUP_LOW), plan.n(LOW_REQUESTS))
                } else {
                    (plan.n(WARMUP_HIGH), plan.n(HIGH_REQUESTS))
                };
                for route in [Route::Direct, Route::Carpool] {
                    let target = if route == Route::Direct {
                        &direct
                    } else {
                        &via
                    };
                    let s = Scenario {
                        route,
                        target,
                        stream,
                        concurrency,
                        counts,
                    };
                    let o = scenario(&plan, &carpool, s).await;
                    print_row(&o);
                    outcomes.push(o);
                }
            }
        }
    }

    println!();
    println!(
        "Carpool / direct (req/s: below 1 is slower; latency: above 1 is slower); carpool cpu in us per request"
    );
    println!(
        "{:<width$} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>10} {:>12}{}",
        "scenario",
        "req/s",
        "p50",
        "p99",
        "ttfc p50",
        "ttfc p99",
        "+p50 ms",
        "+p99 ms",
        "carpool cpu",
        if carpool.callgrind.is_some() {
            format!(" {:>14}", "carpool Ir/req")
        } else {
            String::new()
        }
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
            "{:<width$} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>9} {:>10.3} {:>10.3} {:>12}{}",
            label(c.workload, c.stream, c.concurrency),
            c.rps() / d.rps(),
            ratio(c.total.p50, d.total.p50),
            ratio(c.total.p99, d.total.p99),
            f50,
            f99,
            ms(c.total.p50) - ms(d.total.p50),
            ms(c.total.p99) - ms(d.total.p99),
            c.carpool_cpu.map_or("-".into(), Cpu::show),
            c.carpool_ir
                .map_or(String::new(), |ir| format!(" {ir:>14.0}")),
        );
    }

    println!();
    println!(
        "targets (issue 9, set on a 16-core machine with Carpool on 4 cores of its own; this run shares {} CPUs):",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for stream in [false, true] {
        let (what, target) = if stream {
            (format!("{events}-event stream"), TARGET_CPU_STREAM_US)
        } else {
            ("non-streaming request".to_string(), TARGET_CPU_JSON_US)
        };
        let figures: Vec<String> = outcomes
            .iter()
            .filter(|o| {
                o.workload == Workload::Messages && o.stream == stream && o.route == Route::Carpool
            })
            .map(|o| {
                format!(
                    "c={} {}",
                    o.concurrency,
                    o.carpool_cpu.map_or("-".into(), Cpu::show)
                )
            })
            .collect();
        println!(
            "  Carpool CPU per {what}: {} us (target <= {target:.0} us)",
            figures.join(", ")
        );
    }
    let top = plan.concurrency.iter().copied().max().unwrap_or(1);
    let shares: Vec<String> = outcomes
        .chunks(2)
        .filter(|p| p[1].workload == Workload::Messages && p[1].concurrency == top)
        .map(|p| {
            format!(
                "{} {:.0}%",
                if p[1].stream {
                    "streaming"
                } else {
                    "non-streaming"
                },
                100.0 * p[1].rps() / p[0].rps()
            )
        })
        .collect();
    println!(
        "  Carpool req/s as a share of direct at c={top}: {} (target >= {:.0}%)",
        shares.join(", "),
        TARGET_RPS_SHARE * 100.0
    );
    if plan.workloads.contains(&Workload::Responses) {
        // Issue 9 set no targets for Responses; the same figures, to set them against.
        let cpu = |stream: bool| {
            outcomes
                .iter()
                .filter(|o| {
                    o.workload == Workload::Responses
                        && o.stream == stream
                        && o.route == Route::Carpool
                })
                .map(|o| {
                    format!(
                        "c={} {}",
                        o.concurrency,
                        o.carpool_cpu.map_or("-".into(), Cpu::show)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let shares: Vec<String> = outcomes
            .chunks(2)
            .filter(|p| p[1].workload == Workload::Responses && p[1].concurrency == top)
            .map(|p| {
                format!(
                    "{} {:.0}%",
                    if p[1].stream {
                        "streaming"
                    } else {
                        "non-streaming"
                    },
                    100.0 * p[1].rps() / p[0].rps()
                )
            })
            .collect();
        println!("responses (no targets of their own):");
        println!(
            "  Carpool CPU per non-streaming request: {} us; per {responses_events}-event stream: {} us",
            cpu(false),
            cpu(true)
        );
        println!(
            "  Carpool req/s as a share of direct at c={top}: {}",
            shares.join(", ")
        );
    }

    let sent: usize = outcomes
        .iter()
        .filter(|o| o.route == Route::Carpool)
        .map(|o| o.requests)
        .sum();
    let log = carpool.stop();
    let warnings = &log.warnings;
    let rows = ledger_rows(&dir.path().join("data/usage.db"));
    println!();
    println!(
        "ledger: {rows} rows for the {sent} measured requests through Carpool plus warm-ups; Carpool logged {} lines, {} of them warnings or errors",
        log.lines,
        warnings.len()
    );
    for line in warnings.iter().take(3) {
        println!("  {line}");
    }
    println!(
        "total run time {:.1} s",
        run_started.elapsed().as_secs_f64()
    );
    let errors: usize = outcomes.iter().map(|o| o.errors).sum();
    if errors > 0 || rows < sent as i64 {
        for o in outcomes.iter().filter(|o| o.errors > 0) {
            eprintln!(
                "{} {}: {} errors, first: {}",
                label(o.workload, o.stream, o.concurrency),
                o.route.name(),
                o.errors,
                o.first_error.as_deref().unwrap_or("?")
            );
        }
        if rows < sent as i64 {
            eprintln!("the ledger is missing records: {rows} rows for {sent} requests");
        }
        eprintln!("the end of Carpool's log:");
        for l in &log.last {
            eprintln!("  {l}");
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Rows in the ledger's `requests` table (after Carpool stopped, which writes them all).
fn ledger_rows(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|c| c.query_row("SELECT count(*) FROM requests", [], |r| r.get(0)))
        .unwrap_or(-1)
}

fn label(workload: Workload, stream: bool, concurrency: usize) -> String {
    format!(
        "{}{} c={concurrency}",
        workload.prefix(),
        if stream { "streaming" } else { "non-streaming" }
    )
}

fn print_row(o: &Outcome) {
    static HEADER: std::sync::Once = std::sync::Once::new();
    let width = LABEL_WIDTH.load(Ordering::Relaxed);
    HEADER.call_once(|| {
        println!(
            "{:<width$} {:<8} {:>8} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
            "scenario",
            "path",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p99 ms",
            "ttfc p50",
            "ttfc p99",
            "bench cpu",
            "carpool cpu"
        );
    });
    let (f50, f99) = match o.first_chunk {
        Some(f) => (format!("{:.3}", ms(f.p50)), format!("{:.3}", ms(f.p99))),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{:<width$} {:<8} {:>8} {:>6} {:>8.0} {:>9.3} {:>9.3} {:>9} {:>9} {:>9} {:>11}{}",
        label(o.workload, o.stream, o.concurrency),
        o.route.name(),
        o.requests,
        o.errors,
        o.rps(),
        ms(o.total.p50),
        ms(o.total.p99),
        f50,
        f99,
        o.bench_cpu.map_or("-".into(), Cpu::show),
        o.carpool_cpu.map_or("-".into(), Cpu::show),
        if o.capped { "  (time cap hit)" } else { "" }
    );
}
