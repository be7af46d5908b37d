//! Ledger benchmark: how reports scale with history.
//!
//! Fills a fresh SQLite ledger with 1,000,000 requests spread over 90 days (10 users
//! with 2 devices each, 5 models, 3 credentials, a new session every ~40 requests), then
//! times the reports `carpool usage` and the dashboard ask, each answered twice: the
//! normal way (hourly rollup, see `src/ledger/store.rs`) and from the `requests` table
//! alone, as the baseline a ledger without the rollup would have.
//!
//! Run with `cargo bench --bench ledger` (optimised build; about a minute, most of it
//! writing the history). Figures are in bench/README.md.
//!
//! Environment:
//! - `BENCH_ROWS=<n>`: requests in the history (default 1,000,000);
//! - `BENCH_RUNS=<n>`: timed runs per report (default 15).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use carpool::ledger::query::{self, Bucket, Dimension, Filter, Query, Report};
use carpool::ledger::{Tokens, UsageRecord, store};
use jiff::tz::TimeZone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DAY_MS: i64 = 86_400_000;

fn main() -> ExitCode {
    let rows: usize = env("BENCH_ROWS", 1_000_000);
    let runs: usize = env("BENCH_RUNS", 15);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("usage.db");
    let mut conn = store::open(&path).expect("open ledger");

    let end_ms = jiff::Timestamp::now().as_millisecond() / DAY_MS * DAY_MS;
    let start_ms = end_ms - 90 * DAY_MS;
    println!(
        "Writing {rows} requests over 90 days to {} ...",
        path.display()
    );
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(42);
    let mut batch = Vec::with_capacity(10_000);
    let mut sessions = [0u32; 20];
    for i in 0..rows {
        batch.push(history_record(
            &mut rng,
            i,
            rows,
            start_ms,
            end_ms,
            &mut sessions,
        ));
        if batch.len() == 10_000 {
            store::insert_batch(&mut conn, &batch).expect("insert");
            batch.clear();
        }
    }
    store::insert_batch(&mut conn, &batch).expect("insert");
    let took = started.elapsed();
    let rollup_rows: i64 = conn
        .query_row("SELECT count(*) FROM usage_hourly", [], |r| r.get(0))
        .expect("count");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "  {:.1} s ({:.0} requests/s in batches of 10,000); {} rollup rows; {:.0} MB on disk\n",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        rollup_rows,
        size as f64 / 1e6
    );

    let tz = TimeZone::get("America/New_York").expect("tz");
    let base = |days: i64| Query {
        since_ms: end_ms - days * DAY_MS,
        until_ms: end_ms,
        tz: tz.clone(),
        bucket: None,
        group: None,
        top: None,
        filter: Filter::default(),
    };
    let cases: Vec<(&str, Query)> = vec![
        (
            "30 days by day by user",
            Query {
                bucket: Some(Bucket::Day),
                group: Some(Dimension::User),
                ..base(30)
            },
        ),
        (
            "90 days by month by model",
            Query {
                bucket: Some(Bucket::Month),
                group: Some(Dimension::Model),
                ..base(90)
            },
        ),
        (
            "7 days by hour",
            Query {
                bucket: Some(Bucket::Hour),
                ..base(7)
            },
        ),
        (
            "30 days by device, top 5",
            Query {
                group: Some(Dimension::Device),
                top: Some(5),
                ..base(30)
            },
        ),
        (
            "30 days total for one user",
            Query {
                filter: Filter {
                    user: Some("user3".into()),
                    ..Filter::default()
                },
                ..base(30)
            },
        ),
        (
            "1 day by session (requests table)",
            Query {
                group: Some(Dimension::Session),
                ..base(1)
            },
        ),
    ];

    println!(
        "{:<36} {:>8} {:>10} {:>10}   {:>10} {:>10}   {:>8}",
        "report (America/New_York)", "rows", "p50 ms", "max ms", "base p50", "base max", "speedup"
    );
    let mut ok = true;
    for (name, q) in &cases {
        let (fast, fast_times) = time(runs, || query::report(&conn, q).expect("report"));
        let (slow, slow_times) = time(runs.min(5), || {
            query::report_without_rollup(&conn, q).expect("report")
        });
        if fast.rows != slow.rows || fast.total != slow.total {
            eprintln!("MISMATCH in {name}: the rollup and the requests table disagree");
            ok = false;
        }
        let p50 = median(&fast_times);
        let base_p50 = median(&slow_times);
        println!(
            "{:<36} {:>8} {:>10.2} {:>10.2}   {:>10.2} {:>10.2}   {:>7.1}x",
            name,
            fast.rows.len(),
            ms(p50),
            ms(*fast_times.iter().max().expect("runs")),
            ms(base_p50),
            ms(*slow_times.iter().max().expect("runs")),
            base_p50.as_secs_f64() / p50.as_secs_f64().max(1e-9),
        );
    }
    println!("\n\"base\" = the same report from the requests table alone (no rollup), same run.");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One plausible request: users keep to their own devices and credential, pick models
/// with Claude Code's usual mix, and start a new session now and then.
fn history_record(
    rng: &mut StdRng,
    i: usize,
    rows: usize,
    start_ms: i64,
    end_ms: i64,
    sessions: &mut [u32; 20],
) -> UsageRecord {
    const MODELS: [(&str, u32); 5] = [
        ("claude-opus-4-8", 40),
        ("claude-sonnet-4-6", 30),
        ("claude-haiku-4-5-20251001", 20),
        ("claude-sonnet-5", 7),
        ("claude-opus-5", 3),
    ];
    let user = rng.random_range(0..10usize);
    let device = user * 2 + rng.random_range(0..2usize);
    if rng.random_range(0..40) == 0 {
        sessions[device] += 1;
    }
    let mut pick = rng.random_range(0..100u32);
    let model = MODELS
        .iter()
        .find(|(_, w)| {
            let hit = pick < *w;
            pick = pick.saturating_sub(*w);
            hit
        })
        .map_or("claude-opus-4-8", |(m, _)| m);
    let at_ms = start_ms + (end_ms - start_ms) * i as i64 / rows as i64;
    let input = rng.random_range(1..5_000u64);
    let output = rng.random_range(1..4_000u64);
    let cache_read = rng.random_range(0..150_000u64);
    UsageRecord {
        at_ms,
        user: format!("user{user}"),
        credential: format!("account{}", user % 3),
        endpoint: "messages".into(),
        model: model.into(),
        device: format!("{device:064x}"),
        session: format!("session-{device}-{}", sessions[device]),
        status: if rng.random_range(0..50) == 0 {
            429
        } else {
            200
        },
        outcome: "complete".into(),
        tokens: Tokens {
            input,
            output,
            cache_read,
            cache_write_5m: rng.random_range(0..4_000u64),
            cache_write_1h: 0,
            web_search_requests: 0,
            web_fetch_requests: 0,
            reasoning: 0,
        },
        speed: String::new(),
        context_window: 200_000,
        cost_micros: Some(((input * 5 + output * 25) + cache_read / 2) as i64),
        duration_ms: rng.random_range(300..30_000),
        ttfb_ms: Some(rng.random_range(200..2_000)),
        messages: rng.random_range(1..200),
        week_reset: None,
        service_tier: String::new(),
    }
}

fn time(runs: usize, mut f: impl FnMut() -> Report) -> (Report, Vec<Duration>) {
    let mut last = f(); // warm the page cache and statement cache
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        last = f();
        times.push(started.elapsed());
    }
    (last, times)
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}
