//! Judging a figure against its metric's target (the metrics themselves are definitions:
//! [`super::catalogue`]).
//!
//! Status rules, for a figure with numerator/denominator (or a count) at time `now`:
//! - `no_data`: nothing was reported (a ratio's denominator is 0, or no record of the kinds that
//!   feed it exists; see each measure type). No data is never zero.
//! - one-off deadline D (e.g. staffing_rate ≥ 95 % by 2020-12-31): `met` when the value reaches
//!   the target; otherwise `missed` after D; before D, `on_track` or `at_risk` by projection:
//!   with daily samples covering ≥ 7 of the last 30 days, the value's linear trend over them is
//!   extended to D; without enough samples, the value is compared with a straight glide path
//!   from 0 at the plan's start (2020-01-01) to the target at D.
//! - every period (year, quarter, month; e.g. training_classes ≥ 2 a year): judged on the current
//!   period of the Asia/Shanghai calendar: `met` when reached, else `on_track` when the pace so
//!   far, extended to the period's end, reaches the target, else `at_risk`; `due` is the
//!   period's last day.
//! - standing rules (veteran_hire_share ≥ 1/3, no appeal overdue): `met` or `missed` now.
//! - tracked metrics (no target): `tracked` when there is data — never `on_track`, which judges
//!   progress towards a target.

use std::collections::BTreeMap;

use time::{Date, Month, OffsetDateTime};

use super::catalogue::{Deadline, Judged, MetricDef, Period};
use super::time::local_date;

pub use super::catalogue::MetricId;

const fn date(y: i32, m: Month, d: u8) -> Date {
    match Date::from_calendar_date(y, m, d) {
        Ok(d) => d,
        Err(_) => panic!("valid date"),
    }
}

pub const PLAN_START: Date = date(2020, Month::January, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Met,
    OnTrack,
    AtRisk,
    Missed,
    NoData,
    /// A metric without a target that has data: followed, judged against nothing.
    Tracked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::OnTrack => "on_track",
            Status::AtRisk => "at_risk",
            Status::Missed => "missed",
            Status::NoData => "no_data",
            Status::Tracked => "tracked",
        }
    }
}

/// One metric's figure at one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// `num / den` (or the count), unrounded; `None`: no data.
    pub value: Option<f64>,
    pub num: i64,
    /// Ratios only.
    pub den: Option<i64>,
    /// None for a tracked metric.
    pub target: Option<f64>,
    /// The deadline, or the last day of the current period.
    pub due: Option<String>,
    pub status: Status,
    /// Cases only: cases past a deadline (either kind, counted once).
    pub overdue: Option<i64>,
    /// Cases only: cases past each named deadline, as `overdue_<name>`.
    pub extras: BTreeMap<String, i64>,
    /// Cases only: age in days of the oldest open case.
    pub oldest_days: Option<i64>,
}

/// A (day, value) sample for trend projection; day = days since the Unix epoch.
pub type Sample = (i64, f64);

/// The raw inputs of a figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub num: i64,
    /// For ratios; `None` for counts.
    pub den: Option<i64>,
    /// Whether anything feeding the figure was ever reported (see each measure type).
    pub has_data: bool,
    /// Cases: the overdue count, judged against the target instead of the value.
    pub overdue: Option<i64>,
    pub extras: BTreeMap<String, i64>,
    pub oldest_days: Option<i64>,
}

/// How much of the period holding `today` has passed (at least one day's worth).
fn fraction_elapsed(period: Period, today: Date) -> f64 {
    let (first, last) = period.bounds(today);
    let total = ((last - first).whole_days() + 1) as f64;
    let done = ((today - first).whole_days() + 1) as f64;
    (done / total).clamp(1.0 / total, 1.0)
}

/// Judges a reading against the metric's target (see the module docs for the rules).
pub fn judge(def: &MetricDef, r: Reading, now: OffsetDateTime, history: &[Sample]) -> Figure {
    let today = local_date(now);
    let value = match r.den {
        Some(0) => None,
        Some(den) => Some(r.num as f64 / den as f64),
        None => r.has_data.then_some(r.num as f64),
    };
    let due = def.target.and_then(|t| match t.deadline {
        Deadline::Fixed(d) => Some(d),
        Deadline::Every(p) => Some(p.bounds(today).1),
        Deadline::Standing => None,
    });
    let status = match (value, def.target) {
        _ if !r.has_data => Status::NoData,
        (None, _) => Status::NoData,
        (Some(_), None) => Status::Tracked,
        (Some(v), Some(target)) => {
            let judged = match target.on {
                Judged::Overdue => r.overdue.unwrap_or(0) as f64,
                Judged::Value => v,
            };
            let reached = if target.at_most {
                judged <= target.value
            } else {
                judged >= target.value - 1e-9
            };
            match target.deadline {
                _ if reached => Status::Met,
                Deadline::Standing => Status::Missed,
                Deadline::Every(p) => {
                    if v / fraction_elapsed(p, today) >= target.value {
                        Status::OnTrack
                    } else {
                        Status::AtRisk
                    }
                }
                Deadline::Fixed(d) if today > d => Status::Missed,
                Deadline::Fixed(d) => {
                    if project(v, history, today, d) >= target.value - 1e-9 {
                        Status::OnTrack
                    } else {
                        Status::AtRisk
                    }
                }
            }
        }
    };
    Figure {
        value,
        num: r.num,
        den: r.den,
        target: def.target.map(|t| t.value),
        due: due.map(|d| d.to_string()),
        status,
        overdue: r.overdue,
        extras: r.extras,
        oldest_days: r.oldest_days,
    }
}

/// How a one-off target (a fixed deadline) came out at one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineOutcome {
    /// The deadline is still ahead.
    Pending,
    /// Reached on the deadline's day, and still held.
    MetOnTime,
    /// Reached on the deadline's day, not held since (a one-off target must stay reached).
    Slipped,
    /// Not reached on the deadline's day, reached since.
    MetLate,
    /// Reached now, but no figure of the deadline's day is kept to say when.
    MetUndated,
    /// Not reached, and the deadline has passed.
    Missed,
    NoData,
}

impl DeadlineOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineOutcome::Pending => "pending",
            DeadlineOutcome::MetOnTime => "met_on_time",
            DeadlineOutcome::Slipped => "slipped",
            DeadlineOutcome::MetLate => "met_late",
            DeadlineOutcome::MetUndated => "met_undated",
            DeadlineOutcome::Missed => "missed",
            DeadlineOutcome::NoData => "no_data",
        }
    }
}

/// Whether a value (or, for cases, an overdue count) reaches a target.
fn reaches(
    target: super::catalogue::Target,
    value: Option<f64>,
    overdue: Option<i64>,
) -> Option<bool> {
    let judged = match target.on {
        Judged::Overdue => overdue.map(|o| o as f64).or(value.map(|_| 0.0))?,
        Judged::Value => value?,
    };
    Some(if target.at_most {
        judged <= target.value
    } else {
        judged >= target.value - 1e-9
    })
}

/// How a metric's one-off target came out at a node: `now` is today's figure, `on_deadline`
/// the figure the snapshot of the deadline's day kept (value, overdue), if one is kept. `None`
/// for a metric without a fixed deadline.
pub fn deadline_outcome(
    def: &MetricDef,
    now: &Figure,
    on_deadline: Option<(Option<f64>, Option<i64>)>,
    today: Date,
) -> Option<DeadlineOutcome> {
    let target = def.target?;
    let Deadline::Fixed(due) = target.deadline else {
        return None;
    };
    if today <= due {
        return Some(DeadlineOutcome::Pending);
    }
    let then = on_deadline.and_then(|(v, o)| reaches(target, v, o));
    let since = reaches(target, now.value, now.overdue);
    Some(match (then, since) {
        (Some(true), Some(false)) => DeadlineOutcome::Slipped,
        (Some(true), _) => DeadlineOutcome::MetOnTime,
        (Some(false), Some(true)) => DeadlineOutcome::MetLate,
        (None, Some(true)) => DeadlineOutcome::MetUndated,
        (_, Some(false)) => DeadlineOutcome::Missed,
        (Some(false), None) => DeadlineOutcome::Missed,
        (None, None) => DeadlineOutcome::NoData,
    })
}

/// How far a figure is from its target, in the metric's unit: above 0 it falls short (or, for a
/// most, exceeds it) by that much; 0 or below, it is reached. `None` for a tracked metric or
/// no data. A case metric is judged on its overdue count, so that is its distance.
pub fn shortfall(def: &MetricDef, f: &Figure) -> Option<f64> {
    let target = def.target?;
    let value = f.value?;
    Some(match (target.on, target.at_most) {
        (Judged::Overdue, _) => f.overdue.unwrap_or(0) as f64 - target.value,
        (Judged::Value, true) => value - target.value,
        (Judged::Value, false) => target.value - value,
    })
}

fn day_number(d: Date) -> i64 {
    (d - date(1970, Month::January, 1)).whole_days()
}

/// The value projected to `due`: the recent trend when there is one, else the glide path.
pub fn project(value: f64, history: &[Sample], today: Date, due: Date) -> f64 {
    let t = day_number(today);
    let days_left = (day_number(due) - t) as f64;
    let recent: Vec<&Sample> = history
        .iter()
        .filter(|(d, _)| t - d <= 30 && *d < t)
        .collect();
    if let (Some(first), true) = (recent.iter().min_by_key(|s| s.0), recent.len() >= 2) {
        let span = (t - first.0) as f64;
        if span >= 7.0 {
            let slope = (value - first.1) / span;
            return value + slope * days_left;
        }
    }
    // Glide path: the share of the way from plan start to deadline already covered.
    let total = (day_number(due) - day_number(PLAN_START)).max(1) as f64;
    let elapsed = (t - day_number(PLAN_START)).max(1) as f64;
    value * total / elapsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalogue::Catalogue;
    use time::macros::datetime;

    fn metric(name: &str) -> MetricDef {
        let shipped = Catalogue::shipped();
        let id = shipped.parse_name(name).unwrap();
        shipped.get(id).unwrap().clone()
    }

    fn ratio(num: i64, den: i64) -> Reading {
        Reading {
            num,
            den: Some(den),
            has_data: den > 0,
            ..Default::default()
        }
    }

    #[test]
    fn each_status_on_hand_built_readings() {
        let after = datetime!(2021-06-01 12:00 +08:00);
        let before = datetime!(2020-06-01 12:00 +08:00);
        let s = metric("staffing_rate");
        assert_eq!(judge(&s, ratio(96, 100), after, &[]).status, Status::Met);
        assert_eq!(judge(&s, ratio(90, 100), after, &[]).status, Status::Missed);
        assert_eq!(judge(&s, ratio(0, 0), after, &[]).status, Status::NoData);
        assert_eq!(judge(&s, ratio(0, 0), after, &[]).value, None);
        // The value is num / den unrounded (screens round).
        assert_eq!(judge(&s, ratio(2, 3), after, &[]).value, Some(2.0 / 3.0));
        // Before the deadline: a rising trend reaches 95 % by 2020-12-31, a flat one does not.
        let today = day_number(local_date(before));
        let rising = [(today - 20, 0.80), (today - 10, 0.85)];
        let flat = [(today - 20, 0.90), (today - 10, 0.90)];
        assert_eq!(
            judge(&s, ratio(90, 100), before, &rising).status,
            Status::OnTrack
        );
        assert_eq!(
            judge(&s, ratio(90, 100), before, &flat).status,
            Status::AtRisk
        );
    }

    #[test]
    fn shortfall_is_the_distance_to_the_target_in_the_metrics_unit() {
        let now = datetime!(2021-06-01 12:00 +08:00);
        let s = metric("staffing_rate");
        let short = shortfall(&s, &judge(&s, ratio(90, 100), now, &[])).unwrap();
        assert!((short - 0.05).abs() < 1e-9, "{short}");
        assert!(shortfall(&s, &judge(&s, ratio(100, 100), now, &[])).unwrap() < 0.0);
        // No data is no distance, not the whole target.
        assert_eq!(shortfall(&s, &judge(&s, ratio(0, 0), now, &[])), None);
        // Cases: judged on the overdue count, whatever the open count.
        let appeals = metric("open_appeals");
        let open = Reading {
            num: 12,
            has_data: true,
            overdue: Some(3),
            ..Default::default()
        };
        assert_eq!(
            shortfall(&appeals, &judge(&appeals, open, now, &[])),
            Some(3.0)
        );
    }

    #[test]
    fn yearly_targets_are_judged_on_pace() {
        let classes_def = metric("training_classes");
        let march = datetime!(2021-03-01 12:00 +08:00);
        let classes = |n| Reading {
            num: n,
            has_data: true,
            ..Default::default()
        };
        assert_eq!(
            judge(&classes_def, classes(2), march, &[]).status,
            Status::Met
        );
        assert_eq!(
            judge(&classes_def, classes(1), march, &[]).status,
            Status::OnTrack
        );
        let december = datetime!(2021-12-20 12:00 +08:00);
        assert_eq!(
            judge(&classes_def, classes(1), december, &[]).status,
            Status::AtRisk
        );
        assert_eq!(
            judge(&classes_def, classes(0), december, &[])
                .due
                .as_deref(),
            Some("2021-12-31")
        );
        // The last second of the year is still that year's period.
        let eve = datetime!(2021-12-31 23:59:59 +08:00);
        assert_eq!(
            judge(&classes_def, classes(0), eve, &[]).due.as_deref(),
            Some("2021-12-31")
        );
    }

    #[test]
    fn a_metric_without_a_target_is_tracked_never_on_track() {
        let now = datetime!(2021-03-01 12:00 +08:00);
        let untargeted: Vec<MetricDef> = Catalogue::shipped()
            .metrics
            .into_iter()
            .filter(|m| m.target.is_none())
            .collect();
        assert!(
            untargeted.len() >= 5,
            "the shipped catalogue tracks several metrics"
        );
        for def in untargeted {
            let with_data = Reading {
                num: 7,
                den: def.is_ratio().then_some(10),
                has_data: true,
                overdue: Some(3),
                ..Default::default()
            };
            let f = judge(&def, with_data, now, &[]);
            assert_eq!(f.status, Status::Tracked, "{}", def.name);
            assert_eq!(f.target, None, "{}", def.name);
            let without = judge(&def, Reading::default(), now, &[]);
            assert_eq!(without.status, Status::NoData, "{}", def.name);
        }
    }

    #[test]
    fn a_one_off_target_is_met_on_time_late_or_missed() {
        let s = metric("staffing_rate");
        let today = date(2021, Month::June, 1);
        let now = datetime!(2021-06-01 12:00 +08:00);
        let fig = |num, den| judge(&s, ratio(num, den), now, &[]);
        use DeadlineOutcome::*;
        let outcome = |f: &Figure, then| deadline_outcome(&s, f, then, today);
        assert_eq!(
            outcome(&fig(96, 100), Some((Some(0.97), None))),
            Some(MetOnTime)
        );
        assert_eq!(
            outcome(&fig(96, 100), Some((Some(0.90), None))),
            Some(MetLate)
        );
        assert_eq!(outcome(&fig(96, 100), None), Some(MetUndated));
        assert_eq!(
            outcome(&fig(90, 100), Some((Some(0.97), None))),
            Some(Slipped)
        );
        assert_eq!(
            outcome(&fig(90, 100), Some((Some(0.90), None))),
            Some(Missed)
        );
        assert_eq!(outcome(&fig(0, 0), None), Some(NoData));
        let before = date(2020, Month::June, 1);
        assert_eq!(
            deadline_outcome(&s, &fig(90, 100), None, before),
            Some(Pending)
        );
        assert_eq!(
            deadline_outcome(&metric("training_classes"), &fig(1, 1), None, today),
            None
        );
    }

    #[test]
    fn an_overdue_appeal_misses_the_standing_target() {
        let appeals = metric("open_appeals");
        let now = datetime!(2021-03-01 12:00 +08:00);
        let r = |open, overdue| Reading {
            num: open,
            has_data: true,
            overdue: Some(overdue),
            ..Default::default()
        };
        assert_eq!(judge(&appeals, r(5, 0), now, &[]).status, Status::Met);
        assert_eq!(judge(&appeals, r(5, 1), now, &[]).status, Status::Missed);
    }
}
