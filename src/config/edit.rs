//! Comment-preserving edits of the config file's text.
//!
//! A [`ConfigDoc`] is the file as a concrete syntax tree (jsonc-parser's CST): every
//! comment, blank line, indentation and key order the user wrote is kept, and an edit
//! changes only the nodes it names. Writing the document back gives the same bytes for
//! everything the edit did not touch; nothing is re-serialised. (The loudest complaint
//! about a comparable tool was that it clobbered hand-edited files.)
//!
//! The document knows nothing of what the fields mean: validation is
//! [`super::Config::parse`] on the edited text, done by [`super::file`] before anything is
//! written. The operations are what the management API and the CLI need:
//!
//! - [`ConfigDoc::set`] / [`ConfigDoc::remove`]: a property of the root object or of a
//!   nested object, by path (`["timeouts", "idle"]`); missing objects on the way are made.
//! - [`ConfigDoc::list`]: an array of objects (`users`, `credentials`), whose entries are
//!   found by a key (`name`, `tag`) to be appended, replaced, removed, or edited in place
//!   through [`Entry`].
//! - [`ConfigDoc::credentials`]: the `credentials` array, made explicit first when the
//!   file relies on the implicit single `default` account, so that adding an entry does
//!   not silently replace that account.
//!
//! The document is single-threaded (the CST is built of `Rc`s): build it, edit it and
//! turn it back into text inside one synchronous closure.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{
    CstArray, CstComment, CstInputValue, CstLeafNode, CstNode, CstObject, CstRootNode,
};
use serde_json::Value;

use super::ConfigError;

/// Why an edit of the config was not made. In every case the file is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// A field of the request, or of the config as the edit would leave it, is wrong:
    /// `field` is the request's field (`name`) or the config's (`users[2].credential`).
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The user, account or pool named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change would break something that depends on what it changes (a pool still
    /// used by users); the message names them.
    #[error("{0}")]
    InUse(String),
    /// The file changed on disk since Carpool last read or wrote it: the edit was not
    /// made, so a hand edit is never overwritten.
    #[error(
        "the config file {} changed on disk since Carpool last read it; Carpool applies the edit in a moment — try again",
        path.display()
    )]
    Conflict { path: std::path::PathBuf },
    /// This Carpool runs without a config file (embedded, or in tests): nowhere to write.
    #[error(
        "this Carpool was started without a config file, so it cannot save changes; start it with `carpool serve --config PATH`"
    )]
    NoFile,
    /// The file could not be read or written.
    #[error(transparent)]
    Io(ConfigError),
    /// The running engine refused the edited config (say, a new `listen` address that
    /// cannot be had); the file was put back as it was.
    #[error("{0}")]
    Refused(String),
}

impl EditError {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> EditError {
        EditError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<ConfigError> for EditError {
    fn from(error: ConfigError) -> Self {
        match error {
            ConfigError::Invalid { field, problem, .. } => EditError::Invalid { field, problem },
            other => EditError::Io(other),
        }
    }
}

/// The config file's text as an editable tree that keeps comments and formatting.
pub struct ConfigDoc {
    root: CstRootNode,
    /// The byte-order mark some Windows editors start the file with; put back on output.
    bom: bool,
    /// The `#` comments, held as `//` comments (see [`slash_hash_comments`]).
    hash_comments: Vec<CstComment>,
}

impl ConfigDoc {
    /// Parses config text: JSON with `//` and `/* */` comments, as [`super::Config::parse`]
    /// reads it.
    pub fn parse(text: &str) -> Result<ConfigDoc, EditError> {
        let (bom, body) = match text.strip_prefix('\u{FEFF}') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        // Only what the config's own parser accepts: comments, nothing else of JSON5.
        let options = ParseOptions {
            allow_comments: true,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        let (body, is_hash) = slash_hash_comments(body);
        let root = CstRootNode::parse(&body, &options)
            .map_err(|e| EditError::invalid("(file)", format!("not valid JSON: {e}")))?;
        if root.object_value().is_none() {
            return Err(EditError::invalid(
                "(file)",
                "the config must be a JSON object, `{ … }`",
            ));
        }
        let mut comments = Vec::new();
        for child in root.children() {
            line_comments(&child, &mut comments);
        }
        let hash_comments = comments
            .into_iter()
            .zip(is_hash)
            .filter_map(|(comment, hash)| hash.then_some(comment))
            .collect();
        Ok(ConfigDoc {
            root,
            bom,
            hash_comments,
        })
    }

    /// The document as text: the original bytes wherever nothing was edited.
    pub fn text(&self) -> String {
        // The `#` comments are written as they were, and made `//` ones again for the
        // edits that follow.
        for comment in &self.hash_comments {
            comment.set_raw_value(comment.raw_value().replacen("//", "#", 1));
        }
        let body = self.root.to_string();
        for comment in &self.hash_comments {
            comment.set_raw_value(comment.raw_value().replacen('#', "//", 1));
        }
        if self.bom {
            format!("\u{FEFF}{body}")
        } else {
            body
        }
    }

    fn root_object(&self) -> CstObject {
        self.root
            .object_value()
            .expect("checked in ConfigDoc::parse")
    }

    /// The value at `path` (property names from the root), as JSON; `None` when absent.
    pub fn get(&self, path: &[&str]) -> Option<Value> {
        let (last, parents) = path.split_last()?;
        let mut object = self.root_object();
        for key in parents {
            object = object.object_value(key)?;
        }
        object.get(last)?.value()?.to_serde_value()
    }

    /// Sets the property at `path` to `value`. An existing property is replaced in place
    /// (its comments and position stay); a new one is appended to its object. Missing
    /// objects on the way are made; a non-object in the way is an error naming it.
    pub fn set(&mut self, path: &[&str], value: &Value) -> Result<(), EditError> {
        let Some((last, parents)) = path.split_last() else {
            return Err(EditError::invalid("(file)", "an empty path names no field"));
        };
        let mut object = self.root_object();
        for (depth, key) in parents.iter().enumerate() {
            object = match object.get(key) {
                None => object.append(key, CstInputValue::Object(Vec::new())),
                Some(prop) => prop,
            }
            .object_value()
            .ok_or_else(|| {
                EditError::invalid(
                    path[..=depth].join("."),
                    "is not an object in the config file; fix it by hand first",
                )
            })?;
        }
        set_property(&object, last, value);
        Ok(())
    }

    /// Removes the property at `path` (and a comment on its line; comments above it
    /// stay). `false` when it was not there.
    pub fn remove(&mut self, path: &[&str]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut object = self.root_object();
        for key in parents {
            match object.object_value(key) {
                Some(inner) => object = inner,
                None => return false,
            }
        }
        match object.get(last) {
            Some(prop) => {
                prop.remove();
                true
            }
            None => false,
        }
    }

    /// The root array `name` whose entries are objects identified by `key` (`users` by
    /// `name`), made empty at the end of the root object if the file has none.
    pub fn list(&mut self, name: &str, key: &'static str) -> Result<List, EditError> {
        let root = self.root_object();
        let array = match root.get(name) {
            None => root.array_value_or_create(name),
            Some(prop) => prop.array_value(),
        }
        .ok_or_else(|| {
            EditError::invalid(
                name,
                "is not an array in the config file; fix it by hand first",
            )
        })?;
        Ok(List {
            array,
            name: name.to_owned(),
            key,
        })
    }

    /// `users`, by `name`.
    pub fn users(&mut self) -> Result<List, EditError> {
        self.list("users", "name")
    }

    /// `credentials` (accounts and pools), by `tag`. A file that has no accounts listed
    /// runs with one implicit account, `default` (from `credential_path` at the root, or
    /// Claude Code's own login): that account is written out first, so an entry added
    /// next to it does not replace it.
    pub fn credentials(&mut self) -> Result<List, EditError> {
        let explicit = self
            .get(&["credentials"])
            .and_then(|v| v.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false);
        let list = self.list("credentials", "tag")?;
        if !explicit {
            let mut account = serde_json::Map::new();
            account.insert("tag".into(), "default".into());
            if let Some(path) = self.get(&["credential_path"]) {
                account.insert("credential_path".into(), path);
                self.remove(&["credential_path"]);
            }
            list.append(&Value::Object(account));
        }
        Ok(list)
    }
}

/// Sets `key` of `object` to `value`, in place if it exists.
fn set_property(object: &CstObject, key: &str, value: &Value) {
    match object.get(key) {
        Some(prop) => prop.set_value(input(value)),
        None => {
            object.append(key, input(value));
        }
    }
}

/// A root array of objects, each identified by the string value of `key`.
#[derive(Debug)]
pub struct List {
    array: CstArray,
    name: String,
    key: &'static str,
}

impl List {
    /// The entries as JSON, in file order.
    pub fn entries(&self) -> Vec<Value> {
        self.array
            .elements()
            .iter()
            .filter_map(CstNode::to_serde_value)
            .collect()
    }

    /// The ids of the entries (their `key` values), in file order.
    pub fn ids(&self) -> Vec<String> {
        self.entries()
            .iter()
            .filter_map(|e| e.get(self.key)?.as_str().map(str::to_owned))
            .collect()
    }

    /// The entry whose `key` is `id`.
    pub fn find(&self, id: &str) -> Option<Entry> {
        self.array.elements().into_iter().find_map(|node| {
            let object = node.as_object()?;
            let matches = object
                .get(self.key)?
                .value()?
                .as_string_lit()?
                .decoded_value()
                .is_ok_and(|v| v == id);
            matches.then_some(Entry { object })
        })
    }

    /// [`List::find`], or a [`EditError::NotFound`] saying what `what` (`user`) is missing.
    pub fn get(&self, id: &str, what: &str) -> Result<Entry, EditError> {
        self.find(id).ok_or_else(|| {
            let ids = self.ids();
            EditError::NotFound(if ids.is_empty() {
                format!("there is no {what} `{id}`: `{}` is empty", self.name)
            } else {
                format!("there is no {what} `{id}` (there are: {})", ids.join(", "))
            })
        })
    }

    /// Appends `entry` (an object) after the last entry.
    pub fn append(&self, entry: &Value) {
        self.array.append(input(entry));
    }

    /// Replaces the entry whose `key` is `id` with `entry`, in its place. `false` when
    /// there is none.
    pub fn replace(&self, id: &str, entry: &Value) -> bool {
        match self.find(id) {
            Some(found) => {
                found.object.replace_with(input(entry));
                true
            }
            None => false,
        }
    }

    /// Removes the entry whose `key` is `id`, with a comment on its own line. Comments on
    /// the lines above it stay: they may be about more than this entry, and nothing the
    /// user wrote is dropped on a guess. `false` when there is none.
    pub fn remove(&self, id: &str) -> bool {
        match self.find(id) {
            Some(found) => {
                found.object.remove();
                true
            }
            None => false,
        }
    }
}

/// One object in a [`List`], edited in place.
#[derive(Debug)]
pub struct Entry {
    object: CstObject,
}

impl Entry {
    /// The entry as JSON.
    pub fn value(&self) -> Value {
        self.object.to_serde_value().unwrap_or(Value::Null)
    }

    /// The entry's field `key`, as JSON.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.object.get(key)?.value()?.to_serde_value()
    }

    /// Sets the field `key` (in place if it exists, else appended to the entry).
    pub fn set(&self, key: &str, value: &Value) {
        set_property(&self.object, key, value);
    }

    /// Removes the field `key`; `false` when it was not there.
    pub fn remove(&self, key: &str) -> bool {
        match self.object.get(key) {
            Some(prop) => {
                prop.remove();
                true
            }
            None => false,
        }
    }
}

/// The config's parser also takes shell-style `#` line comments, which jsonc-parser does
/// not know (it has `//` and `/* */` only, and no option for `#`). The least hand-work
/// that keeps them: each `#` is given to the parser as `//` (the rest of the line as it
/// is), and [`ConfigDoc::text`] writes those comments with their `#` again. Returns the
/// text to parse and, for every line comment in order, whether it was a `#` one.
fn slash_hash_comments(text: &str) -> (String, Vec<bool>) {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut is_hash = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    let line_end = |from: usize| {
        bytes[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |n| from + n)
    };
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'"', _) => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            (b'/', Some(b'/')) => {
                is_hash.push(false);
                i = line_end(i);
            }
            (b'#', _) => {
                is_hash.push(true);
                out.push_str(&text[copied..i]);
                out.push_str("//");
                copied = i + 1;
                i = line_end(i);
            }
            (b'/', Some(b'*')) => {
                i = bytes[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    (out, is_hash)
}

/// The line comments under `node`, in document order.
fn line_comments(node: &CstNode, out: &mut Vec<CstComment>) {
    match node {
        CstNode::Leaf(CstLeafNode::Comment(comment)) if comment.is_line_comment() => {
            out.push(comment.clone());
        }
        CstNode::Container(container) => {
            for child in container.children() {
                line_comments(&child, out);
            }
        }
        CstNode::Leaf(_) => {}
    }
}

/// JSON as the CST's input. Strings are escaped by the CST when written.
fn input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(input).collect()),
        Value::Object(fields) => {
            CstInputValue::Object(fields.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A hand-written file: comments of both kinds, odd spacing, a trailing comment on a
    /// line, keys in no particular order, tabs, CRLF nowhere but one comment.
    const HAND: &str = r#"// my carpool
/* block
   comment */
{
	"max_body_bytes":   1000 ,   // odd spacing
  "users": [
    // alice is the owner
    { "name": "alice", "token_hash": "sha256:aa", "credential": "main" }, // same line
    {"name":"bob","token_hash":"sha256:bb"}
  ],
  "timeouts": { "idle": "2m" /* inline */ },
  "headers": {},
  "listen": "127.0.0.1"
}
// trailer
"#;

    fn doc() -> ConfigDoc {
        ConfigDoc::parse(HAND).unwrap()
    }

    /// Asserts that `after` is `before` with exactly one span replaced: the common
    /// prefix and suffix are byte-identical, and what changed is `expected_middle`.
    fn only_changed(before: &str, after: &str, old: &str, new: &str) {
        let start = before.find(old).expect("the old part is in the text");
        let expected = format!(
            "{}{}{}",
            &before[..start],
            new,
            &before[start + old.len()..]
        );
        assert_eq!(after, expected);
    }

    #[test]
    fn untouched_text_comes_out_byte_identical() {
        assert_eq!(doc().text(), HAND);
        let with_bom = format!("\u{FEFF}{HAND}");
        assert_eq!(ConfigDoc::parse(&with_bom).unwrap().text(), with_bom);
    }

    #[test]
    fn setting_a_root_property_changes_only_its_value() {
        let mut d = doc();
        d.set(&["max_body_bytes"], &json!(2048)).unwrap();
        only_changed(HAND, &d.text(), "1000", "2048");
        d.set(&["listen"], &json!("0.0.0.0")).unwrap();
        let after = d.text();
        assert!(after.contains(r#""listen": "0.0.0.0""#), "{after}");
        assert!(after.contains("// odd spacing") && after.ends_with("}\n// trailer\n"));
    }

    #[test]
    fn setting_a_nested_property_keeps_the_inline_comment() {
        let mut d = doc();
        d.set(&["timeouts", "idle"], &json!("5m")).unwrap();
        only_changed(HAND, &d.text(), r#""idle": "2m""#, r#""idle": "5m""#);
    }

    #[test]
    fn a_missing_property_and_missing_objects_are_added() {
        let mut d = doc();
        d.set(&["connections", "max"], &json!(10)).unwrap();
        d.set(&["headers", "x-team"], &json!("blue")).unwrap();
        let text = d.text();
        let value: Value = serde_json::from_str(&strip(&text)).unwrap();
        assert_eq!(value["connections"]["max"], 10);
        assert_eq!(value["headers"]["x-team"], "blue");
        // Everything before the first touched object is as it was.
        let untouched = &HAND[..HAND.find(r#""headers""#).unwrap()];
        assert!(text.starts_with(untouched), "{text}");
        assert!(text.ends_with("}\n// trailer\n"), "{text}");
    }

    #[test]
    fn a_non_object_in_the_way_is_named() {
        let mut d = doc();
        let err = d.set(&["listen", "x"], &json!(1)).unwrap_err();
        assert!(err.to_string().starts_with("listen: "), "{err}");
        assert_eq!(d.text(), HAND);
    }

    #[test]
    fn removing_a_property_leaves_the_rest() {
        let mut d = doc();
        assert!(d.remove(&["listen"]));
        assert!(!d.remove(&["listen"]));
        assert!(!d.remove(&["nope", "deeper"]));
        let text = d.text();
        assert!(!text.contains("listen"), "{text}");
        let cut = HAND.find(r#""headers": {}"#).unwrap();
        assert!(text.starts_with(&HAND[..cut]), "{text}");
        serde_json::from_str::<Value>(&strip(&text)).unwrap();
    }

    #[test]
    fn entries_are_found_by_key_and_edited_in_place() {
        let mut d = doc();
        let users = d.users().unwrap();
        assert_eq!(users.ids(), ["alice", "bob"]);
        let alice = users.get("alice", "user").unwrap();
        assert_eq!(alice.get("credential"), Some(json!("main")));
        alice.set("credential", &json!("team"));
        only_changed(
            HAND,
            &d.text(),
            r#""credential": "main" }"#,
            r#""credential": "team" }"#,
        );
        let err = d.users().unwrap().get("carol", "user").unwrap_err();
        assert_eq!(
            err.to_string(),
            "there is no user `carol` (there are: alice, bob)"
        );
    }

    #[test]
    fn appending_removing_and_replacing_entries() {
        let mut d = doc();
        let users = d.users().unwrap();
        users.append(&json!({"name": "carol", "token_hash": "sha256:cc"}));
        assert_eq!(users.ids(), ["alice", "bob", "carol"]);
        let text = d.text();
        // alice's line and her comments are untouched.
        assert!(text.contains(
            "    // alice is the owner\n    { \"name\": \"alice\", \"token_hash\": \"sha256:aa\", \"credential\": \"main\" }, // same line\n"
        ), "{text}");
        let users = d.users().unwrap();
        assert!(users.replace("bob", &json!({"name": "robert", "token_hash": "sha256:bb"})));
        assert!(users.remove("carol"));
        assert!(!users.remove("carol"));
        assert_eq!(users.ids(), ["alice", "robert"]);
        let users = d.users().unwrap();
        assert!(users.remove("alice"));
        let text = d.text();
        // Her entry and the comment on its line are gone; the one above stays.
        assert!(
            !text.contains("\"alice\"") && !text.contains("same line"),
            "{text}"
        );
        assert!(text.contains("// alice is the owner"), "{text}");
        assert!(text.starts_with("// my carpool\n/* block\n   comment */\n{\n\t\"max_body_bytes\":   1000 ,   // odd spacing\n"), "{text}");
        assert!(text.contains(r#""timeouts": { "idle": "2m" /* inline */ },"#));
        let value: Value = serde_json::from_str(&strip(&text)).unwrap();
        assert_eq!(
            value["users"],
            json!([{"name": "robert", "token_hash": "sha256:bb"}])
        );
    }

    #[test]
    fn a_missing_array_is_made() {
        let mut d =
            ConfigDoc::parse("{\n  // only a comment\n  \"listen\": \"127.0.0.1\"\n}\n").unwrap();
        d.users()
            .unwrap()
            .append(&json!({"name": "me", "token_hash": "sha256:00"}));
        let text = d.text();
        assert!(
            text.starts_with("{\n  // only a comment\n  \"listen\": \"127.0.0.1\",\n"),
            "{text}"
        );
        let value: Value = serde_json::from_str(&strip(&text)).unwrap();
        assert_eq!(value["users"][0]["name"], "me");
        let err = ConfigDoc::parse("{\"users\": {}}")
            .unwrap()
            .users()
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("users: is not an array"),
            "{err}"
        );
    }

    #[test]
    fn the_implicit_account_is_written_out_before_another_entry() {
        let mut d = ConfigDoc::parse("{\n  \"credential_path\": \"/c.json\" // mine\n}").unwrap();
        let credentials = d.credentials().unwrap();
        credentials.append(&json!({"tag": "team", "type": "balancer", "credentials": ["default"]}));
        let value: Value = serde_json::from_str(&strip(&d.text())).unwrap();
        assert_eq!(value.get("credential_path"), None);
        assert_eq!(
            value["credentials"],
            json!([
                {"tag": "default", "credential_path": "/c.json"},
                {"tag": "team", "type": "balancer", "credentials": ["default"]}
            ])
        );
        // Explicit accounts are left alone.
        let mut d = ConfigDoc::parse(r#"{"credentials": [{"tag": "a"}]}"#).unwrap();
        assert_eq!(d.credentials().unwrap().ids(), ["a"]);
    }

    #[test]
    fn shell_style_comments_are_kept_as_they_are() {
        let text = "# top\n{\n  # about listen\n  \"listen\": \"127.0.0.1\", # after\n  \"headers\": {\"x-a\": \"a # b // c\"} // slashes # hash\n  /* block # */\n}\n";
        let mut d = ConfigDoc::parse(text).unwrap();
        assert_eq!(d.text(), text);
        d.set(&["listen"], &json!("0.0.0.0")).unwrap();
        d.set(&["max_body_bytes"], &json!(5)).unwrap();
        let after = d.text();
        assert_eq!(
            after,
            text.replace("127.0.0.1", "0.0.0.0").replace(
                "} // slashes # hash\n",
                "}, // slashes # hash\n  \"max_body_bytes\": 5\n"
            )
        );
        assert_eq!(d.text(), after, "text() leaves the document as it was");
    }

    #[test]
    fn what_the_config_parser_refuses_is_refused_here_too() {
        for text in ["{\"a\": 1,}", "{a: 1}", "[]", "{\"a\": 'x'}", ""] {
            assert!(ConfigDoc::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut d = ConfigDoc::parse("{}").unwrap();
        d.set(&["headers", "x-quote"], &json!("a \"b\" \\ c\n"))
            .unwrap();
        let value: Value = serde_json::from_str(&d.text()).unwrap();
        assert_eq!(value["headers"]["x-quote"], "a \"b\" \\ c\n");
    }

    /// The text without comments, for serde_json.
    fn strip(text: &str) -> String {
        super::super::strip_comments(text).unwrap()
    }
}
