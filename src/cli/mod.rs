//! Command-line entry points: `carpool serve`, `carpool user`, `carpool pool`,
//! `carpool token`, `carpool usage`, `carpool admin` and `carpool openapi`.

mod account;
mod callback;
mod manage;
mod token;
mod usage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::api;
use crate::config::{self, Config, CreatedConfig};
use crate::credentials::{LoginFormat, LoginStore, Status};
use crate::engine::{Overrides, Server, shutdown_signal};
use crate::launch::launch;
use crate::logging::LogFile;
use crate::pool::account::Source;

#[derive(Parser, Debug)]
#[command(
    name = "carpool",
    version,
    about = "Share your Claude Code subscription with your other machines and friends"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay. Creates a documented config with a first user token if none exists.
    Serve {
        /// Config file. Default: $CARPOOL_CONFIG, else <OS config dir>/carpool/config.json.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Listen on this address instead of the config's `listen`/`listen_port`
        /// (e.g. 0.0.0.0:7676, or 127.0.0.1:0 for any free port).
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<SocketAddr>,
        /// Also write the log to this file, rotated daily: `carpool.log` writes
        /// `carpool.2026-11-05.log`, … beside it (days in UTC) and links `carpool.log`
        /// to the current one. Lines still go to stderr.
        #[arg(long, value_name = "PATH", env = "CARPOOL_LOG_FILE")]
        log_file: Option<PathBuf>,
        /// How many daily log files to keep, today's included.
        #[arg(long, value_name = "N", default_value_t = crate::logging::DEFAULT_KEEP,
            value_parser = clap::value_parser!(u64).range(1..10_000))]
        log_keep: u64,
    },
    /// Show what was used and what it cost: a table per day (or hour, month, user,
    /// model, credential, device, session), as JSON or CSV, or in sing-box ccm's layout.
    Usage(Box<usage::UsageArgs>),
    /// Users of the relay: add (prints the token once, with the client setup), list,
    /// rotate, revoke, rename, bind. Written into the config, comments kept.
    User {
        #[command(subcommand)]
        command: manage::UserCommand,
        /// Config file. Default: $CARPOOL_CONFIG, else <OS config dir>/carpool/config.json.
        #[arg(long, value_name = "PATH", global = true)]
        config: Option<PathBuf>,
    },
    /// Pools of accounts: add, list, set, remove. Written into the config, comments kept.
    Pool {
        #[command(subcommand)]
        command: manage::PoolCommand,
        /// Config file. Default: $CARPOOL_CONFIG, else <OS config dir>/carpool/config.json.
        #[arg(long, value_name = "PATH", global = true)]
        config: Option<PathBuf>,
    },
    /// The management API's admin secret.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the management API's OpenAPI document (JSON), as `carpool serve` serves it
    /// at /api/v1/openapi.json.
    Openapi,
    /// Log in to a Claude or ChatGPT (Codex) account and add it: prints the address to
    /// open. Claude: reads the code the login page shows from stdin. Codex: catches the
    /// browser's redirect on localhost:1455, or reads the address it was sent to from
    /// stdin (a browser on another machine). The tokens are kept in the OS keyring (or
    /// Carpool's data directory), never in the config.
    Login {
        /// Who to log in with.
        #[arg(value_enum)]
        provider: LoginWith,
        /// The new account's tag (default `claude` / `codex`, or `claude-2`, … when taken).
        #[arg(long)]
        tag: Option<String>,
        /// Codex: do not listen on localhost:1455; only read the pasted address.
        #[arg(long)]
        paste: bool,
        /// Codex: the port of the redirect (OpenAI accepts only 1455; for tests).
        #[arg(long, value_name = "PORT", hide = true,
            default_value_t = crate::credentials::login::CODEX_CALLBACK_PORT)]
        callback_port: u16,
        #[command(flatten)]
        options: account::Options,
    },
    /// Add, list or remove upstream accounts.
    Account {
        #[command(subcommand)]
        command: account::AccountCommand,
    },
    /// Make a new user token and print the line to add to the config's `users` yourself
    /// (the config is not changed; it need not exist yet). `carpool user add` writes it
    /// into the config for you.
    Token {
        /// Name for the new user (not one the config already has).
        #[arg(long, default_value = "friend")]
        name: String,
        /// Tag of the account or pool the user's requests go to; repeat it for one of
        /// each provider (Claude, OpenAI). Needed when the config has more than one
        /// account of a provider, or a pool.
        #[arg(long, value_name = "TAG")]
        credential: Vec<String>,
        /// Config file. Default: $CARPOOL_CONFIG, else <OS config dir>/carpool/config.json.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// Providers `carpool login` knows.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LoginWith {
    /// A Claude account (Pro, Max, Team, Enterprise).
    Claude,
    /// A ChatGPT account's Codex login (Plus, Pro, Team, …).
    Codex,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Make a new admin secret (the old one stops working at once, also for a running
    /// Carpool) and print it once.
    Reset {
        /// Config file, to find the data directory. Default: $CARPOOL_CONFIG, else
        /// <OS config dir>/carpool/config.json.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// A command used the wrong way (a missing choice, an unknown name): `carpool` exits
/// with status 2, as for a bad flag.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl Cli {
    /// The log file `carpool serve` was asked to write, if any.
    pub fn log_file(&self) -> Option<LogFile> {
        match &self.command {
            Command::Serve {
                log_file: Some(path),
                log_keep,
                ..
            } => Some(LogFile {
                path: path.clone(),
                keep: usize::try_from(*log_keep).unwrap_or(usize::MAX),
            }),
            _ => None,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, listen, .. } => serve(config, listen).await,
        Command::Usage(args) => usage::run(*args),
        Command::User { command, config } => manage::user(command, config),
        Command::Pool { command, config } => manage::pool(command, config),
        Command::Admin {
            command: AdminCommand::Reset { config },
        } => admin_reset(config),
        Command::Login {
            provider,
            tag,
            paste,
            callback_port,
            options,
        } => {
            let way = account::LoginWay {
                paste_only: paste,
                callback_port,
            };
            account::login(provider, tag, way, options).await
        }
        Command::Account { command } => account::run(command),
        Command::Openapi => {
            print!("{}", crate::dashboard::openapi_json());
            Ok(())
        }
        Command::Token {
            name,
            credential,
            config,
        } => token::run(config, &name, &credential),
    }
}

fn config_path(config_arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match config_arg {
        Some(p) => Ok(p),
        None => config::default_config_path()
            .context("cannot find the OS config directory; pass --config PATH"),
    }
}

fn admin_reset(config_arg: Option<PathBuf>) -> anyhow::Result<()> {
    let path = config_path(config_arg)?;
    let config = Config::load(&path)?;
    let secret = api::reset_admin_secret(&config.data_dir).with_context(|| {
        format!(
            "cannot write {}",
            config.data_dir.join(api::ADMIN_FILE).display()
        )
    })?;
    println!("New admin secret (shown only this once; the old one no longer works):");
    println!("  {secret}");
    Ok(())
}

async fn serve(config_arg: Option<PathBuf>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let path = config_path(config_arg)?;
    // Installed before the start, so a signal right after the banner stops gracefully.
    let stop = shutdown_signal();
    let launched = launch(&path, Overrides { listen }).await?;
    print_banner(
        &launched.server,
        &launched.config,
        &path,
        launched.created.as_ref(),
    );
    if let Some(secret) = launched.admin_secret {
        println!();
        let url = client_url(
            launched.server.local_addr(),
            launched.server.engine().serves_tls(),
        );
        println!(
            "Sign in to the dashboard ({url}/) and the management API ({url}{}) with the admin secret. It is shown only this once (`carpool admin reset` makes a new one):",
            api::PREFIX
        );
        println!("  {secret}");
    }
    launched.server.run(stop).await;
    Ok(())
}

fn print_banner(server: &Server, config: &Config, path: &Path, created: Option<&CreatedConfig>) {
    let addr = server.local_addr();
    let tls = server.engine().serves_tls();
    let url = client_url(addr, tls);
    let scheme = if tls { "https" } else { "http" };
    println!(
        "Carpool {} listening on {scheme}://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "Config: {}{}",
        path.display(),
        if created.is_some() {
            " (created now)"
        } else {
            ""
        }
    );
    for account in server.engine().state().pool.accounts() {
        match &account.source {
            Source::OAuth(credential) => {
                let status = credential.status();
                let format = credential.format();
                let hint = match (&status, credential.store(), format) {
                    (Status::Missing, LoginStore::Secret { .. }, LoginFormat::Codex) => {
                        " — log in again with `carpool login codex`"
                    }
                    (Status::Missing, LoginStore::Secret { .. }, _) => {
                        " — log in again with `carpool login claude`"
                    }
                    (Status::Missing, _, LoginFormat::Codex) => {
                        " — run `codex login` on this machine; Carpool picks it up"
                    }
                    (Status::Missing, _, _) => {
                        " — run `claude` on this machine and log in; Carpool picks it up"
                    }
                    _ => "",
                };
                println!(
                    "{} `{}`: {} ({}){hint}",
                    format.account_words(),
                    account.tag,
                    credential.store().status_words(&status),
                    credential.store()
                );
            }
            Source::ApiKey(_) => {
                println!("API-key account `{}` ({})", account.tag, account.base_url)
            }
        }
    }
    for pool in &config.pools {
        let members: Vec<&str> = pool.members.iter().map(|tag| tag.as_str()).collect();
        println!("Pool `{}`: {}", pool.tag, members.join(", "));
    }
    println!(
        "Usage history: {} (see it with `carpool usage`)",
        config.usage.database.display()
    );
    println!("Dashboard: {url}/");
    println!();
    let token_line = match created {
        Some(c) => {
            println!(
                "Created user `{}`. Its token is shown only this once; keep it:",
                c.user_name
            );
            format!("export ANTHROPIC_AUTH_TOKEN={}", c.token)
        }
        None if config.users.is_empty() => "export ANTHROPIC_AUTH_TOKEN=carpool".into(),
        None => "export ANTHROPIC_AUTH_TOKEN=<your Carpool token>".into(),
    };
    if addr.ip().is_loopback() {
        println!("To use it from this machine, run Claude Code with:");
    } else {
        println!("On another machine, run Claude Code with:");
    }
    println!("  export ANTHROPIC_BASE_URL={url}");
    println!("  {token_line}");
    if addr.ip().is_loopback() {
        println!();
        println!(
            "Carpool only accepts connections from this machine. To share it, set \"listen\": \"0.0.0.0\" in {}.",
            path.display()
        );
    }
    // The banner goes to stdout; make sure a pipe reader sees it before any request.
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// The URL other machines use: the host name for a wildcard listener, else the address;
/// `https://` when Carpool serves TLS.
fn client_url(addr: SocketAddr, tls: bool) -> String {
    api::write::listen_url(addr, tls)
}
