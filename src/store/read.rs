//! Reading raw samples back out of PostgreSQL: the bottom of the read path.
//!
//! The features stage uses it to rebuild a service it does not hold (new to this replica after
//! a Kafka rebalance, or back after its idle eviction and its cache snapshot expired): the
//! service's recent samples are replayed through the same engine code the live stream uses, so
//! the rebuilt state is the state the replica would have had.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::sample::{Lifecycle, Origin, Sample, Status};

/// Which samples to read for one service: those with `from_ms <= ts < until_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRange {
    pub service_id: String,
    pub from_ms: i64,
    pub until_ms: i64,
}

/// The samples of every range, ordered by service then time, at most `max_rows` in all (the
/// newest kept when a range has more). One round trip for the whole set.
pub async fn samples_in(
    client: &tokio_postgres::Client,
    ranges: &[SampleRange],
    max_rows: i64,
) -> Result<Vec<Sample>, StoreError> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = ranges.iter().map(|r| r.service_id.as_str()).collect();
    let from: Vec<DateTime<Utc>> = ranges.iter().map(|r| ts(r.from_ms)).collect();
    let until: Vec<DateTime<Utc>> = ranges.iter().map(|r| ts(r.until_ms)).collect();
    let rows = client
        .query(
            "SELECT * FROM (
                 SELECT s.service_id, s.ts, s.series, s.origin, s.cpu, s.memory,
                        s.response_time_ms, s.requests, s.errors, s.status, s.event,
                        s.instance_id, s.host, s.platform
                 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS m(id, lo, hi)
                 JOIN samples s ON s.service_id = m.id AND s.ts >= m.lo AND s.ts < m.hi
                 ORDER BY s.ts DESC
                 LIMIT $4) newest
             ORDER BY service_id, ts, series",
            &[&ids, &from, &until, &max_rows],
        )
        .await?;
    Ok(rows.iter().map(sample_of).collect())
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn sample_of(r: &tokio_postgres::Row) -> Sample {
    let origin = if r.get::<_, i16>(3) == Origin::Prometheus.code() {
        Origin::Prometheus
    } else {
        Origin::Mcp
    };
    let mut s = Sample::new(
        r.get::<_, String>(0),
        r.get::<_, DateTime<Utc>>(1).timestamp_millis(),
        origin,
    );
    s.series = r.get(2);
    s.cpu = r.get(4);
    s.memory = r.get(5);
    s.response_time_ms = r.get(6);
    s.requests = r.get(7);
    s.errors = r.get(8);
    s.status = r.get::<_, Option<i16>>(9).and_then(|c| {
        [Status::Healthy, Status::Degraded, Status::Down]
            .into_iter()
            .find(|s| s.code() == c)
    });
    s.event = r.get::<_, Option<i16>>(10).and_then(|c| {
        [Lifecycle::Add, Lifecycle::Remove, Lifecycle::Update]
            .into_iter()
            .find(|e| e.code() == c)
    });
    s.instance_id = r.get(11);
    s.host = r.get(12);
    s.platform = r.get(13);
    s
}
