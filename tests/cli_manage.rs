//! `carpool user …` and `carpool pool …` as a person runs them on a config with
//! comments: what they print, what they write (the rest of the file byte for byte), what
//! they refuse, and a running `carpool serve` applying their change by itself.

mod common;

use std::path::Path;
use std::process::Output;

use common::process::{self, command};
use common::{Setup, changed_span, client, eventually};
use reqwest::StatusCode;

const CONFIG: &str = r#"// my carpool
{
  "listen": "127.0.0.1",  /* only here */
  "listen_port": 7999,
  "credentials": [
    {"tag": "a", "credential_path": "/nowhere/a.json"},
    {"tag": "b", "credential_path": "/nowhere/b.json"}
  ],
  # shell-style comment
  "users": [
    {"name": "me", "token": "0123456789abcdef0123", "credential": "a"} // mine
  ]
}
"#;

fn run(home: &Path, args: &[&str]) -> Output {
    command(home).args(args).output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    out(&o)
}

/// The `cpk-…` token printed.
fn token(printed: &str) -> String {
    printed
        .split_whitespace()
        .find(|w| w.starts_with("cpk-"))
        .unwrap_or_else(|| panic!("no token in {printed}"))
        .to_owned()
}

#[test]
fn users_and_pools_from_the_terminal_keep_the_file_as_written() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("c.json");
    std::fs::write(&path, CONFIG).unwrap();
    let config = path.to_str().unwrap();
    let h = home.path();

    // add: the token once, the setup, only the hash in the file.
    let printed = ok(run(
        h,
        &[
            "user",
            "add",
            "friend",
            "--credential",
            "b",
            "--config",
            config,
        ],
    ));
    let new = token(&printed);
    assert!(
        printed.contains("export ANTHROPIC_BASE_URL=http://127.0.0.1:7999"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("export ANTHROPIC_AUTH_TOKEN={new}")),
        "{printed}"
    );
    assert!(
        printed.contains("anthropic.Anthropic(") && printed.contains("new Anthropic({"),
        "{printed}"
    );
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains(&new));
    assert!(written.contains(&carpool::auth::TokenHash::of(&new).to_config_string()));
    let (old, added) = changed_span(CONFIG, &written);
    // A comma after `me`'s entry, before the comment on its line: nothing else changed.
    assert_eq!(old, " // mine");
    assert!(added.starts_with(", // mine\n"), "{added}");
    assert!(added.contains("\"friend\""), "{added}");

    let listed = ok(run(h, &["user", "list", "--config", config]));
    assert!(
        listed.contains("me\taccount `a`\ttoken in clear"),
        "{listed}"
    );
    assert!(
        listed.contains("friend\taccount `b`\ttoken hashed"),
        "{listed}"
    );

    // Mistakes exit with 2 and say what to do; the file is untouched.
    let before = std::fs::read(&path).unwrap();
    for (args, says) in [
        (
            vec!["user", "add", "x"],
            "--credential TAG (accounts: a, b)",
        ),
        (
            vec!["user", "add", "me", "--credential", "a"],
            "already has a user `me`",
        ),
        (
            vec!["user", "bind", "friend", "nope"],
            "credential: the config has no account or pool `nope`",
        ),
        (
            vec!["user", "rotate", "nobody"],
            "there is no user `nobody`",
        ),
        (
            vec!["pool", "add", "p", "--member", "a", "--member", "x"],
            "members[1]: unknown account `x`",
        ),
        (
            vec!["pool", "add", "p", "--member", "a", "--strategy", "often"],
            "unknown strategy `often`",
        ),
    ] {
        let o = run(h, &[&args[..], &["--config", config]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(says), "{args:?}: {}", err(&o));
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // rotate, rename, bind, pools.
    let rotated = token(&ok(run(h, &["user", "rotate", "me", "--config", config])));
    ok(run(
        h,
        &["user", "rename", "friend", "pal", "--config", config],
    ));
    ok(run(
        h,
        &[
            "pool",
            "add",
            "team",
            "--member",
            "a",
            "--member",
            "b",
            "--strategy",
            "round_robin",
            "--config",
            config,
        ],
    ));
    ok(run(h, &["user", "bind", "pal", "team", "--config", config]));
    let o = run(h, &["pool", "remove", "team", "--config", config]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("still used by user `pal`"), "{}", err(&o));
    ok(run(
        h,
        &[
            "pool",
            "set",
            "team",
            "--strategy",
            "fallback",
            "--member",
            "b",
            "--config",
            config,
        ],
    ));
    let pools = ok(run(h, &["pool", "list", "--config", config]));
    assert_eq!(pools.trim(), "team\tfallback\taccounts: b\tusers: pal");

    let c = carpool::Config::load(&path).unwrap();
    assert_eq!(
        c.users[0].token_hash,
        carpool::auth::TokenHash::of(&rotated)
    );
    assert!(
        c.clear_secrets.is_empty(),
        "rotating stored a hash: {:?}",
        c.clear_secrets
    );
    assert_eq!(c.users[1].name.as_str(), "pal");
    assert_eq!(c.users[1].token_hash, carpool::auth::TokenHash::of(&new));
    let written = std::fs::read_to_string(&path).unwrap();
    for kept in [
        "// my carpool\n{\n  \"listen\": \"127.0.0.1\",  /* only here */\n",
        "  # shell-style comment\n",
        "// mine",
    ] {
        assert!(written.contains(kept), "{kept:?} in {written}");
    }

    ok(run(h, &["user", "bind", "pal", "a", "--config", config]));
    ok(run(h, &["pool", "remove", "team", "--config", config]));
    ok(run(h, &["user", "revoke", "pal", "--config", config]));
    let c = carpool::Config::load(&path).unwrap();
    assert!(c.pools.is_empty());
    assert_eq!(c.users.len(), 1);
}

#[tokio::test]
async fn a_running_carpool_serve_applies_a_user_added_from_the_terminal() {
    let setup = Setup::new().await;
    let (path, _) = setup.write_commented_config();
    let mut cmd = command(setup.dir.path());
    cmd.args(["serve", "--config"]).arg(&path);
    let carpool = process::start(cmd);
    let printed = ok(run(
        setup.dir.path(),
        &["user", "add", "dave", "--config", path.to_str().unwrap()],
    ));
    let dave = token(&printed);
    let url = carpool.url.clone();
    let accepted = eventually(5, || async {
        client()
            .post(format!("{url}/v1/messages"))
            .bearer_auth(&dave)
            .header("anthropic-version", "2023-06-01")
            .json(&common::message_body(false))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
    })
    .await;
    process::sigterm(&carpool.child);
    let (code, stderr) = process::finish(carpool);
    assert!(accepted, "dave's token was accepted: {stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("user `dave` added"), "{stderr}");
}
