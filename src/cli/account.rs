//! `carpool login claude` and `carpool account add|list|remove`: the management API's
//! account operations ([`crate::api::accounts`]) on the config file, for a terminal
//! (a headless server over SSH). They write the file through the same comment-preserving
//! write path; a running `carpool serve` applies the change by watching it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::api::ApiError;
use crate::api::accounts::{self, NewSource, Target};
use crate::config::{Config, Provider as Upstream, Source};
use crate::credentials::login::{AccountOptions, Logins, Provider};
use crate::secret::Secret;
use crate::secrets::{SecretRef, SecretStore};

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Add an account from a Claude Code credentials file or an API key (read from
    /// stdin, kept in the OS keyring or Carpool's data directory, never in the config).
    Add {
        /// The new account's tag.
        #[arg(long)]
        tag: String,
        /// A Claude Code credentials file on this machine.
        #[arg(
            long,
            value_name = "PATH",
            conflicts_with = "api_key_stdin",
            required_unless_present = "api_key_stdin"
        )]
        credential_path: Option<PathBuf>,
        /// Read an API key from standard input (one line).
        #[arg(long)]
        api_key_stdin: bool,
        #[command(flatten)]
        options: Options,
    },
    /// List the accounts and where each one's secret is kept.
    List {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Remove an account (refused while users or pools use it) and its stored secret.
    Remove {
        /// The account's tag.
        tag: String,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// Settings of a new account, and the config file.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// The upstream API (default https://api.anthropic.com).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Outbound proxy for the account: http://, https://, socks5://, socks5h://.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Config file. Default: $CARPOOL_CONFIG, else <OS config dir>/carpool/config.json.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl Options {
    fn account(&self) -> AccountOptions {
        AccountOptions {
            base_url: self.base_url.clone(),
            proxy: self.proxy.clone(),
        }
    }
}

/// An API refusal as a command-line error: a wrong request exits with status 2.
fn refused(error: ApiError) -> anyhow::Error {
    if error.status.is_client_error() {
        anyhow::Error::new(super::UsageError(error.message))
    } else {
        anyhow::anyhow!("{}", error.message)
    }
}

fn load(config_arg: Option<PathBuf>) -> anyhow::Result<(PathBuf, Config, SecretStore)> {
    let path = super::config_path(config_arg)?;
    let config = Config::load(&path)?;
    let secrets = SecretStore::new(&config.data_dir, config.secret_store);
    Ok((path, config, secrets))
}

pub fn run(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Add {
            tag,
            credential_path,
            api_key_stdin,
            options,
        } => {
            let (path, _, secrets) = load(options.config.clone())?;
            let source = match (credential_path, api_key_stdin) {
                (Some(p), false) => {
                    let p = std::path::absolute(&p).unwrap_or(p);
                    NewSource::CredentialPath(p)
                }
                (None, true) => NewSource::ApiKey(Secret::new(read_line("API key")?)),
                _ => bail!(super::UsageError(
                    "give --credential-path PATH or --api-key-stdin".into()
                )),
            };
            let added = accounts::add(
                &Target::File(&path),
                &secrets,
                &tag,
                source,
                &options.account(),
            )
            .map_err(refused)?;
            let config = Config::load(&path)?;
            println!("Added account `{added}` to {}.", path.display());
            if let Some(c) = config.credentials.iter().find(|c| c.tag == *added) {
                println!("  {}", describe(&c.source, &secrets, &path));
            }
            Ok(())
        }
        AccountCommand::List { config } => {
            let (path, config, secrets) = load(config)?;
            for c in &config.credentials {
                let kind = match (&c.source, c.provider) {
                    (Source::OAuthFile { .. } | Source::OAuthStored { .. }, _) => "claude login",
                    (Source::CodexFile { .. }, _) => "codex login",
                    (Source::ApiKey(_) | Source::ApiKeyStored(_), Upstream::Anthropic) => {
                        "anthropic api key"
                    }
                    (Source::ApiKey(_) | Source::ApiKeyStored(_), Upstream::OpenAi) => {
                        "openai api key"
                    }
                };
                println!(
                    "{}\t{kind}\t{}\t{}",
                    c.tag,
                    c.base_url,
                    describe(&c.source, &secrets, &path)
                );
            }
            Ok(())
        }
        AccountCommand::Remove { tag, config } => {
            let (path, _, secrets) = load(config)?;
            accounts::remove(&Target::File(&path), &secrets, &tag).map_err(refused)?;
            println!("Removed account `{tag}` from {}.", path.display());
            Ok(())
        }
    }
}

/// Where an account's secret is kept, in words.
fn describe(source: &Source, secrets: &SecretStore, config: &Path) -> String {
    let stored = |r: &SecretRef| format!("kept in {}", r.describe(secrets));
    match source {
        Source::OAuthFile {
            path,
            keychain: None,
            ..
        } => {
            format!("Claude Code credentials file {}", path.display())
        }
        Source::OAuthFile {
            path,
            keychain: Some(item),
            ..
        } => format!(
            "Claude Code's login in {}, else its credentials file {}",
            item.describe(),
            path.display()
        ),
        Source::CodexFile { path, .. } => format!("Codex login file {}", path.display()),
        Source::OAuthStored { login, .. } => stored(login),
        Source::ApiKeyStored(reference) => stored(reference),
        Source::ApiKey(_) => format!("key written in {}", config.display()),
    }
}

/// `carpool login claude`: prints the authorize URL, reads the code from stdin and adds
/// the account.
pub async fn login(tag: Option<String>, options: Options) -> anyhow::Result<()> {
    let (path, config, secrets) = load(options.config.clone())?;
    let tags: Vec<String> = config
        .credentials
        .iter()
        .map(|c| c.tag.to_string())
        .chain(config.pools.iter().map(|p| p.tag.to_string()))
        .collect();
    let tag = match tag {
        Some(tag) if tags.contains(&tag) => bail!(super::UsageError(format!(
            "the config already has an account or pool `{tag}`; choose another --tag"
        ))),
        Some(tag) => tag,
        None => (1..)
            .map(|n| {
                if n == 1 {
                    "claude".to_owned()
                } else {
                    format!("claude-{n}")
                }
            })
            .find(|t| !tags.contains(t))
            .expect("a free tag"),
    };
    Target::File(&path)
        .check_login_account(&tag, &options.account())
        .map_err(refused)?;
    let logins = Logins::new();
    let started = logins.start(
        Provider::Claude(config.claude_login.clone()),
        &tag,
        options.account(),
    );
    println!("Open this address in a browser, log in to Claude, and paste the code it shows:");
    println!();
    println!("  {}", started.authorize_url);
    println!();
    let http = accounts::login_client(&config).map_err(refused)?;
    loop {
        let pasted = tokio::task::spawn_blocking(|| read_line("Code"))
            .await
            .context("reading the code")??;
        match logins.finish(&started.login_id, &pasted, &http).await {
            Ok(finished) => {
                let email = finished.obtained.profile.email.clone();
                let plan = finished.obtained.profile.plan.clone();
                let added = tokio::task::spawn_blocking(move || {
                    accounts::add_login(&Target::File(&path), &secrets, finished)
                        .map(|tag| (tag, path, secrets))
                })
                .await
                .context("adding the account")?
                .map_err(refused)?;
                let (added, path, secrets) = added;
                let who = match (email, plan) {
                    (Some(e), Some(p)) => format!(" ({e}, {p})"),
                    (Some(e), None) => format!(" ({e})"),
                    _ => String::new(),
                };
                println!(
                    "Logged in. Added account `{added}`{who} to {}.",
                    path.display()
                );
                if let Ok(config) = Config::load(&path)
                    && let Some(c) = config.credentials.iter().find(|c| c.tag == *added)
                {
                    println!("  Its login is {}.", describe(&c.source, &secrets, &path));
                }
                return Ok(());
            }
            Err(error) => {
                let again = logins.tag_of(&started.login_id).is_some();
                if !again {
                    bail!("{error}");
                }
                eprintln!("{error}");
                eprintln!("Paste the code again (or press Ctrl-C to stop).");
            }
        }
    }
}

/// One line from stdin, prompting on stderr when it is a terminal; an empty input is an
/// error.
fn read_line(what: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprint!("{what}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {} from standard input", what.to_lowercase()))?;
    let line = line.trim().to_owned();
    if line.is_empty() {
        bail!(super::UsageError(format!(
            "no {} on standard input",
            what.to_lowercase()
        )));
    }
    Ok(line)
}
