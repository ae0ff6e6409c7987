//! A webhook URL is a credential (Discord's carries the token in its path): this wrapper keeps
//! it out of every `Debug`, `Display` and serialised config. Only [`SecretUrl::expose`] gives
//! it, and only the HTTP client calls that.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// What every printed form of a set secret shows.
pub const REDACTED: &str = "<redacted>";

/// A URL that must never be logged. Empty = not configured.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into().trim().to_string())
    }

    /// Whether a URL is configured.
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    /// The URL itself, for the request only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks that a set URL is an absolute http(s) URL, without ever quoting it.
    pub fn check(&self) -> Result<(), String> {
        if !self.is_set() {
            return Ok(());
        }
        match reqwest::Url::parse(&self.0) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {
                Ok(())
            }
            Ok(_) => {
                Err("is not an http(s) URL with a host (value not shown: it is a secret)".into())
            }
            Err(e) => Err(format!(
                "is not a valid URL ({e}; value not shown: it is a secret)"
            )),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_set() {
            write!(f, "SecretUrl({REDACTED})")
        } else {
            f.write_str("SecretUrl(unset)")
        }
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { REDACTED } else { "" })
    }
}

/// `mcpwatch config` prints the effective config: a set secret shows as `<redacted>`.
impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_set() { REDACTED } else { "" })
    }
}
