//! Wires the Kafka source thread to the writer tasks and back.
//!
//! ```text
//!  Kafka ──poll──▶ Source thread ──Batch (bounded, per writer)──▶ writer task ──▶ DLQ, while
//!                      ▲                                               │  PostgreSQL (rows + offsets,
//!                      │                                               │  committed once DLQ acks)
//!                      └──────────────── Ack (offsets) ◀────────────────┘──▶ downstream (features…)
//! ```

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
use crate::store::{CommitGate, DurableSink};

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

async fn write_loop(mut w: WriteLoop) {
    let mut clock = Instant::now();
    while let Some(batch) = w.queue.recv().await {
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
        if w.acks
            .send(Ack {
                offsets: batch.offsets,
            })
            .is_err()
        {
            return;
        }
        if let Some(down) = &w.downstream {
            if !samples.is_empty() && down.send(samples).await.is_err() {
                tracing::debug!("downstream closed");
            }
            lap(&w.timers.handoff, &mut clock);
        }
    }
}
