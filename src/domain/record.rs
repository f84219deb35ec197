//! Record kinds and the validation of one incoming event into a typed row.
//!
//! A record is validated against the org tree (its org exists, at a level the kind allows)
//! and its kind's `data` fields; a located record is placed in a district with the map.
//! Every failure names the field and the reason.

use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::time::year_of;

pub use super::kinds::{FieldType, Kind, KindDef, Kinds};
use super::org::{Level, NodeIdx, OrgTree};

pub const MAX_ID_LEN: usize = 128;
/// The source of the records the task handling makes: the only one that may make records of
/// the kinds with `made_by = "tasks"`.
pub const TASKS_SOURCE: &str = "tasks";
/// The most a record's `data` may hold, as JSON: a record is a few fields, not a document.
pub const MAX_DATA_BYTES: usize = 8 * 1024;

/// Seqs from here up belong to ledger imports: `IMPORT_SEQ_BASE + (import_no << 32) + row`.
/// Below it, seqs are positions in the durable log.
pub const IMPORT_SEQ_BASE: u64 = 1 << 62;

/// The first seq of an import's range.
pub fn import_seq_base(import_no: u32) -> u64 {
    IMPORT_SEQ_BASE + ((import_no as u64) << 32)
}

/// A name a row shares with many others (its kind, its source, its counts' keys): borrowed
/// from the definitions when the row was validated here, so that no row allocates and frees
/// it; owned when read back from ClickHouse or the log.
pub type Name = std::borrow::Cow<'static, str>;

/// One accepted record, as it is logged, stored in ClickHouse (`events`) and aggregated.
/// Times are Unix seconds; `seq` is assigned by the durable log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct EventRow {
    pub seq: u64,
    pub id: String,
    pub kind: Name,
    pub org: String,
    pub district: String,
    pub at: u32,
    pub received_at: u32,
    pub source: Name,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    /// The kind's subject field's value (see [`KindDef::subject`]); empty when it has none.
    pub subject: String,
    /// The kind's counts and flags (flags as 0 or 1), by name: one row shape for every kind.
    pub num_keys: Vec<Name>,
    pub num_values: Vec<i64>,
    pub data: String,
    /// Which version of the record (by `id`) this row is: 1 when first sent, one more with each
    /// correction.
    pub version: u32,
    /// 1: this version counts (unless a later row cancels it); -1: it cancels the version of
    /// the same number, stored under `cancels` (a correction's first row, or a withdrawal).
    /// Read back at start-up, 0 marks a version since cancelled (see `Store::replay`).
    pub sign: i8,
    /// The seq of the row a cancelling row takes back; 0 otherwise.
    pub cancels: u64,
    /// Who sent the row: a user's or a token's name (empty for the simulator and for rows
    /// stored before corrections existed).
    pub actor: String,
    /// Why a version was replaced or withdrawn; empty for a first version.
    pub reason: String,
}

impl EventRow {
    /// A row with its identity, place and times; every data field empty, for the kind's own
    /// fields to be filled in.
    pub fn blank(
        id: String,
        kind: Kind,
        org: String,
        district: String,
        at: u32,
        received_at: u32,
        source: &'static str,
    ) -> Self {
        EventRow {
            seq: 0,
            id,
            kind: Name::Borrowed(kind.as_str()),
            org,
            district,
            at,
            received_at,
            source: Name::Borrowed(source),
            lon: None,
            lat: None,
            subject: String::new(),
            num_keys: Vec::new(),
            num_values: Vec::new(),
            data: String::new(),
            version: 1,
            sign: 1,
            cancels: 0,
            actor: String::new(),
            reason: String::new(),
        }
    }

    /// Whether this row takes back an earlier one (a correction's first row, a withdrawal).
    pub fn is_cancelling(&self) -> bool {
        self.sign < 0
    }

    /// The row that takes this stored version back: the same content, sign -1, naming this
    /// row's seq, with who asked, why, and when (`received_at`).
    pub fn cancelling(&self, actor: &str, reason: &str, received_at: u32) -> EventRow {
        EventRow {
            seq: 0,
            sign: -1,
            cancels: self.seq,
            received_at,
            actor: actor.to_string(),
            reason: reason.to_string(),
            ..self.clone()
        }
    }

    /// The row as it was when applied: a cancelling row's content under the seq it cancels,
    /// which is what the live figures take back.
    pub fn cancelled(&self) -> EventRow {
        EventRow {
            seq: self.cancels,
            sign: 1,
            cancels: 0,
            ..self.clone()
        }
    }

    /// The calendar year (Asia/Shanghai) of `at`.
    pub fn year(&self) -> i32 {
        year_of(self.at)
    }

    /// The value of a count or flag field (flags as 0 or 1), by name.
    pub fn number(&self, field: &str) -> Option<i64> {
        // Names interned from the definitions are found by address first: the rows validated
        // here borrow their keys from the same place, so no bytes are compared.
        let interned = |k: &Name| std::ptr::eq(k.as_ref(), field);
        self.num_keys
            .iter()
            .position(interned)
            .or_else(|| self.num_keys.iter().position(|k| k == field))
            .and_then(|i| self.num_values.get(i).copied())
    }

    /// Sets a count or flag field (flags as 0 or 1).
    pub fn set_number(&mut self, field: impl Into<Name>, value: i64) {
        let field = field.into();
        match self.num_keys.iter().position(|k| *k == field) {
            Some(i) if i < self.num_values.len() => self.num_values[i] = value,
            _ => {
                self.num_keys.push(field);
                self.num_values.push(value);
            }
        }
    }

    /// Whether a row — accepted now, or stored by an earlier version under other rules — may
    /// enter the live figures: its kind and org known, at a level the kind allows, its fields
    /// within the ranges validation enforces today. Answers the org and kind, or the reason.
    pub fn admissible(&self, tree: &OrgTree, kinds: &Kinds) -> Result<(NodeIdx, Kind), String> {
        let def = kinds
            .get(&self.kind)
            .ok_or_else(|| format!("unknown kind '{}'", self.kind))?;
        let org = tree
            .get(&self.org)
            .ok_or_else(|| format!("unknown org code '{}'", self.org))?;
        let level = tree.node(org).level;
        if !def.allows(level) {
            return Err(format!(
                "{} records do not belong to a {level} org",
                def.kind
            ));
        }
        if def.subject.is_some() && self.subject.is_empty() {
            let name = def.subject.as_deref().unwrap_or_default();
            return Err(format!("data.{name} is empty"));
        }
        for f in def.numbers() {
            let name = f.key;
            let n = self
                .number(name)
                .ok_or_else(|| format!("data.{name} is missing"))?;
            f.check_count(n)
                .map_err(|reason| format!("data.{name} {n}: {reason}"))?;
            if let Some(bound) = &f.at_most {
                if self.number(bound).is_some_and(|b| n > b) {
                    return Err(format!("data.{name} exceeds data.{bound}"));
                }
            }
        }
        Ok((org, def.kind))
    }
}

/// What was wrong with one record: the field, the reason, and — when the reason is about a
/// value the record gave — that value, kept apart so that each source shows it its way (the API
/// quotes it before the reason; a ledger's reject file has a column for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
    pub value: Option<String>,
}

impl FieldError {
    /// The reason with the value it is about, e.g. `'2031-01-01T00:00:00+08:00' is in the future`.
    pub fn message(&self) -> String {
        match &self.value {
            Some(v) => format!("'{v}' {}", self.reason),
            None => self.reason.clone(),
        }
    }
}

pub fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
        value: None,
    }
}

/// An error about a value the record gave.
pub fn err_about(
    field: impl Into<String>,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> FieldError {
    FieldError {
        value: Some(value.into()),
        ..err(field, reason)
    }
}

/// Locates a GCJ-02 point in a district; the map lives outside the domain.
pub trait Locator {
    fn district_of(&self, lon: f64, lat: f64) -> Option<String>;
}

/// The fields of one incoming event, however it was parsed (JSON from the API, a ledger
/// row). Each accessor answers the value
/// or why there is none ("is required", "must be a string" …); the checks that follow are
/// shared.
pub trait IncomingEvent {
    fn string(&self, name: &str) -> Result<&str, FieldError>;
    fn location(&self) -> Result<Option<(f64, f64)>, FieldError>;
    fn data_present(&self) -> Result<(), FieldError>;
    fn data_string(&self, name: &str) -> Result<&str, FieldError>;
    fn data_integer(&self, name: &str) -> Result<i64, FieldError>;
    fn data_flag(&self, name: &str) -> Result<bool, FieldError>;
    /// The `data` object as JSON text, without insignificant whitespace.
    fn data_json(&self) -> String;
    /// When it happened: by default the `at` string, RFC 3339 with an offset.
    fn at(&self) -> Result<OffsetDateTime, FieldError> {
        let text = self.string("at")?;
        OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            err(
                "at",
                format!("'{text}' is not an RFC 3339 timestamp with offset"),
            )
        })
    }
}

pub fn required(name: &str) -> FieldError {
    err(name, "is required")
}

pub fn data_required(name: &str) -> FieldError {
    err(format!("data.{name}"), "is required")
}

/// A text field of `data`: present, not blank, not too long.
fn checked_text<'e>(event: &'e impl IncomingEvent, name: &str) -> Result<&'e str, FieldError> {
    let s = event.data_string(name)?;
    if s.trim().is_empty() {
        Err(err(format!("data.{name}"), "must not be empty"))
    } else if s.chars().count() > MAX_ID_LEN {
        Err(err(
            format!("data.{name}"),
            format!("must be at most {MAX_ID_LEN} characters"),
        ))
    } else {
        Ok(s)
    }
}

/// The checks every incoming record passes, whichever way it came in: into a row ready for
/// the log, or the field at fault and why.
pub fn check(
    event: &impl IncomingEvent,
    kinds: &Kinds,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &'static str,
) -> Result<EventRow, FieldError> {
    let id = event.string("id")?;
    if id.is_empty() || id.chars().count() > MAX_ID_LEN {
        return Err(err("id", format!("must be 1 to {MAX_ID_LEN} characters")));
    }
    let kind_name = event.string("kind")?;
    let def = kinds.get(kind_name).ok_or_else(|| {
        err(
            "kind",
            format!(
                "unknown kind '{kind_name}'; known kinds: {}",
                kinds.names().join(", ")
            ),
        )
    })?;
    let kind = def.kind;
    if def.made_by_tasks && source != TASKS_SOURCE {
        return Err(err(
            "kind",
            format!(
                "{kind_name} records are made through /api/v1/tasks, which checks the task's state first"
            ),
        ));
    }
    let org_code = event.string("org")?;
    let org: NodeIdx = tree
        .get(org_code)
        .ok_or_else(|| err("org", format!("unknown org code '{org_code}'")))?;
    let level = tree.node(org).level;
    if !def.allows(level) {
        let allowed: Vec<&str> = def.levels.iter().map(|l| l.as_str()).collect();
        return Err(err(
            "org",
            format!(
                "{} records belong to a {} org; {org_code} is a {level}",
                kind.as_str(),
                allowed.join(" or ")
            ),
        ));
    }
    let at = event.at()?;
    let shown = || at.format(&Rfc3339).unwrap_or_default();
    let at_unix = u32::try_from(at.unix_timestamp())
        .map_err(|_| err_about("at", shown(), "out of range (1970–2106)"))?;
    if at > received_at + time::Duration::days(1) {
        return Err(err_about("at", shown(), "is in the future"));
    }

    let district = tree
        .ancestor_at(org, Level::District)
        .map(|d| tree.node(d).code.clone())
        .unwrap_or_default();
    let received = received_at.unix_timestamp().clamp(0, u32::MAX as i64) as u32;
    let mut row = EventRow::blank(
        id.to_string(),
        kind,
        org_code.to_string(),
        district,
        at_unix,
        received,
        source,
    );

    if let Some((lon, lat)) = event.location()? {
        let district = locator
            .district_of(lon, lat)
            .ok_or_else(|| err("location", format!("({lon}, {lat}) is outside Shenzhen")))?;
        row.lon = Some(lon);
        row.lat = Some(lat);
        row.district = district;
    }

    event.data_present()?;
    for f in &def.fields {
        match f.ty {
            FieldType::Text => {
                let value = checked_text(event, &f.name)?;
                if def.subject.as_deref() == Some(f.name.as_str()) {
                    row.subject = value.to_string();
                }
            }
            FieldType::Count => {
                let n = event.data_integer(&f.name)?;
                let n = f
                    .check_count(n)
                    .map_err(|reason| err(format!("data.{}", f.name), reason))?;
                row.set_number(f.key, n);
            }
            FieldType::Flag => {
                let b = event.data_flag(&f.name)?;
                row.set_number(f.key, i64::from(b));
            }
        }
    }
    for f in &def.fields {
        if let Some(bound) = &f.at_most {
            if row.number(&f.name) > row.number(bound) {
                return Err(err(
                    format!("data.{}", f.name),
                    format!("exceeds data.{bound}"),
                ));
            }
        }
    }
    row.data = event.data_json();
    if row.data.len() > MAX_DATA_BYTES {
        return Err(err(
            "data",
            format!(
                "is {} bytes as JSON; a record's data may be at most {MAX_DATA_BYTES}",
                row.data.len()
            ),
        ));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::intern_name;

    #[test]
    fn a_count_is_found_by_name_whether_its_key_is_interned_or_owned() {
        let mut row = EventRow::blank(
            "r".into(),
            Kind::TRAINING_ATTENDED,
            "440303".into(),
            "440303".into(),
            0,
            0,
            "test",
        );
        row.set_number(intern_name("hours"), 3);
        row.set_number(String::from("people"), 5);
        // Asked by an interned name, by another copy of the text, for each kind of key.
        assert_eq!(row.number(intern_name("hours")), Some(3));
        assert_eq!(row.number(&String::from("hours")), Some(3));
        assert_eq!(row.number(intern_name("people")), Some(5));
        assert_eq!(row.number(&String::from("people")), Some(5));
        assert_eq!(row.number(intern_name("hour")), None);
        // Setting again replaces, whichever form the name comes in.
        row.set_number(String::from("hours"), 4);
        row.set_number(intern_name("people"), 6);
        assert_eq!(
            (row.number("hours"), row.number("people")),
            (Some(4), Some(6))
        );
        assert_eq!(row.num_keys.len(), 2);
    }
}
