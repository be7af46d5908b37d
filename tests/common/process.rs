//! `carpool serve` as a real process: start it, read its banner, stop it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Setup;

pub const BIN: &str = env!("CARGO_BIN_EXE_carpool");

/// A running `carpool serve`, with the lines it printed so far.
pub struct Process {
    pub child: Child,
    pub stdout: Vec<String>,
    pub url: String,
    /// Everything written to stderr so far (read by a thread, so the pipe never fills).
    pub stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

/// The `carpool` binary with a clean environment and `home` as its home.
pub fn command(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Starts the command and reads its banner up to the last line of it.
pub fn start(mut cmd: Command) -> Process {
    let mut child = cmd.spawn().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let stderr_reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut stdout = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut url = String::new();
    while Instant::now() < deadline {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let line = line.trim_end().to_owned();
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = rest.to_owned();
        }
        let done = line.contains("ANTHROPIC_AUTH_TOKEN");
        stdout.push(line);
        if done {
            break;
        }
    }
    assert!(
        !url.is_empty(),
        "no banner: {stdout:?} {}",
        stderr.lock().unwrap()
    );
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = reader.read_to_string(&mut sink);
    });
    Process {
        child,
        stdout,
        url,
        stderr,
        stderr_reader: Some(stderr_reader),
    }
}

/// `carpool serve` with the setup's config written to disk, and `env` added.
pub fn serve(setup: &Setup, env: &[(&str, &str)]) -> Process {
    let config = setup.write_config();
    let mut cmd = command(setup.dir.path());
    cmd.envs(env.iter().copied())
        .args(["serve", "--config"])
        .arg(&config);
    start(cmd)
}

pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn sigterm(child: &Child) {
    signal(child, "-TERM");
}

/// Waits for exit (bounded) and returns the exit code and everything on stderr.
pub fn finish(mut p: Process) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            p.child.kill().unwrap();
            panic!("carpool did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The reader ends at the pipe's end, which is the process's exit.
    if let Some(reader) = p.stderr_reader.take() {
        let _ = reader.join();
    }
    let stderr = p.stderr.lock().unwrap().clone();
    (status.code().unwrap_or(-1), stderr)
}
