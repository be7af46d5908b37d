//! A string that must never be shown: OAuth tokens, refresh tokens, user tokens.
//!
//! `Secret` has no `Display`, and its `Debug` prints a fixed placeholder, so a token cannot
//! reach a log line or an error message by accident. Code that really needs the value
//! (to put it in a header or a file) calls [`Secret::expose`], which is easy to grep for.

use std::fmt;

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
