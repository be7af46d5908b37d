//! `carpool token` as a person runs it: which account or pool the new user is bound to,
//! where the config is read from, and what is refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_carpool");

/// `carpool token ARGS` with `home` as its home and `env` added.
fn token(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .envs(env.iter().copied())
        .arg("token")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The printed `users` entry.
fn entry(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    let out = stdout(o);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("{ \"name\""))
        .unwrap_or_else(|| panic!("no entry in {out}"));
    serde_json::from_str(line).unwrap()
}

const SEVERAL: &str = r#"{
    "listen": "0.0.0.0",
    "credentials": [
        {"tag": "mine"},
        {"tag": "work", "credential_path": "/nowhere/.credentials.json"},
        {"tag": "team", "type": "balancer", "credentials": ["mine", "work"]}
    ],
    "users": [{"name": "me", "token": "0123456789abcdef0123", "credential": "mine"}]
}"#;

#[test]
fn without_a_config_the_user_goes_to_the_default_account() {
    let home = tempfile::tempdir().unwrap();
    let o = token(home.path(), &["--name", "laptop"], &[]);
    let e = entry(&o);
    assert_eq!(e["name"], "laptop");
    assert_eq!(e["credential"], "default");
    assert!(e["token_hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(stderr(&o).contains("no config at"), "{}", stderr(&o));
    // The printed token is the one the hash is of.
    let out = stdout(&o);
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("cpk-"))
        .unwrap();
    assert_eq!(
        e["token_hash"],
        carpool::auth::TokenHash::of(token).to_config_string()
    );
}

#[test]
fn several_accounts_need_a_choice_and_are_named() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("c.json");
    std::fs::write(&config, SEVERAL).unwrap();
    let config = config.to_str().unwrap();

    let o = token(home.path(), &["--config", config], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("--credential TAG (accounts: mine, work; pools: team)"),
        "{err}"
    );
    assert!(stdout(&o).is_empty(), "no token made: {}", stdout(&o));

    let o = token(
        home.path(),
        &["--config", config, "--credential", "team"],
        &[],
    );
    assert_eq!(entry(&o)["credential"], "team");
    assert!(stdout(&o).contains("the pool `team`"), "{}", stdout(&o));
    let o = token(
        home.path(),
        &["--config", config, "--credential", "work"],
        &[],
    );
    assert_eq!(entry(&o)["credential"], "work");

    let o = token(
        home.path(),
        &["--config", config, "--credential", "nope"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no account or pool `nope` (accounts: mine, work; pools: team)"),
        "{}",
        stderr(&o)
    );

    let o = token(
        home.path(),
        &["--config", config, "--credential", "mine", "--name", "me"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("already has a user `me`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_config_is_found_like_serve_finds_it() {
    let home = tempfile::tempdir().unwrap();
    let one = r#"{"credentials": [{"tag": "solo"}]}"#;
    // $CARPOOL_CONFIG
    let from_env = home.path().join("env.json");
    std::fs::write(&from_env, one).unwrap();
    let o = token(
        home.path(),
        &[],
        &[("CARPOOL_CONFIG", from_env.to_str().unwrap())],
    );
    assert_eq!(entry(&o)["credential"], "solo");
    // --config wins over it.
    let flag = home.path().join("flag.json");
    std::fs::write(&flag, SEVERAL).unwrap();
    let o = token(
        home.path(),
        &["--config", flag.to_str().unwrap(), "--credential", "team"],
        &[("CARPOOL_CONFIG", from_env.to_str().unwrap())],
    );
    assert_eq!(entry(&o)["credential"], "team");
    // Else the OS default path.
    let default = home.path().join(".config/carpool/config.json");
    std::fs::create_dir_all(default.parent().unwrap()).unwrap();
    std::fs::write(&default, SEVERAL).unwrap();
    let o = token(home.path(), &[], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A broken config is an error (status 1) that names the field.
    std::fs::write(&default, r#"{"credentials": [{"tag": "a"},]}"#).unwrap();
    let o = token(home.path(), &[], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("credentials: a comma after the last entry"),
        "{}",
        stderr(&o)
    );
}
