//! `carpool token`: a new user token, bound to an account or a pool of the config.

use std::path::PathBuf;

use anyhow::Context;

use super::UsageError;
use crate::config::edit::EditError;
use crate::config::{self, Bindings, manage};
use crate::secret::{TokenHash, generate_token};

/// Which account or pool a new user gets; see [`manage::choose_credential`]. A refusal
/// is a [`UsageError`] that lists the tags to choose from.
pub fn choose_credential(
    bindings: &Bindings,
    requested: Option<&str>,
) -> Result<String, UsageError> {
    manage::choose_credential(bindings, requested, "--credential TAG")
        .map_err(|e| flag_error(e, requested))
}

/// A new user's name: not empty and not taken ([`manage::check_name`]).
pub fn check_name(bindings: &Bindings, name: &str) -> Result<(), UsageError> {
    manage::check_name(bindings, name).map_err(|e| flag_error(e, Some(name)))
}

/// A refusal of the shared checks as the command line says it: `--name me: …`.
pub fn flag_error(error: EditError, value: Option<&str>) -> UsageError {
    match error {
        EditError::Invalid { field, problem } => UsageError(match value {
            Some(v) if !v.trim().is_empty() => format!("--{field} {v}: {problem}"),
            Some(_) => format!("--{field}: {problem}"),
            // The problem says which flag to give.
            None => problem,
        }),
        other => UsageError(other.to_string()),
    }
}

/// The `users` entry to paste, as one line of JSON.
pub fn users_entry(name: &str, hash: &TokenHash, credential: &str) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{ \"name\": {}, \"token_hash\": {}, \"credential\": {} }}",
        quote(name),
        quote(&hash.to_config_string()),
        quote(credential)
    )
}

pub fn run(
    config_arg: Option<PathBuf>,
    name: &str,
    credential: Option<&str>,
) -> anyhow::Result<()> {
    let path = match config_arg {
        Some(p) => p,
        None => config::default_config_path()
            .context("cannot find the OS config directory; pass --config PATH")?,
    };
    let bindings = if path.exists() {
        Bindings::load(&path)?
    } else {
        eprintln!(
            "note: there is no config at {} yet (`carpool serve` writes one); it will have one account, `default`",
            path.display()
        );
        Bindings::parse("{}", &path)?
    };
    check_name(&bindings, name)?;
    let credential = choose_credential(&bindings, credential)?;
    let kind = if bindings.pools.contains(&credential) {
        "pool"
    } else {
        "account"
    };
    let token = generate_token();
    println!("New token for `{name}` (shown only now; give it to them):\n\n  {token}\n");
    println!(
        "Its requests go to the {kind} `{credential}`. Add this to \"users\" in {} (a running Carpool applies it when the file is saved):\n",
        path.display()
    );
    println!(
        "  {}",
        users_entry(name, &TokenHash::of(&token), &credential)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bindings(accounts: &[&str], pools: &[&str], users: &[&str]) -> Bindings {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Bindings {
            accounts: own(accounts),
            pools: own(pools),
            users: own(users),
        }
    }

    #[test]
    fn the_only_account_is_the_default() {
        let b = bindings(&["work"], &[], &[]);
        assert_eq!(choose_credential(&b, None).unwrap(), "work");
        assert_eq!(choose_credential(&b, Some("work")).unwrap(), "work");
    }

    #[test]
    fn several_choices_need_credential_and_are_listed() {
        for b in [
            bindings(&["a", "b"], &[], &[]),
            bindings(&["a"], &["team"], &[]),
        ] {
            let err = choose_credential(&b, None).unwrap_err().0;
            assert!(err.contains("--credential TAG"), "{err}");
            assert!(err.contains("accounts: a"), "{err}");
        }
        let b = bindings(&["a", "b"], &["team"], &[]);
        assert_eq!(choose_credential(&b, Some("team")).unwrap(), "team");
        assert_eq!(choose_credential(&b, Some("b")).unwrap(), "b");
        let err = choose_credential(&b, Some("nope")).unwrap_err().0;
        assert_eq!(
            err,
            "--credential nope: the config has no account or pool `nope` (accounts: a, b; pools: team)"
        );
    }

    #[test]
    fn a_taken_or_empty_name_is_refused() {
        let b = bindings(&["a"], &[], &["me", "friend"]);
        assert!(
            check_name(&b, "friend")
                .unwrap_err()
                .0
                .contains("already has a user `friend`")
        );
        assert!(check_name(&b, " ",).is_err());
        check_name(&b, "laptop").unwrap();
    }

    #[test]
    fn the_entry_is_json_whatever_the_name() {
        let hash = TokenHash::of("0123456789abcdef0123");
        let line = users_entry("a \"quoted\" \\ name", &hash, "team");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["name"], "a \"quoted\" \\ name");
        assert_eq!(v["credential"], "team");
        assert_eq!(v["token_hash"], hash.to_config_string());
    }
}
