//! What the desktop app drives: starting and stopping the relay in-process, the tray
//! menu's figures, notifications, the window's sign-in and "Copy Claude Code setup".
//!
//! The Tauri shell (`src-tauri/`) holds no proxy logic and no wording: it turns a
//! [`menu::Menu`] into the platform's tray menu, shows [`notices::Notice`]s, and calls
//! [`Desktop`]'s methods when an item is clicked. Everything here builds and is tested
//! without Tauri or GTK, so a bare `cargo test` covers it.
//!
//! The relay runs through [`crate::launch::launch`], the same start `carpool serve`
//! makes, on the same config file and data, so a person can switch between the tray app
//! and the headless server. `desktop.json` beside the config remembers whether the relay
//! was running ([`state`]).

pub mod menu;
pub mod notices;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::api::Api;
use crate::api::ClientSetup;
use crate::config::{Config, manage};
use crate::engine::{Overrides, RunningServer};
use crate::launch::{LaunchError, launch, local_url};
use crate::ledger::live::Recv;
use crate::ledger::query::{Query, report};
use crate::ledger::store;
use crate::pool::StatusWatch;
use crate::secret::{Secret, TokenHash};
use crate::secrets::SecretRef;
use crate::tasks::lock;

pub use menu::{ItemId, Look, Menu};
pub use notices::{Notice, Notices};
pub use state::DesktopState;

/// Today's cost is read from the database again at least this often, even with no
/// request finishing (the day may have turned).
const COST_MAX_AGE: Duration = Duration::from_secs(60);

/// The desktop app's relay: stopped or running, and what it remembers.
pub struct Desktop {
    config_path: PathBuf,
    state_path: PathBuf,
    state: std::sync::Mutex<DesktopState>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// Woken when something the menu shows may have changed (a request finished, the
    /// relay started or stopped).
    changed: Arc<Notify>,
}

/// A running relay and what the tray keeps of it.
struct Running {
    server: RunningServer,
    api: Arc<Api>,
    /// The address this machine's clients use.
    url: String,
    /// Keeps idle accounts' figures polled while the tray shows them.
    _watch: StatusWatch,
    /// Set by every finished request: today's cost must be read again.
    cost_stale: Arc<AtomicBool>,
    cost: Option<(i64, Instant)>,
}

impl Desktop {
    /// The desktop app on the config file at `config_path` (the one `carpool serve`
    /// uses by default: [`crate::config::default_config_path`]).
    pub fn new(config_path: PathBuf) -> Desktop {
        let state_path = state::path_for(&config_path);
        let state = DesktopState::load(&state_path);
        Desktop {
            config_path,
            state_path,
            state: std::sync::Mutex::new(state),
            running: tokio::sync::Mutex::new(None),
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Whether the relay was running when the app last quit: start it again if so.
    pub fn was_running(&self) -> bool {
        lock(&self.state).relay_running
    }

    /// Completes when the menu may need refreshing; the caller also refreshes every
    /// few seconds (countdowns move).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Starts the relay (nothing happens if it runs). Remembered for the next launch.
    pub async fn start(&self) -> Result<(), LaunchError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let launched = launch(&self.config_path, Overrides::default()).await?;
        if launched.admin_secret.is_some() {
            tracing::info!(
                "an admin secret was made for this data directory; the desktop window signs in without it. \
                 To use the dashboard from a browser, run `carpool admin reset` for one to type"
            );
        }
        let engine = launched.server.engine().clone();
        let url = local_url(launched.server.local_addr(), engine.serves_tls());
        let watch = engine.watch_status();
        let cost_stale = Arc::new(AtomicBool::new(true));
        let mut feed = engine.current().feed().subscribe();
        let (stale, changed) = (cost_stale.clone(), self.changed.clone());
        engine.tasks().spawn(async move {
            loop {
                match feed.recv().await {
                    Recv::Event(_) | Recv::Lagged(_) => {
                        stale.store(true, Ordering::Release);
                        changed.notify_one();
                    }
                    Recv::Closed => return,
                }
            }
        });
        let crate::launch::Launched {
            server,
            api,
            created,
            ..
        } = launched;
        let server = server.spawn();
        tracing::info!("relay started on {url}");
        if let Some(created) = created {
            // A config made now: its user's token is the one to copy.
            self.keep_setup_token(&server, &created.user_name, &created.token)
                .await;
        }
        *running = Some(Running {
            server,
            api,
            url,
            _watch: watch,
            cost_stale,
            cost: None,
        });
        self.remember(true);
        self.changed.notify_one();
        Ok(())
    }

    /// Stops the relay gracefully: in-flight answers finish (for at most the
    /// configured grace), usage is written to disk. Remembered for the next launch.
    pub async fn stop(&self) {
        self.shut_down().await;
        self.remember(false);
    }

    /// Stops the relay for the app's end, remembering that it was running (so the next
    /// launch starts it again).
    pub async fn quit(&self) {
        self.shut_down().await;
    }

    async fn shut_down(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            running.server.shutdown().await;
            tracing::info!("relay stopped");
        }
        self.changed.notify_one();
    }

    pub async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    fn remember(&self, running: bool) {
        let mut state = lock(&self.state);
        if state.relay_running != running {
            state.relay_running = running;
            self.save(&state);
        }
    }

    /// Writes `state` to `desktop.json`; a failure is logged (it only remembers
    /// conveniences).
    fn save(&self, state: &DesktopState) {
        if let Err(e) = state.save(&self.state_path) {
            tracing::warn!("cannot write {}: {e}", self.state_path.display());
        }
    }

    /// The tray menu now, and the notices it calls for (given what `notices` saw
    /// before). Reads today's cost from the usage database when a request finished
    /// since the last reading, or a minute has passed.
    pub async fn menu(&self, start_at_login: bool, notices: &mut Notices) -> (Menu, Vec<Notice>) {
        let mut running = self.running.lock().await;
        let Some(running) = running.as_mut() else {
            return (
                Menu::build(&menu::Relay::Stopped, start_at_login),
                Vec::new(),
            );
        };
        let engine = running.server.engine.clone();
        let stale = running.cost_stale.swap(false, Ordering::AcqRel)
            || running
                .cost
                .is_none_or(|(_, at)| at.elapsed() >= COST_MAX_AGE);
        if stale {
            // What finished is in the database once the writer has caught up.
            engine.ledger.flush_async().await;
            let database = engine.state().config.usage.database.clone();
            let today = tokio::task::spawn_blocking(move || today_cost(&database))
                .await
                .ok()
                .flatten();
            if let Some(micros) = today {
                running.cost = Some((micros, Instant::now()));
            }
        }
        let status = engine.status();
        let found = notices.update(&status);
        let relay = menu::Relay::Running {
            address: &running.url,
            status: &status,
            today_micros: running.cost.map(|(micros, _)| micros),
            openai: engine
                .state()
                .config
                .credentials
                .iter()
                .any(|c| c.provider == crate::config::Provider::OpenAi),
        };
        (Menu::build(&relay, start_at_login), found)
    }

    /// The address that opens the dashboard signed in, once: the hand-over with a new
    /// one-time ticket. `None` while the relay is stopped.
    pub async fn dashboard_url(&self) -> Option<String> {
        let running = self.running.lock().await;
        let running = running.as_ref()?;
        Some(format!(
            "{}{}/session/handover?ticket={}",
            running.url,
            crate::api::PREFIX,
            running.api.handover_ticket()
        ))
    }

    /// The address the relay answers on, while it runs.
    pub async fn address(&self) -> Option<String> {
        Some(self.running.lock().await.as_ref()?.url.clone())
    }

    /// Claude Code's environment for this machine (`export ANTHROPIC_BASE_URL=…` and
    /// `export ANTHROPIC_AUTH_TOKEN=…`), with the token of the desktop's own user. That
    /// user is the one a new config was created with, or else one made now (`desktop`,
    /// bound like the first user) whose token is kept in the secret store to be copied
    /// again. `Err`: why there is none, for a notification.
    pub async fn claude_code_setup(&self) -> Result<String, String> {
        let (url, token, _) = self.setup_token().await?;
        Ok(ClientSetup::new(&url, &token).shell)
    }

    /// Codex's model provider for this machine's `~/.codex/config.toml`, with the token
    /// of the desktop's own user in it (see [`Desktop::claude_code_setup`]). `Err`: why
    /// there is none, or that that user has no OpenAI account to go to.
    pub async fn codex_setup(&self) -> Result<String, String> {
        let (url, token, user) = self.setup_token().await?;
        let running = self.running.lock().await;
        if let Some(running) = running.as_ref() {
            let config = running.server.engine.state().config.clone();
            let bound = config
                .users
                .iter()
                .find(|u| u.name.as_str() == user)
                .is_some_and(|u| u.targets.openai.is_some());
            if !bound {
                return Err(format!(
                    "the user `{user}` is not bound to an OpenAI account: choose one for it on the dashboard's Users page"
                ));
            }
        }
        Ok(ClientSetup::new(&url, &token).codex_config_with_token(&token))
    }

    /// The relay's address, the desktop user's token and that user's name.
    async fn setup_token(&self) -> Result<(String, String, String), String> {
        let running = self.running.lock().await;
        let Some(running) = running.as_ref() else {
            return Err("Carpool is stopped: start it first".into());
        };
        let (token, user) = match self.kept_setup_token(&running.server).await {
            Some(kept) => kept,
            None => self.new_setup_user(&running.server).await?,
        };
        Ok((running.url.clone(), token, user))
    }

    /// The kept token and its user, if it is still a configured user's.
    async fn kept_setup_token(&self, server: &RunningServer) -> Option<(String, String)> {
        let (user, reference) = {
            let state = lock(&self.state);
            (state.setup_user.clone()?, state.setup_token_ref.clone()?)
        };
        let reference = SecretRef::parse(&reference).ok()?;
        let secrets = server.engine.secrets.clone();
        let token = tokio::task::spawn_blocking(move || secrets.get(&reference))
            .await
            .ok()?
            .ok()??;
        let token = token.expose().to_owned();
        let hash = TokenHash::of(&token);
        let config = server.engine.state().config.clone();
        config
            .users
            .iter()
            .any(|u| u.name.as_str() == user && u.token_hash.ct_eq(&hash))
            .then_some((token, user))
    }

    /// Adds the desktop's own user and keeps its token; the token and the user's name.
    async fn new_setup_user(&self, server: &RunningServer) -> Result<(String, String), String> {
        let engine = server.engine.clone();
        let config = engine.state().config.clone();
        let name = free_name(&config, "desktop");
        let credentials: Vec<String> = config
            .users
            .first()
            .map(|u| u.targets.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let user = name.clone();
        let edited = tokio::task::spawn_blocking(move || {
            engine.edit_config(|doc| {
                manage::add_user(
                    doc,
                    &user,
                    &credentials,
                    &manage::credential_field,
                    "a user made in the dashboard first",
                )
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot add a user for this machine: {e}"))?;
        let token = edited.value.token;
        self.keep_setup_token(server, &name, &token).await;
        tracing::info!("added the user `{name}` for this machine's Claude Code and Codex setups");
        Ok((token, name))
    }

    async fn keep_setup_token(&self, server: &RunningServer, user: &str, token: &str) {
        let secrets = server.engine.secrets.clone();
        let value = Secret::new(token.to_owned());
        let stored =
            tokio::task::spawn_blocking(move || secrets.store_new("desktop-setup", &value))
                .await
                .map_err(|e| e.to_string())
                .and_then(|stored| stored.map_err(|e| e.to_string()));
        match stored {
            Ok(reference) => {
                let replaced = {
                    let mut state = lock(&self.state);
                    state.setup_user = Some(user.to_owned());
                    let replaced = state.setup_token_ref.replace(reference.to_string());
                    self.save(&state);
                    replaced
                };
                // The token kept before (its user was removed, or its token rotated) is
                // of no use any more.
                if let Some(old) = replaced.and_then(|r| SecretRef::parse(&r).ok()) {
                    let secrets = server.engine.secrets.clone();
                    let _ = tokio::task::spawn_blocking(move || secrets.delete(&old)).await;
                }
            }
            Err(e) => tracing::warn!("cannot keep the setup token of `{user}`: {e}"),
        }
    }
}

/// `base`, or `base-2`, `base-3`… : the first name no user of `config` has.
fn free_name(config: &Config, base: &str) -> String {
    let taken = |name: &str| config.users.iter().any(|u| u.name.as_str() == name);
    (1..)
        .map(|n| {
            if n == 1 {
                base.to_owned()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|name| !taken(name))
        .expect("an unbounded range has a free name")
}

/// What today (in this machine's time zone) cost so far, in millionths of a dollar;
/// `Some(0)` before the database exists, `None` if it cannot be read.
pub fn today_cost(database: &Path) -> Option<i64> {
    if !database.exists() {
        return Some(0);
    }
    let conn = store::open_read_only(database).ok()?;
    let now = jiff::Zoned::now();
    let since = now.start_of_day().ok()?;
    let query = Query::up_to_now(&since, &now, None);
    Some(report(&conn, &query).ok()?.total.cost_micros)
}
