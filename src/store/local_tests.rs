//! The embedded store on a temporary folder: commits, crash recovery, compaction, retention
//! into the archive, DataFusion reads, and the ingest pipeline running on it.

use std::time::Duration;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};

use super::*;
use crate::lifecycle::query::{context_over, run_query};
use crate::sample::{Origin, Status};

const DAY_MS: i64 = 86_400_000;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcpwatch-local-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn open(root: &Path) -> LocalStore {
    LocalStore::open(LocalStoreArgs {
        root: root.to_path_buf(),
        consumer_group: "g".into(),
        metrics: StoreMetrics::default(),
    })
    .unwrap()
}

fn sample(i: i64, ts_ms: i64) -> Sample {
    let mut s = Sample::new(format!("svc-{}", i % 3), ts_ms, Origin::Mcp);
    s.series = i;
    s.cpu = (i % 4 != 0).then_some((i % 10) as f64 / 10.0);
    s.requests = Some(i as f64);
    s.status = Some(Status::Degraded);
    s.host = (i % 2 == 0).then(|| format!("h{i}"));
    s
}

fn offset(partition: i32, next: i64) -> PartitionOffset {
    PartitionOffset {
        topic: "t".into(),
        partition,
        next,
    }
}

/// The first batch of `sql`'s answer over every root, read by DataFusion.
async fn first_batch(roots: &[PathBuf], sql: &str) -> RecordBatch {
    let ctx = context_over(roots).await.unwrap();
    let r = run_query(&ctx, sql, None, Duration::from_secs(30))
        .await
        .unwrap();
    r.batches[0].clone()
}

/// (rows, sum of requests) over every root, read by DataFusion.
async fn totals(roots: &[PathBuf]) -> (i64, f64) {
    let b = first_batch(
        roots,
        "SELECT count(*) AS n, sum(requests) AS s FROM samples",
    )
    .await;
    (
        b.column(0).as_primitive::<Int64Type>().value(0),
        b.column(1).as_primitive::<Float64Type>().value(0),
    )
}

/// `n` samples from `first`, one per minute ending just before `end_ms`, spanning midnight.
fn batch(first: i64, n: i64, end_ms: i64) -> Vec<Sample> {
    (first..first + n)
        .map(|i| sample(i, end_ms - (first + n - i) * 60_000))
        .collect()
}

fn requests_sum(samples: &[Sample]) -> f64 {
    samples.iter().filter_map(|s| s.requests).sum()
}

#[tokio::test]
async fn batches_commit_with_their_offsets_and_survive_a_reopen() {
    let root = dir("commit");
    let store = open(&root);
    let midnight = crate::daemon::now_ms().div_euclid(DAY_MS) * DAY_MS;
    let a = batch(0, 100, midnight + 30 * 60_000); // spans two days
    let b = batch(100, 50, midnight + 3_600_000);
    store
        .write(&a, &[offset(0, 10), offset(1, 5)])
        .await
        .unwrap();
    store.write(&b, &[offset(0, 20)]).await.unwrap();
    store.write(&[], &[offset(2, 7)]).await.unwrap(); // offsets-only batch
    let mut got = store.stored_offsets("t").await.unwrap();
    got.sort();
    assert_eq!(got, vec![(0, 20), (1, 5), (2, 7)]);
    assert_eq!(store.days().unwrap().len(), 2);
    drop(store);
    let store = open(&root);
    let mut got = store.stored_offsets("t").await.unwrap();
    got.sort();
    assert_eq!(got, vec![(0, 20), (1, 5), (2, 7)], "recovered from disk");
    assert!(store.stored_offsets("other").await.unwrap().is_empty());
    let (n, s) = totals(std::slice::from_ref(&root)).await;
    assert_eq!(n, 150);
    assert_eq!(s, requests_sum(&a) + requests_sum(&b));
    std::fs::remove_dir_all(&root).ok();
}

#[tokio::test]
async fn a_failed_gate_writes_nothing() {
    let root = dir("gate");
    let store = open(&root);
    let a = batch(0, 100, crate::daemon::now_ms());
    let gate: CommitGate<'_> = Box::pin(async { Err("kafka is down".to_string()) });
    let err = store
        .write_gated(&a, &[offset(0, 10)], gate)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Held(_)), "{err}");
    assert!(store.stored_offsets("t").await.unwrap().is_empty());
    assert!(store.days().unwrap().is_empty(), "no segment written");
    store.write(&a, &[offset(0, 10)]).await.unwrap();
    assert_eq!(store.stored_offsets("t").await.unwrap(), vec![(0, 10)]);
}

#[tokio::test]
async fn a_crash_mid_batch_is_discarded_and_a_crash_before_the_checkpoint_is_kept() {
    let root = dir("crash");
    let store = open(&root);
    let midnight = crate::daemon::now_ms().div_euclid(DAY_MS) * DAY_MS;
    let a = batch(0, 40, midnight + 10 * 60_000); // two days: two segments
    store.write(&a, &[offset(0, 4)]).await.unwrap();
    let checkpoint = root.join("_offsets").join("g.json");
    let after_a = std::fs::read(&checkpoint).unwrap();
    // batch 2 commits, but the crash hits before its checkpoint: its segments are the record
    let b = batch(40, 40, midnight + 20 * 60_000);
    store.write(&b, &[offset(0, 8)]).await.unwrap();
    std::fs::write(&checkpoint, &after_a).unwrap();
    // batch 3 crashes after its first segment of two, with a temp file of the second
    let c = batch(80, 40, midnight + 30 * 60_000);
    store.write(&c, &[offset(0, 12)]).await.unwrap();
    drop(store);
    let seg3: Vec<PathBuf> = [midnight - DAY_MS, midnight]
        .iter()
        .flat_map(|d| std::fs::read_dir(open_dir(&root, *d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("seg-0000000000000003"))
        .collect();
    assert_eq!(seg3.len(), 2);
    std::fs::remove_file(&seg3[1]).unwrap();
    std::fs::write(seg3[1].with_extension("arrow.tmp"), b"half").unwrap();
    std::fs::write(&checkpoint, &after_a).unwrap();

    let store = open(&root);
    assert_eq!(store.stored_offsets("t").await.unwrap(), vec![(0, 8)]);
    let (n, s) = totals(std::slice::from_ref(&root)).await;
    assert_eq!(n, 80, "batches 1 and 2; batch 3 is replayed from Kafka");
    assert_eq!(s, requests_sum(&a) + requests_sum(&b));
    assert!(!seg3[0].exists() && !seg3[1].with_extension("arrow.tmp").exists());
    // the replay of batch 3 lands once, with a fresh sequence number
    store.write(&c, &[offset(0, 12)]).await.unwrap();
    assert_eq!(totals(std::slice::from_ref(&root)).await.0, 120);
    std::fs::remove_dir_all(&root).ok();
}

fn open_dir(root: &Path, day_ms: i64) -> PathBuf {
    root.join("samples").join(format!(
        "day={}",
        crate::lifecycle::catalog::day_string(day_ms.div_euclid(DAY_MS))
    ))
}

#[tokio::test]
async fn compaction_merges_a_day_and_a_crash_before_the_cleanup_counts_nothing_twice() {
    let root = dir("compact");
    let store = open(&root);
    let today = crate::daemon::now_ms().div_euclid(DAY_MS);
    let noon = today * DAY_MS + DAY_MS / 2;
    let mut expected = 0.0;
    for k in 0..5 {
        let b = batch(k * 10, 10, noon + k * 3_600_000);
        expected += requests_sum(&b);
        store.write(&b, &[offset(0, k + 1)]).await.unwrap();
    }
    assert_eq!(store.compact_day(today).await.unwrap(), 50);
    let files: Vec<String> = std::fs::read_dir(store.day_dir(today))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, vec![PART_FILE.to_string()]);
    assert_eq!(totals(std::slice::from_ref(&root)).await, (50, expected));

    // more segments; compaction crashes after writing the part file, before deleting them
    let b = batch(50, 10, noon + 6 * 3_600_000);
    expected += requests_sum(&b);
    store.write(&b, &[offset(0, 6)]).await.unwrap();
    let seg = std::fs::read_dir(store.day_dir(today))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("seg-"))
        .unwrap();
    let kept = std::fs::read(&seg).unwrap();
    assert_eq!(store.compact_day(today).await.unwrap(), 60);
    std::fs::write(&seg, kept).unwrap();
    drop(store);
    let store = open(&root);
    assert!(
        !seg.exists(),
        "a segment the part file already holds is removed on open"
    );
    assert_eq!(totals(std::slice::from_ref(&root)).await, (60, expected));
    assert_eq!(store.stored_offsets("t").await.unwrap(), vec![(0, 6)]);
    std::fs::remove_dir_all(&root).ok();
}

#[tokio::test]
async fn retention_moves_expired_days_into_the_archive_and_queries_span_both() {
    let root = dir("retire");
    let archive = dir("retire-archive");
    let store = open(&root);
    let today = crate::daemon::now_ms().div_euclid(DAY_MS);
    let old = batch(0, 30, (today - 9) * DAY_MS + DAY_MS / 2);
    let new = batch(30, 20, today * DAY_MS + 3_600_000);
    store.write(&old, &[offset(0, 1)]).await.unwrap();
    store.write(&new, &[offset(0, 2)]).await.unwrap();
    let retired = store.retire_before(today, 7, Some(&archive)).await.unwrap();
    assert_eq!(retired, vec![today - 9]);
    assert_eq!(store.days().unwrap(), vec![today]);
    let a = crate::lifecycle::Archive::new(&archive);
    let m = a.read_manifest("samples", today - 9).unwrap().unwrap();
    assert_eq!(a.verify(&m).unwrap(), 30);
    assert_eq!(totals(std::slice::from_ref(&root)).await.0, 20);
    assert_eq!(totals(std::slice::from_ref(&archive)).await.0, 30);
    assert_eq!(
        totals(&[root.clone(), archive.clone()]).await,
        (50, requests_sum(&old) + requests_sum(&new))
    );
    // without an archive the day is deleted
    let store2 = open(&dir("retire-drop"));
    store2.write(&old, &[]).await.unwrap();
    assert_eq!(
        store2.retire_before(today, 7, None).await.unwrap(),
        vec![today - 9]
    );
    assert!(store2.days().unwrap().is_empty());
    for d in [root, archive, store2.root().to_path_buf()] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// The production ingest pipeline on the embedded store: librdkafka's mock cluster in front,
/// Arrow files behind, every valid sample exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_pipeline_runs_on_the_embedded_store() {
    use crate::generate::{Traffic, TrafficArgs};
    use crate::ingest::{IngestConfig, IngestMetrics, KafkaConfig, Pipeline, PipelineArgs};
    use tokio_util::sync::CancellationToken;

    let root = dir("pipeline");
    let kafka = crate::testing::MockKafka::new(&[("m", 3), ("dead", 1)]).unwrap();
    let now = crate::daemon::now_ms();
    let mut traffic = Traffic::new(TrafficArgs {
        services: 20,
        samples: 3000,
        malformed_ratio: 0.02,
        start_ms: now - 3_600_000,
        step_ms: 1000,
        ..TrafficArgs::default()
    });
    let messages: Vec<(String, Vec<u8>)> = traffic.by_ref().map(|m| (m.key, m.payload)).collect();
    let tally = traffic.tally;
    kafka.produce("m", &messages).unwrap();
    let store = LocalStore::open(LocalStoreArgs {
        root: root.clone(),
        consumer_group: "demo".into(),
        metrics: StoreMetrics::default(),
    })
    .unwrap();
    let shutdown = CancellationToken::new();
    let metrics = IngestMetrics::default();
    let pipeline = Pipeline::start(PipelineArgs {
        kafka: KafkaConfig {
            brokers: kafka.brokers.clone(),
            group_id: "demo".into(),
            topics: vec!["m".into()],
            dead_letter_topic: "dead".into(),
            session_timeout_ms: 6000,
            ..KafkaConfig::default()
        },
        ingest: IngestConfig {
            batch_rows: 200,
            flush_interval_ms: 50,
            ..IngestConfig::default()
        },
        writer: Arc::new(store.clone()),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        downstream: None,
        clock: Arc::new(crate::daemon::now_ms),
    })
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let covered: i64 = store
            .stored_offsets("m")
            .await
            .unwrap()
            .iter()
            .map(|o| o.1)
            .sum();
        if covered >= messages.len() as i64 || std::time::Instant::now() > deadline {
            assert_eq!(
                covered,
                messages.len() as i64,
                "offsets stored with the rows"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    pipeline.join().await.unwrap();
    let ctx = context_over(std::slice::from_ref(&root)).await.unwrap();
    let r = run_query(
        &ctx,
        "SELECT (SELECT count(*) FROM samples) AS n, \
         (SELECT count(*) FROM (SELECT DISTINCT service_id, ts, series FROM samples)) AS d",
        None,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let b = &r.batches[0];
    let (n, d) = (
        b.column(0).as_primitive::<Int64Type>().value(0),
        b.column(1).as_primitive::<Int64Type>().value(0),
    );
    assert_eq!(n as u64, tally.valid_total(), "every valid sample stored");
    assert_eq!(n, d, "no duplicates");
    std::fs::remove_dir_all(&root).ok();
}

/// A table of the embedded store beyond `samples` (what `anomalies` and `plans` use): appends
/// land in daily folders that DataFusion reads, compaction keeps every row once (also when a
/// crash left the merged segments behind), a reopen continues the sequence, and retention
/// moves expired days into the archive, where queries still find them.
#[tokio::test]
async fn other_tables_append_compact_reopen_and_retire() {
    use datafusion::arrow::array::{Int64Array, StringArray};
    let root = dir("tables");
    let archive = dir("tables-archive");
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let rows = |names: &[&str], n: i64| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names.to_vec())) as ArrayRef,
                Arc::new(Int64Array::from(vec![n; names.len()])),
            ],
        )
        .unwrap()
    };
    let count = |roots: Vec<PathBuf>| async move {
        let b = first_batch(&roots, "SELECT count(*) AS c, sum(n) AS s FROM events").await;
        (
            b.column(0).as_primitive::<Int64Type>().value(0),
            b.column(1).as_primitive::<Int64Type>().value(0),
        )
    };
    let store = open(&root);
    assert!(store.table("samples", schema.clone()).is_err());
    assert!(store.table("../x", schema.clone()).is_err());
    let table = store.table("events", schema.clone()).unwrap();
    // the same table whoever asks, and never with another schema
    assert_eq!(store.tables().len(), 1);
    assert!(store.table("events", Arc::new(samples_schema())).is_err());
    let today = day_of(crate::daemon::now_ms());
    table
        .append(today - 10, rows(&["a", "b"], 1))
        .await
        .unwrap();
    table.append(today, rows(&["c"], 10)).await.unwrap();
    table.append(today, rows(&["d", "e"], 100)).await.unwrap();
    table.append(today, rows(&[], 5)).await.unwrap(); // nothing written
    assert_eq!(count(vec![root.clone()]).await, (5, 212));
    let read: usize = table
        .read_from(today)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(read, 3, "only the days asked for");

    // compaction: one part file; a crash before the merged segments were deleted (simulated
    // by putting one back) counts nothing twice after a reopen
    let day_dir = table.day_dir(today);
    let seg = std::fs::read_dir(&day_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("seg-"))
        .unwrap();
    let kept = std::fs::read(&seg).unwrap();
    assert_eq!(table.compact_day(today).await.unwrap(), 3);
    assert_eq!(std::fs::read_dir(&day_dir).unwrap().count(), 1);
    std::fs::write(&seg, kept).unwrap();
    drop((table, store));
    let store = open(&root);
    let table = store.table("events", schema.clone()).unwrap();
    assert!(!seg.exists(), "a compacted segment is removed on open");
    assert_eq!(count(vec![root.clone()]).await, (5, 212));
    // the sequence goes on past what the part file holds: a new segment is not mistaken for
    // a compacted one
    table.append(today, rows(&["f"], 1000)).await.unwrap();
    drop((table, store));
    let store = open(&root);
    let table = store.table("events", schema.clone()).unwrap();
    assert_eq!(count(vec![root.clone()]).await, (6, 1212));

    // retention: the day 10 days back goes to the archive, today stays
    let retired = table
        .retire_before(today, 7, Some(archive.clone()))
        .await
        .unwrap();
    assert_eq!(retired, vec![today - 10]);
    assert!(!table.day_dir(today - 10).exists());
    assert!(crate::lifecycle::Archive::new(&archive)
        .day_dir("events", today - 10)
        .join(crate::lifecycle::archive::MANIFEST_FILE)
        .is_file());
    assert_eq!(count(vec![root.clone()]).await, (4, 1210));
    assert_eq!(count(vec![root.clone(), archive.clone()]).await, (6, 1212));
    std::fs::remove_dir_all(&root).ok();
    std::fs::remove_dir_all(&archive).ok();
}
