//! Errors of the hot cache. None of them is fatal to the daemon: a cache error means "answer
//! from the database" on the read path and "drop or hold the write" on the write path.

use std::time::Duration;

/// Everything that can go wrong in `cache`.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A setting is out of range; `key` is the config key, `fix` what to set instead.
    #[error("invalid setting `{key}`: {problem}; fix: {fix}")]
    Config {
        key: &'static str,
        problem: String,
        fix: String,
    },
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// Not connected right now (the client reconnects in the background).
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the command timeout.
    #[error("cache `{op}` timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// A stored value could not be decoded (unknown marker, bad LZ4 block, bad JSON).
    #[error("cached value under `{key}` is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}
