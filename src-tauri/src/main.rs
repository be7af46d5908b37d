//! Carpool's tray app: the relay runs in this process (`carpool::desktop`, the same
//! start `carpool serve` makes), the tray menu shows its figures, and "Open dashboard"
//! shows the engine's own dashboard in a window that the app signs in.
//!
//! This file is the shell only: it turns the engine's menu model into the platform's
//! tray menu, shows its notices as notifications, and maps clicks back to
//! [`Desktop`]'s methods. What the menu says, and when a notice is due, is decided (and
//! unit-tested) in the engine crate.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod icons;
mod window;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carpool::desktop::{Desktop, ItemId, Menu, Notice, Notices};
use carpool::tasks::lock;
use tauri::menu::{CheckMenuItem, Menu as PlatformMenu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, RunEvent, Wry};
use tauri_plugin_autostart::{MacosLauncher, ManagerExt as _};
use tauri_plugin_clipboard_manager::ClipboardExt as _;
use tauri_plugin_notification::NotificationExt as _;

/// The tray item's id.
const TRAY: &str = "carpool";
/// The menu is rebuilt at least this often (countdowns move) and whenever a request
/// finishes or the relay starts or stops.
const REFRESH: Duration = Duration::from_secs(5);

/// What the shell keeps: the engine's desktop side and the menu last shown.
struct Shell {
    desktop: Arc<Desktop>,
    shown: Mutex<Option<Menu>>,
    /// Wakes the refresher at once (after Start at login is toggled).
    refresh: tokio::sync::Notify,
    /// The dashboard window's process, while it is open.
    window: window::Window,
}

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some(window::FLAG) {
        return window::run();
    }
    without_gdk_gl();
    let Some(config_path) = carpool::config::default_config_path() else {
        eprintln!(
            "cannot find the OS config directory; set CARPOOL_CONFIG to a config file's path"
        );
        return std::process::ExitCode::from(2);
    };
    let _log = init_logging(&config_path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("carpool")
        .build()
        .expect("the async runtime starts");
    // The engine's tasks and Tauri's async work share this runtime.
    tauri::async_runtime::set(runtime.handle().clone());
    let shell = Arc::new(Shell {
        desktop: Arc::new(Desktop::new(config_path)),
        shown: Mutex::new(None),
        refresh: tokio::sync::Notify::new(),
        window: window::Window::default(),
    });

    let app = tauri::Builder::default()
        // First: a second launch hands over to this one and exits.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            tracing::info!("Carpool was launched again: showing the dashboard");
            open_dashboard(app.clone());
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            MacosLauncher::LaunchAgent,
            None,
        ))
        .plugin(tauri_plugin_clipboard_manager::init())
        .manage(shell.clone())
        .setup(move |app| {
            let handle = app.handle().clone();
            build_tray(&handle)?;
            tauri::async_runtime::spawn(refresh_forever(handle.clone()));
            if shell.desktop.was_running() {
                tauri::async_runtime::spawn(start(handle));
            }
            Ok(())
        })
        .build(context())
        .expect("the app starts");

    let code = app.run_return(|_app, event| {
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            // Only Quit ends the tray app (it exits with a code); the tray process has no
            // window whose closing could ask (window.rs), but no platform may end it
            // for one either.
            api.prevent_exit();
        }
    });
    // Quit stopped the relay before asking the app to exit; the engine's tasks end with
    // the runtime.
    runtime.shutdown_timeout(Duration::from_secs(5));
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The app's configuration, icons and capabilities, embedded at build time.
// The macro's expansion holds a `std::process::exit` of Tauri's own (for a broken
// embedded config), which clippy.toml refuses in our code.
#[allow(clippy::disallowed_methods)]
pub(crate) fn context() -> tauri::Context<Wry> {
    tauri::generate_context!("../tauri.conf.json")
}

/// Log lines to stderr and to `logs/desktop.log` beside the config file (the tray app
/// has no terminal), rotated daily, a week kept.
fn init_logging(config_path: &std::path::Path) -> Option<impl Drop + use<>> {
    let dir = config_path.parent().map(PathBuf::from).unwrap_or_default();
    let file = carpool::logging::LogFile {
        path: dir.join("logs").join("desktop.log"),
        keep: carpool::logging::DEFAULT_KEEP as usize,
    };
    match carpool::logging::init(Some(&file)) {
        Ok(guard) => guard,
        Err(e) => {
            let _ = carpool::logging::init(None);
            tracing::warn!("{e}; logging to stderr only");
            None
        }
    }
}

fn shell(app: &AppHandle) -> Arc<Shell> {
    app.state::<Arc<Shell>>().inner().clone()
}

fn build_tray(app: &AppHandle) -> tauri::Result<TrayIcon> {
    let menu = Menu::build(
        &carpool::desktop::menu::Relay::Stopped,
        autostart_enabled(app),
    );
    let tray = TrayIconBuilder::with_id(TRAY)
        .icon(icons::for_look(menu.look))
        .tooltip(&menu.tooltip)
        .menu(&platform_menu(app, &menu)?)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| on_click(app, event.id().as_ref()))
        .build(app)?;
    *lock(&shell(app).shown) = Some(menu);
    Ok(tray)
}

/// The engine's menu model as the platform's menu.
fn platform_menu(app: &AppHandle, menu: &Menu) -> tauri::Result<PlatformMenu<Wry>> {
    let platform = PlatformMenu::new(app)?;
    for item in &menu.items {
        if item.separated {
            platform.append(&PredefinedMenuItem::separator(app)?)?;
        }
        let id = item.id.as_id();
        match item.checked {
            Some(checked) => platform.append(&CheckMenuItem::with_id(
                app,
                id,
                &item.label,
                item.enabled,
                checked,
                None::<&str>,
            )?)?,
            None => platform.append(&MenuItem::with_id(
                app,
                id,
                &item.label,
                item.enabled,
                None::<&str>,
            )?)?,
        }
    }
    Ok(platform)
}

/// Shows `menu` if it differs from what the tray shows.
fn show(app: &AppHandle, menu: Menu) {
    let shell = shell(app);
    let mut shown = lock(&shell.shown);
    if shown.as_ref() == Some(&menu) {
        return;
    }
    let Some(tray) = app.tray_by_id(TRAY) else {
        return;
    };
    let look_changed = shown.as_ref().map(|m| m.look) != Some(menu.look);
    let result = (|| {
        tray.set_menu(Some(platform_menu(app, &menu)?))?;
        tray.set_tooltip(Some(&menu.tooltip))?;
        if look_changed {
            tray.set_icon(Some(icons::for_look(menu.look)))?;
        }
        tauri::Result::Ok(())
    })();
    match result {
        Ok(()) => *shown = Some(menu),
        Err(e) => tracing::warn!("cannot update the tray: {e}"),
    }
}

/// Keeps the menu current: on every change the engine signals, and every few seconds.
async fn refresh_forever(app: AppHandle) {
    let shell = shell(&app);
    let mut notices = Notices::default();
    loop {
        let (menu, found) = shell
            .desktop
            .menu(autostart_enabled(&app), &mut notices)
            .await;
        for notice in found {
            notify(&app, &notice);
        }
        show(&app, menu);
        tokio::select! {
            _ = shell.desktop.changed() => {}
            _ = shell.refresh.notified() => {}
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

fn on_click(app: &AppHandle, id: &str) {
    let Some(item) = ItemId::parse(id) else {
        tracing::warn!("a click on an unknown menu item `{id}`");
        return;
    };
    let app = app.clone();
    match item {
        ItemId::StartStop => {
            tauri::async_runtime::spawn(async move {
                if shell(&app).desktop.is_running().await {
                    show_busy(&app, "stopping");
                    shell(&app).desktop.stop().await;
                } else {
                    start(app).await;
                }
            });
        }
        ItemId::OpenDashboard => open_dashboard(app),
        ItemId::CopySetup => {
            tauri::async_runtime::spawn(async move {
                match shell(&app).desktop.claude_code_setup().await {
                    Ok(text) => match app.clipboard().write_text(text) {
                        Ok(()) => notify(
                            &app,
                            &Notice {
                                title: "Claude Code setup copied".into(),
                                body: "Paste it into the shell where you run `claude`.".into(),
                            },
                        ),
                        Err(e) => tracing::warn!("cannot write the clipboard: {e}"),
                    },
                    Err(why) => notify(
                        &app,
                        &Notice {
                            title: "No Claude Code setup to copy".into(),
                            body: why,
                        },
                    ),
                }
            });
        }
        ItemId::CopyCodexSetup => {
            tauri::async_runtime::spawn(async move {
                match shell(&app).desktop.codex_setup().await {
                    Ok(text) => match app.clipboard().write_text(text) {
                        Ok(()) => notify(
                            &app,
                            &Notice {
                                title: "Codex setup copied".into(),
                                body: "Paste it at the top of ~/.codex/config.toml, above its first [table], then run `codex`.".into(),
                            },
                        ),
                        Err(e) => tracing::warn!("cannot write the clipboard: {e}"),
                    },
                    Err(why) => notify(
                        &app,
                        &Notice {
                            title: "No Codex setup to copy".into(),
                            body: why,
                        },
                    ),
                }
            });
        }
        ItemId::StartAtLogin => {
            let autolaunch = app.autolaunch();
            let result = if autolaunch.is_enabled().unwrap_or(false) {
                autolaunch.disable()
            } else {
                autolaunch.enable()
            };
            if let Err(e) = result {
                tracing::warn!("cannot change starting at login: {e}");
            }
            shell(&app).refresh.notify_one();
        }
        ItemId::Quit => {
            tauri::async_runtime::spawn(async move {
                show_busy(&app, "quitting");
                shell(&app).window.close().await;
                // Graceful: in-flight answers finish, usage is written to disk.
                shell(&app).desktop.quit().await;
                tracing::info!("quit");
                app.exit(0);
            });
        }
        ItemId::Headline | ItemId::Account(_) | ItemId::Today => {}
    }
}

fn show_busy(app: &AppHandle, what: &str) {
    show(
        app,
        Menu::build(
            &carpool::desktop::menu::Relay::Busy(what),
            autostart_enabled(app),
        ),
    );
}

/// Starts the relay; a failure (the port taken, a broken config) is a notification.
async fn start(app: AppHandle) {
    show_busy(&app, "starting");
    if let Err(e) = shell(&app).desktop.start().await {
        tracing::error!("cannot start: {e}");
        notify(
            &app,
            &Notice {
                title: "Carpool cannot start".into(),
                body: e.to_string(),
            },
        );
        // Back to the stopped menu at once.
        shell(&app).refresh.notify_one();
    }
}

/// Shows the dashboard window, signed in by a one-time hand-over ticket, in a process
/// of its own (window.rs); a window already open is brought to the front instead.
fn open_dashboard(app: AppHandle) {
    tauri::async_runtime::spawn(async move {
        let shell = shell(&app);
        if shell.window.focus().await {
            return;
        }
        let Some(url) = shell.desktop.dashboard_url().await else {
            notify(
                &app,
                &Notice {
                    title: "Carpool is stopped".into(),
                    body: "Start it from the tray menu, then open the dashboard.".into(),
                },
            );
            return;
        };
        if let Err(e) = shell.window.open(&url).await {
            tracing::error!("cannot open the dashboard window: {e}");
        }
    });
}

/// On Linux, keeps GTK from loading the OpenGL driver in the tray process, which draws
/// only a menu: GTK 3 otherwise opens a GL context at start to choose its visuals, and
/// with it the driver (Mesa's software one alone maps ~30 MiB). `GDK_GL=disable` is
/// GTK's own switch for that; a value the user set wins, and the window process (which
/// renders a web page) gets the user's environment back (window.rs).
fn without_gdk_gl() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("GDK_GL").is_none() {
        // SAFETY: called first thing in `main`, before any thread exists, so nothing can
        // read the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("GDK_GL", "disable");
        }
        window::SET_GDK_GL.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn notify(app: &AppHandle, notice: &Notice) {
    tracing::info!(title = %notice.title, "notification: {}", notice.body);
    if let Err(e) = app
        .notification()
        .builder()
        .title(&notice.title)
        .body(&notice.body)
        .show()
    {
        tracing::warn!("cannot show a notification: {e}");
    }
}

fn autostart_enabled(app: &AppHandle) -> bool {
    app.autolaunch().is_enabled().unwrap_or(false)
}
