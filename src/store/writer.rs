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

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::SinkExt;
use tokio_postgres::error::SqlState;

use super::copy::{day_of, CopyEncoder, SAMPLE_COLUMNS};
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

    /// Copies the rows and advances the offsets inside `tx`. The offsets statement is
    /// prepared once per connection rather than parsed and planned for every batch.
    async fn stage(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        copies: &[Bytes],
        rows: usize,
        offsets: &[PartitionOffset],
        dedupe: bool,
    ) -> Result<WriteOutcome, StoreError> {
        let mut outcome = WriteOutcome::default();
        if rows > 0 {
            if dedupe {
                tx.batch_execute(
                    "CREATE TEMP TABLE IF NOT EXISTS samples_staging \
                     (LIKE samples INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                )
                .await?;
                let into_staging =
                    format!("COPY samples_staging ({SAMPLE_COLUMNS}) FROM STDIN (FORMAT binary)");
                for copy in copies {
                    self.copy_in(tx, &into_staging, copy).await?;
                }
                let step = Instant::now();
                let inserted = tx
                    .execute(
                        &format!(
                            "INSERT INTO samples ({SAMPLE_COLUMNS}) \
                             SELECT DISTINCT ON (service_id, ts, series) {SAMPLE_COLUMNS} FROM samples_staging \
                             ON CONFLICT DO NOTHING"
                        ),
                        &[],
                    )
                    .await?;
                self.metrics.stage(BatchStage::Dedupe, step.elapsed());
                outcome.inserted = inserted;
                outcome.duplicates = rows as u64 - inserted;
            } else {
                let into_samples =
                    format!("COPY samples ({SAMPLE_COLUMNS}) FROM STDIN (FORMAT binary)");
                for copy in copies {
                    outcome.inserted += self.copy_in(tx, &into_samples, copy).await?;
                }
            }
        }
        if !offsets.is_empty() {
            let step = Instant::now();
            let topics: Vec<&str> = offsets.iter().map(|o| o.topic.as_str()).collect();
            let partitions: Vec<i32> = offsets.iter().map(|o| o.partition).collect();
            let next: Vec<i64> = offsets.iter().map(|o| o.next).collect();
            let advance = tx.prepare_cached(ADVANCE_OFFSETS).await?;
            tx.execute(
                &advance,
                &[&self.consumer_group, &topics, &partitions, &next],
            )
            .await?;
            self.metrics.stage(BatchStage::Offsets, step.elapsed());
        }
        Ok(outcome)
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

    /// One `COPY … FROM STDIN` of an encoded stream; returns the rows it wrote.
    async fn copy_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        statement: &str,
        bytes: &Bytes,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let sink = tx.copy_in::<_, Bytes>(statement).await?;
        futures::pin_mut!(sink);
        sink.send(bytes.clone()).await?;
        let rows = sink.finish().await?;
        self.metrics
            .copy_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(rows)
    }
}
