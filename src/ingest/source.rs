//! The Kafka source: one OS thread that owns the consumer, decodes every message and hands
//! batches to the writer tasks.
//!
//! Partitions are pinned to writers (each newly seen partition to the writer holding the
//! fewest, released on revocation), so the batches of one partition are committed in order
//! and its offset in PostgreSQL only moves forward, while every writer gets an equal share of
//! the partitions: a writer with more than its share would stall the source on its full
//! queue while the others sit idle.
//! Kafka offsets are committed only after a writer acknowledges the batch (rows and
//! offsets committed in PostgreSQL). On assignment the source reads PostgreSQL's offsets and
//! skips anything below them, so the window between the PostgreSQL commit and the Kafka
//! commit cannot produce duplicates after a crash. On revocation it flushes, waits for every
//! in-flight batch and commits synchronously before letting the partitions go.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::config::{IngestConfig, KafkaConfig};
use super::decode::{Decoded, Decoder};
use super::dlq::DeadLetter;
use super::metrics::IngestMetrics;
use super::IngestError;
use crate::sample::Sample;
use crate::store::PartitionOffset;

/// Work for one writer: samples to store, dead letters to publish, offsets to advance.
#[derive(Debug, Default)]
pub struct Batch {
    pub samples: Vec<Sample>,
    pub dead: Vec<DeadLetter>,
    pub offsets: Vec<PartitionOffset>,
    pub messages: usize,
    opened: Option<Instant>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Raises the batch's offset for one partition (never lowers it).
    pub(super) fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        match self
            .offsets
            .iter_mut()
            .find(|o| o.partition == partition && o.topic == topic)
        {
            Some(o) => o.next = o.next.max(next),
            None => self.offsets.push(PartitionOffset {
                topic: topic.to_string(),
                partition,
                next,
            }),
        }
    }
}

/// A writer's report that a batch is durable.
#[derive(Debug)]
pub struct Ack {
    pub offsets: Vec<PartitionOffset>,
}

/// Looks up the offsets PostgreSQL holds for a topic: `(partition, next_offset)`.
pub type OffsetLoader = Arc<dyn Fn(&str) -> Result<Vec<(i32, i64)>, String> + Send + Sync>;

/// Constructor arguments for [`Source`].
pub struct SourceArgs {
    pub kafka: KafkaConfig,
    pub ingest: IngestConfig,
    /// One bounded queue per writer task; the source blocks when one is full.
    pub writers: Vec<Sender<Batch>>,
    /// Acknowledgements from the writer tasks.
    pub acks: Receiver<Ack>,
    pub stored_offsets: OffsetLoader,
    pub metrics: IngestMetrics,
    pub shutdown: CancellationToken,
    /// Wall clock in epoch ms, injected so tests control validation windows.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// Everything the poll loop and the rebalance callbacks share. Only the source thread
/// touches it (callbacks run inside `poll` on that thread), so the mutex is never contended.
struct Flow {
    batches: Vec<Batch>,
    /// The writer each partition seen since its assignment is pinned to, by topic then
    /// partition (looked up per message without allocating a key).
    pinned: HashMap<String, HashMap<i32, usize>>,
    /// Writer queues; dropped (set to empty) at shutdown so the writers drain and exit.
    writers: Vec<Sender<Batch>>,
    /// Acknowledgements; disconnected once every writer task has exited.
    acks: Receiver<Ack>,
    inflight: usize,
    /// Offsets acknowledged but not yet committed to Kafka.
    to_commit: HashMap<(String, i32), i64>,
    /// Per topic, then partition: messages below this offset are already in PostgreSQL
    /// (looked up per message without allocating a key, like `pinned`).
    skip_below: HashMap<String, HashMap<i32, i64>>,
    decoder: Decoder,
    scratch: Decoded,
    batch_rows: usize,
    flush_after: Duration,
    metrics: IngestMetrics,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// The consumer's context: rebalance hooks, statistics and errors.
pub struct SourceContext {
    flow: Mutex<Flow>,
    stored_offsets: OffsetLoader,
    metrics: IngestMetrics,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let up = stats.brokers.values().any(|b| b.state == "UP");
        self.metrics.kafka_up.set(i64::from(up));
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .consumer_lag
                    .get_or_create(&vec![
                        ("topic", topic.clone()),
                        ("partition", partition.to_string()),
                    ])
                    .set(p.consumer_lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.metrics.kafka_up.set(0);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.metrics
                .rebalances
                .get_or_create(&vec![("kind", "revoke".to_string())])
                .inc();
            tracing::info!(
                partitions = tpl.count(),
                "partitions revoked: flushing and committing"
            );
            let mut flow = self.flow.lock().expect("flow poisoned");
            flow.flush_all();
            flow.wait_idle(consumer, Duration::from_secs(60));
            for elem in tpl.elements() {
                let (topic, partition) = (elem.topic(), elem.partition());
                if let Some(t) = flow.skip_below.get_mut(topic) {
                    t.remove(&partition);
                }
                // nothing of it is in flight any more: it may go to another writer next time
                if let Some(t) = flow.pinned.get_mut(topic) {
                    t.remove(&partition);
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.metrics
                .rebalances
                .get_or_create(&vec![("kind", "assign".to_string())])
                .inc();
            let mut topics: Vec<String> = tpl
                .elements()
                .iter()
                .map(|e| e.topic().to_string())
                .collect();
            topics.sort();
            topics.dedup();
            let mut flow = self.flow.lock().expect("flow poisoned");
            for topic in topics {
                match (self.stored_offsets)(&topic) {
                    Ok(offsets) => flow
                        .skip_below
                        .entry(topic.clone())
                        .or_default()
                        .extend(offsets),
                    // Without them a replay may re-send rows; the natural key still
                    // de-duplicates them in PostgreSQL, so go on.
                    Err(e) => tracing::warn!(%topic, error = %e, "could not read stored offsets"),
                }
            }
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

impl Flow {
    /// The writer `partition` is pinned to; a partition seen for the first time goes to the
    /// writer with the fewest partitions.
    fn writer_for(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(&w) = self.pinned.get(topic).and_then(|t| t.get(&partition)) {
            return w;
        }
        let pinned = self.pinned.values().flat_map(|t| t.values().copied());
        let w = least_loaded(self.batches.len(), pinned);
        self.pinned
            .entry(topic.to_string())
            .or_default()
            .insert(partition, w);
        w
    }

    fn on_message(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        if let Some(&below) = self.skip_below.get(topic).and_then(|t| t.get(&partition)) {
            if offset < below {
                self.metrics.replayed.inc();
                return;
            }
        }
        let w = self.writer_for(topic, partition);
        let now = (self.clock)();
        let mut decoded = std::mem::take(&mut self.scratch);
        decoded.clear();
        match payload {
            Some(p) => {
                self.metrics.bytes.inc_by(p.len() as u64);
                self.decoder.decode(p, now, &mut decoded);
            }
            None => decoded.rejected.push(super::decode::Rejected {
                bytes: Vec::new(),
                reason: super::decode::RejectReason::InvalidJson("empty message".into()),
            }),
        }
        let batch = &mut self.batches[w];
        batch.opened.get_or_insert_with(Instant::now);
        batch.messages += 1;
        self.metrics
            .samples_decoded
            .inc_by(decoded.samples.len() as u64);
        batch.samples.append(&mut decoded.samples);
        for r in decoded.rejected.drain(..) {
            self.metrics.rejected(r.reason.label()).inc();
            batch.dead.push(DeadLetter {
                topic: topic.to_string(),
                partition,
                offset,
                key: key.map(<[u8]>::to_vec),
                bytes: r.bytes,
                reason: r.reason.to_string(),
                code: r.reason.label(),
            });
        }
        if decoded.skipped.unmapped > 0 {
            self.metrics
                .skipped("unmapped_metric")
                .inc_by(decoded.skipped.unmapped);
        }
        if decoded.skipped.non_finite > 0 {
            self.metrics
                .skipped("non_finite")
                .inc_by(decoded.skipped.non_finite);
        }
        batch.advance(topic, partition, offset + 1);
        self.scratch = decoded;
        if batch.samples.len() + batch.dead.len() >= self.batch_rows {
            self.send(w);
        }
    }

    fn send(&mut self, w: usize) {
        if self.batches[w].is_empty() {
            return;
        }
        // sized up front: growing a batch of ~200-byte samples by doubling copies it twice over
        let fresh = Batch {
            samples: Vec::with_capacity(self.batch_rows.min(10_000)),
            ..Batch::default()
        };
        let batch = std::mem::replace(&mut self.batches[w], fresh);
        let Some(tx) = self.writers.get(w) else {
            return; // shutting down: the batch's offsets are never committed, so it replays
        };
        let batch = match tx.try_send(batch) {
            Ok(()) => {
                self.inflight += 1;
                self.metrics.inflight_batches.set(self.inflight as i64);
                return;
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(b)) => b,
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
        };
        // The writer is behind: wait. Not polling Kafka while we wait is the backpressure.
        let waited = Instant::now();
        if tx.blocking_send(batch).is_ok() {
            self.inflight += 1;
            self.metrics.inflight_batches.set(self.inflight as i64);
        }
        self.metrics
            .backpressure_seconds
            .inc_by(waited.elapsed().as_secs_f64());
    }

    fn flush_all(&mut self) {
        for w in 0..self.batches.len() {
            self.send(w);
        }
    }

    fn flush_aged(&mut self) {
        for w in 0..self.batches.len() {
            if matches!(self.batches[w].opened, Some(t) if t.elapsed() >= self.flush_after) {
                self.send(w);
            }
        }
    }

    fn take_ack(&mut self, ack: Ack) {
        self.inflight = self.inflight.saturating_sub(1);
        self.metrics.inflight_batches.set(self.inflight as i64);
        for o in ack.offsets {
            let e = self
                .to_commit
                .entry((o.topic, o.partition))
                .or_insert(o.next);
            *e = (*e).max(o.next);
        }
    }

    /// Collects acknowledgements without waiting and commits them (asynchronously).
    fn drain_acks<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        while let Ok(ack) = self.acks.try_recv() {
            self.take_ack(ack);
        }
        self.commit(consumer, CommitMode::Async);
    }

    /// Waits until every in-flight batch is acknowledged (or `limit` passes), then commits
    /// synchronously.
    fn wait_idle<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.inflight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(ack) => self.take_ack(ack),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(RecvTimeoutError::Timeout) => {
                    tracing::warn!(
                        inflight = self.inflight,
                        "gave up waiting for writers; those batches will replay"
                    );
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.commit(consumer, CommitMode::Sync);
    }

    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, mode: CommitMode) {
        if self.to_commit.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &self.to_commit {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(%topic, partition, error = %e, "bad offset");
            }
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => self.to_commit.clear(),
            // not fatal: PostgreSQL holds the offsets; we retry next time
            Err(e) => tracing::debug!(error = %e, "kafka offset commit failed; will retry"),
        }
    }
}

/// The writer (of `writers`) holding the fewest of the `pinned` partitions, the lowest on a tie.
fn least_loaded(writers: usize, pinned: impl Iterator<Item = usize>) -> usize {
    let mut load = vec![0usize; writers];
    for w in pinned.filter(|&w| w < writers) {
        load[w] += 1;
    }
    (0..writers).min_by_key(|&w| (load[w], w)).unwrap_or(0)
}

/// The running source. Create with [`Source::new`], then [`Source::run`] on its own thread.
pub struct Source {
    consumer: BaseConsumer<SourceContext>,
    topics: Vec<String>,
    shutdown: CancellationToken,
}

impl Source {
    pub fn new(args: SourceArgs) -> Result<Source, IngestError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &args.kafka.brokers)
            .set("group.id", &args.kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &args.kafka.auto_offset_reset)
            .set(
                "session.timeout.ms",
                args.kafka.session_timeout_ms.to_string(),
            )
            .set(
                "statistics.interval.ms",
                args.kafka.statistics_interval_ms.to_string(),
            )
            .set("max.poll.interval.ms", "600000")
            .set("fetch.wait.max.ms", "100")
            .set("queued.max.messages.kbytes", "65536");
        for (k, v) in &args.kafka.properties {
            cfg.set(k, v);
        }
        let flow = Flow {
            batches: (0..args.writers.len()).map(|_| Batch::default()).collect(),
            pinned: HashMap::new(),
            writers: args.writers,
            acks: args.acks,
            inflight: 0,
            to_commit: HashMap::new(),
            skip_below: HashMap::new(),
            decoder: Decoder::new(&args.ingest),
            scratch: Decoded::default(),
            batch_rows: args.ingest.batch_rows,
            flush_after: Duration::from_millis(args.ingest.flush_interval_ms),
            metrics: args.metrics.clone(),
            clock: args.clock,
        };
        let context = SourceContext {
            flow: Mutex::new(flow),
            stored_offsets: args.stored_offsets,
            metrics: args.metrics,
        };
        let consumer: BaseConsumer<SourceContext> = cfg.create_with_context(context)?;
        Ok(Source {
            consumer,
            topics: args.kafka.topics,
            shutdown: args.shutdown,
        })
    }

    /// Polls until shutdown, then flushes, waits for the writers and commits.
    pub fn run(self) -> Result<(), IngestError> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)?;
        let context = self.consumer.context();
        let mut last_check = Instant::now();
        while !self.shutdown.is_cancelled() {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    context.metrics.messages.inc();
                    let mut flow = context.flow.lock().expect("flow poisoned");
                    flow.on_message(m.topic(), m.partition(), m.offset(), m.key(), m.payload());
                }
                Some(Err(e)) => {
                    context.metrics.kafka_errors.inc();
                    tracing::warn!(error = %e, "kafka consume error");
                }
                None => {}
            }
            if last_check.elapsed() >= Duration::from_millis(20) {
                last_check = Instant::now();
                let mut flow = context.flow.lock().expect("flow poisoned");
                flow.flush_aged();
                flow.drain_acks(&self.consumer);
            }
        }
        tracing::info!("source stopping: flushing batches and committing offsets");
        {
            let mut flow = context.flow.lock().expect("flow poisoned");
            flow.flush_all();
            flow.writers.clear(); // writers drain their queues and exit
            flow.wait_idle(&self.consumer, Duration::from_secs(60));
        }
        self.consumer.unsubscribe();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::least_loaded;

    #[test]
    fn partitions_spread_evenly_over_writers_and_refill_the_emptiest() {
        let mut pinned = Vec::new();
        for _ in 0..8 {
            let w = least_loaded(3, pinned.iter().copied());
            pinned.push(w);
        }
        assert_eq!(pinned, vec![0, 1, 2, 0, 1, 2, 0, 1]);
        // a revocation takes writer 1's partitions: the next ones land there until it is even
        pinned.retain(|&w| w != 1);
        let next: Vec<usize> = (0..4)
            .map(|_| {
                let w = least_loaded(3, pinned.iter().copied());
                pinned.push(w);
                w
            })
            .collect();
        assert_eq!(next, vec![1, 1, 1, 2]);
    }
}
