//! Applying a new reading of the config to the running engine, as one swap.
//!
//! [`Engine::apply`] is the one entry point: the config file watcher, SIGHUP and (next)
//! the management API all call it with a validated [`Config`]. It builds the new
//! [`State`] beside the current one and then replaces it at once; requests in flight
//! keep the state they started with, new requests see the new one.
//!
//! Nothing that did not change is reset:
//!
//! - an account whose connection (login or key, base URL, proxy) is unchanged is the
//!   same [`Account`] in the new state: its token state, rate-limit and reserve state,
//!   usage figures, circuit breaker and last-hour counters carry on. New reserves or a
//!   new poll interval apply to it in place;
//! - an account whose base URL or proxy changed gets a new client, and inherits what
//!   Carpool knew about its login ([`Account::inherit`]); one whose login changed (another
//!   credentials file, another key) starts afresh;
//! - pinned conversations stay on their account while it and their pool exist, and
//!   round-robin positions are kept ([`Pool::reconfigured`]);
//! - users are looked up in the new state from the next request on: a removed user's
//!   token is refused at once, a new one works at once.
//!
//! A new `listen` address is bound before the swap (an address that cannot be had
//! refuses the edit) and handed to the running server, which moves to it; connections
//! already open go on. A few settings are fixed when Carpool starts (connection limits,
//! the usage database and files, extra CA certificates): a change to them is
//! reported in [`Changes::needs_restart`] and logged, never silently ignored.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::{Engine, State};
use crate::auth::Users;
use crate::config::{
    AccountTag, Config, ConfigError, CredentialConfig, PoolTag, Source as ConfigSource, UserName,
};
use crate::credentials::{Credential, LoginFormat};
use crate::ledger::Recorder;
use crate::ledger::{Ledger, Pricing};
use crate::pool::Pool;
use crate::pool::account::{Account, Settings, Source};
use crate::pool::limits::Reserves;
use crate::secrets::SecretStore;
use crate::tasks::lock;
use crate::upstream;

/// An account that cannot be built from its config entry.
#[derive(Debug, thiserror::Error)]
#[error("credentials `{tag}`: {problem}")]
pub struct AccountError {
    pub tag: AccountTag,
    pub problem: String,
}

/// Why a new configuration was not applied. The running one stays.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file could not be read or is not a valid config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The new `listen` address cannot be taken (in use, not an address of this machine).
    #[error("cannot listen on {addr} (`listen`/`listen_port`): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The new `tls` certificate and key cannot be served with.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What a reload changed, by stable identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub users: Diff<UserName>,
    pub accounts: Diff<AccountTag>,
    pub pools: Diff<PoolTag>,
    /// Other settings that now apply, by config field (`timeouts`, `headers`, …).
    pub settings: Vec<&'static str>,
    /// Settings that changed in the file but take effect only when Carpool restarts.
    pub needs_restart: Vec<&'static str>,
}

/// Entries added, removed and changed, in config order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff<T> {
    pub added: Vec<T>,
    pub removed: Vec<T>,
    pub changed: Vec<T>,
}

impl<T> Default for Diff<T> {
    fn default() -> Self {
        Diff {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }
}

impl<T: PartialEq + Clone> Diff<T> {
    /// Compares two lists of entries identified by `id`.
    fn of<E: PartialEq>(old: &[E], new: &[E], id: impl Fn(&E) -> &T) -> Diff<T> {
        let find = |list: &'_ [E], key: &T| list.iter().position(|e| id(e) == key);
        Diff {
            added: new
                .iter()
                .filter(|e| find(old, id(e)).is_none())
                .map(|e| id(e).clone())
                .collect(),
            removed: old
                .iter()
                .filter(|e| find(new, id(e)).is_none())
                .map(|e| id(e).clone())
                .collect(),
            changed: new
                .iter()
                .filter(|e| find(old, id(e)).is_some_and(|i| old[i] != **e))
                .map(|e| id(e).clone())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.accounts.is_empty()
            && self.pools.is_empty()
            && self.settings.is_empty()
            && self.needs_restart.is_empty()
    }

    /// What differs between two readings of the config, by identity.
    pub fn between(old: &Config, new: &Config) -> Changes {
        let mut settings = Vec::new();
        let mut needs_restart = Vec::new();
        let mut compare = |changed: bool, field: &'static str, live: bool| {
            if changed {
                if live {
                    settings.push(field);
                } else {
                    needs_restart.push(field);
                }
            }
        };
        compare(old.timeouts != new.timeouts, "timeouts", true);
        compare(old.headers != new.headers, "headers", true);
        compare(
            old.max_body_bytes != new.max_body_bytes,
            "max_body_bytes",
            true,
        );
        compare(
            old.connections.body_timeout != new.connections.body_timeout,
            "connections.body_timeout",
            true,
        );
        compare(old.listen != new.listen, "listen", false);
        let listener_limits = |c: &crate::config::Connections| {
            (c.max, c.max_header_bytes, c.header_timeout, c.keep_alive)
        };
        compare(
            listener_limits(&old.connections) != listener_limits(&new.connections),
            "connections",
            false,
        );
        compare(
            old.usage.database != new.usage.database,
            "usage.database",
            false,
        );
        compare(old.usage.queue != new.usage.queue, "usage.queue", false);
        compare(old.usage.prices != new.usage.prices, "prices", true);
        compare(old.usage_files() != new.usage_files(), "usages_path", false);
        compare(old.ca_file != new.ca_file, "ca_file", false);
        compare(old.admin != new.admin, "admin", true);
        compare(old.tls != new.tls, "tls", true);
        compare(old.secret_store != new.secret_store, "secret_store", false);
        compare(
            old.claude_login != new.claude_login || old.codex_login != new.codex_login,
            "oauth",
            true,
        );
        Changes {
            users: Diff::of(&old.users, &new.users, |u| &u.name),
            accounts: Diff::of(&old.credentials, &new.credentials, |c| &c.tag),
            pools: Diff::of(&old.pools, &new.pools, |p| &p.tag),
            settings,
            needs_restart,
        }
    }
}

impl fmt::Display for Changes {
    /// One line: `user `bob` added; account `work` changed; … needs a restart: listen`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing changed");
        }
        let mut parts: Vec<String> = Vec::new();
        fn describe<T: fmt::Display>(parts: &mut Vec<String>, what: &str, diff: &Diff<T>) {
            for (verb, list) in [
                ("added", &diff.added),
                ("removed", &diff.removed),
                ("changed", &diff.changed),
            ] {
                if !list.is_empty() {
                    let names: Vec<String> = list.iter().map(|n| format!("`{n}`")).collect();
                    let what = if list.len() == 1 {
                        what.to_owned()
                    } else {
                        format!("{what}s")
                    };
                    parts.push(format!("{what} {} {verb}", names.join(", ")));
                }
            }
        }
        describe(&mut parts, "user", &self.users);
        describe(&mut parts, "account", &self.accounts);
        describe(&mut parts, "pool", &self.pools);
        if !self.settings.is_empty() {
            parts.push(format!("{} changed", self.settings.join(", ")));
        }
        if !self.needs_restart.is_empty() {
            let verb = if self.needs_restart.len() == 1 {
                "takes"
            } else {
                "take"
            };
            parts.push(format!(
                "{} changed but {verb} effect only when Carpool restarts",
                self.needs_restart.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The accounts of a new reading of the config, reusing the previous state's where they
/// still apply.
pub(super) struct Built {
    pub accounts: Vec<Arc<Account>>,
    /// Accounts that are new objects (added, or replaced because their connection
    /// changed): their credentials need a watcher.
    pub fresh: Vec<Arc<Account>>,
}

/// Builds (or reuses from `previous`) every account of `config`.
pub(super) fn build_accounts(
    config: &Config,
    previous: Option<&State>,
    roots: &[reqwest::Certificate],
    secrets: &Arc<SecretStore>,
) -> Result<Built, AccountError> {
    let mut accounts = Vec::with_capacity(config.credentials.len());
    let mut fresh = Vec::new();
    for c in &config.credentials {
        let settings = settings_of(config, c);
        let old = previous.and_then(|state| {
            let account = state.pool.account(&c.tag)?;
            let entry = state.config.credentials.iter().find(|o| o.tag == c.tag)?;
            Some((account, entry))
        });
        // The client's connect timeout is set when it is built.
        let same_timeouts =
            previous.is_some_and(|s| s.config.timeouts.connect == config.timeouts.connect);
        let account = match old {
            Some((account, entry)) if same_timeouts && same_connection(entry, c) => {
                account.update_settings(settings);
                account.clone()
            }
            Some((account, entry)) => {
                let new = Arc::new(new_account(config, c, settings, roots, secrets)?);
                if entry.source == c.source {
                    new.inherit(account);
                }
                fresh.push(new.clone());
                new
            }
            None => {
                let new = Arc::new(new_account(config, c, settings, roots, secrets)?);
                fresh.push(new.clone());
                new
            }
        };
        accounts.push(account);
    }
    Ok(Built { accounts, fresh })
}

/// Whether an account can keep its client and login: same credentials, base URL and
/// proxy (and connect timeout, checked by the caller).
fn same_connection(old: &CredentialConfig, new: &CredentialConfig) -> bool {
    old.source == new.source && old.base_url == new.base_url && old.proxy == new.proxy
}

/// The reserves of an account, and the shortest poll interval of the pools it is in.
fn settings_of(config: &Config, c: &CredentialConfig) -> Settings {
    Settings {
        reserves: Reserves {
            five_hour: c.reserve_5h,
            weekly: c.reserve_weekly,
        },
        poll_interval: config
            .pools
            .iter()
            .filter(|p| p.members.contains(&c.tag))
            .map(|p| p.poll_interval)
            .min()
            .unwrap_or(Settings::DEFAULT_POLL_INTERVAL),
    }
}

fn new_account(
    config: &Config,
    c: &CredentialConfig,
    settings: Settings,
    roots: &[reqwest::Certificate],
    secrets: &Arc<SecretStore>,
) -> Result<Account, AccountError> {
    let problem = |problem: String| AccountError {
        tag: c.tag.clone(),
        problem,
    };
    let http = upstream::client(&config.timeouts, c.proxy.as_deref(), roots).map_err(problem)?;
    let source = match &c.source {
        ConfigSource::OAuthFile {
            path,
            token_url,
            keychain: None,
        } => Source::OAuth(Credential::new(
            &c.tag,
            path,
            &c.base_url,
            token_url,
            http.clone(),
        )),
        ConfigSource::OAuthFile {
            path,
            token_url,
            keychain: Some(item),
        } => Source::OAuth(Credential::in_keychain(
            &c.tag,
            secrets.keyring(),
            item.clone(),
            path,
            &c.base_url,
            token_url,
            http.clone(),
        )),
        ConfigSource::OAuthStored { login, token_url } => Source::OAuth(Credential::stored(
            LoginFormat::Claude,
            &c.tag,
            secrets.clone(),
            login.clone(),
            &c.base_url,
            token_url,
            http.clone(),
        )),
        ConfigSource::CodexStored { login, token_url } => Source::OAuth(Credential::stored(
            LoginFormat::Codex,
            &c.tag,
            secrets.clone(),
            login.clone(),
            &c.base_url,
            token_url,
            http.clone(),
        )),
        ConfigSource::CodexFile { path, token_url } => Source::OAuth(Credential::codex(
            &c.tag,
            path,
            &c.base_url,
            token_url,
            http.clone(),
        )),
        ConfigSource::ApiKey(key) => Source::ApiKey(key.clone()),
        // Read when the account is built: a key that is not there refuses the config
        // (at start, or the edit that refers to it) with where it was looked for.
        ConfigSource::ApiKeyStored(reference) => match secrets.get(reference) {
            Ok(Some(key)) if !key.expose().trim().is_empty() => {
                Source::ApiKey(crate::secret::Secret::new(key.expose().trim()))
            }
            Ok(_) => {
                return Err(problem(format!(
                    "its API key is not in {} (`api_key_ref` `{reference}`); add the account again with its key",
                    reference.describe(secrets)
                )));
            }
            Err(e) => return Err(problem(format!("its API key (`api_key_ref`): {e}"))),
        },
    };
    let base = reqwest::Url::parse(&c.base_url)
        .map_err(|e| problem(format!("base_url `{}`: {e}", c.base_url)))?;
    Ok(Account::new(c.tag.clone(), base, http, source, settings))
}

/// The state for `config` and its `accounts`: after `previous`, keeping its pinned
/// conversations and round-robin positions, and its recorder while the prices are the
/// same.
pub(super) fn state(
    config: Config,
    accounts: Vec<Arc<Account>>,
    previous: Option<&State>,
    ledger: &Arc<Ledger>,
) -> State {
    let pool = match previous {
        Some(previous) => previous.pool.reconfigured(accounts, config.pools.clone()),
        None => Pool::new(accounts, config.pools.clone()),
    };
    let recorder = match previous {
        Some(previous) if previous.config.usage.prices == config.usage.prices => {
            previous.recorder.clone()
        }
        _ => Recorder::new(
            ledger.clone(),
            Arc::new(Pricing::new(config.usage.prices.clone())),
        ),
    };
    State {
        users: Users::new(&config.users),
        pool,
        recorder,
        config: Arc::new(config),
    }
}

impl Engine {
    /// Makes `config` the running configuration, as one swap, and says what changed.
    /// On error nothing changed. Reloads are serialised.
    pub fn apply(&self, config: Config) -> Result<Changes, ApplyError> {
        let mut watchers = lock(&self.watchers);
        let old = self.state();
        let built = build_accounts(&config, Some(&old), &self.roots, &self.secrets)?;
        let mut changes = Changes::between(&old.config, &config);
        // A new address is taken before anything else changes, so that one that cannot be
        // had refuses the whole edit. Without a running server there is nothing to move.
        // So is a new certificate: one that cannot be used refuses the edit too.
        let tls = match &config.tls {
            Some(files) if old.config.tls.as_ref() != Some(files) => {
                Some(Some(crate::tls::Inbound::load(files)?))
            }
            Some(_) => None,
            None if old.config.tls.is_some() => Some(None),
            None => None,
        };
        let rebind = lock(&self.rebind).clone();
        let moved = match rebind {
            Some(rebind) if old.config.listen != config.listen => {
                let listener = bind(config.listen).map_err(|source| ApplyError::Listen {
                    addr: config.listen,
                    source,
                })?;
                changes.needs_restart.retain(|f| *f != "listen");
                changes.settings.push("listen");
                Some((rebind, listener))
            }
            _ => None,
        };
        let state = state(config, built.accounts.clone(), Some(&old), &self.ledger);
        self.current.replace(state);
        if let Some(tls) = tls {
            // From the next connection on; open ones go on as they are.
            self.tls.set(tls);
        }
        // Watchers follow the accounts: stopped for those gone, (re)started for the new
        // objects. An account kept as it was keeps its watcher.
        watchers.retain(|tag, watched| {
            let kept = built.accounts.iter().any(|a| a.tag == *tag)
                && !built.fresh.iter().any(|a| a.tag == *tag);
            if !kept {
                watched.stop();
            }
            kept
        });
        for account in &built.fresh {
            self.watch_account(account, &mut watchers);
        }
        if let Some((rebind, listener)) = moved {
            if let Ok(addr) = listener.local_addr() {
                super::warn_if_exposed(addr, self.serves_tls());
            }
            let _ = rebind.send(listener);
        }
        Ok(changes)
    }
}

/// A listening socket on `addr`, for the running server to accept on.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = std::net::TcpListener::bind(addr)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Caller;
    use crate::pool::Choice;
    use std::path::Path;

    const ALICE: &str = "alice-token-0000000001";
    const BOB: &str = "bob-token-00000000002";

    /// A config in `dir` over API-key accounts (no credential watchers needed).
    fn config(dir: &Path, body: &str) -> Config {
        let expires = (crate::pool::unix_now() + 8 * 3600) * 1000;
        for tag in ["a", "b", "c"] {
            let login = format!(
                r#"{{"claudeAiOauth": {{"accessToken": "sk-ant-oat01-{tag}", "refreshToken": "sk-ant-ort01-{tag}", "expiresAt": {expires}}}}}"#
            );
            std::fs::write(dir.join(format!("{tag}.json")), login).unwrap();
        }
        let text = body
            .replace("DB", &dir.join("usage.db").display().to_string())
            .replace("DIR", &dir.display().to_string());
        Config::parse(&text, &dir.join("carpool.json")).unwrap()
    }

    /// An API-key account, or with `extra` set a Claude login (reserves need one)
    /// whose credentials file `config` writes.
    fn account(tag: &str, extra: &str) -> String {
        if extra.is_empty() {
            format!(
                r#"{{"tag": "{tag}", "type": "api_key", "api_key": "sk-ant-api03-{tag}", "base_url": "http://127.0.0.1:9/{tag}"}}"#
            )
        } else {
            format!(
                r#"{{"tag": "{tag}", "credential_path": "DIR/{tag}.json", "base_url": "http://127.0.0.1:9/{tag}" {extra}}}"#
            )
        }
    }

    fn first(dir: &Path) -> Config {
        config(
            dir,
            &format!(
                r#"{{"database": "DB", "credentials": [{}, {}, {{"tag": "team", "type": "balancer", "strategy": "round_robin", "credentials": ["a", "b"]}}],
                   "users": [{{"name": "alice", "token": "{ALICE}", "credential": "team"}}, {{"name": "bob", "token": "{BOB}", "credential": "b"}}]}}"#,
                account("a", r#", "reserve_5h": 10"#),
                account("b", ""),
            ),
        )
    }

    fn caller(engine: &Engine, token: &str) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        match engine.state().users.authenticate(&headers) {
            Ok(Caller::User(user)) => Some(format!("{}→{}", user.name, user.targets)),
            _ => None,
        }
    }

    #[test]
    fn changes_are_found_by_identity_not_by_position() {
        let dir = tempfile::tempdir().unwrap();
        let old = first(dir.path());
        // The same entries in another order: nothing changed.
        let reordered = config(
            dir.path(),
            &format!(
                r#"{{"database": "DB", "credentials": [{{"tag": "team", "type": "balancer", "strategy": "round_robin", "credentials": ["a", "b"]}}, {}, {}],
                   "users": [{{"name": "bob", "token": "{BOB}", "credential": "b"}}, {{"name": "alice", "token": "{ALICE}", "credential": "team"}}]}}"#,
                account("b", ""),
                account("a", r#", "reserve_5h": 10"#),
            ),
        );
        let same = Changes::between(&old, &reordered);
        assert!(same.is_empty(), "{same:?}");
        assert_eq!(same.to_string(), "nothing changed");

        // Every kind of change at once.
        let new = config(
            dir.path(),
            &format!(
                r#"{{"database": "DB", "listen_port": 7999, "timeouts": {{"idle": "5s"}},
                   "credentials": [{}, {}, {{"tag": "team", "type": "balancer", "strategy": "least_used", "credentials": ["c", "a"]}}],
                   "users": [{{"name": "alice", "token": "{ALICE}", "credential": "team"}}, {{"name": "carol", "token": "{BOB}", "credential": "c"}}]}}"#,
                account("a", r#", "reserve_5h": 30"#),
                account("c", ""),
            ),
        );
        let changes = Changes::between(&old, &new);
        assert_eq!(changes.users.added, ["carol"]);
        assert_eq!(changes.users.removed, ["bob"]);
        assert!(changes.users.changed.is_empty());
        assert_eq!(changes.accounts.added, ["c"]);
        assert_eq!(changes.accounts.removed, ["b"]);
        assert_eq!(changes.accounts.changed, ["a"]);
        assert_eq!(changes.pools.changed, ["team"]);
        assert_eq!(changes.settings, ["timeouts"]);
        assert_eq!(changes.needs_restart, ["listen"]);
        assert_eq!(
            changes.to_string(),
            "user `carol` added; user `bob` removed; account `c` added; account `b` removed; \
             account `a` changed; pool `team` changed; timeouts changed; \
             listen changed but takes effect only when Carpool restarts"
        );
    }

    #[tokio::test]
    async fn apply_keeps_what_did_not_change_and_swaps_the_rest_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(first(dir.path())).unwrap();
        engine.start();
        let before = engine.state();
        let a = before.pool.account("a").unwrap().clone();
        let b = before.pool.account("b").unwrap().clone();
        let now = crate::pool::unix_now();
        a.note_request(100, now);
        b.limits().on_quota_429(now + 3600);
        let team = crate::config::Target::Pool("team".into());
        let Choice::Use(pinned) = before.pool.choose(&team, "conversation", &[], now) else {
            panic!("a is ready")
        };
        assert_eq!(pinned.tag, "a", "b is out of quota");
        assert_eq!(caller(&engine, BOB).as_deref(), Some("bob→b"));

        // Reordered; a's reserve changed; b moved to another base URL; bob removed,
        // carol added; a new account and pool.
        let next = config(
            dir.path(),
            &format!(
                r#"{{"database": "DB", "credentials": [{}, {}, {}, {{"tag": "team", "type": "balancer", "strategy": "round_robin", "credentials": ["b", "a", "c"]}}, {{"tag": "solo", "type": "fallback", "credentials": ["c"]}}],
                   "users": [{{"name": "alice", "token": "{ALICE}", "credential": "team"}}, {{"name": "carol", "token": "{BOB}", "credential": "solo"}}]}}"#,
                account("c", ""),
                account("a", r#", "reserve_5h": 25"#),
                account("b", "").replace("127.0.0.1:9/b", "127.0.0.1:9/moved"),
            ),
        );
        let changes = engine.apply(next).unwrap();
        assert_eq!(changes.accounts.added, ["c"]);
        assert_eq!(changes.accounts.changed, ["a", "b"]);
        assert_eq!(changes.pools.added, ["solo"]);

        let after = engine.state();
        let a2 = after.pool.account("a").unwrap();
        assert!(
            Arc::ptr_eq(&a, a2),
            "an account whose connection is unchanged is kept"
        );
        assert_eq!(a2.reserves().five_hour, Some(25), "its new reserve applies");
        assert_eq!(a2.last_hour(now), (1, 100), "and its figures stay");
        let b2 = after.pool.account("b").unwrap();
        assert!(!Arc::ptr_eq(&b, b2), "a new base URL makes a new client");
        assert_eq!(b2.base_url, "http://127.0.0.1:9/moved");
        assert!(
            !b2.availability(now).is_ready(),
            "the same key keeps its quota state"
        );
        let Choice::Use(again) = after.pool.choose(&team, "conversation", &[], now + 1) else {
            panic!("a is ready")
        };
        assert_eq!(again.tag, "a", "the conversation stays on its account");

        // Users: bob's token now belongs to carol; the old state still knows bob for a
        // request that started before the swap.
        assert_eq!(caller(&engine, BOB).as_deref(), Some("carol→solo"));
        assert_eq!(caller(&engine, ALICE).as_deref(), Some("alice→team"));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", BOB.parse().unwrap());
        assert!(matches!(
            before.users.authenticate(&headers),
            Ok(Caller::User(u)) if u.name == "bob"
        ));
        engine.tasks().shutdown().await;
    }

    #[tokio::test]
    async fn a_removed_user_is_refused_from_the_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(first(dir.path())).unwrap();
        let without_bob = config(
            dir.path(),
            &format!(
                r#"{{"database": "DB", "credentials": [{}, {}],
                   "users": [{{"name": "alice", "token": "{ALICE}", "credential": "a"}}]}}"#,
                account("a", ""),
                account("b", ""),
            ),
        );
        let changes = engine.apply(without_bob).unwrap();
        assert_eq!(changes.users.removed, ["bob"]);
        assert_eq!(
            changes.users.changed,
            ["alice"],
            "rebound from the pool to `a`"
        );
        assert_eq!(changes.pools.removed, ["team"]);
        assert_eq!(caller(&engine, BOB), None);
        assert_eq!(caller(&engine, ALICE).as_deref(), Some("alice→a"));
    }

    #[tokio::test]
    async fn new_prices_apply_to_the_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(first(dir.path())).unwrap();
        let text = |price: &str| {
            format!(
                r#"{{"database": "DB", "credentials": [{}],
                   "prices": {{"house-model": {{"input": {price}, "output": 1, "cache_read": 0, "cache_write_5m": 0, "cache_write_1h": 0}}}},
                   "users": [{{"name": "alice", "token": "{ALICE}"}}]}}"#,
                account("a", ""),
            )
        };
        let price_of = |engine: &Engine| {
            let state = engine.state();
            let (_, prices) = state.recorder.pricing().table().lookup("house-model")?;
            Some(prices.standard.input)
        };
        assert_eq!(price_of(&engine), None);
        let changes = engine.apply(config(dir.path(), &text("3"))).unwrap();
        assert!(changes.settings.contains(&"prices"), "{changes}");
        let three = price_of(&engine).unwrap();
        let same = engine.apply(config(dir.path(), &text("3"))).unwrap();
        assert!(same.is_empty(), "{same}");
        engine.apply(config(dir.path(), &text("6"))).unwrap();
        assert!(price_of(&engine).unwrap() > three);
    }
}
