//! Users and pools as the management API and the command line change them: each
//! operation checks the request against the config document (naming the request's field
//! when it is wrong) and makes the edit on it. Both callers run these inside the one
//! write path ([`super::file`]), which then validates the whole config, writes it and
//! applies it, so the API and `carpool user …` / `carpool pool …` cannot differ.

use std::path::Path;

use serde_json::{Value, json};

use super::edit::{ConfigDoc, EditError};
use super::{Bindings, Strategy};
use crate::secret::{TokenHash, generate_token};

impl ConfigDoc {
    /// The account and pool tags and the user names the document has now.
    pub fn bindings(&self) -> Result<Bindings, EditError> {
        Bindings::parse(&self.text(), Path::new("config")).map_err(EditError::from)
    }
}

/// `accounts: a, b; pools: p`
fn known(bindings: &Bindings) -> String {
    let mut parts = vec![format!("accounts: {}", bindings.accounts.join(", "))];
    if !bindings.pools.is_empty() {
        parts.push(format!("pools: {}", bindings.pools.join(", ")));
    }
    parts.join("; ")
}

/// A new user's name (field `name`): not empty and not taken.
pub fn check_name(bindings: &Bindings, name: &str) -> Result<(), EditError> {
    if name.trim().is_empty() {
        return Err(EditError::invalid("name", "must not be empty"));
    }
    if name.trim() != name {
        return Err(EditError::invalid(
            "name",
            "must not start or end with a space",
        ));
    }
    if bindings.users.iter().any(|u| u == name) {
        return Err(EditError::invalid(
            "name",
            format!("the config already has a user `{name}`; choose another name"),
        ));
    }
    Ok(())
}

/// Which account or pool a user gets (field `credential`): `requested` if the config
/// has it; without one, the only account of a config that has no pool. Otherwise the
/// problem lists the tags to choose from; `how` says how to choose (`--credential TAG`
/// on the command line).
pub fn choose_credential(
    bindings: &Bindings,
    requested: Option<&str>,
    how: &str,
) -> Result<String, EditError> {
    match requested {
        Some(tag)
            if bindings
                .accounts
                .iter()
                .chain(&bindings.pools)
                .any(|t| t == tag) =>
        {
            Ok(tag.to_owned())
        }
        Some(tag) => Err(EditError::invalid(
            "credential",
            format!(
                "the config has no account or pool `{tag}` ({})",
                known(bindings)
            ),
        )),
        None => match (bindings.accounts.as_slice(), bindings.pools.is_empty()) {
            ([only], true) => Ok(only.clone()),
            _ => Err(EditError::invalid(
                "credential",
                format!(
                    "choose what the new user's requests go to with {how} ({})",
                    known(bindings)
                ),
            )),
        },
    }
}

/// A user token made now; it exists only here (the config holds its hash).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    /// The account or pool the user's requests go to.
    pub credential: String,
    pub token: String,
}

/// Adds the user `name` bound to `credential` (see [`choose_credential`]) with a new
/// token, of which only the hash is written.
pub fn add_user(
    doc: &mut ConfigDoc,
    name: &str,
    credential: Option<&str>,
    how: &str,
) -> Result<NewToken, EditError> {
    let bindings = doc.bindings()?;
    check_name(&bindings, name)?;
    let credential = choose_credential(&bindings, credential, how)?;
    let token = generate_token();
    doc.users()?.append(&json!({
        "name": name,
        "token_hash": TokenHash::of(&token).to_config_string(),
        "credential": credential,
    }));
    Ok(NewToken {
        name: name.to_owned(),
        credential,
        token,
    })
}

/// Gives the user `name` a new token (its hash replaces the old token, hashed or in
/// clear): the old one is refused from the next request.
pub fn rotate_user(doc: &mut ConfigDoc, name: &str) -> Result<NewToken, EditError> {
    let entry = doc.users()?.get(name, "user")?;
    let token = generate_token();
    entry.remove("token");
    entry.set(
        "token_hash",
        &TokenHash::of(&token).to_config_string().into(),
    );
    let credential = match entry.get("credential") {
        Some(Value::String(tag)) => tag,
        _ => doc
            .bindings()?
            .accounts
            .first()
            .cloned()
            .unwrap_or_default(),
    };
    Ok(NewToken {
        name: name.to_owned(),
        credential,
        token,
    })
}

/// Removes the user `name`: their token is refused from the next request.
pub fn remove_user(doc: &mut ConfigDoc, name: &str) -> Result<(), EditError> {
    let users = doc.users()?;
    users.get(name, "user")?;
    users.remove(name);
    Ok(())
}

/// Renames the user `name` to `new_name` (field `name`); their token stays.
pub fn rename_user(doc: &mut ConfigDoc, name: &str, new_name: &str) -> Result<(), EditError> {
    let entry = doc.users()?.get(name, "user")?;
    if new_name != name {
        check_name(&doc.bindings()?, new_name)?;
        entry.set("name", &new_name.into());
    }
    Ok(())
}

/// Binds the user `name` to the account or pool `credential` (field `credential`).
pub fn bind_user(doc: &mut ConfigDoc, name: &str, credential: &str) -> Result<(), EditError> {
    let entry = doc.users()?.get(name, "user")?;
    let tag = choose_credential(&doc.bindings()?, Some(credential), "`credential`")?;
    entry.set("credential", &tag.into());
    Ok(())
}

/// What a pool is made of or changed to; `None` leaves a field as it is (for a new
/// pool: Carpool's default).
#[derive(Debug, Clone, Default)]
pub struct PoolSpec {
    pub strategy: Option<Strategy>,
    /// Account tags, in order (the order matters for `fallback`).
    pub members: Option<Vec<String>>,
    /// A duration such as `60s`.
    pub poll_interval: Option<String>,
    /// A duration such as `1h`.
    pub session_ttl: Option<String>,
}

/// The config spelling of a strategy.
pub fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::LeastUsed => "least_used",
        Strategy::RoundRobin => "round_robin",
        Strategy::Random => "random",
        Strategy::Fallback => "fallback",
    }
}

/// Reads `least_used`, `round_robin`, `random` or `fallback` (field `strategy`), as the
/// command line types it.
pub fn parse_strategy(text: &str) -> Result<Strategy, EditError> {
    match text.trim() {
        "least_used" | "least-used" => Ok(Strategy::LeastUsed),
        "round_robin" | "round-robin" => Ok(Strategy::RoundRobin),
        "random" => Ok(Strategy::Random),
        "fallback" => Ok(Strategy::Fallback),
        other => Err(EditError::invalid(
            "strategy",
            format!("unknown strategy `{other}`; use least_used, round_robin, random or fallback"),
        )),
    }
}

/// Checks `spec` against the accounts of `bindings`, naming the request's fields.
fn check_pool_spec(bindings: &Bindings, spec: &PoolSpec) -> Result<(), EditError> {
    if let Some(members) = &spec.members {
        if members.is_empty() {
            return Err(EditError::invalid(
                "members",
                "a pool needs at least one account",
            ));
        }
        for (i, tag) in members.iter().enumerate() {
            let field = format!("members[{i}]");
            if bindings.pools.contains(tag) {
                return Err(EditError::invalid(
                    field,
                    format!("`{tag}` is a pool; pools contain accounts, not other pools"),
                ));
            }
            if !bindings.accounts.contains(tag) {
                return Err(EditError::invalid(
                    field,
                    format!(
                        "unknown account `{tag}` (accounts: {})",
                        bindings.accounts.join(", ")
                    ),
                ));
            }
            if members[..i].contains(tag) {
                return Err(EditError::invalid(
                    field,
                    format!("`{tag}` is listed twice"),
                ));
            }
        }
    }
    for (field, value) in [
        ("poll_interval", &spec.poll_interval),
        ("session_ttl", &spec.session_ttl),
    ] {
        if let Some(text) = value {
            match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => {}
                Ok(_) => return Err(EditError::invalid(field, "must be longer than 0")),
                Err(e) => {
                    return Err(EditError::invalid(
                        field,
                        format!("`{text}` is not a duration like \"60s\" or \"5m\": {e}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Adds the pool `tag` (field `tag`) of `spec.members` (needed).
pub fn add_pool(doc: &mut ConfigDoc, tag: &str, spec: &PoolSpec) -> Result<(), EditError> {
    let bindings = doc.bindings()?;
    if tag.trim().is_empty() || tag.trim() != tag {
        return Err(EditError::invalid(
            "tag",
            "must not be empty or start or end with a space",
        ));
    }
    if bindings
        .accounts
        .iter()
        .chain(&bindings.pools)
        .any(|t| t == tag)
    {
        return Err(EditError::invalid(
            "tag",
            format!("the config already has an account or pool `{tag}`; choose another tag"),
        ));
    }
    if spec.members.is_none() {
        return Err(EditError::invalid(
            "members",
            "missing: a pool needs the tags of its accounts",
        ));
    }
    check_pool_spec(&bindings, spec)?;
    let strategy = spec.strategy.unwrap_or(Strategy::LeastUsed);
    let mut entry = serde_json::Map::new();
    entry.insert("tag".into(), tag.into());
    pool_fields(&mut entry, strategy, spec);
    doc.credentials()?.append(&Value::Object(entry));
    Ok(())
}

/// The fields of a pool entry after `tag`: type, strategy, members, durations.
fn pool_fields(entry: &mut serde_json::Map<String, Value>, strategy: Strategy, spec: &PoolSpec) {
    if strategy == Strategy::Fallback {
        entry.insert("type".into(), "fallback".into());
    } else {
        entry.insert("type".into(), "balancer".into());
        entry.insert("strategy".into(), strategy_name(strategy).into());
    }
    if let Some(members) = &spec.members {
        entry.insert("credentials".into(), json!(members));
    }
    if let Some(d) = &spec.poll_interval {
        entry.insert("poll_interval".into(), d.as_str().into());
    }
    if let Some(d) = &spec.session_ttl {
        entry.insert("session_ttl".into(), d.as_str().into());
    }
}

/// The pool `tag`, or why it is not one.
fn find_pool(doc: &mut ConfigDoc, tag: &str) -> Result<super::edit::Entry, EditError> {
    let bindings = doc.bindings()?;
    if bindings.accounts.iter().any(|a| a == tag) {
        return Err(EditError::NotFound(format!(
            "`{tag}` is an account, not a pool (pools: {})",
            bindings.pools.join(", ")
        )));
    }
    if !bindings.pools.iter().any(|p| p == tag) {
        return Err(EditError::NotFound(format!(
            "there is no pool `{tag}` (pools: {})",
            if bindings.pools.is_empty() {
                "none yet".to_owned()
            } else {
                bindings.pools.join(", ")
            }
        )));
    }
    doc.credentials()?.get(tag, "pool")
}

/// Changes the pool `tag`: the fields `spec` sets, in place.
pub fn update_pool(doc: &mut ConfigDoc, tag: &str, spec: &PoolSpec) -> Result<(), EditError> {
    let bindings = doc.bindings()?;
    let entry = find_pool(doc, tag)?;
    check_pool_spec(&bindings, spec)?;
    if let Some(strategy) = spec.strategy {
        if strategy == Strategy::Fallback {
            entry.set("type", &"fallback".into());
            entry.remove("strategy");
        } else {
            entry.set("type", &"balancer".into());
            entry.set("strategy", &strategy_name(strategy).into());
        }
    }
    if let Some(members) = &spec.members {
        entry.set("credentials", &json!(members));
    }
    if let Some(d) = &spec.poll_interval {
        entry.set("poll_interval", &d.as_str().into());
    }
    if let Some(d) = &spec.session_ttl {
        entry.set("session_ttl", &d.as_str().into());
    }
    Ok(())
}

/// Removes the pool `tag`, unless users are bound to it (they are named).
pub fn remove_pool(doc: &mut ConfigDoc, tag: &str) -> Result<(), EditError> {
    find_pool(doc, tag)?;
    let bound: Vec<String> = doc
        .users()?
        .entries()
        .iter()
        .filter(|u| u.get("credential").and_then(Value::as_str) == Some(tag))
        .filter_map(|u| u.get("name")?.as_str().map(str::to_owned))
        .collect();
    if !bound.is_empty() {
        return Err(EditError::InUse(format!(
            "the pool `{tag}` is still used by {} `{}`; bind {} to another account or pool first",
            if bound.len() == 1 { "user" } else { "users" },
            bound.join("`, `"),
            if bound.len() == 1 { "them" } else { "each" },
        )));
    }
    doc.credentials()?.remove(tag);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const TEXT: &str = r#"{
  // two logins and a pool
  "credentials": [
    {"tag": "a", "credential_path": "/a.json"},
    {"tag": "b", "credential_path": "/b.json"}, // b's
    {"tag": "team", "type": "balancer", "credentials": ["a", "b"]}
  ],
  "users": [
    {"name": "me", "token": "0123456789abcdef0123", "credential": "a"}
  ],
  "data_dir": "/tmp/carpool-manage-test"
}"#;

    fn doc() -> ConfigDoc {
        ConfigDoc::parse(TEXT).unwrap()
    }

    fn config(doc: &ConfigDoc) -> Config {
        Config::parse(&doc.text(), Path::new("/c.json")).unwrap()
    }

    fn field(err: EditError) -> String {
        match err {
            EditError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_user_is_added_with_only_the_hash_of_a_new_token() {
        let mut d = doc();
        let new = add_user(&mut d, "friend", Some("team"), "`credential`").unwrap();
        assert!(new.token.starts_with("cpk-"));
        let text = d.text();
        assert!(!text.contains(&new.token));
        assert!(text.contains(&TokenHash::of(&new.token).to_config_string()));
        let c = config(&d);
        assert_eq!(c.users[1].name.as_str(), "friend");
        assert_eq!(c.users[1].token_hash, TokenHash::of(&new.token));
        // Refusals name the request's field.
        assert_eq!(
            field(add_user(&mut d, "friend", Some("a"), "x").unwrap_err()),
            "name"
        );
        assert_eq!(
            field(add_user(&mut d, " ", Some("a"), "x").unwrap_err()),
            "name"
        );
        assert_eq!(
            field(add_user(&mut d, "x", Some("nope"), "x").unwrap_err()),
            "credential"
        );
        let err = add_user(&mut d, "x", None, "--credential TAG").unwrap_err();
        assert!(
            err.to_string()
                .contains("--credential TAG (accounts: a, b; pools: team)"),
            "{err}"
        );
    }

    #[test]
    fn rotate_rename_bind_and_remove() {
        let mut d = doc();
        let new = rotate_user(&mut d, "me").unwrap();
        let c = config(&d);
        assert_eq!(c.users[0].token_hash, TokenHash::of(&new.token));
        assert!(c.clear_secrets.is_empty(), "the clear token is gone");
        rename_user(&mut d, "me", "owner").unwrap();
        bind_user(&mut d, "owner", "team").unwrap();
        assert_eq!(
            field(bind_user(&mut d, "owner", "nope").unwrap_err()),
            "credential"
        );
        let c = config(&d);
        assert_eq!(c.users[0].name.as_str(), "owner");
        assert_eq!(c.users[0].token_hash, TokenHash::of(&new.token));
        assert!(matches!(
            rotate_user(&mut d, "me"),
            Err(EditError::NotFound(_))
        ));
        remove_user(&mut d, "owner").unwrap();
        assert!(config(&d).users.is_empty());
        assert!(matches!(
            remove_user(&mut d, "owner"),
            Err(EditError::NotFound(_))
        ));
        assert!(d.text().contains("// b's"));
    }

    #[test]
    fn pools_are_added_changed_and_removed_unless_in_use() {
        let mut d = doc();
        let spec = PoolSpec {
            strategy: Some(Strategy::Fallback),
            members: Some(vec!["b".into(), "a".into()]),
            poll_interval: Some("30s".into()),
            session_ttl: None,
        };
        add_pool(&mut d, "backup", &spec).unwrap();
        let c = config(&d);
        assert_eq!(c.pools[1].tag.as_str(), "backup");
        assert_eq!(c.pools[1].strategy, Strategy::Fallback);
        assert_eq!(c.pools[1].members[0].as_str(), "b");
        assert_eq!(field(add_pool(&mut d, "backup", &spec).unwrap_err()), "tag");
        assert_eq!(field(add_pool(&mut d, "a", &spec).unwrap_err()), "tag");
        let bad = |members: &[&str]| PoolSpec {
            members: Some(members.iter().map(|s| s.to_string()).collect()),
            ..PoolSpec::default()
        };
        assert_eq!(
            field(add_pool(&mut d, "p", &bad(&[])).unwrap_err()),
            "members"
        );
        assert_eq!(
            field(add_pool(&mut d, "p", &bad(&["a", "x"])).unwrap_err()),
            "members[1]"
        );
        assert_eq!(
            field(add_pool(&mut d, "p", &bad(&["team"])).unwrap_err()),
            "members[0]"
        );
        assert_eq!(
            field(add_pool(&mut d, "p", &bad(&["a", "a"])).unwrap_err()),
            "members[1]"
        );
        let slow = PoolSpec {
            session_ttl: Some("soon".into()),
            ..bad(&["a"])
        };
        assert_eq!(
            field(add_pool(&mut d, "p", &slow).unwrap_err()),
            "session_ttl"
        );

        update_pool(
            &mut d,
            "backup",
            &PoolSpec {
                strategy: Some(Strategy::RoundRobin),
                members: Some(vec!["a".into()]),
                ..PoolSpec::default()
            },
        )
        .unwrap();
        let c = config(&d);
        assert_eq!(c.pools[1].strategy, Strategy::RoundRobin);
        assert_eq!(c.pools[1].members.len(), 1);
        assert!(matches!(
            update_pool(&mut d, "a", &PoolSpec::default()),
            Err(EditError::NotFound(_))
        ));

        bind_user(&mut d, "me", "backup").unwrap();
        let err = remove_pool(&mut d, "backup").unwrap_err();
        assert!(matches!(err, EditError::InUse(_)));
        assert!(err.to_string().contains("`me`"), "{err}");
        bind_user(&mut d, "me", "a").unwrap();
        remove_pool(&mut d, "backup").unwrap();
        assert_eq!(config(&d).pools.len(), 1);
    }

    #[test]
    fn a_pool_in_a_config_of_the_implicit_account_keeps_that_account() {
        let mut d = ConfigDoc::parse("{}").unwrap();
        add_pool(
            &mut d,
            "team",
            &PoolSpec {
                members: Some(vec!["default".into()]),
                ..PoolSpec::default()
            },
        )
        .unwrap();
        let c = Config::parse(&d.text(), Path::new("/c.json")).unwrap();
        assert_eq!(c.credentials[0].tag.as_str(), "default");
        assert_eq!(c.pools[0].members[0].as_str(), "default");
    }
}
