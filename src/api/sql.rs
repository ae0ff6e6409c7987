//! `GET /v1/query?sql=…[&format=json|csv]`: read-only DataFusion SQL over the archive, for
//! operators (the HTTP face of `mcpwatch query`). Only queries run (no DDL, DML or
//! statements), at most `retention.query_max_rows` rows come back, and any error is a 400 JSON.

use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::lifecycle::query::{context_over, run_query, to_json_rows, write_csv};

/// Where the archive is and how much a query may do.
#[derive(Debug, Clone)]
pub struct QueryState {
    /// The archive and, on the embedded store, its root: a table name found under several
    /// roots is one table over all of them.
    pub roots: Vec<PathBuf>,
    pub max_rows: usize,
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
pub struct Params {
    sql: Option<String>,
    format: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message)
}

pub async fn query(
    State(state): State<ApiState>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| bad(e.body_text()))?;
    let Some(q) = state.sql.as_deref() else {
        return Err(ApiError::not_found(
            "archive queries are off (retention.archive = false)",
        ));
    };
    let sql = params
        .sql
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad("pass the query as ?sql=SELECT …").with_field("sql"))?;
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(
                bad(format!("unknown format {other:?}: use json or csv")).with_field("format")
            )
        }
    };
    let ctx = context_over(&q.roots)
        .await
        .map_err(|e| ApiError::unavailable(format!("opening the archive: {e}")))?;
    let result = run_query(&ctx, &sql, Some(q.max_rows), q.timeout)
        .await
        .map_err(|e| bad(e.to_string()).with_field("sql"))?;
    if csv {
        let mut out = Vec::new();
        write_csv(&result, &mut out).map_err(|e| bad(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let rows = to_json_rows(&result).map_err(|e| bad(e.to_string()))?;
    let columns: Vec<serde_json::Value> = result
        .schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    Ok(Json(serde_json::json!({
        "columns": columns,
        "rows": rows,
        "row_count": result.rows,
        "truncated": result.truncated,
    }))
    .into_response())
}
