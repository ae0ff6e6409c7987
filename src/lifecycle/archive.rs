//! The archive tier: one expired daily partition becomes an Arrow IPC file (LZ4 frames) plus a
//! JSON manifest, written atomically and verified by reading it back before the partition may
//! be dropped.
//!
//! ```text
//! <archive_dir>/<table>/day=YYYY-MM-DD/part-00000.arrow   the rows (hive-style day column)
//! <archive_dir>/<table>/day=YYYY-MM-DD/manifest.json      table, day, files, rows, bytes,
//!                                                          schema, sha256 — the commit marker
//! ```
//!
//! The data file is written as `*.tmp`, synced and renamed; the manifest is written last, the
//! same way, so a manifest exists only for a complete, verified file. A rerun after a crash
//! overwrites the same names, so nothing is ever archived twice.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use datafusion::arrow::ipc::CompressionType;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use super::catalog::{day_string, PartitionInfo};
use super::LifecycleError;

/// Rows per Arrow record batch written.
const BATCH_ROWS: usize = 65_536;
/// The one data file of a partition.
pub const DATA_FILE: &str = "part-00000.arrow";
pub const MANIFEST_FILE: &str = "manifest.json";

/// What an archived partition holds; written last, so its presence means "complete".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub table: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The PostgreSQL partition the rows came from.
    pub partition: String,
    pub rows: u64,
    /// Bytes of all data files.
    pub bytes: u64,
    pub compression: String,
    pub files: Vec<ManifestFile>,
    pub schema: Vec<ManifestColumn>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    /// Relative to the manifest's folder.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestColumn {
    pub name: String,
    pub pg_type: String,
    pub arrow_type: String,
    pub nullable: bool,
}

/// How one PostgreSQL column is read and stored.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    I16,
    I32,
    I64,
    F32,
    F64,
    Bool,
    TimestampTz,
    Timestamp,
    Date,
    /// Anything else (numeric, json, arrays, …) is stored as its text form.
    AsText,
}

impl Kind {
    fn of(pg_type: &str) -> Kind {
        match pg_type {
            "text" | "name" => Kind::Text,
            t if t.starts_with("character varying") || t.starts_with("character(") => Kind::AsText,
            "smallint" => Kind::I16,
            "integer" => Kind::I32,
            "bigint" => Kind::I64,
            "real" => Kind::F32,
            "double precision" => Kind::F64,
            "boolean" => Kind::Bool,
            "timestamp with time zone" => Kind::TimestampTz,
            "timestamp without time zone" => Kind::Timestamp,
            "date" => Kind::Date,
            _ => Kind::AsText,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Text | Kind::AsText => DataType::Utf8,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::F32 => DataType::Float32,
            Kind::F64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Date => DataType::Date32,
        }
    }
}

struct Column {
    name: String,
    pg_type: String,
    kind: Kind,
    nullable: bool,
}

enum Builder {
    Str(StringBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Date(Date32Builder),
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        match kind {
            Kind::Text | Kind::AsText => Builder::Str(StringBuilder::new()),
            Kind::I16 => Builder::I16(Int16Builder::new()),
            Kind::I32 => Builder::I32(Int32Builder::new()),
            Kind::I64 => Builder::I64(Int64Builder::new()),
            Kind::F32 => Builder::F32(Float32Builder::new()),
            Kind::F64 => Builder::F64(Float64Builder::new()),
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::TimestampTz => {
                Builder::Ts(TimestampMicrosecondBuilder::new(), Some("UTC".into()))
            }
            Kind::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new(), None),
            Kind::Date => Builder::Date(Date32Builder::new()),
        }
    }

    fn push(
        &mut self,
        kind: Kind,
        row: &tokio_postgres::Row,
        i: usize,
    ) -> Result<(), tokio_postgres::Error> {
        match self {
            Builder::Str(b) => b.append_option(row.try_get::<_, Option<&str>>(i)?),
            Builder::I16(b) => b.append_option(row.try_get::<_, Option<i16>>(i)?),
            Builder::I32(b) => b.append_option(row.try_get::<_, Option<i32>>(i)?),
            Builder::I64(b) => b.append_option(row.try_get::<_, Option<i64>>(i)?),
            Builder::F32(b) => b.append_option(row.try_get::<_, Option<f32>>(i)?),
            Builder::F64(b) => b.append_option(row.try_get::<_, Option<f64>>(i)?),
            Builder::Bool(b) => b.append_option(row.try_get::<_, Option<bool>>(i)?),
            Builder::Ts(b, _) if kind == Kind::TimestampTz => b.append_option(
                row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)?
                    .map(|t| t.timestamp_micros()),
            ),
            Builder::Ts(b, _) => b.append_option(
                row.try_get::<_, Option<chrono::NaiveDateTime>>(i)?
                    .map(|t| t.and_utc().timestamp_micros()),
            ),
            Builder::Date(b) => b.append_option(
                row.try_get::<_, Option<chrono::NaiveDate>>(i)?
                    .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32),
            ),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Builder::Date(b) => Arc::new(b.finish()),
        }
    }
}

/// The archive folder and its operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Archive {
    pub dir: PathBuf,
}

impl Archive {
    pub fn new(dir: impl Into<PathBuf>) -> Archive {
        Archive { dir: dir.into() }
    }

    /// `<dir>/<table>/day=YYYY-MM-DD`.
    pub fn day_dir(&self, table: &str, day: i64) -> PathBuf {
        self.dir
            .join(table)
            .join(format!("day={}", day_string(day)))
    }

    /// The manifest of an archived partition, if its archive completed.
    pub fn read_manifest(&self, table: &str, day: i64) -> Result<Option<Manifest>, LifecycleError> {
        let path = self.day_dir(table, day).join(MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| LifecycleError::Manifest {
                        path: path.clone(),
                        problem: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LifecycleError::io(&path, e)),
        }
    }

    /// Checks every file a manifest names: present, same size and checksum, and the row count
    /// read back with the Arrow IPC reader equals the manifest's. Returns the rows read.
    pub fn verify(&self, manifest: &Manifest) -> Result<u64, LifecycleError> {
        let dir = self
            .dir
            .join(&manifest.table)
            .join(format!("day={}", manifest.day));
        let mut total = 0;
        for f in &manifest.files {
            let path = dir.join(&f.path);
            let (rows, bytes, sha) = read_back(&path)?;
            if rows != f.rows || bytes != f.bytes || sha != f.sha256 {
                return Err(LifecycleError::Verify {
                    path,
                    problem: format!(
                        "read back rows={rows} bytes={bytes} sha256={sha}, manifest says rows={} bytes={} sha256={}",
                        f.rows, f.bytes, f.sha256
                    ),
                });
            }
            total += rows;
        }
        if total != manifest.rows {
            return Err(LifecycleError::Verify {
                path: dir.join(MANIFEST_FILE),
                problem: format!("files hold {total} rows, manifest says {}", manifest.rows),
            });
        }
        Ok(total)
    }

    /// Writes `part` (detached or not, it is only read) to the archive and verifies it.
    /// `expected_rows` is the partition's `count(*)`; any other count read back fails the
    /// archive, so the caller never drops a partition whose rows are not all in the file.
    pub async fn write_partition(
        &self,
        client: &tokio_postgres::Client,
        part: &PartitionInfo,
        expected_rows: u64,
    ) -> Result<Manifest, LifecycleError> {
        let columns = describe(client, &part.name).await?;
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.data_type(), true))
                .collect::<Vec<_>>(),
        ));
        let dir = self.day_dir(&part.table, part.day);
        std::fs::create_dir_all(&dir).map_err(|e| LifecycleError::io(&dir, e))?;
        let final_path = dir.join(DATA_FILE);
        let tmp_path = dir.join(format!("{DATA_FILE}.tmp"));

        let file = File::create(&tmp_path).map_err(|e| LifecycleError::io(&tmp_path, e))?;
        let options =
            IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
        let mut writer = FileWriter::try_new_with_options(BufWriter::new(file), &schema, options)?;

        let select = columns
            .iter()
            .map(|c| {
                if c.kind == Kind::AsText {
                    format!("\"{}\"::text", c.name)
                } else {
                    format!("\"{}\"", c.name)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let stream = client
            .query_raw(&format!("SELECT {select} FROM {}", part.name), no_params())
            .await?;
        futures::pin_mut!(stream);
        let mut builders: Vec<Builder> = columns.iter().map(|c| Builder::new(c.kind)).collect();
        let mut in_batch = 0usize;
        let mut written = 0u64;
        while let Some(row) = stream.next().await {
            let row = row?;
            for (i, (b, c)) in builders.iter_mut().zip(&columns).enumerate() {
                b.push(c.kind, &row, i)?;
            }
            in_batch += 1;
            if in_batch == BATCH_ROWS {
                written += flush(&mut writer, &schema, &mut builders)?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            written += flush(&mut writer, &schema, &mut builders)?;
        }
        writer.finish()?;
        let file = writer
            .into_inner()?
            .into_inner()
            .map_err(|e| LifecycleError::io(&tmp_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| LifecycleError::io(&tmp_path, e))?;
        drop(file);
        std::fs::rename(&tmp_path, &final_path).map_err(|e| LifecycleError::io(&final_path, e))?;
        sync_dir(&dir)?;

        // verify by reading the renamed file back before anyone may drop the partition
        let (rows, bytes, sha256) = read_back(&final_path)?;
        if rows != written || rows != expected_rows {
            return Err(LifecycleError::Verify {
                path: final_path,
                problem: format!(
                    "read back {rows} rows, streamed {written}, the partition holds {expected_rows}"
                ),
            });
        }
        let manifest = Manifest {
            version: 1,
            table: part.table.clone(),
            day: day_string(part.day),
            partition: part.name.clone(),
            rows,
            bytes,
            compression: "lz4_frame".into(),
            files: vec![ManifestFile {
                path: DATA_FILE.into(),
                rows,
                bytes,
                sha256,
            }],
            schema: columns
                .iter()
                .map(|c| ManifestColumn {
                    name: c.name.clone(),
                    pg_type: c.pg_type.clone(),
                    arrow_type: c.kind.data_type().to_string(),
                    nullable: c.nullable,
                })
                .collect(),
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| LifecycleError::Manifest {
            path: dir.join(MANIFEST_FILE),
            problem: e.to_string(),
        })?;
        write_atomic(&dir.join(MANIFEST_FILE), &json)?;
        Ok(manifest)
    }
}

fn no_params() -> impl ExactSizeIterator<Item = &'static (dyn ToSql + Sync)> {
    std::iter::empty()
}

fn flush(
    writer: &mut FileWriter<BufWriter<File>>,
    schema: &SchemaRef,
    builders: &mut [Builder],
) -> Result<u64, LifecycleError> {
    let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    writer.write(&batch)?;
    Ok(batch.num_rows() as u64)
}

/// Columns of a table in order, with their PostgreSQL type names.
async fn describe(
    client: &tokio_postgres::Client,
    table: &str,
) -> Result<Vec<Column>, LifecycleError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_attribute a \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let pg_type: String = r.get(1);
            Column {
                name: r.get(0),
                kind: Kind::of(&pg_type),
                pg_type,
                nullable: !r.get::<_, bool>(2),
            }
        })
        .collect())
}

/// Rows (Arrow IPC reader), bytes and hex SHA-256 of an archive file.
pub fn read_back(path: &Path) -> Result<(u64, u64, String), LifecycleError> {
    let file = File::open(path).map_err(|e| LifecycleError::io(path, e))?;
    let reader = FileReader::try_new(file, None)?;
    let mut rows = 0u64;
    for batch in reader {
        rows += batch?.num_rows() as u64;
    }
    let mut file = File::open(path).map_err(|e| LifecycleError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| LifecycleError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    Ok((rows, bytes, sha))
}

/// Writes `bytes` to `path` via a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LifecycleError> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| LifecycleError::io(&tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| LifecycleError::io(&tmp, e))?;
        f.sync_all().map_err(|e| LifecycleError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| LifecycleError::io(path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), LifecycleError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LifecycleError::io(dir, e))?;
    Ok(())
}
