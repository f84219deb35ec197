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
    /// info | warning | critical
    pub severity: &'static str,
    pub summary: String,
    pub value: Option<f64>,
    /// RFC 3339.
    pub at: String,
}

impl From<&alert::AlertNotice> for AlertNotice {
    fn from(n: &alert::AlertNotice) -> Self {
        AlertNotice {
            state: n.state.clone(),
            fingerprint: n.fingerprint.clone(),
            rule: n.rule.clone(),
            node: n.node.clone(),
            node_name: n.node_name.clone(),
            severity: n.severity.as_str(),
            summary: n.summary.clone(),
            value: n.value,
            at: n.at.clone(),
        }
    }
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
    /// pending | firing | no_data
    pub state: &'static str,
    /// info | warning | critical
    pub severity: &'static str,
    pub value: Option<f64>,
    pub summary: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// RFC 3339: when it entered this state.
    pub since: String,
    pub ack: Option<Ack>,
    /// Roster levels notified: 0 = the node's own duty officer, 1 = the next one up, …
    pub escalation: u8,
}

impl From<&alert::AlertInstance> for Alert {
    fn from(a: &alert::AlertInstance) -> Self {
        Alert {
            fingerprint: a.fingerprint.clone(),
            rule: a.rule.clone(),
            node: a.node.clone(),
            node_name: a.node_name.clone(),
            state: a.state.as_str(),
            severity: a.severity.as_str(),
            value: a.value,
            summary: a.summary.clone(),
            labels: a.labels.clone(),
            since: a.since.clone(),
            ack: a.ack.as_ref().map(|k| Ack {
                by: k.by.clone(),
                at: k.at.clone(),
                comment: k.comment.clone(),
            }),
            escalation: a.escalation,
        }
    }
}

/// `GET /api/v1/alerts`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertsAnswer {
    /// Why the rule files were not (re)loaded, if they were not; the previous rules stay.
    pub rules_error: Option<String>,
    /// Most severe first.
    pub alerts: Vec<Alert>,
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
    pub value: Option<f64>,
    pub summary: String,
    pub actor: String,
    pub comment: String,
}

impl From<alert::engine::AlertEventRow> for AlertHistoryEntry {
    fn from(r: alert::engine::AlertEventRow) -> Self {
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
