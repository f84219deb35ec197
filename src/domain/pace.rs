//! The required pace: for a figure not at its target, what a unit must still do — in what a
//! clerk acts on (people hired, classes held, meetings, stations brought up, cases closed) —
//! and how much of it per remaining week, month or quarter to get there by the deadline.
//!
//! How much is missing, per measure type (t: the target, num/den: the figure's parts):
//!
//! | type | still needed |
//! |---|---|
//! | `count`, `sum`, `distinct`, `latest`, `nodes` (a count) | ⌈t − num⌉ records, subjects, units of the field, or nodes |
//! | `nodes` (a share), `matched`, `reporting` | ⌈t·den − num⌉ nodes, subjects or reports: the denominator does not move when one more qualifies |
//! | `ratio` of two counts of one kind (hires that are veterans ÷ all hires) | ⌈(t·den − num) ÷ (1 − t)⌉: each record that counts in the numerator counts in the denominator too |
//! | `ratio`, other | ⌈t·den − num⌉ in the numerator's unit |
//! | `cases` judged on overdue | the overdue cases beyond the target (to close), and those turning overdue soon |
//! | `elapsed`, or a target that is a most on the value | none: fewer is better, there is nothing to add |
//!
//! The words come from the metric's file (`[pace] action_zh`, `unit_zh`), else from the kind
//! that moves the figure and the metric's unit.

use time::Date;

use super::catalogue::{Deadline, Judged, MetricDef};
use super::kinds::Kinds;
use super::measure::Measure;
use super::metric::{Figure, Status};
use super::time::Period;

/// How a metric file names what a clerk does to move its figure: `[pace]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaceWords {
    /// The act, as a sentence puts it after 还需: 招录退役军人, 召开报告会, 建档.
    #[serde(default)]
    pub action_zh: String,
    /// What it is counted in: 名, 次, 个街道, 件.
    #[serde(default)]
    pub unit_zh: String,
}

/// How much to do in each remaining period of one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerPeriod {
    /// `week`, `month` or `quarter`.
    pub every: &'static str,
    /// How many such periods remain (the current one included).
    pub left: i64,
    /// How much in each of them (rounded up).
    pub each: i64,
}

/// What a unit must still do for one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    /// How much is missing, in `unit_zh`.
    pub needed: i64,
    pub action_zh: String,
    pub unit_zh: String,
    /// The last day to do it by: the end of the current period, or the fixed deadline. None:
    /// now (a standing rule, or a deadline that has passed).
    pub by: Option<Date>,
    /// Days left until `by`, today included.
    pub days_left: Option<i64>,
    /// The fixed deadline has passed: it is late already.
    pub late: bool,
    pub per: Vec<PerPeriod>,
    /// Cases: open cases that turn overdue within `soon_days` days.
    pub soon: Option<i64>,
    pub soon_days: i64,
    /// The whole instruction, in Chinese.
    pub text_zh: String,
}

/// The window in which cases about to turn overdue are counted.
pub const SOON_DAYS: i64 = 5;

/// The pace of one figure on `today`; `None` when nothing needs doing (met, tracked, fewer is
/// better without a count to act on, or nothing to add). `due_soon`: for a cases metric, the
/// open cases turning overdue within [`SOON_DAYS`].
pub fn pace(
    def: &MetricDef,
    kinds: &Kinds,
    f: &Figure,
    today: Date,
    due_soon: Option<i64>,
) -> Option<Pace> {
    let target = def.target?;
    if matches!(f.status, Status::Met | Status::Tracked) && due_soon.unwrap_or(0) == 0 {
        return None;
    }
    let (action_zh, unit_zh) = words(def, kinds);
    if target.on == Judged::Overdue {
        let over = (f.overdue.unwrap_or(0) - target.value.floor() as i64).max(0);
        let soon = due_soon.unwrap_or(0);
        if over == 0 && soon == 0 {
            return None;
        }
        let mut text = Vec::new();
        if over > 0 {
            text.push(format!("{over} {unit_zh}已超期，需尽快{action_zh}"));
        }
        if soon > 0 {
            text.push(format!("{soon} {unit_zh}将在 {SOON_DAYS} 天内超期"));
        }
        return Some(Pace {
            needed: over,
            action_zh,
            unit_zh,
            by: None,
            days_left: None,
            late: over > 0,
            per: Vec::new(),
            soon: Some(soon),
            soon_days: SOON_DAYS,
            text_zh: text.join("；"),
        });
    }
    if target.at_most {
        return None;
    }
    if let Measure::Reporting(r) = &def.measure {
        if r.on_time {
            return late_reports(f, action_zh, unit_zh);
        }
    }
    let needed = missing(def, f, target.value)?;
    if needed <= 0 {
        return None;
    }
    let amount = format!("{action_zh} {needed} {unit_zh}");
    let (by, late, per, text_zh) = match target.deadline {
        Deadline::Standing => (None, false, Vec::new(), format!("还需{amount}才能达标")),
        Deadline::Fixed(d) if d < today => (
            None,
            true,
            Vec::new(),
            format!("还需{amount}（期限 {d} 已过，应尽快完成）"),
        ),
        Deadline::Fixed(d) => {
            let per = split(needed, today, d, &fixed_periods(today, d));
            let text = format!("{d} 前还需{amount}{}", per_text(&per, &unit_zh, today, d));
            (Some(d), false, per, text)
        }
        Deadline::Every(p) => {
            let (_, last) = p.bounds(today);
            let per = split(needed, today, last, &period_splits(p));
            let text = format!(
                "{}还需{amount}{}",
                this_period_zh(p),
                per_text(&per, &unit_zh, today, last)
            );
            (Some(last), false, per, text)
        }
    };
    Some(Pace {
        needed,
        action_zh,
        unit_zh,
        by,
        days_left: by.map(|d| (d - today).whole_days() + 1),
        late,
        per,
        soon: None,
        soon_days: SOON_DAYS,
        text_zh,
    })
}

/// The on-time rate cannot be raised by sending more this period (a late report stays late):
/// what can still be done is to send the reports still missing, late.
fn late_reports(f: &Figure, action_zh: String, unit_zh: String) -> Option<Pace> {
    let received: i64 = f
        .extras
        .iter()
        .filter(|(k, _)| k.starts_with("received_"))
        .map(|(_, v)| *v)
        .sum();
    let missing = f.den? - received;
    if missing <= 0 {
        return None;
    }
    Some(Pace {
        needed: missing,
        text_zh: format!(
            "{missing} {unit_zh}已逾期未报，应尽快补报（补报计入报送率，不计入按时率）"
        ),
        action_zh,
        unit_zh,
        by: None,
        days_left: None,
        late: true,
        per: Vec::new(),
        soon: None,
        soon_days: SOON_DAYS,
    })
}

/// How much is missing to reach `t` (see the module's table), in whole units.
fn missing(def: &MetricDef, f: &Figure, t: f64) -> Option<i64> {
    let num = f.num as f64;
    let up = |x: f64| (x - 1e-9).ceil() as i64;
    Some(match &def.measure {
        Measure::Ratio(r) => {
            let den = f.den? as f64;
            let one_kind = matches!((&*r.num, &*r.den),
                (Measure::Count(a), Measure::Count(b)) if a.kind == b.kind);
            if one_kind && t < 1.0 {
                up((t * den - num) / (1.0 - t))
            } else {
                up(t * den - num)
            }
        }
        Measure::Matched(_) | Measure::Reporting(_) => up(t * f.den? as f64 - num),
        Measure::Nodes(n) if n.share => up(t * f.den? as f64 - num),
        Measure::Count(_)
        | Measure::Sum(_)
        | Measure::Distinct(_)
        | Measure::Latest(_)
        | Measure::Nodes(_) => up(t - num),
        Measure::Cases(_) | Measure::Elapsed(_) => return None,
    })
}

/// The file's words, else the kind that moves the figure and the metric's unit.
fn words(def: &MetricDef, kinds: &Kinds) -> (String, String) {
    let given = def.pace.clone().unwrap_or_default();
    let mover = match &def.measure {
        Measure::Ratio(r) => r.num.kinds().first().copied(),
        Measure::Matched(m) => Some(m.with),
        other => other.kinds().first().copied(),
    };
    let label = mover
        .and_then(|k| kinds.get(k.as_str()))
        .map(|k| k.label_zh.clone())
        .unwrap_or_default();
    let action = if given.action_zh.is_empty() {
        match &def.measure {
            Measure::Cases(_) => "办结".to_string(),
            Measure::Nodes(_) => format!("达到“{}”要求", def.label_zh),
            _ => format!("新增“{label}”"),
        }
    } else {
        given.action_zh
    };
    let unit = if !given.unit_zh.is_empty() {
        given.unit_zh
    } else if let Measure::Nodes(n) = &def.measure {
        let levels: Vec<&str> = n.levels.iter().map(|l| l.label_zh()).collect();
        format!("个{}", levels.join("或"))
    } else if !def.unit_zh.is_empty() {
        def.unit_zh.clone()
    } else {
        "条".to_string()
    };
    (action, unit)
}

fn this_period_zh(p: Period) -> &'static str {
    match p {
        Period::Year => "本年度",
        Period::Quarter => "本季度",
        Period::Month => "本月",
        Period::All => "",
    }
}

/// The lengths a period's remainder is split into: a year by quarter, month and week, a
/// quarter by month and week, a month by week (the first that says something is shown).
fn period_splits(p: Period) -> Vec<&'static str> {
    match p {
        Period::Year => vec!["quarter", "month", "week"],
        Period::Quarter => vec!["month", "week"],
        Period::Month => vec!["week"],
        Period::All => Vec::new(),
    }
}

/// A fixed deadline's remainder: by quarter beyond half a year, by month beyond a month, by
/// week within three months.
fn fixed_periods(today: Date, by: Date) -> Vec<&'static str> {
    let days = (by - today).whole_days() + 1;
    let mut out = Vec::new();
    if days > 183 {
        out.push("quarter");
    }
    if days > 31 {
        out.push("month");
    }
    if days <= 92 {
        out.push("week");
    }
    out
}

/// Calendar periods of each length from `today`'s to `by`'s, both included.
fn periods_left(every: &str, today: Date, by: Date) -> i64 {
    let month_no = |d: Date| d.year() as i64 * 12 + d.month() as i64 - 1;
    match every {
        "month" => month_no(by) - month_no(today) + 1,
        "quarter" => month_no(by) / 3 - month_no(today) / 3 + 1,
        _ => ((by - today).whole_days() + 1 + 6) / 7,
    }
}

/// Splits `needed` over the remaining periods. A split into one period says nothing new, and
/// one into more periods than there is to do ("1 a week" for 1 in 4 weeks) says something
/// false: both are left out.
fn split(needed: i64, today: Date, by: Date, lengths: &[&'static str]) -> Vec<PerPeriod> {
    lengths
        .iter()
        .map(|&every| {
            let left = periods_left(every, today, by).max(1);
            PerPeriod {
                every,
                left,
                each: (needed + left - 1) / left,
            }
        })
        .filter(|p| p.left > 1 && needed >= p.left)
        .collect()
}

fn per_text(per: &[PerPeriod], unit: &str, today: Date, by: Date) -> String {
    let days = (by - today).whole_days() + 1;
    let mut parts = vec![format!("剩 {days} 天")];
    if let Some(p) = per.first() {
        let every = match p.every {
            "quarter" => "每季度",
            "month" => "每月",
            _ => "每周",
        };
        parts.push(format!("{every}约 {} {unit}", p.each));
    }
    format!("（{}）", parts.join("，"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalogue::Catalogue;
    use crate::domain::metric::{judge, Reading};
    use time::macros::{date, datetime};

    fn shipped(name: &str) -> (MetricDef, Catalogue) {
        let c = Catalogue::shipped();
        let id = c.parse_name(name).unwrap();
        (c.get(id).unwrap().clone(), c)
    }

    fn figure(def: &MetricDef, r: Reading) -> Figure {
        judge(def, r, datetime!(2026-11-07 12:00 +08:00), &[])
    }

    #[test]
    fn a_share_of_hires_needs_hires_that_count_on_both_sides() {
        let (def, c) = shipped("veteran_hire_share");
        // 2 veterans of 10 hires: (2 + x) / (10 + x) ≥ 1/3 → x ≥ 2.
        let f = figure(
            &def,
            Reading {
                num: 2,
                den: Some(10),
                has_data: true,
                ..Default::default()
            },
        );
        let p = pace(&def, &c.kinds, &f, date!(2026 - 11 - 07), None).unwrap();
        assert_eq!(p.needed, 2);
        assert!(p.text_zh.contains('2'), "{}", p.text_zh);
        assert_eq!(p.by, None, "a standing rule: now");
        // At the target: nothing to do.
        let met = figure(
            &def,
            Reading {
                num: 4,
                den: Some(12),
                has_data: true,
                ..Default::default()
            },
        );
        assert_eq!(
            pace(&def, &c.kinds, &met, date!(2026 - 11 - 07), None),
            None
        );
    }

    #[test]
    fn a_quarterly_count_with_nothing_reported_needs_one_this_quarter() {
        let (def, c) = shipped("report_hearings");
        let f = figure(&def, Reading::default());
        let p = pace(&def, &c.kinds, &f, date!(2026 - 11 - 07), None).unwrap();
        assert_eq!(p.needed, 1);
        assert_eq!(p.by, Some(date!(2026 - 12 - 31)));
        assert_eq!(p.days_left, Some(55));
        assert!(p.text_zh.starts_with("本季度还需"), "{}", p.text_zh);
        assert!(p.text_zh.contains("剩 55 天"), "{}", p.text_zh);
        // One hearing in two months: no "1 a month", which would say two.
        assert!(p.per.is_empty(), "{:?}", p.per);
        assert!(!p.text_zh.contains('每'), "{}", p.text_zh);
    }

    #[test]
    fn a_yearly_target_splits_what_is_left_over_the_remaining_quarters_and_months() {
        // 10 of 100 staff trained by 10 March: 90 to go over 4 quarters, 10 months.
        let (def, c) = shipped("training_coverage");
        let f = judge(
            &def,
            Reading {
                num: 10,
                den: Some(100),
                has_data: true,
                ..Default::default()
            },
            datetime!(2026-03-10 12:00 +08:00),
            &[],
        );
        let p = pace(&def, &c.kinds, &f, date!(2026 - 03 - 10), None).unwrap();
        assert_eq!(p.needed, 90);
        let at = |every| {
            p.per
                .iter()
                .find(|x| x.every == every)
                .map(|x| (x.left, x.each))
        };
        assert_eq!(at("quarter"), Some((4, 23)));
        assert_eq!(at("month"), Some((10, 9)));
        assert!(p.text_zh.contains("每季度约 23 人"), "{}", p.text_zh);
        // Two classes in ten months: no per-month figure.
        let (def, c) = shipped("training_classes");
        let f = judge(
            &def,
            Reading {
                num: 0,
                has_data: true,
                ..Default::default()
            },
            datetime!(2026-03-10 12:00 +08:00),
            &[],
        );
        let p = pace(&def, &c.kinds, &f, date!(2026 - 03 - 10), None).unwrap();
        assert_eq!((p.needed, p.per.len()), (2, 0));
        // In December a year's remainder is split by week.
        let (cov, c2) = shipped("training_coverage");
        let g = judge(
            &cov,
            Reading {
                num: 22,
                den: Some(100),
                has_data: true,
                ..Default::default()
            },
            datetime!(2026-12-08 12:00 +08:00),
            &[],
        );
        let p = pace(&cov, &c2.kinds, &g, date!(2026 - 12 - 08), None).unwrap();
        assert_eq!(p.per.first().map(|x| (x.every, x.left)), Some(("week", 4)));
    }

    #[test]
    fn on_time_reporting_asks_only_for_the_reports_still_missing() {
        let (def, c) = shipped("reporting_on_time");
        let mut extras = std::collections::BTreeMap::new();
        extras.insert("received_staff.headcount".to_string(), 8);
        extras.insert("received_meeting.report_heard".to_string(), 1);
        // 10 expected, 9 received, 6 of them on time: only the missing one can still be sent.
        let f = figure(
            &def,
            Reading {
                num: 6,
                den: Some(10),
                has_data: true,
                extras,
                ..Default::default()
            },
        );
        let p = pace(&def, &c.kinds, &f, date!(2026 - 11 - 07), None).unwrap();
        assert_eq!(p.needed, 1);
        assert!(p.text_zh.contains("逾期未报"), "{}", p.text_zh);
    }

    #[test]
    fn a_share_of_nodes_counts_the_nodes_still_to_bring_up() {
        let (def, c) = shipped("five_haves");
        // 7 of 10 stations have all five; 100 % needs 3 more, and the deadline has passed.
        let f = figure(
            &def,
            Reading {
                num: 7,
                den: Some(10),
                has_data: true,
                ..Default::default()
            },
        );
        let p = pace(&def, &c.kinds, &f, date!(2026 - 11 - 07), None).unwrap();
        assert_eq!(p.needed, 3);
        assert!(p.late);
        assert!(p.text_zh.contains("已过"), "{}", p.text_zh);
    }

    #[test]
    fn overdue_cases_are_to_close_and_cases_about_to_turn_overdue_are_named() {
        let (def, c) = shipped("open_appeals");
        let r = |overdue| Reading {
            num: 9,
            has_data: true,
            overdue: Some(overdue),
            ..Default::default()
        };
        let p = pace(
            &def,
            &c.kinds,
            &figure(&def, r(2)),
            date!(2026 - 11 - 07),
            Some(3),
        )
        .unwrap();
        assert_eq!((p.needed, p.soon), (2, Some(3)));
        assert!(p.text_zh.contains("5 天内超期"), "{}", p.text_zh);
        // None overdue yet, some about to be: still something to do.
        let p = pace(
            &def,
            &c.kinds,
            &figure(&def, r(0)),
            date!(2026 - 11 - 07),
            Some(1),
        )
        .unwrap();
        assert_eq!((p.needed, p.soon), (0, Some(1)));
        assert_eq!(
            pace(
                &def,
                &c.kinds,
                &figure(&def, r(0)),
                date!(2026 - 11 - 07),
                Some(0)
            ),
            None
        );
    }

    #[test]
    fn tracked_metrics_and_waiting_times_have_no_pace() {
        let (def, c) = shipped("visits");
        let f = figure(
            &def,
            Reading {
                num: 3,
                has_data: true,
                ..Default::default()
            },
        );
        assert_eq!(pace(&def, &c.kinds, &f, date!(2026 - 11 - 07), None), None);
    }
}
