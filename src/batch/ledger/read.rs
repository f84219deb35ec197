//! Reading a ledger file: its header (which column is which field) and its rows in chunks of
//! text columns — CSV with polars, whole records only; Excel with calamine.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use polars::prelude::*;

use super::error::{file_error, ImportError};
use super::{field_of_header_with, Field};
use crate::domain::kinds::Kinds;

/// A chunk of raw cells: text columns named by [`Field::key`].
pub struct RawChunk {
    pub frame: DataFrame,
    /// Row number (1-based, header = 1) of the chunk's first row.
    pub first_row: u64,
}

/// The file's header: which column is which field.
pub struct Header {
    pub names: Vec<String>,
    pub fields: Vec<Option<Field>>,
}

impl Header {
    /// The header of the built-in ledgers only (tests).
    #[cfg(test)]
    pub fn new(names: Vec<String>) -> Self {
        Self::with_kinds(names, &Kinds::default())
    }

    /// Which column is which field: the built-in ledgers' headers, the fields of the kinds
    /// defined by files only (by their Chinese names), any other "…日期" as the date. The first
    /// column a field appears in wins; a repeated field is ignored.
    pub fn with_kinds(names: Vec<String>, kinds: &Kinds) -> Self {
        let mut seen = HashSet::new();
        let fields = names
            .iter()
            .map(|h| field_of_header_with(h, kinds).filter(|f| seen.insert(*f)))
            .collect();
        Header { names, fields }
    }

    pub fn present(&self) -> Vec<Field> {
        self.fields.iter().flatten().copied().collect()
    }

    pub fn ignored(&self) -> Vec<String> {
        self.names
            .iter()
            .zip(&self.fields)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| n.trim().to_string())
            .collect()
    }

    pub fn header_of(&self, field: Field) -> String {
        self.fields
            .iter()
            .position(|f| *f == Some(field))
            .map(|i| self.names[i].trim().to_string())
            .unwrap_or_else(|| field.key().to_string())
    }
}

pub enum Source {
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

pub fn open(path: &Path, kinds: &Kinds) -> Result<(Header, Source), ImportError> {
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
                Header::with_kinds(names, kinds),
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
                Header::with_kinds(names, kinds),
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
    pub fn next_chunk(
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

    pub fn progress(&self, rows_done: u64) -> (u64, u64) {
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
