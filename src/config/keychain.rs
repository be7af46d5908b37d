//! Which macOS Keychain item holds Claude Code's login (docs/protocol.md §1.3): a
//! generic-password item whose service is `Claude Code-credentials`, suffixed when
//! `CLAUDE_CONFIG_DIR` is set, and whose account is the user name. Config facts, as the
//! default credentials file is ([`super::default_credential_path`]); reading and writing
//! the item is `credentials::keychain`'s.

use std::ffi::{OsStr, OsString};

use sha2::{Digest as _, Sha256};

/// The service of Claude Code's Keychain item when `CLAUDE_CONFIG_DIR` is not set.
pub const SERVICE: &str = "Claude Code-credentials";

/// The service name Claude Code uses with `CLAUDE_CONFIG_DIR` set to `config_dir`
/// (docs/protocol.md §1.3): `Claude Code-credentials-` and the first 8 hex digits of the
/// SHA-256 of the raw value (no trailing-slash trimming, no canonicalization). `None` or
/// an empty value counts as unset: `Claude Code-credentials`.
pub fn service_name(config_dir: Option<&OsStr>) -> String {
    match config_dir.filter(|d| !d.is_empty()) {
        None => SERVICE.to_owned(),
        Some(dir) => {
            let hash = Sha256::digest(dir.as_encoded_bytes());
            format!("{SERVICE}-{}", &hex::encode(hash)[..8])
        }
    }
}

/// Which Keychain item holds Claude Code's login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeychainItem {
    /// The services to look under, in order: the suffixed one when `CLAUDE_CONFIG_DIR`
    /// is set, then `Claude Code-credentials`.
    pub services: Vec<String>,
    /// The user name.
    pub account: String,
}

impl KeychainItem {
    /// The item of Claude Code running with the environment `var` reads (in production
    /// `std::env::var_os`; tests pass their own). The account is `$USER`, else
    /// `$LOGNAME`; `None` when neither is set.
    pub fn from_env(var: &dyn Fn(&str) -> Option<OsString>) -> Option<KeychainItem> {
        let account = ["USER", "LOGNAME"]
            .into_iter()
            .filter_map(var)
            .find(|v| !v.is_empty())?
            .into_string()
            .ok()?;
        let suffixed = service_name(var("CLAUDE_CONFIG_DIR").as_deref());
        let mut services = vec![suffixed];
        if services[0] != SERVICE {
            services.push(SERVICE.to_owned());
        }
        Some(KeychainItem { services, account })
    }

    /// "the macOS Keychain (service `…`, account `…`)", every service it looks under.
    pub fn describe(&self) -> String {
        let services: Vec<String> = self.services.iter().map(|s| format!("`{s}`")).collect();
        format!(
            "the macOS Keychain (service {}, account `{}`)",
            services.join(" or "),
            self.account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |key: &str| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_service_is_suffixed_with_the_hash_of_the_raw_claude_config_dir() {
        assert_eq!(service_name(None), "Claude Code-credentials");
        assert_eq!(
            service_name(Some(OsStr::new(""))),
            "Claude Code-credentials",
            "empty counts as unset"
        );
        // `printf %s /Users/test/.claude-work | sha256sum`: 03abf0ee…; the raw value is
        // hashed, so a trailing slash is another item.
        assert_eq!(
            service_name(Some(OsStr::new("/Users/test/.claude-work"))),
            "Claude Code-credentials-03abf0ee"
        );
        assert_eq!(
            service_name(Some(OsStr::new("/Users/test/.claude-work/"))),
            "Claude Code-credentials-8bd6f0f5"
        );
    }

    #[test]
    fn the_item_comes_from_the_environment() {
        let item = KeychainItem::from_env(&env(&[("USER", "alice"), ("LOGNAME", "bob")])).unwrap();
        assert_eq!(item.services, ["Claude Code-credentials"]);
        assert_eq!(item.account, "alice");

        let item = KeychainItem::from_env(&env(&[
            ("USER", "alice"),
            ("CLAUDE_CONFIG_DIR", "/Users/test/.claude-work"),
        ]))
        .unwrap();
        assert_eq!(
            item.services,
            [
                "Claude Code-credentials-03abf0ee",
                "Claude Code-credentials"
            ],
            "the suffixed item first, then the unsuffixed one"
        );
        assert_eq!(
            item.describe(),
            "the macOS Keychain (service `Claude Code-credentials-03abf0ee` or `Claude Code-credentials`, account `alice`)"
        );

        let item = KeychainItem::from_env(&env(&[
            ("USER", ""),
            ("LOGNAME", "bob"),
            ("CLAUDE_CONFIG_DIR", ""),
        ]))
        .unwrap();
        assert_eq!(item.services, ["Claude Code-credentials"]);
        assert_eq!(item.account, "bob", "an empty $USER is not a name");
        assert_eq!(KeychainItem::from_env(&env(&[])), None, "no user name");
    }
}
