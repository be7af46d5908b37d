//! The tray menu as data: which items it has, their labels and whether they can be
//! clicked, built from the engine's status snapshot and today's cost. The desktop shell
//! turns a [`Menu`] into the platform's menu and maps a click back through [`ItemId`];
//! everything a person reads in the menu is decided, and tested, here.

use std::fmt;

use crate::pool::status::{AccountState, AccountStatus, PoolStatus, WindowStatus};

/// Every item of the tray menu. The shell's menu ids are these, as text
/// ([`ItemId::as_id`] and [`ItemId::parse`] are each other's inverse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemId {
    /// "Carpool is running on …" / "Carpool is stopped" (not clickable).
    Headline,
    /// One account's windows and state (not clickable).
    Account(usize),
    /// Today's cost (not clickable).
    Today,
    /// Start or Stop, by the relay's state.
    StartStop,
    OpenDashboard,
    CopySetup,
    /// Codex's setup; only while an OpenAI account (a Codex login, an OpenAI key) exists.
    CopyCodexSetup,
    /// A check item.
    StartAtLogin,
    Quit,
}

impl ItemId {
    pub fn as_id(&self) -> String {
        match self {
            ItemId::Headline => "headline".into(),
            ItemId::Account(i) => format!("account-{i}"),
            ItemId::Today => "today".into(),
            ItemId::StartStop => "start-stop".into(),
            ItemId::OpenDashboard => "open-dashboard".into(),
            ItemId::CopySetup => "copy-setup".into(),
            ItemId::CopyCodexSetup => "copy-codex-setup".into(),
            ItemId::StartAtLogin => "start-at-login".into(),
            ItemId::Quit => "quit".into(),
        }
    }

    pub fn parse(id: &str) -> Option<ItemId> {
        Some(match id {
            "headline" => ItemId::Headline,
            "today" => ItemId::Today,
            "start-stop" => ItemId::StartStop,
            "open-dashboard" => ItemId::OpenDashboard,
            "copy-setup" => ItemId::CopySetup,
            "copy-codex-setup" => ItemId::CopyCodexSetup,
            "start-at-login" => ItemId::StartAtLogin,
            "quit" => ItemId::Quit,
            other => ItemId::Account(other.strip_prefix("account-")?.parse().ok()?),
        })
    }
}

/// How the tray icon looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Stopped,
    Running,
    /// Running, with an account that cannot serve until someone acts or time passes.
    Attention,
}

/// One line of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: ItemId,
    pub label: String,
    pub enabled: bool,
    /// `Some` for a check item: whether it is checked.
    pub checked: Option<bool>,
    /// A separator comes before this item.
    pub separated: bool,
}

/// The whole menu and the icon's look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub look: Look,
    /// The icon's tooltip (where the platform shows one).
    pub tooltip: String,
    pub items: Vec<Item>,
}

/// What the relay is doing, as the menu shows it.
#[derive(Debug, Clone)]
pub enum Relay<'a> {
    Stopped,
    /// Starting or stopping: Start/Stop is greyed out meanwhile.
    Busy(&'a str),
    Running {
        /// `http://127.0.0.1:8787`.
        address: &'a str,
        status: &'a PoolStatus,
        /// Today's cost in millionths of a dollar; `None` while not known yet.
        today_micros: Option<i64>,
        /// Whether the config has an OpenAI account, whose clients (Codex) need a setup.
        openai: bool,
    },
}

impl Menu {
    /// The menu for `relay`, with "Start at login" checked or not.
    pub fn build(relay: &Relay<'_>, start_at_login: bool) -> Menu {
        let mut items = Vec::new();
        let item = |id, label: String, enabled| Item {
            id,
            label,
            enabled,
            checked: None,
            separated: false,
        };
        let (look, headline, running, busy) = match relay {
            Relay::Stopped => (Look::Stopped, "Carpool is stopped".to_owned(), false, false),
            Relay::Busy(what) => (Look::Stopped, format!("Carpool is {what}…"), false, true),
            Relay::Running {
                address, status, ..
            } => {
                let look = if status.accounts.iter().any(|a| needs_attention(&a.state)) {
                    Look::Attention
                } else {
                    Look::Running
                };
                (
                    look,
                    format!("Carpool is running on {address}"),
                    true,
                    false,
                )
            }
        };
        items.push(item(ItemId::Headline, headline.clone(), false));
        let mut tooltip = headline;
        if let Relay::Running {
            status,
            today_micros,
            ..
        } = relay
        {
            if status.accounts.is_empty() {
                items.push(item(
                    ItemId::Account(0),
                    "No accounts yet: add one in the dashboard".into(),
                    false,
                ));
            }
            for (i, account) in status.accounts.iter().enumerate() {
                items.push(item(
                    ItemId::Account(i),
                    account_line(account, status.at),
                    false,
                ));
            }
            let today = match today_micros {
                Some(micros) => format!("Today: {}", dollars(*micros)),
                None => "Today: …".into(),
            };
            tooltip = format!("{tooltip}\n{today}");
            items.push(item(ItemId::Today, today, false));
        }
        let start_stop = if running { "Stop" } else { "Start" };
        items.push(Item {
            separated: true,
            ..item(ItemId::StartStop, start_stop.into(), !busy)
        });
        items.push(item(
            ItemId::OpenDashboard,
            "Open dashboard".into(),
            running,
        ));
        items.push(item(
            ItemId::CopySetup,
            "Copy Claude Code setup".into(),
            running,
        ));
        if let Relay::Running { openai: true, .. } = relay {
            items.push(item(
                ItemId::CopyCodexSetup,
                "Copy Codex setup".into(),
                true,
            ));
        }
        items.push(Item {
            separated: true,
            checked: Some(start_at_login),
            ..item(ItemId::StartAtLogin, "Start at login".into(), true)
        });
        items.push(Item {
            separated: true,
            ..item(ItemId::Quit, "Quit Carpool".into(), true)
        });
        Menu {
            look,
            tooltip,
            items,
        }
    }
}

/// Whether an account's state is one the icon should point at: it cannot serve, and
/// not by the owner's choice (disabled) or for a moment (cooling down after an error).
pub fn needs_attention(state: &AccountState) -> bool {
    !matches!(
        state,
        AccountState::Ready | AccountState::Disabled { .. } | AccountState::CoolingDown { .. }
    )
}

/// `work — 5h 42% (resets in 2 h 14 min) · week 13% (resets in 3 d 4 h)`, or what keeps
/// the account from serving.
pub fn account_line(account: &AccountStatus, now: i64) -> String {
    let tag = &account.tag;
    let state = match &account.state {
        AccountState::Ready => None,
        AccountState::PausedByReserve {
            window,
            percent,
            until,
            ..
        } => Some(format!(
            "paused by its reserve: {window} window at {percent}%{}",
            until_text(*until, now)
        )),
        AccountState::QuotaExhausted { window, until } => {
            Some(format!("{window} limit reached{}", until_text(*until, now)))
        }
        AccountState::RateLimited { until } => {
            Some(format!("rate-limited{}", until_text(Some(*until), now)))
        }
        AccountState::CoolingDown { until } => {
            Some(format!("cooling down{}", until_text(Some(*until), now)))
        }
        AccountState::CircuitOpen { until, .. } => Some(format!(
            "failing upstream, resting{}",
            until_text(Some(*until), now)
        )),
        AccountState::Disabled { .. } => Some("disabled".into()),
        AccountState::LoginExpired { .. } => Some("login expired: log in again".into()),
        AccountState::FileMissing { .. } => Some("no Claude Code login found yet".into()),
        AccountState::WaitingForOwner { .. } => Some("needs you: see the dashboard".into()),
        AccountState::Retrying { .. } => Some("cannot refresh its login, retrying".into()),
    };
    let windows = [("5h", &account.five_hour), ("week", &account.weekly)]
        .into_iter()
        .filter_map(|(name, w)| window_text(name, w, now))
        .collect::<Vec<_>>();
    match (state, windows.is_empty()) {
        (Some(state), _) => format!("{tag} — {state}"),
        (None, true) => format!("{tag} — ready"),
        (None, false) => format!("{tag} — {}", windows.join(" · ")),
    }
}

fn window_text(name: &str, window: &WindowStatus, now: i64) -> Option<String> {
    let percent = window.percent?;
    Some(match window.resets_at {
        Some(at) if at > now => format!("{name} {percent}% (resets in {})", Span(at - now)),
        _ => format!("{name} {percent}%"),
    })
}

fn until_text(until: Option<i64>, now: i64) -> String {
    match until {
        Some(at) if at > now => format!(" for {}", Span(at - now)),
        _ => String::new(),
    }
}

/// `$1.23`; below a cent, `$0.004` (three decimals), so a first cheap request shows.
pub fn dollars(micros: i64) -> String {
    let usd = micros as f64 / 1_000_000.0;
    if micros != 0 && micros.abs() < 10_000 {
        format!("${usd:.3}")
    } else {
        format!("${usd:.2}")
    }
}

/// A length of time in seconds as a person reads a countdown: `3 d 4 h`, `2 h 14 min`,
/// `12 min`, `less than a minute`.
pub struct Span(pub i64);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.0.max(0) / 60;
        let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
        match (days, hours, minutes) {
            (0, 0, 0) => f.write_str("less than a minute"),
            (0, 0, m) => write!(f, "{m} min"),
            (0, h, 0) => write!(f, "{h} h"),
            (0, h, m) => write!(f, "{h} h {m} min"),
            (d, 0, _) => write!(f, "{d} d"),
            (d, h, _) => write!(f, "{d} d {h} h"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccountTag;
    use crate::pool::limits::WindowName;
    use crate::pool::status::{AccountKind, RecentUse};

    const NOW: i64 = 1_800_000_000;

    fn account(tag: &str, state: AccountState) -> AccountStatus {
        let window = |percent, resets_in: Option<i64>| WindowStatus {
            percent,
            resets_at: resets_in.map(|s| NOW + s),
            reserve: None,
            cap: 100,
        };
        AccountStatus {
            tag: AccountTag::new(tag),
            kind: AccountKind::OAuth,
            state,
            five_hour: window(Some(42), Some(2 * 3600 + 14 * 60 + 30)),
            weekly: window(Some(13), Some(3 * 86400 + 4 * 3600)),
            usage_updated_at: Some(NOW),
            plan_weight: 1,
            active_sessions: 0,
            last_hour: RecentUse::default(),
        }
    }

    /// Running at `x`, nothing spent today.
    fn running(status: &PoolStatus) -> Relay<'_> {
        Relay::Running {
            address: "x",
            status,
            today_micros: Some(0),
            openai: false,
        }
    }

    fn disabled() -> AccountState {
        AccountState::Disabled {
            reason: "off".into(),
            since: NOW,
        }
    }

    fn labels(menu: &Menu) -> Vec<&str> {
        menu.items.iter().map(|i| i.label.as_str()).collect()
    }

    #[test]
    fn item_ids_round_trip_and_unknown_ids_are_none() {
        for id in [
            ItemId::Headline,
            ItemId::Account(0),
            ItemId::Account(12),
            ItemId::Today,
            ItemId::StartStop,
            ItemId::OpenDashboard,
            ItemId::CopySetup,
            ItemId::CopyCodexSetup,
            ItemId::StartAtLogin,
            ItemId::Quit,
        ] {
            assert_eq!(ItemId::parse(&id.as_id()), Some(id));
        }
        assert_eq!(ItemId::parse("account-x"), None);
        assert_eq!(ItemId::parse("nothing"), None);
    }

    #[test]
    fn a_stopped_relay_offers_start_and_greys_what_needs_it_running() {
        let menu = Menu::build(&Relay::Stopped, true);
        assert_eq!(menu.look, Look::Stopped);
        assert_eq!(
            labels(&menu),
            [
                "Carpool is stopped",
                "Start",
                "Open dashboard",
                "Copy Claude Code setup",
                "Start at login",
                "Quit Carpool"
            ]
        );
        let enabled = |id: ItemId| menu.items.iter().find(|i| i.id == id).unwrap().enabled;
        assert!(enabled(ItemId::StartStop));
        assert!(!enabled(ItemId::OpenDashboard));
        assert!(!enabled(ItemId::CopySetup));
        let login = menu
            .items
            .iter()
            .find(|i| i.id == ItemId::StartAtLogin)
            .unwrap();
        assert_eq!(login.checked, Some(true));
        let busy = Menu::build(&Relay::Busy("starting"), false);
        assert_eq!(busy.items[0].label, "Carpool is starting…");
        assert!(
            !busy
                .items
                .iter()
                .find(|i| i.id == ItemId::StartStop)
                .unwrap()
                .enabled
        );
    }

    #[test]
    fn a_running_relay_shows_its_address_accounts_and_today() {
        let status = PoolStatus::new(NOW, vec![account("work", AccountState::Ready)], vec![]);
        let relay = Relay::Running {
            address: "http://127.0.0.1:8787",
            status: &status,
            today_micros: Some(1_234_567),
            openai: false,
        };
        let menu = Menu::build(&relay, false);
        assert_eq!(menu.look, Look::Running);
        assert_eq!(
            labels(&menu)[..5],
            [
                "Carpool is running on http://127.0.0.1:8787",
                "work — 5h 42% (resets in 2 h 14 min) · week 13% (resets in 3 d 4 h)",
                "Today: $1.23",
                "Stop",
                "Open dashboard",
            ]
        );
        assert!(menu.tooltip.contains("Today: $1.23"));
        let unknown = Relay::Running {
            address: "x",
            status: &status,
            today_micros: None,
            openai: false,
        };
        assert!(labels(&Menu::build(&unknown, false)).contains(&"Today: …"));
        assert!(!labels(&menu).contains(&"Copy Codex setup"));
    }

    #[test]
    fn codex_setup_is_offered_only_with_an_openai_account() {
        let status = PoolStatus::new(NOW, vec![account("work", AccountState::Ready)], vec![]);
        let relay = Relay::Running {
            address: "x",
            status: &status,
            today_micros: Some(0),
            openai: true,
        };
        let menu = Menu::build(&relay, false);
        let labels = labels(&menu);
        let claude = labels.iter().position(|l| *l == "Copy Claude Code setup");
        let codex = labels.iter().position(|l| *l == "Copy Codex setup");
        assert_eq!(codex, claude.map(|i| i + 1), "{labels:?}");
        let item = menu
            .items
            .iter()
            .find(|i| i.id == ItemId::CopyCodexSetup)
            .unwrap();
        assert!(item.enabled);
        assert!(!self::labels(&Menu::build(&Relay::Stopped, false)).contains(&"Copy Codex setup"));
    }

    #[test]
    fn an_account_that_cannot_serve_turns_the_icon_and_says_why() {
        let paused = AccountState::PausedByReserve {
            window: WindowName::FiveHour,
            percent: 81,
            cap: 80,
            until: Some(NOW + 5400),
        };
        let status = PoolStatus::new(
            NOW,
            vec![account("a", paused), account("b", disabled())],
            vec![],
        );
        let menu = Menu::build(&running(&status), false);
        assert_eq!(menu.look, Look::Attention);
        assert_eq!(
            labels(&menu)[1..4],
            [
                "a — paused by its reserve: 5h window at 81% for 1 h 30 min",
                "b — disabled",
                "Today: $0.00"
            ]
        );
        // A disabled account alone is the owner's choice: no attention.
        let status = PoolStatus::new(NOW, vec![account("b", disabled())], vec![]);
        assert_eq!(Menu::build(&running(&status), false).look, Look::Running);
        let expired = account(
            "c",
            AccountState::LoginExpired {
                reason: "refused".into(),
            },
        );
        assert_eq!(
            account_line(&expired, NOW),
            "c — login expired: log in again"
        );
    }

    #[test]
    fn no_accounts_says_where_to_add_one_and_unknown_windows_say_ready() {
        let status = PoolStatus::new(NOW, vec![], vec![]);
        assert_eq!(
            Menu::build(&running(&status), false).items[1].label,
            "No accounts yet: add one in the dashboard"
        );
        let mut key = account("key", AccountState::Ready);
        key.five_hour.percent = None;
        key.weekly.percent = None;
        assert_eq!(account_line(&key, NOW), "key — ready");
        key.five_hour.percent = Some(7);
        key.five_hour.resets_at = Some(NOW - 1);
        assert_eq!(account_line(&key, NOW), "key — 5h 7%");
    }

    #[test]
    fn spans_and_dollars_read_as_a_person_writes_them() {
        assert_eq!(Span(30).to_string(), "less than a minute");
        assert_eq!(Span(60).to_string(), "1 min");
        assert_eq!(Span(2 * 3600).to_string(), "2 h");
        assert_eq!(Span(2 * 3600 + 14 * 60 + 59).to_string(), "2 h 14 min");
        assert_eq!(Span(86400 + 59).to_string(), "1 d");
        assert_eq!(Span(3 * 86400 + 4 * 3600).to_string(), "3 d 4 h");
        assert_eq!(Span(-5).to_string(), "less than a minute");
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(dollars(4_200), "$0.004");
        assert_eq!(dollars(12_345), "$0.01");
        assert_eq!(dollars(1_234_567), "$1.23");
    }
}
