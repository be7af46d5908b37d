//! Accounts as the management API and the command line change them: each operation
//! checks the request against the config document (naming the request's field when it
//! is wrong) and makes the edit on it. Both callers run these inside the one write path
//! ([`super::file`]), which then validates the whole config, writes it and applies it.
//!
//! Secrets are not handled here: the caller stores a pasted key or a login first and
//! passes its reference (`api_key_ref`, `login_ref`), and deletes the secret of a removed
//! account afterwards.

use serde_json::{Map, Value};

use super::edit::{ConfigDoc, EditError};

/// Whether a `credentials` entry is a pool.
fn is_pool(entry: &Value) -> bool {
    matches!(
        entry.get("type").and_then(Value::as_str),
        Some("balancer" | "fallback")
    )
}

/// The tags of the accounts (not pools) the document lists.
pub fn account_tags(doc: &mut ConfigDoc) -> Result<Vec<String>, EditError> {
    Ok(doc
        .credentials()?
        .entries()
        .iter()
        .filter(|e| !is_pool(e))
        .filter_map(|e| e.get("tag")?.as_str().map(str::to_owned))
        .collect())
}

/// A new account's tag (field `tag`): not empty, not taken by an account or a pool.
pub fn check_new_tag(doc: &mut ConfigDoc, tag: &str) -> Result<(), EditError> {
    if tag.trim().is_empty() {
        return Err(EditError::invalid("tag", "must not be empty"));
    }
    if tag.trim() != tag {
        return Err(EditError::invalid(
            "tag",
            "must not start or end with a space",
        ));
    }
    if doc.credentials()?.find(tag).is_some() {
        return Err(EditError::invalid(
            "tag",
            format!("the config already has an account or pool `{tag}`; choose another tag"),
        ));
    }
    Ok(())
}

/// Adds `entry` (an account object with its `tag`) after the last entry.
pub fn add(doc: &mut ConfigDoc, entry: Map<String, Value>) -> Result<(), EditError> {
    let tag = entry
        .get("tag")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    check_new_tag(doc, &tag)?;
    doc.credentials()?.append(&Value::Object(entry));
    Ok(())
}

/// A change of an account's settings: for each field, `None` leaves it, `Some(None)`
/// removes it (back to the default), `Some(Some(v))` sets it.
#[derive(Debug, Default, Clone)]
pub struct Patch {
    pub reserve_5h: Option<Option<u32>>,
    pub reserve_weekly: Option<Option<u32>>,
    pub proxy: Option<Option<String>>,
    pub base_url: Option<Option<String>>,
}

/// Applies `patch` to the account `tag`.
pub fn patch(doc: &mut ConfigDoc, tag: &str, patch: &Patch) -> Result<(), EditError> {
    let list = doc.credentials()?;
    let entry = list.get(tag, "account")?;
    if is_pool(&entry.value()) {
        return Err(EditError::NotFound(format!(
            "`{tag}` is a pool, not an account; pools are changed under /pools"
        )));
    }
    let set = |key: &str, value: &Option<Option<Value>>| match value {
        None => {}
        Some(None) => {
            entry.remove(key);
        }
        Some(Some(v)) => entry.set(key, v),
    };
    set("reserve_5h", &patch.reserve_5h.map(|o| o.map(Value::from)));
    set(
        "reserve_weekly",
        &patch.reserve_weekly.map(|o| o.map(Value::from)),
    );
    set("proxy", &patch.proxy.clone().map(|o| o.map(Value::from)));
    set(
        "base_url",
        &patch.base_url.clone().map(|o| o.map(Value::from)),
    );
    Ok(())
}

/// Removes the account `tag` and returns its entry as it was. Refused while a pool lists
/// it or a user is bound to it (the message names them), and for the last account.
pub fn remove(doc: &mut ConfigDoc, tag: &str) -> Result<Value, EditError> {
    let list = doc.credentials()?;
    let entry = list.get(tag, "account")?.value();
    if is_pool(&entry) {
        return Err(EditError::NotFound(format!(
            "`{tag}` is a pool, not an account; pools are removed under /pools"
        )));
    }
    let entries = list.entries();
    let pools: Vec<String> = entries
        .iter()
        .filter(|e| is_pool(e))
        .filter(|e| {
            e.get("credentials")
                .and_then(Value::as_array)
                .is_some_and(|members| members.iter().any(|m| m.as_str() == Some(tag)))
        })
        .filter_map(|e| e.get("tag")?.as_str().map(str::to_owned))
        .collect();
    // Read without `users()`, which would add an empty list to a file that has none.
    let users: Vec<String> = doc
        .get(&["users"])
        .and_then(|u| u.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|u| u.get("credential").and_then(Value::as_str) == Some(tag))
        .filter_map(|u| u.get("name")?.as_str().map(str::to_owned))
        .collect();
    if !pools.is_empty() || !users.is_empty() {
        let mut uses = Vec::new();
        if !users.is_empty() {
            uses.push(format!("users {}", quoted(&users)));
        }
        if !pools.is_empty() {
            uses.push(format!("pools {}", quoted(&pools)));
        }
        return Err(EditError::InUse(format!(
            "account `{tag}` is still used by {}; bind those users elsewhere and take it out of those pools first",
            uses.join(" and ")
        )));
    }
    if entries.iter().filter(|e| !is_pool(e)).count() == 1 {
        return Err(EditError::InUse(format!(
            "`{tag}` is the only account, and Carpool needs one; add another account first"
        )));
    }
    list.remove(tag);
    Ok(entry)
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = r#"{
  // my accounts
  "credentials": [
    {"tag": "a", "credential_path": "/x/a.json"},
    {"tag": "b", "type": "api_key", "api_key_ref": "file:b-1"}, // the key is stored
    {"tag": "p", "type": "fallback", "credentials": ["a"]}
  ],
  "users": [{"name": "u", "token_hash": "sha256:00", "credential": "b"}]
}"#;

    #[test]
    fn adding_keeps_the_comments_and_refuses_a_taken_tag() {
        let mut doc = ConfigDoc::parse(TEXT).unwrap();
        let entry = json!({"tag": "c", "type": "api_key", "api_key_ref": "file:c-2"});
        add(&mut doc, entry.as_object().unwrap().clone()).unwrap();
        let text = doc.text();
        assert!(text.contains("// my accounts") && text.contains("// the key is stored"));
        assert!(text.contains(r#""api_key_ref": "file:c-2""#), "{text}");
        for taken in ["a", "p"] {
            let entry = json!({"tag": taken});
            let error = add(&mut doc, entry.as_object().unwrap().clone()).unwrap_err();
            assert!(error.to_string().starts_with("tag: "), "{error}");
        }
        assert_eq!(account_tags(&mut doc).unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn removing_is_refused_while_users_or_pools_use_it() {
        let mut doc = ConfigDoc::parse(TEXT).unwrap();
        let error = remove(&mut doc, "a").unwrap_err();
        assert!(matches!(error, EditError::InUse(_)));
        assert!(error.to_string().contains("pools `p`"), "{error}");
        let error = remove(&mut doc, "b").unwrap_err();
        assert!(error.to_string().contains("users `u`"), "{error}");
        assert!(matches!(remove(&mut doc, "p"), Err(EditError::NotFound(_))));
        assert!(matches!(
            remove(&mut doc, "zz"),
            Err(EditError::NotFound(_))
        ));

        doc.users().unwrap().remove("u");
        let removed = remove(&mut doc, "b").unwrap();
        assert_eq!(removed["api_key_ref"], "file:b-1");
        let error = remove(&mut doc, "a").unwrap_err();
        assert!(error.to_string().contains("pools `p`"), "{error}");
    }

    #[test]
    fn a_patch_sets_and_clears_fields() {
        let mut doc = ConfigDoc::parse(TEXT).unwrap();
        let p = Patch {
            reserve_5h: Some(Some(20)),
            proxy: Some(Some("socks5://127.0.0.1:1080".into())),
            ..Patch::default()
        };
        patch(&mut doc, "a", &p).unwrap();
        let entry = doc.credentials().unwrap().get("a", "account").unwrap();
        assert_eq!(entry.get("reserve_5h"), Some(json!(20)));
        assert_eq!(entry.get("credential_path"), Some(json!("/x/a.json")));
        let clear = Patch {
            reserve_5h: Some(None),
            ..Patch::default()
        };
        patch(&mut doc, "a", &clear).unwrap();
        let entry = doc.credentials().unwrap().get("a", "account").unwrap();
        assert_eq!(entry.get("reserve_5h"), None);
        assert!(doc.text().contains("// the key is stored"));
    }
}
