//! The record of import runs (`imports`), and the ids of the ledger records already counted.

use serde::Serialize;
use time::OffsetDateTime;

use crate::ingest::log::{id_hash, IdSet};
use crate::store::{counted_imports_param, Store, StoreError, COUNTED_EVENTS};

/// Id hashes of the ledger records already counted (for dedup across imports).
pub async fn imported_ids(store: &Store) -> Result<IdSet, StoreError> {
    let oks = store.ok_imports().await?;
    let mut cursor = store
        .client()
        .query(&format!(
            "SELECT id FROM events WHERE seq >= ? AND {COUNTED_EVENTS}"
        ))
        .bind(crate::domain::record::IMPORT_SEQ_BASE)
        .bind(counted_imports_param(&oks))
        .with_setting("wait_end_of_query", "1")
        .fetch::<String>()?;
    let mut ids = IdSet::default();
    while let Some(id) = cursor.next().await? {
        ids.insert(id_hash(&id));
    }
    Ok(ids)
}

#[derive(clickhouse::Row, Serialize, serde::Deserialize)]
pub struct ImportRow {
    pub import_no: u32,
    pub file: String,
    pub family: String,
    pub format: String,
    pub by: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub started: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub ended: OffsetDateTime,
    pub rows: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub outcome: String,
    pub error: String,
    pub version: u64,
    pub corrected: u64,
    pub withdrawn: u64,
}

pub async fn record(store: &Store, row: &ImportRow) -> Result<(), StoreError> {
    let mut insert = store.client().insert::<ImportRow>("imports").await?;
    insert.write(row).await?;
    insert.end().await?;
    Ok(())
}

/// Every import, newest first (the last 200), as recorded.
pub async fn list(store: &Store) -> Result<Vec<ImportRow>, StoreError> {
    Ok(store
        .client()
        .query(
            "SELECT import_no, argMax(file, version), argMax(family, version), argMax(format, version), argMax(by, version), \
             argMax(started, version), argMax(ended, version), argMax(rows, version), argMax(accepted, version), \
             argMax(duplicates, version), argMax(rejected, version), argMax(outcome, version), argMax(error, version), \
             max(version), argMax(corrected, version), argMax(withdrawn, version) \
             FROM imports GROUP BY import_no ORDER BY import_no DESC LIMIT 200",
        )
        .fetch_all()
        .await?)
}
