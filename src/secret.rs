//! A string that must never be shown: OAuth tokens, refresh tokens, user tokens.
//!
//! `Secret` has no `Display`, and its `Debug` prints a fixed placeholder, so a token cannot
//! reach a log line or an error message by accident. Code that really needs the value
//! (to put it in a header or a file) calls [`Secret::expose`], which is easy to grep for.
//!
//! Carpool's own user tokens are kept only as their [`TokenHash`]; [`generate_token`]
//! makes new ones.

use std::fmt;

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Only for headers, token requests and credential files.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Prefix of generated tokens: recognisable in a shell history, easy to grep for leaks.
pub const TOKEN_PREFIX: &str = "cpk-";

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex_part = text
            .strip_prefix("sha256:")
            .ok_or("must look like `sha256:<64 hex digits>`")?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| "must look like `sha256:<64 hex digits>`".to_string())?;
        Ok(TokenHash(bytes))
    }

    /// Compares in constant time: how long it takes tells nothing about how close a
    /// guess was.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The form written to the config file.
    pub fn to_config_string(&self) -> String {
        format!("sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({}…)", &hex::encode(self.0)[..8])
    }
}

/// Prefix of the admin secret: never a user token, so the relay refuses it at sight.
pub const ADMIN_PREFIX: &str = "cpa-";

/// A new random user token: `cpk-` + 32 random bytes in URL-safe base64.
pub fn generate_token() -> String {
    generate_with_prefix(TOKEN_PREFIX)
}

/// A new random admin secret: `cpa-` + 32 random bytes in URL-safe base64.
pub fn generate_admin_secret() -> String {
    generate_with_prefix(ADMIN_PREFIX)
}

fn generate_with_prefix(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("sk-ant-oat01-very-secret");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(s.expose(), "sk-ant-oat01-very-secret");
    }
}
