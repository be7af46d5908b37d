//! Users and pools as the management API and the command line change them: each
//! operation checks the request against the config document (naming the request's field
//! when it is wrong) and makes the edit on it. Both callers run these inside the one
//! write path ([`super::file`]), which then validates the whole config, writes it and
//! applies it, so the API and `carpool user …` / `carpool pool …` cannot differ.

use std::path::Path;

use serde_json::{Value, json};

use super::edit::{ConfigDoc, EditError};
use super::{Bindings, Provider, Strategy};
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

/// The field of the `i`th requested tag, as the request names it: `credential` for the
/// API's single tag and the command line's flag, `credentials[1]` for the API's list.
pub type FieldOf<'a> = &'a dyn Fn(usize) -> String;

/// The request field `credential`, whatever the tag's place.
pub fn credential_field(_: usize) -> String {
    "credential".to_owned()
}

/// The request field `credentials[i]`.
pub fn credentials_field(i: usize) -> String {
    format!("credentials[{i}]")
}

/// Which account or pool a user gets (field `credential`): `requested` if the config
/// has it; without one, the only account of a config that has no pool. Otherwise the
/// problem lists the tags to choose from; `how` says how to choose (`--credential TAG`
/// on the command line). One target; see [`choose_targets`] for one per provider.
pub fn choose_credential(
    bindings: &Bindings,
    requested: Option<&str>,
    how: &str,
) -> Result<String, EditError> {
    let requested: Vec<String> = requested.map(str::to_owned).into_iter().collect();
    let mut tags = choose_targets(bindings, &requested, &credential_field, how)?;
    match tags.len() {
        1 => Ok(tags.remove(0)),
        _ => Err(EditError::invalid(
            "credential",
            format!(
                "choose what the new user's requests go to with {how} ({})",
                known(bindings)
            ),
        )),
    }
}

/// What a user's requests go to, one account or pool per provider (Claude's, OpenAI's):
/// the `requested` tags, each one the config has and no two of one provider, in provider
/// order (Claude's first). Without any, each provider's only account when that provider
/// has no pool, as the config reads a user without `credential`; a provider with several
/// accounts or a pool must be chosen (`how` says how). A refused tag names its field
/// through `field`.
pub fn choose_targets(
    bindings: &Bindings,
    requested: &[String],
    field: FieldOf<'_>,
    how: &str,
) -> Result<Vec<String>, EditError> {
    let mut chosen: Vec<(Provider, String)> = Vec::new();
    if requested.is_empty() {
        for provider in Provider::ALL {
            let accounts: Vec<&String> = bindings
                .accounts
                .iter()
                .filter(|t| bindings.providers.get(*t) == Some(&provider))
                .collect();
            let has_pool = bindings
                .pools
                .iter()
                .any(|t| bindings.providers.get(t) == Some(&provider));
            match (accounts.as_slice(), has_pool) {
                ([], false) => {}
                ([only], false) => chosen.push((provider, (*only).clone())),
                _ => {
                    return Err(EditError::invalid(
                        field(0),
                        format!(
                            "choose what the new user's {} requests go to with {how} ({})",
                            provider.label(),
                            known(bindings)
                        ),
                    ));
                }
            }
        }
        if chosen.is_empty() {
            return Err(EditError::invalid(
                field(0),
                format!(
                    "the config has no account to bind to yet; add one first, then choose it with {how}"
                ),
            ));
        }
        return Ok(chosen.into_iter().map(|(_, t)| t).collect());
    }
    for (i, tag) in requested.iter().enumerate() {
        let Some(&provider) = bindings.providers.get(tag) else {
            return Err(EditError::invalid(
                field(i),
                format!(
                    "the config has no account or pool `{tag}` ({})",
                    known(bindings)
                ),
            ));
        };
        if let Some((_, before)) = chosen.iter().find(|(p, _)| *p == provider) {
            return Err(EditError::invalid(
                field(i),
                format!(
                    "`{tag}` and `{before}` both serve {}; choose one per provider",
                    provider.label()
                ),
            ));
        }
        chosen.push((provider, tag.clone()));
    }
    chosen.sort_by_key(|(p, _)| Provider::ALL.iter().position(|q| q == p));
    Ok(chosen.into_iter().map(|(_, t)| t).collect())
}

/// A user's `credential` as the config writes it: one tag as a string, several as a
/// list (the config reads both).
fn credential_value(tags: &[String]) -> Value {
    match tags {
        [one] => one.as_str().into(),
        _ => json!(tags),
    }
}

/// The tags a user entry's `credential` names: a string or a list of strings.
fn written_tags(entry: &Value) -> Vec<String> {
    match entry.get("credential") {
        Some(Value::String(tag)) => vec![tag.clone()],
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A user token made now; it exists only here (the config holds its hash).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    /// The accounts or pools the user's requests go to, Claude's first.
    pub credentials: Vec<String>,
    pub token: String,
}

/// Adds the user `name` bound to the `requested` targets (see [`choose_targets`]) with a
/// new token, of which only the hash is written.
pub fn add_user(
    doc: &mut ConfigDoc,
    name: &str,
    requested: &[String],
    field: FieldOf<'_>,
    how: &str,
) -> Result<NewToken, EditError> {
    let bindings = doc.bindings()?;
    check_name(&bindings, name)?;
    let credentials = choose_targets(&bindings, requested, field, how)?;
    let token = generate_token();
    doc.users()?.append(&json!({
        "name": name,
        "token_hash": TokenHash::of(&token).to_config_string(),
        "credential": credential_value(&credentials),
    }));
    Ok(NewToken {
        name: name.to_owned(),
        credentials,
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
    let written = written_tags(&entry.value());
    let credentials = if written.is_empty() {
        choose_targets(&doc.bindings()?, &[], &credential_field, "`credential`").unwrap_or_default()
    } else {
        written
    };
    Ok(NewToken {
        name: name.to_owned(),
        credentials,
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

/// Binds the user `name`'s requests of one provider to the account or pool `credential`
/// (field `credential`); their binding for the other provider stays.
pub fn bind_user(doc: &mut ConfigDoc, name: &str, credential: &str) -> Result<(), EditError> {
    let bindings = doc.bindings()?;
    let entry = doc.users()?.get(name, "user")?;
    let tag = choose_credential(&bindings, Some(credential), "`credential`")?;
    let provider = bindings.providers.get(&tag).copied();
    let written = written_tags(&entry.value());
    let mut tags: Vec<String> = written
        .into_iter()
        .filter(|t| {
            bindings
                .providers
                .get(t)
                .is_some_and(|p| Some(*p) != provider)
        })
        .collect();
    tags.push(tag);
    let tags = choose_targets(&bindings, &tags, &credential_field, "`credential`")?;
    entry.set("credential", &credential_value(&tags));
    Ok(())
}

/// Binds the user `name` to exactly the `requested` targets, at most one per provider
/// (fields `credentials[i]`); a provider left out is no longer served for them.
pub fn bind_user_targets(
    doc: &mut ConfigDoc,
    name: &str,
    requested: &[String],
) -> Result<(), EditError> {
    let bindings = doc.bindings()?;
    let entry = doc.users()?.get(name, "user")?;
    if requested.is_empty() {
        return Err(EditError::invalid(
            "credentials",
            "name at least one account or pool",
        ));
    }
    let tags = choose_targets(&bindings, requested, &credentials_field, "`credentials`")?;
    entry.set("credential", &credential_value(&tags));
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
        .filter(|u| written_tags(u).iter().any(|t| t == tag))
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

    fn add(d: &mut ConfigDoc, name: &str, tags: &[&str], how: &str) -> Result<NewToken, EditError> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        add_user(d, name, &tags, &credential_field, how)
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
        let new = add(&mut d, "friend", &["team"], "`credential`").unwrap();
        assert!(new.token.starts_with("cpk-"));
        let text = d.text();
        assert!(!text.contains(&new.token));
        assert!(text.contains(&TokenHash::of(&new.token).to_config_string()));
        let c = config(&d);
        assert_eq!(c.users[1].name.as_str(), "friend");
        assert_eq!(c.users[1].token_hash, TokenHash::of(&new.token));
        // Refusals name the request's field.
        assert_eq!(
            field(add(&mut d, "friend", &["a"], "x").unwrap_err()),
            "name"
        );
        assert_eq!(field(add(&mut d, " ", &["a"], "x").unwrap_err()), "name");
        assert_eq!(
            field(add(&mut d, "x", &["nope"], "x").unwrap_err()),
            "credential"
        );
        let err = add(&mut d, "x", &[], "--credential TAG").unwrap_err();
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

    /// A Claude login, two Codex logins and a pool of those.
    const PROVIDERS: &str = r#"{
  "credentials": [
    {"tag": "max", "credential_path": "/a.json"},
    {"tag": "c1", "type": "codex", "credential_path": "/c1.json"},
    {"tag": "c2", "type": "codex", "credential_path": "/c2.json"},
    {"tag": "chatgpt", "type": "balancer", "credentials": ["c1", "c2"]}
  ],
  "users": [
    {"name": "me", "token": "0123456789abcdef0123", "credential": ["max", "chatgpt"]},
    {"name": "gpt", "token": "0123456789abcdef0124", "credential": "c1"}
  ],
  "data_dir": "/tmp/carpool-manage-test"
}"#;

    fn list(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn users_are_bound_to_one_target_per_provider() {
        let mut d = ConfigDoc::parse(PROVIDERS).unwrap();
        // Given in any order, written Claude's first as a list.
        let new = add_user(
            &mut d,
            "both",
            &list(&["c2", "max"]),
            &credentials_field,
            "x",
        )
        .unwrap();
        assert_eq!(new.credentials, ["max", "c2"]);
        let c = config(&d);
        assert_eq!(c.users[2].targets.to_string(), "max, c2");
        assert!(
            d.text().contains(r#""credential": ["max", "c2"]"#),
            "{}",
            d.text()
        );
        // One tag stays a string.
        add(&mut d, "claude", &["max"], "x").unwrap();
        assert!(d.text().contains(r#""credential": "max""#));
        // Two of one provider: the second is named.
        let err = add_user(
            &mut d,
            "x",
            &list(&["c1", "max", "chatgpt"]),
            &credentials_field,
            "x",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "credentials[2]: `chatgpt` and `c1` both serve OpenAI; choose one per provider"
        );
        assert_eq!(
            field(
                add_user(
                    &mut d,
                    "x",
                    &list(&["max", "nope"]),
                    &credentials_field,
                    "x"
                )
                .unwrap_err()
            ),
            "credentials[1]"
        );
        // Without any: OpenAI has two accounts and a pool, so it must be chosen.
        let err = add(&mut d, "x", &[], "--credential TAG").unwrap_err();
        assert!(
            err.to_string().contains("new user's OpenAI requests"),
            "{err}"
        );

        // `bind_user` replaces the binding of the tag's provider only.
        bind_user(&mut d, "me", "c2").unwrap();
        assert_eq!(config(&d).users[0].targets.to_string(), "max, c2");
        bind_user(&mut d, "gpt", "max").unwrap();
        assert_eq!(config(&d).users[1].targets.to_string(), "max, c1");
        // `bind_user_targets` sets exactly the list: OpenAI only now.
        bind_user_targets(&mut d, "me", &list(&["chatgpt"])).unwrap();
        let c = config(&d);
        assert_eq!(c.users[0].targets.anthropic, None);
        assert_eq!(c.users[0].targets.to_string(), "chatgpt");
        assert_eq!(
            field(bind_user_targets(&mut d, "me", &[]).unwrap_err()),
            "credentials"
        );
        assert_eq!(
            field(bind_user_targets(&mut d, "me", &list(&["c1", "c2"])).unwrap_err()),
            "credentials[1]"
        );
        assert!(matches!(
            bind_user_targets(&mut d, "nobody", &list(&["max"])),
            Err(EditError::NotFound(_))
        ));
        // A rotated token keeps both bindings.
        let new = rotate_user(&mut d, "gpt").unwrap();
        assert_eq!(new.credentials, ["max", "c1"]);
        // A pool named in a list is in use.
        let err = remove_pool(&mut d, "chatgpt").unwrap_err();
        assert!(err.to_string().contains("`me`"), "{err}");
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
