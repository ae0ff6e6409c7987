//! The seam between ingest and durable storage: a [`DurableSink`] commits a batch of samples
//! together with the Kafka offsets it covers, and says where each partition's committed
//! offsets stand after a restart. The ingest pipeline only ever talks to this trait, so the
//! same pipeline runs on PostgreSQL ([`Writer`]) and on the embedded Arrow store
//! ([`LocalStore`](super::local::LocalStore)).

use futures::future::BoxFuture;

use super::writer::{passed, CommitGate, PartitionOffset, WriteOutcome, Writer};
use super::StoreError;
use crate::sample::Sample;

/// Where durable batches go.
pub trait DurableSink: Send + Sync + 'static {
    /// Stores `samples` and advances `offsets` atomically: after a crash either both are
    /// durable or neither is, so a replay from the stored offsets neither loses nor repeats.
    /// The commit also waits for `gate` (which may run while the rows are written); if the
    /// gate fails, nothing is committed.
    fn write_gated<'a>(
        &'a self,
        samples: &'a [Sample],
        offsets: &'a [PartitionOffset],
        gate: CommitGate<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome, StoreError>>;

    /// [`write_gated`](Self::write_gated) with nothing to wait for.
    fn write<'a>(
        &'a self,
        samples: &'a [Sample],
        offsets: &'a [PartitionOffset],
    ) -> BoxFuture<'a, Result<WriteOutcome, StoreError>> {
        self.write_gated(samples, offsets, passed())
    }

    /// The next offset to read per partition of `topic`, as last committed with rows.
    fn stored_offsets<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, StoreError>>;
}

impl DurableSink for Writer {
    fn write_gated<'a>(
        &'a self,
        samples: &'a [Sample],
        offsets: &'a [PartitionOffset],
        gate: CommitGate<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome, StoreError>> {
        Box::pin(Writer::write_gated(self, samples, offsets, gate))
    }

    fn stored_offsets<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, StoreError>> {
        Box::pin(Writer::stored_offsets(self, topic))
    }
}
