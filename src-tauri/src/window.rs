//! The dashboard window, in a process of its own.
//!
//! WebKitGTK keeps its network process, and much of what it loaded into the app, until
//! the process ends: Tauri keeps the web context alive on Linux on purpose, since WebKit
//! would otherwise leave a network process behind per window (tauri-apps/tauri#14626).
//! A window in the tray's own process would leave the idle tray ~60 MiB bigger for good
//! after its first opening. So the tray starts this same binary with [`FLAG`] for the
//! window: closing the window ends that process and every WebKit process with it, and
//! the tray is back to its size before the window ever opened (bench/README.md, "Desktop
//! app memory").
//!
//! The tray talks to the window process over its stdin: the first line is the address
//! to open (the one-time hand-over, so it never appears in a process list), each later
//! `focus` line brings the window to the front, and the end of stdin (the tray quit or
//! died) closes it.

use std::io::BufRead;
use std::process::{ExitCode, Stdio};
use std::sync::Mutex;

use carpool::tasks::lock;
use std::time::Duration;

use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;

/// The tray set `GDK_GL` itself (main.rs, `without_gdk_gl`): not for the window.
pub static SET_GDK_GL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The command-line flag that makes this binary the window process.
pub const FLAG: &str = "--dashboard-window";
const LABEL: &str = "dashboard";

/// Runs the window process: opens the address read from stdin, ends when the window
/// closes or stdin does.
pub fn run() -> ExitCode {
    // Its lines join the tray's stderr; the tray's log file is the tray's own.
    let _ = carpool::logging::init(None);
    let mut lines = std::io::stdin().lock().lines();
    let url = match lines.next() {
        Some(Ok(line)) => line,
        _ => {
            eprintln!("{FLAG}: no address on stdin");
            return ExitCode::from(2);
        }
    };
    let url = match url.trim().parse() {
        Ok(url) => url,
        Err(e) => {
            eprintln!("{FLAG}: the address does not parse: {e}");
            return ExitCode::from(2);
        }
    };
    let app = tauri::Builder::default()
        .setup(move |app| {
            WebviewWindowBuilder::new(app, LABEL, WebviewUrl::External(url))
                .title("Carpool")
                .inner_size(1200.0, 800.0)
                .min_inner_size(360.0, 480.0)
                .build()?;
            let handle = app.handle().clone();
            // Blocking reads of the tray's commands, off the event loop.
            std::thread::spawn(move || follow_commands(handle));
            Ok(())
        })
        .build(crate::context())
        .expect("the window process starts");
    // The window closed (the last one: the process ends), or `exit` from stdin's end.
    let code = app.run_return(|_, event: RunEvent| match event {
        RunEvent::WindowEvent {
            event: WindowEvent::CloseRequested { .. },
            ..
        } => tracing::debug!("the window is asked to close"),
        RunEvent::Exit => tracing::debug!("the window process ends"),
        _ => {}
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn follow_commands(app: AppHandle) {
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("focus") => {
                let handle = app.clone();
                let _ = app.run_on_main_thread(move || {
                    if let Some(window) = handle.get_webview_window(LABEL) {
                        let _ = window.unminimize();
                        let _ = window.show();
                        let _ = window.set_focus();
                    }
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // The tray is gone, or quit: so is the window.
    app.exit(0);
}

/// The tray's handle on a running window process.
#[derive(Default)]
pub struct Window {
    open: Mutex<Option<Open>>,
}

struct Open {
    stdin: ChildStdin,
    /// Tells the waiting task to kill the process (if closing its stdin did not end it).
    kill: oneshot::Sender<()>,
    /// Ends when the process has.
    ended: tokio::task::JoinHandle<()>,
}

impl Window {
    /// Whether a window process runs; if so it is asked to come to the front.
    pub async fn focus(&self) -> bool {
        let open = lock(&self.open).take();
        let Some(mut open) = open else {
            return false;
        };
        if open.ended.is_finished() || open.stdin.write_all(b"focus\n").await.is_err() {
            return false;
        }
        *lock(&self.open) = Some(open);
        true
    }

    /// Starts the window process on `url`.
    pub async fn open(&self, url: &str) -> std::io::Result<()> {
        let exe = std::env::current_exe()?;
        let mut command = tokio::process::Command::new(exe);
        command.arg(FLAG).stdin(Stdio::piped());
        if SET_GDK_GL.load(std::sync::atomic::Ordering::Relaxed) {
            command.env_remove("GDK_GL");
        }
        let mut child: Child = command.spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(format!("{url}\n").as_bytes()).await?;
        let (kill, killed) = oneshot::channel::<()>();
        let ended = tauri::async_runtime::spawn(async move {
            tokio::select! {
                status = child.wait() => tracing::debug!(?status, "the dashboard window closed"),
                _ = killed => {
                    let _ = child.kill().await;
                }
            }
        });
        let tauri::async_runtime::JoinHandle::Tokio(ended) = ended;
        *lock(&self.open) = Some(Open { stdin, kill, ended });
        Ok(())
    }

    /// Closes the window process (the app quits): its stdin ends, which closes it; if it
    /// has not ended within a few seconds it is killed.
    pub async fn close(&self) {
        let open = lock(&self.open).take();
        let Some(Open { stdin, kill, ended }) = open else {
            return;
        };
        drop(stdin);
        let mut ended = ended;
        if tokio::time::timeout(Duration::from_secs(5), &mut ended)
            .await
            .is_err()
        {
            let _ = kill.send(());
            let _ = ended.await;
        }
    }
}
