//! Migrations from `sql/` and daily partition maintenance.
//!
//! Migrations are embedded at build time, applied in order under an advisory lock (so
//! replicas starting together do not race) and recorded in `schema_migrations`.
//! Partitions are named `<parent>_pYYYYMMDD` and cover one UTC day each.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::copy::day_of;
use super::StoreError;

/// One embedded migration.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Add new files at the end; never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_samples.sql",
        sql: include_str!("../../sql/0001_samples.sql"),
    },
    Migration {
        version: 2,
        name: "0002_api.sql",
        sql: include_str!("../../sql/0002_api.sql"),
    },
    Migration {
        version: 3,
        name: "0003_anomalies.sql",
        sql: include_str!("../../sql/0003_anomalies.sql"),
    },
    Migration {
        version: 4,
        name: "0004_forecasts.sql",
        sql: include_str!("../../sql/0004_forecasts.sql"),
    },
    Migration {
        version: 5,
        name: "0005_lifecycle.sql",
        sql: include_str!("../../sql/0005_lifecycle.sql"),
    },
];

/// The tables partitioned by day that the store keeps partitions for.
pub const PARTITIONED: &[&str] = &[
    "samples",
    "plans",
    "anomalies",
    "forecasts",
    // aggregates (0005_lifecycle.sql)
    "samples_5m",
    "samples_15m",
    "samples_1h",
    "samples_24h",
];

const LOCK_KEY: i64 = 0x6d63_7077_6174_6368; // "mcpwatch"

/// Creates the schema if needed and applies pending migrations. Returns how many ran.
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> Result<usize, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut ran = 0;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| StoreError::Migration {
                name: m.name,
                source: e,
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}

/// `samples_p20261121` for day 20413 (days since the Unix epoch).
pub fn partition_name(parent: &str, day: i64) -> String {
    let date = DateTime::<Utc>::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_else(|| format!("d{day}"));
    format!("{parent}_p{date}")
}

/// Remembers which daily partitions exist so the hot path asks PostgreSQL only for new days.
/// Shared by all writers of one process.
#[derive(Default)]
pub struct Partitions {
    /// (parent, day) pairs known to exist. Guarded by a std mutex: held for a lookup only.
    known: Mutex<HashSet<(&'static str, i64)>>,
}

impl Partitions {
    /// Makes sure `parent` has partitions for every day in `days`.
    /// `client` must not be inside a transaction: the creations run in their own.
    pub async fn ensure(
        &self,
        client: &tokio_postgres::Client,
        parent: &'static str,
        days: impl IntoIterator<Item = i64>,
    ) -> Result<usize, StoreError> {
        let missing: Vec<i64> = {
            let known = self.known.lock().expect("partition cache poisoned");
            let mut v: Vec<i64> = days
                .into_iter()
                .filter(|d| !known.contains(&(parent, *d)))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        if missing.is_empty() {
            return Ok(0);
        }
        let mut sql = String::from("SELECT pg_advisory_xact_lock(7307729783);");
        for &day in &missing {
            let from =
                DateTime::<Utc>::from_timestamp(day * 86_400, 0).ok_or(StoreError::BadDay(day))?;
            let to = DateTime::<Utc>::from_timestamp((day + 1) * 86_400, 0)
                .ok_or(StoreError::BadDay(day))?;
            sql.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {parent} FOR VALUES FROM ('{from}') TO ('{to}');",
                name = partition_name(parent, day),
                from = from.to_rfc3339(),
                to = to.to_rfc3339(),
            ));
        }
        // one transaction, so the advisory lock covers the creations
        client.batch_execute(&format!("BEGIN;{sql}COMMIT;")).await?;
        let mut known = self.known.lock().expect("partition cache poisoned");
        known.extend(missing.iter().map(|d| (parent, *d)));
        Ok(missing.len())
    }

    /// Creates today's partition and `ahead` more for every partitioned table.
    pub async fn ensure_ahead(
        &self,
        client: &tokio_postgres::Client,
        now_ms: i64,
        ahead: u32,
    ) -> Result<usize, StoreError> {
        let today = day_of(now_ms);
        let mut n = 0;
        for parent in PARTITIONED {
            n += self
                .ensure(client, parent, today..=today + i64::from(ahead))
                .await?;
        }
        Ok(n)
    }

    /// Forgets a partition (after retention dropped it).
    pub fn forget(&self, parent: &'static str, day: i64) {
        self.known
            .lock()
            .expect("partition cache poisoned")
            .remove(&(parent, day));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_are_utc_dates() {
        assert_eq!(partition_name("samples", 0), "samples_p19700101");
        assert_eq!(partition_name("samples", 20_413), "samples_p20251121");
    }
}
