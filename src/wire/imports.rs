//! Ledger imports: the answer to an upload, and the list of import runs.

use serde::Serialize;

use crate::batch::ledger::{check, import, runs};
use crate::domain::time::rfc3339;

/// One rejected row of a ledger.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectRow {
    /// The row as a spreadsheet numbers it (the header is row 1).
    pub row: u64,
    /// The column, as headed in the file.
    pub column: String,
    /// What the cell said.
    pub value: String,
    pub reason: String,
}

impl From<&check::RejectRow> for RejectRow {
    fn from(r: &check::RejectRow) -> Self {
        RejectRow {
            row: r.row,
            column: r.column.clone(),
            value: r.value.clone(),
            reason: r.reason.clone(),
        }
    }
}

/// `POST /api/v1/imports`: what an import did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportAnswer {
    pub import_no: u32,
    pub file: String,
    /// The ledger family: hires, staffing, headcount, classes, attendance, ratings, appeals,
    /// veterans or archives.
    pub family: String,
    pub rows: u64,
    /// New records loaded.
    pub accepted: u64,
    /// Rows already imported before (or twice in this file): no change.
    pub duplicates: u64,
    /// Rows whose 记录编号 an earlier import loaded, with other content: each corrects that
    /// record (its new version).
    pub corrected: u64,
    /// Records of earlier imports withdrawn because the file no longer holds them (only with
    /// `withdraw_missing=true`).
    pub withdrawn: u64,
    /// The first changes (行号, 记录编号, 列, 原值, 新值).
    pub changes: Vec<crate::batch::ledger::corrections::ChangeRow>,
    /// Where the whole change report (CSV) is, when any row corrected a record.
    pub changes_url: Option<String>,
    pub rejected: u64,
    /// Always null over HTTP: the reject file is at `rejects_url`.
    pub reject_file: Option<String>,
    /// Where the whole reject file (CSV: 行号, 列, 内容, 原因) is, when any row was rejected.
    pub rejects_url: Option<String>,
    /// Columns the importer did not recognise (ignored).
    pub ignored_columns: Vec<String>,
    /// The first rejects, for a quick look.
    pub rejects: Vec<RejectRow>,
    pub seconds: f64,
}

impl ImportAnswer {
    pub fn new(
        s: &import::ImportSummary,
        rejects_url: Option<String>,
        changes_url: Option<String>,
    ) -> Self {
        ImportAnswer {
            import_no: s.import_no,
            file: s.file.clone(),
            family: s.family.clone(),
            rows: s.rows,
            accepted: s.accepted,
            duplicates: s.duplicates,
            corrected: s.corrected,
            withdrawn: s.withdrawn,
            changes: s.changes.clone(),
            changes_url,
            rejected: s.rejected,
            reject_file: None,
            rejects_url,
            ignored_columns: s.ignored_columns.clone(),
            rejects: s.rejects.iter().map(RejectRow::from).collect(),
            seconds: s.seconds,
        }
    }
}

/// One import run (`GET /api/v1/imports`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportRun {
    pub import_no: u32,
    pub file: String,
    pub family: String,
    /// csv, xlsx …
    pub format: String,
    pub by: String,
    /// RFC 3339.
    pub started: String,
    pub ended: String,
    pub rows: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub corrected: u64,
    pub withdrawn: u64,
    pub rejected: u64,
    /// running | ok | failed
    pub outcome: String,
    pub error: String,
}

impl From<runs::ImportRow> for ImportRun {
    fn from(r: runs::ImportRow) -> Self {
        ImportRun {
            import_no: r.import_no,
            file: r.file,
            family: r.family,
            format: r.format,
            by: r.by,
            started: rfc3339(r.started),
            ended: rfc3339(r.ended),
            rows: r.rows,
            accepted: r.accepted,
            duplicates: r.duplicates,
            corrected: r.corrected,
            withdrawn: r.withdrawn,
            rejected: r.rejected,
            outcome: r.outcome,
            error: r.error,
        }
    }
}
