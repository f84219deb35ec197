//! Records in (`POST /api/v1/events`): the JSON of incoming events, parsed for the domain's
//! checks; the answer, its rejections; and the records the live figures refused.
//!
//! An event is parsed one of two ways. Well-formed events take a typed parse that borrows from
//! the body (about three times cheaper than building a `Value`); anything that parse cannot
//! take — a wrong type, a missing field, not JSON at all — is parsed again as a `Value`, whose
//! accessors name the field and the reason. Both feed the same [`check`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::domain::kinds::Kinds;
use crate::domain::org::OrgTree;
use crate::domain::record::{
    check, data_required, err, required, EventRow, FieldError, IncomingEvent, Locator,
};

/// Validates one incoming event (a JSON value) into a row ready for the log.
pub fn validate(
    value: &Value,
    kinds: &Kinds,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &'static str,
) -> Result<EventRow, FieldError> {
    let obj = value
        .as_object()
        .ok_or_else(|| err("$", "an event must be a JSON object"))?;
    check(&ValueEvent(obj), kinds, tree, locator, received_at, source)
}

/// Validates one event given as JSON text; also returns its id when it has one, for the
/// rejection to name. Well-formed events take a typed parse that borrows from the text (about
/// three times cheaper than building a `Value`); anything that parse cannot take — a wrong
/// type, a missing field, not JSON at all — is parsed again as a `Value`, whose checks name the
/// field and the reason. Both paths run the same checks, in the same order.
pub fn validate_text(
    text: &str,
    kinds: &Kinds,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &'static str,
) -> Checked {
    match serde_json::from_str::<WireEvent>(text) {
        Ok(wire) => validate_wire(wire, kinds, tree, locator, received_at, source),
        Err(_) => match serde_json::from_str::<Value>(text) {
            Ok(value) => validate_value(&value, kinds, tree, locator, received_at, source),
            Err(e) => (None, Err(err("$", format!("not a JSON object: {e}")))),
        },
    }
}

/// One event's outcome, with its id when it has one (for the rejection to name).
pub type Checked = (Option<String>, Result<EventRow, FieldError>);

fn validate_value(
    value: &Value,
    kinds: &Kinds,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &'static str,
) -> Checked {
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    (
        id,
        validate(value, kinds, tree, locator, received_at, source),
    )
}

fn validate_wire(
    mut wire: WireEvent<'_>,
    kinds: &Kinds,
    tree: &OrgTree,
    locator: &dyn Locator,
    received_at: OffsetDateTime,
    source: &'static str,
) -> Checked {
    match serde_json::from_str::<WireData>(wire.data.get()) {
        Ok(fields) => {
            wire.fields = fields;
            let checked = check(&wire, kinds, tree, locator, received_at, source);
            let id = checked.is_err().then(|| wire.id.to_string());
            (id, checked)
        }
        // A mistyped data field: the `Value` checks name it.
        Err(_) => validate_value(&wire.to_value(), kinds, tree, locator, received_at, source),
    }
}

/// A JSON array read element by element into `Vec<U>` (each element read as `T`, then
/// `wrap`ped), refused as soon as it holds more than `max` elements: a body of a million tiny
/// elements costs nothing to refuse, and a well-formed body is still read in one pass.
fn parse_bounded<'a, T: Deserialize<'a>, U>(
    body: &'a str,
    max: usize,
    wrap: fn(T) -> U,
) -> Result<Vec<U>, ArrayError> {
    use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
    use std::cell::Cell;

    struct Bounded<'c, T, U> {
        max: usize,
        expected: usize,
        wrap: fn(T) -> U,
        over: &'c Cell<bool>,
    }
    impl<'de, T: Deserialize<'de>, U> DeserializeSeed<'de> for Bounded<'_, T, U> {
        type Value = Vec<U>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<U>, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, T: Deserialize<'de>, U> Visitor<'de> for Bounded<'_, T, U> {
        type Value = Vec<U>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<U>, A::Error> {
            // Grown by doubling from nothing, a batch of thousands was copied a dozen times.
            let mut out = Vec::with_capacity(self.expected.min(self.max));
            while let Some(item) = seq.next_element::<T>()? {
                if out.len() == self.max {
                    self.over.set(true);
                    return Err(A::Error::custom("too many elements"));
                }
                out.push((self.wrap)(item));
            }
            Ok(out)
        }
    }

    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(body);
    Bounded {
        max,
        // A guess from the body's size: records of the contract's shape take 100–300 bytes.
        expected: body.len() / 160,
        wrap,
        over: &over,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v))
    .map_err(|e| {
        if over.get() {
            ArrayError::TooMany
        } else {
            ArrayError::Json(e)
        }
    })
}

/// Why a body is not an array of events the server will read.
#[derive(Debug)]
pub enum ArrayError {
    /// More elements than allowed in one body.
    TooMany,
    /// Not JSON, or JSON of another shape.
    Json(serde_json::Error),
}

/// The events of one request body, parsed but not yet checked.
pub struct IncomingBatch<'a>(Vec<Incoming<'a>>);

// Boxing the typed event would cost an allocation per event on the fast path; a body's
// events are counted against `ingest.max_records` before any is built.
#[allow(clippy::large_enum_variant)]
enum Incoming<'a> {
    Wire(WireEvent<'a>),
    Text(&'a str),
}

impl<'a> IncomingBatch<'a> {
    /// A JSON array of at most `max` events. A body of well-typed events is parsed in one
    /// pass; otherwise each element is kept as text, so that one bad record cannot spoil the
    /// others.
    pub fn from_array(body: &'a str, max: usize) -> Result<Self, ArrayError> {
        match parse_bounded::<WireEvent<'a>, _>(body, max, Incoming::Wire) {
            Ok(events) => return Ok(IncomingBatch(events)),
            Err(ArrayError::TooMany) => return Err(ArrayError::TooMany),
            Err(ArrayError::Json(_)) => {}
        }
        // Read as 16-byte slices first, made events only once the count is known to be good.
        let keep = |raw: &'a serde_json::value::RawValue| raw;
        let items = parse_bounded::<&'a serde_json::value::RawValue, _>(body, max, keep)?;
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
        kinds: &'b Kinds,
        tree: &'b OrgTree,
        locator: &'b dyn Locator,
        received_at: OffsetDateTime,
        source: &'static str,
    ) -> impl Iterator<Item = Checked> + 'b
    where
        'a: 'b,
    {
        self.0.into_iter().map(move |item| match item {
            Incoming::Wire(wire) => validate_wire(wire, kinds, tree, locator, received_at, source),
            Incoming::Text(text) => validate_text(text, kinds, tree, locator, received_at, source),
        })
    }
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

/// A scalar of the `data` object, borrowed from the body where it holds no escapes.
enum WireScalar<'a> {
    Text(std::borrow::Cow<'a, str>),
    Integer(i64),
    Flag(bool),
    /// null, a fraction, an array, an object: no kind's field takes it as it is.
    Other(&'static str),
}

impl<'de> Deserialize<'de> for WireScalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireScalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireScalar::Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireScalar::Text(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(WireScalar::Text(std::borrow::Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireScalar::Integer(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(WireScalar::Other("number"), WireScalar::Integer))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(WireScalar::Other("number"))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(WireScalar::Flag(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(WireScalar::Other("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(WireScalar::Other("array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(WireScalar::Other("object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `data` object's fields as sent; the kind decides which are read and required.
#[derive(Deserialize, Default)]
struct WireData<'a>(
    #[serde(borrow, deserialize_with = "fields_in_order")]
    Vec<(std::borrow::Cow<'a, str>, WireScalar<'a>)>,
);

fn fields_in_order<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(std::borrow::Cow<'de, str>, WireScalar<'de>)>, D::Error> {
    use serde::de::{MapAccess, Visitor};
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(std::borrow::Cow<'de, str>, WireScalar<'de>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4).min(16));
            while let Some(entry) =
                map.next_entry::<std::borrow::Cow<'de, str>, WireScalar<'de>>()?
            {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

impl<'a> WireData<'a> {
    /// The field's value, `None` when absent or null (as the `Value` path reads it; the
    /// last of repeated keys wins, as there).
    fn get(&self, name: &str) -> Option<&WireScalar<'a>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, WireScalar::Other("null")))
    }
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
        match self.fields.get(name) {
            None => Err(data_required(name)),
            Some(WireScalar::Text(t)) => Ok(t),
            Some(_) => Err(err(format!("data.{name}"), "must be a string")),
        }
    }
    fn data_integer(&self, name: &str) -> Result<i64, FieldError> {
        match self.fields.get(name) {
            None => Err(data_required(name)),
            Some(WireScalar::Integer(n)) => Ok(*n),
            Some(_) => Err(err(format!("data.{name}"), "must be an integer")),
        }
    }
    fn data_flag(&self, name: &str) -> Result<bool, FieldError> {
        match self.fields.get(name) {
            None => Err(data_required(name)),
            Some(WireScalar::Flag(b)) => Ok(*b),
            Some(_) => Err(err(format!("data.{name}"), "must be true or false")),
        }
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

/// One record's rejection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Its position in the body (0-based).
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The field at fault, e.g. `org`, `data.headcount`; `$` for the record as a whole.
    pub field: String,
    pub reason: String,
}

impl Rejection {
    pub fn new(index: usize, id: Option<String>, e: FieldError) -> Self {
        Rejection {
            index,
            id,
            reason: e.message(),
            field: e.field,
        }
    }
}

/// The answer to `POST /api/v1/events`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    /// Records newly accepted (durable when this answer is sent).
    pub accepted: usize,
    /// Records whose id was accepted before: no change.
    pub duplicates: usize,
    pub rejected: usize,
    /// When the accepted records became durable (RFC 3339, microseconds); absent when nothing
    /// new was accepted. Lets a sender time what happens after acceptance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    /// One entry per rejected record, in body order.
    pub errors: Vec<Rejection>,
}

/// `PUT /api/v1/events/{id}`: the record's new version, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CorrectionIn {
    /// The whole record as it should have been: the same kind, without `id` (or with the
    /// path's). Validated as `POST /api/v1/events` validates a record.
    #[schema(value_type = Object)]
    pub record: Value,
    /// Why (required, at most 500 characters): kept with the version, shown in its history
    /// and in the audit trail.
    pub reason: Option<String>,
}

/// `DELETE /api/v1/events/{id}`: why the record is withdrawn.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WithdrawalIn {
    /// Why (required, at most 500 characters).
    pub reason: Option<String>,
}

/// The answer to a correction or a withdrawal.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CorrectionAnswer {
    pub id: String,
    /// The record's newest version: the new one after a correction, the withdrawn one after
    /// a withdrawal.
    pub version: u32,
    /// `current` or `withdrawn`.
    pub state: String,
}

/// One version of a record, in `GET /api/v1/events/{id}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: u32,
    /// `current`, `replaced` (by the next version) or `withdrawn`.
    pub state: String,
    /// The record as this version holds it: id, kind, org, at, data, location.
    #[schema(value_type = Object)]
    pub record: Value,
    /// Who sent this version (empty when not known: the simulator, or a record stored before
    /// corrections existed).
    pub by: String,
    /// When it was received (RFC 3339, Shenzhen time).
    pub at: String,
    /// Why this version replaced the one before; absent for the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How it came in: `api`, `ledger`, `form`, `simulator`.
    pub via: String,
    /// Who withdrew the record, when and why; only on a withdrawn version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<WithdrawalView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WithdrawalView {
    pub by: String,
    pub at: String,
    pub reason: String,
}

/// `GET /api/v1/events/{id}`: every version of a record, oldest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordHistory {
    pub id: String,
    pub versions: Vec<VersionView>,
}

/// A stored row as the contract writes a record: id, kind, org, at (Shenzhen), data and,
/// when it has one, location.
pub fn record_json(r: &EventRow) -> Value {
    let mut record = serde_json::json!({
        "id": r.id,
        "kind": r.kind,
        "org": r.org,
        "at": crate::domain::time::rfc3339_shanghai(r.at as i64),
        "data": serde_json::from_str::<Value>(&r.data).unwrap_or(Value::Null),
    });
    if let (Some(lon), Some(lat)) = (r.lon, r.lat) {
        record["location"] = serde_json::json!({ "lon": lon, "lat": lat });
    }
    record
}

impl RecordHistory {
    pub fn new(history: &crate::domain::revision::History) -> Self {
        let when = |unix: u32| crate::domain::time::rfc3339_shanghai(unix as i64);
        let versions = history
            .versions
            .iter()
            .map(|v| {
                let r = &v.row;
                let record = record_json(r);
                VersionView {
                    version: r.version,
                    state: v.state.as_str().to_string(),
                    record,
                    by: r.actor.clone(),
                    at: when(r.received_at),
                    reason: (r.version > 1).then(|| r.reason.clone()),
                    via: r.source.to_string(),
                    withdrawn: v.withdrawal.as_ref().map(|w| WithdrawalView {
                        by: w.actor.clone(),
                        at: when(w.received_at),
                        reason: w.reason.clone(),
                    }),
                }
            })
            .collect();
        RecordHistory {
            id: history.newest().row.id.clone(),
            versions,
        }
    }
}

/// One item of `POST /api/v1/corrections`: a correction (`record`) or a withdrawal
/// (`"withdraw": true`) of the record `id`, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BulkChangeIn {
    pub id: Option<String>,
    /// The record's new version, as in `PUT /api/v1/events/{id}`.
    #[schema(value_type = Option<Object>)]
    pub record: Option<Value>,
    /// Withdraw the record (instead of a `record`).
    #[serde(default)]
    pub withdraw: bool,
    pub reason: Option<String>,
}

/// One refused item of a bulk change.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkRejection {
    /// Its position in the body (0-based).
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the single-record route would have answered: 400, 403, 404, 409 or 422.
    pub status: u16,
    pub field: String,
    pub reason: String,
}

/// The answer to `POST /api/v1/corrections`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkChangeAnswer {
    /// Records given a new version.
    pub corrected: usize,
    pub withdrawn: usize,
    /// Corrections that change nothing (the record already holds that content).
    pub unchanged: usize,
    pub rejected: usize,
    pub errors: Vec<BulkRejection>,
}

/// A record the live figures refused.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuarantinedRecord {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub org: String,
    /// Why it was refused.
    pub reason: String,
    /// When it was refused (RFC 3339).
    pub at: String,
}

impl From<crate::live::hub::QuarantinedRecord> for QuarantinedRecord {
    fn from(r: crate::live::hub::QuarantinedRecord) -> Self {
        QuarantinedRecord {
            seq: r.seq,
            id: r.id,
            kind: r.kind,
            org: r.org,
            reason: r.reason,
            at: crate::domain::time::rfc3339(r.at),
        }
    }
}

/// `GET /api/v1/quarantine`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QuarantineAnswer {
    /// Records kept out of the live figures since this server started (all scopes).
    pub total: u64,
    /// The latest of them inside the caller's scope, newest first (at most 100).
    pub recent: Vec<QuarantinedRecord>,
}

/// One incoming event. The served document replaces this placeholder with
/// [`event_schema`] of the record kinds in service.
pub struct EventIn;

impl utoipa::ToSchema for EventIn {}

impl utoipa::PartialSchema for EventIn {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .description(Some(
                "An event of one of the record kinds (GET /openapi.json)",
            ))
            .into()
    }
}

/// One incoming event, as `POST /api/v1/events` validates it: a `oneOf` per record kind, each
/// with the `data` fields that kind requires and the plausible range of every number. Built
/// from the same definitions validation reads.
pub fn event_schema(kinds: &Kinds) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    {
        use crate::domain::record::{FieldType, MAX_ID_LEN};
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_ID_LEN))
                .description(Some(description))
        };
        let location = || {
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::Object,
                    Type::Null,
                ]))
                .description(Some(
                    "GCJ-02 longitude and latitude; the point must lie in Shenzhen",
                ))
                .property("lon", ObjectBuilder::new().schema_type(Type::Number))
                .property("lat", ObjectBuilder::new().schema_type(Type::Number))
                .required("lon")
                .required("lat")
        };
        let mut one_of = OneOfBuilder::new();
        for def in kinds.all() {
            let kind = def.kind;
            let levels: Vec<&str> = def.levels.iter().map(|l| l.as_str()).collect();
            let mut data = ObjectBuilder::new().description(Some(
                "The kind's fields; other fields are kept with the record and not read",
            ));
            for f in &def.fields {
                let field = match f.ty {
                    FieldType::Text => text(&f.label_zh),
                    FieldType::Flag => ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .description(Some(&f.label_zh)),
                    FieldType::Count => ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(f.min as f64))
                        .maximum(Some(f.max as f64))
                        .description(Some(&f.label_zh)),
                };
                data = data.property(&f.name, field).required(&f.name);
            }
            let event = ObjectBuilder::new()
                .title(Some(kind.as_str()))
                .description(Some(&def.label_zh))
                .property("id", text("unique per event; a re-sent id changes nothing"))
                .property(
                    "kind",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind.as_str()])),
                )
                .property(
                    "org",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$"))
                        .description(Some(format!(
                            "org code of a node of the tree (GET /api/v1/org), at level {}",
                            levels.join(" or ")
                        ))),
                )
                .property(
                    "at",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                        .description(Some("RFC 3339 with offset; not more than a day ahead")),
                )
                .property("location", location())
                .property("data", data)
                .required("id")
                .required("kind")
                .required("org")
                .required("at")
                .required("data");
            one_of = one_of.item(event);
        }
        utoipa::openapi::schema::Schema::OneOf(one_of.build()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::Kinds;
    use crate::domain::org::Level;
    use crate::domain::record::FieldType;

    fn kinds() -> Kinds {
        Kinds::shipped()
    }
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
            &kinds(),
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
            (
                row.subject.as_str(),
                row.number("veteran"),
                row.district.as_str()
            ),
            ("p1", Some(1), "d")
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
            &kinds(),
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

    /// A kind's definition (which the OpenAPI document shows) says what validation does: an
    /// event carrying exactly those fields passes, and one missing any of them is refused
    /// naming it; a count over its range is refused naming it.
    #[test]
    fn the_defined_data_fields_are_the_ones_validation_requires() {
        let kinds = kinds();
        for def in kinds.all() {
            let kind = def.kind;
            let org = match def.levels[0] {
                Level::Nation | Level::Province | Level::City => "c",
                Level::District => "d",
                Level::Street => "s",
                Level::Community => "m",
            };
            let mut data = serde_json::Map::new();
            for f in &def.fields {
                let v = match f.ty {
                    FieldType::Text => json!("x1"),
                    // At its most, but no more than a count it may not exceed.
                    FieldType::Count if f.at_most.is_some() => json!(f.min),
                    FieldType::Count => json!(f.max),
                    FieldType::Flag => json!(true),
                };
                data.insert(f.name.clone(), v);
            }
            let event = |data: serde_json::Map<String, Value>| {
                json!({"id": "e", "kind": kind.as_str(), "org": org,
                       "at": "2021-03-04T10:15:00+08:00", "data": data})
            };
            if def.made_by_tasks {
                // Only the task handling makes these: the records API refuses them whole.
                let e = check(event(data.clone())).unwrap_err();
                assert_eq!(e.field, "kind", "{}", kind.as_str());
                assert!(e.reason.contains("/api/v1/tasks"), "{}", e.reason);
                continue;
            }
            assert!(check(event(data.clone())).is_ok(), "{}", kind.as_str());
            for f in &def.fields {
                let name = f.name.as_str();
                let mut without = data.clone();
                without.remove(name);
                let e = check(event(without)).unwrap_err();
                assert_eq!(e.field, format!("data.{name}"), "{}", kind.as_str());
                if f.ty == FieldType::Count {
                    let mut over = data.clone();
                    over.insert(name.into(), json!(f.max + 1));
                    let e = check(event(over)).unwrap_err();
                    assert_eq!(e.field, format!("data.{name}"), "{}", kind.as_str());
                }
            }
        }
    }

    #[test]
    fn an_array_is_refused_as_soon_as_it_holds_too_many_elements() {
        let ok = r#"[{"id": "e1", "kind": "staff.hired", "org": "m", "at": "2021-03-04T10:15:00+08:00", "data": {}}, 3]"#;
        assert_eq!(IncomingBatch::from_array(ok, 2).unwrap().len(), 2);
        assert!(IncomingBatch::from_array("[]", 2).unwrap().is_empty());
        for too_many in ["[1,1,1]", "[{},{},{}]"] {
            assert!(matches!(
                IncomingBatch::from_array(too_many, 2),
                Err(ArrayError::TooMany)
            ));
        }
        match IncomingBatch::from_array("{}", 2) {
            Err(ArrayError::Json(e)) => assert!(e.is_data(), "{e}"),
            other => panic!("{:?}", other.map(|b| b.len())),
        }
        assert!(matches!(
            IncomingBatch::from_array("[1,", 2),
            Err(ArrayError::Json(e)) if e.is_eof()
        ));
    }
}
