//! Figures: one metric at one node, `nodes` (`{code: {metric: figure}}`), and the answers that
//! carry them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::metric::{self, MetricId};
use crate::domain::org::{Level, NodeIdx, OrgTree};

/// One metric's figure at one node.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figure {
    /// `num / den` as a double, unrounded (screens round); null where there is no data or the
    /// denominator is 0.
    pub value: Option<f64>,
    pub num: i64,
    /// Ratios only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub den: Option<i64>,
    pub target: f64,
    /// The deadline, or the last day of the current period (YYYY-MM-DD); null for standing
    /// targets.
    pub due: Option<String>,
    /// met | on_track | at_risk | missed | no_data
    pub status: &'static str,
    /// open_appeals only: appeals past a deadline (either kind), counted once each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue: Option<i64>,
    /// open_appeals only: received but not accepted within the acceptance deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_accept: Option<i64>,
    /// open_appeals only: not closed within the resolution deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_resolve: Option<i64>,
    /// open_appeals only: age in days of the oldest open appeal.
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
            overdue_accept: f.overdue_accept,
            overdue_resolve: f.overdue_resolve,
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

/// One metric of the catalogue.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogueEntry {
    pub id: &'static str,
    pub label_zh: &'static str,
    pub is_ratio: bool,
    /// The target is a most (open appeals overdue), not a least.
    pub at_most: bool,
    pub target: f64,
    /// YYYY-MM-DD, `yearly` or `standing`.
    pub deadline: String,
    /// Levels of the tree the metric is shown at.
    pub levels: Vec<&'static str>,
}

impl From<MetricId> for CatalogueEntry {
    fn from(m: MetricId) -> Self {
        use metric::Deadline;
        let t = m.target();
        let deadline = match t.deadline {
            Deadline::Fixed(d) => d.to_string(),
            Deadline::Yearly => "yearly".into(),
            Deadline::Standing => "standing".into(),
        };
        CatalogueEntry {
            id: m.as_str(),
            label_zh: m.label_zh(),
            is_ratio: m.is_ratio(),
            at_most: t.at_most,
            target: t.value,
            deadline,
            levels: Level::ALL
                .into_iter()
                .filter(|l| m.applies_to(*l))
                .map(|l| l.as_str())
                .collect(),
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

/// `GET /api/v1/trends`: `{metric: {node: [[YYYY-MM-DD, value|null], …]}}`.
pub type TrendsAnswer = BTreeMap<String, BTreeMap<String, Vec<(String, Option<f64>)>>>;
