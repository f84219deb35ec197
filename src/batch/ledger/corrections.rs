//! A re-imported ledger as corrections: a row whose id (its 记录编号) an earlier import
//! loaded, with other content, replaces that record's newest version; asked to, the records of
//! earlier imports a re-imported ledger no longer holds (same family, same orgs) are withdrawn.
//!
//! Each change is rows of the import, in its seq range, counted once the import finishes like
//! any imported row (see [`crate::domain::revision`] for the rows a change is).

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::domain::kinds::Kinds;
use crate::domain::record::{EventRow, Kind, IMPORT_SEQ_BASE};
use crate::domain::revision::{correction_rows, same_content, History};
use crate::ingest::log::{id_hash, IdSet};
use crate::store::{counted_imports_param, Store, StoreError, COUNTED_EVENTS, EFFECTIVE_EVENTS};

/// A cancelling row's seq: past every row number of the import (row numbers stay far below).
pub const CANCEL_OFFSET: u64 = 1 << 31;

/// Ids asked about per query: the ids go in the query's text (ClickHouse reads 256 KiB of it).
const IDS_PER_QUERY: usize = 2_000;

/// One changed cell of a corrected row, as the change report lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangeRow {
    /// The row of the file (the header is row 1).
    #[serde(rename = "行号")]
    pub row: u64,
    #[serde(rename = "记录编号")]
    pub id: String,
    #[serde(rename = "列")]
    pub column: String,
    #[serde(rename = "原值")]
    pub old: String,
    #[serde(rename = "新值")]
    pub new: String,
}

/// What the rows of earlier imports say about `candidates` (rows whose id an earlier import
/// loaded): the rows that correct the records they changed, and the changes, cell by cell.
/// Unchanged rows, and rows of records withdrawn since, are duplicates. A row whose 记录编号
/// names a record of an org outside the importer's scope (`within` says no) is rejected: the
/// number is another unit's, and a ledger must not move or change another unit's record.
pub async fn corrections(
    store: &Store,
    kinds: &Kinds,
    candidates: Vec<EventRow>,
    import_seq: u64,
    by: &str,
    reason: &str,
    within: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Corrections, StoreError> {
    let mut rows = Vec::new();
    let mut changes = Vec::new();
    let mut rejects = Vec::new();
    let mut unchanged = 0u64;
    for batch in candidates.chunks(IDS_PER_QUERY) {
        let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
        let mut stored = stored_rows(store, &ids).await?;
        for new in batch {
            let Some(history) = stored.remove(&new.id).and_then(History::of) else {
                unchanged += 1;
                continue;
            };
            let newest = &history.newest().row;
            // The 记录编号 as the ledger writes it (stored as ledger:<family>:<number>).
            let record_no = new.id.splitn(3, ':').nth(2).unwrap_or(&new.id).to_string();
            if !within(&newest.org) {
                rejects.push(super::check::RejectRow {
                    row: new.seq - import_seq,
                    column: "记录编号".into(),
                    value: record_no,
                    reason: "记录编号已被本单位范围以外的记录使用：请换用本单位自己的编号（如加上单位简称）".into(),
                });
                continue;
            }
            if history.is_withdrawn() || same_content(newest, new) || newest.kind != new.kind {
                unchanged += 1;
                continue;
            }
            let line = new.seq - import_seq;
            changes.extend(changed_cells(kinds, newest, new).into_iter().map(
                |(column, old, new_value)| ChangeRow {
                    row: line,
                    id: record_no.clone(),
                    column,
                    old,
                    new: new_value,
                },
            ));
            let [mut cancel, version] = correction_rows(&history, new.clone(), by, reason);
            cancel.seq = new.seq + CANCEL_OFFSET;
            cancel.source = "ledger".into();
            rows.push(cancel);
            rows.push(version);
        }
    }
    Ok(Corrections {
        rows,
        changes,
        unchanged,
        rejects,
    })
}

/// What [`corrections`] found among the rows of known ids.
pub struct Corrections {
    /// The cancelling rows and new versions to log.
    pub rows: Vec<EventRow>,
    pub changes: Vec<ChangeRow>,
    /// Rows the store already holds as they are (duplicates).
    pub unchanged: u64,
    /// Rows naming another unit's record.
    pub rejects: Vec<super::check::RejectRow>,
}

/// Every counted row of earlier imports with one of `ids`, by id.
async fn stored_rows(
    store: &Store,
    ids: &[&str],
) -> Result<HashMap<String, Vec<EventRow>>, StoreError> {
    let imports = counted_imports_param(&store.ok_imports().await?);
    let rows: Vec<EventRow> = store
        .client()
        .query(&format!(
            "SELECT ?fields FROM events WHERE seq >= ? AND has(?, id) AND {COUNTED_EVENTS}"
        ))
        .bind(IMPORT_SEQ_BASE)
        .bind(ids)
        .bind(imports)
        .fetch_all()
        .await?;
    let mut by_id: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in rows {
        by_id.entry(row.id.clone()).or_default().push(row);
    }
    Ok(by_id)
}

/// The rows withdrawing the effective records of earlier imports of `kinds` at `orgs` whose
/// ids the file does not hold (`in_file`): a ledger that is the whole truth of its family and
/// orgs. Seqs follow `next_seq`.
pub async fn withdraw_missing(
    store: &Store,
    kinds: &[Kind],
    orgs: &BTreeSet<String>,
    in_file: &IdSet,
    mut next_seq: u64,
    by: &str,
    reason: &str,
) -> Result<Vec<EventRow>, StoreError> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let imports = counted_imports_param(&store.ok_imports().await?);
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    let mut cursor = store
        .client()
        .query(&format!(
            "SELECT ?fields FROM events WHERE seq >= ? AND has(?, kind) AND has(?, org) AND {EFFECTIVE_EVENTS}"
        ))
        .bind(IMPORT_SEQ_BASE)
        .bind(kinds)
        .bind(orgs)
        .bind(&imports)
        .bind(&imports)
        .fetch::<EventRow>()?;
    let mut rows = Vec::new();
    while let Some(stored) = cursor.next().await? {
        if in_file.contains(id_hash(&stored.id)) {
            continue;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u32;
        let mut row = stored.cancelling(by, reason, now);
        row.seq = next_seq;
        row.source = "ledger".into();
        next_seq += 1;
        rows.push(row);
    }
    Ok(rows)
}

/// The cells a correction changes, as (column, old, new): the org, the date, and each field
/// of the kind, under the headers a clerk reads.
fn changed_cells(kinds: &Kinds, old: &EventRow, new: &EventRow) -> Vec<(String, String, String)> {
    let mut cells = Vec::new();
    if old.org != new.org {
        cells.push(("单位代码".to_string(), old.org.clone(), new.org.clone()));
    }
    if old.at != new.at {
        let day = |unix: u32| crate::domain::time::local_date_of(unix).to_string();
        let (a, b) = (day(old.at), day(new.at));
        let (a, b) = if a == b {
            let t = |unix: u32| crate::domain::time::rfc3339_shanghai(unix as i64);
            (t(old.at), t(new.at))
        } else {
            (a, b)
        };
        cells.push(("日期".to_string(), a, b));
    }
    let data = |row: &EventRow| {
        serde_json::from_str::<serde_json::Value>(&row.data).unwrap_or(serde_json::Value::Null)
    };
    let (old_data, new_data) = (data(old), data(new));
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(def) = kinds.get(&new.kind) {
        for field in &def.fields {
            let (a, b) = (&old_data[&field.name], &new_data[&field.name]);
            if a != b {
                cells.push((field.label_zh.clone(), text(a), text(b)));
            }
        }
    }
    if cells.is_empty() {
        // Something outside the kind's fields changed (a location, another key of `data`).
        cells.push(("其他".to_string(), old.data.clone(), new.data.clone()));
    }
    cells
}
