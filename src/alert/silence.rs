//! Silences: matchers over rule, subtree and severity, active between two instants, optionally
//! only inside a daily window (e.g. the nights of the Spring Festival holiday). A silenced alert
//! still changes state and is recorded; it is not notified until the silence ends.

use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime, Time};

use super::rules::Severity;
use crate::domain::org::NodeIdx;
use crate::domain::time::SHANGHAI;
use crate::domain::OrgTree;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    /// Only this rule (default: every rule).
    #[serde(default)]
    pub rule: Option<String>,
    /// Only alerts of nodes in this org's subtree (default: the city).
    #[serde(default)]
    pub scope: Option<String>,
    /// Only this severity and below.
    #[serde(default)]
    pub max_severity: Option<Severity>,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    /// Recurring: only between these local (Asia/Shanghai) times each day, `HH:MM`; a window
    /// may wrap midnight (`22:00`–`08:00`).
    #[serde(default)]
    pub daily: Option<DailyWindow>,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DailyWindow {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    pub id: String,
    pub created_by: String,
    #[serde(flatten)]
    pub spec: SilenceSpec,
    #[serde(skip)]
    starts: OffsetDateTime,
    #[serde(skip)]
    ends: OffsetDateTime,
    #[serde(skip)]
    window: Option<(Time, Time)>,
    #[serde(skip)]
    pub scope_idx: Option<NodeIdx>,
}

fn hm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()
}

impl Silence {
    /// Checks a spec; the error names the field.
    pub fn new(
        id: String,
        created_by: String,
        spec: SilenceSpec,
        tree: &OrgTree,
    ) -> Result<Silence, (String, String)> {
        let parse = |field: &str, v: &str| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                (
                    field.to_string(),
                    format!("'{v}' is not RFC 3339 with an offset"),
                )
            })
        };
        let starts = parse("starts_at", &spec.starts_at)?;
        let ends = parse("ends_at", &spec.ends_at)?;
        if ends <= starts {
            return Err(("ends_at".into(), "must be after starts_at".into()));
        }
        let window = match &spec.daily {
            None => None,
            Some(w) => Some((
                hm(&w.from)
                    .ok_or_else(|| ("daily.from".to_string(), "must be HH:MM".to_string()))?,
                hm(&w.to).ok_or_else(|| ("daily.to".to_string(), "must be HH:MM".to_string()))?,
            )),
        };
        let scope_idx = match &spec.scope {
            None => None,
            Some(code) => Some(
                tree.get(code)
                    .ok_or_else(|| ("scope".to_string(), format!("unknown org code {code}")))?,
            ),
        };
        Ok(Silence {
            id,
            created_by,
            spec,
            starts,
            ends,
            window,
            scope_idx,
        })
    }

    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        if now < self.starts || now >= self.ends {
            return false;
        }
        match self.window {
            None => true,
            Some((from, to)) => {
                let t = now.to_offset(SHANGHAI).time();
                if from <= to {
                    t >= from && t < to
                } else {
                    t >= from || t < to
                }
            }
        }
    }

    pub fn matches(&self, tree: &OrgTree, rule: &str, node: NodeIdx, severity: Severity) -> bool {
        self.spec.rule.as_deref().is_none_or(|r| r == rule)
            && self.scope_idx.is_none_or(|s| tree.is_within(node, s))
            && self.spec.max_severity.is_none_or(|m| severity <= m)
    }
}
