//! Record kinds and the validation of one incoming event into a typed row.
//!
//! A record is validated against the org tree (its org exists, at a level the kind allows)
//! and its kind's `data` fields; a located record is placed in a district with the map.
//! Every failure names the field and the reason.

use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::time::year_of;

use super::org::{Level, NodeIdx, OrgTree};

pub const MAX_ID_LEN: usize = 128;

/// The integer `data` fields and the plausible range of each (inclusive). A value outside is
/// refused at validation with the field and the reason, so that no sum over the org tree can
/// come near `i64`'s limits: 868 nodes × the largest value stays below 10^8.
pub const COUNT_RANGES: &[(&str, i64, i64)] = &[
    // Approved and filled posts of one service center (the city's or a district's).
    ("approved_posts", 0, 10_000),
    ("filled_posts", 0, 10_000),
    // Staff of one node's own service center or station.
    ("headcount", 0, 100_000),
    // A star rating.
    ("stars", 0, 5),
];

/// The plausible range of an integer `data` field.
pub fn count_range(name: &str) -> (i64, i64) {
    COUNT_RANGES
        .iter()
        .find(|(n, ..)| *n == name)
        .map_or((0, i64::MAX), |(_, lo, hi)| (*lo, *hi))
}

/// Checks an integer `data` field against its plausible range: the value, or the reason.
pub fn check_count(name: &str, n: i64) -> Result<i64, String> {
    let (lo, hi) = count_range(name);
    if n < 0 && lo == 0 {
        Err("must not be negative".into())
    } else if n < lo || n > hi {
        Err(format!("must be {lo} to {hi}"))
    } else {
        Ok(n)
    }
}

/// Seqs from here up belong to ledger imports: `IMPORT_SEQ_BASE + (import_no << 32) + row`.
/// Below it, seqs are positions in the durable log.
pub const IMPORT_SEQ_BASE: u64 = 1 << 62;

/// The first seq of an import's range.
pub fn import_seq_base(import_no: u32) -> u64 {
    IMPORT_SEQ_BASE + ((import_no as u64) << 32)
}

macro_rules! kinds {
    ($($variant:ident = $name:literal, levels = [$($lvl:ident),*];)*) => {
        /// The record kinds the headline metrics are computed from.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind { $($variant),* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$variant => $name),* }
            }

            pub fn parse(s: &str) -> Option<Kind> {
                match s { $($name => Some(Kind::$variant),)* _ => None }
            }

            /// Org levels a record of this kind may belong to.
            pub fn levels(self) -> &'static [Level] {
                match self { $(Kind::$variant => &[$(Level::$lvl),*]),* }
            }
        }
    };
}

kinds! {
    StaffingReported = "staffing.reported", levels = [City, District];
    StaffHired = "staff.hired", levels = [City, District, Street, Community];
    StaffHeadcount = "staff.headcount", levels = [City, District, Street, Community];
    TrainingClassHeld = "training.class_held", levels = [City, District];
    TrainingAttended = "training.attended", levels = [City, District, Street, Community];
    StationRated = "station.rated", levels = [District, Street];
    AppealReceived = "appeal.received", levels = [City, District, Street, Community];
    AppealAccepted = "appeal.accepted", levels = [City, District, Street, Community];
    AppealClosed = "appeal.closed", levels = [City, District, Street, Community];
    VeteranRegistered = "veteran.registered", levels = [Community];
    ArchiveCompleted = "archive.completed", levels = [Community];
}

/// The type of a `data` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A non-empty string of at most [`MAX_ID_LEN`] characters (an id).
    Text,
    /// A whole number within its [`COUNT_RANGES`] range.
    Count,
    /// `true` or `false`.
    Flag,
}

impl Kind {
    /// The field that says whom or what a record is about (a staff member, a class, an
    /// appeal, a person): what distinct counts, matches and cases are keyed by.
    pub fn subject_field(self) -> Option<&'static str> {
        match self {
            Kind::StaffHired | Kind::TrainingAttended => Some("staff_id"),
            Kind::TrainingClassHeld => Some("class_id"),
            Kind::AppealReceived | Kind::AppealAccepted | Kind::AppealClosed => Some("appeal_id"),
            Kind::VeteranRegistered | Kind::ArchiveCompleted => Some("person_id"),
            Kind::StaffingReported | Kind::StaffHeadcount | Kind::StationRated => None,
        }
    }

    /// The `data` fields a record of this kind must carry (others are kept, not read).
    pub fn data_fields(self) -> &'static [(&'static str, FieldType)] {
        use FieldType::*;
        match self {
            Kind::StaffingReported => &[("approved_posts", Count), ("filled_posts", Count)],
            Kind::StaffHired => &[("staff_id", Text), ("veteran", Flag)],
            Kind::StaffHeadcount => &[("headcount", Count)],
            Kind::TrainingClassHeld => &[("class_id", Text)],
            Kind::TrainingAttended => &[("staff_id", Text), ("class_id", Text)],
            Kind::StationRated => &[("stars", Count), ("demonstration", Flag)],
            Kind::AppealReceived | Kind::AppealAccepted | Kind::AppealClosed => {
                &[("appeal_id", Text)]
            }
            Kind::VeteranRegistered | Kind::ArchiveCompleted => &[("person_id", Text)],
        }
    }
}

/// One accepted record, as it is logged, stored in ClickHouse (`events`) and aggregated.
/// Times are Unix seconds; `seq` is assigned by the durable log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct EventRow {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub org: String,
    pub district: String,
    pub at: u32,
    pub received_at: u32,
    pub source: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub staff_id: String,
    pub class_id: String,
    pub appeal_id: String,
    pub person_id: String,
    pub veteran: u8,
    pub demonstration: u8,
    pub stars: u8,
    pub approved_posts: i64,
    pub filled_posts: i64,
    pub headcount: i64,
    pub data: String,
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
        source: &str,
    ) -> Self {
        EventRow {
            seq: 0,
            id,
            kind: kind.as_str().to_string(),
            org,
            district,
            at,
            received_at,
            source: source.to_string(),
            lon: None,
            lat: None,
            staff_id: String::new(),
            class_id: String::new(),
            appeal_id: String::new(),
            person_id: String::new(),
            veteran: 0,
            demonstration: 0,
            stars: 0,
            approved_posts: 0,
            filled_posts: 0,
            headcount: 0,
            data: String::new(),
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::parse(&self.kind)
    }

    /// The calendar year (Asia/Shanghai) of `at`.
    pub fn year(&self) -> i32 {
        year_of(self.at)
    }

    /// The value of a count or flag field (flags as 0 or 1), by name.
    pub fn number(&self, field: &str) -> Option<i64> {
        Some(match field {
            "approved_posts" => self.approved_posts,
            "filled_posts" => self.filled_posts,
            "headcount" => self.headcount,
            "stars" => i64::from(self.stars),
            "veteran" => i64::from(self.veteran),
            "demonstration" => i64::from(self.demonstration),
            _ => return None,
        })
    }

    /// The record's subject (see [`Kind::subject_field`]), empty when its kind has none.
    pub fn subject(&self, kind: Kind) -> &str {
        match kind.subject_field() {
            Some("staff_id") => &self.staff_id,
            Some("class_id") => &self.class_id,
            Some("appeal_id") => &self.appeal_id,
            Some("person_id") => &self.person_id,
            _ => "",
        }
    }

    /// Whether a row — accepted now, or stored by an earlier version under other rules — may
    /// enter the live figures: its kind and org known, at a level the kind allows, its fields
    /// within the ranges validation enforces today. Answers the org and kind, or the reason.
    pub fn admissible(&self, tree: &OrgTree) -> Result<(NodeIdx, Kind), String> {
        let kind = self
            .kind()
            .ok_or_else(|| format!("unknown kind '{}'", self.kind))?;
        let org = tree
            .get(&self.org)
            .ok_or_else(|| format!("unknown org code '{}'", self.org))?;
        let level = tree.node(org).level;
        if !kind.levels().contains(&level) {
            return Err(format!(
                "{} records do not belong to a {level} org",
                kind.as_str()
            ));
        }
        let count = |name: &str, n: i64| {
            check_count(name, n).map_err(|reason| format!("data.{name} {n}: {reason}"))
        };
        let text = |name: &str, s: &str| {
            if s.is_empty() {
                Err(format!("data.{name} is empty"))
            } else {
                Ok(())
            }
        };
        match kind {
            Kind::StaffingReported => {
                count("approved_posts", self.approved_posts)?;
                count("filled_posts", self.filled_posts)?;
                if self.filled_posts > self.approved_posts {
                    return Err("data.filled_posts exceeds data.approved_posts".into());
                }
            }
            Kind::StaffHeadcount => {
                count("headcount", self.headcount)?;
            }
            Kind::StationRated => {
                count("stars", i64::from(self.stars))?;
            }
            Kind::StaffHired => text("staff_id", &self.staff_id)?,
            Kind::TrainingClassHeld => text("class_id", &self.class_id)?,
            Kind::TrainingAttended => {
                text("staff_id", &self.staff_id)?;
                text("class_id", &self.class_id)?;
            }
            Kind::AppealReceived | Kind::AppealAccepted | Kind::AppealClosed => {
                text("appeal_id", &self.appeal_id)?
            }
            Kind::VeteranRegistered | Kind::ArchiveCompleted => text("person_id", &self.person_id)?,
        }
        Ok((org, kind))
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

/// The checks every incoming record passes, whichever way it came in: into a row ready for
/// the log, or the field at fault and why.
pub fn check(
    event: &impl IncomingEvent,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &str,
) -> Result<EventRow, FieldError> {
    let id = event.string("id")?;
    if id.is_empty() || id.chars().count() > MAX_ID_LEN {
        return Err(err("id", format!("must be 1 to {MAX_ID_LEN} characters")));
    }
    let kind_name = event.string("kind")?;
    let kind = Kind::parse(kind_name).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        err(
            "kind",
            format!(
                "unknown kind '{kind_name}'; known kinds: {}",
                known.join(", ")
            ),
        )
    })?;
    let org_code = event.string("org")?;
    let org: NodeIdx = tree
        .get(org_code)
        .ok_or_else(|| err("org", format!("unknown org code '{org_code}'")))?;
    let level = tree.node(org).level;
    if !kind.levels().contains(&level) {
        let allowed: Vec<&str> = kind.levels().iter().map(|l| l.as_str()).collect();
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
    let text = |name: &str| -> Result<String, FieldError> {
        let s = event.data_string(name)?;
        if s.trim().is_empty() {
            Err(err(format!("data.{name}"), "must not be empty"))
        } else if s.chars().count() > MAX_ID_LEN {
            Err(err(
                format!("data.{name}"),
                format!("must be at most {MAX_ID_LEN} characters"),
            ))
        } else {
            Ok(s.to_string())
        }
    };
    let count = |name: &str| -> Result<i64, FieldError> {
        check_count(name, event.data_integer(name)?)
            .map_err(|reason| err(format!("data.{name}"), reason))
    };
    let flag = |name: &str| event.data_flag(name).map(u8::from);

    match kind {
        Kind::StaffingReported => {
            row.approved_posts = count("approved_posts")?;
            row.filled_posts = count("filled_posts")?;
            if row.filled_posts > row.approved_posts {
                return Err(err("data.filled_posts", "exceeds data.approved_posts"));
            }
        }
        Kind::StaffHired => {
            row.staff_id = text("staff_id")?;
            row.veteran = flag("veteran")?;
        }
        Kind::StaffHeadcount => row.headcount = count("headcount")?,
        Kind::TrainingClassHeld => row.class_id = text("class_id")?,
        Kind::TrainingAttended => {
            row.staff_id = text("staff_id")?;
            row.class_id = text("class_id")?;
        }
        Kind::StationRated => {
            row.stars = count("stars")? as u8;
            row.demonstration = flag("demonstration")?;
        }
        Kind::AppealReceived | Kind::AppealAccepted | Kind::AppealClosed => {
            row.appeal_id = text("appeal_id")?
        }
        Kind::VeteranRegistered | Kind::ArchiveCompleted => row.person_id = text("person_id")?,
    }
    row.data = event.data_json();
    Ok(row)
}
