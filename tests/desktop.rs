//! The desktop app's engine side (`carpool::desktop`), without Tauri: Start and Stop on
//! a config file, the menu's figures after a request, the window's one-time sign-in,
//! "Copy Claude Code setup", and what is remembered across launches. The shell itself
//! is tested under Xvfb by `scripts/desktop-test.sh`.

mod common;

use carpool::desktop::{Desktop, ItemId, Look, Menu, Notices};
use common::Setup;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION, REFERRER_POLICY, SET_COOKIE};

fn label(menu: &Menu, id: ItemId) -> &str {
    &menu.items.iter().find(|i| i.id == id).unwrap().label
}

async fn menu(desktop: &Desktop) -> Menu {
    desktop.menu(false, &mut Notices::default()).await.0
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn start_shows_the_address_and_todays_cost_and_stop_closes_the_port() {
    let setup = Setup::new().await;
    let path = setup.write_config();
    let desktop = Desktop::new(path.clone());
    assert!(!desktop.was_running());
    let stopped = menu(&desktop).await;
    assert_eq!(stopped.look, Look::Stopped);
    assert_eq!(label(&stopped, ItemId::StartStop), "Start");

    desktop.start().await.unwrap();
    let address = desktop.address().await.unwrap();
    assert!(address.starts_with("http://127.0.0.1:"), "{address}");
    let running = menu(&desktop).await;
    assert_eq!(running.look, Look::Running);
    assert_eq!(
        label(&running, ItemId::Headline),
        format!("Carpool is running on {address}")
    );
    assert_eq!(label(&running, ItemId::Today), "Today: $0.00");
    assert_eq!(label(&running, ItemId::StartStop), "Stop");

    let answer = common::ask_at(&address, false).await;
    assert_eq!(answer.status(), StatusCode::OK);
    answer.bytes().await.unwrap();
    // The request's cost reaches the menu once the ledger has it (a bounded wait: the
    // feed wakes the tray when the request ends).
    let mut today = String::new();
    for _ in 0..50 {
        today = label(&menu(&desktop).await, ItemId::Today).to_owned();
        if today != "Today: $0.00" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(today.starts_with("Today: $0.0"), "{today}");
    assert_ne!(today, "Today: $0.00");
    assert!(
        label(&menu(&desktop).await, ItemId::Account(0)).starts_with("main — "),
        "the account's line"
    );

    desktop.stop().await;
    assert!(desktop.address().await.is_none());
    let refused = common::client()
        .get(format!("{address}/v1/models"))
        .send()
        .await;
    assert!(refused.is_err(), "the port refuses once stopped");
    assert_eq!(menu(&desktop).await.look, Look::Stopped);
    // The usage is on disk, as Quit and Stop promise.
    let cost = carpool::desktop::today_cost(&setup.dir.path().join("usage.db")).unwrap();
    assert!(cost > 0, "{cost}");
}

#[tokio::test]
async fn whether_the_relay_ran_is_remembered_and_quit_keeps_it() {
    let setup = Setup::new().await;
    let path = setup.write_config();
    let desktop = Desktop::new(path.clone());
    desktop.start().await.unwrap();
    assert!(Desktop::new(path.clone()).was_running());
    // Quitting the app is not stopping the relay: the next launch starts it again.
    desktop.quit().await;
    assert!(Desktop::new(path.clone()).was_running());
    let desktop = Desktop::new(path.clone());
    desktop.start().await.unwrap();
    desktop.stop().await;
    assert!(!Desktop::new(path).was_running());
}

#[tokio::test]
async fn the_window_is_signed_in_once_by_its_ticket_and_never_again() {
    let setup = Setup::new().await;
    let desktop = Desktop::new(setup.write_config());
    assert!(
        desktop.dashboard_url().await.is_none(),
        "stopped: no window"
    );
    desktop.start().await.unwrap();
    let address = desktop.address().await.unwrap();
    let url = desktop.dashboard_url().await.unwrap();
    assert!(url.starts_with(&format!("{address}/api/v1/session/handover?ticket=")));
    let client = no_redirects();

    let handed = client.get(&url).send().await.unwrap();
    assert_eq!(handed.status(), StatusCode::SEE_OTHER);
    assert_eq!(handed.headers()[LOCATION], "/");
    assert_eq!(handed.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(handed.headers()[REFERRER_POLICY], "no-referrer");
    let set_cookie = handed.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let status = client
        .get(format!("{address}/api/v1/status"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK, "the session works");

    // The same ticket again, a made-up one, and none: refused.
    for bad in [
        url.clone(),
        format!("{address}/api/v1/session/handover?ticket=made-up"),
        format!("{address}/api/v1/session/handover"),
    ] {
        let refused = client.get(&bad).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(refused.headers().get(SET_COOKIE).is_none());
    }
    // Each opening of the window gets its own ticket.
    let second = desktop.dashboard_url().await.unwrap();
    assert_ne!(second, url);
    assert_eq!(
        client.get(&second).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    desktop.stop().await;
}

#[tokio::test]
async fn copy_setup_gives_a_working_token_for_this_machine_and_the_same_one_again() {
    let setup = Setup::new().await;
    let path = setup.write_config();
    let desktop = Desktop::new(path.clone());
    assert!(desktop.claude_code_setup().await.is_err(), "stopped");
    desktop.start().await.unwrap();
    let address = desktop.address().await.unwrap();
    let text = desktop.claude_code_setup().await.unwrap();
    assert!(
        text.starts_with(&format!("export ANTHROPIC_BASE_URL={address}\n")),
        "{text}"
    );
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("export ANTHROPIC_AUTH_TOKEN="))
        .unwrap()
        .to_owned();
    // A user `desktop` was added to the config, bound like the first user.
    let config = std::fs::read_to_string(&path).unwrap();
    assert!(config.contains("\"name\": \"desktop\""), "{config}");
    let answer = common::client()
        .post(format!("{address}/v1/messages"))
        .header("authorization", format!("Bearer {token}"))
        .header("anthropic-version", "2023-06-01")
        .json(&common::message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // Copying again, even after a restart of the app, gives the same token.
    assert_eq!(desktop.claude_code_setup().await.unwrap(), text);
    let secrets = || {
        std::fs::read_dir(setup.dir.path().join("secrets"))
            .unwrap()
            .count()
    };
    assert_eq!(secrets(), 1, "the token is kept in the secret store");
    desktop.quit().await;
    let again = Desktop::new(path.clone());
    again.start().await.unwrap();
    let address = again.address().await.unwrap();
    assert_eq!(
        again.claude_code_setup().await.unwrap(),
        format!("export ANTHROPIC_BASE_URL={address}\nexport ANTHROPIC_AUTH_TOKEN={token}\n")
    );
    // Its user removed, the next copy makes another and forgets the old token.
    let config = std::fs::read_to_string(&path).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&config).unwrap();
    value["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["name"] != "desktop");
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let mut fresh = String::new();
    for _ in 0..50 {
        // The running Carpool reads the edit within a moment.
        fresh = again.claude_code_setup().await.unwrap_or_default();
        if !fresh.contains(&token) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        fresh.starts_with(&format!(
            "export ANTHROPIC_BASE_URL={address}\nexport ANTHROPIC_AUTH_TOKEN=cpk-"
        )) && !fresh.contains(&token),
        "a new token: {fresh}"
    );
    assert_eq!(secrets(), 1, "the old token was deleted: {fresh}");
    again.stop().await;
}

#[tokio::test]
async fn a_busy_port_is_an_error_that_says_so() {
    let setup = Setup::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = setup.config.clone();
    config["listen_port"] = taken.local_addr().unwrap().port().into();
    let path = setup.config_path();
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    let desktop = Desktop::new(path);
    let error = desktop.start().await.unwrap_err().to_string();
    assert!(error.contains("cannot listen on 127.0.0.1:"), "{error}");
    assert!(error.contains("listen_port"), "{error}");
    assert!(!desktop.is_running().await);
}
