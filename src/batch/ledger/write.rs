//! Ledger files as district clerks keep them, from records (the simulator's): one file per
//! family, Chinese headers, org names instead of codes, and the variety real ledgers have —
//! dates written three ways, the odd full-width digit or trailing space — fixed by the seed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::OffsetDateTime;

use super::{Family, Field};
use crate::domain::record::Kind;
use crate::domain::time::SHANGHAI;
use crate::domain::{Level, OrgTree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LedgerFormat {
    Csv,
    Xlsx,
}

impl LedgerFormat {
    pub fn extension(self) -> &'static str {
        match self {
            LedgerFormat::Csv => "csv",
            LedgerFormat::Xlsx => "xlsx",
        }
    }
}

/// The ledger family a kind's records are kept in (None: no ledger keeps them).
fn family_of(kind: &str) -> Option<Family> {
    Family::ALL
        .into_iter()
        .find(|f| f.kinds().contains(&Kind::named(kind)))
}

/// `２０２１` for `2021`.
fn full_width_digits(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from_u32(c as u32 - 0x30 + 0xFF10).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// Turns records into ledger rows (cells as text, in [`Family::columns`] order).
pub struct LedgerRows<'a> {
    tree: &'a OrgTree,
    rng: StdRng,
}

impl<'a> LedgerRows<'a> {
    pub fn new(tree: &'a OrgTree, seed: u64) -> Self {
        LedgerRows {
            tree,
            rng: StdRng::seed_from_u64(seed ^ 0x1ed9e7),
        }
    }

    /// The family and row of one record (None: not a ledger record).
    pub fn row(&mut self, record: &Value) -> Option<(Family, Vec<String>)> {
        let kind = record.get("kind")?.as_str()?;
        let family = family_of(kind)?;
        let org = self.tree.get(record.get("org")?.as_str()?)?;
        let at = OffsetDateTime::parse(
            record.get("at")?.as_str()?,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?;
        let date = at.to_offset(SHANGHAI).date();
        let data = record.get("data")?;
        let text = |name: &str| {
            data.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let number = |name: &str| {
            data.get(name)
                .and_then(Value::as_i64)
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let flag = |name: &str| {
            if data.get(name).and_then(Value::as_bool).unwrap_or(false) {
                "是"
            } else {
                "否"
            }
            .to_string()
        };

        let mut names: HashMap<Level, String> = HashMap::new();
        for idx in self.tree.path_to_root(org) {
            let node = self.tree.node(idx);
            names.insert(node.level, node.name.clone());
        }
        if self.tree.node(org).level == Level::City {
            names.insert(Level::District, self.tree.node(org).name.clone());
        }
        let style = self.rng.random_range(0..10);
        let date_text = match style {
            0..=5 => format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                date.month() as u8,
                date.day()
            ),
            6 | 7 => format!("{}年{}月{}日", date.year(), date.month() as u8, date.day()),
            _ => format!("{}/{}/{}", date.year(), date.month() as u8, date.day()),
        };
        let messy = self.rng.random_range(0..50) == 0;
        let cells = family
            .columns()
            .iter()
            .map(|(_, field)| match field {
                Field::District => names.get(&Level::District).cloned().unwrap_or_default(),
                Field::Street => names.get(&Level::Street).cloned().unwrap_or_default(),
                Field::Community => names.get(&Level::Community).cloned().unwrap_or_default(),
                Field::Date if messy => full_width_digits(&date_text),
                Field::Date => date_text.clone(),
                Field::ApprovedPosts => number("approved_posts"),
                Field::FilledPosts => number("filled_posts"),
                Field::Headcount => number("headcount"),
                Field::StaffId if messy => format!("{} ", text("staff_id")),
                Field::StaffId => text("staff_id"),
                Field::Veteran => flag("veteran"),
                Field::ClassId => text("class_id"),
                Field::Stars => match data.get("stars").and_then(Value::as_i64).unwrap_or(0) {
                    5 if style < 5 => "五星".to_string(),
                    n => n.to_string(),
                },
                Field::Demonstration => flag("demonstration"),
                Field::AppealId => text("appeal_id"),
                Field::Stage => match Kind::named(kind) {
                    Kind::APPEAL_RECEIVED => "登记",
                    Kind::APPEAL_ACCEPTED => "受理",
                    _ => "办结",
                }
                .to_string(),
                Field::PersonId => text("person_id"),
                Field::Lon => record
                    .pointer("/location/lon")
                    .and_then(Value::as_f64)
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default(),
                Field::Lat => record
                    .pointer("/location/lat")
                    .and_then(Value::as_f64)
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default(),
                Field::RecordNo | Field::OrgCode | Field::Data(..) => String::new(),
            })
            .collect();
        Some((family, cells))
    }
}

enum Sink {
    Csv(Box<csv::Writer<std::io::BufWriter<std::fs::File>>>),
    Xlsx {
        book: Box<rust_xlsxwriter::Workbook>,
        row: u32,
        path: PathBuf,
    },
}

/// Writes ledger files into a folder, one per family met.
pub struct LedgerWriter {
    dir: PathBuf,
    format: LedgerFormat,
    sinks: HashMap<&'static str, Sink>,
    pub rows: u64,
}

impl LedgerWriter {
    pub fn new(dir: &Path, format: LedgerFormat) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(LedgerWriter {
            dir: dir.to_path_buf(),
            format,
            sinks: HashMap::new(),
            rows: 0,
        })
    }

    pub fn path_of(&self, family: Family) -> PathBuf {
        self.dir
            .join(format!("{}.{}", family.title(), self.format.extension()))
    }

    pub fn write(&mut self, family: Family, cells: &[String]) -> anyhow::Result<()> {
        use std::io::Write;
        if !self.sinks.contains_key(family.title()) {
            let path = self.path_of(family);
            let headers: Vec<&str> = family.columns().iter().map(|(h, _)| *h).collect();
            let sink = match self.format {
                LedgerFormat::Csv => {
                    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    file.write_all(&[0xEF, 0xBB, 0xBF])?;
                    let mut w = csv::Writer::from_writer(file);
                    w.write_record(&headers)?;
                    Sink::Csv(Box::new(w))
                }
                LedgerFormat::Xlsx => {
                    let mut book = Box::new(rust_xlsxwriter::Workbook::new());
                    let sheet = book.add_worksheet_with_constant_memory()?;
                    sheet.set_name(family.title())?;
                    for (c, h) in headers.iter().enumerate() {
                        sheet.write_string(0, c as u16, *h)?;
                    }
                    Sink::Xlsx { book, row: 1, path }
                }
            };
            self.sinks.insert(family.title(), sink);
        }
        match self.sinks.get_mut(family.title()) {
            Some(Sink::Csv(w)) => w.write_record(cells)?,
            Some(Sink::Xlsx { book, row, .. }) => {
                let sheet = book.worksheet_from_index(0)?;
                for (c, v) in cells.iter().enumerate() {
                    if !v.is_empty() {
                        sheet.write_string(*row, c as u16, v)?;
                    }
                }
                *row += 1;
            }
            None => {}
        }
        self.rows += 1;
        Ok(())
    }

    /// Flushes and closes every file; the paths written.
    pub fn finish(self) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (title, sink) in self.sinks {
            match sink {
                Sink::Csv(mut w) => {
                    w.flush()?;
                    written.push(self.dir.join(format!("{title}.csv")));
                }
                Sink::Xlsx { mut book, path, .. } => {
                    book.save(&path)?;
                    written.push(path);
                }
            }
        }
        written.sort();
        Ok(written)
    }
}
