//! Alert rules as files (`dashboards/alerts/*.toml`): read as written, then parsed into a typed
//! [`Rule`] whose [`Condition`] carries exactly what its type needs, defaults applied — so
//! evaluation never reads an optional field or guesses a default.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use time::Date;

use crate::domain::catalogue::Catalogue;
use crate::domain::metric::MetricId;
use crate::domain::record::Kind;
use crate::domain::{Level, OrgTree};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!("unknown severity '{other}'")),
        }
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A comparison of a threshold rule: the condition holds when `value op target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    pub fn holds(self, value: f64, target: f64) -> bool {
        match self {
            Op::Lt => value < target,
            Op::Le => value <= target,
            Op::Gt => value > target,
            Op::Ge => value >= target,
        }
    }
}

/// What a rule watches, one variant per rule type.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The metric's value compared with `value` by `op`.
    Threshold {
        metric: MetricId,
        op: Op,
        value: f64,
    },
    /// The metric's status is `at_risk` or `missed`.
    AtRisk { metric: MetricId },
    /// Open cases of a `cases` metric past a deadline (`appeal_overdue`: open_appeals').
    Overdue { metric: MetricId },
    /// No record of any kind from the node's subtree for `days`.
    Silence { days: u32 },
    /// Records of `record` kind in the last `window` at least `factor` × the average of the
    /// `baseline_windows` windows before, and at least `min_count`.
    Spike {
        record: Kind,
        window: Duration,
        baseline_windows: u32,
        factor: f64,
        min_count: u64,
    },
    /// At least `min_points` located records of `record` kind within `radius_km` of each other
    /// in the last `window` (one alert per node).
    Cluster {
        record: Kind,
        window: Duration,
        radius_km: f64,
        min_points: usize,
    },
    /// The node's own scheduled reports (of `record`, or every scheduled kind) not yet received
    /// whose due day is at most `days` days ahead: the unit is warned before it is late.
    ReportingDue { days: u32, record: Option<Kind> },
    /// Units one level below the node with a scheduled report (of `record`, or any) past its
    /// due day and not received: the level above hears of it, once for all of them.
    ReportingLate { record: Option<Kind> },
}

impl Condition {
    /// The metric a figure-based condition reads.
    pub fn metric(&self) -> Option<MetricId> {
        match self {
            Condition::Threshold { metric, .. }
            | Condition::AtRisk { metric }
            | Condition::Overdue { metric } => Some(*metric),
            _ => None,
        }
    }
}

/// A step up in severity: once the breach is this large (the value the rule judges: overdue
/// cases, silent days …) or this old, the alert is at least `severity`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raise {
    /// The judged value is at least this (a group of a district: the sum of its alerts', for
    /// rules whose values add up, such as overdue cases).
    pub value_at_least: Option<f64>,
    /// The breach began at least this many days ago.
    pub days_at_least: Option<u32>,
    pub severity: Severity,
}

impl Raise {
    fn holds(&self, value: Option<f64>, breach_days: Option<i64>) -> bool {
        self.value_at_least
            .is_some_and(|v| value.is_some_and(|x| x >= v))
            || self
                .days_at_least
                .is_some_and(|d| breach_days.is_some_and(|x| x >= i64::from(d)))
    }
}

/// A rule, parsed: every field its type needs is there.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    /// Only evaluated after this date (e.g. a target's deadline).
    pub after: Option<Date>,
    /// Org code whose subtree the rule watches (default: the city).
    pub scope: Option<String>,
    /// Levels of the nodes evaluated.
    pub levels: Vec<Level>,
    /// How long the condition must hold before the alert fires.
    pub hold_for: Duration,
    pub severity: Severity,
    /// Severity steps above `severity` by the breach's size and age.
    pub raise: Vec<Raise>,
    /// What the rule's alerts are about, as its groups are titled (default: from the
    /// condition, e.g. "信访超期").
    pub title: Option<String>,
    /// Chinese text; `{node}`, `{value}`, `{target}` and `{status}` (有风险 / 未达标) are
    /// filled in.
    pub summary: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Rule {
    /// The severity of a breach of this size (`value`, as judged) that began `breach_days` ago.
    pub fn severity_for(&self, value: Option<f64>, breach_days: Option<i64>) -> Severity {
        self.raise
            .iter()
            .filter(|r| r.holds(value, breach_days))
            .map(|r| r.severity)
            .fold(self.severity, Severity::max)
    }

    /// Whether the rule watches a metric's status (at risk or missed): its groups are titled by
    /// the statuses they hold.
    pub fn watches_status(&self) -> bool {
        matches!(self.condition, Condition::AtRisk { .. })
    }

    /// Whether the rule watches scheduled reports (due soon, or late): what stands watch over
    /// the `reporting` metrics.
    pub fn watches_reports(&self) -> bool {
        matches!(
            self.condition,
            Condition::ReportingDue { .. } | Condition::ReportingLate { .. }
        )
    }

    /// Whether the values of several alerts of this rule add up to one figure (overdue cases,
    /// records in a spike) — then a group's size is their sum.
    pub fn values_add_up(&self) -> bool {
        matches!(
            self.condition,
            Condition::Overdue { .. }
                | Condition::Spike { .. }
                | Condition::ReportingDue { .. }
                | Condition::ReportingLate { .. }
        )
    }

    /// What the rule's alerts are about, in a few words: "信访超期", "编制人员到位率未达目标",
    /// "7 天以上未报送" — the title of its groups on the duty console and in the brief.
    pub fn title(&self, catalogue: &Catalogue) -> String {
        if let Some(title) = &self.title {
            return title.clone();
        }
        let label = |m| {
            catalogue
                .get(m)
                .map(|d| d.label_zh.clone())
                .unwrap_or_default()
        };
        let kind = |k: &Kind| {
            catalogue
                .kinds
                .get(k.as_str())
                .map(|d| d.label_zh.clone())
                .unwrap_or_else(|| k.as_str().to_string())
        };
        match &self.condition {
            Condition::Threshold { metric, .. } => format!("{}未达目标", label(*metric)),
            Condition::AtRisk { metric } => format!("{}未达标或有风险", label(*metric)),
            Condition::Overdue { metric } => format!("{}超期", label(*metric)),
            Condition::Silence { days } => format!("{days} 天以上未报送"),
            Condition::Spike { record, .. } => format!("{}激增", kind(record)),
            Condition::Cluster { record, .. } => format!("{}聚集", kind(record)),
            Condition::ReportingDue {
                record: Some(k), ..
            } => format!("{}即将到期未报", kind(k)),
            Condition::ReportingDue { record: None, .. } => "定期报表即将到期未报".into(),
            Condition::ReportingLate { record: Some(k) } => format!("下级逾期未报{}", kind(k)),
            Condition::ReportingLate { record: None } => "下级定期报表逾期未报".into(),
        }
    }
}

/// A rule as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    metric: Option<String>,
    op: Option<String>,
    value: Option<f64>,
    after: Option<String>,
    days: Option<u32>,
    record: Option<String>,
    window: Option<String>,
    baseline_windows: Option<u32>,
    factor: Option<f64>,
    min_count: Option<u64>,
    radius_km: Option<f64>,
    min_points: Option<usize>,
    scope: Option<String>,
    levels: Vec<Level>,
    #[serde(rename = "for")]
    for_: String,
    severity: Severity,
    #[serde(default)]
    raise: Vec<Raise>,
    title: Option<String>,
    summary: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleSpec>,
}

/// `90s`, `10m`, `1h`, `2d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

impl RuleSpec {
    /// The typed rule, or what is wrong with the spec (naming the rule).
    fn parse(self, tree: &OrgTree, catalogue: &Catalogue) -> Result<Rule, String> {
        let at = |what: &str| format!("rule {}: {what}", self.name);
        let hold_for = parse_duration(&self.for_)
            .ok_or_else(|| at(&format!("for = '{}' is not a duration like 10m", self.for_)))?;
        if let Some(scope) = &self.scope {
            if tree.get(scope).is_none() {
                return Err(at(&format!("unknown scope {scope}")));
            }
        }
        let after = match &self.after {
            None => None,
            Some(d) => {
                let fmt = time::macros::format_description!("[year]-[month]-[day]");
                Some(Date::parse(d, &fmt).map_err(|_| at("after must be YYYY-MM-DD"))?)
            }
        };
        if self.levels.is_empty() {
            return Err(at("levels must name at least one level"));
        }
        let metric = || {
            self.metric
                .as_deref()
                .and_then(|m| catalogue.parse_name(m))
                .ok_or_else(|| at(&format!("unknown metric {:?}", self.metric)))
        };
        let cases_metric = |name: Option<&str>| {
            let m = name
                .and_then(|m| catalogue.parse_name(m))
                .ok_or_else(|| at(&format!("unknown metric {name:?}")))?;
            if catalogue
                .get(m)
                .and_then(|d| d.measure.as_cases())
                .is_some()
            {
                Ok(m)
            } else {
                Err(at(&format!(
                    "{m} is not a cases metric (it has no deadlines)"
                )))
            }
        };
        let record = || {
            self.record
                .as_deref()
                .and_then(|k| catalogue.kinds.parse_name(k))
                .ok_or_else(|| {
                    at(&format!(
                        "record must be a record kind, not {:?}",
                        self.record
                    ))
                })
        };
        let window = || {
            self.window
                .as_deref()
                .and_then(parse_duration)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| at("window must be a duration like 1d"))
        };
        let condition = match self.kind.as_str() {
            "threshold" => Condition::Threshold {
                metric: metric()?,
                op: self
                    .op
                    .as_deref()
                    .and_then(Op::parse)
                    .ok_or_else(|| at("op must be one of < <= > >="))?,
                value: self
                    .value
                    .ok_or_else(|| at("threshold rules need a value"))?,
            },
            "at_risk" => Condition::AtRisk { metric: metric()? },
            "overdue" => Condition::Overdue {
                metric: cases_metric(self.metric.as_deref())?,
            },
            // The first floor's name for it, kept for the rule files that use it.
            "appeal_overdue" => Condition::Overdue {
                metric: cases_metric(Some(self.metric.as_deref().unwrap_or("open_appeals")))?,
            },
            "silence" => Condition::Silence {
                days: self
                    .days
                    .filter(|d| *d > 0)
                    .ok_or_else(|| at("silence rules need days > 0"))?,
            },
            "spike" => Condition::Spike {
                record: record()?,
                window: window()?,
                baseline_windows: self
                    .baseline_windows
                    .filter(|b| *b > 0)
                    .ok_or_else(|| at("spike rules need factor and baseline_windows"))?,
                factor: self
                    .factor
                    .ok_or_else(|| at("spike rules need factor and baseline_windows"))?,
                min_count: self.min_count.unwrap_or(1),
            },
            "cluster" => Condition::Cluster {
                record: record()?,
                window: window()?,
                radius_km: self
                    .radius_km
                    .ok_or_else(|| at("cluster rules need radius_km and min_points ≥ 2"))?,
                min_points: self
                    .min_points
                    .filter(|m| *m >= 2)
                    .ok_or_else(|| at("cluster rules need radius_km and min_points ≥ 2"))?,
            },
            "reporting_due" | "reporting_late" => {
                let record = match self.record.as_deref() {
                    None => None,
                    Some(_) => Some(record()?),
                };
                let scheduled = |k: Kind| {
                    catalogue
                        .kinds
                        .get(k.as_str())
                        .is_some_and(|d| d.report.is_some())
                };
                if record.is_some_and(|k| !scheduled(k)) {
                    return Err(at("record must be a kind with a [report] schedule"));
                }
                if self.kind == "reporting_due" {
                    Condition::ReportingDue {
                        days: self
                            .days
                            .ok_or_else(|| at("reporting_due rules need days (before the due day)"))?,
                        record,
                    }
                } else {
                    Condition::ReportingLate { record }
                }
            }
            other => {
                return Err(at(&format!(
                    "unknown type '{other}': threshold, at_risk, overdue, silence, spike, cluster, reporting_due or reporting_late"
                )))
            }
        };
        for r in &self.raise {
            if r.value_at_least.is_none() && r.days_at_least.is_none() {
                return Err(at("each raise needs value_at_least or days_at_least"));
            }
            if r.severity <= self.severity {
                return Err(at(&format!(
                    "a raise to {} is not above the rule's severity {}",
                    r.severity.as_str(),
                    self.severity.as_str()
                )));
            }
        }
        Ok(Rule {
            name: self.name,
            condition,
            after,
            scope: self.scope,
            levels: self.levels,
            hold_for,
            severity: self.severity,
            raise: self.raise,
            title: self.title,
            summary: self.summary,
            labels: self.labels,
        })
    }
}

/// Reads every `*.toml` in `dir`; any error refuses the whole set (the caller keeps the old one).
pub fn load_rules(dir: &Path, tree: &OrgTree, catalogue: &Catalogue) -> Result<Vec<Rule>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        // The on-call roster lives beside the rules.
        .filter(|p| p.file_name().is_none_or(|n| n != "oncall.toml"))
        .collect();
    files.sort();
    let mut rules = Vec::new();
    for path in files {
        let Some(text) = crate::dashboards::read_definition(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
        else {
            continue;
        };
        crate::domain::definition::check_text(&path.display().to_string(), &text)
            .map_err(|e| e.to_string())?;
        let file: RuleFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for spec in file.rule {
            let rule = spec
                .parse(tree, catalogue)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if rules.iter().any(|r: &Rule| r.name == rule.name) {
                return Err(format!(
                    "{}: rule {} is defined twice",
                    path.display(),
                    rule.name
                ));
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::org::tree_of;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("10 minutes"), None);
        assert_eq!(parse_duration("m"), None);
    }

    fn parse(toml_text: &str) -> Result<Vec<Rule>, String> {
        let tree = tree_of(&[("440300", Level::City, None)]);
        let file: RuleFile = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let catalogue = Catalogue::shipped();
        file.rule
            .into_iter()
            .map(|r| r.parse(&tree, &catalogue))
            .collect()
    }

    #[test]
    fn each_type_parses_into_its_condition_with_defaults_applied() {
        let rules = parse(
            r#"
            [[rule]]
            name = "t"
            type = "threshold"
            metric = "staffing_rate"
            op = "<"
            value = 0.95
            after = "2020-12-31"
            levels = ["city"]
            for = "1h"
            severity = "warning"
            summary = "s"

            [[rule]]
            name = "s"
            type = "spike"
            record = "appeal.received"
            window = "1d"
            baseline_windows = 7
            factor = 3.0
            levels = ["city"]
            for = "0s"
            severity = "info"
            summary = "s"
            "#,
        )
        .unwrap();
        assert_eq!(
            rules[0].condition,
            Condition::Threshold {
                metric: Catalogue::shipped().parse_name("staffing_rate").unwrap(),
                op: Op::Lt,
                value: 0.95
            }
        );
        assert_eq!(rules[0].hold_for, Duration::from_secs(3600));
        assert!(rules[0].after.is_some());
        assert_eq!(
            rules[1].condition,
            Condition::Spike {
                record: Kind::APPEAL_RECEIVED,
                window: Duration::from_secs(86_400),
                baseline_windows: 7,
                factor: 3.0,
                min_count: 1,
            }
        );
    }

    #[test]
    fn severity_rises_with_the_size_and_age_of_the_breach() {
        let rules = parse(
            r#"
            [[rule]]
            name = "o"
            type = "overdue"
            metric = "open_appeals"
            levels = ["street"]
            for = "0s"
            severity = "info"
            raise = [{ value_at_least = 3, severity = "warning" }, { value_at_least = 10, days_at_least = 30, severity = "critical" }]
            summary = "s"
            "#,
        )
        .unwrap();
        let r = &rules[0];
        assert_eq!(r.severity_for(Some(1.0), Some(2)), Severity::Info);
        assert_eq!(r.severity_for(Some(3.0), Some(2)), Severity::Warning);
        assert_eq!(r.severity_for(Some(1.0), Some(45)), Severity::Critical);
        assert_eq!(r.severity_for(Some(12.0), None), Severity::Critical);
        assert!(r.values_add_up());
        let e = parse("[[rule]]\nname = \"x\"\ntype = \"silence\"\ndays = 7\nlevels = [\"street\"]\nfor = \"0s\"\nseverity = \"warning\"\nraise = [{ days_at_least = 30, severity = \"info\" }]\nsummary = \"s\"").unwrap_err();
        assert!(e.contains("not above"), "{e}");
    }

    #[test]
    fn the_first_floors_appeal_overdue_is_overdue_on_open_appeals() {
        let rules = parse("[[rule]]\nname = \"a\"\ntype = \"appeal_overdue\"\nlevels = [\"city\"]\nfor = \"0s\"\nseverity = \"info\"\nsummary = \"s\"").unwrap();
        assert_eq!(
            rules[0].condition.metric().map(|m| m.as_str()),
            Some("open_appeals")
        );
        assert!(matches!(rules[0].condition, Condition::Overdue { .. }));
    }

    #[test]
    fn a_spec_missing_what_its_type_needs_is_refused_naming_the_rule() {
        let base = |extra: &str| {
            format!(
                "[[rule]]\nname = \"r\"\n{extra}\nlevels = [\"city\"]\nfor = \"0s\"\nseverity = \"info\"\nsummary = \"s\""
            )
        };
        for (extra, says) in [
            ("type = \"threshold\"\nmetric = \"staffing_rate\"\nvalue = 1.0", "op must be"),
            ("type = \"threshold\"\nmetric = \"nope\"\nop = \"<\"\nvalue = 1.0", "unknown metric"),
            ("type = \"silence\"", "days > 0"),
            ("type = \"overdue\"\nmetric = \"staffing_rate\"", "not a cases metric"),
            ("type = \"cluster\"\nrecord = \"appeal.received\"\nwindow = \"1d\"\nradius_km = 1.0\nmin_points = 1", "min_points"),
            ("type = \"sometimes\"", "unknown type"),
        ] {
            let e = parse(&base(extra)).unwrap_err();
            assert!(e.contains("rule r") && e.contains(says), "{extra}: {e}");
        }
    }
}
