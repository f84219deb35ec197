//! A unit's workspace: its standing with the required pace (`GET /api/v1/pace`), the forms of
//! the kinds it may report (`GET /api/v1/kinds`), and its own records (`GET /api/v1/records`).

use serde::Serialize;

use super::figures::Figure;
use crate::domain::pace::Pace;

/// `GET /api/v1/pace`: every metric shown at a node's level, judged, ranked among its
/// siblings, with what the node must still do.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PaceAnswer {
    pub scope: String,
    pub name: String,
    /// city | district | street | community
    pub level: &'static str,
    /// The parent's code and name (none for the city).
    pub parent: Option<String>,
    pub parent_name: Option<String>,
    /// Whether the caller reports for this unit (its own clerk, or an admin): the workspace
    /// shows its forms, upload and corrections; the levels above see it read-only.
    pub may_report: bool,
    /// When the figures were read (RFC 3339).
    pub at: String,
    pub metrics: Vec<Standing>,
    /// The scheduled reports the unit itself must send this period, and where each stands.
    pub reports: Vec<DueReport>,
}

/// One scheduled report of the unit in the current period.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DueReport {
    pub kind: String,
    pub label_zh: String,
    /// month | quarter | year
    pub every: &'static str,
    /// The due day (YYYY-MM-DD).
    pub due: String,
    /// `on_time` (received by the due day), `late` (received after it), `missing` (the due
    /// day passed, nothing received) or `pending` (not yet due, not yet received).
    pub state: &'static str,
    /// Records of the kind dated in the period.
    pub records: u32,
    /// Days until the due day, today included (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
}

/// One metric at the node.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Standing {
    pub metric: String,
    pub label_zh: String,
    pub clause: String,
    /// percent | count | hours
    pub unit: &'static str,
    pub unit_zh: String,
    pub precision: u8,
    /// The target as every page states it ("≥95% · 2020-12-31 前").
    pub target_zh: String,
    pub lower_is_better: bool,
    /// What the status is judged on: `value`, or `overdue` (cases).
    pub judged_on: &'static str,
    #[serde(flatten)]
    pub figure: Figure,
    /// The node's place among the siblings the metric is shown at (1 = best); absent without
    /// a value or without siblings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<Rank>,
    /// What the node must still do to reach the target in time; absent when nothing is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pace: Option<PaceView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Rank {
    /// 1 = best; ties share a place.
    pub position: usize,
    /// Siblings with a value, the node included.
    pub of: usize,
}

/// The required pace of one metric (see `domain::pace`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct PaceView {
    /// How much is missing, in `unit_zh` (cases: overdue cases to close).
    pub needed: i64,
    /// The act: 招录退役军人, 召开业务会 …
    pub action_zh: String,
    /// What it is counted in: 名, 次, 个 …
    pub unit_zh: String,
    /// The last day (YYYY-MM-DD): the end of the current period or the fixed deadline; absent:
    /// now (a standing rule, or a deadline already passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// The fixed deadline has passed.
    pub late: bool,
    /// How much per remaining week / month / quarter.
    pub per: Vec<PerPeriodView>,
    /// Cases: open cases turning overdue within `soon_days` days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soon: Option<i64>,
    pub soon_days: i64,
    /// The instruction in one Chinese sentence.
    pub text_zh: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PerPeriodView {
    /// week | month | quarter
    pub every: &'static str,
    /// Periods left, the current one included.
    pub left: i64,
    /// How much in each.
    pub each: i64,
}

impl From<Pace> for PaceView {
    fn from(p: Pace) -> Self {
        PaceView {
            needed: p.needed,
            action_zh: p.action_zh,
            unit_zh: p.unit_zh,
            by: p.by.map(|d| d.to_string()),
            days_left: p.days_left,
            late: p.late,
            per: p
                .per
                .into_iter()
                .map(|x| PerPeriodView {
                    every: x.every,
                    left: x.left,
                    each: x.each,
                })
                .collect(),
            soon: p.soon,
            soon_days: p.soon_days,
            text_zh: p.text_zh,
        }
    }
}

/// `GET /api/v1/kinds`: a record kind as a form shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KindForm {
    pub kind: String,
    pub label_zh: String,
    /// Levels whose orgs may report it.
    pub levels: Vec<&'static str>,
    /// The field that says whom or what a record is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub fields: Vec<FieldForm>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FieldForm {
    pub name: String,
    pub label_zh: String,
    /// text | count | flag
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// A count's range, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// A count that may not exceed this other field of the same record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_most: Option<String>,
}

/// `GET /api/v1/records`: a node's own effective records, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordsAnswer {
    pub scope: String,
    /// The first day listed (YYYY-MM-DD, Shenzhen).
    pub since: String,
    /// Whether more records than `limit` matched.
    pub truncated: bool,
    pub records: Vec<RecordView>,
}

/// One effective record: its current version.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordView {
    /// The record: id, kind, org, at, data, location.
    #[schema(value_type = Object)]
    pub record: serde_json::Value,
    pub kind_zh: String,
    pub version: u32,
    /// Who sent this version (empty: not known — the simulator, or before corrections).
    pub by: String,
    /// How: form | api | ledger | simulator.
    pub via: String,
    /// When this version was received (RFC 3339, Shenzhen).
    pub received: String,
}
