//! Alerts as clients see them: the notice on the stream and the duty console, and the list
//! of current alerts.

use serde::Serialize;

use crate::alert;

/// An alert's change of state, as `{"type": "alert", …}` on `/ws`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertNotice {
    /// firing | resolved | no_data | notified | acknowledged | …
    pub state: String,
    /// `rule/node`
    pub fingerprint: String,
    pub rule: String,
    pub node: String,
    pub node_name: String,
    /// The district the node lies in (the city for its own alerts).
    pub district: String,
    pub district_name: String,
    /// info | warning | critical
    pub severity: &'static str,
    /// As it fired (a resolution keeps the text; `value` is then the value at resolution).
    pub summary: String,
    pub value: Option<f64>,
    /// RFC 3339.
    pub at: String,
    /// RFC 3339: when the breach began.
    pub breach_since: String,
}

impl From<&alert::AlertNotice> for AlertNotice {
    fn from(n: &alert::AlertNotice) -> Self {
        AlertNotice {
            state: n.state.clone(),
            fingerprint: n.fingerprint.clone(),
            rule: n.rule.clone(),
            node: n.node.clone(),
            node_name: n.node_name.clone(),
            district: n.district.clone(),
            district_name: n.district_name.clone(),
            severity: n.severity.as_str(),
            summary: n.summary.clone(),
            value: n.value,
            at: n.at.clone(),
            breach_since: unix_rfc3339(n.breach_since),
        }
    }
}

fn unix_rfc3339(t: i64) -> String {
    crate::domain::time::rfc3339(
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

/// An acknowledgement.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ack {
    pub by: String,
    /// RFC 3339.
    pub at: String,
    pub comment: String,
}

/// A current alert (pending, firing, or without data).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Alert {
    pub fingerprint: String,
    pub rule: String,
    pub node: String,
    pub node_name: String,
    /// city | district | street | community
    pub level: &'static str,
    /// The district the node lies in (the city for the city's own alerts), by which alerts
    /// are grouped.
    pub district: String,
    pub district_name: String,
    /// pending | firing | no_data
    pub state: &'static str,
    /// info | warning | critical — calibrated to the breach's size and age (the rule's
    /// `raise` steps).
    pub severity: &'static str,
    pub value: Option<f64>,
    /// The value as every page says it ("88.4%", "3"; "—" without one).
    pub value_text: String,
    pub summary: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// RFC 3339: when it entered this state.
    pub since: String,
    /// RFC 3339: when the breach began, dated from the data where it says (the moment the
    /// oldest overdue case passed its deadline, a missed deadline, the start of a silence),
    /// else from when the engine first saw it — the same after a restart.
    pub breach_since: String,
    /// Whole days since the breach began.
    pub breach_days: i64,
    /// Cases (overdue rules): days since the oldest overdue case passed its deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_overdue: Option<i64>,
    /// Cases: the age in days of the oldest open case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_age_days: Option<i64>,
    /// For a rule that reads a metric: the figure's status (at_risk, missed …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    pub ack: Option<Ack>,
    /// Roster levels notified: 0 = the node's own duty officer, 1 = the next one up, …
    pub escalation: u8,
}

impl Alert {
    pub fn new(
        a: &alert::AlertInstance,
        tree: &crate::domain::OrgTree,
        rules: &[alert::rules::Rule],
        catalogue: &crate::domain::catalogue::Catalogue,
        now: i64,
    ) -> Self {
        let rule = rules.iter().find(|r| r.name == a.rule);
        let overdue_rule =
            rule.is_some_and(|r| matches!(r.condition, alert::rules::Condition::Overdue { .. }));
        let value_text = match rule {
            Some(r) => alert::engine::format_value(r, catalogue, a.value),
            None => a.value.map_or("—".into(), |v| format!("{v}")),
        };
        let area = alert::engine::district_of(tree, a.node_idx);
        let breach_days = (now - a.breach_since).max(0) / 86_400;
        Alert {
            fingerprint: a.fingerprint.clone(),
            rule: a.rule.clone(),
            node: a.node.clone(),
            node_name: a.node_name.clone(),
            level: tree.node(a.node_idx).level.as_str(),
            district: tree.node(area).code.clone(),
            district_name: tree.node(area).name.clone(),
            state: a.state.as_str(),
            severity: a.severity.as_str(),
            value: a.value,
            value_text,
            summary: a.summary.clone(),
            labels: a.labels.clone(),
            since: a.since.clone(),
            breach_since: unix_rfc3339(a.breach_since),
            breach_days,
            days_overdue: overdue_rule.then_some(breach_days),
            case_age_days: a.case_age_days,
            status: a.status.map(|s| s.as_str()),
            ack: a.ack.as_ref().map(|k| Ack {
                by: k.by.clone(),
                at: k.at.clone(),
                comment: k.comment.clone(),
            }),
            escalation: a.escalation,
        }
    }
}

/// How many alerts of a group are in each state and of each severity.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct AlertCounts {
    pub total: usize,
    pub firing: usize,
    pub pending: usize,
    pub no_data: usize,
    pub acknowledged: usize,
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
}

/// The alerts of one rule in one district (a street's inside its district's group), as
/// Alertmanager groups them: the unit a duty officer calls about.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertGroup {
    /// `rule/district`
    pub key: String,
    pub rule: String,
    /// What the rule is about, in a few words (信访超期 …).
    pub title: String,
    pub district: String,
    pub district_name: String,
    /// The group's urgency: its most severe alert, raised by the rule's steps on the group's
    /// total where the values add up (thirty overdue appeals across a district's streets are
    /// not one street's one).
    pub severity: &'static str,
    pub counts: AlertCounts,
    /// The sum of the alerts' values where they add up (overdue cases …).
    pub value_sum: Option<f64>,
    /// RFC 3339: the oldest breach of the group.
    pub breach_since: String,
    pub breach_days: i64,
    /// Most severe, then oldest breach, first.
    pub alerts: Vec<Alert>,
}

fn severity_of(name: &str) -> alert::rules::Severity {
    name.parse().unwrap_or(alert::rules::Severity::Info)
}

/// Groups alerts by rule and district, most urgent first: the highest severity, then the most
/// firing, then the oldest breach.
pub fn group_alerts(
    alerts: &[Alert],
    rules: &[alert::rules::Rule],
    catalogue: &crate::domain::catalogue::Catalogue,
    tree: &crate::domain::OrgTree,
    now: i64,
) -> Vec<AlertGroup> {
    // A value that adds up the tree (overdue cases) counts a node's subtree: an alert whose
    // ancestor also alerts under the same rule is already in the ancestor's value.
    let alerting: std::collections::HashSet<(&str, crate::domain::org::NodeIdx)> = alerts
        .iter()
        .filter(|a| a.state != "no_data")
        .filter_map(|a| tree.get(&a.node).map(|n| (a.rule.as_str(), n)))
        .collect();
    let counted_above = |a: &Alert| {
        let Some(mut n) = tree.get(&a.node) else {
            return false;
        };
        while let Some(p) = tree.node(n).parent {
            if alerting.contains(&(a.rule.as_str(), p)) {
                return true;
            }
            n = p;
        }
        false
    };
    let mut groups: std::collections::BTreeMap<(String, String), AlertGroup> = Default::default();
    for a in alerts {
        let rule = rules.iter().find(|r| r.name == a.rule);
        let g = groups
            .entry((a.rule.clone(), a.district.clone()))
            .or_insert_with(|| AlertGroup {
                key: format!("{}/{}", a.rule, a.district),
                rule: a.rule.clone(),
                title: rule.map_or_else(|| a.rule.clone(), |r| r.title(catalogue)),
                district: a.district.clone(),
                district_name: a.district_name.clone(),
                severity: a.severity,
                counts: AlertCounts::default(),
                value_sum: None,
                breach_since: a.breach_since.clone(),
                breach_days: a.breach_days,
                alerts: Vec::new(),
            });
        let c = &mut g.counts;
        c.total += 1;
        match a.state {
            "firing" => c.firing += 1,
            "pending" => c.pending += 1,
            _ => c.no_data += 1,
        }
        c.acknowledged += usize::from(a.ack.is_some());
        match a.severity {
            "critical" => c.critical += 1,
            "warning" => c.warning += 1,
            _ => c.info += 1,
        }
        if severity_of(a.severity) > severity_of(g.severity) {
            g.severity = a.severity;
        }
        if rule.is_some_and(|r| r.values_add_up()) {
            if let Some(v) = a
                .value
                .filter(|_| a.state != "no_data" && !counted_above(a))
            {
                g.value_sum = Some(g.value_sum.unwrap_or(0.0) + v);
            }
        }
        if a.breach_days > g.breach_days {
            g.breach_days = a.breach_days;
            g.breach_since = a.breach_since.clone();
        }
        g.alerts.push(a.clone());
    }
    let mut out: Vec<AlertGroup> = groups.into_values().collect();
    for g in &mut out {
        // A rule on a metric's status: titled by what its alerts are (all missed: 未达标).
        if let Some(rule) = rules
            .iter()
            .find(|r| r.name == g.rule && r.watches_status())
        {
            let label = rule
                .condition
                .metric()
                .and_then(|m| catalogue.get(m))
                .map(|d| d.label_zh.clone());
            let all = |s: &str| g.alerts.iter().all(|a| a.status == Some(s));
            if let (Some(label), None) = (label, &rule.title) {
                if all("missed") {
                    g.title = format!("{label}未达标");
                } else if all("at_risk") {
                    g.title = format!("{label}有风险");
                }
            }
        }
        // The rule's steps, on the group's total and its oldest breach.
        if let Some(rule) = rules.iter().find(|r| r.name == g.rule) {
            let raised = rule.severity_for(g.value_sum, Some(g.breach_days));
            if raised > severity_of(g.severity) {
                g.severity = raised.as_str();
            }
        }
        g.alerts.sort_by(|a, b| {
            severity_of(b.severity)
                .cmp(&severity_of(a.severity))
                .then(b.breach_days.cmp(&a.breach_days))
                .then(a.node.cmp(&b.node))
        });
    }
    let _ = now;
    // Most severe first; within a severity, the newest breach first (what just happened is
    // what a duty officer can still act on), then the biggest.
    out.sort_by(|a, b| {
        severity_of(b.severity)
            .cmp(&severity_of(a.severity))
            .then(a.breach_days.cmp(&b.breach_days))
            .then(b.counts.firing.cmp(&a.counts.firing))
            .then(a.key.cmp(&b.key))
    });
    out
}

/// `GET /api/v1/alerts`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertsAnswer {
    /// Why the rule files were not (re)loaded, if they were not; the previous rules stay.
    pub rules_error: Option<String>,
    /// Most severe first.
    pub alerts: Vec<Alert>,
    /// The same alerts grouped by rule and district, most urgent group first.
    pub groups: Vec<AlertGroup>,
}

/// One recorded change of state or notification (`GET /api/v1/alerts/history`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertHistoryEntry {
    /// Unix seconds.
    pub at: u32,
    pub fingerprint: String,
    pub rule: String,
    pub node: String,
    pub state: String,
    pub severity: String,
    /// The value the row recorded: at the change (a resolution: the value at resolution).
    pub value: Option<f64>,
    /// The text as the alert fired (a resolution keeps it; its value is `value`).
    pub summary: String,
    pub actor: String,
    pub comment: String,
    /// The node's name and its district's (empty for a node the tree no longer has).
    pub node_name: String,
    pub district_name: String,
}

impl AlertHistoryEntry {
    pub fn new(r: alert::engine::AlertEventRow, tree: &crate::domain::OrgTree) -> Self {
        let (node_name, district_name) = match tree.get(&r.node) {
            Some(n) => (
                tree.node(n).name.clone(),
                tree.node(alert::engine::district_of(tree, n)).name.clone(),
            ),
            None => (String::new(), String::new()),
        };
        AlertHistoryEntry {
            at: r.at,
            fingerprint: r.fingerprint,
            rule: r.rule,
            node: r.node,
            state: r.state,
            severity: r.severity,
            value: r.value,
            summary: r.summary,
            actor: r.actor,
            comment: r.comment,
            node_name,
            district_name,
        }
    }
}

/// A silence: notifications of matching alerts held back between two instants.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Silence {
    pub id: String,
    pub created_by: String,
    /// Only this rule (null: every rule).
    pub rule: Option<String>,
    /// Only alerts of nodes in this org's subtree (null: the city).
    pub scope: Option<String>,
    /// Only this severity and below.
    pub max_severity: Option<&'static str>,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    /// Only between these local times each day (`HH:MM`), if set.
    pub daily: Option<DailyWindow>,
    pub comment: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DailyWindow {
    pub from: String,
    pub to: String,
}

impl From<&alert::silence::Silence> for Silence {
    fn from(s: &alert::silence::Silence) -> Self {
        let spec = &s.spec;
        Silence {
            id: s.id.clone(),
            created_by: s.created_by.clone(),
            rule: spec.rule.clone(),
            scope: spec.scope.clone(),
            max_severity: spec.max_severity.map(|v| v.as_str()),
            starts_at: spec.starts_at.clone(),
            ends_at: spec.ends_at.clone(),
            daily: spec.daily.as_ref().map(|d| DailyWindow {
                from: d.from.clone(),
                to: d.to.clone(),
            }),
            comment: spec.comment.clone(),
        }
    }
}
