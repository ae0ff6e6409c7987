//! The embedded store's own tables beyond `samples`: what PostgreSQL keeps in `anomalies` and
//! `plans` (the plans audit), kept as LZ4 Arrow IPC files in the same daily layout, so
//! `/v1/query` (DataFusion) reads them like `samples` and the archive.
//!
//! ```text
//! <root>/<table>/day=YYYY-MM-DD/seg-<seq>-0of1.arrow   one appended batch's rows of that day
//! <root>/<table>/day=YYYY-MM-DD/part-00000.arrow       compacted segments (through_seq in metadata)
//! ```
//!
//! There are no Kafka offsets to commit with these rows, so a segment is committed once it is
//! renamed into place (`*.tmp`, fsync, rename) and needs no checkpoint; a batch touching two
//! days is two independent segments. Appends, compaction and reads of one table take turns
//! (one lock per table): a compaction never merges a segment whose seq could still be
//! overtaken, and a read never sees a day half compacted. As for `samples`, a part file records
//! the seq it holds segments through, so a crash between writing it and deleting the merged
//! segments never counts a row twice.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::local::{
    compact_dir, day_folders, local_err, part_through, read_batches, retire_day, segments,
    write_file, PART_FILE, SEQ,
};
use super::StoreError;

/// One table of the embedded store. Cheap to clone; clones share the table's lock.
#[derive(Clone)]
pub struct LocalTable {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    dir: PathBuf,
    schema: SchemaRef,
    /// The next segment's seq; held while a segment is written, a day compacted or read.
    next_seq: Mutex<u64>,
}

impl LocalTable {
    /// Opens (creating) `<root>/<name>`, removing what a crash left: unrenamed `*.tmp` files
    /// and segments a part file already holds.
    pub(super) fn open(
        root: &Path,
        name: &str,
        schema: SchemaRef,
    ) -> Result<LocalTable, StoreError> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(local_err(dir.display()))?;
        let mut max_seq = 0;
        for day in day_folders(&dir)? {
            let through = part_through(&day.join(PART_FILE))?;
            max_seq = max_seq.max(through);
            for (seq, _, _, path) in segments(&day)? {
                if seq <= through {
                    std::fs::remove_file(&path).map_err(local_err(path.display()))?;
                } else {
                    max_seq = max_seq.max(seq);
                }
            }
        }
        Ok(LocalTable {
            inner: Arc::new(Inner {
                name: name.to_string(),
                dir,
                schema,
                next_seq: Mutex::new(max_seq + 1),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.inner.schema
    }

    /// `<root>/<table>/day=YYYY-MM-DD`.
    pub fn day_dir(&self, day: i64) -> PathBuf {
        self.inner.dir.join(format!(
            "day={}",
            crate::lifecycle::catalog::day_string(day)
        ))
    }

    /// Appends `batch` (rows of `day`) as one segment, durable when this returns.
    pub async fn append(&self, day: i64, batch: RecordBatch) -> Result<(), StoreError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let table = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut next = table.lock();
            let seq = *next;
            let dir = table.day_dir(day);
            std::fs::create_dir_all(&dir).map_err(local_err(dir.display()))?;
            let meta = [(SEQ.to_string(), seq.to_string())].into();
            write_file(
                &dir.join(format!("seg-{seq:016}-0of1.arrow")),
                &table.inner.schema,
                meta,
                &[batch],
            )?;
            *next += 1;
            Ok(())
        })
        .await
        .map_err(local_err("append task"))?
    }

    /// Every row of the days from `first_day` on, oldest day first and, within a day, in the
    /// order written.
    pub async fn read_from(&self, first_day: i64) -> Result<Vec<RecordBatch>, StoreError> {
        let table = self.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = table.lock();
            let mut out = Vec::new();
            for (day, dir) in table.days()? {
                if day < first_day {
                    continue;
                }
                let part = dir.join(PART_FILE);
                let through = part_through(&part)?;
                if part.is_file() {
                    out.extend(read_batches(&part)?);
                }
                for (seq, _, _, path) in segments(&dir)? {
                    if seq > through {
                        out.extend(read_batches(&path)?);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(local_err("read task"))?
    }

    /// Merges `day`'s segments into its part file. Returns the rows it holds.
    pub async fn compact_day(&self, day: i64) -> Result<u64, StoreError> {
        let table = self.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = table.lock();
            compact_dir(&table.day_dir(day), &table.inner.schema, u64::MAX)
        })
        .await
        .map_err(local_err("compaction task"))?
    }

    /// Retention: days older than `keep_days` are compacted, then moved into `archive` (with a
    /// manifest) or deleted. Returns the days retired.
    pub async fn retire_before(
        &self,
        today: i64,
        keep_days: u32,
        archive: Option<PathBuf>,
    ) -> Result<Vec<i64>, StoreError> {
        let table = self.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = table.lock();
            let mut retired = Vec::new();
            for (day, dir) in table.days()? {
                if day + i64::from(keep_days) > today {
                    continue;
                }
                let rows = compact_dir(&dir, &table.inner.schema, u64::MAX)?;
                retire_day(
                    &table.inner.name,
                    day,
                    &dir,
                    &table.inner.schema,
                    rows,
                    archive.as_deref(),
                )?;
                retired.push(day);
            }
            Ok(retired)
        })
        .await
        .map_err(local_err("retention task"))?
    }

    /// (day, folder) of every day folder, oldest first.
    fn days(&self) -> Result<Vec<(i64, PathBuf)>, StoreError> {
        Ok(day_folders(&self.inner.dir)?
            .into_iter()
            .filter_map(|p| Some((super::local::folder_day(&p)?, p)))
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.inner
            .next_seq
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
