//! Checking a cleaned chunk's rows. Each row goes through the domain's one [`check`] — the
//! checks an API record passes — through an [`IncomingEvent`] view of the row. What stays here
//! is the ledger's own: which column holds what, its wording for cells it could not read (a
//! date, 是 or 否, a number, an org name), the id of a row without 记录编号, the importer's
//! scope, and the file's own column names in the reject file.

use std::sync::Arc;

use polars::prelude::*;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use super::read::Header;
use super::{Family, Field};
use crate::domain::org::NodeIdx;
use crate::domain::record::{
    check, data_required, err, EventRow, FieldError, FieldType, IncomingEvent, Kind, Kinds, Locator,
};
use crate::domain::time::SHANGHAI;
use crate::domain::OrgTree;

/// One rejected row: its row number as a spreadsheet shows it (the header is row 1), the column
/// (as headed in the file), what it said, and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRow {
    pub row: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// The cleaned columns of one chunk (see [`super::normalize`]): `<key>` typed, `<key>_raw` as
/// written; absent columns are `None`. Looked up by name once per chunk, not per cell.
struct Columns<'a> {
    texts: rustc_hash::FxHashMap<&'a str, &'a StringChunked>,
    /// `<key>_raw` columns by `<key>`.
    raws: rustc_hash::FxHashMap<&'a str, &'a StringChunked>,
    counts: rustc_hash::FxHashMap<&'a str, &'a Int64Chunked>,
    flags: rustc_hash::FxHashMap<&'a str, &'a BooleanChunked>,
    dates: Vec<Option<i32>>,
    org: Option<&'a StringChunked>,
    org_names: Option<&'a StringChunked>,
    org_code_raw: Option<&'a StringChunked>,
    record_no: Option<&'a StringChunked>,
    stage: Option<&'a StringChunked>,
    lon: Option<&'a Float64Chunked>,
    lat: Option<&'a Float64Chunked>,
}

impl<'a> Columns<'a> {
    fn new(frame: &'a DataFrame) -> Self {
        let mut texts = rustc_hash::FxHashMap::default();
        let mut counts = rustc_hash::FxHashMap::default();
        let mut flags = rustc_hash::FxHashMap::default();
        for c in frame.columns() {
            let name = c.name().as_str();
            if let Ok(t) = c.str() {
                texts.insert(name, t);
            } else if let Ok(n) = c.i64() {
                counts.insert(name, n);
            } else if let Ok(b) = c.bool() {
                flags.insert(name, b);
            }
        }
        let float = |name: &str| frame.column(name).ok().and_then(|c| c.f64().ok());
        let raws = texts
            .iter()
            .filter_map(|(name, &c)| Some((name.strip_suffix("_raw")?, c)))
            .collect();
        Columns {
            raws,
            dates: frame
                .column("date")
                .ok()
                .and_then(|c| c.date().ok())
                .map(|d| d.physical().iter().collect())
                .unwrap_or_default(),
            org: texts.get("org").copied(),
            org_names: texts.get("org_names").copied(),
            org_code_raw: texts.get("org_code_raw").copied(),
            record_no: texts.get("record_no").copied(),
            stage: texts.get("stage").copied(),
            lon: float("lon"),
            lat: float("lat"),
            texts,
            counts,
            flags,
        }
    }

    fn text(&self, name: &str, i: usize) -> Option<&'a str> {
        self.texts.get(name).and_then(|c| c.get(i))
    }

    /// A field's cell as the file wrote it (cleaned of stray spaces).
    fn raw(&self, field: Field, i: usize) -> Option<&'a str> {
        match self.raws.get(field.key()) {
            Some(c) => c.get(i),
            None => self.text(field.key(), i),
        }
    }

    fn flag(&self, name: &str, i: usize) -> Option<bool> {
        self.flags.get(name).and_then(|c| c.get(i))
    }

    fn count(&self, name: &str, i: usize) -> Option<i64> {
        self.counts.get(name).and_then(|c| c.get(i))
    }
}

fn at(col: Option<&StringChunked>, i: usize) -> Option<&str> {
    col.and_then(|c| c.get(i))
}

/// Where a kind's `data` comes from in a chunk: its fields in name order, each with its
/// cleaned column (absent: `null`). Worked out once per kind and chunk, not per row.
struct DataLayout<'a> {
    kind: Kind,
    fields: Vec<(&'a str, DataColumn<'a>)>,
}

enum DataColumn<'a> {
    Text(Option<&'a StringChunked>),
    Count(Option<&'a Int64Chunked>),
    Flag(Option<&'a BooleanChunked>),
}

impl<'a> DataLayout<'a> {
    fn new(kinds: &'a Kinds, cols: &Columns<'a>, kind: Kind) -> Self {
        let mut fields: Vec<(&'a str, DataColumn<'a>)> = kinds
            .get(kind.as_str())
            .map(|d| {
                d.fields
                    .iter()
                    .map(|f| {
                        let name = f.name.as_str();
                        let column = match f.ty {
                            FieldType::Text => DataColumn::Text(cols.texts.get(name).copied()),
                            FieldType::Count => DataColumn::Count(cols.counts.get(name).copied()),
                            FieldType::Flag => DataColumn::Flag(cols.flags.get(name).copied()),
                        };
                        (name, column)
                    })
                    .collect()
            })
            .unwrap_or_default();
        fields.sort_unstable_by_key(|(name, _)| *name);
        DataLayout { kind, fields }
    }

    /// Row `i`'s `data`: a JSON object of the kind's fields in name order, values typed.
    fn json(&self, i: usize) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(16 + 24 * self.fields.len());
        out.push('{');
        for (n, (name, column)) in self.fields.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            let written = match column {
                DataColumn::Text(c) => c.and_then(|c| c.get(i)).map(|t| push_json_str(&mut out, t)),
                DataColumn::Count(c) => c.and_then(|c| c.get(i)).map(|v| {
                    let _ = write!(out, "{v}");
                }),
                DataColumn::Flag(c) => c
                    .and_then(|c| c.get(i))
                    .map(|b| out.push_str(if b { "true" } else { "false" })),
            };
            if written.is_none() {
                out.push_str("null");
            }
        }
        out.push('}');
        out
    }
}

/// A JSON string as serde_json writes it; most cells need no escaping and are copied as they are.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::Value::from(s).to_string());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// One row, as the domain's checks read a record.
struct LedgerRow<'a> {
    cols: &'a Columns<'a>,
    i: usize,
    kind: Option<Kind>,
    id: String,
    data: String,
}

impl<'a> LedgerRow<'a> {
    /// Row `i`, of `kind` (from its family and stage) with its `data` already written.
    fn new(
        cols: &'a Columns<'a>,
        i: usize,
        family: Family,
        kind: Option<Kind>,
        data: String,
    ) -> Self {
        let mut row = LedgerRow {
            cols,
            i,
            kind,
            id: String::new(),
            data,
        };
        row.id = match at(cols.record_no, i) {
            Some(no) => format!("ledger:{}:{no}", family.name()),
            None => {
                // What the row says, cleaned: the same row typed differently is the same row.
                // The hash of `family|kind|org|at|data`, fed piece by piece.
                let mut key = xxhash_rust::xxh3::Xxh3::new();
                key.update(family.name().as_bytes());
                let at_unix = row.at_unix().unwrap_or_default().to_string();
                for piece in [
                    kind.map(Kind::as_str).unwrap_or_default(),
                    at(cols.org, i).unwrap_or_default(),
                    &at_unix,
                    &row.data,
                ] {
                    key.update(b"|");
                    key.update(piece.as_bytes());
                }
                format!("ledger:{}:{:032x}", family.name(), key.digest128())
            }
        };
        row
    }

    /// The row's day, placed at noon, Shenzhen time (a ledger keeps days).
    fn at_time(&self) -> Option<OffsetDateTime> {
        let days = self.cols.dates.get(self.i).copied().flatten()?;
        let date = Date::from_julian_day(days + 2_440_588).ok()?;
        let noon = Time::from_hms(12, 0, 0).ok()?;
        Some(PrimitiveDateTime::new(date, noon).assume_offset(SHANGHAI))
    }

    fn at_unix(&self) -> Option<u32> {
        u32::try_from(self.at_time()?.unix_timestamp()).ok()
    }

    fn data_cell(&self, name: &str) -> Option<&'a str> {
        self.cols.raws.get(name).and_then(|c| c.get(self.i))
    }
}

impl IncomingEvent for LedgerRow<'_> {
    fn string(&self, name: &str) -> Result<&str, FieldError> {
        let (cols, i) = (self.cols, self.i);
        match name {
            "id" => Ok(&self.id),
            "kind" => self
                .kind
                .map(Kind::as_str)
                .ok_or_else(|| match at(cols.stage, i) {
                    None => err("kind", "is required (登记, 受理 or 办结)"),
                    Some(s) => err("kind", format!("'{s}' is not a stage: 登记, 受理 or 办结")),
                }),
            "org" => at(cols.org, i).ok_or_else(|| {
                match at(cols.org_code_raw, i).or_else(|| at(cols.org_names, i)) {
                    None => err(
                        "org",
                        "the org is required (区/街道/社区 names or 单位代码)",
                    ),
                    Some(s) => err("org", format!("unknown org '{s}'")),
                }
            }),
            other => Err(err(other, "is required")),
        }
    }

    fn at(&self) -> Result<OffsetDateTime, FieldError> {
        if self.cols.dates.get(self.i).copied().flatten().is_none() {
            return Err(match self.cols.raw(Field::Date, self.i) {
                None => err("at", "is required"),
                Some(s) => err(
                    "at",
                    format!("'{s}' is not a date (e.g. 2021-03-04 or 2021年3月4日)"),
                ),
            });
        }
        self.at_time().ok_or_else(|| err("at", "out of range"))
    }

    fn location(&self) -> Result<Option<(f64, f64)>, FieldError> {
        let (cols, i) = (self.cols, self.i);
        match (
            cols.lon.and_then(|c| c.get(i)),
            cols.lat.and_then(|c| c.get(i)),
        ) {
            (Some(x), Some(y)) => Ok(Some((x, y))),
            (None, None)
                if cols.raw(Field::Lon, i).is_none() && cols.raw(Field::Lat, i).is_none() =>
            {
                Ok(None)
            }
            _ => Err(err(
                "location",
                "经度 and 纬度 must both be numbers, or both empty",
            )),
        }
    }

    fn data_present(&self) -> Result<(), FieldError> {
        Ok(())
    }

    fn data_string(&self, name: &str) -> Result<&str, FieldError> {
        self.cols
            .text(name, self.i)
            .ok_or_else(|| data_required(name))
    }

    fn data_integer(&self, name: &str) -> Result<i64, FieldError> {
        self.cols
            .count(name, self.i)
            .ok_or_else(|| match self.data_cell(name) {
                None => data_required(name),
                Some(s) => err(
                    format!("data.{name}"),
                    format!("'{s}' is not a whole number"),
                ),
            })
    }

    fn data_flag(&self, name: &str) -> Result<bool, FieldError> {
        self.cols
            .flag(name, self.i)
            .ok_or_else(|| match self.data_cell(name) {
                None => err(format!("data.{name}"), "is required (是 or 否)"),
                Some(s) => err(format!("data.{name}"), format!("'{s}' is not 是 or 否")),
            })
    }

    fn data_json(&self) -> String {
        self.data.clone()
    }
}

/// Checks the rows of cleaned chunks of one file.
pub struct RowChecker {
    pub kinds: Arc<Kinds>,
    pub tree: Arc<OrgTree>,
    pub locator: Arc<dyn Locator + Send + Sync>,
    pub family: Family,
    pub header: Arc<Header>,
    pub scope: Option<NodeIdx>,
    pub now: OffsetDateTime,
}

impl RowChecker {
    /// The column an org problem is shown in: 单位代码 when the file has one, else 区.
    fn org_field(&self) -> Field {
        if self.header.fields.contains(&Some(Field::OrgCode)) {
            Field::OrgCode
        } else {
            Field::District
        }
    }

    /// The field of a key: a built-in one, or a column of the file for a defined kind's field.
    fn field_of_key(&self, key: &str) -> Option<Field> {
        Field::of_key(key).or_else(|| {
            self.header
                .fields
                .iter()
                .flatten()
                .find(|f| f.key() == key)
                .copied()
        })
    }

    /// The ledger column a record field stands in.
    fn column_of(&self, field: &str) -> Field {
        match field {
            "id" => Field::RecordNo,
            "kind" => Field::Stage,
            "at" => Field::Date,
            "location" | "location.lon" => Field::Lon,
            "location.lat" => Field::Lat,
            other => other
                .strip_prefix("data.")
                .and_then(|key| self.field_of_key(key))
                .unwrap_or_else(|| self.org_field()),
        }
    }

    /// A domain error as the reject file shows it: the file's column, what the cell said,
    /// and the reason with record field names turned into the file's column names.
    fn reject(&self, cols: &Columns, i: usize, row: u64, e: FieldError) -> RejectRow {
        let field = self.column_of(&e.field);
        let value = if field == self.org_field() {
            at(cols.org_code_raw, i).or_else(|| at(cols.org_names, i))
        } else {
            cols.raw(field, i)
        };
        let mut reason = e.reason;
        for name in self
            .kinds
            .all()
            .flat_map(|k| k.fields.iter().map(|f| f.name.as_str()))
        {
            let named = format!("data.{name}");
            if reason.contains(&named) {
                if let Some(f) = self.field_of_key(name) {
                    reason = reason.replace(&named, &self.header.header_of(f));
                }
            }
        }
        RejectRow {
            row,
            column: self.header.header_of(field),
            value: value.unwrap_or_default().to_string(),
            reason,
        }
    }

    /// Checks every row of a cleaned chunk whose first row is `first_row`: good rows to `out`
    /// (seq `import_seq + row`), the others to `rejects`.
    pub fn check_chunk(
        &self,
        cleaned: &DataFrame,
        first_row: u64,
        import_seq: u64,
        out: &mut Vec<EventRow>,
        rejects: &mut Vec<RejectRow>,
    ) {
        let cols = Columns::new(cleaned);
        let mut layouts: Vec<DataLayout> = Vec::new();
        for i in 0..cleaned.height() {
            let row_no = first_row + i as u64;
            let kind = self.family.kind(at(cols.stage, i));
            let data = match kind {
                Some(kind) => {
                    let found = layouts.iter().position(|l| l.kind == kind);
                    let layout = found.unwrap_or_else(|| {
                        layouts.push(DataLayout::new(&self.kinds, &cols, kind));
                        layouts.len() - 1
                    });
                    layouts[layout].json(i)
                }
                None => String::new(),
            };
            let view = LedgerRow::new(&cols, i, self.family, kind, data);
            let checked = check(
                &view,
                &self.kinds,
                &self.tree,
                self.locator.as_ref(),
                self.now,
                "ledger",
            )
            .map_err(|e| self.reject(&cols, i, row_no, e))
            .and_then(|row| self.within_scope(&cols, i, row_no, row));
            match checked {
                Ok(mut row) => {
                    row.seq = import_seq + row_no;
                    out.push(row);
                }
                Err(reject) => rejects.push(reject),
            }
        }
    }

    /// Only rows of the importer's subtree.
    fn within_scope(
        &self,
        cols: &Columns,
        i: usize,
        row_no: u64,
        row: EventRow,
    ) -> Result<EventRow, RejectRow> {
        let Some(scope) = self.scope else {
            return Ok(row);
        };
        match self.tree.get(&row.org) {
            Some(org) if self.tree.is_within(org, scope) => Ok(row),
            _ => Err(self.reject(
                cols,
                i,
                row_no,
                err(
                    "org",
                    format!(
                        "{} is outside the importer's scope ({})",
                        row.org,
                        self.tree.node(scope).code
                    ),
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ledger::normalize::{normalize, OrgLookup};
    use crate::domain::org::{tree_of, Level};

    struct Nowhere;
    impl Locator for Nowhere {
        fn district_of(&self, _: f64, _: f64) -> Option<String> {
            None
        }
    }

    fn checker(header: &[&str]) -> (RowChecker, Vec<Field>) {
        let tree = Arc::new(tree_of(&[
            ("440300", Level::City, None),
            ("440305", Level::District, Some("440300")),
            ("440305007", Level::Street, Some("440305")),
            ("440305007003", Level::Community, Some("440305007")),
        ]));
        let header = Header::new(header.iter().map(|h| h.to_string()).collect());
        let fields = header.present();
        let checker = RowChecker {
            kinds: Arc::new(crate::domain::kinds::Kinds::shipped()),
            tree,
            locator: Arc::new(Nowhere),
            family: Family::Hires,
            header: Arc::new(header),
            scope: None,
            now: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        };
        (checker, fields)
    }

    fn check_rows(columns: Vec<(&str, Vec<&str>)>) -> (Vec<EventRow>, Vec<RejectRow>) {
        let names: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
        let (checker, fields) = checker(&names);
        let raw = DataFrame::new_infer_height(
            columns
                .iter()
                .zip(&fields)
                .map(|((_, v), f)| Column::new(f.key().into(), v.clone()))
                .collect(),
        )
        .unwrap();
        let cleaned = normalize(raw, &fields, &OrgLookup::new(&checker.tree).unwrap()).unwrap();
        let (mut rows, mut rejects) = (Vec::new(), Vec::new());
        checker.check_chunk(&cleaned, 2, 1 << 62, &mut rows, &mut rejects);
        (rows, rejects)
    }

    /// Ids of rows without 记录编号 are what every earlier version made them (a hash of the
    /// cleaned row), so that re-importing a file imported long ago still adds nothing.
    #[test]
    fn a_row_without_a_record_number_keeps_its_id_across_versions() {
        let (rows, rejects) = check_rows(vec![
            ("单位代码", vec!["440305007003"]),
            ("入职日期", vec!["2021年3月4日"]),
            ("人员编号", vec!["S1"]),
            ("是否退役军人", vec!["是"]),
        ]);
        assert!(rejects.is_empty(), "{rejects:?}");
        let row = &rows[0];
        // 2021-03-04 12:00 +08:00
        assert_eq!(row.at, 1_614_830_400);
        assert_eq!(row.data, r#"{"staff_id":"S1","veteran":true}"#);
        let key = r#"hires|staff.hired|440305007003|1614830400|{"staff_id":"S1","veteran":true}"#;
        assert_eq!(
            row.id,
            format!(
                "ledger:hires:{:032x}",
                xxhash_rust::xxh3::xxh3_128(key.as_bytes())
            )
        );
        assert_eq!((row.seq, &*row.source), ((1 << 62) + 2, "ledger"));
    }

    /// `data` is written field by field; a cell needing JSON escapes reads back as written.
    #[test]
    fn data_escapes_quotes_backslashes_and_control_characters_as_json_does() {
        let staff = "S\"1\t\\ 二";
        let (rows, rejects) = check_rows(vec![
            ("单位代码", vec!["440305007003"]),
            ("入职日期", vec!["2021-03-04"]),
            ("人员编号", vec![staff]),
            ("是否退役军人", vec!["否"]),
        ]);
        assert!(rejects.is_empty(), "{rejects:?}");
        let expected = serde_json::json!({"staff_id": staff, "veteran": false}).to_string();
        assert_eq!(rows[0].data, expected);
        let back: serde_json::Value = serde_json::from_str(&rows[0].data).unwrap();
        assert_eq!(back["staff_id"], staff);
    }

    #[test]
    fn rejects_name_the_files_columns_and_keep_the_ledgers_wording() {
        let (rows, rejects) = check_rows(vec![
            (
                "单位代码",
                vec!["440305007003", "440305007003", "440305007003"],
            ),
            ("入职日期", vec!["2021-03-04", "2030-01-01", "2021-03-04"]),
            ("人员编号", vec!["S1", "S2", "S3"]),
            ("是否退役军人", vec!["也许", "否", "否"]),
        ]);
        assert_eq!(rows.len(), 1);
        let got: Vec<(u64, &str, &str, &str)> = rejects
            .iter()
            .map(|r| {
                (
                    r.row,
                    r.column.as_str(),
                    r.value.as_str(),
                    r.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, "是否退役军人", "也许", "'也许' is not 是 or 否"),
                (3, "入职日期", "2030-01-01", "is in the future"),
            ]
        );
    }
}
