//! The durable store: PostgreSQL, range-partitioned by day.
//!
//! Sits at the end of the write path (ingest → **store**) and at the bottom of the read path
//! (API → cache → **store**). Rows arrive in batches from the ingest writers and go in with
//! binary `COPY` in the same transaction as the Kafka offsets they came from, which is what
//! makes delivery exactly-once on the sample's natural key.

mod config;
pub mod copy;
pub mod local;
pub mod local_table;
pub mod metrics;
pub mod read;
pub mod schema;
pub mod sink;
mod writer;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use config::{is_identifier, StoreBackend, StoreConfig};
pub use local::{LocalStore, LocalStoreArgs};
pub use local_table::LocalTable;
pub use metrics::{BatchStage, StoreMetrics};
pub use schema::{migrate, Partitions};
pub use sink::DurableSink;
pub use writer::{passed, CommitGate, PartitionOffset, WriteOutcome, Writer, WriterArgs};

/// Everything that can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no PostgreSQL connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("could not build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("migration {name} failed: {source}")]
    Migration {
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("day {0} is outside the supported time range")]
    BadDay(i64),
    #[error("embedded store: {0}")]
    Local(String),
    /// The batch's [`CommitGate`] failed, so it was rolled back (the dead letters it waits
    /// for did not reach Kafka).
    #[error("batch held back: {0}")]
    Held(String),
}

/// Builds the connection pool. Every connection uses `config.schema` as its search path and
/// `config.statement_timeout_ms` as its statement timeout. Connecting is lazy.
pub fn pool(config: &StoreConfig) -> Result<deadpool_postgres::Pool, StoreError> {
    let mut pg: tokio_postgres::Config = config.url.parse()?;
    pg.options(format!(
        "-c search_path={} -c statement_timeout={}",
        config.schema, config.statement_timeout_ms
    ));
    pg.application_name("mcpwatch");
    pg.connect_timeout(Duration::from_secs(5));
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(config.pool_size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Applies migrations and creates the partitions ahead, as `mcpwatch migrate` and the daemon
/// start do.
pub async fn prepare(
    pool: &deadpool_postgres::Pool,
    config: &StoreConfig,
    partitions: &Partitions,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let mut client = pool.get().await?;
    let ran = migrate(&mut client, &config.schema).await?;
    partitions
        .ensure_ahead(&client, now_ms, config.partitions_ahead_days)
        .await?;
    Ok(ran)
}

/// `SELECT 1` with a deadline, for readiness.
pub async fn ping(pool: &deadpool_postgres::Pool) -> bool {
    let check = async {
        let client = pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(_))
    )
}
