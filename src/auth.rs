//! Who is calling: Carpool user tokens.
//!
//! Tokens are stored only as SHA-256 hashes (`sha256:<hex>`). A presented token is
//! hashed and compared with every user's hash in constant time, with no early exit, so
//! response timing tells nothing about how close a guess was.
//!
//! Real clients send the token in different headers (docs/protocol.md §12): Claude Code with
//! `ANTHROPIC_AUTH_TOKEN` and anthropic-python ≥ 2 send `Authorization: Bearer`; Claude
//! Code with `ANTHROPIC_API_KEY` sends `x-api-key`; a user with both variables set sends
//! both. Precedence: the Bearer token is tried first, then `x-api-key`; the first that
//! belongs to a user wins. So a user whose `ANTHROPIC_API_KEY` still holds a real Anthropic
//! key is not locked out, and that key is never forwarded (the relay strips both headers).
//!
//! The management API's admin secret (`cpa-…`) is never a relay token: a token with its
//! prefix is refused here whatever the config says (and the config refuses such a user
//! token in the first place).

use http::HeaderMap;

use crate::config::{Targets, UserConfig, UserName};
use crate::secret::ADMIN_PREFIX;

pub use crate::secret::{TOKEN_PREFIX, TokenHash, generate_token};

/// The outcome of checking a request's credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Caller<'a> {
    /// No users are configured (loopback only): everyone is served, unnamed.
    Anonymous,
    User(&'a User),
}

/// A user as the request path knows them.
#[derive(Debug, PartialEq, Eq)]
pub struct User {
    pub name: UserName,
    /// What their Claude and OpenAI requests go to.
    pub targets: Targets,
    hash: TokenHash,
}

#[derive(Debug)]
pub enum AuthError {
    Missing,
    Invalid,
}

impl AuthError {
    /// What the client is told. Names the fix; never echoes the presented token.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => "Carpool: no token. Set ANTHROPIC_AUTH_TOKEN to the token \
                 `carpool serve` printed (it is sent as `Authorization: Bearer`)."
                .into(),
            AuthError::Invalid => "Carpool: this token is not known to this Carpool server. \
                 Check ANTHROPIC_AUTH_TOKEN (and ANTHROPIC_API_KEY, if set) against the token \
                 you were given; the Carpool owner can make a new one with `carpool token`."
                .into(),
        }
    }
}

/// The configured users.
pub struct Users {
    users: Vec<User>,
}

impl Users {
    pub fn new(users: &[UserConfig]) -> Self {
        Users {
            users: users
                .iter()
                .map(|u| User {
                    name: u.name.clone(),
                    targets: u.targets.clone(),
                    hash: u.token_hash,
                })
                .collect(),
        }
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller<'_>, AuthError> {
        if self.users.is_empty() {
            return Ok(Caller::Anonymous);
        }
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);

        let mut presented = false;
        for token in [bearer, api_key].into_iter().flatten() {
            if token.is_empty() {
                continue;
            }
            presented = true;
            if token.starts_with(ADMIN_PREFIX) {
                continue;
            }
            if let Some(user) = self.find(&TokenHash::of(token)) {
                return Ok(Caller::User(user));
            }
        }
        Err(if presented {
            AuthError::Invalid
        } else {
            AuthError::Missing
        })
    }

    /// Compares against every user without stopping at the first match.
    fn find(&self, presented: &TokenHash) -> Option<&User> {
        let mut found: Option<&User> = None;
        for user in &self.users {
            let equal = user.hash.ct_eq(presented);
            if equal && found.is_none() {
                found = Some(user);
            }
        }
        found
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive and may be followed by any run of spaces or tabs (RFC 9110 §11.1,
/// §11.6.2); other schemes give `None`.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_matches([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_with_any_whitespace() {
        for value in [
            "Bearer tok",
            "bearer tok",
            "BEARER tok",
            "BeArEr tok",
            "Bearer   tok",
            "Bearer\ttok",
            " Bearer tok ",
            "Bearer \t tok\t",
        ] {
            assert_eq!(bearer_token(value), Some("tok"), "{value:?}");
        }
        for value in [
            "Basic tok",
            "Bearertok",
            "Bearer",
            "tok",
            "",
            "Bearer-x tok",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
        let u = users(&["alice-token-0000000"]);
        let h = headers(&[("authorization", "BEARER  alice-token-0000000")]);
        assert_eq!(who(u.authenticate(&h).unwrap()), "u0");
    }

    /// Users `u0`, `u1`, … with these tokens.
    fn users(tokens: &[&str]) -> Users {
        Users {
            users: tokens
                .iter()
                .enumerate()
                .map(|(i, t)| User {
                    name: UserName::from(format!("u{i}")),
                    targets: Targets {
                        anthropic: Some(crate::config::Target::Account("a".into())),
                        openai: None,
                    },
                    hash: TokenHash::of(t),
                })
                .collect(),
        }
    }

    fn who(caller: Caller<'_>) -> &str {
        match caller {
            Caller::User(user) => user.name.as_str(),
            Caller::Anonymous => "anonymous",
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn hash_round_trips_through_config_form() {
        let h = TokenHash::of("cpk-abc");
        assert_eq!(TokenHash::parse(&h.to_config_string()).unwrap(), h);
        assert!(TokenHash::parse("md5:00").is_err());
        assert!(TokenHash::parse("sha256:zz").is_err());
    }

    #[test]
    fn generated_tokens_are_unique_and_prefixed() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
    }

    #[test]
    fn bearer_and_x_api_key_both_work() {
        let u = users(&["alice-token-0000000", "bob-token-00000000"]);
        let bearer = headers(&[("authorization", "Bearer bob-token-00000000")]);
        assert_eq!(who(u.authenticate(&bearer).unwrap()), "u1");
        let key = headers(&[("x-api-key", "alice-token-0000000")]);
        assert_eq!(who(u.authenticate(&key).unwrap()), "u0");
    }

    #[test]
    fn with_both_headers_the_one_that_matches_wins_and_bearer_goes_first() {
        let u = users(&["alice-token-0000000", "bob-token-00000000"]);
        // A real Anthropic key left in ANTHROPIC_API_KEY does not lock the user out.
        let h = headers(&[
            ("authorization", "Bearer alice-token-0000000"),
            ("x-api-key", "sk-ant-api03-real-key"),
        ]);
        assert_eq!(who(u.authenticate(&h).unwrap()), "u0");
        let h = headers(&[
            ("authorization", "Bearer sk-ant-oat01-something"),
            ("x-api-key", "bob-token-00000000"),
        ]);
        assert_eq!(who(u.authenticate(&h).unwrap()), "u1");
        let h = headers(&[
            ("authorization", "Bearer alice-token-0000000"),
            ("x-api-key", "bob-token-00000000"),
        ]);
        assert_eq!(who(u.authenticate(&h).unwrap()), "u0");
    }

    #[test]
    fn missing_and_wrong_tokens_are_told_apart() {
        let u = users(&["alice-token-0000000"]);
        assert!(matches!(
            u.authenticate(&HeaderMap::new()),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            u.authenticate(&headers(&[("authorization", "Basic abc")])),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            u.authenticate(&headers(&[("authorization", "Bearer nope")])),
            Err(AuthError::Invalid)
        ));
        assert!(!AuthError::Invalid.message().contains("nope"));
    }

    #[test]
    fn a_token_with_the_admin_prefix_is_never_a_user_token() {
        // Even one a user was given by hand (`Users::new` does not check prefixes).
        let u = users(&["cpa-looks-like-the-admin-secret", "bob-token-00000000"]);
        let h = headers(&[("authorization", "Bearer cpa-looks-like-the-admin-secret")]);
        assert!(matches!(u.authenticate(&h), Err(AuthError::Invalid)));
        // Another header's user token still counts.
        let h = headers(&[
            ("authorization", "Bearer cpa-looks-like-the-admin-secret"),
            ("x-api-key", "bob-token-00000000"),
        ]);
        assert_eq!(who(u.authenticate(&h).unwrap()), "u1");
    }

    #[test]
    fn no_users_means_anonymous() {
        let u = users(&[]);
        assert_eq!(
            u.authenticate(&HeaderMap::new()).unwrap(),
            Caller::Anonymous
        );
    }
}
