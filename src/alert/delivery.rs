//! Routing, escalation and webhook delivery of alert notifications.
//!
//! The roster (`oncall.toml` beside the rules) names a duty target per org node. A firing alert
//! goes to the nearest target on the path from its node to the city; unacknowledged after
//! `escalate_after`, to the next one above, and so on. Each notification is written to the
//! `alert_notifications` log before it is sent and retried with backoff until the receiver
//! answers 2xx: at least once, and a restart resumes what was not delivered.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::notice::AlertNotice;
use crate::domain::org::NodeIdx;
use crate::domain::OrgTree;
use crate::store::retry::Backoff;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    /// 企业微信群机器人 (markdown message).
    Wecom,
    /// 钉钉群机器人 (markdown message).
    Dingtalk,
    /// The alert notice as JSON.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutyTarget {
    pub org: String,
    pub name: String,
    pub kind: WebhookKind,
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    pub escalate_after: String,
    #[serde(default)]
    pub duty: Vec<DutyTarget>,
}

impl Roster {
    pub fn load(path: &Path, tree: &OrgTree) -> Result<Option<Roster>, String> {
        let Ok(Some(text)) = crate::dashboards::read_definition(path) else {
            return Ok(None);
        };
        let roster: Roster =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if super::rules::parse_duration(&roster.escalate_after).is_none() {
            return Err(format!(
                "{}: escalate_after must be a duration like 30m",
                path.display()
            ));
        }
        for d in &roster.duty {
            if tree.get(&d.org).is_none() {
                return Err(format!(
                    "{}: duty {}: unknown org {}",
                    path.display(),
                    d.name,
                    d.org
                ));
            }
        }
        Ok(Some(roster))
    }

    pub fn escalate_after(&self) -> Duration {
        super::rules::parse_duration(&self.escalate_after).unwrap_or(Duration::from_secs(1800))
    }

    /// The duty targets from `node` up to the city, nearest first (nodes without an entry are
    /// skipped: they fall through to their parent).
    pub fn chain(&self, tree: &OrgTree, node: NodeIdx) -> Vec<DutyTarget> {
        tree.path_to_root(node)
            .filter_map(|n| {
                self.duty
                    .iter()
                    .find(|d| d.org == tree.node(n).code)
                    .cloned()
            })
            .collect()
    }
}

/// One notification to one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outgoing {
    pub id: String,
    pub fingerprint: String,
    pub target: String,
    pub level: u8,
    pub kind: WebhookKind,
    pub url: String,
    pub payload: String,
}

#[derive(clickhouse::Row, Serialize, Deserialize)]
struct LogRow {
    at: u32,
    id: String,
    fingerprint: String,
    target: String,
    level: u8,
    kind: String,
    url: String,
    payload: String,
    status: String,
    attempts: u32,
    error: String,
}

fn kind_str(k: WebhookKind) -> &'static str {
    match k {
        WebhookKind::Wecom => "wecom",
        WebhookKind::Dingtalk => "dingtalk",
        WebhookKind::Json => "json",
    }
}

/// One message for several notices of the same rule and state to the same target (e.g. every
/// street of a district with overdue appeals).
pub fn render_group(
    kind: WebhookKind,
    notices: &[&AlertNotice],
    target: &str,
    level: u8,
) -> String {
    if let [one] = notices {
        return render(kind, one, target, level);
    }
    let first = notices[0];
    let (sev, state, escalated) = heading(first, level);
    let lines: Vec<String> = notices.iter().map(|n| format!("- {}", n.summary)).collect();
    let text = format!(
        "### 【{sev}】{state}{escalated}：{} 个节点\n{}\n\n时间：{}\n值班：{target}",
        notices.len(),
        lines.join("\n"),
        first.at
    );
    match kind {
        WebhookKind::Wecom => serde_json::json!({"msgtype": "markdown", "markdown": {"content": text}}).to_string(),
        WebhookKind::Dingtalk => serde_json::json!({"msgtype": "markdown", "markdown": {"title": format!("{sev}：{} 个节点", notices.len()), "text": text}}).to_string(),
        WebhookKind::Json => serde_json::json!({"type": "alert_group", "rule": first.rule, "state": first.state,
            "target": target, "level": level,
            "alerts": notices.iter().map(|n| notice_json(n)).collect::<Vec<_>>()}).to_string(),
    }
}

/// A message about a task (督办) to one duty target, for its units: issued to them, returned
/// to one of them.
pub fn render_task(
    kind: WebhookKind,
    event: &str,
    heading: &str,
    body: &str,
    units: &[(String, String)],
    target: &str,
    at: &str,
) -> String {
    let names: Vec<&str> = units.iter().map(|(_, name)| name.as_str()).collect();
    let shown = if names.len() > 20 {
        format!("{} 等 {} 个单位", names[..20].join("、"), names.len())
    } else {
        names.join("、")
    };
    let text =
        format!("### 【督办】{heading}\n> {body}\n\n承办单位：{shown}\n时间：{at}\n值班：{target}");
    match kind {
        WebhookKind::Wecom => serde_json::json!({"msgtype": "markdown", "markdown": {"content": text}}).to_string(),
        WebhookKind::Dingtalk => serde_json::json!({"msgtype": "markdown", "markdown": {"title": format!("督办：{heading}"), "text": text}}).to_string(),
        WebhookKind::Json => serde_json::json!({"type": "task", "event": event, "heading": heading, "text": body,
            "units": units.iter().map(|(code, _)| code).collect::<Vec<_>>(), "target": target, "at": at}).to_string(),
    }
}

/// A notice in the `json` robots' payload (their own contract, documented in
/// `oncall.toml.example`).
fn notice_json(n: &AlertNotice) -> serde_json::Value {
    serde_json::json!({"type": "alert", "state": n.state, "fingerprint": n.fingerprint,
        "rule": n.rule, "node": n.node, "node_name": n.node_name, "severity": n.severity.as_str(),
        "summary": n.summary, "value": n.value, "at": n.at})
}

/// Severity, state and escalation words of a message heading.
fn heading(n: &AlertNotice, level: u8) -> (&'static str, &'static str, String) {
    let sev = match n.severity {
        super::rules::Severity::Critical => "紧急",
        super::rules::Severity::Warning => "警告",
        super::rules::Severity::Info => "提示",
    };
    let state = if n.state == "resolved" {
        "已恢复"
    } else {
        "告警"
    };
    let escalated = if level > 0 {
        format!("（第 {level} 级升级，未确认）")
    } else {
        String::new()
    };
    (sev, state, escalated)
}

/// The message body a receiver of `kind` expects.
pub fn render(kind: WebhookKind, n: &AlertNotice, target: &str, level: u8) -> String {
    let (sev, state, escalated) = heading(n, level);
    let text = format!(
        "### 【{sev}】{state}{escalated}\n> {}\n\n节点：{}（{}）\n时间：{}\n值班：{target}",
        n.summary, n.node_name, n.node, n.at
    );
    match kind {
        WebhookKind::Wecom => serde_json::json!({"msgtype": "markdown", "markdown": {"content": text}}).to_string(),
        WebhookKind::Dingtalk => serde_json::json!({"msgtype": "markdown", "markdown": {"title": format!("{sev}：{}", n.node_name), "text": text}}).to_string(),
        WebhookKind::Json => {
            let mut v = notice_json(n);
            v["target"] = serde_json::json!(target);
            v["level"] = serde_json::json!(level);
            v.to_string()
        }
    }
}

#[derive(Clone)]
pub struct Deliverer {
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl Deliverer {
    /// Starts the delivery worker; `base_backoff` doubles per failed attempt up to 60 s.
    pub fn start(store: Store, base_backoff: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx, base_backoff));
        Deliverer { tx }
    }

    /// Logs the notification as queued, then hands it to the worker.
    pub async fn send(&self, store: &Store, n: Outgoing) -> Result<(), StoreError> {
        log(store, &n, "queued", 0, "").await?;
        let _ = self.tx.send(n);
        Ok(())
    }

    /// Re-queues what the log shows as not delivered (after a restart).
    pub async fn resume(&self, store: &Store) -> Result<usize, StoreError> {
        let rows: Vec<LogRow> = store
            .client()
            .query(
                "SELECT toUInt32(max(at)), id, any(fingerprint), any(target), any(level), any(kind), any(url), any(payload), \
                 argMax(status, (at, attempts)), toUInt32(max(attempts)), '' FROM alert_notifications GROUP BY id",
            )
            .with_setting("wait_end_of_query", "1")
            .fetch_all()
            .await?;
        let mut n = 0;
        for r in rows.into_iter().filter(|r| r.status != "delivered") {
            let kind = match r.kind.as_str() {
                "wecom" => WebhookKind::Wecom,
                "dingtalk" => WebhookKind::Dingtalk,
                _ => WebhookKind::Json,
            };
            let _ = self.tx.send(Outgoing {
                id: r.id,
                fingerprint: r.fingerprint,
                target: r.target,
                level: r.level,
                kind,
                url: r.url,
                payload: r.payload,
            });
            n += 1;
        }
        Ok(n)
    }
}

async fn log(
    store: &Store,
    n: &Outgoing,
    status: &str,
    attempts: u32,
    error: &str,
) -> Result<(), StoreError> {
    let row = LogRow {
        at: time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u32,
        id: n.id.clone(),
        fingerprint: n.fingerprint.clone(),
        target: n.target.clone(),
        level: n.level,
        kind: kind_str(n.kind).into(),
        url: n.url.clone(),
        payload: n.payload.clone(),
        status: status.into(),
        attempts,
        error: error.into(),
    };
    let mut insert = store
        .client()
        .insert::<LogRow>("alert_notifications")
        .await?;
    insert.write(&row).await?;
    insert.end().await?;
    Ok(())
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Outgoing>, base_backoff: Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    while let Some(n) = rx.recv().await {
        let (store, http) = (store.clone(), http.clone());
        // Each notification retries on its own: one dead receiver does not hold up the others.
        tokio::spawn(async move {
            let mut backoff = Backoff::new(base_backoff, Duration::from_secs(60));
            for attempt in 1u32.. {
                let result = http
                    .post(&n.url)
                    .header("content-type", "application/json")
                    .body(n.payload.clone())
                    .send()
                    .await;
                let error = match result {
                    Ok(r) if r.status().is_success() => {
                        let _ = log(&store, &n, "delivered", attempt, "").await;
                        return;
                    }
                    Ok(r) => format!("answered {}", r.status()),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(id = %n.id, target = %n.target, attempt, %error, "alert delivery failed; retrying");
                let _ = log(&store, &n, "failed", attempt, &error).await;
                tokio::time::sleep(backoff.next_wait()).await;
            }
        });
    }
}

pub type SharedRoster = Arc<std::sync::RwLock<Option<Roster>>>;
