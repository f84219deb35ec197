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
    let str_field = |name: &str| -> Result<&str, FieldError> {
        match obj.get(name) {
            None | Some(Value::Null) => Err(err(name, "is required")),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(err(name, "must be a string")),
        }
    };

    let id = str_field("id")?;
    if id.is_empty() || id.chars().count() > MAX_ID_LEN {
        return Err(err("id", format!("must be 1 to {MAX_ID_LEN} characters")));
    }
    let kind_name = str_field("kind")?;
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
    let org_code = str_field("org")?;
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
    let at_text = str_field("at")?;
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

    match obj.get("location") {
        None | Some(Value::Null) => {}
        Some(Value::Object(loc)) => {
            let coord = |name: &str| {
                loc.get(name)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| err(format!("location.{name}"), "must be a number"))
            };
            let (lon, lat) = (coord("lon")?, coord("lat")?);
            let district = locator
                .district_of(lon, lat)
                .ok_or_else(|| err("location", format!("({lon}, {lat}) is outside Shenzhen")))?;
            row.lon = Some(lon);
            row.lat = Some(lat);
            row.district = district;
        }
        Some(_) => return Err(err("location", "must be an object {lon, lat}")),
    }

    let data = match obj.get("data") {
        None | Some(Value::Null) => return Err(err("data", "is required")),
        Some(Value::Object(d)) => d,
        Some(_) => return Err(err("data", "must be an object")),
    };
    let text = |name: &str| -> Result<String, FieldError> {
        match data.get(name) {
            None | Some(Value::Null) => Err(err(format!("data.{name}"), "is required")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(err(format!("data.{name}"), "must not be empty"))
            }
            Some(Value::String(s)) if s.chars().count() > MAX_ID_LEN => Err(err(
                format!("data.{name}"),
                format!("must be at most {MAX_ID_LEN} characters"),
            )),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(err(format!("data.{name}"), "must be a string")),
        }
    };
    let count = |name: &str| -> Result<i64, FieldError> {
        match data.get(name) {
            None | Some(Value::Null) => Err(err(format!("data.{name}"), "is required")),
            Some(v) => match v.as_i64() {
                Some(n) if n >= 0 => Ok(n),
                Some(_) => Err(err(format!("data.{name}"), "must not be negative")),
                None => Err(err(format!("data.{name}"), "must be an integer")),
            },
        }
    };
    let flag = |name: &str| -> Result<u8, FieldError> {
        match data.get(name) {
            None | Some(Value::Null) => Err(err(format!("data.{name}"), "is required")),
            Some(Value::Bool(b)) => Ok(u8::from(*b)),
            Some(_) => Err(err(format!("data.{name}"), "must be true or false")),
        }
    };

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
            let stars = count("stars")?;
            if stars > 5 {
                return Err(err("data.stars", "must be 0 to 5"));
            }
            row.stars = stars as u8;
            row.demonstration = flag("demonstration")?;
        }
        Kind::AppealReceived | Kind::AppealAccepted | Kind::AppealClosed => {
            row.appeal_id = text("appeal_id")?
        }
        Kind::VeteranRegistered | Kind::ArchiveCompleted => row.person_id = text("person_id")?,
    }
    row.data = serde_json::to_string(data).unwrap_or_default();
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
        }
    }

    #[test]
    fn the_year_is_the_shanghai_calendar_year() {
        // 2020-12-31T17:00:00Z is already 2021-01-01 01:00 in Shenzhen.
        let t = OffsetDateTime::parse("2020-12-31T17:00:00Z", &Rfc3339).unwrap();
        assert_eq!(year_of(t.unix_timestamp() as u32), 2021);
    }
}
