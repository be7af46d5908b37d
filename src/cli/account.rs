//! `carpool login claude|codex` and `carpool account add|list|remove`: the management API's
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
use crate::credentials::login::{
    AccountOptions, CODEX_CALLBACK_PATH, Finished, LOGIN_TTL, Logins, Provider,
};
use crate::secret::Secret;
use crate::secrets::{SecretRef, SecretStore};
use tokio::sync::{mpsc, watch};

use super::callback::{Callback, Page, Visit};

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
    /// The upstream API (default: the provider's, https://api.anthropic.com for Claude).
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
                    (Source::CodexFile { .. } | Source::CodexStored { .. }, _) => "codex login",
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
        Source::OAuthStored { login, .. } | Source::CodexStored { login, .. } => stored(login),
        Source::ApiKeyStored(reference) => stored(reference),
        Source::ApiKey(_) => format!("key written in {}", config.display()),
    }
}

/// How `carpool login` gets the code back.
#[derive(Debug, Clone, Copy)]
pub struct LoginWay {
    /// Codex: only read a pasted address, never listen for the redirect.
    pub paste_only: bool,
    /// Codex: the port the redirect goes to (default 1455, the one OpenAI accepts).
    pub callback_port: u16,
}

/// `carpool login claude|codex`: prints the authorize URL, gets the code back (Claude:
/// pasted on stdin; Codex: the redirect caught on 127.0.0.1:1455, or its address pasted
/// on stdin) and adds the account.
pub async fn login(
    with: super::LoginWith,
    tag: Option<String>,
    way: LoginWay,
    options: Options,
) -> anyhow::Result<()> {
    let (path, config, secrets) = load(options.config.clone())?;
    let provider = match with {
        super::LoginWith::Claude => Provider::Claude(config.claude_login.clone()),
        super::LoginWith::Codex => Provider::Codex {
            endpoints: config.codex_login.clone(),
            port: way.callback_port,
        },
    };
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
                    provider.name().to_owned()
                } else {
                    format!("{}-{n}", provider.name())
                }
            })
            .find(|t| !tags.contains(t))
            .expect("a free tag"),
    };
    Target::File(&path)
        .check_login_account(&provider, &tag, &options.account())
        .map_err(refused)?;
    let http = accounts::login_client(&config).map_err(refused)?;
    let logins = Logins::new();
    let started = logins.start(provider.clone(), &tag, options.account());
    let login = Login {
        logins: &logins,
        login_id: &started.login_id,
        http: &http,
        path,
        secrets: std::sync::Arc::new(secrets),
    };
    match provider {
        Provider::Claude(_) => {
            println!(
                "Open this address in a browser, log in to Claude, and paste the code it shows:"
            );
            println!();
            println!("  {}", started.authorize_url);
            println!();
            login.by_paste("Code", None).await
        }
        Provider::Codex { port, .. } => {
            let callback = if way.paste_only {
                None
            } else {
                match Callback::bind(port).await {
                    Ok(callback) => Some(callback),
                    Err(e) => {
                        eprintln!(
                            "Cannot listen on localhost:{port} for the login's redirect ({e}; another login running?). Paste the address instead."
                        );
                        None
                    }
                }
            };
            let redirect = provider.redirect_uri();
            println!("Open this address in a browser and log in to ChatGPT:");
            println!();
            println!("  {}", started.authorize_url);
            println!();
            match callback {
                Some(callback) => {
                    println!(
                        "Carpool waits for the browser at {redirect}. If the browser runs on another machine, the page it ends on does not load: copy that page's address (it starts with {redirect}?code=) from the address bar and paste it here."
                    );
                    login.by_callback_or_paste(callback).await
                }
                None => {
                    println!(
                        "After logging in the browser goes to a page that does not load ({redirect}?code=…): copy that page's address from the address bar and paste it here."
                    );
                    login.by_paste("Address", None).await
                }
            }
        }
    }
}

/// A started login of the command line, and where its account goes.
struct Login<'a> {
    logins: &'a Logins,
    login_id: &'a str,
    http: &'a reqwest::Client,
    path: PathBuf,
    secrets: std::sync::Arc<SecretStore>,
}

/// What `carpool login` got from the person or the browser.
enum Got {
    Pasted(anyhow::Result<String>),
    Visit(Option<Visit>),
}

impl Login<'_> {
    /// Reads pastes from stdin until one finishes the login (`visits`: also the
    /// callback's visits, until stdin ends).
    async fn by_paste(
        &self,
        what: &'static str,
        mut visits: Option<&mut mpsc::Receiver<Visit>>,
    ) -> anyhow::Result<()> {
        let mut pastes = stdin_lines(what);
        let mut stdin_open = true;
        loop {
            let got = match visits.as_deref_mut() {
                Some(visits) => tokio::select! {
                    line = pastes.recv(), if stdin_open => {
                        Got::Pasted(line.unwrap_or_else(|| Err(anyhow::anyhow!("standard input closed"))))
                    }
                    visit = visits.recv() => Got::Visit(visit),
                },
                None => Got::Pasted(
                    pastes
                        .recv()
                        .await
                        .unwrap_or_else(|| Err(anyhow::anyhow!("standard input closed"))),
                ),
            };
            let (pasted, visit) = match got {
                Got::Pasted(Ok(line)) => (line, None),
                // With a listener, the browser may still come back: stdin is not needed.
                Got::Pasted(Err(_)) if visits.is_some() => {
                    stdin_open = false;
                    continue;
                }
                Got::Pasted(Err(e)) => return Err(e),
                Got::Visit(None) => bail!("the login's callback listener stopped"),
                Got::Visit(Some(visit)) => {
                    if let Some(refusal) = provider_refusal(&visit.query) {
                        visit.answer(Page::Failed(refusal.clone()));
                        bail!("{refusal}");
                    }
                    // The redirect as the person would paste it: `parse_paste` reads
                    // the code and state from its query.
                    let address = format!("http://localhost{CODEX_CALLBACK_PATH}?{}", visit.query);
                    (address, Some(visit))
                }
            };
            match self.logins.finish(self.login_id, &pasted, self.http).await {
                Ok(finished) => {
                    let result = self.add(finished).await;
                    if let Some(visit) = visit {
                        visit.answer(match &result {
                            Ok(()) => Page::Done,
                            Err(e) => Page::Failed(format!("{e:#}")),
                        });
                    }
                    return result;
                }
                Err(error) => {
                    let again = self.logins.tag_of(self.login_id).is_some();
                    if let Some(visit) = visit {
                        visit.answer(Page::Failed(error.to_string()));
                    }
                    if !again {
                        bail!("{error}");
                    }
                    eprintln!("{error}");
                    eprintln!("Try again (or press Ctrl-C to stop).");
                }
            }
        }
    }

    /// Serves the callback while reading pastes, until either finishes the login.
    async fn by_callback_or_paste(&self, callback: Callback) -> anyhow::Result<()> {
        let (visits_tx, mut visits) = mpsc::channel(4);
        let (done_tx, done) = watch::channel(false);
        let server = callback.serve(visits_tx, done);
        let login = async {
            // Once stdin has ended only the browser can finish it: not after the login
            // expired.
            let result =
                match tokio::time::timeout(LOGIN_TTL, self.by_paste("Address", Some(&mut visits)))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => Err(anyhow::anyhow!(
                        "the login expired ({} minutes); start a new one",
                        LOGIN_TTL.as_secs() / 60
                    )),
                };
            let _ = done_tx.send(true);
            result
        };
        let ((), result) = tokio::join!(server, login);
        result
    }

    /// Adds the account a finished login obtained, and says so.
    async fn add(&self, finished: Finished) -> anyhow::Result<()> {
        let email = finished.obtained.profile.email.clone();
        let plan = finished.obtained.profile.plan.clone();
        let (path, secrets) = (self.path.clone(), self.secrets.clone());
        let added = tokio::task::spawn_blocking(move || {
            accounts::add_login(&Target::File(&path), &secrets, finished)
        })
        .await
        .context("adding the account")?
        .map_err(refused)?;
        let who = match (email, plan) {
            (Some(e), Some(p)) => format!(" ({e}, {p})"),
            (Some(e), None) => format!(" ({e})"),
            _ => String::new(),
        };
        println!(
            "Logged in. Added account `{added}`{who} to {}.",
            self.path.display()
        );
        if let Ok(config) = Config::load(&self.path)
            && let Some(c) = config.credentials.iter().find(|c| c.tag == *added)
        {
            println!(
                "  Its login is {}.",
                describe(&c.source, &self.secrets, &self.path)
            );
        }
        Ok(())
    }
}

/// The provider's refusal in a callback's query (`error`, `error_description`, as OAuth
/// redirects carry it), in words; `None` when it carries none.
fn provider_refusal(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = reqwest::Url::parse(&format!("http://localhost/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.chars().take(300).collect::<String>())
            .filter(|v| !v.is_empty())
    };
    let error = get("error")?;
    Some(match get("error_description") {
        Some(description) => {
            format!("the login was refused ({error}: {description}); start a new one")
        }
        None => format!("the login was refused ({error}); start a new one"),
    })
}

/// Lines from stdin as they come, read on their own thread (a blocking read cannot be
/// cancelled, and a runtime waits for its blocking tasks: a plain thread lets the
/// command end while stdin is still open). Each is `Err` at the end of input.
fn stdin_lines(what: &'static str) -> mpsc::Receiver<anyhow::Result<String>> {
    let (tx, rx) = mpsc::channel(1);
    let spawned = std::thread::Builder::new()
        .name("login-stdin".into())
        .spawn(move || {
            loop {
                let line = read_line(what);
                let end = line.is_err();
                if tx.blocking_send(line).is_err() || end {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read standard input: {e}");
    }
    rx
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_in_the_redirect_is_told_in_words() {
        assert_eq!(
            provider_refusal("error=access_denied&error_description=The+user+said+no&state=s")
                .as_deref(),
            Some("the login was refused (access_denied: The user said no); start a new one")
        );
        assert_eq!(
            provider_refusal("error=server_error").as_deref(),
            Some("the login was refused (server_error); start a new one")
        );
        assert_eq!(provider_refusal("code=c&state=s"), None);
        assert_eq!(provider_refusal("error="), None);
        let long = format!("error=x&error_description={}", "a".repeat(1000));
        assert!(provider_refusal(&long).unwrap().len() < 400, "capped");
    }
}
