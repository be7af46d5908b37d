//! `carpool user …` and `carpool pool …`: the management API's users and pools from a
//! terminal (a headless server over SSH). The same operations ([`crate::config::manage`])
//! through the same write path ([`crate::config::file::edit_file`]: comment-preserving,
//! validated, atomic); a running `carpool serve` applies the change when it sees the file
//! change, within a moment.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{UsageError, config_path};
use crate::api::ClientSetup;
use crate::api::lead_provider;
use crate::api::write::listen_url;
use crate::config::edit::{ConfigDoc, EditError};
use crate::config::file::edit_file;
use crate::config::manage::{self, PoolSpec, parse_strategy, strategy_name};
use crate::config::{Config, Provider, Target};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user with a new token, written (hashed) into the config; prints the token
    /// once, with the client setup to paste.
    Add {
        /// Their name (not one the config already has).
        name: String,
        /// Tag of the account or pool their requests go to; repeat it for one of each
        /// provider (a Claude one and an OpenAI one). Needed when the config has more
        /// than one account of a provider, or a pool.
        #[arg(long, value_name = "TAG")]
        credential: Vec<String>,
        /// The address their clients use, for the printed setup (default: from the
        /// config's `listen`/`listen_port`).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// List the users: what each is bound to and how their token is stored.
    List,
    /// Give a user a new token (printed once); the old one stops working.
    Rotate {
        name: String,
        /// As for `add`.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Remove a user: their token stops working.
    Revoke { name: String },
    /// Rename a user; their token stays.
    Rename { name: String, new_name: String },
    /// Bind a user to another account or pool: their requests of its provider (Claude
    /// or OpenAI) go there from now on; their binding for the other provider stays.
    Bind {
        name: String,
        /// Tag of the account or pool.
        credential: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PoolCommand {
    /// Add a pool of accounts.
    Add {
        tag: String,
        /// least_used (default), round_robin, random or fallback.
        #[arg(long, default_value = "least_used")]
        strategy: String,
        /// An account of the pool; repeat it for each, in order.
        #[arg(long = "member", value_name = "TAG", required = true)]
        members: Vec<String>,
        /// How stale usage figures may get, like 60s (default 60s).
        #[arg(long, value_name = "DURATION")]
        poll_interval: Option<String>,
        /// How long a conversation stays on its account, like 1h (default 1h).
        #[arg(long, value_name = "DURATION")]
        session_ttl: Option<String>,
    },
    /// List the pools.
    List,
    /// Change a pool: what is given replaces what it had.
    Set {
        tag: String,
        #[arg(long)]
        strategy: Option<String>,
        /// The pool's accounts, in order (replaces its list); repeat for each.
        #[arg(long = "member", value_name = "TAG")]
        members: Vec<String>,
        #[arg(long, value_name = "DURATION")]
        poll_interval: Option<String>,
        #[arg(long, value_name = "DURATION")]
        session_ttl: Option<String>,
    },
    /// Remove a pool (refused while users are bound to it).
    Remove { tag: String },
}

/// A refusal as the command line says it: what the person got wrong exits with 2.
fn refusal(error: EditError) -> anyhow::Error {
    match error {
        EditError::Invalid { field, problem } => UsageError(format!("{field}: {problem}")).into(),
        e @ (EditError::NotFound(_) | EditError::InUse(_)) => UsageError(e.to_string()).into(),
        other => other.into(),
    }
}

/// Edits the config at `path` with `edit`; says where it was written.
fn write<T>(
    path: &Path,
    edit: impl FnOnce(&mut ConfigDoc) -> Result<T, EditError>,
) -> anyhow::Result<(T, Config)> {
    let done = edit_file(path, edit).map_err(refusal)?;
    Ok(done)
}

fn saved(path: &Path) {
    println!(
        "Saved in {}; a running `carpool serve` applies it within a moment.",
        path.display()
    );
}

/// The new token and every client setup for it, the one their bindings need first
/// first (Codex's for a user bound only to OpenAI).
fn print_token(new: &manage::NewToken, config: &Config, url: Option<String>, kind: &str) {
    let base_url = url.unwrap_or_else(|| listen_url(config.listen, config.tls.is_some()));
    println!(
        "{kind} token for `{}` (shown only now; give it to them):\n\n  {}\n",
        new.name, new.token
    );
    let lead = config
        .users
        .iter()
        .find(|u| u.name.as_str() == new.name)
        .map(|u| lead_provider(&u.targets))
        .unwrap_or(Provider::Anthropic);
    println!("{}", ClientSetup::new(&base_url, &new.token).to_text(lead));
}

pub fn user(command: UserCommand, config: Option<PathBuf>) -> anyhow::Result<()> {
    let path = config_path(config)?;
    match command {
        UserCommand::Add {
            name,
            credential,
            url,
        } => {
            let (new, config) = write(&path, |doc| {
                manage::add_user(
                    doc,
                    &name,
                    &credential,
                    &manage::credential_field,
                    "--credential TAG",
                )
            })?;
            print_token(&new, &config, url, "New");
            saved(&path);
        }
        UserCommand::List => {
            let config = Config::load(&path)?;
            if config.users.is_empty() {
                println!("No users: anyone who reaches this Carpool on loopback may use it.");
            }
            for (i, u) in config.users.iter().enumerate() {
                let bound = u
                    .targets
                    .iter()
                    .map(|t| match t {
                        Target::Account(tag) => format!("account `{tag}`"),
                        Target::Pool(tag) => format!("pool `{tag}`"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let stored = if config.clear_secrets.contains(&format!("users[{i}].token")) {
                    "token in clear"
                } else {
                    "token hashed"
                };
                println!("{}\t{bound}\t{stored}", u.name);
            }
        }
        UserCommand::Rotate { name, url } => {
            let (new, config) = write(&path, |doc| manage::rotate_user(doc, &name))?;
            print_token(&new, &config, url, "New");
            saved(&path);
        }
        UserCommand::Revoke { name } => {
            write(&path, |doc| manage::remove_user(doc, &name))?;
            println!("Removed `{name}`: their token no longer works.");
            saved(&path);
        }
        UserCommand::Rename { name, new_name } => {
            write(&path, |doc| manage::rename_user(doc, &name, &new_name))?;
            println!("`{name}` is now `{new_name}`; their token stays.");
            saved(&path);
        }
        UserCommand::Bind { name, credential } => {
            write(&path, |doc| manage::bind_user(doc, &name, &credential))?;
            println!("`{name}`'s requests now go to `{credential}`.");
            saved(&path);
        }
    }
    Ok(())
}

pub fn pool(command: PoolCommand, config: Option<PathBuf>) -> anyhow::Result<()> {
    let path = config_path(config)?;
    let strategy = |text: Option<&str>| text.map(parse_strategy).transpose().map_err(refusal);
    match command {
        PoolCommand::Add {
            tag,
            strategy: how,
            members,
            poll_interval,
            session_ttl,
        } => {
            let spec = PoolSpec {
                strategy: strategy(Some(&how))?,
                members: Some(members),
                poll_interval,
                session_ttl,
            };
            write(&path, |doc| manage::add_pool(doc, &tag, &spec))?;
            println!("Added the pool `{tag}`.");
            saved(&path);
        }
        PoolCommand::List => {
            let config = Config::load(&path)?;
            if config.pools.is_empty() {
                println!("No pools.");
            }
            for p in &config.pools {
                let members: Vec<&str> = p.members.iter().map(|m| m.as_str()).collect();
                let users: Vec<&str> = config
                    .users
                    .iter()
                    .filter(|u| {
                        u.targets
                            .iter()
                            .any(|t| matches!(t, Target::Pool(t) if *t == p.tag))
                    })
                    .map(|u| u.name.as_str())
                    .collect();
                println!(
                    "{}\t{}\taccounts: {}\tusers: {}",
                    p.tag,
                    strategy_name(p.strategy),
                    members.join(", "),
                    if users.is_empty() {
                        "none".to_owned()
                    } else {
                        users.join(", ")
                    }
                );
            }
        }
        PoolCommand::Set {
            tag,
            strategy: how,
            members,
            poll_interval,
            session_ttl,
        } => {
            let spec = PoolSpec {
                strategy: strategy(how.as_deref())?,
                members: (!members.is_empty()).then_some(members),
                poll_interval,
                session_ttl,
            };
            write(&path, |doc| manage::update_pool(doc, &tag, &spec))?;
            println!("Changed the pool `{tag}`.");
            saved(&path);
        }
        PoolCommand::Remove { tag } => {
            write(&path, |doc| manage::remove_pool(doc, &tag))?;
            println!("Removed the pool `{tag}`.");
            saved(&path);
        }
    }
    Ok(())
}
