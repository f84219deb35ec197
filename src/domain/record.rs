//! Record kinds and the validation of one incoming event into a typed row.
//!
//! A record is validated against the org tree (its org exists, at a level the kind allows)
//! and its kind's `data` fields; a located record is placed in a district with the map.
//! Every failure names the field and the reason.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcOffset};

use super::org::{Level, NodeIdx, OrgTree};

/// Asia/Shanghai has been UTC+8 without daylight saving since 1991.
pub const SHANGHAI: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("valid offset"),
};

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

pub fn year_of(unix: u32) -> i32 {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .map(|t| t.to_offset(SHANGHAI).year())
        .unwrap_or(1970)
}

/// What was wrong with one record: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Locates a GCJ-02 point in a district; the map lives outside the domain.
pub trait Locator {
    fn district_of(&self, lon: f64, lat: f64) -> Option<String>;
}

/// Validates one incoming event (a JSON value) into a row ready for the log.
pub fn validate(
    value: &Value,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &str,
) -> Result<EventRow, FieldError> {
    let obj = value
        .as_object()
        .ok_or_else(|| err("$", "an event must be a JSON object"))?;
    check(&ValueEvent(obj), tree, locator, received_at, source)
}

/// Validates one event given as JSON text; also returns its id when it has one, for the
/// rejection to name. Well-formed events take a typed parse that borrows from the text (about
/// three times cheaper than building a `Value`); anything that parse cannot take — a wrong
/// type, a missing field, not JSON at all — is parsed again as a `Value`, whose checks name the
/// field and the reason. Both paths run the same checks, in the same order.
pub fn validate_text(
    text: &str,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &str,
) -> Checked {
    match serde_json::from_str::<WireEvent>(text) {
        Ok(wire) => validate_wire(wire, tree, locator, received_at, source),
        Err(_) => match serde_json::from_str::<Value>(text) {
            Ok(value) => validate_value(&value, tree, locator, received_at, source),
            Err(e) => (None, Err(err("$", format!("not a JSON object: {e}")))),
        },
    }
}

/// One event's outcome, with its id when it has one (for the rejection to name).
pub type Checked = (Option<String>, Result<EventRow, FieldError>);

fn validate_value(
    value: &Value,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &str,
) -> Checked {
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    (id, validate(value, tree, locator, received_at, source))
}

fn validate_wire(
    mut wire: WireEvent<'_>,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &str,
) -> Checked {
    match serde_json::from_str::<WireData>(wire.data.get()) {
        Ok(fields) => {
            wire.fields = fields;
            let checked = check(&wire, tree, locator, received_at, source);
            let id = checked.is_err().then(|| wire.id.to_string());
            (id, checked)
        }
        // A mistyped data field: the `Value` checks name it.
        Err(_) => validate_value(&wire.to_value(), tree, locator, received_at, source),
    }
}

/// Counts the elements of a JSON array without building them, stopping as soon as there are
/// more than `max`: a body of a million tiny elements costs nothing to refuse. `Ok(n)` for an
/// array of `n <= max` elements; `Err(None)` for more; `Err(Some(e))` when the body is not a
/// JSON array.
pub fn count_array_items(body: &str, max: usize) -> Result<usize, Option<serde_json::Error>> {
    use serde::de::{DeserializeSeed, Error as _, IgnoredAny, SeqAccess, Visitor};
    use std::cell::Cell;

    struct Counter<'c> {
        max: usize,
        over: &'c Cell<bool>,
    }
    impl<'de> DeserializeSeed<'de> for Counter<'_> {
        type Value = usize;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Counter<'_> {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0usize;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
                if n > self.max {
                    self.over.set(true);
                    return Err(A::Error::custom("too many elements"));
                }
            }
            Ok(n)
        }
    }

    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(body);
    let counted = Counter { max, over: &over }
        .deserialize(&mut de)
        .and_then(|n| de.end().map(|()| n));
    counted.map_err(|e| (!over.get()).then_some(e))
}

/// The events of one request body, parsed but not yet checked.
pub struct IncomingBatch<'a>(Vec<Incoming<'a>>);

enum Incoming<'a> {
    Wire(WireEvent<'a>),
    Text(&'a str),
}

impl<'a> IncomingBatch<'a> {
    /// A JSON array of events. A body of well-typed events is parsed in one pass; otherwise
    /// each element is kept as text, so that one bad record cannot spoil the others.
    pub fn from_array(body: &'a str) -> Result<Self, serde_json::Error> {
        if let Ok(events) = serde_json::from_str::<Vec<WireEvent<'a>>>(body) {
            return Ok(IncomingBatch(
                events.into_iter().map(Incoming::Wire).collect(),
            ));
        }
        let items = serde_json::from_str::<Vec<&'a serde_json::value::RawValue>>(body)?;
        Ok(IncomingBatch(
            items
                .into_iter()
                .map(|raw| Incoming::Text(raw.get()))
                .collect(),
        ))
    }

    /// NDJSON: one event per non-blank line.
    pub fn from_ndjson(body: &'a str) -> Self {
        IncomingBatch(
            body.split('\n')
                .filter(|line| !line.trim().is_empty())
                .map(Incoming::Text)
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks every event, in order.
    pub fn validate<'b>(
        self,
        tree: &'b OrgTree,
        locator: &'b dyn Locator,
        received_at: OffsetDateTime,
        source: &'b str,
    ) -> impl Iterator<Item = Checked> + 'b
    where
        'a: 'b,
    {
        self.0.into_iter().map(move |item| match item {
            Incoming::Wire(wire) => validate_wire(wire, tree, locator, received_at, source),
            Incoming::Text(text) => validate_text(text, tree, locator, received_at, source),
        })
    }
}

/// The fields of one incoming event, however it was parsed. Each accessor answers the value
/// or why there is none ("is required", "must be a string" …); the checks that follow are
/// shared.
trait IncomingEvent {
    fn string(&self, name: &str) -> Result<&str, FieldError>;
    fn location(&self) -> Result<Option<(f64, f64)>, FieldError>;
    fn data_present(&self) -> Result<(), FieldError>;
    fn data_string(&self, name: &str) -> Result<&str, FieldError>;
    fn data_integer(&self, name: &str) -> Result<i64, FieldError>;
    fn data_flag(&self, name: &str) -> Result<bool, FieldError>;
    /// The `data` object as JSON text, without insignificant whitespace.
    fn data_json(&self) -> String;
}

fn required(name: &str) -> FieldError {
    err(name, "is required")
}

fn data_required(name: &str) -> FieldError {
    err(format!("data.{name}"), "is required")
}

/// An event parsed as a `serde_json` object: every type mistake can be named.
struct ValueEvent<'a>(&'a serde_json::Map<String, Value>);

impl ValueEvent<'_> {
    fn data(&self) -> Option<&serde_json::Map<String, Value>> {
        self.0.get("data").and_then(Value::as_object)
    }
    fn data_value(&self, name: &str) -> Option<&Value> {
        self.data()
            .and_then(|d| d.get(name))
            .filter(|v| !v.is_null())
    }
}

impl IncomingEvent for ValueEvent<'_> {
    fn string(&self, name: &str) -> Result<&str, FieldError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(required(name)),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(err(name, "must be a string")),
        }
    }
    fn location(&self) -> Result<Option<(f64, f64)>, FieldError> {
        match self.0.get("location") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(loc)) => {
                let coord = |name: &str| {
                    loc.get(name)
                        .and_then(Value::as_f64)
                        .ok_or_else(|| err(format!("location.{name}"), "must be a number"))
                };
                Ok(Some((coord("lon")?, coord("lat")?)))
            }
            Some(_) => Err(err("location", "must be an object {lon, lat}")),
        }
    }
    fn data_present(&self) -> Result<(), FieldError> {
        match self.0.get("data") {
            None | Some(Value::Null) => Err(required("data")),
            Some(Value::Object(_)) => Ok(()),
            Some(_) => Err(err("data", "must be an object")),
        }
    }
    fn data_string(&self, name: &str) -> Result<&str, FieldError> {
        match self.data_value(name) {
            None => Err(data_required(name)),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(err(format!("data.{name}"), "must be a string")),
        }
    }
    fn data_integer(&self, name: &str) -> Result<i64, FieldError> {
        match self.data_value(name) {
            None => Err(data_required(name)),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| err(format!("data.{name}"), "must be an integer")),
        }
    }
    fn data_flag(&self, name: &str) -> Result<bool, FieldError> {
        match self.data_value(name) {
            None => Err(data_required(name)),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(err(format!("data.{name}"), "must be true or false")),
        }
    }
    fn data_json(&self) -> String {
        self.data()
            .and_then(|d| serde_json::to_string(d).ok())
            .unwrap_or_default()
    }
}

/// An event parsed straight into its fields, strings borrowed from the request body where
/// they hold no escapes. Only well-typed events parse this way.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    org: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    at: std::borrow::Cow<'a, str>,
    #[serde(default)]
    location: Option<WireLocation>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    #[serde(skip)]
    fields: WireData<'a>,
}

#[derive(Deserialize)]
struct WireLocation {
    lon: f64,
    lat: f64,
}

/// Every `data` field any kind reads; the kind decides which are required.
#[derive(Deserialize, Default)]
struct WireData<'a> {
    #[serde(borrow, default)]
    staff_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    class_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    appeal_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    person_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    veteran: Option<bool>,
    #[serde(default)]
    demonstration: Option<bool>,
    #[serde(default)]
    stars: Option<i64>,
    #[serde(default)]
    approved_posts: Option<i64>,
    #[serde(default)]
    filled_posts: Option<i64>,
    #[serde(default)]
    headcount: Option<i64>,
}

impl WireEvent<'_> {
    /// The event as a `Value`, for the checks that name a mistyped data field.
    fn to_value(&self) -> Value {
        let mut obj = serde_json::Map::new();
        for (name, text) in [
            ("id", &self.id),
            ("kind", &self.kind),
            ("org", &self.org),
            ("at", &self.at),
        ] {
            obj.insert(name.into(), Value::from(text.as_ref()));
        }
        if let Some(l) = &self.location {
            obj.insert(
                "location".into(),
                serde_json::json!({"lon": l.lon, "lat": l.lat}),
            );
        }
        let data = serde_json::from_str(self.data.get()).unwrap_or(Value::Null);
        obj.insert("data".into(), data);
        Value::Object(obj)
    }
}

impl IncomingEvent for WireEvent<'_> {
    fn string(&self, name: &str) -> Result<&str, FieldError> {
        match name {
            "id" => Ok(&self.id),
            "kind" => Ok(&self.kind),
            "org" => Ok(&self.org),
            "at" => Ok(&self.at),
            _ => Err(required(name)),
        }
    }
    fn location(&self) -> Result<Option<(f64, f64)>, FieldError> {
        Ok(self.location.as_ref().map(|l| (l.lon, l.lat)))
    }
    fn data_present(&self) -> Result<(), FieldError> {
        Ok(())
    }
    fn data_string(&self, name: &str) -> Result<&str, FieldError> {
        let d = &self.fields;
        match name {
            "staff_id" => d.staff_id.as_deref(),
            "class_id" => d.class_id.as_deref(),
            "appeal_id" => d.appeal_id.as_deref(),
            "person_id" => d.person_id.as_deref(),
            _ => None,
        }
        .ok_or_else(|| data_required(name))
    }
    fn data_integer(&self, name: &str) -> Result<i64, FieldError> {
        let d = &self.fields;
        match name {
            "stars" => d.stars,
            "approved_posts" => d.approved_posts,
            "filled_posts" => d.filled_posts,
            "headcount" => d.headcount,
            _ => None,
        }
        .ok_or_else(|| data_required(name))
    }
    fn data_flag(&self, name: &str) -> Result<bool, FieldError> {
        match name {
            "veteran" => self.fields.veteran,
            "demonstration" => self.fields.demonstration,
            _ => None,
        }
        .ok_or_else(|| data_required(name))
    }
    fn data_json(&self) -> String {
        let raw = self.data.get();
        // Stored as sent unless it carries layout; then compacted as the `Value` path would.
        if raw
            .bytes()
            .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
        {
            serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| serde_json::to_string(&v).ok())
                .unwrap_or_else(|| raw.to_string())
        } else {
            raw.to_string()
        }
    }
}

/// The checks every incoming event passes, whichever way it was parsed.
fn check(
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
    let at_text = event.string("at")?;
    let at = OffsetDateTime::parse(at_text, &Rfc3339).map_err(|_| {
        err(
            "at",
            format!("'{at_text}' is not an RFC 3339 timestamp with offset"),
        )
    })?;
    let at_unix = u32::try_from(at.unix_timestamp())
        .map_err(|_| err("at", format!("'{at_text}' is out of range (1970–2106)")))?;
    if at > received_at + time::Duration::days(1) {
        return Err(err("at", format!("'{at_text}' is in the future")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct NoMap;
    impl Locator for NoMap {
        fn district_of(&self, lon: f64, _lat: f64) -> Option<String> {
            (lon > 114.0).then(|| "d".to_string())
        }
    }

    fn tree() -> OrgTree {
        crate::domain::org::tree_of(&[
            ("c", Level::City, None),
            ("d", Level::District, Some("c")),
            ("s", Level::Street, Some("d")),
            ("m", Level::Community, Some("s")),
        ])
    }

    fn check(v: Value) -> Result<EventRow, FieldError> {
        validate(
            &v,
            &tree(),
            &NoMap,
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            "test",
        )
    }

    fn ok_event() -> Value {
        json!({"id": "e1", "kind": "staff.hired", "org": "m", "at": "2021-03-04T10:15:00+08:00",
               "data": {"staff_id": "p1", "veteran": true}})
    }

    #[test]
    fn a_good_event_becomes_a_typed_row() {
        let row = check(ok_event()).unwrap();
        assert_eq!(
            (row.staff_id.as_str(), row.veteran, row.district.as_str()),
            ("p1", 1, "d")
        );
        assert_eq!(row.year(), 2021);
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let cases = [
            (json!({"kind": "staff.hired"}), "id"),
            (
                {
                    let mut e = ok_event();
                    e["kind"] = json!("nope");
                    e
                },
                "kind",
            ),
            (
                {
                    let mut e = ok_event();
                    e["org"] = json!("zz");
                    e
                },
                "org",
            ),
            (
                {
                    let mut e = ok_event();
                    e["kind"] = json!("veteran.registered");
                    e["org"] = json!("d");
                    e
                },
                "org",
            ),
            (
                {
                    let mut e = ok_event();
                    e["at"] = json!("2021-03-04 10:15");
                    e
                },
                "at",
            ),
            (
                {
                    let mut e = ok_event();
                    e["data"] = json!({"staff_id": "p"});
                    e
                },
                "data.veteran",
            ),
            (
                {
                    let mut e = ok_event();
                    e["data"]["veteran"] = json!("yes");
                    e
                },
                "data.veteran",
            ),
            (
                {
                    let mut e = ok_event();
                    e["location"] = json!({"lon": 100.0, "lat": 22.5});
                    e
                },
                "location",
            ),
        ];
        for (event, field) in cases {
            assert_eq!(check(event.clone()).unwrap_err().field, field, "{event}");
            let (id, from_text) = check_text(&event.to_string());
            assert_eq!(from_text.unwrap_err().field, field, "as text: {event}");
            assert_eq!(id.as_deref(), event["id"].as_str());
        }
    }

    fn check_text(text: &str) -> (Option<String>, Result<EventRow, FieldError>) {
        validate_text(
            text,
            &tree(),
            &NoMap,
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            "test",
        )
    }

    #[test]
    fn the_typed_parse_and_the_value_parse_make_the_same_row() {
        let events = [
            ok_event(),
            json!({"id": "r", "kind": "station.rated", "org": "s", "at": "2021-03-04T10:15:00+08:00",
                   "location": {"lon": 114.1, "lat": 22.5}, "data": {"stars": 5, "demonstration": false}}),
            json!({"id": "escaped\"quote", "kind": "staffing.reported", "org": "d", "at": "2021-03-04T10:15:00Z",
                   "data": {"approved_posts": 10, "filled_posts": 9, "note": "extra fields are kept"}}),
        ];
        for event in events {
            let by_value = check(event.clone()).unwrap();
            let (_, by_text) = check_text(&event.to_string());
            assert_eq!(by_text.unwrap(), by_value, "{event}");
        }
        // Layout inside `data` is not stored; a negative count is named like any other mistake.
        let spaced = r#"{"id": "x", "kind": "staff.headcount", "org": "m", "at": "2021-03-04T10:15:00+08:00", "data": { "headcount" : 3 }}"#;
        assert_eq!(check_text(spaced).1.unwrap().data, r#"{"headcount":3}"#);
        let negative = spaced.replace(": 3", ": -3");
        let e = check_text(&negative).1.unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("data.headcount", "must not be negative")
        );
        let e = check_text("{not json").1.unwrap_err();
        assert_eq!(e.field, "$");
    }

    /// `Kind::data_fields` (which the OpenAPI document shows) says what validation does: an
    /// event carrying exactly those fields passes, and one missing any of them is refused
    /// naming it; a count over its range is refused naming it.
    #[test]
    fn the_listed_data_fields_are_the_ones_validation_requires() {
        for &kind in Kind::ALL {
            let org = match kind.levels()[0] {
                Level::City => "c",
                Level::District => "d",
                Level::Street => "s",
                Level::Community => "m",
            };
            let mut data = serde_json::Map::new();
            for &(name, ty) in kind.data_fields() {
                let v = match ty {
                    FieldType::Text => json!("x1"),
                    FieldType::Count => json!(count_range(name).1),
                    FieldType::Flag => json!(true),
                };
                data.insert(name.into(), v);
            }
            let event = |data: serde_json::Map<String, Value>| {
                json!({"id": "e", "kind": kind.as_str(), "org": org,
                       "at": "2021-03-04T10:15:00+08:00", "data": data})
            };
            assert!(check(event(data.clone())).is_ok(), "{}", kind.as_str());
            for &(name, ty) in kind.data_fields() {
                let mut without = data.clone();
                without.remove(name);
                let e = check(event(without)).unwrap_err();
                assert_eq!(e.field, format!("data.{name}"), "{}", kind.as_str());
                if ty == FieldType::Count {
                    let mut over = data.clone();
                    over.insert(name.into(), json!(count_range(name).1 + 1));
                    let e = check(event(over)).unwrap_err();
                    assert_eq!(e.field, format!("data.{name}"), "{}", kind.as_str());
                }
            }
        }
    }

    #[test]
    fn array_elements_are_counted_without_being_built() {
        assert_eq!(count_array_items("[]", 2).unwrap(), 0);
        assert_eq!(count_array_items(r#"[{"a": [1, 2]}, 3]"#, 2).unwrap(), 2);
        assert!(count_array_items("[1,1,1]", 2).unwrap_err().is_none());
        let e = count_array_items("{}", 2).unwrap_err().unwrap();
        assert!(e.is_data(), "{e}");
        assert!(count_array_items("[1,", 2).unwrap_err().unwrap().is_eof());
        assert!(count_array_items("[1] x", 2).unwrap_err().is_some());
    }

    #[test]
    fn the_year_is_the_shanghai_calendar_year() {
        // 2020-12-31T17:00:00Z is already 2021-01-01 01:00 in Shenzhen.
        let t = OffsetDateTime::parse("2020-12-31T17:00:00Z", &Rfc3339).unwrap();
        assert_eq!(year_of(t.unix_timestamp() as u32), 2021);
    }
}
