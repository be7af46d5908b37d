//! Running the real clients (the SDKs' Python, Claude Code, Codex) in tests: finding the
//! pinned binaries `scripts/test.sh` installed, and running one with a clean environment
//! and a time limit.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// The path a tool's env var names, or `None` (after saying so) when the test should skip.
pub fn client_from_env(var: &str, what: &str) -> Option<PathBuf> {
    let required = std::env::var("CARPOOL_REQUIRE_REAL_CLIENTS").as_deref() == Ok("1");
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.exists(),
                "{var}={} does not exist; run scripts/test.sh to install {what}",
                path.display()
            );
            Some(path)
        }
        None if required => panic!(
            "{var} is not set but CARPOOL_REQUIRE_REAL_CLIENTS=1: {what} must be tested; run scripts/test.sh"
        ),
        None => {
            println!("skipped: {var} is not set; run scripts/test.sh to test against {what}");
            None
        }
    }
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A client process with a clean environment: none of the `scrubbed` variables (the
/// developer's settings that would steer the client elsewhere), stdin closed, output
/// captured, killed if the test gives up on it.
pub fn command(program: &Path, scrubbed: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    for var in scrubbed {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs to completion, or kills the process after `limit`.
pub async fn run(mut cmd: tokio::process::Command, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}; killed"))
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    println!(
        "{what} finished in {:.1} s with {}",
        started.elapsed().as_secs_f64(),
        output.status
    );
    output
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
