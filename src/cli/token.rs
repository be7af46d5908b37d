//! `carpool token`: a new user token, bound to an account or a pool of the config.

use std::path::PathBuf;

use anyhow::Context;

use super::UsageError;
use crate::config::edit::EditError;
use crate::config::{self, Bindings, manage};
use crate::secret::{TokenHash, generate_token};

/// Which accounts or pools a new user gets, one per provider; see
/// [`manage::choose_targets`]. A refusal is a [`UsageError`] that lists the tags to
/// choose from.
pub fn choose_targets(
    bindings: &Bindings,
    requested: &[String],
) -> Result<Vec<String>, UsageError> {
    // The refused tag's place, to name it with its flag.
    let refused = std::cell::Cell::new(None);
    let field = |i: usize| {
        refused.set(Some(i));
        manage::credential_field(i)
    };
    manage::choose_targets(bindings, requested, &field, "--credential TAG").map_err(|e| {
        let tag = refused.get().and_then(|i| requested.get(i));
        flag_error(e, tag.map(String::as_str))
    })
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

/// The `users` entry to paste, as one line of JSON: `credential` is one tag, or a list
/// of one per provider.
pub fn users_entry(name: &str, hash: &TokenHash, credentials: &[String]) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let credential = match credentials {
        [one] => quote(one),
        _ => format!(
            "[{}]",
            credentials
                .iter()
                .map(|t| quote(t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{{ \"name\": {}, \"token_hash\": {}, \"credential\": {credential} }}",
        quote(name),
        quote(&hash.to_config_string()),
    )
}

pub fn run(config_arg: Option<PathBuf>, name: &str, credential: &[String]) -> anyhow::Result<()> {
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
    let credentials = choose_targets(&bindings, credential)?;
    let bound = credentials
        .iter()
        .map(|tag| {
            let kind = if bindings.pools.contains(tag) {
                "pool"
            } else {
                "account"
            };
            format!("the {kind} `{tag}`")
        })
        .collect::<Vec<_>>()
        .join(" and ");
    let token = generate_token();
    println!("New token for `{name}` (shown only now; give it to them):\n\n  {token}\n");
    println!(
        "Its requests go to {bound}. Add this to \"users\" in {} (a running Carpool applies it when the file is saved):\n",
        path.display()
    );
    println!(
        "  {}",
        users_entry(name, &TokenHash::of(&token), &credentials)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Provider;

    /// Claude accounts and pools, and OpenAI ones (tags starting `gpt`).
    fn bindings(accounts: &[&str], pools: &[&str], users: &[&str]) -> Bindings {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        let provider = |t: &str| {
            if t.starts_with("gpt") {
                Provider::OpenAi
            } else {
                Provider::Anthropic
            }
        };
        Bindings {
            accounts: own(accounts),
            pools: own(pools),
            users: own(users),
            providers: accounts
                .iter()
                .chain(pools)
                .map(|t| (t.to_string(), provider(t)))
                .collect(),
        }
    }

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_only_account_is_the_default() {
        let b = bindings(&["work"], &[], &[]);
        assert_eq!(choose_targets(&b, &[]).unwrap(), ["work"]);
        assert_eq!(choose_targets(&b, &tags(&["work"])).unwrap(), ["work"]);
        // One of each provider: both, Claude's first.
        let b = bindings(&["gpt", "work"], &[], &[]);
        assert_eq!(choose_targets(&b, &[]).unwrap(), ["work", "gpt"]);
    }

    #[test]
    fn several_choices_need_credential_and_are_listed() {
        for b in [
            bindings(&["a", "b"], &[], &[]),
            bindings(&["a"], &["team"], &[]),
            bindings(&["a", "gpt1", "gpt2"], &[], &[]),
        ] {
            let err = choose_targets(&b, &[]).unwrap_err().0;
            assert!(err.contains("--credential TAG"), "{err}");
            assert!(err.contains("accounts: a"), "{err}");
        }
        let b = bindings(&["a", "b", "gpt"], &["team"], &[]);
        assert_eq!(choose_targets(&b, &tags(&["team"])).unwrap(), ["team"]);
        assert_eq!(
            choose_targets(&b, &tags(&["gpt", "b"])).unwrap(),
            ["b", "gpt"]
        );
        let err = choose_targets(&b, &tags(&["nope"])).unwrap_err().0;
        assert_eq!(
            err,
            "--credential nope: the config has no account or pool `nope` (accounts: a, b, gpt; pools: team)"
        );
        let err = choose_targets(&b, &tags(&["a", "team"])).unwrap_err().0;
        assert_eq!(
            err,
            "--credential team: `team` and `a` both serve Claude; choose one per provider"
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
        let line = users_entry("a \"quoted\" \\ name", &hash, &tags(&["team"]));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["name"], "a \"quoted\" \\ name");
        assert_eq!(v["credential"], "team");
        assert_eq!(v["token_hash"], hash.to_config_string());
        let line = users_entry("me", &hash, &tags(&["max", "codex"]));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["credential"], serde_json::json!(["max", "codex"]));
    }
}
