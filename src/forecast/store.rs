//! Forecast history in PostgreSQL: the continuous loop's last stop after the cache.
//!
//! Every cycle's forecasts go into the day-partitioned `forecasts` table
//! (`sql/0004_forecasts.sql`), one row per service with its model version, routed version and
//! fallback reason, so accuracy can be measured later against the samples that actually
//! arrived (the `forecast_points` view unnests the values next to their bucket). Rows go in
//! with one `INSERT … SELECT FROM unnest(…)` per chunk, so a cycle of 10 000 services costs
//! ten round trips; a rerun of the same cycle inserts nothing twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::ForecastOutput;
use crate::store::{Partitions, StoreError};

/// Rows per `INSERT` statement.
const CHUNK: usize = 1000;

/// Writes forecasts to PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct ForecastStore {
    /// Shared with the daemon's other PostgreSQL users.
    pool: deadpool_postgres::Pool,
    /// The daemon's partition cache (creates a day's partition on first use).
    partitions: Arc<Partitions>,
}

impl ForecastStore {
    /// A store writing through `pool`.
    pub fn new(pool: deadpool_postgres::Pool, partitions: Arc<Partitions>) -> ForecastStore {
        ForecastStore { pool, partitions }
    }

    /// Stores one cycle's forecasts, all stamped `generated_at_ms`. Returns the rows inserted
    /// (a repeated cycle inserts none).
    pub async fn save(
        &self,
        generated_at_ms: i64,
        outputs: &[ForecastOutput],
    ) -> Result<u64, StoreError> {
        if outputs.is_empty() {
            return Ok(0);
        }
        let day = generated_at_ms.div_euclid(86_400_000);
        let generated_at = timestamp(generated_at_ms)?;
        let mut client = self.pool.get().await?;
        self.partitions.ensure(&client, "forecasts", [day]).await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare(
                "INSERT INTO forecasts (service_id, generated_at, first_bucket, step_ms,
                     model_version, routed_version, fallback_reason, \"values\")
                 SELECT s, $2, fb, st, mv, rv, fr, v::double precision[]
                 FROM unnest($1::text[], $3::timestamptz[], $4::int[], $5::text[], $6::text[],
                             $7::text[], $8::text[]) AS t(s, fb, st, mv, rv, fr, v)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let mut inserted = 0;
        for chunk in outputs.chunks(CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|o| &*o.service_id).collect();
            let firsts = chunk
                .iter()
                .map(|o| timestamp(o.first_bucket_ms))
                .collect::<Result<Vec<_>, _>>()?;
            let steps: Vec<i32> = chunk
                .iter()
                .map(|o| i32::try_from(o.step_ms).unwrap_or(i32::MAX))
                .collect();
            let models: Vec<&str> = chunk.iter().map(|o| o.model_version.as_str()).collect();
            let routed: Vec<&str> = chunk.iter().map(|o| o.routed_version.as_str()).collect();
            let reasons: Vec<Option<&str>> = chunk
                .iter()
                .map(|o| o.fallback_reason.map(|r| r.as_str()))
                .collect();
            let values: Vec<String> = chunk.iter().map(|o| array_literal(&o.values)).collect();
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &ids,
                        &generated_at,
                        &firsts,
                        &steps,
                        &models,
                        &routed,
                        &reasons,
                        &values,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

fn timestamp(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_millis(ms).ok_or(StoreError::BadDay(ms.div_euclid(86_400_000)))
}

/// `{1.5,2,NaN}`: a PostgreSQL array literal (Rust's shortest round-trip float formatting;
/// non-finite values spelled as PostgreSQL reads them).
fn array_literal(values: &[f64]) -> String {
    let mut s = String::with_capacity(values.len() * 8 + 2);
    s.push('{');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if v.is_nan() {
            s.push_str("NaN");
        } else if v.is_infinite() {
            s.push_str(if *v > 0.0 { "Infinity" } else { "-Infinity" });
        } else {
            s.push_str(&v.to_string());
        }
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::FallbackReason;

    fn output(id: &str, model: &str, values: Vec<f64>) -> ForecastOutput {
        ForecastOutput {
            service_id: Arc::from(id),
            model_version: model.into(),
            routed_version: "lstm_total_events_v2".into(),
            fallback_reason: (model != "lstm_total_events_v2")
                .then_some(FallbackReason::ShortHistory),
            first_bucket_ms: 1_763_683_200_000, // 2025-11-21T00:00Z
            step_ms: 3_600_000,
            values,
        }
    }

    #[test]
    fn array_literals_round_trip_through_rust_formatting() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(
            array_literal(&[1.5, 0.1, -2.0, f64::NAN, f64::INFINITY]),
            "{1.5,0.1,-2,NaN,Infinity}"
        );
    }

    #[tokio::test]
    async fn forecasts_are_stored_once_with_model_version_and_points() {
        let (pool, _config) = crate::testing::fresh_store("forecast_store").await;
        let store = ForecastStore::new(pool.clone(), Arc::new(Partitions::default()));
        let generated = 1_763_690_000_000;
        let outs: Vec<ForecastOutput> = (0..2500)
            .map(|i| {
                let model = if i % 2 == 0 {
                    "lstm_total_events_v2"
                } else {
                    "baseline_seasonal_v1"
                };
                output(
                    &format!("svc-{i}"),
                    model,
                    (0..24).map(|k| k as f64 + 0.25).collect(),
                )
            })
            .collect();
        assert_eq!(store.save(generated, &outs).await.unwrap(), 2500);
        // the same cycle again (e.g. a retried save) adds nothing
        assert_eq!(store.save(generated, &outs).await.unwrap(), 0);
        let client = pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT model_version, fallback_reason, \"values\"[24], step_ms
                 FROM forecasts WHERE service_id = 'svc-1'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "baseline_seasonal_v1");
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some("short_history")
        );
        assert_eq!(row.get::<_, f64>(2), 23.25);
        assert_eq!(row.get::<_, i32>(3), 3_600_000);
        let points = client
            .query_one(
                "SELECT count(*), max(lead), min(bucket) = '2025-11-21T00:00:00Z'::timestamptz
                 FROM forecast_points WHERE service_id = 'svc-0'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(points.get::<_, i64>(0), 24);
        assert_eq!(points.get::<_, i32>(1), 24);
        assert!(points.get::<_, bool>(2));
    }
}
