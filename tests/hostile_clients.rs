//! Clients that try to exhaust Carpool before (or just after) authenticating: slow
//! headers, floods of idle connections, huge headers, stalled bodies, and floods under a
//! low open-file limit. Each test shows the connections closed on time, memory bounded,
//! and well-behaved clients served during and after the attack (`connections` in the
//! config; src/listener.rs).
//!
//! Timeouts are configured short (about a second) so each test takes a few seconds;
//! bounds are generous because the machine may be busy.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{self, BIN, Process};
use common::*;
use futures_util::future::join_all;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 response (head, then a `Content-Length` body): status and body.
/// `None` if the connection ends first.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    Some((status, body))
}

/// Reads (and discards) until the server closes the connection; how long that took
/// from `since`, or `None` if it was still open after `limit`.
async fn closed_within(
    stream: &mut (impl AsyncRead + Unpin),
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut sink = [0u8; 4096];
    let wait = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit.saturating_sub(since.elapsed()), wait)
        .await
        .ok()
}

/// True if the connection is still open (nothing to read, no end) after a short look.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte))
        .await
        .is_err()
}

/// `VmRSS` or `VmHWM` of a process, in MB.
fn memory_mb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

/// User + system CPU time of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // After the command name: state is field 3, utime 14, stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `carpool serve` for this setup, started through `sh -c '<limits> && exec carpool …'`.
fn serve_with_ulimit(setup: &Setup, ulimit: &str) -> Process {
    let config = setup.write_config();
    let template = process::command(setup.dir.path());
    let mut cmd = Command::new("sh");
    cmd.env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .arg("-c")
        .arg(format!("{ulimit} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(["serve", "--config"])
        .arg(&config);
    process::start(cmd)
}

async fn stop(p: Process) -> String {
    process::sigterm(&p.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || process::finish(p))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    stderr
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn slow_headers_are_closed_after_header_timeout_while_others_are_served() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"header_timeout": "1s"});
    let carpool = setup.start().await;

    let started = Instant::now();
    let slow = TcpStream::connect(carpool.addr).await.unwrap();
    let (mut read, mut write) = slow.into_split();
    // One byte every 200 ms: the head would take about 20 s.
    #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
    let dribble = tokio::spawn(async move {
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: carpool\r\nauthorization: Bearer {ALICE_TOKEN}\r\n\r\n"
        );
        for byte in head.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // A well-behaved client meanwhile.
    assert_eq!(ask(&carpool, false).await.status(), 200);

    let closed = closed_within(&mut read, started, Duration::from_secs(5))
        .await
        .expect("the slow client was not disconnected");
    assert!(
        closed >= Duration::from_millis(900),
        "closed too early: {closed:?}"
    );
    dribble.abort();
    assert_eq!(ask(&carpool, false).await.status(), 200);
    carpool.shutdown().await;
}

#[tokio::test]
async fn idle_floods_are_closed_after_their_timeouts_and_others_are_served() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"header_timeout": "1s", "keep_alive": "3s"});
    let carpool = setup.start().await;
    let addr = carpool.addr;

    // 100 connections that never send a byte…
    let started = Instant::now();
    let mut silent: Vec<TcpStream> =
        join_all((0..100).map(|_| async move { TcpStream::connect(addr).await.unwrap() })).await;
    // …and 50 that make one request, then sit idle with keep-alive.
    let kept: Vec<(TcpStream, Instant)> = join_all((0..50).map(|_| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /not-relayed HTTP/1.1\r\nhost: carpool\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = read_response(&mut s).await.expect("an answer");
        assert_eq!(status, 404);
        (s, Instant::now())
    }))
    .await;

    assert_eq!(
        ask(&carpool, false).await.status(),
        200,
        "served during the flood"
    );

    // (A burst of connects may see a SYN retried after a second: each connection's
    // times are measured from its own start.)
    let closed = join_all(
        silent
            .iter_mut()
            .map(|s| closed_within(s, started, Duration::from_secs(4))),
    )
    .await;
    assert!(
        closed.iter().all(Option::is_some),
        "{} of 100 silent connections still open",
        closed.iter().filter(|c| c.is_none()).count()
    );
    assert!(
        closed
            .iter()
            .flatten()
            .all(|d| *d >= Duration::from_millis(900))
    );

    // `header_timeout` does not cut idle keep-alive connections: `keep_alive` does.
    let closed = join_all(kept.into_iter().map(|(mut s, idle_since)| async move {
        tokio::time::sleep_until((idle_since + Duration::from_millis(1800)).into()).await;
        assert!(
            still_open(&mut s).await,
            "keep-alive connection closed before `keep_alive`"
        );
        closed_within(&mut s, idle_since, Duration::from_secs(7)).await
    }))
    .await;
    assert!(
        closed.iter().all(Option::is_some),
        "{} of 50 idle keep-alive connections still open",
        closed.iter().filter(|c| c.is_none()).count()
    );
    assert!(
        closed
            .iter()
            .flatten()
            .all(|d| *d >= Duration::from_millis(2800)),
        "{closed:?}"
    );

    assert_eq!(
        ask(&carpool, false).await.status(),
        200,
        "served after the flood"
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn a_silent_stream_is_not_cut_by_keep_alive_or_header_timeout() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"header_timeout": "1s", "keep_alive": "1s"});
    let carpool = setup.start().await;
    setup.mock.push(Reply::GatedStream);
    let response = ask(&carpool, true).await;
    assert_eq!(response.status(), 200);
    // The upstream "thinks" for longer than both connection timeouts.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    setup.mock.release();
    let text = response.text().await.unwrap();
    assert_eq!(
        text,
        mock::sse_events("claude-sonnet-4-5-20250929").concat()
    );
    carpool.shutdown().await;
}

#[tokio::test]
async fn request_heads_over_max_header_bytes_get_431() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"max_header_bytes": 16384});
    let carpool = setup.start().await;

    async fn send_head(addr: std::net::SocketAddr, header_bytes: usize) -> Option<u16> {
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = s.into_split();
        let head = format!(
            "GET /not-relayed HTTP/1.1\r\nhost: carpool\r\nx-padding: {}\r\n\r\n",
            "a".repeat(header_bytes)
        );
        // The server may answer and close before all of it is written.
        #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
        let writer = tokio::spawn(async move {
            let _ = write.write_all(head.as_bytes()).await;
            write
        });
        let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut read))
            .await
            .expect("an answer or a close in time");
        writer.abort();
        answer.map(|(status, _)| status)
    }

    assert_eq!(send_head(carpool.addr, 10_000).await, Some(404), "fits");
    // Over the configured 16 KiB, far under hyper's own default (about 400 KB).
    assert_eq!(send_head(carpool.addr, 20_000).await, Some(431));
    // A 1 MB header block: 431, or closed.
    assert!(matches!(
        send_head(carpool.addr, 1_000_000).await,
        Some(431) | None
    ));
    assert_eq!(ask(&carpool, false).await.status(), 200);
    carpool.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn unfinished_headers_hold_bounded_memory_and_are_closed() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"header_timeout": "2s"});
    let p = process::serve(&setup, &[]);
    let pid = p.child.id();
    let addr = addr_of(&p.url);
    let base = memory_mb(pid, "VmRSS");

    // 500 connections, each with ~60 KB of a request head that never ends (under the
    // default 64 KiB limit, so they are held until `header_timeout`).
    let started = Instant::now();
    let mut held = join_all((0..500).map(|_| {
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST /v1/messages HTTP/1.1\r\nhost: carpool\r\nx-padding: {}",
                "a".repeat(60_000)
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s
        }
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = memory_mb(pid, "VmRSS");
    assert!(
        rss < 150,
        "{rss} MB with 500 unfinished heads (base {base} MB)"
    );

    let closed = join_all(
        held.iter_mut()
            .map(|s| closed_within(s, started, Duration::from_secs(8))),
    )
    .await;
    assert!(
        closed.iter().all(Option::is_some),
        "{} of 500 unfinished heads still open",
        closed.iter().filter(|c| c.is_none()).count()
    );
    drop(held);

    // What the attacker did: ~390 KB of head each, just under hyper's default buffer.
    // Each is refused at 64 KiB instead of being held.
    let answers = join_all((0..500).map(|_| {
        let addr = addr.clone();
        async move {
            let s = TcpStream::connect(&addr).await.unwrap();
            let (mut read, mut write) = s.into_split();
            #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
            let writer = tokio::spawn(async move {
                let head = format!(
                    "POST /v1/messages HTTP/1.1\r\nhost: carpool\r\nx-padding: {}",
                    "a".repeat(390_000)
                );
                let _ = write.write_all(head.as_bytes()).await;
                write
            });
            let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut read))
                .await
                .expect("refused in time");
            writer.abort();
            answer.map(|(status, _)| status)
        }
    }))
    .await;
    assert!(
        answers.iter().all(|a| matches!(a, Some(431) | None)),
        "{answers:?}"
    );
    let peak = memory_mb(pid, "VmHWM");
    assert!(peak < 150, "peak {peak} MB (base {base} MB)");

    assert_eq!(ask_at(&p.url, false).await.status(), 200);
    stop(p).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn stalled_bodies_get_408_and_their_memory_is_reused() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"body_timeout": "2s"});
    let p = process::serve(&setup, &[]);
    let pid = p.child.id();
    let addr = addr_of(&p.url);

    // 20 authenticated clients announce 10 MB, send 3 MB, and stall.
    let round = || {
        join_all((0..20).map(|_| {
            let addr = addr.clone();
            async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                let head = format!(
                    "POST /v1/messages HTTP/1.1\r\nhost: carpool\r\nauthorization: Bearer {ALICE_TOKEN}\r\n\
                     content-type: application/json\r\ncontent-length: 10000000\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(&vec![b' '; 3_000_000]).await.unwrap();
                (s, Instant::now())
            }
        }))
    };

    let mut peaks = Vec::new();
    for _ in 0..2 {
        let mut stalled = round().await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        peaks.push(memory_mb(pid, "VmRSS"));
        for (s, stalled_at) in &mut stalled {
            let (status, body) = tokio::time::timeout(Duration::from_secs(6), read_response(s))
                .await
                .expect("answered in time")
                .expect("an answer, not just a close");
            let waited = stalled_at.elapsed();
            assert_eq!(status, 408, "{body}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "timeout_error");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("connections.body_timeout"),
                "{body}"
            );
            assert!(waited >= Duration::from_millis(1800), "{waited:?}");
            assert!(
                closed_within(s, Instant::now(), Duration::from_secs(2))
                    .await
                    .is_some(),
                "the connection stays open after a stalled body"
            );
        }
    }
    // 60 MB were held in each round; the second round reuses the first one's memory
    // instead of adding to it.
    assert!(
        peaks[1] < peaks[0] + 30,
        "memory grew from {} MB to {} MB",
        peaks[0],
        peaks[1]
    );
    assert_eq!(setup.mock.messages(), 0, "nothing stalled went upstream");
    assert_eq!(ask_at(&p.url, false).await.status(), 200);
    stop(p).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_flood_at_a_low_open_file_limit_waits_in_the_backlog_without_spinning() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"header_timeout": "500ms"});
    // `ulimit -n` sets the soft and the hard limit: there is nothing to raise.
    let p = serve_with_ulimit(&setup, "ulimit -n 256");
    let pid = p.child.id();
    let addr = addr_of(&p.url);
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();

    // 400 idle connections: more than 256 descriptors could hold.
    let idle: Vec<TcpStream> = join_all((0..400).map(|_| {
        let addr = addr.clone();
        async move { TcpStream::connect(&addr).await.unwrap() }
    }))
    .await;
    let response = tokio::time::timeout(Duration::from_secs(20), ask_at(&p.url, false))
        .await
        .expect("the legitimate request was never served");
    assert_eq!(response.status(), 200);
    let wall = started.elapsed();
    let cpu = Duration::from_millis((cpu_ticks(pid) - cpu_before) * 10);
    // Spinning on accept() would burn a core for the whole flood.
    assert!(
        cpu < wall / 2,
        "{cpu:?} of CPU in {wall:?} of flood: the accept loop spun"
    );
    drop(idle);

    let messages = setup.mock.messages();
    assert_eq!(ask_at(&p.url, false).await.status(), 200, "after the flood");
    assert_eq!(setup.mock.messages(), messages + 1);
    let stderr = stop(p).await;
    assert!(
        stderr.contains("lowered to what the open-file limit allows"),
        "{stderr}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let setup = Setup::new().await;
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if hard < 1024 {
        eprintln!("skipped: the hard open-file limit ({hard}) leaves nothing to raise");
        return;
    }
    let p = serve_with_ulimit(&setup, "ulimit -Sn 512");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised: {line}");
    assert_ne!(numbers[0], "512", "{line}");
    stop(p).await;
}

/// Just enough HTTP/2 (cleartext, prior knowledge) to make one request and watch the
/// connection end.
mod h2 {
    use tokio::io::{AsyncRead, AsyncReadExt};

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const END_STREAM: u8 = 1;
    pub const ACK: u8 = 1;

    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    /// A GET as a HEADERS frame (END_STREAM | END_HEADERS), every field an HPACK
    /// literal without indexing.
    pub fn get(stream: u32, path: &str) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "carpool"),
        ] {
            block.push(0);
            block.push(name.len() as u8);
            block.extend(name.as_bytes());
            block.push(value.len() as u8);
            block.extend(value.as_bytes());
        }
        frame(HEADERS, END_STREAM | 4, stream, &block)
    }

    pub async fn read(stream: &mut (impl AsyncRead + Unpin)) -> Option<Frame> {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }
}

#[tokio::test]
async fn http2_connections_follow_the_same_timeouts() {
    let mut setup = Setup::new().await;
    setup.config["connections"] = json!({"header_timeout": "1s", "keep_alive": "2s"});
    let carpool = setup.start().await;

    // h2c with prior knowledge is still served.
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2c
        .post(format!("{}/v1/messages", carpool.url()))
        .bearer_auth(ALICE_TOKEN)
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();

    // A connection that never sends a request: closed after `header_timeout`.
    let started = Instant::now();
    let mut silent = TcpStream::connect(carpool.addr).await.unwrap();
    silent.write_all(h2::PREFACE).await.unwrap();
    silent
        .write_all(&h2::frame(h2::SETTINGS, 0, 0, &[]))
        .await
        .unwrap();

    // One request, then idle: a GOAWAY after `keep_alive` (not `header_timeout`), then
    // the close.
    let mut s = TcpStream::connect(carpool.addr).await.unwrap();
    s.write_all(h2::PREFACE).await.unwrap();
    s.write_all(&h2::frame(h2::SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    s.write_all(&h2::get(1, "/not-relayed")).await.unwrap();
    let mut idle_since = None;
    let mut goaway_after = None;
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        while let Some(f) = h2::read(&mut s).await {
            match f.kind {
                h2::SETTINGS if f.flags & h2::ACK == 0 => {
                    s.write_all(&h2::frame(h2::SETTINGS, h2::ACK, 0, &[]))
                        .await
                        .unwrap();
                }
                h2::PING if f.flags & h2::ACK == 0 => {
                    s.write_all(&h2::frame(h2::PING, h2::ACK, 0, &f.payload))
                        .await
                        .unwrap();
                }
                h2::HEADERS | h2::DATA if f.stream == 1 && f.flags & h2::END_STREAM != 0 => {
                    idle_since = Some(Instant::now());
                }
                h2::GOAWAY => {
                    goaway_after = goaway_after.or(idle_since.map(|t: Instant| t.elapsed()));
                }
                _ => {}
            }
        }
        idle_since.map(|t| t.elapsed())
    })
    .await
    .expect("the idle HTTP/2 connection was not closed");
    let goaway = goaway_after.expect("a GOAWAY before the close");
    let ended = ended.expect("the request was answered");
    assert!(
        goaway >= Duration::from_millis(1800),
        "GOAWAY after {goaway:?}"
    );
    assert!(ended < goaway + Duration::from_secs(2), "closed {ended:?}");

    let closed = closed_within(&mut silent, started, Duration::from_secs(4))
        .await
        .expect("the silent HTTP/2 connection was not closed");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
    carpool.shutdown().await;
}
