//! The pipeline end to end inside one process: librdkafka's mock cluster in front, the real
//! PostgreSQL behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::generate::{Traffic, TrafficArgs};
use crate::store::{Partitions, StoreMetrics, Writer, WriterArgs};
use crate::testing::{fresh_store, read_topic, MockKafka};

const TOPIC: &str = "metrics";
const DLQ: &str = "dead";

fn configs(brokers: &str, group: &str) -> (KafkaConfig, IngestConfig) {
    let kafka = KafkaConfig {
        brokers: brokers.to_string(),
        group_id: group.to_string(),
        topics: vec![TOPIC.into()],
        dead_letter_topic: DLQ.into(),
        session_timeout_ms: 6000,
        statistics_interval_ms: 1000,
        ..KafkaConfig::default()
    };
    let ingest = IngestConfig {
        batch_rows: 200,
        flush_interval_ms: 50,
        writers: 2,
        ..IngestConfig::default()
    };
    (kafka, ingest)
}

struct Run {
    metrics: IngestMetrics,
    store: StoreMetrics,
}

/// Runs the pipeline until it consumed `messages` and PostgreSQL's offsets cover them (or
/// 60 s pass), then
/// shuts it down gracefully.
async fn run_until_caught_up(
    pool: &deadpool_postgres::Pool,
    brokers: &str,
    group: &str,
    messages: i64,
) -> Run {
    let (kafka, ingest) = configs(brokers, group);
    let metrics = IngestMetrics::default();
    let store = StoreMetrics::default();
    let shutdown = CancellationToken::new();
    let writer = Writer::new(WriterArgs {
        pool: pool.clone(),
        partitions: Arc::new(Partitions::default()),
        consumer_group: group.to_string(),
        copy_rows: 64,
        metrics: store.clone(),
    });
    let pipeline = Pipeline::start(PipelineArgs {
        kafka,
        ingest,
        writer: Arc::new(writer),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        downstream: None,
        clock: Arc::new(crate::daemon::now_ms),
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT coalesce(sum(next_offset), 0)::bigint FROM ingest_offsets WHERE consumer_group = $1",
                &[&group],
            )
            .await
            .unwrap();
        let covered: i64 = row.get(0);
        let consumed = metrics.messages.get() as i64;
        if (covered >= messages && consumed >= messages) || Instant::now() > deadline {
            assert_eq!(consumed, messages, "messages consumed");
            assert_eq!(covered, messages, "offsets stored in PostgreSQL");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    pipeline.join().await.unwrap();
    Run { metrics, store }
}

async fn stored(pool: &deadpool_postgres::Pool) -> (i64, i64) {
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*), count(DISTINCT (service_id, ts, series)) FROM samples",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_samples_land_exactly_once_and_malformed_ones_in_the_dead_letter_topic() {
    let (pool, _) = fresh_store("ingest_mock").await;
    let kafka = MockKafka::new(&[(TOPIC, 4), (DLQ, 1)]).unwrap();
    let now = crate::daemon::now_ms();
    let mut traffic = Traffic::new(TrafficArgs {
        services: 60,
        samples: 6000,
        malformed_ratio: 0.03,
        start_ms: now - 3_600_000,
        step_ms: 500,
        ..TrafficArgs::default()
    });
    let mut messages: Vec<(String, Vec<u8>)> =
        traffic.by_ref().map(|m| (m.key, m.payload)).collect();
    // hand-made bad messages of every kind, each with a known reason code
    let bad = [
        ("x", "{oops", "invalid_json"),
        ("x", "42", "not_an_object"),
        ("x", r#"{"hello":"world"}"#, "unknown_format"),
        ("x", r#"{"server_id":"a"}"#, "missing_field"),
    ];
    for (k, p, _) in bad {
        messages.push((k.into(), p.as_bytes().to_vec()));
    }
    let tally = traffic.tally;
    let malformed = tally.malformed as usize + bad.len();
    kafka.produce(TOPIC, &messages).unwrap();

    let run = run_until_caught_up(&pool, &kafka.brokers, "g1", messages.len() as i64).await;
    let (rows, distinct) = stored(&pool).await;
    assert_eq!(
        rows as u64,
        tally.valid_total(),
        "every valid sample stored"
    );
    assert_eq!(rows, distinct, "no duplicates");
    assert_eq!(run.store.rows_stored.get(), tally.valid_total());
    let rejected: u64 = [
        "invalid_json",
        "not_an_object",
        "unknown_format",
        "missing_field",
        "invalid_field",
    ]
    .iter()
    .map(|r| run.metrics.rejected(r).get())
    .sum();
    assert_eq!(rejected as usize, malformed);

    let letters = read_topic(&kafka.brokers, DLQ, malformed, Duration::from_secs(20));
    assert_eq!(
        letters.len(),
        malformed,
        "every malformed sample is in the dead-letter topic"
    );
    for (code, reason, payload) in &letters {
        assert!(
            !code.is_empty() && !reason.is_empty(),
            "reason headers on {:?}",
            String::from_utf8_lossy(payload)
        );
    }
    for (_, payload, code) in bad {
        assert!(
            letters
                .iter()
                .any(|(c, _, p)| c == code && p == payload.as_bytes()),
            "{payload} with {code}"
        );
    }

    // A different consumer group replays the whole topic into the same tables: the natural
    // key turns every row into a skipped duplicate.
    let replay = run_until_caught_up(&pool, &kafka.brokers, "g2", messages.len() as i64).await;
    assert_eq!(stored(&pool).await.0 as u64, tally.valid_total());
    assert_eq!(replay.store.duplicates_skipped.get(), tally.valid_total());

    // The crash window: PostgreSQL holds the offsets but Kafka never got the commit. A group
    // whose Kafka offsets are empty but whose PostgreSQL offsets are complete skips it all.
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO ingest_offsets (consumer_group, topic, partition, next_offset) \
             SELECT 'g3', topic, partition, next_offset FROM ingest_offsets WHERE consumer_group = 'g1'",
            &[],
        )
        .await
        .unwrap();
    let resumed = run_until_caught_up(&pool, &kafka.brokers, "g3", messages.len() as i64).await;
    assert_eq!(resumed.metrics.replayed.get() as usize, messages.len());
    assert_eq!(resumed.store.duplicates_skipped.get(), 0);
    assert_eq!(resumed.metrics.samples_decoded.get(), 0);
}
