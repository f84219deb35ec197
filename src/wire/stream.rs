//! The messages of `GET /ws` (JSON text frames).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::alerts::AlertNotice;
use super::figures::Nodes;

/// Client → server.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Watch `scope` (the node and its direct children) for `metrics` (default: all).
    Subscribe {
        id: String,
        scope: String,
        #[serde(default)]
        metrics: Vec<String>,
        /// Continue an earlier subscription: its deltas after `seq`, or a fresh snapshot.
        resume: Option<Resume>,
    },
    Unsubscribe {
        id: String,
    },
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Resume {
    pub epoch: String,
    pub seq: u64,
}

/// Server → client. `seq` rises by one per message of a subscription within its epoch.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// Everything the subscription watches, at the start of an epoch.
    Snapshot {
        sub: &'a str,
        epoch: &'a str,
        seq: u64,
        at: &'a str,
        nodes: Nodes,
    },
    /// Only what changed; `nodes` is rendered once for every screen watching the same thing.
    /// Each metric object in it replaces the client's whole object for that node and metric
    /// (a field absent is null); nodes and metrics not named are unchanged.
    Delta {
        sub: &'a str,
        epoch: &'a str,
        seq: u64,
        at: &'a str,
        nodes: &'a RawValue,
    },
    /// An alert changed state, at a node inside the token's scope.
    Alert(&'a AlertNotice),
    /// A step taken on a task's assignment (签收, 反馈, 办结, 销号, 退回, 转派), at a unit
    /// inside the token's scope.
    Task(&'a crate::live::tasks::StepNotice),
    /// A refused message (`sub`: the subscription it concerns), or why the connection closes.
    Error {
        sub: Option<&'a str>,
        reason: &'a str,
    },
}

impl ServerMessage<'_> {
    /// The frame's text.
    pub fn to_text(&self) -> String {
        // Only strings, numbers and maps with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A connected screen (`GET /api/v1/screens`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Screen {
    pub id: u64,
    /// The instance serving it (`/healthz` names each).
    #[serde(default)]
    pub instance: String,
    /// The token's name.
    pub name: String,
    pub remote: String,
    /// RFC 3339.
    pub connected_at: String,
    pub subscriptions: Vec<ScreenSubscription>,
}

/// What an instance on a shared record stream tells the others every few seconds (not part
/// of the public API).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct InstanceShare {
    pub screens: Vec<Screen>,
    /// How far each of its resumable epochs got: `[epoch, seq, upto, when]` (message `seq`
    /// showed the figures with records up to `upto` applied, computed at `when`, Unix ms).
    pub epochs: Vec<(String, u64, u64, i64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScreenSubscription {
    pub id: String,
    pub scope: String,
    pub metrics: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_contract_shape() {
        let nodes = serde_json::value::to_raw_value(&serde_json::json!({"440300": {}})).unwrap();
        let delta = ServerMessage::Delta {
            sub: "s1",
            epoch: "e",
            seq: 43,
            at: "2026-01-01T00:00:00+08:00",
            nodes: &nodes,
        };
        assert_eq!(
            delta.to_text(),
            r#"{"type":"delta","sub":"s1","epoch":"e","seq":43,"at":"2026-01-01T00:00:00+08:00","nodes":{"440300":{}}}"#
        );
        let error = ServerMessage::Error {
            sub: None,
            reason: "bad",
        };
        assert_eq!(
            error.to_text(),
            r#"{"type":"error","sub":null,"reason":"bad"}"#
        );
        let sub: ClientMessage = serde_json::from_str(
            r#"{"type": "subscribe", "id": "s1", "scope": "440300", "resume": {"epoch": "e", "seq": 41}}"#,
        )
        .unwrap();
        assert!(matches!(
            sub,
            ClientMessage::Subscribe {
                resume: Some(Resume { seq: 41, .. }),
                ..
            }
        ));
    }
}
