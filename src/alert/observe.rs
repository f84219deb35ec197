//! What a rule observes at one node, read from the live figures: pure, no I/O.

use time::OffsetDateTime;

use super::lifecycle::Observation;
use super::rules::{Condition, Rule};
use crate::domain::metric::Status;
use crate::domain::org::NodeIdx;
use crate::domain::time::local_date;
use crate::live::Aggregates;

/// The observation of `rule` at `node`, or `None` when the rule does not apply there (a metric
/// not shown at the node's level).
pub fn observe(
    rule: &Rule,
    agg: &Aggregates,
    node: NodeIdx,
    now: OffsetDateTime,
) -> Option<Observation> {
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
            if rule.after.is_some_and(|d| local_date(now) <= d) {
                Observation::Clear(f.value)
            } else if f.status == Status::NoData {
                Observation::NoData
            } else if let Condition::Threshold { op, value, .. } = &rule.condition {
                holds(op.holds(f.value.unwrap_or(0.0), *value), f.value)
            } else {
                holds(matches!(f.status, Status::AtRisk | Status::Missed), f.value)
            }
        }
        Condition::Overdue { metric } => {
            let f = agg.figure(node, *metric, now)?;
            match f.status {
                Status::NoData => Observation::NoData,
                _ => {
                    let overdue = f.overdue.unwrap_or(0);
                    holds(overdue > 0, Some(overdue as f64))
                }
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
            holds(
                current >= *min_count && current as f64 >= factor * baseline.max(1.0 / windows),
                Some(current as f64),
            )
        }
        Condition::Cluster {
            record,
            window,
            radius_km,
            min_points,
        } => {
            let since = now_unix.saturating_sub(window.as_secs() as u32);
            let points = agg.located_since(node, *record, since);
            let largest = super::cluster::largest_cluster(&points, radius_km * 1000.0);
            holds(largest >= *min_points, Some(largest as f64))
        }
        Condition::Silence { days } => match agg.last_received(node) {
            None => Observation::NoData,
            Some(last) => {
                let silent = (now_unix as i64 - last as i64).max(0) / 86_400;
                holds(silent >= *days as i64, Some(silent as f64))
            }
        },
    })
}
