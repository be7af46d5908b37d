//! Stable identities: users by name, accounts and pools by tag.
//!
//! Everything that outlives one reading of the config — the request in flight, a sticky
//! conversation, the status snapshot, a ledger row — refers to users, accounts and pools
//! by these names, never by their position in the config's lists. So entries can be
//! added, removed and reordered in a running Carpool ([`crate::engine::Engine::apply`])
//! and what refers to an unchanged entry still finds it.
//!
//! Each is a shared string: cloning one on the request path is a reference-count
//! increment, and comparing two clones of the same name is a pointer comparison.

use std::fmt;
use std::sync::Arc;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(name: &str) -> Self {
                $name(Arc::from(name))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                $name::new(name)
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                $name(Arc::from(name))
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        // In the OpenAPI document: a plain string.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <String as utoipa::PartialSchema>::schema()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A user's `name`.
    UserName
);
id_type!(
    /// An account's `tag` (an entry of `credentials` that is not a pool).
    AccountTag
);
id_type!(
    /// A pool's `tag` (a `balancer` or `fallback` entry of `credentials`).
    PoolTag
);

/// What a user's requests go to: one account, or a pool of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Account(AccountTag),
    Pool(PoolTag),
}

impl Target {
    /// The tag as written in the config.
    pub fn tag(&self) -> &str {
        match self {
            Target::Account(t) => t,
            Target::Pool(t) => t,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// Whose API an account speaks, and so which client protocols it can answer: a Claude
/// login or Anthropic key answers Anthropic Messages; a Codex login or OpenAI key answers
/// the OpenAI endpoints (Responses, and Chat Completions for GPT models).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Anthropic,
    #[serde(rename = "openai")]
    OpenAi,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Anthropic, Provider::OpenAi];

    /// For messages: "Claude" or "OpenAI".
    pub fn label(self) -> &'static str {
        match self {
            Provider::Anthropic => "Claude",
            Provider::OpenAi => "OpenAI",
        }
    }
}

/// What a user's requests go to, per provider: Claude requests to one target, OpenAI
/// requests (Codex, GPT models) to another. A user without a target for a provider is
/// refused that provider's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Targets {
    pub anthropic: Option<Target>,
    pub openai: Option<Target>,
}

impl Targets {
    /// Where `provider`'s requests go, if anywhere.
    pub fn get(&self, provider: Provider) -> Option<&Target> {
        match provider {
            Provider::Anthropic => self.anthropic.as_ref(),
            Provider::OpenAi => self.openai.as_ref(),
        }
    }

    pub fn slot(&mut self, provider: Provider) -> &mut Option<Target> {
        match provider {
            Provider::Anthropic => &mut self.anthropic,
            Provider::OpenAi => &mut self.openai,
        }
    }

    /// Every target, Claude's first.
    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.anthropic.iter().chain(self.openai.iter())
    }

    /// The first target (Claude's, else OpenAI's), for places that show one.
    pub fn first(&self) -> Option<&Target> {
        self.iter().next()
    }

    /// Whether any target is `tag`.
    pub fn names(&self, tag: &str) -> bool {
        self.iter().any(|t| t.tag() == tag)
    }
}

impl fmt::Display for Targets {
    /// The tags, joined: `max` or `max, codex`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(t.tag())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_by_name_and_print_as_written() {
        let a = AccountTag::new("work");
        assert_eq!(a, AccountTag::from("work".to_string()));
        assert_eq!(a, "work");
        assert_ne!(a, AccountTag::new("home"));
        assert_eq!(a.to_string(), "work");
        assert_eq!(format!("{a:?}"), "\"work\"");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"work\"");
        let t = Target::Pool(PoolTag::new("team"));
        assert_eq!(t.tag(), "team");
        assert_ne!(t, Target::Account(AccountTag::new("team")));
    }
}
