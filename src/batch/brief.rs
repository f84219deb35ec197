//! The daily brief (每日简报): one day's figures as the nightly snapshots kept them — so a past
//! day's brief shows that day's figures, not today's — beside the day before, and the alerts
//! of that day.

use time::Date;

use crate::store::{Store, StoreError};

/// One node's snapshot of one metric on one day.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct SnapshotRow {
    /// Days since 1970-01-01.
    pub day: u16,
    pub node: String,
    pub metric: String,
    pub value: Option<f64>,
    pub status: String,
}

/// One alert event of the day.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct AlertRow {
    pub at: String,
    pub node: String,
    pub rule: String,
    pub state: String,
    pub severity: String,
    pub summary: String,
}

fn iso(day: Date) -> String {
    day.to_string()
}

/// The snapshots of `nodes` on `day` and the day before.
pub async fn snapshots(
    store: &Store,
    day: Date,
    nodes: &[String],
) -> Result<Vec<SnapshotRow>, StoreError> {
    let before = day.previous_day().unwrap_or(day);
    Ok(store
        .client()
        .query(
            "SELECT day, node, metric, value, status FROM metric_snapshots FINAL \
             WHERE day IN (toDate(?), toDate(?)) AND has(?, node) ORDER BY day, node, metric",
        )
        .bind(iso(day))
        .bind(iso(before))
        .bind(nodes)
        .with_setting("wait_end_of_query", "1")
        .fetch_all()
        .await?)
}

/// The alert events (firing, resolved, acknowledged …) of `day` in Shenzhen, oldest first.
pub async fn alerts(store: &Store, day: Date) -> Result<Vec<AlertRow>, StoreError> {
    Ok(store
        .client()
        .query(
            "SELECT toString(at), node, rule, state, severity, summary FROM alert_events \
             WHERE toDate(at) = toDate(?) ORDER BY at LIMIT 500",
        )
        .bind(iso(day))
        .with_setting("wait_end_of_query", "1")
        .fetch_all()
        .await?)
}

/// The days a brief can be read for (days with snapshots), newest first.
pub async fn days(store: &Store, limit: u64) -> Result<Vec<String>, StoreError> {
    Ok(store
        .client()
        .query("SELECT toString(day) FROM metric_snapshots GROUP BY day ORDER BY day DESC LIMIT ?")
        .bind(limit)
        .fetch_all()
        .await?)
}
