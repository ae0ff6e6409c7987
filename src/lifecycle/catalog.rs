//! What daily partitions exist in the store's schema, attached or not, read from the
//! PostgreSQL catalog (the retention job's source of truth, so it also finds the partitions an
//! interrupted run detached but did not drop).

use chrono::{NaiveDate, TimeZone, Utc};

use super::LifecycleError;

/// One `<table>_pYYYYMMDD` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partitioned parent, e.g. `samples`.
    pub table: String,
    /// Days since the Unix epoch (UTC) the partition covers.
    pub day: i64,
    /// The partition's own name, e.g. `samples_p20251121`.
    pub name: String,
    /// Still a partition of `table` (false: detached by an interrupted retention run).
    pub attached: bool,
    /// `pg_total_relation_size` (heap, indexes, TOAST).
    pub bytes: i64,
}

/// Splits `samples_p20251121` into (`samples`, day). None for any other name.
pub fn parse_partition_name(name: &str) -> Option<(&str, i64)> {
    let (table, date) = name.rsplit_once("_p")?;
    if table.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = NaiveDate::parse_from_str(date, "%Y%m%d").ok()?;
    let midnight = Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?);
    Some((table, midnight.timestamp().div_euclid(86_400)))
}

/// `2025-11-21` for day 20413.
pub fn day_string(day: i64) -> String {
    chrono::DateTime::<Utc>::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("d{day}"))
}

/// Every daily partition table in the connection's current schema, attached or detached,
/// oldest day first. A detached table counts only if its name matches `<table>_pYYYYMMDD`.
pub async fn list_partitions(
    client: &tokio_postgres::Client,
) -> Result<Vec<PartitionInfo>, LifecycleError> {
    let rows = client
        .query(
            "SELECT c.relname::text, p.relname::text, pg_total_relation_size(c.oid) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_inherits i ON i.inhrelid = c.oid \
             LEFT JOIN pg_class p ON p.oid = i.inhparent \
             WHERE n.nspname = current_schema() AND c.relkind = 'r' \
               AND c.relname ~ '_p[0-9]{8}$'",
            &[],
        )
        .await?;
    let mut out: Vec<PartitionInfo> = rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            let parent: Option<String> = r.get(1);
            let bytes: i64 = r.get(2);
            let (table, day) = parse_partition_name(&name)?;
            // a table attached elsewhere than its name says is not ours to manage
            if parent.as_deref().is_some_and(|p| p != table) {
                return None;
            }
            Some(PartitionInfo {
                table: table.to_string(),
                day,
                attached: parent.is_some(),
                bytes,
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.day, &a.table).cmp(&(b.day, &b.table)));
    Ok(out)
}

/// Bytes used by every table of the current schema (heap, indexes, TOAST): what the storage
/// budget is measured against. Other schemas of the same database are not counted.
pub async fn schema_bytes(client: &tokio_postgres::Client) -> Result<i64, LifecycleError> {
    let row = client
        .query_one(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// `FOR VALUES FROM (…) TO (…)` bounds of a daily partition.
pub fn day_bounds(day: i64) -> Result<(String, String), LifecycleError> {
    let from = chrono::DateTime::<Utc>::from_timestamp(day * 86_400, 0)
        .ok_or(LifecycleError::BadDay(day))?;
    let to = chrono::DateTime::<Utc>::from_timestamp((day + 1) * 86_400, 0)
        .ok_or(LifecycleError::BadDay(day))?;
    Ok((from.to_rfc3339(), to.to_rfc3339()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let name = crate::store::schema::partition_name("samples_5m", 20_413);
        assert_eq!(parse_partition_name(&name), Some(("samples_5m", 20_413)));
        assert_eq!(
            parse_partition_name("samples_p19700101"),
            Some(("samples", 0))
        );
        assert_eq!(parse_partition_name("samples"), None);
        assert_eq!(parse_partition_name("samples_p2025112"), None);
        assert_eq!(parse_partition_name("samples_p20251341"), None);
        assert_eq!(parse_partition_name("_p20251121"), None);
        assert_eq!(day_string(20_413), "2025-11-21");
    }
}
