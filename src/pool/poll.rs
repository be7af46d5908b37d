//! Anthropic's OAuth usage endpoint, asked only when an account's figures are stale.
//!
//! Every answer through an account carries its utilization in headers, so a busy
//! account never needs this. An idle one (or one never used since start) is polled when
//! its figures are older than its `poll_interval`, in two cases:
//!
//! * a request for its pool arrives ([`poll_if_stale`]): the poll runs in the background,
//!   the request itself never waits;
//! * something is watching the status ([`StatusWatchers`]: the dashboard, the tray): a
//!   background loop ([`poll_while_watched`]) keeps every usable OAuth account's figures
//!   within its `poll_interval`, so the meters stay live with no traffic. When nothing
//!   watches, the loop sleeps until something does and nobody's usage endpoint is asked.
//!
//! One poll at a time per account, whoever starts it ([`Account::start_poll`]). The
//! endpoint is rate limited too: a 429 is honoured through its `retry-after`, other
//! failures back off, and a failed poll never takes the account out of service
//! (docs/protocol.md §5.2). The answer is read whole but at most 64 KiB
//! ([`MAX_USAGE_RESPONSE`]); error answers are not read at all. A `retry-after` is
//! honoured for an hour at most.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::account::{Account, Auth, Source};
use super::{Pool, unix_now};
use crate::config::Target;
use crate::credentials::LoginFormat;
use crate::credentials::oauth::{OAUTH_BETA, USER_AGENT};
use crate::tasks::Tasks;
use crate::upstream::read_capped;

const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest usage answer read (real ones are about 1 KiB); a longer one is a failed
/// poll and the rest is not read.
const MAX_USAGE_RESPONSE: usize = 64 << 10;

/// Between the starts of two polls of one round of [`poll_while_watched`]: accounts that
/// became stale together (all of them, when the first watcher comes) do not all ask at
/// once.
const STAGGER: Duration = Duration::from_millis(250);
/// How often a watched loop looks for stale figures. Staleness is counted in whole
/// seconds, so looking more often would find nothing new.
const TICK: Duration = Duration::from_secs(1);

/// Starts a background poll (in `tasks`) for every OAuth account of `target` whose
/// figures are stale.
pub fn poll_if_stale(pool: &Pool, target: &Target, now: i64, tasks: &Tasks) {
    for account in pool.members(target) {
        let Some(claim) = Claim::if_stale(account, now) else {
            continue;
        };
        tasks.spawn(async move { poll(&claim.0).await });
    }
}

/// The right to poll one account's usage ([`Account::start_poll`]), given back on drop.
struct Claim(Arc<Account>);

impl Claim {
    /// Claims `account` if it is a usable OAuth account whose figures are older than its
    /// `poll_interval` (and no poll back-off is pending), and nobody polls it already.
    fn if_stale(account: &Arc<Account>, now: i64) -> Option<Claim> {
        (is_stale(account, now) && account.start_poll()).then(|| Claim(Arc::clone(account)))
    }
}

/// A usable OAuth account whose figures are older than its `poll_interval`, with no
/// poll back-off pending.
fn is_stale(account: &Account, now: i64) -> bool {
    let interval = account.settings().poll_interval.as_secs() as i64;
    account.is_oauth() && account.broken().is_none() && account.limits().needs_poll(interval, now)
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.end_poll();
    }
}

/// How many are watching the status right now; cloned handles share the count. While it
/// is above zero, [`poll_while_watched`] keeps idle accounts' usage figures fresh.
#[derive(Clone)]
pub struct StatusWatchers(Arc<watch::Sender<usize>>);

impl Default for StatusWatchers {
    fn default() -> Self {
        StatusWatchers(Arc::new(watch::Sender::new(0)))
    }
}

impl StatusWatchers {
    /// One more watcher, until the returned guard is dropped.
    pub fn watch(&self) -> StatusWatch {
        self.0.send_modify(|n| *n += 1);
        StatusWatch(self.clone())
    }

    /// How many guards are alive.
    pub fn count(&self) -> usize {
        *self.0.borrow()
    }
}

/// Someone watching the status (a dashboard page open, a tray menu shown): idle
/// accounts' usage figures are polled while at least one of these is alive.
#[must_use = "the status counts as watched only while the guard is alive"]
pub struct StatusWatch(StatusWatchers);

impl Drop for StatusWatch {
    fn drop(&mut self) {
        (self.0).0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Polls, while anything watches the status, every usable OAuth account whose figures
/// are older than its `poll_interval`, a moment (`STAGGER`) apart; until `shutdown`
/// completes. `accounts` gives the accounts of the moment (each round asks again, so a
/// reloaded configuration is followed). When the last watcher goes, no new poll starts
/// and the loop sleeps until the next one comes: no timer, no wake-up.
///
/// A poll that has started is finished, even at shutdown: it may be refreshing the
/// account's token, which must not be cut (see [`crate::credentials::keep_fresh`]); it is
/// bounded by the poll's and the refresh's timeouts.
pub async fn poll_while_watched(
    accounts: impl Fn() -> Vec<Arc<Account>>,
    watchers: StatusWatchers,
    shutdown: impl Future<Output = ()>,
) {
    keep_polled(
        accounts,
        watchers,
        shutdown,
        unix_now,
        |account| async move { poll(&account).await },
    )
    .await;
}

/// [`poll_while_watched`] with its clock (Unix seconds) and the poll itself as
/// parameters, so its schedule can be tested on paused time.
async fn keep_polled<P, F>(
    accounts: impl Fn() -> Vec<Arc<Account>>,
    watchers: StatusWatchers,
    shutdown: impl Future<Output = ()>,
    now: impl Fn() -> i64,
    poll_one: P,
) where
    P: Fn(Arc<Account>) -> F,
    F: Future<Output = ()>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    let mut watched = watchers.0.subscribe();
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = watched.wait_for(|n| *n > 0) => {}
        }
        let at = now();
        let stale: Vec<Arc<Account>> = accounts().into_iter().filter(|a| is_stale(a, at)).collect();
        for (k, account) in stale.into_iter().enumerate() {
            if k > 0 {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = watched.wait_for(|n| *n == 0) => break,
                    () = tokio::time::sleep(STAGGER) => {}
                }
            }
            // Claimed only now: figures a request brought meanwhile count, and a poll
            // a request started is not doubled.
            if let Some(claim) = Claim::if_stale(&account, now()) {
                poll_one(Arc::clone(&claim.0)).await;
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            _ = watched.wait_for(|n| *n == 0) => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn poll(account: &Account) {
    let (token, account_id) = match account.auth(None).await {
        Ok(Auth::OAuth { token, account_id }) => (token, account_id),
        _ => return, // no usable login: nothing to ask with; the account shows as broken
    };
    let codex = matches!(&account.source, Source::OAuth(c) if c.format() == LoginFormat::Codex);
    let request = if codex {
        // ChatGPT's usage endpoint, beside the Codex backend (docs/protocol.md §7.6).
        let request = account
            .http
            .get(codex_usage_url(&account.base_url))
            .bearer_auth(token.expose());
        match account_id {
            Some(id) => request.header("chatgpt-account-id", id),
            None => request,
        }
    } else {
        account
            .http
            .get(format!("{}/api/oauth/usage", account.base_url))
            .bearer_auth(token.expose())
            .header("anthropic-beta", OAUTH_BETA)
            .header("user-agent", USER_AGENT)
    };
    let sent = request
        .header("accept", "application/json")
        .timeout(POLL_TIMEOUT)
        .send()
        .await;
    let now = unix_now();
    let outcome = match sent {
        Ok(response) if response.status().is_success() => {
            match read_capped(response, MAX_USAGE_RESPONSE).await {
                Ok(body) => account.limits().observe_usage(&body, now),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(response) if response.status().as_u16() == 429 => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            account.limits().on_poll_failed(retry_after, now);
            tracing::debug!(account = %account.tag, ?retry_after, "usage endpoint rate-limited the poll");
            return;
        }
        Ok(response) => Err(format!("status {}", response.status())),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = outcome {
        account.limits().on_poll_failed(None, now);
        tracing::debug!(account = %account.tag, "usage poll failed: {why}");
    }
}

/// `…/backend-api/wham/usage` for a Codex backend at `…/backend-api/codex`: the base
/// without its last `/codex`, then `/wham/usage`.
fn codex_usage_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let base = base.strip_suffix("/codex").unwrap_or(base);
    format!("{base}/wham/usage")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_usage_is_asked_beside_the_codex_backend() {
        assert_eq!(
            codex_usage_url("https://chatgpt.com/backend-api/codex"),
            "https://chatgpt.com/backend-api/wham/usage"
        );
        assert_eq!(
            codex_usage_url("http://127.0.0.1:9/backend-api/codex/"),
            "http://127.0.0.1:9/backend-api/wham/usage"
        );
        assert_eq!(
            codex_usage_url("http://127.0.0.1:9"),
            "http://127.0.0.1:9/wham/usage"
        );
    }
    use crate::credentials::Credential;
    use crate::pool::account::{Settings, Source};
    use crate::pool::limits::Reserves;
    use crate::secret::Secret;
    use std::sync::Mutex;
    use tokio::time::Instant;

    const USAGE: &str = r#"{"five_hour": {"utilization": 10.0, "resets_at": null},
                            "seven_day": {"utilization": 20.0, "resets_at": null}}"#;

    fn account(tag: &str, source: Source, poll_interval: Duration) -> Arc<Account> {
        Arc::new(Account::new(
            tag.into(),
            "http://127.0.0.1:9".parse().unwrap(),
            reqwest::Client::new(),
            source,
            Settings {
                reserves: Reserves::default(),
                poll_interval,
            },
        ))
    }

    /// A Claude login valid for eight hours (`exists`), or none.
    fn login(dir: &std::path::Path, tag: &str, exists: bool) -> Source {
        let path = dir.join(format!("{tag}.json"));
        if exists {
            let expires = (unix_now() + 8 * 3600) * 1000;
            let text = serde_json::json!({"claudeAiOauth": {
                "accessToken": format!("sk-ant-oat01-{tag}"),
                "refreshToken": format!("sk-ant-ort01-{tag}"), "expiresAt": expires}});
            std::fs::write(&path, text.to_string()).unwrap();
        }
        let http = reqwest::Client::new();
        Source::OAuth(Credential::new(
            tag,
            &path,
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/v1/oauth/token",
            http,
        ))
    }

    /// The polls each account got, as instants of the paused clock.
    type Log = Arc<Mutex<Vec<(String, Instant)>>>;

    fn polls_of(log: &Log, tag: &str) -> Vec<Instant> {
        let log = log.lock().unwrap();
        log.iter()
            .filter(|(t, _)| t == tag)
            .map(|(_, at)| *at)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn idle_accounts_are_polled_at_their_interval_only_while_watched() {
        let dir = tempfile::tempdir().unwrap();
        let interval = Duration::from_secs(3);
        let accounts = vec![
            account("a0", login(dir.path(), "a0", true), interval),
            account("a1", login(dir.path(), "a1", true), interval),
            account(
                "key",
                Source::ApiKey(Secret::new("sk-ant-api03-x")),
                interval,
            ),
            account("gone", login(dir.path(), "gone", false), interval),
        ];
        let watchers = StatusWatchers::default();
        // Unix seconds that follow the paused clock.
        let (start, t0) = (unix_now(), Instant::now());
        let clock = move || start + t0.elapsed().as_secs() as i64;
        let log: Log = Arc::default();
        let poll_one = |account: Arc<Account>| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((account.tag.to_string(), Instant::now()));
                account
                    .limits()
                    .observe_usage(USAGE.as_bytes(), clock())
                    .unwrap();
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listed = accounts.clone();
        let poller = keep_polled(
            move || listed.clone(),
            watchers.clone(),
            async move {
                let _ = stopped.await;
            },
            clock,
            poll_one,
        );

        let test = async {
            // Nobody watches: ten idle minutes, no poll.
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert!(log.lock().unwrap().is_empty());

            let watch = watchers.watch();
            assert_eq!(watchers.count(), 1);
            let watched_from = Instant::now();
            tokio::time::sleep(Duration::from_secs(30)).await;
            for tag in ["a0", "a1"] {
                let polls = polls_of(&log, tag);
                // Staleness is counted in whole seconds, "older than" the interval,
                // and looked for every second: one poll per 3 to 5 seconds.
                assert!((6..=11).contains(&polls.len()), "{tag}: {}", polls.len());
                assert!(polls[0] - watched_from < Duration::from_secs(1), "at once");
                for gap in polls.windows(2).map(|w| w[1] - w[0]) {
                    assert!(
                        gap >= interval && gap <= interval + Duration::from_secs(2),
                        "{tag}: {gap:?}"
                    );
                }
            }
            // Both were stale together each time: they did not ask at the same moment.
            for (a0, a1) in polls_of(&log, "a0").iter().zip(polls_of(&log, "a1")) {
                assert!(a1 - *a0 >= STAGGER, "{:?}", a1 - *a0);
            }
            assert!(
                polls_of(&log, "key").is_empty(),
                "API keys have no usage endpoint"
            );
            assert!(
                polls_of(&log, "gone").is_empty(),
                "no login, nothing to ask with"
            );
            assert!(
                accounts.iter().all(|a| a.start_poll()),
                "every claim given back"
            );
            accounts.iter().for_each(|a| a.end_poll());

            // The last watcher goes: no poll any more, however long it stays idle.
            drop(watch);
            assert_eq!(watchers.count(), 0);
            let polled = log.lock().unwrap().len();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            assert_eq!(log.lock().unwrap().len(), polled);

            // A new watcher finds stale figures and polls them at once.
            let _watch = watchers.watch();
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(log.lock().unwrap().len(), polled + 2);
            let _ = stop.send(());
        };
        // The poller returns on shutdown, with a watcher still there.
        tokio::join!(poller, test);
    }

    #[tokio::test(start_paused = true)]
    async fn figures_from_requests_count_and_postpone_the_poll() {
        let dir = tempfile::tempdir().unwrap();
        let busy = account(
            "busy",
            login(dir.path(), "busy", true),
            Duration::from_secs(60),
        );
        let watchers = StatusWatchers::default();
        let (start, t0) = (unix_now(), Instant::now());
        let clock = move || start + t0.elapsed().as_secs() as i64;
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listed = busy.clone();
        let counter = polls.clone();
        let poller = keep_polled(
            move || vec![listed.clone()],
            watchers.clone(),
            async move {
                let _ = stopped.await;
            },
            clock,
            move |account: Arc<Account>| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let polled = account.limits().observe_usage(USAGE.as_bytes(), clock());
                async move { polled.unwrap() }
            },
        );
        let test = async {
            // Every answer brings fresh figures (its protocol reads them from its headers).
            let signals = |percent: u32| {
                let window = crate::pool::limits::Window {
                    percent: Some(percent),
                    resets_at: None,
                };
                crate::pool::limits::LimitSignals {
                    five_hour: window,
                    weekly: window,
                    quota_until: None,
                }
            };
            busy.limits().observe(&signals(10), clock());
            let _watch = watchers.watch();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                busy.limits().observe(&signals(20), clock());
            }
            assert_eq!(
                polls.load(std::sync::atomic::Ordering::SeqCst),
                0,
                "never stale"
            );
            // Then it goes idle: polled once its figures are a minute old.
            tokio::time::sleep(Duration::from_secs(63)).await;
            assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 1);
            let _ = stop.send(());
        };
        tokio::join!(poller, test);
    }
}
