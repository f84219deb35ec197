//! Importing a ledger file: read it in chunks (CSV with polars, Excel with calamine), clean
//! each chunk with [`super::normalize`], check every row as the ingest API checks a record,
//! write rejects to a CSV beside the summary, and load the good rows into `events`.
//!
//! Idempotent like the ingest API: a row's id is its 记录编号 when the ledger has one, else a
//! hash of what the row says once cleaned (family, org, date and the family's own fields), so a
//! re-imported file — or the same data re-typed in Excel — adds nothing. Memory stays bounded:
//! one chunk of rows at a time, plus the ids of earlier imports.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;
use serde::Serialize;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use super::normalize::{normalize, OrgLookup};
use super::{field_of_header, Family, Field};
use crate::domain::org::NodeIdx;
use crate::domain::record::{import_seq_base, EventRow, Kind, Locator, MAX_ID_LEN};
use crate::domain::time::SHANGHAI;
use crate::domain::{Level, OrgTree};
use crate::ingest::log::IdSet;
use crate::store::{counted_imports_param, Store, StoreError, COUNTED_EVENTS};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<clickhouse::error::Error> for ImportError {
    fn from(e: clickhouse::error::Error) -> Self {
        ImportError::Store(e.into())
    }
}

impl From<PolarsError> for ImportError {
    fn from(e: PolarsError) -> Self {
        ImportError::Unexpected(anyhow::anyhow!("polars: {e}"))
    }
}

pub struct ImportOptions {
    /// Which ledger; None: told by the headers.
    pub family: Option<Family>,
    /// Where the reject file goes (default: beside the input).
    pub reject_dir: Option<PathBuf>,
    /// Rows per chunk (memory is proportional to it).
    pub chunk_rows: usize,
    /// Only rows inside this subtree are accepted (the importer's scope).
    pub scope: Option<NodeIdx>,
    /// Who imports (recorded with the run).
    pub by: String,
    /// The name to record (uploads arrive as temporary files).
    pub display_name: Option<String>,
    /// Called with (rows done, bytes or rows of the whole) after every chunk.
    pub progress: Option<Box<dyn Fn(u64, u64) + Send>>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            family: None,
            reject_dir: None,
            chunk_rows: 200_000,
            scope: None,
            by: String::new(),
            display_name: None,
            progress: None,
        }
    }
}

/// One rejected row: its row number as a spreadsheet shows it (the header is row 1), the column
/// (as headed in the file), what it said, and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RejectRow {
    pub row: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    pub import_no: u32,
    pub file: String,
    pub family: String,
    pub rows: u64,
    /// New records loaded.
    pub accepted: u64,
    /// Rows already imported before (or twice in this file): no change.
    pub duplicates: u64,
    pub rejected: u64,
    /// The reject file (CSV: 行号, 列, 内容, 原因), when any row was rejected.
    pub reject_file: Option<String>,
    /// Columns the importer did not recognise (ignored).
    pub ignored_columns: Vec<String>,
    /// The first rejects, for a quick look.
    pub rejects: Vec<RejectRow>,
    pub seconds: f64,
}

/// A chunk of raw cells: text columns named by [`Field::key`].
struct RawChunk {
    frame: DataFrame,
    /// Row number (1-based, header = 1) of the chunk's first row.
    first_row: u64,
}

/// The file's header: which column is which field.
struct Header {
    names: Vec<String>,
    fields: Vec<Option<Field>>,
}

impl Header {
    fn new(names: Vec<String>) -> Self {
        let mut seen = HashSet::new();
        // The first column a field appears in wins; a repeated field is ignored.
        let fields = names
            .iter()
            .map(|h| field_of_header(h).filter(|f| seen.insert(*f)))
            .collect();
        Header { names, fields }
    }

    fn present(&self) -> Vec<Field> {
        self.fields.iter().flatten().copied().collect()
    }

    fn ignored(&self) -> Vec<String> {
        self.names
            .iter()
            .zip(&self.fields)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| n.trim().to_string())
            .collect()
    }

    fn header_of(&self, field: Field) -> String {
        self.fields
            .iter()
            .position(|f| *f == Some(field))
            .map(|i| self.names[i].trim().to_string())
            .unwrap_or_else(|| field.key().to_string())
    }
}

enum Source {
    Csv {
        reader: BufReader<std::fs::File>,
        header_line: Vec<u8>,
        total_bytes: u64,
        read_bytes: u64,
    },
    Excel {
        rows: std::vec::IntoIter<Vec<String>>,
        total_rows: u64,
    },
}

fn file_error(path: &Path, reason: impl Into<String>) -> ImportError {
    ImportError::File {
        file: path.display().to_string(),
        reason: reason.into(),
    }
}

fn open(path: &Path) -> Result<(Header, Source), ImportError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "txt" => {
            let file = std::fs::File::open(path).map_err(|e| file_error(path, e.to_string()))?;
            let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut header_line = Vec::new();
            reader
                .read_until(b'\n', &mut header_line)
                .map_err(|e| file_error(path, e.to_string()))?;
            if header_line.starts_with(&[0xEF, 0xBB, 0xBF]) {
                header_line.drain(..3);
            }
            let text = String::from_utf8(header_line.clone())
                .map_err(|_| file_error(path, "the file is not UTF-8 (save the CSV as UTF-8)"))?;
            let names: Vec<String> = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(text.as_bytes())
                .records()
                .next()
                .and_then(Result::ok)
                .map(|r| r.iter().map(str::to_string).collect())
                .ok_or_else(|| file_error(path, "the file is empty"))?;
            let read_bytes = header_line.len() as u64;
            Ok((
                Header::new(names),
                Source::Csv {
                    reader,
                    header_line,
                    total_bytes,
                    read_bytes,
                },
            ))
        }
        "xlsx" | "xlsm" | "xls" | "ods" => {
            use calamine::Reader;
            let mut book =
                calamine::open_workbook_auto(path).map_err(|e| file_error(path, e.to_string()))?;
            let range = book
                .worksheet_range_at(0)
                .ok_or_else(|| file_error(path, "the workbook has no sheet"))?
                .map_err(|e| file_error(path, e.to_string()))?;
            let mut rows = range
                .rows()
                .map(|r| r.iter().map(cell_text).collect::<Vec<String>>());
            let names = rows
                .next()
                .ok_or_else(|| file_error(path, "the sheet is empty"))?;
            let rest: Vec<Vec<String>> = rows.collect();
            let total_rows = rest.len() as u64;
            Ok((
                Header::new(names),
                Source::Excel {
                    rows: rest.into_iter(),
                    total_rows,
                },
            ))
        }
        other => Err(file_error(
            path,
            format!("unknown file type '.{other}': CSV (.csv) or Excel (.xlsx, .xls, .ods)"),
        )),
    }
}

/// An Excel cell as the text a clerk sees (dates as YYYY-MM-DD).
fn cell_text(cell: &calamine::Data) -> String {
    use calamine::Data;
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => if *b { "是" } else { "否" }.to_string(),
        Data::DateTime(dt) => {
            let (y, m, d, ..) = dt.to_ymd_hms_milli();
            format!("{y:04}-{m:02}-{d:02}")
        }
        Data::Error(e) => format!("#{e:?}"),
    }
}

impl Source {
    /// The next chunk of up to `rows` rows, as text columns.
    fn next_chunk(
        &mut self,
        header: &Header,
        rows: usize,
        first_row: u64,
    ) -> Result<Option<RawChunk>, ImportError> {
        match self {
            Source::Csv {
                reader,
                header_line,
                read_bytes,
                ..
            } => {
                // Whole records only: a newline inside quotes does not end one.
                let mut buf = header_line.clone();
                if !buf.ends_with(b"\n") {
                    buf.push(b'\n');
                }
                let (mut records, mut in_quotes) = (0usize, false);
                let mut line = Vec::new();
                while records < rows {
                    line.clear();
                    let n = reader
                        .read_until(b'\n', &mut line)
                        .map_err(|e| ImportError::Unexpected(e.into()))?;
                    if n == 0 {
                        break;
                    }
                    *read_bytes += n as u64;
                    in_quotes ^= line.iter().filter(|&&b| b == b'"').count() % 2 == 1;
                    let blank = !in_quotes && line.iter().all(|b| b.is_ascii_whitespace());
                    if !blank || in_quotes {
                        buf.extend_from_slice(&line);
                        if !buf.ends_with(b"\n") {
                            buf.push(b'\n');
                        }
                    }
                    if !in_quotes && !blank {
                        records += 1;
                    }
                }
                if records == 0 {
                    return Ok(None);
                }
                let frame = CsvReadOptions::default()
                    .with_has_header(true)
                    .with_infer_schema_length(Some(0))
                    .with_parse_options(CsvParseOptions::default().with_truncate_ragged_lines(true))
                    .into_reader_with_file_handle(std::io::Cursor::new(buf))
                    .finish()?;
                Ok(Some(RawChunk {
                    frame: keyed(frame, header)?,
                    first_row,
                }))
            }
            Source::Excel { rows: iter, .. } => {
                let chunk: Vec<Vec<String>> = iter.by_ref().take(rows).collect();
                if chunk.is_empty() {
                    return Ok(None);
                }
                let columns: Vec<Column> = header
                    .names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let values: Vec<&str> = chunk
                            .iter()
                            .map(|r| r.get(i).map(String::as_str).unwrap_or(""))
                            .collect();
                        Column::new(format!("c{i}_{name}").into(), values)
                    })
                    .collect();
                let frame = DataFrame::new_infer_height(columns)?;
                Ok(Some(RawChunk {
                    frame: keyed_by_position(frame, header)?,
                    first_row,
                }))
            }
        }
    }

    fn progress(&self, rows_done: u64) -> (u64, u64) {
        match self {
            Source::Csv {
                total_bytes,
                read_bytes,
                ..
            } => (*read_bytes, *total_bytes),
            Source::Excel { total_rows, .. } => (rows_done, *total_rows),
        }
    }
}

/// Renames the recognised columns to their field keys and drops the rest.
fn keyed(frame: DataFrame, header: &Header) -> Result<DataFrame, ImportError> {
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    keyed_by_position(frame.select(names)?, header)
}

fn keyed_by_position(frame: DataFrame, header: &Header) -> Result<DataFrame, ImportError> {
    let mut columns = Vec::new();
    for (i, field) in header.fields.iter().enumerate() {
        let Some(field) = field else { continue };
        let column = match frame.columns().get(i) {
            Some(c) => c.clone().with_name(field.key().into()),
            None => Column::full_null(field.key().into(), frame.height(), &DataType::String),
        };
        columns.push(column);
    }
    Ok(DataFrame::new(frame.height(), columns)?)
}

/// Values of one cleaned chunk, column by column.
struct Cleaned<'a> {
    frame: &'a DataFrame,
}

impl<'a> Cleaned<'a> {
    fn text(&self, name: &str) -> Option<&'a StringChunked> {
        self.frame.column(name).ok().and_then(|c| c.str().ok())
    }
    fn date(&self) -> Option<Vec<Option<i32>>> {
        self.frame
            .column("date")
            .ok()
            .and_then(|c| c.date().ok())
            .map(|d| d.physical().iter().collect())
    }
    fn flag(&self, name: &str) -> Option<&'a BooleanChunked> {
        self.frame.column(name).ok().and_then(|c| c.bool().ok())
    }
    fn count(&self, name: &str) -> Option<&'a Int64Chunked> {
        self.frame.column(name).ok().and_then(|c| c.i64().ok())
    }
    fn float(&self, name: &str) -> Option<&'a Float64Chunked> {
        self.frame.column(name).ok().and_then(|c| c.f64().ok())
    }
}

/// A JSON string literal (escaped).
fn json_text(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// Checks one row as the ingest API checks a record; the row, or the reject.
struct RowChecker {
    tree: Arc<OrgTree>,
    locator: Arc<dyn Locator + Send + Sync>,
    family: Family,
    header: Arc<Header>,
    scope: Option<NodeIdx>,
    now: OffsetDateTime,
}

fn text_at(col: Option<&StringChunked>, i: usize) -> Option<&str> {
    col.and_then(|c| c.get(i))
}

impl RowChecker {
    fn reject(
        &self,
        row: u64,
        field: Field,
        value: Option<&str>,
        reason: impl Into<String>,
    ) -> RejectRow {
        RejectRow {
            row,
            column: self.header.header_of(field),
            value: value.unwrap_or_default().to_string(),
            reason: reason.into(),
        }
    }

    fn check_chunk(
        &self,
        cleaned: &DataFrame,
        first_row: u64,
        import_seq: u64,
        out: &mut Vec<EventRow>,
        rejects: &mut Vec<RejectRow>,
    ) {
        let c = Cleaned { frame: cleaned };
        let dates = c.date().unwrap_or_default();
        let org = c.text("org");
        let (org_names, org_code_raw) = (c.text("org_names"), c.text("org_code_raw"));
        let record_no = c.text("record_no");
        let stage = c.text("stage");
        let (staff, class, appeal, person) = (
            c.text("staff_id"),
            c.text("class_id"),
            c.text("appeal_id"),
            c.text("person_id"),
        );
        let (veteran, demo) = (c.flag("veteran"), c.flag("demonstration"));
        let (stars, approved, filled, headcount) = (
            c.count("stars"),
            c.count("approved_posts"),
            c.count("filled_posts"),
            c.count("headcount"),
        );
        let (lon, lat) = (c.float("lon"), c.float("lat"));
        let raw = |field: Field, i: usize| text_at(c.text(&format!("{}_raw", field.key())), i);
        let received_at = self.now.unix_timestamp().clamp(0, u32::MAX as i64) as u32;
        let org_field = if self.header.fields.contains(&Some(Field::OrgCode)) {
            Field::OrgCode
        } else {
            Field::District
        };

        for i in 0..cleaned.height() {
            let row_no = first_row + i as u64;
            let result: Result<EventRow, RejectRow> = (|| {
                let stage_text = text_at(stage, i);
                let kind = self
                    .family
                    .kind(stage_text)
                    .ok_or_else(|| match stage_text {
                        None => self.reject(
                            row_no,
                            Field::Stage,
                            None,
                            "is required (登记, 受理 or 办结)",
                        ),
                        Some(s) => self.reject(
                            row_no,
                            Field::Stage,
                            Some(s),
                            format!("'{s}' is not a stage: 登记, 受理 or 办结"),
                        ),
                    })?;
                let shown_org = text_at(org_code_raw, i).or_else(|| text_at(org_names, i));
                let code = text_at(org, i).ok_or_else(|| match shown_org {
                    None => self.reject(
                        row_no,
                        org_field,
                        None,
                        "the org is required (区/街道/社区 names or 单位代码)",
                    ),
                    Some(s) => {
                        self.reject(row_no, org_field, Some(s), format!("unknown org '{s}'"))
                    }
                })?;
                let idx = self.tree.get(code).ok_or_else(|| {
                    self.reject(
                        row_no,
                        org_field,
                        shown_org,
                        format!("unknown org code '{code}'"),
                    )
                })?;
                let level = self.tree.node(idx).level;
                if !kind.levels().contains(&level) {
                    let allowed: Vec<&str> = kind.levels().iter().map(|l| l.as_str()).collect();
                    return Err(self.reject(
                        row_no,
                        org_field,
                        shown_org,
                        format!(
                            "{} rows belong to a {} org; this is a {level}",
                            self.family.title(),
                            allowed.join(" or ")
                        ),
                    ));
                }
                if let Some(scope) = self.scope {
                    if !self.tree.is_within(idx, scope) {
                        return Err(self.reject(
                            row_no,
                            org_field,
                            shown_org,
                            format!(
                                "{code} is outside the importer's scope ({})",
                                self.tree.node(scope).code
                            ),
                        ));
                    }
                }
                let days =
                    dates
                        .get(i)
                        .copied()
                        .flatten()
                        .ok_or_else(|| match raw(Field::Date, i) {
                            None => self.reject(row_no, Field::Date, None, "is required"),
                            Some(s) => self.reject(
                                row_no,
                                Field::Date,
                                Some(s),
                                format!("'{s}' is not a date (e.g. 2021-03-04 or 2021年3月4日)"),
                            ),
                        })?;
                let date = Date::from_julian_day(days + 2_440_588).map_err(|_| {
                    self.reject(row_no, Field::Date, raw(Field::Date, i), "out of range")
                })?;
                // A ledger keeps days: the record is placed at noon, Shenzhen time.
                let at = PrimitiveDateTime::new(
                    date,
                    Time::from_hms(12, 0, 0).unwrap_or(Time::MIDNIGHT),
                )
                .assume_offset(SHANGHAI);
                if at > self.now + time::Duration::days(1) {
                    return Err(self.reject(
                        row_no,
                        Field::Date,
                        raw(Field::Date, i),
                        "is in the future",
                    ));
                }
                let at = u32::try_from(at.unix_timestamp()).map_err(|_| {
                    self.reject(
                        row_no,
                        Field::Date,
                        raw(Field::Date, i),
                        "out of range (1970–2106)",
                    )
                })?;

                let required_text =
                    |col: Option<&StringChunked>, field: Field| -> Result<String, RejectRow> {
                        let v = text_at(col, i)
                            .ok_or_else(|| self.reject(row_no, field, None, "is required"))?;
                        if v.chars().count() > MAX_ID_LEN {
                            return Err(self.reject(
                                row_no,
                                field,
                                Some(v),
                                format!("must be at most {MAX_ID_LEN} characters"),
                            ));
                        }
                        Ok(v.to_string())
                    };
                let required_flag =
                    |col: Option<&BooleanChunked>, field: Field| -> Result<bool, RejectRow> {
                        col.and_then(|c| c.get(i))
                            .ok_or_else(|| match raw(field, i) {
                                None => self.reject(row_no, field, None, "is required (是 or 否)"),
                                Some(s) => self.reject(
                                    row_no,
                                    field,
                                    Some(s),
                                    format!("'{s}' is not 是 or 否"),
                                ),
                            })
                    };
                let required_count =
                    |col: Option<&Int64Chunked>, field: Field| -> Result<i64, RejectRow> {
                        let n = col
                            .and_then(|c| c.get(i))
                            .ok_or_else(|| match raw(field, i) {
                                None => self.reject(row_no, field, None, "is required"),
                                Some(s) => self.reject(
                                    row_no,
                                    field,
                                    Some(s),
                                    format!("'{s}' is not a whole number"),
                                ),
                            })?;
                        crate::domain::record::check_count(field.key(), n)
                            .map_err(|reason| self.reject(row_no, field, raw(field, i), reason))
                    };

                let district = self
                    .tree
                    .ancestor_at(idx, Level::District)
                    .map(|d| self.tree.node(d).code.clone())
                    .unwrap_or_default();
                let mut row = EventRow::blank(
                    String::new(),
                    kind,
                    code.to_string(),
                    district,
                    at,
                    received_at,
                    "ledger",
                );
                row.seq = import_seq + row_no;
                let data = match kind {
                    Kind::StaffingReported => {
                        row.approved_posts = required_count(approved, Field::ApprovedPosts)?;
                        row.filled_posts = required_count(filled, Field::FilledPosts)?;
                        if row.filled_posts > row.approved_posts {
                            return Err(self.reject(
                                row_no,
                                Field::FilledPosts,
                                raw(Field::FilledPosts, i),
                                "exceeds 核定编制数",
                            ));
                        }
                        format!(
                            "{{\"approved_posts\":{},\"filled_posts\":{}}}",
                            row.approved_posts, row.filled_posts
                        )
                    }
                    Kind::StaffHired => {
                        row.staff_id = required_text(staff, Field::StaffId)?;
                        row.veteran = u8::from(required_flag(veteran, Field::Veteran)?);
                        format!(
                            "{{\"staff_id\":{},\"veteran\":{}}}",
                            json_text(&row.staff_id),
                            row.veteran == 1
                        )
                    }
                    Kind::StaffHeadcount => {
                        row.headcount = required_count(headcount, Field::Headcount)?;
                        format!("{{\"headcount\":{}}}", row.headcount)
                    }
                    Kind::TrainingClassHeld => {
                        row.class_id = required_text(class, Field::ClassId)?;
                        format!("{{\"class_id\":{}}}", json_text(&row.class_id))
                    }
                    Kind::TrainingAttended => {
                        row.class_id = required_text(class, Field::ClassId)?;
                        row.staff_id = required_text(staff, Field::StaffId)?;
                        format!(
                            "{{\"class_id\":{},\"staff_id\":{}}}",
                            json_text(&row.class_id),
                            json_text(&row.staff_id)
                        )
                    }
                    Kind::StationRated => {
                        // 0 to 5, checked by required_count.
                        row.stars = required_count(stars, Field::Stars)? as u8;
                        row.demonstration = u8::from(required_flag(demo, Field::Demonstration)?);
                        format!(
                            "{{\"demonstration\":{},\"stars\":{}}}",
                            row.demonstration == 1,
                            row.stars
                        )
                    }
                    Kind::AppealReceived | Kind::AppealAccepted | Kind::AppealClosed => {
                        row.appeal_id = required_text(appeal, Field::AppealId)?;
                        format!("{{\"appeal_id\":{}}}", json_text(&row.appeal_id))
                    }
                    Kind::VeteranRegistered | Kind::ArchiveCompleted => {
                        row.person_id = required_text(person, Field::PersonId)?;
                        format!("{{\"person_id\":{}}}", json_text(&row.person_id))
                    }
                };
                match (lon.and_then(|c| c.get(i)), lat.and_then(|c| c.get(i))) {
                    (Some(x), Some(y)) => {
                        let district = self.locator.district_of(x, y).ok_or_else(|| {
                            self.reject(
                                row_no,
                                Field::Lon,
                                raw(Field::Lon, i),
                                format!("({x}, {y}) is outside Shenzhen"),
                            )
                        })?;
                        row.lon = Some(x);
                        row.lat = Some(y);
                        row.district = district;
                    }
                    (None, None)
                        if raw(Field::Lon, i).is_none() && raw(Field::Lat, i).is_none() => {}
                    _ => {
                        return Err(self.reject(
                            row_no,
                            Field::Lon,
                            raw(Field::Lon, i),
                            "经度 and 纬度 must both be numbers, or both empty",
                        ))
                    }
                }
                row.data = data;
                row.id = match text_at(record_no, i) {
                    Some(no) => format!("ledger:{}:{no}", self.family.name()),
                    None => {
                        // What the row says, cleaned: the same row typed differently is the same row.
                        let key = format!(
                            "{}|{}|{}|{}|{}",
                            self.family.name(),
                            row.kind,
                            row.org,
                            row.at,
                            row.data
                        );
                        format!(
                            "ledger:{}:{:032x}",
                            self.family.name(),
                            xxhash_rust::xxh3::xxh3_128(key.as_bytes())
                        )
                    }
                };
                Ok(row)
            })();
            match result {
                Ok(row) => out.push(row),
                Err(reject) => rejects.push(reject),
            }
        }
    }
}

/// One chunk, read, cleaned and checked.
struct Prepared {
    rows: Vec<EventRow>,
    rejects: Vec<RejectRow>,
    height: u64,
    /// (done, total) in bytes (CSV) or rows (Excel).
    progress: (u64, u64),
}

struct Parser {
    source: Source,
    checker: RowChecker,
    fields: Vec<Field>,
    chunk_rows: usize,
    import_seq: u64,
}

impl Parser {
    fn run(mut self, tx: tokio::sync::mpsc::Sender<Result<Prepared, ImportError>>) {
        let lookup = match OrgLookup::new(&self.checker.tree) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        };
        let (mut next_row, mut rows_done) = (2u64, 0u64);
        loop {
            let started = std::time::Instant::now();
            let step = (|| {
                let Some(chunk) =
                    self.source
                        .next_chunk(&self.checker.header, self.chunk_rows, next_row)?
                else {
                    return Ok(None);
                };
                let height = chunk.frame.height() as u64;
                let read_ms = started.elapsed().as_millis() as u64;
                let cleaned = normalize(chunk.frame, &self.fields, &lookup)?;
                let clean_ms = started.elapsed().as_millis() as u64 - read_ms;
                let (mut rows, mut rejects) = (Vec::with_capacity(cleaned.height()), Vec::new());
                self.checker.check_chunk(
                    &cleaned,
                    chunk.first_row,
                    self.import_seq,
                    &mut rows,
                    &mut rejects,
                );
                let check_ms = started.elapsed().as_millis() as u64 - read_ms - clean_ms;
                tracing::debug!(read_ms, clean_ms, check_ms, "chunk phases");
                rows_done += height;
                Ok(Some(Prepared {
                    rows,
                    rejects,
                    height,
                    progress: self.source.progress(rows_done),
                }))
            })();
            match step {
                Ok(Some(p)) => {
                    tracing::debug!(
                        rows = p.height,
                        ms = started.elapsed().as_millis() as u64,
                        "chunk read, cleaned and checked"
                    );
                    next_row += p.height;
                    if tx.blocking_send(Ok(p)).is_err() {
                        return; // the importer gave up
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    }
}

/// Id hashes of the ledger records already counted (for dedup across imports).
async fn imported_ids(store: &Store) -> Result<IdSet, StoreError> {
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
        ids.insert(xxhash_rust::xxh3::xxh3_128(id.as_bytes()));
    }
    Ok(ids)
}

#[derive(clickhouse::Row, Serialize, serde::Deserialize)]
struct ImportRow {
    import_no: u32,
    file: String,
    family: String,
    format: String,
    by: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    started: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime")]
    ended: OffsetDateTime,
    rows: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    outcome: String,
    error: String,
    version: u64,
}

async fn record(store: &Store, row: &ImportRow) -> Result<(), StoreError> {
    let mut insert = store.client().insert::<ImportRow>("imports").await?;
    insert.write(row).await?;
    insert.end().await?;
    Ok(())
}

/// One import at a time per process: import numbers are taken as max + 1.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Imports one ledger file; see the module documentation.
pub async fn import_file(
    store: &Store,
    tree: &Arc<OrgTree>,
    locator: Arc<dyn Locator + Send + Sync>,
    path: &Path,
    options: ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = std::time::Instant::now();
    let (header, source) = open(path)?;
    let fields = header.present();
    let family = match options.family {
        Some(f) => f,
        None => Family::detect(&fields, &header.names).ok_or_else(|| {
            file_error(
                path,
                format!(
                    "cannot tell which ledger this is from its headers ({}); pass the family",
                    header.names.join(", ")
                ),
            )
        })?,
    };
    let missing_org = ![
        Field::District,
        Field::Street,
        Field::Community,
        Field::OrgCode,
    ]
    .iter()
    .any(|f| fields.contains(f));
    if missing_org || !fields.contains(&Field::Date) {
        return Err(file_error(
            path,
            "a ledger needs an org column (区/街道/社区 or 单位代码) and a date column (e.g. 日期)",
        ));
    }
    let file_name = options.display_name.clone().unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let format = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();

    let import_no: u32 = store
        .client()
        .query("SELECT toUInt32(max(import_no)) FROM imports")
        .fetch_one::<u32>()
        .await?
        + 1;
    let mut run = ImportRow {
        import_no,
        file: file_name.clone(),
        family: family.name().into(),
        format,
        by: options.by.clone(),
        started: crate::store::now_in_seconds(),
        ended: crate::store::now_in_seconds(),
        rows: 0,
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        outcome: "running".into(),
        error: String::new(),
        version: 1,
    };
    record(store, &run).await?;

    let reject_path = options
        .reject_dir
        .clone()
        .unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default())
        .join(format!(
            "{}.rejects.csv",
            Path::new(&file_name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "import".into())
        ));
    let header = Arc::new(header);
    let result = async {
        let mut seen = imported_ids(store).await?;
        // Reading and cleaning are CPU work (polars wants its own threads, not the async
        // runtime's): a parser thread prepares chunk n+1 while chunk n is inserted. Two chunks
        // in flight at most: memory stays bounded.
        let (tx, mut prepared) = tokio::sync::mpsc::channel::<Result<Prepared, ImportError>>(2);
        let parser = Parser {
            source,
            checker: RowChecker {
                tree: tree.clone(),
                locator,
                family,
                header: header.clone(),
                scope: options.scope,
                now: OffsetDateTime::now_utc(),
            },
            fields: fields.clone(),
            chunk_rows: options.chunk_rows.max(1),
            import_seq: import_seq_base(import_no),
        };
        std::thread::Builder::new()
            .name("ledger-parser".into())
            .spawn(move || parser.run(tx))
            .map_err(|e| ImportError::Unexpected(e.into()))?;
        let mut reject_writer: Option<csv::Writer<std::fs::File>> = None;
        let mut first_rejects = Vec::new();
        while let Some(chunk) = prepared.recv().await {
            let Prepared {
                mut rows,
                rejects,
                height,
                progress,
            } = chunk?;
            let before = rows.len();
            rows.retain(|r| seen.insert(xxhash_rust::xxh3::xxh3_128(r.id.as_bytes())));
            run.duplicates += (before - rows.len()) as u64;
            if !rows.is_empty() {
                let started = std::time::Instant::now();
                crate::ingest::writer::insert_imported(store, &rows).await?;
                tracing::debug!(
                    rows = rows.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "chunk inserted"
                );
            }
            run.accepted += rows.len() as u64;
            run.rejected += rejects.len() as u64;
            run.rows += height;
            if !rejects.is_empty() {
                let writer = match reject_writer.as_mut() {
                    Some(w) => w,
                    None => {
                        let mut file = std::fs::File::create(&reject_path)
                            .map_err(|e| file_error(&reject_path, e.to_string()))?;
                        // A BOM, so that Excel opens the Chinese text as UTF-8.
                        file.write_all(&[0xEF, 0xBB, 0xBF])
                            .map_err(|e| ImportError::Unexpected(e.into()))?;
                        let mut w = csv::Writer::from_writer(file);
                        w.write_record(["行号", "列", "内容", "原因"])
                            .map_err(|e| ImportError::Unexpected(e.into()))?;
                        reject_writer.insert(w)
                    }
                };
                for r in &rejects {
                    writer
                        .write_record([
                            r.row.to_string(),
                            r.column.clone(),
                            r.value.clone(),
                            r.reason.clone(),
                        ])
                        .map_err(|e| ImportError::Unexpected(e.into()))?;
                }
                first_rejects.extend(
                    rejects
                        .into_iter()
                        .take(100usize.saturating_sub(first_rejects.len())),
                );
            }
            if let Some(report) = &options.progress {
                report(progress.0, progress.1);
            }
        }
        if let Some(mut w) = reject_writer {
            w.flush().map_err(|e| ImportError::Unexpected(e.into()))?;
        }
        Ok::<_, ImportError>(first_rejects)
    }
    .await;
    run.ended = crate::store::now_in_seconds();
    run.version = 2;
    match result {
        Ok(rejects) => {
            run.outcome = "ok".into();
            record(store, &run).await?;
            tracing::info!(import_no, file = %file_name, family = family.name(), rows = run.rows, accepted = run.accepted,
                duplicates = run.duplicates, rejected = run.rejected, "ledger imported");
            Ok(ImportSummary {
                import_no,
                file: file_name,
                family: family.name().into(),
                rows: run.rows,
                accepted: run.accepted,
                duplicates: run.duplicates,
                rejected: run.rejected,
                reject_file: (run.rejected > 0).then(|| reject_path.display().to_string()),
                ignored_columns: header.ignored(),
                rejects,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            run.outcome = "failed".into();
            run.error = e.to_string();
            if let Err(record_error) = record(store, &run).await {
                tracing::warn!(error = %record_error, import_no, "could not record the failed import");
            }
            Err(e)
        }
    }
}

/// Every import, newest first.
pub async fn list(store: &Store) -> Result<Vec<serde_json::Value>, StoreError> {
    let rows: Vec<ImportRow> = store
        .client()
        .query(
            "SELECT import_no, argMax(file, version), argMax(family, version), argMax(format, version), argMax(by, version), \
             argMax(started, version), argMax(ended, version), argMax(rows, version), argMax(accepted, version), \
             argMax(duplicates, version), argMax(rejected, version), argMax(outcome, version), argMax(error, version), \
             max(version) FROM imports GROUP BY import_no ORDER BY import_no DESC LIMIT 200",
        )
        .fetch_all()
        .await?;
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            serde_json::json!({"import_no": r.import_no, "file": r.file, "family": r.family, "format": r.format, "by": r.by,
                "started": rfc(r.started), "ended": rfc(r.ended), "rows": r.rows, "accepted": r.accepted,
                "duplicates": r.duplicates, "rejected": r.rejected, "outcome": r.outcome, "error": r.error})
        })
        .collect())
}

/// Applies finished imports to the live figures, in every running instance: polls `imports`
/// and feeds each newly finished import's records to `apply`.
pub async fn follow(
    store: Store,
    mut applied: HashSet<u32>,
    apply: impl Fn(&[EventRow]),
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = wake.notified() => {}
        }
        let oks = match store.ok_imports().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the imports table");
                continue;
            }
        };
        let new: Vec<u32> = oks.into_iter().filter(|n| !applied.contains(n)).collect();
        for no in new {
            let from = import_seq_base(no);
            let rows = store
                .client()
                .query("SELECT ?fields FROM events WHERE seq >= ? AND seq < ?")
                .bind(from)
                .bind(from + (1 << 32))
                .with_setting("wait_end_of_query", "1")
                .fetch_all::<EventRow>()
                .await;
            match rows {
                Ok(rows) => {
                    for chunk in rows.chunks(8192) {
                        apply(chunk);
                    }
                    tracing::info!(
                        import_no = no,
                        records = rows.len(),
                        "import applied to the live figures"
                    );
                    applied.insert(no);
                }
                Err(e) => {
                    tracing::warn!(error = %e, import_no = no, "cannot read an import's records; retrying")
                }
            }
        }
    }
}

/// Reads a whole small file (the HTTP upload path writes to a temporary file first).
pub fn read_all(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}
