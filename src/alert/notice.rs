//! The notice of an alert's change of state: what the duty stream, the wall screen's ticker
//! and the duty targets receive.

use super::rules::Severity;
use crate::domain::org::NodeIdx;

/// An alert's change of state (or a notification of it).
#[derive(Debug, Clone)]
pub struct AlertNotice {
    pub state: String,
    pub fingerprint: String,
    pub rule: String,
    pub node: String,
    pub node_name: String,
    /// The area the node lies in (Shenzhen: its district; a province: its city; the root for the root's own alerts): alerts are grouped
    /// and named by it.
    pub district: String,
    pub district_name: String,
    pub severity: Severity,
    pub summary: String,
    pub value: Option<f64>,
    pub at: String,
    /// When the breach began (Unix seconds).
    pub breach_since: i64,
    pub node_idx: NodeIdx,
}
