//! Every query an analyst ran (the log, shown back as their history) and the queries they keep.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{next_version, now_in_seconds, Store, StoreError};

#[derive(Debug, Clone, Row, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryLogEntry {
    pub id: String,
    pub user: String,
    pub scope: String,
    pub sql: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    #[schema(value_type = i64)]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub rows: u64,
    /// `ok`, `error` or `cancelled`.
    pub outcome: String,
    pub error: String,
}

impl QueryLogEntry {
    pub fn new(id: &str, user: &str, scope: &str, sql: &str) -> Self {
        QueryLogEntry {
            id: id.to_string(),
            user: user.to_string(),
            scope: scope.to_string(),
            sql: sql.to_string(),
            started_at: now_in_seconds(),
            duration_ms: 0,
            rows: 0,
            outcome: String::new(),
            error: String::new(),
        }
    }
}

/// The same entry for JSON answers: times as RFC 3339.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueryLogView {
    pub id: String,
    pub scope: String,
    pub sql: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub rows: u64,
    pub outcome: String,
    pub error: String,
}

impl From<QueryLogEntry> for QueryLogView {
    fn from(e: QueryLogEntry) -> Self {
        QueryLogView {
            id: e.id,
            scope: e.scope,
            sql: e.sql,
            started_at: e.started_at,
            duration_ms: e.duration_ms,
            rows: e.rows,
            outcome: e.outcome,
            error: e.error,
        }
    }
}

#[derive(Debug, Clone, Row, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ColumnInfo {
    pub table: String,
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SavedQuery {
    pub name: String,
    pub sql: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub saved_at: OffsetDateTime,
}

#[derive(Row, Serialize, Deserialize)]
struct SavedRow {
    user: String,
    name: String,
    sql: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    saved_at: OffsetDateTime,
    deleted: u8,
    version: u64,
}

pub async fn log(store: &Store, entry: &QueryLogEntry) -> Result<(), StoreError> {
    let mut insert = store.client().insert::<QueryLogEntry>("query_log").await?;
    insert.write(entry).await?;
    insert.end().await?;
    Ok(())
}

/// The user's most recent queries, newest first.
pub async fn history(
    store: &Store,
    user: &str,
    limit: u64,
) -> Result<Vec<QueryLogView>, StoreError> {
    let rows: Vec<QueryLogEntry> = store
        .client()
        .query("SELECT ?fields FROM query_log WHERE user = ? ORDER BY started_at DESC, id LIMIT ?")
        .bind(user)
        .bind(limit)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

async fn write_saved(store: &Store, row: &SavedRow) -> Result<(), StoreError> {
    let mut insert = store.client().insert::<SavedRow>("saved_queries").await?;
    insert.write(row).await?;
    insert.end().await?;
    Ok(())
}

pub async fn save(
    store: &Store,
    user: &str,
    name: &str,
    sql: &str,
) -> Result<SavedQuery, StoreError> {
    let saved_at = now_in_seconds();
    let row = SavedRow {
        user: user.into(),
        name: name.into(),
        sql: sql.into(),
        saved_at,
        deleted: 0,
        version: next_version(),
    };
    write_saved(store, &row).await?;
    Ok(SavedQuery {
        name: name.into(),
        sql: sql.into(),
        saved_at,
    })
}

/// Forgets a saved query; false when the user had none of that name.
pub async fn delete_saved(store: &Store, user: &str, name: &str) -> Result<bool, StoreError> {
    if !saved(store, user).await?.iter().any(|q| q.name == name) {
        return Ok(false);
    }
    let row = SavedRow {
        user: user.into(),
        name: name.into(),
        sql: String::new(),
        saved_at: now_in_seconds(),
        deleted: 1,
        version: next_version(),
    };
    write_saved(store, &row).await?;
    Ok(true)
}

pub async fn saved(store: &Store, user: &str) -> Result<Vec<SavedQuery>, StoreError> {
    let rows: Vec<SavedRow> = store
        .client()
        .query(
            "SELECT user, name, argMax(sql, version), argMax(saved_at, version), argMax(deleted, version) AS gone, \
             max(version) FROM saved_queries WHERE user = ? GROUP BY user, name HAVING gone = 0 ORDER BY name",
        )
        .bind(user)
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| SavedQuery {
            name: r.name,
            sql: r.sql,
            saved_at: r.saved_at,
        })
        .collect())
}
