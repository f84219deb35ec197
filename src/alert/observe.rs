//! What a rule observes at one node, read from the live figures: pure, no I/O.

use time::OffsetDateTime;

use super::lifecycle::Observation;
use super::rules::{Condition, Rule};
use crate::domain::metric::Status;
use crate::domain::org::NodeIdx;
use crate::domain::time::local_date;
use crate::live::Aggregates;

/// One observation with what the data says about the breach behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    pub observation: Observation,
    /// When the breach began according to the records (Unix seconds), where they say it: the
    /// moment the oldest overdue case passed its deadline, the day a silent node's silence
    /// reached the rule's days. `None`: the live figures do not date it (the engine dates a
    /// metric's from the daily snapshots, else from when it first saw it).
    pub began: Option<i64>,
    /// The figure's status, where the rule reads a metric.
    pub status: Option<Status>,
    /// Cases: the age in days of the oldest open case.
    pub case_age_days: Option<i64>,
}

impl Observed {
    fn plain(observation: Observation) -> Self {
        Observed {
            observation,
            began: None,
            status: None,
            case_age_days: None,
        }
    }
}

/// The observation of `rule` at `node`, or `None` when the rule does not apply there (a metric
/// not shown at the node's level).
pub fn observe(
    rule: &Rule,
    agg: &Aggregates,
    node: NodeIdx,
    now: OffsetDateTime,
) -> Option<Observed> {
    let now_unix = now.unix_timestamp().max(0) as u32;
    let holds = |yes: bool, value: Option<f64>| {
        if yes {
            Observation::Holds(value)
        } else {
            Observation::Clear(value)
        }
    };
    Some(match &rule.condition {
        Condition::Threshold { metric, .. } | Condition::AtRisk { metric } => {
            // None: not shown at the node's level (or gone from the catalogue).
            let f = agg.figure(node, *metric, now)?;
            let observation = if rule.after.is_some_and(|d| local_date(now) <= d) {
                Observation::Clear(f.value)
            } else if f.status == Status::NoData {
                Observation::NoData
            } else if let Condition::Threshold { op, value, .. } = &rule.condition {
                holds(op.holds(f.value.unwrap_or(0.0), *value), f.value)
            } else {
                holds(matches!(f.status, Status::AtRisk | Status::Missed), f.value)
            };
            // The live figures do not say since when a figure has been off its target: the
            // engine dates that from the daily snapshots (`AlertEngine::date_from_snapshots`).
            Observed {
                observation,
                began: None,
                status: Some(f.status),
                case_age_days: None,
            }
        }
        Condition::Overdue { metric } => {
            let f = agg.figure(node, *metric, now)?;
            let observation = match f.status {
                Status::NoData => Observation::NoData,
                _ => {
                    let overdue = f.overdue.unwrap_or(0);
                    holds(overdue > 0, Some(overdue as f64))
                }
            };
            Observed {
                observation,
                began: agg.first_overdue_at(node, *metric).map(i64::from),
                status: Some(f.status),
                case_age_days: f.oldest_days,
            }
        }
        Condition::Spike {
            record,
            window,
            baseline_windows,
            factor,
            min_count,
        } => {
            let w = window.as_secs() as u32;
            let current = agg.count_between(node, *record, now_unix.saturating_sub(w), now_unix);
            let before = agg.count_between(
                node,
                *record,
                now_unix.saturating_sub(w * (baseline_windows + 1)),
                now_unix.saturating_sub(w),
            );
            let windows = *baseline_windows as f64;
            let baseline = before as f64 / windows;
            Observed::plain(holds(
                current >= *min_count && current as f64 >= factor * baseline.max(1.0 / windows),
                Some(current as f64),
            ))
        }
        Condition::Cluster {
            record,
            window,
            radius_km,
            min_points,
        } => {
            let since = now_unix.saturating_sub(window.as_secs() as u32);
            let points = agg.located_since(node, *record, since);
            let largest = super::hotspots::largest_cluster(&points, radius_km * 1000.0);
            Observed::plain(holds(largest >= *min_points, Some(largest as f64)))
        }
        Condition::ReportingDue { days, record } => {
            let today = local_date(now);
            let reports = agg.own_reports(node, now);
            let mine: Vec<_> = reports
                .iter()
                .filter(|r| record.is_none_or(|k| r.kind == k))
                .collect();
            if mine.is_empty() {
                return None;
            }
            // A unit that never sent anything is not on vscc yet: no data, as for silence.
            if agg.last_received(node).is_none() {
                return Some(Observed::plain(Observation::NoData));
            }
            let soon = mine
                .iter()
                .filter(|r| {
                    r.records == 0
                        && today <= r.due
                        && (r.due - today).whole_days() <= i64::from(*days)
                })
                .count();
            Observed::plain(holds(soon > 0, Some(soon as f64)))
        }
        Condition::ReportingLate { record } => {
            let today = local_date(now);
            let tree = agg.tree();
            let mut expected = false;
            let mut on_vscc = false;
            let mut late = 0usize;
            for &child in &tree.node(node).children {
                let reports = agg.own_reports(child, now);
                let theirs: Vec<_> = reports
                    .iter()
                    .filter(|r| record.is_none_or(|k| r.kind == k))
                    .collect();
                expected |= !theirs.is_empty();
                // A unit that never sent anything is not on vscc yet: its silence is no data
                // (the silence rule's), not a late report.
                if theirs.is_empty() || agg.last_received(child).is_none() {
                    continue;
                }
                on_vscc = true;
                late += usize::from(theirs.iter().any(|r| r.missing(today)));
            }
            if !expected {
                return None;
            }
            if !on_vscc {
                return Some(Observed::plain(Observation::NoData));
            }
            Observed::plain(holds(late > 0, Some(late as f64)))
        }
        Condition::Silence { days } => match agg.last_received(node) {
            None => Observed::plain(Observation::NoData),
            Some(last) => {
                let silent = (now_unix as i64 - last as i64).max(0) / 86_400;
                Observed {
                    observation: holds(silent >= *days as i64, Some(silent as f64)),
                    began: Some(i64::from(last) + i64::from(*days) * 86_400),
                    status: None,
                    case_age_days: None,
                }
            }
        },
    })
}

/// What a breach consists of, in a few words, for a summary's `{detail}`: for the reporting
/// rules, which reports (and, for a late one, which units), e.g. "在岗人数：莲花社区、景田社区等 5 个".
/// Empty for the other rules.
pub fn detail(rule: &Rule, agg: &Aggregates, node: NodeIdx, now: OffsetDateTime) -> String {
    let today = local_date(now);
    let label = |k: crate::domain::record::Kind| {
        agg.catalogue()
            .kinds
            .get(k.as_str())
            .map(|d| d.label_zh.clone())
            .unwrap_or_else(|| k.as_str().to_string())
    };
    match &rule.condition {
        Condition::ReportingDue { days, record } => agg
            .own_reports(node, now)
            .into_iter()
            .filter(|r| record.is_none_or(|k| r.kind == k))
            .filter(|r| {
                r.records == 0 && today <= r.due && (r.due - today).whole_days() <= i64::from(*days)
            })
            .map(|r| format!("{}（{} 截止）", label(r.kind), r.due))
            .collect::<Vec<_>>()
            .join("、"),
        Condition::ReportingLate { record } => {
            let tree = agg.tree();
            // Report → the units below that have not sent it.
            let mut late: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for &child in &tree.node(node).children {
                if agg.last_received(child).is_none() {
                    continue;
                }
                for r in agg.own_reports(child, now) {
                    if record.is_none_or(|k| r.kind == k) && r.missing(today) {
                        late.entry(label(r.kind))
                            .or_default()
                            .push(tree.node(child).name.clone());
                    }
                }
            }
            late.into_iter()
                .map(|(report, units)| {
                    let named = units.iter().take(3).cloned().collect::<Vec<_>>().join("、");
                    if units.len() > 3 {
                        format!("{report}：{named}等 {} 个", units.len())
                    } else {
                        format!("{report}：{named}")
                    }
                })
                .collect::<Vec<_>>()
                .join("；")
        }
        _ => String::new(),
    }
}
