//! Wires the Kafka source thread to the writer tasks and back.
//!
//! ```text
//!  Kafka ──poll──▶ Source thread ──Batch (bounded, per writer)──▶ writer task ──▶ DLQ, while
//!                      ▲                                               │  PostgreSQL (rows + offsets,
//!                      │                                               │  committed once DLQ acks)
//!                      └──────────────── Ack (offsets) ◀────────────────┘──▶ downstream (features…)
//! ```
//!
//! A writer that falls behind commits the batches already waiting in its queue together
//! (up to `ingest.commit_batches`): one transaction, one dead-letter wait, one COMMIT, then
//! one ack per batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::{IngestConfig, KafkaConfig};
use super::dlq::DeadLetterQueue;
use super::metrics::{IngestMetrics, Seconds, WriterStage};
use super::source::{Ack, Batch, OffsetLoader, Source, SourceArgs};
use super::IngestError;
use crate::sample::Sample;
use crate::store::{CommitGate, DurableSink, PartitionOffset};

/// Samples after they are durable, for the stages downstream of the store.
pub type Downstream = mpsc::Sender<Arc<Vec<Sample>>>;

/// Constructor arguments for [`Pipeline::start`].
pub struct PipelineArgs {
    pub kafka: KafkaConfig,
    pub ingest: IngestConfig,
    /// PostgreSQL's [`Writer`](crate::store::Writer) or the embedded
    /// [`LocalStore`](crate::store::LocalStore): rows and offsets commit together either way.
    pub writer: Arc<dyn DurableSink>,
    pub metrics: IngestMetrics,
    pub shutdown: CancellationToken,
    /// Receives every committed batch's samples; a full queue slows the writers (and so the
    /// source) down rather than dropping samples.
    pub downstream: Option<Downstream>,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// A running ingest pipeline.
pub struct Pipeline {
    /// The source thread; returns when shutdown is signalled and everything is committed.
    source: std::thread::JoinHandle<Result<(), IngestError>>,
    /// Writer tasks; each exits when its queue closes.
    writers: JoinSet<()>,
}

impl Pipeline {
    pub fn start(args: PipelineArgs) -> Result<Pipeline, IngestError> {
        let runtime = tokio::runtime::Handle::current();
        let dlq = Arc::new(DeadLetterQueue::new(&args.kafka, args.metrics.clone())?);
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<Ack>();
        let mut senders = Vec::new();
        let mut writers = JoinSet::new();
        for id in 0..args.ingest.writers {
            let (tx, rx) = mpsc::channel::<Batch>(args.ingest.queue_batches);
            senders.push(tx);
            writers.spawn(write_loop(WriteLoop {
                id,
                queue: rx,
                group_max: args.ingest.commit_batches,
                acks: ack_tx.clone(),
                writer: args.writer.clone(),
                dlq: dlq.clone(),
                downstream: args.downstream.clone(),
                shutdown: args.shutdown.clone(),
                timers: StageTimers::new(&args.metrics),
            }));
        }
        drop(ack_tx);
        let loader_writer = args.writer.clone();
        let stored_offsets: OffsetLoader = Arc::new(move |topic: &str| {
            runtime
                .block_on(loader_writer.stored_offsets(topic))
                .map_err(|e| e.to_string())
        });
        let source = Source::new(SourceArgs {
            kafka: args.kafka,
            ingest: args.ingest,
            writers: senders,
            acks: ack_rx,
            stored_offsets,
            metrics: args.metrics,
            shutdown: args.shutdown,
            clock: args.clock,
        })?;
        let source = std::thread::Builder::new()
            .name("mcpwatch-source".into())
            .spawn(move || source.run())
            .map_err(IngestError::Thread)?;
        Ok(Pipeline { source, writers })
    }

    /// Waits for the source to finish (after shutdown) and the writers to drain.
    pub async fn join(mut self) -> Result<(), IngestError> {
        let source = self.source;
        let result = tokio::task::spawn_blocking(move || source.join())
            .await
            .map_err(|_| IngestError::Panicked)?
            .map_err(|_| IngestError::Panicked)?;
        while self.writers.join_next().await.is_some() {}
        result
    }
}

struct WriteLoop {
    id: usize,
    /// This writer's batches, from the source thread. Closed at shutdown.
    queue: mpsc::Receiver<Batch>,
    /// Most queued batches committed in one transaction.
    group_max: usize,
    /// Back to the source thread, which commits the offsets to Kafka.
    acks: std::sync::mpsc::Sender<Ack>,
    /// The durable store, shared by every writer task.
    writer: Arc<dyn DurableSink>,
    /// Shared dead-letter producer.
    dlq: Arc<DeadLetterQueue>,
    downstream: Option<Downstream>,
    shutdown: CancellationToken,
    timers: StageTimers,
}

/// A writer's seconds counters, one per [`WriterStage`], looked up once.
struct StageTimers {
    idle: Seconds,
    store: Seconds,
    handoff: Seconds,
}

impl StageTimers {
    fn new(m: &IngestMetrics) -> StageTimers {
        StageTimers {
            idle: m.writer(WriterStage::Idle),
            store: m.writer(WriterStage::Store),
            handoff: m.writer(WriterStage::Handoff),
        }
    }
}

/// Adds the time since `*since` to `counter` and restarts the clock.
fn lap(counter: &Seconds, since: &mut Instant) {
    let now = Instant::now();
    counter.inc_by(now.duration_since(*since).as_secs_f64());
    *since = now;
}

/// How long writers keep retrying a batch after shutdown was signalled before giving up
/// (the batch is then replayed by whoever consumes the partition next).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Batches committed in one transaction: their rows in one write, their dead letters behind
/// one gate, the highest offset per partition stored with them.
struct Group {
    /// The first batch, grown by the ones after it (rows and dead letters appended, offsets
    /// raised), so a group of one moves nothing.
    batch: Batch,
    /// Each member's own offsets, acknowledged one [`Ack`] per batch afterwards (the source
    /// counts batches in flight).
    acks: Vec<Vec<PartitionOffset>>,
}

impl Group {
    fn new(batch: Batch) -> Group {
        Group {
            acks: vec![batch.offsets.clone()],
            batch,
        }
    }

    fn push(&mut self, mut next: Batch) {
        self.batch.samples.append(&mut next.samples);
        self.batch.dead.append(&mut next.dead);
        self.batch.messages += next.messages;
        for o in &next.offsets {
            self.batch.advance(&o.topic, o.partition, o.next);
        }
        self.acks.push(next.offsets);
    }

    /// The first batch and whatever else is already queued, up to `max` batches.
    fn take(first: Batch, queue: &mut mpsc::Receiver<Batch>, max: usize) -> Group {
        let mut group = Group::new(first);
        while group.acks.len() < max {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        group
    }
}

async fn write_loop(mut w: WriteLoop) {
    let mut clock = Instant::now();
    while let Some(first) = w.queue.recv().await {
        let Group { batch, acks } = Group::take(first, &mut w.queue, w.group_max);
        lap(&w.timers.idle, &mut clock);
        let mut backoff = Duration::from_millis(50);
        // set once Kafka has acknowledged the batch's dead letters, so a retry of the rows
        // does not publish them again
        let published = AtomicBool::new(batch.dead.is_empty());
        let mut gave_up_at = None;
        loop {
            // the dead letters go out while the rows are copied; the rows commit (and with
            // them the offsets) only once Kafka holds the letters
            let gate: CommitGate<'_> = Box::pin(async {
                if published.load(Ordering::Acquire) {
                    return Ok(());
                }
                w.dlq
                    .publish(&batch.dead)
                    .await
                    .map_err(|e| format!("dead-letter publish failed: {e}"))?;
                published.store(true, Ordering::Release);
                Ok(())
            });
            let written = w
                .writer
                .write_gated(&batch.samples, &batch.offsets, gate)
                .await;
            lap(&w.timers.store, &mut clock);
            match written {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(writer = w.id, error = %e, rows = batch.samples.len(), "batch failed; retrying")
                }
            }
            if w.shutdown.is_cancelled() {
                let since = *gave_up_at.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > SHUTDOWN_GRACE {
                    tracing::error!(
                        writer = w.id,
                        "giving up on a batch at shutdown; it will be replayed"
                    );
                    return;
                }
            }
            tokio::time::sleep(backoff).await;
            lap(&w.timers.store, &mut clock);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        let samples = Arc::new(batch.samples);
        for offsets in acks {
            if w.acks.send(Ack { offsets }).is_err() {
                return;
            }
        }
        if let Some(down) = &w.downstream {
            if !samples.is_empty() && down.send(samples).await.is_err() {
                tracing::debug!("downstream closed");
            }
            lap(&w.timers.handoff, &mut clock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Origin;

    fn batch(first: i64, rows: i64, offsets: &[(i32, i64)]) -> Batch {
        let mut b = Batch::default();
        b.samples = (first..first + rows)
            .map(|i| Sample::new("svc", i, Origin::Mcp))
            .collect();
        b.messages = rows as usize;
        for &(partition, next) in offsets {
            b.advance("t", partition, next);
        }
        b
    }

    fn pairs(offsets: &[PartitionOffset]) -> Vec<(i32, i64)> {
        let mut v: Vec<_> = offsets.iter().map(|o| (o.partition, o.next)).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_group_takes_only_what_is_queued_and_keeps_each_batch_ack() {
        let (tx, mut rx) = mpsc::channel(8);
        for b in [
            batch(10, 2, &[(1, 7)]),
            batch(12, 3, &[(0, 9), (1, 8)]),
            batch(15, 1, &[(2, 4)]),
        ] {
            tx.send(b).await.unwrap();
        }
        let first = batch(0, 10, &[(0, 5)]);
        let group = Group::take(first, &mut rx, 3);
        // rows in queue order, offsets the highest per partition, one ack per member
        let ts: Vec<i64> = group.batch.samples.iter().map(|s| s.ts_ms).collect();
        assert_eq!(ts, (0..15).collect::<Vec<_>>());
        assert_eq!(group.batch.messages, 15);
        assert_eq!(pairs(&group.batch.offsets), vec![(0, 9), (1, 8)]);
        let acks: Vec<_> = group.acks.iter().map(|a| pairs(a)).collect();
        assert_eq!(acks, vec![vec![(0, 5)], vec![(1, 7)], vec![(0, 9), (1, 8)]]);

        // the fourth batch stayed queued; an empty queue ends a group of one at once
        let rest = rx.recv().await.unwrap();
        let alone = Group::take(rest, &mut rx, 3);
        assert_eq!(alone.acks.len(), 1);
        assert_eq!(pairs(&alone.batch.offsets), vec![(2, 4)]);
    }
}
