//! Store tests against the real PostgreSQL on this machine.

use std::sync::Arc;

use super::*;
use crate::sample::{Origin, Sample, Status};
use crate::testing::{count, fresh_store};

fn sample(service: &str, ts_ms: i64, series: i64) -> Sample {
    let mut s = Sample::new(service, ts_ms, Origin::Mcp);
    s.series = series;
    s.cpu = Some(0.25);
    s.status = Some(Status::Healthy);
    s.instance_id = Some("i-1".into());
    s
}

fn offset(partition: i32, next: i64) -> PartitionOffset {
    PartitionOffset {
        topic: "t".into(),
        partition,
        next,
    }
}

fn writer(pool: &deadpool_postgres::Pool) -> Writer {
    Writer::new(WriterArgs {
        pool: pool.clone(),
        partitions: Arc::new(Partitions::default()),
        consumer_group: "g".into(),
        copy_rows: 1000,
        metrics: StoreMetrics::default(),
    })
}

#[tokio::test]
async fn migrations_are_idempotent_and_partitions_exist_ahead() {
    let (pool, config) = fresh_store("migrate").await;
    let mut client = pool.get().await.unwrap();
    assert_eq!(
        migrate(&mut client, &config.schema).await.unwrap(),
        0,
        "second run applies nothing"
    );
    let parts = count(
        &pool,
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'test_migrate' \
         AND c.relkind = 'r' AND c.relname LIKE 'samples_p%'",
    )
    .await;
    assert_eq!(parts, 1 + i64::from(config.partitions_ahead_days));
}

#[tokio::test]
async fn batches_land_once_with_their_offsets_and_replays_are_skipped() {
    let (pool, _) = fresh_store("write").await;
    let w = writer(&pool);
    let day = 86_400_000;
    let now = crate::daemon::now_ms();
    // three days, so two partitions must be created on the fly (yesterday, day before)
    let batch: Vec<Sample> = (0..3000)
        .map(|i| sample(&format!("svc-{}", i % 7), now - (i % 3) * day - i, i))
        .collect();
    let out = w
        .write(&batch, &[offset(0, 100), offset(1, 50)])
        .await
        .unwrap();
    assert_eq!(
        out,
        WriteOutcome {
            inserted: 3000,
            duplicates: 0
        }
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 3000);

    // the same batch again (a replay): nothing new, offsets never move back
    let out = w.write(&batch, &[offset(0, 90)]).await.unwrap();
    assert_eq!(
        out,
        WriteOutcome {
            inserted: 0,
            duplicates: 3000
        }
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 3000);
    let mut stored = w.stored_offsets("t").await.unwrap();
    stored.sort();
    assert_eq!(stored, vec![(0, 100), (1, 50)]);

    // duplicates inside one batch plus one new row
    let mut mixed = vec![sample("svc-new", now, 1), sample("svc-new", now, 1)];
    mixed.push(batch[0].clone());
    let out = w.write(&mixed, &[offset(0, 101)]).await.unwrap();
    assert_eq!(
        out,
        WriteOutcome {
            inserted: 1,
            duplicates: 2
        }
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 3001);
}

#[tokio::test]
async fn a_failed_gate_rolls_the_batch_back_and_a_passed_one_commits_it() {
    let (pool, _) = fresh_store("gate").await;
    let w = writer(&pool);
    let now = crate::daemon::now_ms();
    let batch: Vec<Sample> = (0..500).map(|i| sample("svc-g", now - i, i)).collect();
    // the gate fails only after the rows are in the open transaction
    let gate: CommitGate<'_> = Box::pin(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err("kafka is down".to_string())
    });
    let err = w
        .write_gated(&batch, &[offset(0, 10)], gate)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Held(why) if why == "kafka is down"),
        "{err}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 0);
    assert!(w.stored_offsets("t").await.unwrap().is_empty());

    // the retry: a gate that passes after the rows are copied commits both
    let gate: CommitGate<'_> = Box::pin(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Ok(())
    });
    let out = w.write_gated(&batch, &[offset(0, 10)], gate).await.unwrap();
    assert_eq!(out.inserted, 500);
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 500);
    assert_eq!(w.stored_offsets("t").await.unwrap(), vec![(0, 10)]);
}

/// The `_count` of one of the store's histograms (with `labels`, e.g. `{stage="commit"}`),
/// read back through the text exposition.
fn observations(m: &StoreMetrics, name: &str, labels: &str) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    m.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let prefix = format!("{name}_count{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_long_write_is_several_copies_in_one_transaction() {
    let (pool, _) = fresh_store("grouped").await;
    let metrics = StoreMetrics::default();
    let w = Writer::new(WriterArgs {
        pool: pool.clone(),
        partitions: Arc::new(Partitions::default()),
        consumer_group: "g".into(),
        copy_rows: 100,
        metrics: metrics.clone(),
    });
    let now = crate::daemon::now_ms();
    let rows: Vec<Sample> = (0..250).map(|i| sample("svc-long", now - i, i)).collect();

    // a gate that fails after all three COPYs rolls every one of them back
    let gate: CommitGate<'_> = Box::pin(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err("kafka is down".to_string())
    });
    assert!(w.write_gated(&rows, &[offset(0, 3)], gate).await.is_err());
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 0);
    let copy = "mcpwatch_store_copy_duration_seconds";
    assert_eq!(observations(&metrics, copy, ""), 3, "100 + 100 + 50 rows");

    let out = w.write(&rows, &[offset(0, 3)]).await.unwrap();
    assert_eq!(out.inserted, 250);
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 250);
    assert_eq!(w.stored_offsets("t").await.unwrap(), vec![(0, 3)]);
    assert_eq!(observations(&metrics, copy, ""), 6);
    let stage = "mcpwatch_store_stage_duration_seconds";
    assert_eq!(observations(&metrics, stage, "{stage=\"commit\"}"), 1);
    assert_eq!(observations(&metrics, stage, "{stage=\"begin\"}"), 2);
    assert_eq!(observations(&metrics, stage, "{stage=\"gate\"}"), 1);

    // a replay whose duplicates straddle the COPYs goes through staging as a whole
    let mut replay = rows[150..].to_vec();
    replay.extend((250..300).map(|i| sample("svc-long", now - i, i)));
    let out = w.write(&replay, &[offset(0, 4)]).await.unwrap();
    assert_eq!(
        out,
        WriteOutcome {
            inserted: 50,
            duplicates: 100
        }
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 300);
    assert_eq!(observations(&metrics, stage, "{stage=\"dedupe\"}"), 1);

    // duplicates only in the last COPY, the one the offsets upsert is pipelined behind: the
    // upsert fails with the aborted transaction, the unique violation is what is reported,
    // and the staged retry stores the new rows and advances the offsets once
    let mut replay = (300..400)
        .map(|i| sample("svc-long", now - i, i))
        .collect::<Vec<_>>();
    replay.extend_from_slice(&rows[..50]);
    let out = w.write(&replay, &[offset(0, 5)]).await.unwrap();
    assert_eq!(
        out,
        WriteOutcome {
            inserted: 100,
            duplicates: 50
        }
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 400);
    assert_eq!(w.stored_offsets("t").await.unwrap(), vec![(0, 5)]);
    assert_eq!(observations(&metrics, stage, "{stage=\"dedupe\"}"), 2);
}

#[tokio::test]
async fn offsets_only_batches_advance_progress() {
    let (pool, _) = fresh_store("offsets_only").await;
    let w = writer(&pool);
    w.write(&[], &[offset(3, 7)]).await.unwrap();
    assert_eq!(w.stored_offsets("t").await.unwrap(), vec![(3, 7)]);
}

#[tokio::test]
async fn every_field_round_trips() {
    let (pool, _) = fresh_store("roundtrip").await;
    let now = crate::daemon::now_ms();
    let mut s = Sample::new("github", now, Origin::Prometheus);
    s.series = -42;
    s.cpu = Some(0.5);
    s.memory = Some(0.75);
    s.response_time_ms = Some(12.5);
    s.requests = Some(30.0);
    s.errors = Some(1.0);
    s.status = Some(Status::Down);
    s.event = Some(crate::sample::Lifecycle::Remove);
    s.instance_id = Some("i-ü".into());
    s.host = Some("h".into());
    s.platform = Some("linux".into());
    writer(&pool).write(&[s.clone()], &[]).await.unwrap();
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT service_id, (extract(epoch from ts) * 1000)::bigint, series, origin, cpu, memory, \
             response_time_ms, requests, errors, status, event, instance_id, host, platform FROM samples",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "github");
    assert_eq!(row.get::<_, i64>(1), now);
    assert_eq!(row.get::<_, i64>(2), -42);
    assert_eq!(row.get::<_, i16>(3), 1);
    assert_eq!(row.get::<_, Option<f64>>(4), Some(0.5));
    assert_eq!(row.get::<_, Option<f64>>(5), Some(0.75));
    assert_eq!(row.get::<_, Option<f64>>(6), Some(12.5));
    assert_eq!(row.get::<_, Option<f64>>(7), Some(30.0));
    assert_eq!(row.get::<_, Option<f64>>(8), Some(1.0));
    assert_eq!(row.get::<_, Option<i16>>(9), Some(2));
    assert_eq!(row.get::<_, Option<i16>>(10), Some(2));
    assert_eq!(row.get::<_, Option<String>>(11).as_deref(), Some("i-ü"));
    assert_eq!(row.get::<_, Option<String>>(12).as_deref(), Some("h"));
    assert_eq!(row.get::<_, Option<String>>(13).as_deref(), Some("linux"));
}

/// What the writer stored comes back field for field, per service, oldest first, within each
/// range only, and capped to the newest rows.
#[tokio::test]
async fn samples_read_back_as_written_within_their_ranges() {
    use super::read::{samples_in, SampleRange};
    let (pool, _) = fresh_store("read_back").await;
    let day = 1_763_683_200_000; // 2025-11-21T00:00Z
    let mut batch = Vec::new();
    for k in 0..10 {
        let mut s = sample("a", day + k * 60_000, 7);
        s.origin = Origin::Prometheus;
        s.memory = Some(0.5 + k as f64 / 100.0);
        s.response_time_ms = Some(12.5);
        s.requests = Some(k as f64);
        s.errors = Some(1.0);
        s.status = Some(Status::Down);
        s.event = Some(crate::sample::Lifecycle::Update);
        s.host = Some("h-1".into());
        s.platform = Some("linux".into());
        batch.push(s);
        batch.push(sample("b", day + k * 60_000, 1));
    }
    writer(&pool).write(&batch, &[offset(0, 20)]).await.unwrap();
    let client = pool.get().await.unwrap();
    let ranges = [
        SampleRange {
            service_id: "a".into(),
            from_ms: day + 2 * 60_000,
            until_ms: day + 8 * 60_000,
        },
        SampleRange {
            service_id: "b".into(),
            from_ms: day,
            until_ms: day + 60 * 60_000,
        },
    ];
    let got = samples_in(&client, &ranges, 1000).await.unwrap();
    let want: Vec<&Sample> = batch
        .iter()
        .filter(|s| s.service_id == "b" || (s.ts_ms >= day + 120_000 && s.ts_ms < day + 480_000))
        .collect();
    let mut want: Vec<Sample> = want.into_iter().cloned().collect();
    want.sort_by(|x, y| (&x.service_id, x.ts_ms).cmp(&(&y.service_id, y.ts_ms)));
    assert_eq!(got, want);
    // capped: the newest rows win
    let capped = samples_in(&client, &ranges[1..], 3).await.unwrap();
    let ts: Vec<i64> = capped.iter().map(|s| s.ts_ms - day).collect();
    assert_eq!(ts, [7 * 60_000, 8 * 60_000, 9 * 60_000]);
}
