//! A real round trip through the Secret Service, the OS keyring Carpool uses on Linux
//! (src/secrets.rs): [`OsKeyring`] and the secret store on top of it store, read,
//! overwrite and delete a secret in a running Secret Service, over D-Bus.
//!
//! It needs a D-Bus session with an unlocked Secret Service, and writes into it, so it
//! runs only when `CARPOOL_REQUIRE_SECRET_SERVICE` is set, and then must pass: a
//! Secret Service that is absent or broken fails it. scripts/secret-service-test.sh sets
//! it and provides both, throwaway: `dbus-run-session` and a gnome-keyring-daemon
//! unlocked with a password from stdin, keeping its keyring in a temporary directory.
//! Without the variable it says SKIPPED (a developer's own keyring is left alone).
#![cfg(target_os = "linux")]

use std::sync::Arc;

use carpool::secret::Secret;
use carpool::secrets::{Keyring, OsKeyring, Placement, SecretRef, SecretStore, StoreChoice};

const REQUIRE: &str = "CARPOOL_REQUIRE_SECRET_SERVICE";
const SERVICE: &str = "carpool-test";

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{}-{nanos:08x}", std::process::id())
}

/// Skips (saying so) unless the run asked for the Secret Service.
fn required() -> bool {
    if std::env::var_os(REQUIRE).is_none() {
        println!(
            "SKIPPED: set {REQUIRE}=1 to run this against the session's Secret Service; \
             scripts/secret-service-test.sh does, in a throwaway D-Bus session and keyring"
        );
        return false;
    }
    true
}

#[test]
fn a_secret_is_stored_read_overwritten_and_deleted_in_the_secret_service() {
    if !required() {
        return;
    }
    let keyring = OsKeyring;
    let account = unique("round-trip");
    // The first call says whether there is a Secret Service at all.
    match keyring.get(SERVICE, &account) {
        Ok(None) => {}
        Ok(Some(_)) => panic!("a fresh entry already has a value"),
        Err(e) => panic!("{REQUIRE} is set but the Secret Service does not work: {e}"),
    }
    // Claude Code's login is a JSON document; the bytes must come back as they went in.
    let first = r#"{"claudeAiOauth": {"accessToken": "sk-ant-oat01-ß→✓", "expiresAt": 1}}"#;
    keyring.set(SERVICE, &account, first).unwrap();
    assert_eq!(
        keyring.get(SERVICE, &account).unwrap().as_deref(),
        Some(first)
    );
    keyring.set(SERVICE, &account, "second").unwrap();
    assert_eq!(
        keyring.get(SERVICE, &account).unwrap().as_deref(),
        Some("second"),
        "overwritten in place"
    );
    keyring.delete(SERVICE, &account).unwrap();
    assert_eq!(keyring.get(SERVICE, &account).unwrap(), None);
    keyring
        .delete(SERVICE, &account)
        .expect("deleting what is gone is not an error");
}

/// The secret store as the engine uses it: its probe finds the keyring working, new
/// secrets go there, and the calls work from inside a tokio runtime (the keyring crate's
/// D-Bus client must not be driven from a runtime worker: keyring-rs issue 132).
#[test]
fn the_secret_store_puts_new_secrets_in_the_secret_service() {
    if !required() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::with_keyring(dir.path(), StoreChoice::Keyring, Arc::new(OsKeyring));
    if let Placement::File { keyring_problem } = store.new_secrets_go() {
        panic!(
            "{REQUIRE} is set but the secret store's probe finds no working keyring: {}",
            keyring_problem.unwrap_or_default()
        );
    }
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // On a runtime worker thread, as the engine calls it (a reload, an API request).
    let on_worker = store.clone();
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let store = on_worker;
            let secret = Secret::new("sk-ant-api03-secret-service");
            let reference = store.store_new(&unique("store"), &secret).unwrap();
            let SecretRef::Keyring { service, .. } = &reference else {
                panic!("{reference:?}")
            };
            assert_eq!(service, carpool::secrets::KEYRING_SERVICE);
            assert_eq!(store.get(&reference).unwrap(), Some(secret));
            store.set(&reference, &Secret::new("v2")).unwrap();
            assert_eq!(store.get(&reference).unwrap(), Some(Secret::new("v2")));
            store.delete(&reference).unwrap();
            assert_eq!(store.get(&reference).unwrap(), None);
        });
        tasks.join_next().await.unwrap().unwrap();
    });
    assert!(
        !dir.path().join(carpool::secrets::SECRETS_DIR).exists(),
        "nothing went to files"
    );
}
