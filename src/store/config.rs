//! Settings of the PostgreSQL store (`[store]`).

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Where durable samples go.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Partitioned PostgreSQL (`url`, `schema`).
    Postgres,
    /// The embedded store: LZ4 Arrow IPC files under `local_dir` (what `mcpwatch demo` uses).
    Local,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres` or `local` (embedded Arrow files, no PostgreSQL needed).
    pub backend: StoreBackend,
    /// Root of the embedded store when `backend = "local"`.
    pub local_dir: std::path::PathBuf,
    /// libpq-style URL or key=value string.
    pub url: String,
    /// Schema holding mcpwatch's tables (created if missing); lets several installs or test
    /// runs share one database.
    pub schema: String,
    /// Connections in the pool (writers + API queries + jobs).
    pub pool_size: usize,
    /// Daily partitions created ahead of today.
    pub partitions_ahead_days: u32,
    /// Apply `sql/` migrations at start (idempotent).
    pub migrate_on_start: bool,
    /// Per-statement timeout, so a stuck query surfaces as an error and is retried.
    pub statement_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Postgres,
            local_dir: "data/store".into(),
            url: "postgres://postgres@127.0.0.1:5432/test".into(),
            schema: "mcpwatch".into(),
            pool_size: 8,
            partitions_ahead_days: 3,
            migrate_on_start: true,
            statement_timeout_ms: 30_000,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.parse::<tokio_postgres::Config>().is_err() {
            return Err(ConfigError::invalid(
                "store.url",
                "is not a valid PostgreSQL connection string",
                "use e.g. postgres://user@host:5432/dbname",
            ));
        }
        if !is_identifier(&self.schema) {
            return Err(ConfigError::invalid(
                "store.schema",
                format!("{:?} is not a plain SQL identifier", self.schema),
                "use lowercase letters, digits and _ (starting with a letter or _), e.g. \"mcpwatch\"",
            ));
        }
        if !(1..=256).contains(&self.pool_size) {
            return Err(ConfigError::invalid(
                "store.pool_size",
                format!("{} is outside 1..=256", self.pool_size),
                "use e.g. 8 (ingest.writers plus a few for queries)",
            ));
        }
        if self.partitions_ahead_days > 60 {
            return Err(ConfigError::invalid(
                "store.partitions_ahead_days",
                "is above 60",
                "use e.g. 3",
            ));
        }
        Ok(())
    }
}

/// `[a-z_][a-z0-9_]{0,62}`: safe to splice into SQL unquoted.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
