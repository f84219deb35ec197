//! Figures: one metric at one node, `nodes` (`{code: {metric: figure}}`), and the answers that
//! carry them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::catalogue::{Deadline, Judged, MetricDef, Period, Unit};
use crate::domain::metric::{self, MetricId};
use crate::domain::org::{Level, NodeIdx, OrgTree};

/// One metric's figure at one node. In a stream's delta it **replaces** the client's whole
/// object for that node and metric: a field absent from it is null (`den`, `overdue`, the
/// `overdue_*` counts and `oldest_days` are left out when null — `oldest_days` once the last
/// case closes). `elapsed` metrics' values are fractional hours.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figure {
    /// `num / den` as a double, unrounded (screens round to the metric's `precision`); null
    /// where there is no data or the denominator is 0.
    pub value: Option<f64>,
    pub num: i64,
    /// Ratios only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub den: Option<i64>,
    /// Null for a tracked metric (no target).
    pub target: Option<f64>,
    /// The deadline, or the last day of the current period (YYYY-MM-DD); null for standing
    /// targets.
    pub due: Option<String>,
    /// met | on_track | at_risk | missed | no_data | tracked (a metric without a target that
    /// has data: never `on_track`)
    pub status: &'static str,
    /// Cases only (open_appeals): open cases past a deadline, counted once each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue: Option<i64>,
    /// Cases only: open cases past each deadline of the definition, as `overdue_<deadline>`
    /// (open_appeals: `overdue_accept`, `overdue_resolve`).
    #[serde(flatten)]
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    pub extras: BTreeMap<String, i64>,
    /// Cases only: age in days of the oldest open case; absent (null) when none is open. A case
    /// opened at the city under `closed_by = "level_above"` is closed by the city's own
    /// closing record (the city has no level above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_days: Option<i64>,
}

impl From<&metric::Figure> for Figure {
    fn from(f: &metric::Figure) -> Self {
        Figure {
            value: f.value,
            num: f.num,
            den: f.den,
            target: f.target,
            due: f.due.clone(),
            status: f.status.as_str(),
            overdue: f.overdue,
            extras: f.extras.clone(),
            oldest_days: f.oldest_days,
        }
    }
}

/// `{code: {metric: figure}}`.
pub type Nodes = BTreeMap<String, BTreeMap<&'static str, Figure>>;

/// The `nodes` object of the contract, from a node's figures keyed by metric.
pub fn nodes<'a>(
    tree: &OrgTree,
    figures: impl IntoIterator<Item = (NodeIdx, &'a BTreeMap<MetricId, metric::Figure>)>,
) -> Nodes {
    figures
        .into_iter()
        .map(|(n, f)| {
            let metrics = f
                .iter()
                .map(|(m, f)| (m.as_str(), Figure::from(f)))
                .collect();
            (tree.node(n).code.clone(), metrics)
        })
        .collect()
}

/// `GET /api/v1/metrics`: the scope node and its direct children.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FiguresAnswer {
    pub scope: String,
    /// When the figures were read (RFC 3339).
    pub at: String,
    /// `{code: {metric: figure}}`
    #[schema(value_type = Object)]
    pub nodes: Nodes,
}

/// `GET /api/v1/at-risk`: the nodes under a scope where one metric is at risk or missed,
/// farthest from the target first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AtRiskAnswer {
    pub metric: String,
    pub scope: String,
    /// When the figures were read (RFC 3339).
    pub at: String,
    /// How many nodes are at risk or missed (the list may be cut at `limit`).
    pub total: usize,
    /// Of them, how many at each level (`district`, `street`, `community`), uncut.
    pub by_level: BTreeMap<&'static str, usize>,
    pub nodes: Vec<AtRiskNode>,
}

/// A node at risk of missing (or having missed) a metric's target.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AtRiskNode {
    pub code: String,
    pub name: String,
    /// district | street | community
    pub level: &'static str,
    /// The parent's name (the district of a street …).
    pub parent_name: Option<String>,
    /// How far from the target, in the metric's unit (percent metrics: a fraction, 0.05 = 5
    /// points; cases: overdue cases). Above 0: short of it.
    pub shortfall: f64,
    /// What the node must still do to reach the target in time (the required pace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pace: Option<super::unit::PaceView>,
    #[serde(flatten)]
    pub figure: Figure,
}

/// One metric of the catalogue, as its definition file says.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogueEntry {
    pub id: String,
    pub label_zh: String,
    /// The plan's clause (三, 二十二 …).
    pub clause: String,
    /// percent | count | hours
    pub unit: &'static str,
    /// What the number is counted in, as pages write it after the number: 件, 人, 个, 小时 …
    /// (empty for a percentage).
    pub unit_zh: String,
    /// Decimals a screen shows (of the percentage for percent metrics).
    pub precision: u8,
    /// The measure type: count | sum | distinct | latest | nodes | matched | ratio | cases | elapsed.
    pub measure: &'static str,
    /// Record kinds that feed the metric.
    pub kinds: Vec<&'static str>,
    pub is_ratio: bool,
    /// The target is a most (no appeal overdue), not a least.
    pub at_most: bool,
    /// Null for a tracked metric.
    pub target: Option<f64>,
    /// YYYY-MM-DD, `yearly`, `quarterly`, `monthly` or `standing`; null for a tracked metric.
    pub deadline: Option<String>,
    /// What the target is judged on: `value`, or `overdue` (cases).
    pub judged_on: &'static str,
    /// Fewer is better: the target is a most, or the measure counts open cases or waiting
    /// time. Every page ranks and compares in this direction.
    pub lower_is_better: bool,
    /// The target as every page states it, the way the definition judges it: "≥95% ·
    /// 2020-12-31 前", "≥2 · 每年", "无超期", "跟踪（无目标）".
    pub target_zh: String,
    /// Levels of the tree the metric is shown at.
    pub levels: Vec<&'static str>,
    /// Cases only: the deadlines, each reported in figures as `overdue_<name>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deadlines: Vec<DeadlineEntry>,
}

/// A number as a target states it: 95%, 33.3%, 2, 0.5.
fn target_number(unit: Unit, value: f64) -> String {
    let shown = match unit {
        Unit::Percent => value * 100.0,
        Unit::Count | Unit::Hours => value,
    };
    let mut text = format!("{:.1}", shown);
    if text.ends_with(".0") {
        text.truncate(text.len() - 2);
    }
    match unit {
        Unit::Percent => text + "%",
        Unit::Hours => text + "小时",
        Unit::Count => text,
    }
}

/// The target of a metric in the words every page uses (see [`CatalogueEntry::target_zh`]).
pub fn target_zh(m: &MetricDef) -> String {
    let Some(t) = m.target else {
        return "跟踪（无目标）".into();
    };
    let what = match t.on {
        Judged::Overdue if t.value <= 0.0 => "无超期".to_string(),
        Judged::Overdue => format!("超期不多于 {} 件", t.value),
        Judged::Value => format!(
            "{}{}",
            if t.at_most { "≤" } else { "≥" },
            target_number(m.unit, t.value)
        ),
    };
    let when = match t.deadline {
        // "None overdue" holds at all times by its nature.
        Deadline::Standing if t.on == Judged::Overdue => return what,
        Deadline::Fixed(d) => format!("{d} 前"),
        Deadline::Every(Period::Year) => "每年".into(),
        Deadline::Every(Period::Quarter) => "每季度".into(),
        Deadline::Every(Period::Month) => "每月".into(),
        Deadline::Every(Period::All) | Deadline::Standing => "持续".into(),
    };
    format!("{what} · {when}")
}

/// A metric's unit as the API names it: percent | count | hours.
pub fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Percent => "percent",
        Unit::Count => "count",
        Unit::Hours => "hours",
    }
}

/// What a metric's number is counted in, as pages write it after the number (empty for a
/// percentage).
pub fn unit_zh(m: &MetricDef) -> String {
    match m.unit {
        Unit::Percent => String::new(),
        Unit::Hours if m.unit_zh.is_empty() => "小时".into(),
        _ => m.unit_zh.clone(),
    }
}

/// A deadline of a cases metric.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeadlineEntry {
    pub name: String,
    pub label_zh: String,
    /// Days after a case opened.
    pub days: u32,
}

impl From<&MetricDef> for CatalogueEntry {
    fn from(m: &MetricDef) -> Self {
        let deadline = m.target.map(|t| match t.deadline {
            Deadline::Fixed(d) => d.to_string(),
            Deadline::Every(Period::Year) => "yearly".into(),
            Deadline::Every(Period::Quarter) => "quarterly".into(),
            Deadline::Every(Period::Month) => "monthly".into(),
            Deadline::Every(Period::All) | Deadline::Standing => "standing".into(),
        });
        let mut kinds: Vec<&'static str> = m.measure.kinds().iter().map(|k| k.as_str()).collect();
        kinds.dedup();
        CatalogueEntry {
            id: m.name.clone(),
            label_zh: m.label_zh.clone(),
            clause: m.clause.clone(),
            unit: unit_name(m.unit),
            unit_zh: unit_zh(m),
            precision: m.precision,
            measure: m.measure.type_name(),
            kinds,
            is_ratio: m.is_ratio(),
            at_most: m.target.is_some_and(|t| t.at_most),
            target: m.target.map(|t| t.value),
            deadline,
            judged_on: match m.target.map(|t| t.on) {
                Some(Judged::Overdue) => "overdue",
                _ => "value",
            },
            lower_is_better: m.target.is_some_and(|t| t.at_most) || m.measure.lower_is_better(),
            target_zh: target_zh(m),
            levels: Level::ALL
                .into_iter()
                .filter(|l| m.applies_to(*l))
                .map(|l| l.as_str())
                .collect(),
            deadlines: m
                .measure
                .as_cases()
                .map(|c| {
                    c.deadlines
                        .iter()
                        .map(|d| DeadlineEntry {
                            name: d.name.clone(),
                            label_zh: d.label_zh.clone(),
                            days: d.days,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// When one node's subtree last received a record.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Freshness {
    /// RFC 3339; null: never.
    pub last_received: Option<String>,
    pub days_silent: Option<i64>,
}

/// `GET /api/v1/freshness`: `{code: freshness}`.
pub type FreshnessAnswer = BTreeMap<String, Freshness>;

/// `GET /api/v1/trends`: `{metric: {node: [[YYYY-MM-DD, value|null, overdue|null], …]}}` — the
/// overdue count beside the open count for a cases metric (what its status is judged on), null
/// for the others.
pub type TrendsAnswer = BTreeMap<String, BTreeMap<String, Vec<(String, Option<f64>, Option<i64>)>>>;

/// Cells of each status (the scope and its children × the metrics shown at their levels).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct StatusCounts {
    pub met: usize,
    pub on_track: usize,
    pub at_risk: usize,
    pub missed: usize,
    pub tracked: usize,
    pub no_data: usize,
}

impl StatusCounts {
    pub fn add(&mut self, status: metric::Status) {
        use metric::Status::*;
        match status {
            Met => self.met += 1,
            OnTrack => self.on_track += 1,
            AtRisk => self.at_risk += 1,
            Missed => self.missed += 1,
            Tracked => self.tracked += 1,
            NoData => self.no_data += 1,
        }
    }
}

/// One clause of the plan on the scorecard.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClauseScore {
    /// 三, 二十二, 总体要求 …
    pub clause: String,
    /// The metrics of the clause, in order.
    pub metrics: Vec<String>,
    /// The scope's own figures.
    pub scope: StatusCounts,
    /// Every cell: the scope and its children.
    pub cells: StatusCounts,
}

/// How a one-off target came out at one node.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadlineCell {
    pub code: String,
    pub name: String,
    /// pending | met_on_time | slipped (met on time, not held since) | met_late | met_undated |
    /// missed | no_data
    pub outcome: &'static str,
    /// The value the snapshot of the deadline's day kept, if any.
    pub value_at_deadline: Option<f64>,
    pub value: Option<f64>,
}

/// A one-off target (2020-12-31, 2022-12-31 …) at the scope and each child.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadlineScore {
    pub metric: String,
    pub label_zh: String,
    pub clause: String,
    pub deadline: String,
    pub target_zh: String,
    /// Outcome → how many of the children (the scope itself not counted).
    pub children: BTreeMap<&'static str, usize>,
    /// The scope first, then its children.
    pub nodes: Vec<DeadlineCell>,
}

/// `GET /api/v1/scorecard`: the plan at a glance.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScorecardAnswer {
    pub scope: String,
    pub at: String,
    pub overall: ClauseScore,
    pub clauses: Vec<ClauseScore>,
    pub deadlines: Vec<DeadlineScore>,
}
