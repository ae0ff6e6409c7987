//! Lifecycle tests against the real PostgreSQL on this machine: partition maintenance,
//! retention with archive round trips read back by DataFusion, crashes between the steps,
//! emergency cleanup, aggregates against a from-scratch computation, and `/v1/query`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int16Type, Int64Type, TimestampMicrosecondType};

use super::catalog::list_partitions;
use super::retention::StopAfter;
use super::*;
use crate::store::copy::day_of;
use crate::store::schema::partition_name;
use crate::store::Partitions;
use crate::testing::{count, fresh_store};

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    crate::daemon::now_ms()
}

fn archive_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpwatch-archive-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(dir: &std::path::Path) -> RetentionConfig {
    RetentionConfig {
        archive_dir: dir.to_path_buf(),
        budget_bytes: 0,
        retry_backoff_ms: 10,
        max_attempts: 2,
        ..RetentionConfig::default()
    }
}

fn retention(
    pool: &deadpool_postgres::Pool,
    config: RetentionConfig,
    metrics: LifecycleMetrics,
    now: i64,
) -> Retention {
    Retention::new(RetentionArgs {
        pool: pool.clone(),
        config,
        partitions: Arc::new(Partitions::default()),
        partitions_ahead_days: 3,
        metrics,
        clock: Arc::new(move || now),
    })
}

/// `rows` synthetic samples spread over `day` (days since the epoch), five services, with
/// NULLs, every status and event, text columns: created through the parent, so they land in
/// the day's partition (created here).
async fn fill_day(pool: &deadpool_postgres::Pool, day: i64, rows: i64) {
    let client = pool.get().await.unwrap();
    Partitions::default()
        .ensure(&client, "samples", [day])
        .await
        .unwrap();
    let step = 86_400.0 / rows as f64;
    client
        .execute(
            "INSERT INTO samples (service_id, ts, series, origin, cpu, memory, response_time_ms, \
                                  requests, errors, status, event, instance_id, host, platform) \
             SELECT 'svc-' || (g % 5), to_timestamp($1::float8 + g * $2::float8), g % 3, (g % 2)::int2, \
                    CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 100) / 100.0 END, \
                    (g % 37) / 37.0, 5 + (g * 7919 % 1000) / 3.0, (g % 11)::float8, \
                    CASE WHEN g % 13 = 0 THEN 1 ELSE 0 END, \
                    (g % 3)::int2, CASE WHEN g % 17 = 0 THEN NULL ELSE (1 + g % 3)::int2 END, \
                    'i-' || (g % 4), CASE WHEN g % 5 = 0 THEN NULL ELSE 'host-' || (g % 2) END, \
                    'linux' \
             FROM generate_series(0, $3::int8 - 1) g",
            &[&((day * 86_400) as f64), &step, &rows],
        )
        .await
        .unwrap();
}

/// Every sample row in natural-key order, as comparable tuples.
type Row = (
    String,
    i64,
    i64,
    i16,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i16>,
    Option<String>,
);

async fn pg_rows(pool: &deadpool_postgres::Pool, where_: &str) -> Vec<Row> {
    let client = pool.get().await.unwrap();
    client
        .query(
            &format!(
                "SELECT service_id, (extract(epoch from ts) * 1000000)::int8, series, origin, cpu, \
                 memory, response_time_ms, requests, event, host FROM samples WHERE {where_} \
                 ORDER BY service_id, ts, series"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
            )
        })
        .collect()
}

async fn archive_rows(dir: &std::path::Path, where_: &str) -> Vec<Row> {
    let ctx = query::archive_context(dir).await.unwrap();
    let result = query::run_query(
        &ctx,
        &format!(
            "SELECT service_id, ts, series, origin, cpu, memory, response_time_ms, requests, \
             event, host FROM samples WHERE {where_} ORDER BY service_id, ts, series"
        ),
        None,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    for b in &result.batches {
        let s = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
        let series = b.column(2).as_primitive::<Int64Type>();
        let origin = b.column(3).as_primitive::<Int16Type>();
        let f = |i: usize, r: usize| {
            let a = b.column(i).as_primitive::<Float64Type>();
            (!a.is_null(r)).then(|| a.value(r))
        };
        let event = b.column(8).as_primitive::<Int16Type>();
        let host = b.column(9).as_string::<i32>();
        for r in 0..b.num_rows() {
            out.push((
                s.value(r).to_string(),
                ts.value(r),
                series.value(r),
                origin.value(r),
                f(4, r),
                f(5, r),
                f(6, r),
                f(7, r),
                (!event.is_null(r)).then(|| event.value(r)),
                (!host.is_null(r)).then(|| host.value(r).to_string()),
            ));
        }
    }
    out
}

async fn archive_count(dir: &std::path::Path) -> i64 {
    let ctx = query::archive_context(dir).await.unwrap();
    let r = query::run_query(
        &ctx,
        "SELECT count(*) AS n FROM (SELECT DISTINCT service_id, ts, series FROM samples)",
        None,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    r.batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn samples_days(parts: &[catalog::PartitionInfo]) -> Vec<(i64, bool)> {
    parts
        .iter()
        .filter(|p| p.table == "samples")
        .map(|p| (p.day, p.attached))
        .collect()
}

#[tokio::test]
async fn retention_drops_expired_partitions_whole_archives_them_and_creates_ahead() {
    let (pool, _) = fresh_store("life_retention").await;
    let dir = archive_dir("retention");
    let now = now_ms();
    let today = day_of(now);
    for d in today - 10..=today {
        fill_day(&pool, d, 200).await;
    }
    let before = count(&pool, "SELECT count(*) FROM samples").await;
    assert_eq!(before, 11 * 200);
    let metrics = LifecycleMetrics::default();
    let job = retention(&pool, config(&dir), metrics.clone(), now);
    let report = job.run_with_retry().await.unwrap();
    // days today-10 ..= today-7 are past 7 days of retention
    assert_eq!(report.dropped, 4, "{report}");
    assert_eq!(report.archived, 4);
    assert_eq!(report.rows_archived, 800);
    assert_eq!(report.rows_dropped, 800);
    assert!(report.bytes_archived > 0);
    let client = pool.get().await.unwrap();
    let parts = list_partitions(&client).await.unwrap();
    let days: Vec<i64> = samples_days(&parts).iter().map(|d| d.0).collect();
    assert_eq!(days, (today - 6..=today + 3).collect::<Vec<_>>());
    for t in ["samples_5m", "samples_15m", "samples_1h", "samples_24h"] {
        let ahead: Vec<i64> = parts
            .iter()
            .filter(|p| p.table == t)
            .map(|p| p.day)
            .collect();
        assert_eq!(ahead, (today..=today + 3).collect::<Vec<_>>(), "{t}");
    }
    let after = count(&pool, "SELECT count(*) FROM samples").await;
    assert_eq!(after + report.rows_archived as i64, before, "no row lost");
    for d in today - 10..=today - 7 {
        let m = Archive::new(&dir)
            .read_manifest("samples", d)
            .unwrap()
            .expect("manifest");
        assert_eq!(m.rows, 200);
        assert_eq!(m.partition, partition_name("samples", d));
        assert_eq!(m.compression, "lz4_frame");
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].sha256.len(), 64);
        assert!(m
            .schema
            .iter()
            .any(|c| c.name == "ts" && c.pg_type == "timestamp with time zone"));
    }
    assert_eq!(archive_count(&dir).await, 800);
    let text = crate::telemetry::render(&{
        let mut r = prometheus_client::registry::Registry::default();
        metrics.register(&mut r);
        r
    });
    assert!(
        text.contains("mcpwatch_retention_rows_archived_total{table=\"samples\"} 800"),
        "{text}"
    );
    assert!(
        text.contains("mcpwatch_lifecycle_runs_total{job=\"retention\",outcome=\"ok\"} 1"),
        "{text}"
    );

    // idempotent: nothing left to do
    let again = job.run_once().await.unwrap();
    assert_eq!(
        (again.dropped, again.archived, again.partitions_created),
        (0, 0, 0)
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, after);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn archive_round_trip_is_value_exact_through_datafusion() {
    let (pool, _) = fresh_store("life_roundtrip").await;
    let dir = archive_dir("roundtrip");
    let now = now_ms();
    let today = day_of(now);
    for d in [today - 9, today - 8] {
        fill_day(&pool, d, 1500).await;
    }
    let cutoff = format!("ts < to_timestamp({})", (today - 7) * 86_400);
    let expected = pg_rows(&pool, &cutoff).await;
    assert_eq!(expected.len(), 3000);
    let report = retention(&pool, config(&dir), LifecycleMetrics::default(), now)
        .run_once()
        .await
        .unwrap();
    assert_eq!((report.dropped, report.rows_archived), (2, 3000));
    assert_eq!(
        pg_rows(&pool, &cutoff).await.len(),
        0,
        "dropped from PostgreSQL"
    );
    let got = archive_rows(&dir, "true").await;
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected, "every value read back equals the one stored");
    // the hive-style day column selects one partition's file
    let ctx = query::archive_context(&dir).await.unwrap();
    let day = catalog::day_string(today - 9);
    let r = query::run_query(
        &ctx,
        &format!("SELECT count(*) FROM samples WHERE day = '{day}'"),
        None,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(
        r.batches[0].column(0).as_primitive::<Int64Type>().value(0),
        1500
    );
    // CSV export with a header line
    let r = query::run_query(
        &ctx,
        "SELECT service_id, count(*) AS n FROM samples GROUP BY service_id ORDER BY service_id",
        Some(3),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(r.truncated);
    let mut csv = Vec::new();
    query::write_csv(&r, &mut csv).unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "service_id,n\nsvc-0,600\nsvc-1,600\nsvc-2,600\n"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_crash_at_any_step_is_finished_by_the_next_run_without_loss_or_duplicates() {
    let (pool, _) = fresh_store("life_crash").await;
    let dir = archive_dir("crash");
    let now = now_ms();
    let today = day_of(now);
    for d in today - 11..=today {
        fill_day(&pool, d, 300).await;
    }
    let total = count(&pool, "SELECT count(*) FROM samples").await;
    let job = retention(&pool, config(&dir), LifecycleMetrics::default(), now);
    let client = pool.get().await.unwrap();
    let part = |day: i64| catalog::PartitionInfo {
        table: "samples".into(),
        day,
        name: partition_name("samples", day),
        attached: true,
        bytes: 0,
    };

    // 1. crash right after DETACH of the oldest expired partition
    job.run_until(StopAfter::Detach).await.unwrap();
    let parts = list_partitions(&client).await.unwrap();
    assert_eq!(
        samples_days(&parts)[0],
        (today - 11, false),
        "detached, not dropped"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM samples").await,
        total - 300
    );

    // 2. the next run crashes after archiving (verified) but before DROP
    job.run_until(StopAfter::Archive).await.unwrap();
    assert!(Archive::new(&dir)
        .read_manifest("samples", today - 11)
        .unwrap()
        .is_some());
    let parts = list_partitions(&client).await.unwrap();
    assert_eq!(
        samples_days(&parts)[0],
        (today - 11, false),
        "still there until DROP"
    );

    // 3. a crash while writing the next one: detached, a partial temp file, no manifest
    retention::detach(&client, &part(today - 10)).await.unwrap();
    let d10 = Archive::new(&dir).day_dir("samples", today - 10);
    std::fs::create_dir_all(&d10).unwrap();
    std::fs::write(d10.join("part-00000.arrow.tmp"), b"ARROW1 half written").unwrap();

    // 4. a crash after the data file's rename but before its manifest: a stale, wrong file
    retention::detach(&client, &part(today - 9)).await.unwrap();
    let d9 = Archive::new(&dir).day_dir("samples", today - 9);
    std::fs::create_dir_all(&d9).unwrap();
    std::fs::write(d9.join(archive::DATA_FILE), b"not an arrow file").unwrap();

    // 5. a manifest that does not match its partition (e.g. written for other rows)
    let d8 = Archive::new(&dir).day_dir("samples", today - 8);
    std::fs::create_dir_all(&d8).unwrap();
    let bogus = Manifest {
        version: 1,
        table: "samples".into(),
        day: catalog::day_string(today - 8),
        partition: partition_name("samples", today - 8),
        rows: 1,
        bytes: 0,
        compression: "lz4_frame".into(),
        files: vec![],
        schema: vec![],
        created_at: String::new(),
    };
    archive::write_atomic(
        &d8.join(archive::MANIFEST_FILE),
        &serde_json::to_vec(&bogus).unwrap(),
    )
    .unwrap();

    // 6. a partition detached inside its retention (interrupted run, then retention raised)
    retention::detach(&client, &part(today - 2)).await.unwrap();

    let report = job.run_once().await.unwrap();
    // days today-11 ..= today-7 are expired: 5 partitions
    assert_eq!(report.dropped, 5, "{report}");
    assert_eq!(report.reattached, 1);
    let parts = list_partitions(&client).await.unwrap();
    assert!(samples_days(&parts)
        .iter()
        .all(|(d, attached)| *d >= today - 6 && *attached));
    let remaining = count(&pool, "SELECT count(*) FROM samples").await;
    let mut archived = 0;
    for d in today - 11..=today - 7 {
        let archive = Archive::new(&dir);
        let m = archive.read_manifest("samples", d).unwrap().unwrap();
        assert_eq!(archive.verify(&m).unwrap(), 300);
        archived += m.rows as i64;
    }
    assert_eq!(
        remaining + archived,
        total,
        "rows before = remaining + archived"
    );
    assert_eq!(
        archive_count(&dir).await,
        archived,
        "no duplicate in the archive"
    );
    assert!(
        !d10.join("part-00000.arrow.tmp").exists(),
        "the partial file was replaced"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_failing_archive_is_retried_and_never_drops_the_partition() {
    let (pool, _) = fresh_store("life_fail").await;
    let dir = archive_dir("fail");
    let now = now_ms();
    let today = day_of(now);
    fill_day(&pool, today - 8, 100).await;
    // a file where the table's archive folder should be: every attempt fails
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("samples"), b"in the way").unwrap();
    let metrics = LifecycleMetrics::default();
    let job = retention(&pool, config(&dir), metrics.clone(), now);
    let err = job.run_with_retry().await.unwrap_err();
    assert!(matches!(err, LifecycleError::Io { .. }), "{err}");
    let client = pool.get().await.unwrap();
    let parts = list_partitions(&client).await.unwrap();
    assert_eq!(
        samples_days(&parts)[0],
        (today - 8, false),
        "kept, detached"
    );
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM {}",
                partition_name("samples", today - 8)
            )
        )
        .await,
        100
    );
    assert_eq!(
        metrics
            .runs
            .get_or_create(&metrics::RunLabels {
                job: "retention",
                outcome: "error"
            })
            .get(),
        1
    );
    std::fs::remove_file(dir.join("samples")).unwrap();
    let report = job.run_with_retry().await.unwrap();
    assert_eq!((report.dropped, report.rows_archived), (1, 100));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn only_one_replica_runs_retention_at_a_time() {
    let (pool, _) = fresh_store("life_lock").await;
    let dir = archive_dir("lock");
    let now = now_ms();
    fill_day(&pool, day_of(now) - 9, 10).await;
    let other = pool.get().await.unwrap();
    other
        .execute(
            "SELECT pg_advisory_lock($1, hashtext(current_schema()))",
            &[&retention::LOCK_CLASS],
        )
        .await
        .unwrap();
    let job = retention(&pool, config(&dir), LifecycleMetrics::default(), now);
    let report = job.run_once().await.unwrap();
    assert!(report.skipped);
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 10);
    other
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext(current_schema()))",
            &[&retention::LOCK_CLASS],
        )
        .await
        .unwrap();
    let report = job.run_once().await.unwrap();
    assert_eq!(report.dropped, 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn emergency_cleanup_retires_the_oldest_partitions_until_under_budget() {
    let (pool, _) = fresh_store("life_budget").await;
    let dir = archive_dir("budget");
    let now = now_ms();
    let today = day_of(now);
    // all inside the 7-day retention: only the budget can drop them
    for d in today - 5..=today {
        fill_day(&pool, d, 2000).await;
    }
    let client = pool.get().await.unwrap();
    let size = catalog::schema_bytes(&client).await.unwrap();
    let oldest = list_partitions(&client)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.table == "samples" && p.day == today - 5)
        .unwrap();
    // a budget the oldest partition alone brings us under
    let mut cfg = config(&dir);
    cfg.emergency_ratio = 1.0;
    cfg.budget_bytes = (size - oldest.bytes / 2) as u64;
    let metrics = LifecycleMetrics::default();
    let report = retention(&pool, cfg.clone(), metrics.clone(), now)
        .check_budget()
        .await
        .unwrap();
    assert!(report.emergency);
    assert_eq!((report.dropped, report.archived), (1, 1), "{report}");
    assert!(Archive::new(&dir)
        .read_manifest("samples", today - 5)
        .unwrap()
        .is_some());
    assert_eq!(metrics.emergency_cleanups.get(), 1);
    assert_eq!(metrics.over_budget.get(), 0, "back under");
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 5 * 2000);

    // a tiny budget: everything older than emergency_keep_days (2) goes, oldest first
    cfg.budget_bytes = 1;
    let metrics = LifecycleMetrics::default();
    let report = retention(&pool, cfg, metrics.clone(), now)
        .check_budget()
        .await
        .unwrap();
    assert_eq!(report.dropped, 3, "{report}"); // today-4 ..= today-2
    assert_eq!(
        metrics.over_budget.get(),
        1,
        "still over: the alert stays up"
    );
    let days: Vec<i64> = samples_days(&list_partitions(&client).await.unwrap())
        .iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(days, (today - 1..=today + 3).collect::<Vec<_>>());
    assert_eq!(archive_count(&dir).await, 4 * 2000);
    std::fs::remove_dir_all(&dir).ok();
}

/// The reference: every window of `w` seconds from scratch, written independently of the job's
/// SQL (epoch arithmetic instead of date_bin, sum/count instead of avg).
fn reference_sql(w: i64) -> String {
    let mut e = vec!["count(*) AS samples".to_string()];
    for c in ["cpu", "memory", "response_time_ms"] {
        e.push(format!(
            "sum({c}) / nullif(count({c}), 0) AS {c}_avg, min({c}) AS {c}_min, max({c}) AS {c}_max, \
             percentile_cont(0.95) WITHIN GROUP (ORDER BY {c}) AS {c}_p95"
        ));
    }
    for c in ["requests", "errors"] {
        e.push(format!(
            "sum({c}) AS {c}_sum, sum({c}) / nullif(count({c}), 0) AS {c}_avg, \
             min({c}) AS {c}_min, max({c}) AS {c}_max"
        ));
    }
    e.push(
        "sum(CASE WHEN status = 1 THEN 1 ELSE 0 END) AS degraded_samples, \
         sum(CASE WHEN status = 2 THEN 1 ELSE 0 END) AS down_samples"
            .into(),
    );
    format!(
        "SELECT service_id, to_timestamp(floor(extract(epoch FROM ts) / {w}) * {w}) AS bucket, {} \
         FROM samples WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2",
        e.join(", ")
    )
}

async fn mismatches(
    pool: &deadpool_postgres::Pool,
    res: &aggregates::Resolution,
    from: i64,
    to: i64,
) -> (i64, i64) {
    let checks = aggregates::AGGREGATE_COLUMNS
        .iter()
        .map(|c| {
            format!(
                "((a.{c} IS NULL) <> (r.{c} IS NULL) OR abs(a.{c} - r.{c}) > 1e-9 * greatest(1, abs(r.{c})))"
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!(
        "WITH r AS ({}), a AS (SELECT * FROM {} WHERE bucket >= $1 AND bucket < $2) \
         SELECT count(*) FILTER (WHERE a.service_id IS NULL OR r.service_id IS NULL OR {checks}), count(*) \
         FROM r FULL JOIN a USING (service_id, bucket)",
        reference_sql(res.secs),
        res.table
    );
    let client = pool.get().await.unwrap();
    let from = chrono::DateTime::<chrono::Utc>::from_timestamp(from, 0).unwrap();
    let to = chrono::DateTime::<chrono::Utc>::from_timestamp(to, 0).unwrap();
    let row = client.query_one(&sql, &[&from, &to]).await.unwrap();
    (row.get(0), row.get(1))
}

/// Irregular samples (every 37 s, four services) between `from_ms` and `to_ms`.
async fn fill_range(pool: &deadpool_postgres::Pool, from_ms: i64, to_ms: i64) {
    let client = pool.get().await.unwrap();
    Partitions::default()
        .ensure(&client, "samples", day_of(from_ms)..=day_of(to_ms))
        .await
        .unwrap();
    let n = (to_ms - from_ms) / 37_000;
    client
        .execute(
            "INSERT INTO samples (service_id, ts, series, origin, cpu, memory, response_time_ms, \
                                  requests, errors, status) \
             SELECT 'svc-' || (g % 4), to_timestamp(($1::float8 + g * 37000) / 1000.0), g % 2, 0, \
                    CASE WHEN g % 9 = 0 THEN NULL ELSE ((g * 31) % 100) / 100.0 END, \
                    ((g * 17) % 50) / 50.0, (g * 7919 % 997) / 2.0, (g % 23)::float8, \
                    (g % 3 = 0)::int::float8, (g % 5 % 3)::int2 \
             FROM generate_series(0, $2::int8 - 1) g",
            &[&(from_ms as f64), &n],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn aggregates_are_incremental_idempotent_and_equal_a_from_scratch_computation() {
    let (pool, _) = fresh_store("life_aggregates").await;
    let t2 = now_ms();
    let start = t2 - 2 * DAY_MS - 3_600_000;
    fill_range(&pool, start, t2).await;
    let metrics = LifecycleMetrics::default();
    let cfg = RetentionConfig::default();
    let at = |t: i64| {
        Aggregator::new(AggregatorArgs {
            pool: pool.clone(),
            config: cfg.clone(),
            partitions: Arc::new(Partitions::default()),
            metrics: metrics.clone(),
            clock: Arc::new(move || t),
        })
    };
    // in three steps, as time passes, then once more at the same time
    let first = at(t2 - DAY_MS - 1234).run().await.unwrap();
    let second = at(t2 - 7 * 3_600_000).run().await.unwrap();
    let third = at(t2).run().await.unwrap();
    let again = at(t2).run().await.unwrap();
    assert!(first.rows[0] > 0 && second.rows[0] > 0 && third.rows[0] > 0);
    assert_eq!(again.done_until, third.done_until, "nothing new closed");
    let grace = cfg.aggregate_grace_secs as i64;
    let backfill_from = t2 / 1000 - i64::from(cfg.aggregate_backfill_days) * 86_400;
    for (i, res) in RESOLUTIONS.iter().enumerate() {
        let w = res.secs;
        let closed = (t2 / 1000 - grace).div_euclid(w) * w;
        assert_eq!(third.done_until[i], closed, "{}", res.name);
        let from = backfill_from.div_euclid(w) * w;
        let (bad, total) = mismatches(&pool, res, from, closed).await;
        assert_eq!(bad, 0, "{}: {bad} of {total} windows differ", res.name);
        assert!(total > 0, "{}", res.name);
        // nothing past the watermark
        let ahead = count(
            &pool,
            &format!(
                "SELECT count(*) FROM {} WHERE bucket >= to_timestamp({closed})",
                res.table
            ),
        )
        .await;
        assert_eq!(ahead, 0, "{}", res.name);
    }

    // a late sample in a window that closed within the recheck horizon is folded in
    let late_ts = (t2 / 1000 - grace).div_euclid(300) * 300 - 600 + 7; // two windows back
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO samples (service_id, ts, series, origin, cpu) VALUES ('svc-late', to_timestamp($1::float8), 0, 0, 0.5)",
            &[&(late_ts as f64)],
        )
        .await
        .unwrap();
    at(t2).run().await.unwrap();
    let res = &RESOLUTIONS[0];
    let closed = (t2 / 1000 - grace).div_euclid(300) * 300;
    let (bad, _) = mismatches(&pool, res, closed - 3600, closed).await;
    assert_eq!(bad, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM samples_5m WHERE service_id = 'svc-late'"
        )
        .await,
        1
    );
    let text = crate::telemetry::render(&{
        let mut r = prometheus_client::registry::Registry::default();
        metrics.register(&mut r);
        r
    });
    assert!(
        text.contains("mcpwatch_aggregate_rows_total{resolution=\"5m\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn query_endpoint_is_read_only_limited_and_answers_errors_in_json() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let (pool, _) = fresh_store("life_api").await;
    let dir = archive_dir("api");
    let now = now_ms();
    fill_day(&pool, day_of(now) - 8, 50).await;
    retention(&pool, config(&dir), LifecycleMetrics::default(), now)
        .run_once()
        .await
        .unwrap();
    // the API's test kit (auth off) with the archive behind /v1/query
    let mut state = crate::api::testkit::kit(Default::default()).state;
    state.sql = Some(Arc::new(crate::api::sql::QueryState {
        roots: vec![dir.clone()],
        max_rows: 10,
        timeout: Duration::from_secs(30),
    }));
    let get = |uri: String| {
        let app = crate::api::app(state.clone());
        async move {
            let r = app
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = r.status();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let enc = |s: &str| {
        s.replace(' ', "%20")
            .replace('*', "%2A")
            .replace('\'', "%27")
            .replace('=', "%3D")
    };

    let (status, body) = get(format!(
        "/v1/query?sql={}",
        enc("SELECT count(*) AS n FROM samples")
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"][0]["n"], 50);
    assert_eq!(v["truncated"], false);

    let (status, body) = get(format!("/v1/query?sql={}", enc("SELECT * FROM samples"))).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["row_count"], 10);
    assert_eq!(v["rows"].as_array().unwrap().len(), 10);
    assert_eq!(v["truncated"], true);

    let (status, body) = get(format!(
        "/v1/query?format=csv&sql={}",
        enc("SELECT count(*) AS n FROM samples")
    ))
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "n\n50\n"));

    for bad in [
        "DROP TABLE samples",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "COPY samples TO '/tmp/x.csv'",
        "INSERT INTO samples VALUES (1)",
        "SET datafusion.execution.batch_size = 1",
        "SELECT nope FROM samples",
        "SELEC 1",
    ] {
        let (status, body) = get(format!("/v1/query?sql={}", enc(bad))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "bad_query", "{bad}");
    }
    let (status, _) = get("/v1/query".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(format!("/v1/query?format=xml&sql={}", enc("SELECT 1"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_validation_names_the_key() {
    let mut c = RetentionConfig::default();
    c.validate().unwrap();
    c.tables.insert("samples".into(), 0);
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("retention.tables.samples") && e.contains("fix:"),
        "{e}"
    );
    let mut c = RetentionConfig::default();
    c.tables.insert("Bad-Name".into(), 3);
    assert!(c.validate().is_err());
    let c = RetentionConfig {
        emergency_ratio: 1.5,
        ..RetentionConfig::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("emergency_ratio"));
}
