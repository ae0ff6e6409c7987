//! SQL over the archive with DataFusion: every `<archive_dir>/<table>/` folder is a table of
//! that name over its Arrow IPC files, with the hive-style `day` column (`YYYY-MM-DD`) from
//! the folder names. Read-only: DDL, DML and statements are refused, so a query cannot create
//! tables over other files or write anywhere. Used by `mcpwatch query` and `GET /v1/query`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::archive::DATA_FILE;
use super::LifecycleError;
use crate::store::is_identifier;

/// Rows and their schema.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// More rows matched than the limit allowed.
    pub truncated: bool,
}

/// The tables found in `dir`: folders with a plain SQL name holding at least one day folder
/// with an Arrow file (an archived partition, or the embedded store's segments).
pub fn archived_tables(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_identifier(name))
        .filter(|name| {
            std::fs::read_dir(dir.join(name)).is_ok_and(|days| {
                days.filter_map(|d| d.ok())
                    .any(|d| has_arrow_file(&d.path()))
            })
        })
        .collect();
    out.sort();
    out
}

fn has_arrow_file(day_dir: &Path) -> bool {
    day_dir.join(DATA_FILE).is_file()
        || std::fs::read_dir(day_dir).is_ok_and(|files| {
            files.filter_map(|f| f.ok()).any(|f| {
                f.file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(".arrow"))
            })
        })
}

/// A DataFusion session with every archived table of `dir` registered.
pub async fn archive_context(dir: &Path) -> Result<SessionContext, LifecycleError> {
    context_over(&[dir.to_path_buf()]).await
}

/// A DataFusion session where each table name found under any of `roots` (the archive, the
/// embedded store) is one table over all of their Arrow files.
pub async fn context_over(roots: &[PathBuf]) -> Result<SessionContext, LifecycleError> {
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    let mut tables: BTreeMap<String, Vec<ListingTableUrl>> = BTreeMap::new();
    for root in roots {
        for table in archived_tables(root) {
            let path = root.join(&table);
            let path = std::path::absolute(&path).map_err(|e| LifecycleError::io(&path, e))?;
            let url = ListingTableUrl::parse(format!("{}/", path.display()))?;
            tables.entry(table).or_default().push(url);
        }
    }
    for (table, urls) in tables {
        let options = ListingOptions::new(Arc::new(ArrowFormat))
            .with_file_extension(".arrow")
            .with_table_partition_cols(vec![("day".into(), DataType::Utf8)]);
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .infer_schema(&ctx.state())
            .await?;
        ctx.register_table(&table, Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(ctx)
}

/// Runs one read-only query; at most `max_rows` rows come back (`truncated` says if more
/// matched), and it fails after `timeout`.
pub async fn run_query(
    ctx: &SessionContext,
    sql: &str,
    max_rows: Option<usize>,
    timeout: Duration,
) -> Result<QueryResult, LifecycleError> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let work = async {
        let mut df = ctx.sql_with_options(sql, options).await?;
        if let Some(max) = max_rows {
            df = df.limit(0, Some(max + 1))?;
        }
        let schema: SchemaRef = df.schema().inner().clone();
        let batches = df.collect().await?;
        Ok::<_, LifecycleError>((schema, batches))
    };
    let (schema, mut batches) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| LifecycleError::QueryTimeout(timeout.as_secs()))??;
    let mut rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut truncated = false;
    if let Some(max) = max_rows {
        if rows > max {
            truncated = true;
            let mut keep = max;
            for b in batches.iter_mut() {
                let n = b.num_rows().min(keep);
                *b = b.slice(0, n);
                keep -= n;
            }
            batches.retain(|b| b.num_rows() > 0);
            rows = max;
        }
    }
    Ok(QueryResult {
        schema,
        batches,
        rows,
        truncated,
    })
}

/// The result as an aligned text table.
pub fn format_table(result: &QueryResult) -> Result<String, LifecycleError> {
    if result.batches.is_empty() {
        let empty = RecordBatch::new_empty(result.schema.clone());
        return Ok(datafusion::arrow::util::pretty::pretty_format_batches(&[empty])?.to_string());
    }
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(&result.batches)?.to_string())
}

/// The result as CSV with a header line.
pub fn write_csv(result: &QueryResult, out: impl std::io::Write) -> Result<(), LifecycleError> {
    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(out);
    if result.batches.is_empty() {
        writer.write(&RecordBatch::new_empty(result.schema.clone()))?;
    }
    for b in &result.batches {
        writer.write(b)?;
    }
    Ok(())
}

/// The rows as a JSON array of objects (column → value; nulls omitted).
pub fn to_json_rows(result: &QueryResult) -> Result<serde_json::Value, LifecycleError> {
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    for b in &result.batches {
        writer.write(b)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| LifecycleError::Query(e.to_string()))
}
