//! The service files that ship in `packaging/`: the systemd unit is valid and hardened
//! (checked by `systemd-analyze` where it exists), the launchd plist is a valid property
//! list (checked by `plutil` on macOS, parsed everywhere) that runs `carpool serve`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
}

fn available(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
        || Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success())
}

/// The unit's `Key=value` lines (comments and sections left out).
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn value<'a>(directives: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    directives
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn the_systemd_unit_runs_carpool_as_its_own_user_in_a_locked_down_system() {
    let unit = std::fs::read_to_string(packaging("systemd/carpool.service")).unwrap();
    let d = directives(&unit);
    for (key, expected) in [
        ("User", "carpool"),
        ("ExecStart", "/usr/local/bin/carpool serve"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("StateDirectory", "carpool"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/etc/carpool /var/lib/carpool"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(value(&d, key), [expected], "{key}");
    }
    let environment = value(&d, "Environment");
    assert!(environment.contains(&"CARPOOL_CONFIG=/etc/carpool/config.json"));
    assert!(environment.contains(&"CARPOOL_DATA_DIR=/var/lib/carpool"));
}

/// The unit with `ExecStart` pointing at the binary under test (systemd-analyze checks
/// that it exists), written to `dir`.
fn unit_for_test(dir: &Path, edit: impl Fn(&str) -> Option<String>) -> PathBuf {
    let unit = std::fs::read_to_string(packaging("systemd/carpool.service")).unwrap();
    let text: String = unit
        .lines()
        .filter_map(|line| {
            edit(&line.replace("/usr/local/bin/carpool", env!("CARGO_BIN_EXE_carpool")))
        })
        .map(|line| line + "\n")
        .collect();
    let path = dir.join("carpool.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .unwrap()
}

#[test]
fn systemd_analyze_finds_the_unit_valid_and_its_exposure_low() {
    if !available("systemd-analyze") {
        eprintln!("systemd-analyze is not installed: only the unit's text was checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path(), |l| Some(l.to_owned()));
    let verify = analyze(&["verify"], &unit);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{stderr}");
    assert!(
        !stderr.contains("carpool.service"),
        "no warning about the unit: {stderr}"
    );
    // Exposure on systemd's scale of 0 (locked down) to 10 (everything allowed), ×10.
    let security = analyze(&["security", "--offline=true", "--threshold=20"], &unit);
    assert!(
        security.status.success(),
        "{}",
        String::from_utf8_lossy(&security.stdout)
    );
    // The same check fails for the unit without its hardening.
    let bare = tempfile::tempdir().unwrap();
    let unhardened = unit_for_test(bare.path(), |l| {
        let key = l.split('=').next().unwrap_or_default();
        let hardening = key.starts_with("Protect")
            || key.starts_with("Private")
            || key.starts_with("Restrict")
            || key.starts_with("SystemCall")
            || [
                "CapabilityBoundingSet",
                "NoNewPrivileges",
                "UMask",
                "MemoryDenyWriteExecute",
            ]
            .contains(&key);
        (!hardening).then(|| l.to_owned())
    });
    let security = analyze(
        &["security", "--offline=true", "--threshold=20"],
        &unhardened,
    );
    assert!(!security.status.success());
}

#[test]
fn the_launchd_plist_keeps_carpool_serve_alive_and_logs_to_files() {
    let path = packaging("launchd/com.carpool.serve.plist");
    if available("plutil") {
        let lint = Command::new("plutil")
            .arg("-lint")
            .arg(&path)
            .output()
            .unwrap();
        assert!(lint.status.success(), "{lint:?}");
    }
    let plist = plist::Value::from_file(&path).unwrap();
    let dict = plist.as_dictionary().unwrap();
    assert_eq!(
        dict["Label"].as_string(),
        Some("com.carpool.serve"),
        "the file is named after its label"
    );
    let args: Vec<&str> = dict["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_string().unwrap())
        .collect();
    assert_eq!(&args[..2], ["/usr/local/bin/carpool", "serve"]);
    assert_eq!(args[2], "--log-file");
    assert!(args[3].starts_with("__HOME__/Library/Logs/Carpool/"));
    let keep_alive = dict["KeepAlive"].as_dictionary().unwrap();
    assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
    assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
    for key in ["StandardOutPath", "StandardErrorPath"] {
        assert!(
            dict[key]
                .as_string()
                .unwrap()
                .starts_with("__HOME__/Library/Logs/Carpool/")
        );
    }
    let env = dict["EnvironmentVariables"].as_dictionary().unwrap();
    assert!(env.contains_key("CARPOOL_CONFIG") && env.contains_key("CARPOOL_DATA_DIR"));
}
