//! Store tests against the real PostgreSQL on this machine.

use std::sync::Arc;

use super::*;
use crate::sample::{Origin, Sample, Status};
use crate::testing::fresh_store;

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
        metrics: StoreMetrics::default(),
    })
}

async fn count(pool: &deadpool_postgres::Pool, sql: &str) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
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
