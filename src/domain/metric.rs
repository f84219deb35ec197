//! The metric catalogue (DOMAIN.md), the plan's targets, and the rules that judge a figure.
//!
//! Status rules, for a figure with numerator/denominator (or a count) at time `now`:
//! - `no_data`: nothing was reported (a ratio's denominator is 0, or no record of the kinds
//!   that feed it exists in the subtree). No data is never zero.
//! - one-off deadline D (e.g. staffing_rate ≥ 95 % by 2020-12-31): `met` when the value reaches
//!   the target; otherwise `missed` after D; before D, `on_track` or `at_risk` by projection:
//!   with daily samples covering ≥ 7 of the last 30 days, the value's linear trend over them is
//!   extended to D; without enough samples, the value is compared with a straight glide path
//!   from 0 at the plan's start (2020-01-01) to the target at D.
//! - yearly (training_classes ≥ 2, training_coverage 100 % by 31 Dec): judged on the current
//!   calendar year (Asia/Shanghai): `met` when reached, else `on_track` when the pace so far,
//!   extended to 31 Dec, reaches the target, else `at_risk`.
//! - standing rules (veteran_hire_share ≥ 1/3, no appeal overdue): `met` or `missed` now.

use time::{Date, Month, OffsetDateTime};

use super::org::Level;
use super::time::local_date;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricId {
    StaffingRate,
    VeteranHireShare,
    TrainingClasses,
    TrainingCoverage,
    DistrictStarDemos,
    StreetStarDemoShare,
    FiveStarShare,
    OpenAppeals,
    ArchiveCoverage,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deadline {
    /// Must be reached by this date and stay reached.
    Fixed(Date),
    /// Must be reached within every calendar year.
    Yearly,
    /// Must hold at all times.
    Standing,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub value: f64,
    pub deadline: Deadline,
    /// Open appeals: lower is better (the target is 0 overdue).
    pub at_most: bool,
}

const fn date(y: i32, m: Month, d: u8) -> Date {
    match Date::from_calendar_date(y, m, d) {
        Ok(d) => d,
        Err(_) => panic!("valid date"),
    }
}

pub const PLAN_START: Date = date(2020, Month::January, 1);

impl MetricId {
    pub const ALL: [MetricId; 9] = [
        MetricId::StaffingRate,
        MetricId::VeteranHireShare,
        MetricId::TrainingClasses,
        MetricId::TrainingCoverage,
        MetricId::DistrictStarDemos,
        MetricId::StreetStarDemoShare,
        MetricId::FiveStarShare,
        MetricId::OpenAppeals,
        MetricId::ArchiveCoverage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricId::StaffingRate => "staffing_rate",
            MetricId::VeteranHireShare => "veteran_hire_share",
            MetricId::TrainingClasses => "training_classes",
            MetricId::TrainingCoverage => "training_coverage",
            MetricId::DistrictStarDemos => "district_star_demos",
            MetricId::StreetStarDemoShare => "street_star_demo_share",
            MetricId::FiveStarShare => "five_star_share",
            MetricId::OpenAppeals => "open_appeals",
            MetricId::ArchiveCoverage => "archive_coverage",
        }
    }

    pub fn parse(s: &str) -> Option<MetricId> {
        MetricId::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            MetricId::StaffingRate => "编制人员到位率",
            MetricId::VeteranHireShare => "退役军人招录聘用比例",
            MetricId::TrainingClasses => "业务培训班",
            MetricId::TrainingCoverage => "年度轮训覆盖率",
            MetricId::DistrictStarDemos => "区级星级示范点",
            MetricId::StreetStarDemoShare => "街道星级示范点比例",
            MetricId::FiveStarShare => "五星级比例",
            MetricId::OpenAppeals => "信访",
            MetricId::ArchiveCoverage => "一人一档",
        }
    }

    /// Whether the figure is a ratio (num ÷ den) or a count.
    pub fn is_ratio(self) -> bool {
        !matches!(
            self,
            MetricId::TrainingClasses | MetricId::DistrictStarDemos | MetricId::OpenAppeals
        )
    }

    pub fn target(self) -> Target {
        use Deadline::*;
        let (value, deadline, at_most) = match self {
            MetricId::StaffingRate => (0.95, Fixed(date(2020, Month::December, 31)), false),
            MetricId::VeteranHireShare => (1.0 / 3.0, Standing, false),
            MetricId::TrainingClasses => (2.0, Yearly, false),
            MetricId::TrainingCoverage => (1.0, Yearly, false),
            MetricId::DistrictStarDemos => (10.0, Fixed(date(2020, Month::December, 31)), false),
            MetricId::StreetStarDemoShare => (0.6, Fixed(date(2020, Month::December, 31)), false),
            MetricId::FiveStarShare => (0.8, Fixed(date(2022, Month::December, 31)), false),
            MetricId::OpenAppeals => (0.0, Standing, true),
            MetricId::ArchiveCoverage => (1.0, Fixed(date(2022, Month::December, 31)), false),
        };
        Target {
            value,
            deadline,
            at_most,
        }
    }

    /// The org levels whose nodes carry this metric.
    pub fn applies_to(self, level: Level) -> bool {
        use Level::*;
        match self {
            MetricId::StaffingRate | MetricId::TrainingClasses => matches!(level, City | District),
            MetricId::DistrictStarDemos => level == City,
            MetricId::StreetStarDemoShare => matches!(level, City | District),
            MetricId::FiveStarShare => matches!(level, City | District | Street),
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Met,
    OnTrack,
    AtRisk,
    Missed,
    NoData,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::OnTrack => "on_track",
            Status::AtRisk => "at_risk",
            Status::Missed => "missed",
            Status::NoData => "no_data",
        }
    }
}

/// One metric's figure at one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub value: Option<f64>,
    pub num: i64,
    /// Ratios only.
    pub den: Option<i64>,
    pub target: f64,
    /// The deadline, or the last day of the current period.
    pub due: Option<String>,
    pub status: Status,
    /// open_appeals only: appeals past a deadline (either kind).
    pub overdue: Option<i64>,
    /// open_appeals only: received but not accepted within the acceptance deadline.
    pub overdue_accept: Option<i64>,
    /// open_appeals only: not closed within the resolution deadline.
    pub overdue_resolve: Option<i64>,
    /// open_appeals only: age in days of the oldest open appeal.
    pub oldest_days: Option<i64>,
}

/// A (day, value) sample for trend projection; day = days since the Unix epoch.
pub type Sample = (i64, f64);

/// The raw inputs of a figure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub num: i64,
    /// For ratios; `None` for counts.
    pub den: Option<i64>,
    /// Whether anything feeding the figure was ever reported in the subtree.
    pub has_data: bool,
    /// open_appeals: overdue count, judged against the target instead of the value.
    pub overdue: Option<i64>,
}

fn year_fraction_elapsed(today: Date) -> f64 {
    let days_in_year = if time::util::is_leap_year(today.year()) {
        366.0
    } else {
        365.0
    };
    (today.ordinal() as f64 / days_in_year).clamp(1.0 / days_in_year, 1.0)
}

/// Judges a reading against the metric's target (see the module docs for the rules).
pub fn judge(metric: MetricId, r: Reading, now: OffsetDateTime, history: &[Sample]) -> Figure {
    let target = metric.target();
    let today = local_date(now);
    let value = match r.den {
        Some(0) => None,
        Some(den) => Some(r.num as f64 / den as f64),
        None => r.has_data.then_some(r.num as f64),
    };
    let due = match target.deadline {
        Deadline::Fixed(d) => Some(d),
        Deadline::Yearly => Date::from_calendar_date(today.year(), Month::December, 31).ok(),
        Deadline::Standing => None,
    };
    let status = match value {
        _ if !r.has_data => Status::NoData,
        None => Status::NoData,
        Some(v) => {
            let judged = if target.at_most {
                r.overdue.unwrap_or(0) as f64
            } else {
                v
            };
            let reached = if target.at_most {
                judged <= target.value
            } else {
                judged >= target.value - 1e-9
            };
            match target.deadline {
                _ if reached => Status::Met,
                Deadline::Standing => Status::Missed,
                Deadline::Yearly => {
                    if v / year_fraction_elapsed(today) >= target.value {
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
        value: value.map(|v| (v * 1e6).round() / 1e6),
        num: r.num,
        den: r.den,
        target: (target.value * 1e6).round() / 1e6,
        due: due.map(|d| d.to_string()),
        status,
        overdue: r.overdue,
        overdue_accept: None,
        overdue_resolve: None,
        oldest_days: None,
    }
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
    use time::macros::datetime;

    fn ratio(num: i64, den: i64) -> Reading {
        Reading {
            num,
            den: Some(den),
            has_data: den > 0,
            overdue: None,
        }
    }

    #[test]
    fn each_status_on_hand_built_readings() {
        let after = datetime!(2021-06-01 12:00 +08:00);
        let before = datetime!(2020-06-01 12:00 +08:00);
        let s = MetricId::StaffingRate;
        assert_eq!(judge(s, ratio(96, 100), after, &[]).status, Status::Met);
        assert_eq!(judge(s, ratio(90, 100), after, &[]).status, Status::Missed);
        assert_eq!(judge(s, ratio(0, 0), after, &[]).status, Status::NoData);
        assert_eq!(judge(s, ratio(0, 0), after, &[]).value, None);
        // Before the deadline: a rising trend reaches 95 % by 2020-12-31, a flat one does not.
        let today = day_number(local_date(before));
        let rising = [(today - 20, 0.80), (today - 10, 0.85)];
        let flat = [(today - 20, 0.90), (today - 10, 0.90)];
        assert_eq!(
            judge(s, ratio(90, 100), before, &rising).status,
            Status::OnTrack
        );
        assert_eq!(
            judge(s, ratio(90, 100), before, &flat).status,
            Status::AtRisk
        );
    }

    #[test]
    fn yearly_targets_are_judged_on_pace() {
        let march = datetime!(2021-03-01 12:00 +08:00);
        let classes = |n| Reading {
            num: n,
            den: None,
            has_data: true,
            overdue: None,
        };
        assert_eq!(
            judge(MetricId::TrainingClasses, classes(2), march, &[]).status,
            Status::Met
        );
        assert_eq!(
            judge(MetricId::TrainingClasses, classes(1), march, &[]).status,
            Status::OnTrack
        );
        let december = datetime!(2021-12-20 12:00 +08:00);
        assert_eq!(
            judge(MetricId::TrainingClasses, classes(1), december, &[]).status,
            Status::AtRisk
        );
        assert_eq!(
            judge(MetricId::TrainingClasses, classes(0), december, &[])
                .due
                .as_deref(),
            Some("2021-12-31")
        );
    }

    #[test]
    fn an_overdue_appeal_misses_the_standing_target() {
        let now = datetime!(2021-03-01 12:00 +08:00);
        let r = |open, overdue| Reading {
            num: open,
            den: None,
            has_data: true,
            overdue: Some(overdue),
        };
        assert_eq!(
            judge(MetricId::OpenAppeals, r(5, 0), now, &[]).status,
            Status::Met
        );
        assert_eq!(
            judge(MetricId::OpenAppeals, r(5, 1), now, &[]).status,
            Status::Missed
        );
    }
}
