//! The embedded store: samples as LZ4 Arrow IPC files in daily partitions, in the layout the
//! archive tier writes, so DataFusion queries the live store and the archive alike. It is the
//! [`DurableSink`](super::sink::DurableSink) the demo runs on instead of PostgreSQL.
//!
//! ```text
//! <root>/samples/day=YYYY-MM-DD/seg-<seq>-<k>of<n>.arrow  one committed batch (its rows of that day)
//! <root>/samples/day=YYYY-MM-DD/part-00000.arrow          compacted segments (through_seq in metadata)
//! <root>/_offsets/<group>.json                             checkpoint: seq + offsets
//! <root>/anomalies/…, <root>/plans/…                        the daemon's own tables ([`LocalTable`])
//! ```
//!
//! A batch is one commit with a sequence number; its rows are split by day into `n` segment
//! files, each written as `*.tmp`, synced and renamed, and each carrying in its file footer
//! the batch's seq, `n` and Kafka offsets. A batch is committed once all `n` segments exist:
//! on open, segments newer than the checkpoint are either complete (their offsets count) or
//! deleted (a crash mid-batch, replayed from Kafka). Compaction rewrites a day's part file
//! with the segments up to a committed seq and records that seq in the part's metadata before
//! deleting them, so a crash in between never counts a row twice.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int16Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use datafusion::arrow::ipc::CompressionType;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::copy::day_of;
use super::local_table::LocalTable;
use super::sink::DurableSink;
use super::writer::{CommitGate, PartitionOffset, WriteOutcome};
use super::{StoreError, StoreMetrics};
use crate::sample::Sample;

pub(super) const SEQ: &str = "mcpwatch.seq";
const PARTS: &str = "mcpwatch.parts";
const OFFSETS: &str = "mcpwatch.offsets";
const GROUP: &str = "mcpwatch.group";
const THROUGH: &str = "mcpwatch.through_seq";
pub const PART_FILE: &str = "part-00000.arrow";

/// The Arrow schema of `samples`: the columns and types the archive of the PostgreSQL
/// `samples` table has, so one DataFusion table spans the live store and the archive.
pub fn samples_schema() -> Schema {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    Schema::new(vec![
        f("service_id", DataType::Utf8),
        f(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        f("series", DataType::Int64),
        f("origin", DataType::Int16),
        f("cpu", DataType::Float64),
        f("memory", DataType::Float64),
        f("response_time_ms", DataType::Float64),
        f("requests", DataType::Float64),
        f("errors", DataType::Float64),
        f("status", DataType::Int16),
        f("event", DataType::Int16),
        f("instance_id", DataType::Utf8),
        f("host", DataType::Utf8),
        f("platform", DataType::Utf8),
    ])
}

/// One record batch of samples.
pub fn samples_batch(schema: &SchemaRef, samples: &[&Sample]) -> Result<RecordBatch, StoreError> {
    let mut service = StringBuilder::new();
    let mut ts = TimestampMicrosecondBuilder::new();
    let mut series = Int64Builder::new();
    let mut origin = Int16Builder::new();
    let mut floats: [Float64Builder; 5] = Default::default();
    let mut status = Int16Builder::new();
    let mut event = Int16Builder::new();
    let mut texts: [StringBuilder; 3] = Default::default();
    for s in samples {
        service.append_value(&s.service_id);
        ts.append_value(s.ts_ms * 1000);
        series.append_value(s.series);
        origin.append_value(s.origin.code());
        for (b, v) in
            floats
                .iter_mut()
                .zip([s.cpu, s.memory, s.response_time_ms, s.requests, s.errors])
        {
            b.append_option(v);
        }
        status.append_option(s.status.map(|x| x.code()));
        event.append_option(s.event.map(|x| x.code()));
        for (b, v) in texts.iter_mut().zip([&s.instance_id, &s.host, &s.platform]) {
            b.append_option(v.as_deref());
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(service.finish()),
        Arc::new(ts.finish().with_timezone("UTC")),
        Arc::new(series.finish()),
        Arc::new(origin.finish()),
    ];
    columns.extend(floats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(status.finish()));
    columns.push(Arc::new(event.finish()));
    columns.extend(texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(schema.clone(), columns).map_err(local_err("samples batch"))
}

pub(super) fn local_err<E: std::fmt::Display>(
    what: impl std::fmt::Display,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Local(format!("{what}: {e}"))
}

/// A segment file name: `seg-<seq>-<k>of<n>.arrow`.
fn parse_segment(name: &str) -> Option<(u64, u32, u32)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".arrow")?;
    let (seq, parts) = rest.split_once('-')?;
    let (k, n) = parts.split_once("of")?;
    Some((seq.parse().ok()?, k.parse().ok()?, n.parse().ok()?))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    seq: u64,
    /// "topic/partition" → next offset.
    offsets: BTreeMap<String, i64>,
}

/// The commit state; one writer at a time advances it.
struct State {
    next_seq: u64,
    /// Highest seq whose batch is complete and in the checkpoint.
    committed: u64,
    offsets: BTreeMap<(String, i32), i64>,
}

/// Constructor arguments for [`LocalStore::open`].
pub struct LocalStoreArgs {
    pub root: PathBuf,
    pub consumer_group: String,
    pub metrics: StoreMetrics,
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct LocalStore {
    root: PathBuf,
    group: String,
    schema: SchemaRef,
    metrics: StoreMetrics,
    /// Serialises commits (sequence numbers and the checkpoint); held while a batch is
    /// written, so the ingest writers take turns.
    state: Arc<tokio::sync::Mutex<State>>,
    /// The other tables opened so far, by name (compacted and retired with `samples`).
    tables: Arc<std::sync::Mutex<BTreeMap<String, LocalTable>>>,
}

impl LocalStore {
    /// Opens (creating) the store at `root`, finishing or discarding whatever a crash left.
    pub fn open(args: LocalStoreArgs) -> Result<LocalStore, StoreError> {
        let samples = args.root.join("samples");
        std::fs::create_dir_all(&samples).map_err(local_err(samples.display()))?;
        std::fs::create_dir_all(args.root.join("_offsets"))
            .map_err(local_err(args.root.display()))?;
        let store = LocalStore {
            schema: Arc::new(samples_schema()),
            group: args.consumer_group,
            metrics: args.metrics,
            state: Arc::new(tokio::sync::Mutex::new(State {
                next_seq: 1,
                committed: 0,
                offsets: BTreeMap::new(),
            })),
            tables: Arc::default(),
            root: args.root,
        };
        store.recover()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The table `name` (`<root>/<name>/day=…`) of rows of `schema`, opened on first use;
    /// every later call returns the same table, whose appends, compactions and reads take
    /// turns. `samples` is the store's own and cannot be opened this way.
    pub fn table(&self, name: &str, schema: SchemaRef) -> Result<LocalTable, StoreError> {
        if name == "samples" || !super::is_identifier(name) || name.starts_with('_') {
            return Err(StoreError::Local(format!(
                "{name:?} cannot be a table of the embedded store"
            )));
        }
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.get(name) {
            if t.schema() != &schema {
                return Err(StoreError::Local(format!(
                    "table {name} is open with another schema"
                )));
            }
            return Ok(t.clone());
        }
        let table = LocalTable::open(&self.root, name, schema)?;
        tables.insert(name.to_string(), table.clone());
        Ok(table)
    }

    /// The tables opened with [`LocalStore::table`] so far.
    pub fn tables(&self) -> Vec<LocalTable> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.values().cloned().collect()
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.root
            .join("_offsets")
            .join(format!("{}.json", self.group))
    }

    /// `<root>/samples/day=YYYY-MM-DD`.
    pub fn day_dir(&self, day: i64) -> PathBuf {
        self.root.join("samples").join(format!(
            "day={}",
            crate::lifecycle::catalog::day_string(day)
        ))
    }

    fn day_dirs(&self) -> Result<Vec<PathBuf>, StoreError> {
        day_folders(&self.root.join("samples"))
    }

    fn recover(&self) -> Result<(), StoreError> {
        let checkpoint: Checkpoint = match std::fs::read(self.checkpoint_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(local_err(self.checkpoint_path().display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint::default(),
            Err(e) => return Err(local_err(self.checkpoint_path().display())(e)),
        };
        let mut offsets: BTreeMap<(String, i32), i64> = checkpoint
            .offsets
            .iter()
            .filter_map(|(k, v)| {
                let (t, p) = k.rsplit_once('/')?;
                Some(((t.to_string(), p.parse().ok()?), *v))
            })
            .collect();
        // every batch newer than the checkpoint: complete → count it, partial → discard
        let mut newer: HashMap<u64, Vec<(u32, PathBuf)>> = HashMap::new();
        let mut max_seq = checkpoint.seq;
        for dir in self.day_dirs()? {
            let through = part_through(&dir.join(PART_FILE))?;
            for (seq, k, n, path) in segments(&dir)? {
                if seq <= through {
                    // compacted already; a crash kept the segment
                    std::fs::remove_file(&path).map_err(local_err(path.display()))?;
                    continue;
                }
                max_seq = max_seq.max(seq);
                if seq > checkpoint.seq {
                    newer.entry(seq).or_default().push((n, path));
                }
                let _ = k;
            }
        }
        let mut seqs: Vec<u64> = newer.keys().copied().collect();
        seqs.sort_unstable();
        for seq in seqs {
            let files = &newer[&seq];
            let n = files[0].0 as usize;
            if files.len() == n {
                let meta = read_metadata(&files[0].1)?;
                if meta.get(GROUP).map(String::as_str) == Some(self.group.as_str()) {
                    let batch: Vec<PartitionOffset> = meta
                        .get(OFFSETS)
                        .and_then(|o| serde_json::from_str::<Vec<(String, i32, i64)>>(o).ok())
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(topic, partition, next)| PartitionOffset {
                            topic,
                            partition,
                            next,
                        })
                        .collect();
                    for o in batch {
                        let e = offsets.entry((o.topic, o.partition)).or_insert(o.next);
                        *e = (*e).max(o.next);
                    }
                }
            } else {
                tracing::warn!(
                    seq,
                    found = files.len(),
                    parts = n,
                    "discarding a partly written batch; Kafka replays it"
                );
                for (_, path) in files {
                    std::fs::remove_file(path).map_err(local_err(path.display()))?;
                }
            }
        }
        let mut state = self
            .state
            .try_lock()
            .expect("no writer before open returns");
        state.next_seq = max_seq + 1;
        state.committed = max_seq;
        state.offsets = offsets;
        self.write_checkpoint(&state)?;
        Ok(())
    }

    fn write_checkpoint(&self, state: &State) -> Result<(), StoreError> {
        let cp = Checkpoint {
            seq: state.committed,
            offsets: state
                .offsets
                .iter()
                .map(|((t, p), v)| (format!("{t}/{p}"), *v))
                .collect(),
        };
        let json = serde_json::to_vec(&cp).map_err(local_err("checkpoint"))?;
        crate::lifecycle::archive::write_atomic(&self.checkpoint_path(), &json)
            .map_err(local_err("checkpoint"))
    }

    fn write_inner(
        &self,
        state: &mut State,
        samples: &[Sample],
        offsets: &[PartitionOffset],
    ) -> Result<WriteOutcome, StoreError> {
        let mut by_day: BTreeMap<i64, Vec<&Sample>> = BTreeMap::new();
        for s in samples {
            by_day.entry(day_of(s.ts_ms)).or_default().push(s);
        }
        let seq = state.next_seq;
        let n = by_day.len();
        let offsets_json = serde_json::to_string(
            &offsets
                .iter()
                .map(|o| (o.topic.as_str(), o.partition, o.next))
                .collect::<Vec<_>>(),
        )
        .map_err(local_err("offsets"))?;
        for (k, (day, rows)) in by_day.iter().enumerate() {
            let dir = self.day_dir(*day);
            std::fs::create_dir_all(&dir).map_err(local_err(dir.display()))?;
            let name = format!("seg-{seq:016}-{k}of{n}.arrow");
            let meta: HashMap<String, String> = [
                (SEQ.to_string(), seq.to_string()),
                (PARTS.to_string(), n.to_string()),
                (OFFSETS.to_string(), offsets_json.clone()),
                (GROUP.to_string(), self.group.clone()),
            ]
            .into();
            let batch = samples_batch(&self.schema, rows)?;
            write_file(&dir.join(&name), &self.schema, meta, &[batch])?;
        }
        state.next_seq += 1;
        if n > 0 {
            state.committed = seq;
        }
        for o in offsets {
            let e = state
                .offsets
                .entry((o.topic.clone(), o.partition))
                .or_insert(o.next);
            *e = (*e).max(o.next);
        }
        self.write_checkpoint(state)?;
        Ok(WriteOutcome {
            inserted: samples.len() as u64,
            duplicates: 0,
        })
    }

    /// Merges every committed segment of `day` into its part file, then deletes them.
    /// Returns the rows in the part file afterwards.
    pub async fn compact_day(&self, day: i64) -> Result<u64, StoreError> {
        let committed = self.state.lock().await.committed;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.compact_day_blocking(day, committed))
            .await
            .map_err(local_err("compaction task"))?
    }

    fn compact_day_blocking(&self, day: i64, committed: u64) -> Result<u64, StoreError> {
        compact_dir(&self.day_dir(day), &self.schema, committed)
    }

    /// Days with a folder in the store, oldest first.
    pub fn days(&self) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .day_dirs()?
            .iter()
            .filter_map(|p| folder_day(p))
            .collect())
    }

    /// Retention: every day older than `keep_days` is compacted and then moved into
    /// `archive` (the archive tier's layout, with a manifest) or deleted. Returns the days
    /// retired.
    pub async fn retire_before(
        &self,
        today: i64,
        keep_days: u32,
        archive: Option<&Path>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut retired = Vec::new();
        for day in self.days()? {
            if day + i64::from(keep_days) > today {
                continue;
            }
            let rows = self.compact_day(day).await?;
            retire_day(
                "samples",
                day,
                &self.day_dir(day),
                &self.schema,
                rows,
                archive,
            )?;
            retired.push(day);
        }
        Ok(retired)
    }
}

impl DurableSink for LocalStore {
    fn write_gated<'a>(
        &'a self,
        samples: &'a [Sample],
        offsets: &'a [PartitionOffset],
        gate: CommitGate<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome, StoreError>> {
        Box::pin(async move {
            // a segment becomes visible the moment it is written: wait for the gate first
            gate.await.map_err(StoreError::Held)?;
            let started = std::time::Instant::now();
            let mut state = self.state.lock().await;
            // small synchronous file writes (a batch is ≤ 1000 rows, one file per day touched)
            let result = self.write_inner(&mut state, samples, offsets);
            self.metrics.record_write(samples.len(), started, &result);
            result
        })
    }

    fn stored_offsets<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, StoreError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            Ok(state
                .offsets
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|((_, p), v)| (*p, *v))
                .collect())
        })
    }
}

/// The `day=YYYY-MM-DD` folders of a table folder, oldest first (none if it is missing).
pub(super) fn day_folders(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(local_err(dir.display())(e)),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && folder_day(p).is_some())
        .collect();
    out.sort();
    Ok(out)
}

/// The day (days since the epoch) a `day=YYYY-MM-DD` folder holds.
pub(super) fn folder_day(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?.strip_prefix("day=")?;
    let d = chrono::NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()?;
    Some(
        d.and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp()
            .div_euclid(86_400),
    )
}

/// Segments of a day folder: (seq, k, n, path), by seq. Removes `*.tmp` leftovers.
pub(super) fn segments(dir: &Path) -> Result<Vec<(u64, u32, u32, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(local_err(dir.display()))? {
        let e = e.map_err(local_err(dir.display()))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            // an interrupted write: never renamed, never committed
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        if let Some((seq, k, n)) = parse_segment(name) {
            out.push((seq, k, n, e.path()));
        }
    }
    out.sort_by_key(|s| (s.0, s.1));
    Ok(out)
}

/// Merges a day folder's segments up to seq `committed` into its part file (which then
/// records the seq it holds segments through), then deletes them. Returns the part's rows.
pub(super) fn compact_dir(
    dir: &Path,
    schema: &SchemaRef,
    committed: u64,
) -> Result<u64, StoreError> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let part = dir.join(PART_FILE);
    let through = part_through(&part)?;
    let segments: Vec<(u64, PathBuf)> = segments(dir)?
        .into_iter()
        .filter(|s| s.0 > through && s.0 <= committed)
        .map(|s| (s.0, s.3))
        .collect();
    let mut batches = Vec::new();
    if part.is_file() {
        batches.extend(read_batches(&part)?);
    }
    if segments.is_empty() {
        return Ok(batches.iter().map(|b| b.num_rows() as u64).sum());
    }
    for (_, path) in &segments {
        batches.extend(read_batches(path)?);
    }
    let merged = datafusion::arrow::compute::concat_batches(schema, &batches)
        .map_err(local_err("compaction"))?;
    let new_through = segments.iter().map(|s| s.0).max().unwrap_or(through);
    let meta: HashMap<String, String> = [(THROUGH.to_string(), new_through.to_string())].into();
    let rows = merged.num_rows() as u64;
    write_file(&part, schema, meta, &[merged])?;
    for (_, path) in &segments {
        std::fs::remove_file(path).map_err(local_err(path.display()))?;
    }
    Ok(rows)
}

/// Retires a compacted day folder of `table` holding `rows`: verified and moved into the
/// archive's layout with a manifest (one rename), or deleted when there is no archive.
pub(super) fn retire_day(
    table: &str,
    day: i64,
    dir: &Path,
    schema: &SchemaRef,
    rows: u64,
    archive: Option<&Path>,
) -> Result<(), StoreError> {
    let Some(root) = archive.filter(|_| rows > 0) else {
        // nothing to keep (no archive, or an empty day)
        return std::fs::remove_dir_all(dir).map_err(local_err(dir.display()));
    };
    let target = crate::lifecycle::Archive::new(root).day_dir(table, day);
    let target_dir = target.parent().unwrap_or(root).to_path_buf();
    std::fs::create_dir_all(&target_dir).map_err(local_err(target_dir.display()))?;
    let (read, bytes, sha256) = crate::lifecycle::archive::read_back(&dir.join(PART_FILE))
        .map_err(local_err("verifying the day before archiving"))?;
    if read != rows {
        return Err(StoreError::Local(format!(
            "{}: read back {read} rows, compacted {rows}",
            dir.display()
        )));
    }
    let manifest = crate::lifecycle::Manifest {
        version: 1,
        table: table.into(),
        day: crate::lifecycle::catalog::day_string(day),
        partition: format!("local:{}", dir.display()),
        rows,
        bytes,
        compression: "lz4_frame".into(),
        files: vec![crate::lifecycle::archive::ManifestFile {
            path: PART_FILE.into(),
            rows,
            bytes,
            sha256,
        }],
        schema: schema
            .fields()
            .iter()
            .map(|f| crate::lifecycle::archive::ManifestColumn {
                name: f.name().clone(),
                pg_type: String::new(),
                arrow_type: f.data_type().to_string(),
                nullable: true,
            })
            .collect(),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(local_err("manifest"))?;
    crate::lifecycle::archive::write_atomic(
        &dir.join(crate::lifecycle::archive::MANIFEST_FILE),
        &json,
    )
    .map_err(local_err("manifest"))?;
    // one rename moves the verified day (file + manifest) into the archive
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(local_err(target.display()))?;
    }
    std::fs::rename(dir, &target).map_err(local_err(target.display()))
}

/// Writes batches as an LZ4 Arrow IPC file via `*.tmp`, fsync and rename.
pub(super) fn write_file(
    path: &Path,
    schema: &SchemaRef,
    metadata: HashMap<String, String>,
    batches: &[RecordBatch],
) -> Result<(), StoreError> {
    let tmp = path.with_extension("arrow.tmp");
    let file = File::create(&tmp).map_err(local_err(tmp.display()))?;
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(local_err("lz4"))?;
    let mut writer = FileWriter::try_new_with_options(BufWriter::new(file), schema, options)
        .map_err(local_err(tmp.display()))?;
    // in the file footer, not the schema: DataFusion merges the schemas of a table's files
    for (k, v) in metadata {
        writer.write_metadata(k, v);
    }
    for b in batches {
        writer.write(b).map_err(local_err(tmp.display()))?;
    }
    writer.finish().map_err(local_err(tmp.display()))?;
    let file = writer
        .into_inner()
        .map_err(local_err(tmp.display()))?
        .into_inner()
        .map_err(|e| local_err(tmp.display())(e.into_error()))?;
    file.sync_all().map_err(local_err(tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(local_err(path.display()))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(local_err(dir.display()))?;
    }
    Ok(())
}

fn read_metadata(path: &Path) -> Result<HashMap<String, String>, StoreError> {
    let file = File::open(path).map_err(local_err(path.display()))?;
    let reader = FileReader::try_new(file, None).map_err(local_err(path.display()))?;
    Ok(reader.custom_metadata().clone())
}

pub(super) fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let file = File::open(path).map_err(local_err(path.display()))?;
    let reader = FileReader::try_new(file, None).map_err(local_err(path.display()))?;
    reader
        .map(|b| b.map_err(local_err(path.display())))
        .collect()
}

/// The seq a part file includes segments through (0: no part file).
pub(super) fn part_through(path: &Path) -> Result<u64, StoreError> {
    if !path.is_file() {
        return Ok(0);
    }
    Ok(read_metadata(path)?
        .get(THROUGH)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
