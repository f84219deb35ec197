//! Alert rules as files (`dashboards/alerts/*.toml`), validated at load.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::domain::metric::MetricId;
use crate::domain::{Level, OrgTree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleType {
    /// The metric's value compared with `value` by `op`.
    Threshold,
    /// The metric's status is `at_risk` or `missed`.
    AtRisk,
    /// Open appeals past their acceptance or resolution deadline.
    AppealOverdue,
    /// No record of any kind from the node's subtree for `days`.
    Silence,
    /// Records of `record` kind in the last `window` at least `factor` × the average of the
    /// `baseline_windows` windows before, and at least `min_count`.
    Spike,
    /// At least `min_points` located records of `record` kind within `radius_km` of each other
    /// in the last `window` (one alert per node).
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RuleType,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub value: Option<f64>,
    /// Only evaluated after this date (e.g. a target's deadline), `YYYY-MM-DD`.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub days: Option<u32>,
    /// spike, cluster: the record kind counted, e.g. `appeal.received`.
    #[serde(default)]
    pub record: Option<String>,
    /// spike, cluster: e.g. `1d`.
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub baseline_windows: Option<u32>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub min_count: Option<u64>,
    #[serde(default)]
    pub radius_km: Option<f64>,
    #[serde(default)]
    pub min_points: Option<usize>,
    /// Org code whose subtree the rule watches (default: the city).
    #[serde(default)]
    pub scope: Option<String>,
    /// Levels of the nodes evaluated.
    pub levels: Vec<Level>,
    /// How long the condition must hold before the alert fires, e.g. `10m`, `1h`, `0s`.
    #[serde(rename = "for")]
    pub for_: String,
    pub severity: Severity,
    /// Chinese text; `{node}`, `{value}` and `{target}` are filled in.
    pub summary: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<Rule>,
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

impl Rule {
    pub fn metric_id(&self) -> Option<MetricId> {
        self.metric.as_deref().and_then(MetricId::parse)
    }

    pub fn window_secs(&self) -> u32 {
        self.window
            .as_deref()
            .and_then(parse_duration)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(86_400)
    }

    pub fn for_duration(&self) -> Duration {
        parse_duration(&self.for_).unwrap_or_default()
    }

    pub fn after_date(&self) -> Option<Date> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        self.after
            .as_deref()
            .and_then(|d| Date::parse(d, &fmt).ok())
    }

    pub fn validate(&self, tree: &OrgTree) -> Result<(), String> {
        let at = |what: &str| format!("rule {}: {what}", self.name);
        if parse_duration(&self.for_).is_none() {
            return Err(at(&format!(
                "for = '{}' is not a duration like 10m",
                self.for_
            )));
        }
        if let Some(scope) = &self.scope {
            if tree.get(scope).is_none() {
                return Err(at(&format!("unknown scope {scope}")));
            }
        }
        if self.after.is_some() && self.after_date().is_none() {
            return Err(at("after must be YYYY-MM-DD"));
        }
        match self.kind {
            RuleType::Threshold | RuleType::AtRisk => {
                if self.metric_id().is_none() {
                    return Err(at(&format!("unknown metric {:?}", self.metric)));
                }
                if self.kind == RuleType::Threshold {
                    if !matches!(self.op.as_deref(), Some("<" | "<=" | ">" | ">=")) {
                        return Err(at("op must be one of < <= > >="));
                    }
                    if self.value.is_none() {
                        return Err(at("threshold rules need a value"));
                    }
                }
            }
            RuleType::Silence => {
                if self.days.is_none_or(|d| d == 0) {
                    return Err(at("silence rules need days > 0"));
                }
            }
            RuleType::AppealOverdue => {}
            RuleType::Spike | RuleType::Cluster => {
                if self
                    .record
                    .as_deref()
                    .and_then(crate::domain::record::Kind::parse)
                    .is_none()
                {
                    return Err(at(&format!(
                        "record must be a record kind, not {:?}",
                        self.record
                    )));
                }
                if self
                    .window
                    .as_deref()
                    .and_then(parse_duration)
                    .is_none_or(|d| d.is_zero())
                {
                    return Err(at("window must be a duration like 1d"));
                }
                if self.kind == RuleType::Spike
                    && (self.factor.is_none() || self.baseline_windows.is_none_or(|b| b == 0))
                {
                    return Err(at("spike rules need factor and baseline_windows"));
                }
                if self.kind == RuleType::Cluster
                    && (self.radius_km.is_none() || self.min_points.is_none_or(|m| m < 2))
                {
                    return Err(at("cluster rules need radius_km and min_points ≥ 2"));
                }
            }
        }
        if self.levels.is_empty() {
            return Err(at("levels must name at least one level"));
        }
        Ok(())
    }
}

/// Reads every `*.toml` in `dir`; any error refuses the whole set (the caller keeps the old one).
pub fn load_rules(dir: &Path, tree: &OrgTree) -> Result<Vec<Rule>, String> {
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
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: RuleFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for rule in file.rule {
            rule.validate(tree)
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

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("10 minutes"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
