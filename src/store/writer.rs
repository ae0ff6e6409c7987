//! Commits one batch of samples together with the Kafka offsets it covers, in one
//! PostgreSQL transaction.
//!
//! The rows go in binary `COPY`s of at most `copy_rows` (1000) rows each; a group of batches
//! that queued up behind a slow commit shares one transaction (several COPYs, one offsets
//! upsert, one COMMIT), so a backlog pays the per-transaction cost once per group.
//!
//! The fast path is a plain binary `COPY` into the partitioned table. If it trips over the
//! natural key (a producer sent a sample twice, or a replay raced another replica), the same
//! bytes are copied into a temporary staging table and inserted with `ON CONFLICT DO NOTHING`,
//! so duplicates are skipped instead of failing the batch.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::CopyInSink;

use super::copy::{day_of, CopyEncoder, COPY_INTO_SAMPLES, SAMPLE_COLUMNS};
use super::metrics::{BatchStage, StoreMetrics};
use super::schema::Partitions;
use super::StoreError;
use crate::sample::Sample;

/// Kafka progress covered by a batch: the next offset to read on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset after the last message of this partition in the batch.
    pub next: i64,
}

/// What a committed batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub inserted: u64,
    pub duplicates: u64,
}

/// Constructor arguments for [`Writer`].
pub struct WriterArgs {
    pub pool: deadpool_postgres::Pool,
    pub partitions: Arc<Partitions>,
    pub consumer_group: String,
    /// Rows per COPY statement (`ingest.batch_rows`); a longer write is several COPYs in the
    /// same transaction.
    pub copy_rows: usize,
    pub metrics: StoreMetrics,
}

/// Something a batch's commit waits for besides its own rows: the batch's dead letters being
/// acknowledged by Kafka. It runs while the rows are copied; if it fails, the batch rolls back.
pub type CommitGate<'a> = BoxFuture<'a, Result<(), String>>;

/// A gate that has already passed.
pub fn passed() -> CommitGate<'static> {
    Box::pin(futures::future::ready(Ok(())))
}

/// Advances a group's offsets, never backwards.
const ADVANCE_OFFSETS: &str = "INSERT INTO ingest_offsets (consumer_group, topic, partition, next_offset) \
     SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[]) \
     ON CONFLICT (consumer_group, topic, partition) DO UPDATE \
     SET next_offset = GREATEST(ingest_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()";

/// The dedupe path: the same bytes into a session's staging table, then only the new rows on.
static COPY_INTO_STAGING: LazyLock<String> =
    LazyLock::new(|| format!("COPY samples_staging ({SAMPLE_COLUMNS}) FROM STDIN (FORMAT binary)"));
static INSERT_FROM_STAGING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO samples ({SAMPLE_COLUMNS}) \
         SELECT DISTINCT ON (service_id, ts, series) {SAMPLE_COLUMNS} FROM samples_staging \
         ON CONFLICT DO NOTHING"
    )
});

/// A COPY whose rows have been sent and whose end is not yet acknowledged.
struct OpenCopy {
    /// The statement's data stream on the writer's connection; dropped unfinished, it aborts
    /// the COPY (and so the transaction).
    sink: Pin<Box<CopyInSink<Bytes>>>,
    started: Instant,
}

/// Writes batches. Cheap to clone; each ingest writer task holds one.
#[derive(Clone)]
pub struct Writer {
    /// Connection pool shared with the API and jobs; a batch holds one connection while it
    /// commits.
    pool: deadpool_postgres::Pool,
    /// Which daily partitions exist; shared by every writer of the process.
    partitions: Arc<Partitions>,
    consumer_group: String,
    copy_rows: usize,
    metrics: StoreMetrics,
}

impl Writer {
    pub fn new(args: WriterArgs) -> Writer {
        Writer {
            pool: args.pool,
            partitions: args.partitions,
            consumer_group: args.consumer_group,
            copy_rows: args.copy_rows.max(1),
            metrics: args.metrics,
        }
    }

    /// Stores `samples` and advances `offsets`, atomically.
    pub async fn write(
        &self,
        samples: &[Sample],
        offsets: &[PartitionOffset],
    ) -> Result<WriteOutcome, StoreError> {
        self.write_gated(samples, offsets, passed()).await
    }

    /// [`write`](Self::write), committing only once `gate` has passed; `gate` runs while the
    /// rows are copied, and a failed gate rolls the batch back.
    pub async fn write_gated(
        &self,
        samples: &[Sample],
        offsets: &[PartitionOffset],
        gate: CommitGate<'_>,
    ) -> Result<WriteOutcome, StoreError> {
        let started = Instant::now();
        let result = self.write_inner(samples, offsets, gate).await;
        self.metrics.record_write(samples.len(), started, &result);
        result
    }

    async fn write_inner(
        &self,
        samples: &[Sample],
        offsets: &[PartitionOffset],
        gate: CommitGate<'_>,
    ) -> Result<WriteOutcome, StoreError> {
        let mut step = Instant::now();
        let mut client = self.pool.get().await?;
        self.lap(BatchStage::Connection, &mut step);
        if !samples.is_empty() {
            let created = self
                .partitions
                .ensure(&client, "samples", samples.iter().map(|s| day_of(s.ts_ms)))
                .await?;
            self.metrics.partitions_created.inc_by(created as u64);
            self.lap(BatchStage::Partitions, &mut step);
        }
        let copies: Vec<Bytes> = samples
            .chunks(self.copy_rows)
            .map(|chunk| {
                let mut encoder = CopyEncoder::with_capacity(chunk.len());
                for s in chunk {
                    encoder.push(s);
                }
                encoder.finish()
            })
            .collect();
        self.lap(BatchStage::Encode, &mut step);

        let mut gate = Some(gate);
        match self
            .commit(
                &mut client,
                &copies,
                samples.len(),
                offsets,
                false,
                &mut gate,
            )
            .await
        {
            Err(StoreError::Postgres(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                self.commit(
                    &mut client,
                    &copies,
                    samples.len(),
                    offsets,
                    true,
                    &mut gate,
                )
                .await
            }
            other => other,
        }
    }

    /// Records the time since `*since` under `stage` and restarts the clock.
    fn lap(&self, stage: BatchStage, since: &mut Instant) {
        let now = Instant::now();
        self.metrics.stage(stage, now.duration_since(*since));
        *since = now;
    }

    /// One transaction: rows, then offsets, then — once `gate` (taken by the first call) has
    /// passed — the commit.
    async fn commit(
        &self,
        client: &mut deadpool_postgres::Object,
        copies: &[Bytes],
        rows: usize,
        offsets: &[PartitionOffset],
        dedupe: bool,
        gate: &mut Option<CommitGate<'_>>,
    ) -> Result<WriteOutcome, StoreError> {
        // the dedupe retry finds the gate already taken (and passed) by the first attempt
        let gate = gate.take().unwrap_or_else(|| passed());
        let gate = async {
            let passed = gate.await;
            (passed, Instant::now())
        };
        let staged = async {
            let mut step = Instant::now();
            let tx = client.transaction().await?;
            self.lap(BatchStage::Begin, &mut step);
            let outcome = self.stage(&tx, copies, rows, offsets, dedupe).await?;
            Ok::<_, StoreError>((tx, outcome, Instant::now()))
        };
        let ((gate, gate_done), staged) = futures::join!(gate, staged);
        gate.map_err(StoreError::Held)?;
        let (tx, outcome, staged_done) = staged?;
        self.metrics.stage(
            BatchStage::Gate,
            gate_done.saturating_duration_since(staged_done),
        );
        let mut step = Instant::now();
        tx.commit().await?;
        self.lap(BatchStage::Commit, &mut step);
        Ok(outcome)
    }

    /// Copies the rows and advances the offsets inside `tx`. The COPY and offsets statements
    /// are prepared once per connection rather than parsed (and planned) for every batch.
    ///
    /// The offsets upsert is pipelined behind the last COPY, so it adds no round trip of its
    /// own. On a busy machine a round trip costs a scheduling delay on both sides.
    async fn stage(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        copies: &[Bytes],
        rows: usize,
        offsets: &[PartitionOffset],
        dedupe: bool,
    ) -> Result<WriteOutcome, StoreError> {
        let mut outcome = WriteOutcome::default();
        let advanced = |took: Duration| {
            if !offsets.is_empty() {
                self.metrics.stage(BatchStage::Offsets, took);
            }
        };
        if dedupe {
            tx.batch_execute(
                "CREATE TEMP TABLE IF NOT EXISTS samples_staging \
                 (LIKE samples INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
            )
            .await?;
            let into_staging = tx.prepare_cached(&COPY_INTO_STAGING).await?;
            self.copy_all(tx, &into_staging, copies, async { Ok(()) })
                .await?;
            let step = Instant::now();
            let inserted = tx.execute(INSERT_FROM_STAGING.as_str(), &[]).await?;
            self.metrics.stage(BatchStage::Dedupe, step.elapsed());
            outcome.inserted = inserted;
            outcome.duplicates = rows as u64 - inserted;
            let step = Instant::now();
            self.advance(tx, offsets).await?;
            advanced(step.elapsed());
        } else {
            let into_samples = tx.prepare_cached(&COPY_INTO_SAMPLES).await?;
            let (inserted, offsets_tail) = self
                .copy_all(tx, &into_samples, copies, self.advance(tx, offsets))
                .await?;
            // what the upsert added after the last COPY (it ran behind it on the wire), or
            // all of it when the write has no rows
            advanced(offsets_tail);
            outcome.inserted = inserted;
        }
        Ok(outcome)
    }

    /// Runs one COPY per element of `copies`, then `then` pipelined behind the last one (sent
    /// before that COPY's end is acknowledged); returns the rows copied and how long `then`
    /// went on after the last COPY had finished (with no COPYs, how long it took). If the
    /// COPY fails, the transaction is aborted and `then` fails too; the COPY's error is the
    /// one returned (a unique violation sends the caller down the dedupe path).
    ///
    /// The COPYs themselves are not pipelined with each other: with tokio-postgres 0.7, a COPY
    /// started behind one that failed is refused, and its abort (CopyFail, Sync) draws a
    /// ReadyForQuery no request waits for, which closes the connection the dedupe retry needs.
    /// A plain statement behind a failed COPY fails cleanly. Measured, pipelining the COPYs as
    /// well bought ~5 % of a grouped commit's latency (BENCHMARKS.md, ingest, session 7).
    async fn copy_all(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        statement: &tokio_postgres::Statement,
        copies: &[Bytes],
        then: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<(u64, Duration), StoreError> {
        let then = async { then.await.map(|()| Instant::now()) };
        let Some((last, init)) = copies.split_last() else {
            let started = Instant::now();
            return then.await.map(|done| (0, done - started));
        };
        let mut copied = 0;
        for bytes in init {
            let open = self.start_copy(tx, statement, bytes).await?;
            copied += self.finish_copy(open).await?;
        }
        let open = self.start_copy(tx, statement, last).await?;
        let finish = async {
            let rows = self.finish_copy(open).await;
            (rows, Instant::now())
        };
        let ((finished, copies_done), then) = futures::join!(finish, then);
        copied += finished?;
        let then_done = then?;
        Ok((copied, then_done.saturating_duration_since(copies_done)))
    }

    /// Starts a `COPY … FROM STDIN` and sends it all of `bytes`.
    async fn start_copy(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        statement: &tokio_postgres::Statement,
        bytes: &Bytes,
    ) -> Result<OpenCopy, StoreError> {
        let started = Instant::now();
        let mut sink = Box::pin(tx.copy_in::<_, Bytes>(statement).await?);
        sink.send(bytes.clone()).await?;
        Ok(OpenCopy { sink, started })
    }

    /// Ends a COPY; returns the rows it wrote.
    async fn finish_copy(&self, mut open: OpenCopy) -> Result<u64, StoreError> {
        let rows = open.sink.as_mut().finish().await?;
        self.metrics
            .copy_seconds
            .observe(open.started.elapsed().as_secs_f64());
        Ok(rows)
    }

    /// Advances the offsets (highest per partition) inside `tx`.
    async fn advance(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        offsets: &[PartitionOffset],
    ) -> Result<(), StoreError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let topics: Vec<&str> = offsets.iter().map(|o| o.topic.as_str()).collect();
        let partitions: Vec<i32> = offsets.iter().map(|o| o.partition).collect();
        let next: Vec<i64> = offsets.iter().map(|o| o.next).collect();
        let advance = tx.prepare_cached(ADVANCE_OFFSETS).await?;
        tx.execute(
            &advance,
            &[&self.consumer_group, &topics, &partitions, &next],
        )
        .await?;
        Ok(())
    }

    /// The next offset to read per partition of `topic`, as last committed with rows.
    pub async fn stored_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT partition, next_offset FROM ingest_offsets WHERE consumer_group = $1 AND topic = $2",
                &[&self.consumer_group, &topic],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
