//! `carpool serve --log-file`: the lines written to stderr also land in a daily file.

mod common;

use common::process::*;
use common::*;

#[tokio::test]
async fn serve_writes_its_log_to_a_file_as_well_as_stderr() {
    let setup = Setup::new().await;
    let logs = setup.dir.path().join("logs");
    let config = setup.write_config();
    let mut cmd = command(setup.dir.path());
    cmd.args(["serve", "--log-keep", "3", "--config"])
        .arg(&config)
        .arg("--log-file")
        .arg(logs.join("carpool.log"));
    let p = start(cmd);
    assert_eq!(ask_at(&p.url, false).await.status(), 200);
    sigterm(&p.child);
    let (code, stderr) = finish(p);
    assert_eq!(code, 0, "{stderr}");

    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let text = std::fs::read_to_string(logs.join(format!("carpool.{today}.log"))).unwrap();
    assert!(text.contains("POST /v1/messages"), "{text}");
    assert!(
        text.contains("stopped"),
        "the last line is flushed at exit: {text}"
    );
    // The same lines, in the same order; each output stamps its own time.
    let untimed = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_owned())
            .collect()
    };
    let (file_lines, stderr_lines) = (untimed(&text), untimed(&stderr));
    assert!(file_lines.len() >= 4, "{text}");
    assert_eq!(file_lines, stderr_lines);
    assert!(!text.contains(ALICE_TOKEN) && !text.contains(ACCESS));
}

#[test]
fn a_log_file_that_cannot_be_written_stops_serve_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let out = command(dir.path())
        .args(["serve", "--log-file"])
        .arg(blocker.join("carpool.log"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot write the log file "),
        "{stderr}"
    );
}
