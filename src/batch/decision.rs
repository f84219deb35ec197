//! Decision-support jobs (clause 十四): from the daily snapshots and the records, with polars,
//! back into ClickHouse — target progress with a projection to each deadline, league tables of
//! districts and streets, and data freshness per node. Each run is recorded in `job_runs`.
//!
//! The target rules are not written twice: the status and projection come from
//! [`crate::domain::metric::judge`] and [`crate::domain::metric::project`] over the same 30 days
//! of snapshots the live figures use, so the table agrees with the wall screen.

use std::collections::HashMap;
use std::sync::Arc;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::domain::catalogue::{Catalogue, Deadline, Judged};
use crate::domain::metric::{judge, project, Reading};
use crate::domain::time::SHANGHAI;
use crate::domain::{Level, OrgTree};
use crate::store::{counted_imports_param, Store, StoreError, EFFECTIVE_EVENTS};

use super::snapshots::recent_samples;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
}

impl From<clickhouse::error::Error> for JobError {
    fn from(e: clickhouse::error::Error) -> Self {
        JobError::Store(e.into())
    }
}

/// The jobs `vscc etl run` and `POST /api/v1/jobs/{job}` know.
pub const JOBS: [&str; 5] = ["snapshots", "progress", "league", "freshness", "all"];

const EPOCH: Date = match Date::from_calendar_date(1970, time::Month::January, 1) {
    Ok(d) => d,
    Err(_) => panic!("valid date"),
};

fn epoch_day(d: Date) -> u16 {
    (d - EPOCH).whole_days().clamp(0, u16::MAX as i64) as u16
}

/// Runs polars work on a thread of its own: polars blocks in ways the async runtime's threads
/// must not (and its lazy engine refuses a single-threaded runtime).
async fn on_polars_thread<T: Send + 'static>(
    work: impl FnOnce() -> PolarsResult<T> + Send + 'static,
) -> Result<T, JobError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("polars-job".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| JobError::Polars(PolarsError::ComputeError(e.to_string().into())))?;
    rx.await
        .map_err(|_| JobError::Polars(PolarsError::ComputeError("the polars thread died".into())))?
        .map_err(JobError::Polars)
}

async fn recorded(
    store: &Store,
    job: &str,
    work: impl std::future::Future<Output = Result<u64, JobError>>,
) -> Result<u64, JobError> {
    let started = OffsetDateTime::now_utc();
    let result = work.await;
    let summary = result.as_ref().map(|n| *n).map_err(|e| e.to_string());
    super::record_run(store, job, started, &summary).await?;
    result
}

#[derive(clickhouse::Row, Deserialize)]
struct SnapshotIn {
    day: u16,
    node: String,
    metric: String,
    value: Option<f64>,
    num: i64,
    den: Option<i64>,
    status: String,
}

/// The latest day's snapshots as a polars frame (with each node's level and parent).
async fn latest_snapshots(
    store: &Store,
    tree: &OrgTree,
) -> Result<Option<(Date, DataFrame)>, JobError> {
    let rows: Vec<SnapshotIn> = store
        .client()
        .query(
            "SELECT day, node, metric, value, num, den, status FROM metric_snapshots FINAL \
             WHERE day = (SELECT max(day) FROM metric_snapshots)",
        )
        .with_setting("wait_end_of_query", "1")
        .fetch_all()
        .await?;
    let Some(day) = rows
        .first()
        .map(|r| EPOCH + time::Duration::days(r.day as i64))
    else {
        return Ok(None);
    };
    let level = |code: &str| {
        tree.get(code)
            .map(|i| tree.node(i).level.as_str().to_string())
            .unwrap_or_default()
    };
    let parent = |code: &str| {
        tree.get(code)
            .and_then(|i| tree.node(i).parent)
            .map(|p| tree.node(p).code.clone())
            .unwrap_or_default()
    };
    let frame = df!(
        "node" => rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        "metric" => rows.iter().map(|r| r.metric.clone()).collect::<Vec<_>>(),
        "value" => rows.iter().map(|r| r.value).collect::<Vec<_>>(),
        "num" => rows.iter().map(|r| r.num).collect::<Vec<_>>(),
        "den" => rows.iter().map(|r| r.den).collect::<Vec<_>>(),
        "status" => rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>(),
        "level" => rows.iter().map(|r| level(&r.node)).collect::<Vec<_>>(),
        "parent" => rows.iter().map(|r| parent(&r.node)).collect::<Vec<_>>()
    )?;
    Ok(Some((day, frame)))
}

#[derive(clickhouse::Row, Serialize)]
struct ProgressRow {
    day: u16,
    node: String,
    metric: String,
    value: Option<f64>,
    target: f64,
    due: Option<u16>,
    projected: Option<f64>,
    gap: Option<f64>,
    status: String,
}

/// Target progress: for every node and metric of the latest snapshot day, the value, target,
/// deadline, the value projected to the deadline, the gap and the status.
pub async fn run_progress(
    store: &Store,
    tree: &Arc<OrgTree>,
    catalogue: &Catalogue,
) -> Result<u64, JobError> {
    recorded(store, "progress", async {
        let Some((day, frame)) = latest_snapshots(store, tree).await? else {
            return Ok(0);
        };
        let samples = recent_samples(store, tree, catalogue).await?;
        let end_of_day =
            PrimitiveDateTime::new(day, Time::from_hms(23, 59, 59).unwrap_or(Time::MIDNIGHT))
                .assume_offset(SHANGHAI);
        // polars: the snapshot with its target and gap beside it (tracked metrics, without a
        // target, have no progress to show).
        let targeted: Vec<_> = catalogue
            .metrics
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.target?.value)))
            .collect();
        let targets = df!(
            "metric" => targeted.iter().map(|t| t.0).collect::<Vec<_>>(),
            "target" => targeted.iter().map(|t| t.1).collect::<Vec<_>>()
        )?;
        let frame = on_polars_thread(move || {
            frame
                .lazy()
                .join(
                    targets.lazy(),
                    [col("metric")],
                    [col("metric")],
                    JoinArgs::new(JoinType::Inner),
                )
                .with_columns([(col("target") - col("value")).alias("gap")])
                .collect()
        })
        .await?;
        let (nodes, metrics) = (frame.column("node")?.str()?, frame.column("metric")?.str()?);
        let (values, nums, dens) = (
            frame.column("value")?.f64()?,
            frame.column("num")?.i64()?,
            frame.column("den")?.i64()?,
        );
        let (statuses, gaps, target_col) = (
            frame.column("status")?.str()?,
            frame.column("gap")?.f64()?,
            frame.column("target")?.f64()?,
        );
        let mut rows = Vec::with_capacity(frame.height());
        for i in 0..frame.height() {
            let (Some(node), Some(metric)) = (
                nodes.get(i),
                metrics.get(i).and_then(|m| catalogue.parse_name(m)),
            ) else {
                continue;
            };
            let Some(def) = catalogue.get(metric) else {
                continue;
            };
            let Some(target) = def.target else { continue };
            let Some(idx) = tree.get(node) else { continue };
            let value = values.get(i);
            let snapshot_status = statuses.get(i).unwrap_or_default().to_string();
            let history = samples
                .get(&(idx, metric))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let due = match target.deadline {
                Deadline::Fixed(d) => Some(d),
                Deadline::Every(period) => Some(period.bounds(day).1),
                Deadline::Standing => None,
            };
            let (projected, status) = if target.on == Judged::Overdue {
                // Judged on overdue cases, which the snapshot judged with everything at hand.
                (None, snapshot_status)
            } else {
                let reading = Reading {
                    num: nums.get(i).unwrap_or(0),
                    den: dens.get(i),
                    has_data: snapshot_status != "no_data",
                    ..Reading::default()
                };
                let figure = judge(def, reading, end_of_day, history);
                let projected = match (value, target.deadline) {
                    (Some(v), Deadline::Fixed(d)) if day <= d => Some(project(v, history, day, d)),
                    _ => None,
                };
                let status = figure.status.as_str().to_string();
                (projected, status)
            };
            rows.push(ProgressRow {
                day: epoch_day(day),
                node: node.to_string(),
                metric: metric.as_str().into(),
                value,
                target: target_col.get(i).unwrap_or(target.value),
                due: due.map(epoch_day),
                projected: projected.map(|p| (p * 1e6).round() / 1e6),
                gap: gaps.get(i).map(|g| (g * 1e6).round() / 1e6),
                status,
            });
        }
        let _gate = store.insert_gate().read().await;
        let mut insert = store
            .client()
            .insert::<ProgressRow>("target_progress")
            .await?;
        for r in &rows {
            insert.write(r).await?;
        }
        insert.end().await?;
        Ok(rows.len() as u64)
    })
    .await
}

#[derive(clickhouse::Row, Serialize)]
struct LeagueRow {
    day: u16,
    metric: String,
    level: String,
    /// The table: `440300` for all districts (or all streets), a district code for its streets.
    within: String,
    node: String,
    value: f64,
    rank: u32,
    of: u32,
}

/// League tables of the latest snapshot day: districts city-wide, streets city-wide and
/// streets within their district, per metric (best first; fewer open appeals is better).
pub async fn run_league(
    store: &Store,
    tree: &Arc<OrgTree>,
    catalogue: &Catalogue,
) -> Result<u64, JobError> {
    // Lower is better where the target is a most (no appeal overdue).
    let lower_is_better: Vec<String> = catalogue
        .metrics
        .iter()
        .filter(|m| m.target.is_some_and(|t| t.at_most))
        .map(|m| m.name.clone())
        .collect();
    recorded(store, "league", async {
        let Some((day, frame)) = latest_snapshots(store, tree).await? else {
            return Ok(0);
        };
        let city = tree.node(tree.root()).code.clone();
        let tables = on_polars_thread(move || {
            let ranked = |within: Expr, level: &str| -> PolarsResult<LazyFrame> {
                let descending = lower_is_better
                    .iter()
                    .fold(lit(true), |e, m| e.and(col("metric").neq(lit(m.clone()))));
                // Lower is better for some: rank on the negated value there.
                let score = when(descending).then(col("value")).otherwise(-col("value"));
                Ok(frame
                    .clone()
                    .lazy()
                    .filter(
                        col("level")
                            .eq(lit(level.to_string()))
                            .and(col("value").is_not_null()),
                    )
                    .with_columns([within.alias("within"), score.alias("score")])
                    .with_columns([
                        col("score")
                            .rank(
                                RankOptions {
                                    method: RankMethod::Min,
                                    descending: true,
                                },
                                None,
                            )
                            .over([col("metric"), col("within")])?
                            .cast(DataType::UInt32)
                            .alias("rank"),
                        col("node")
                            .count()
                            .over([col("metric"), col("within")])?
                            .cast(DataType::UInt32)
                            .alias("of"),
                    ])
                    .select([
                        col("metric"),
                        col("level"),
                        col("within"),
                        col("node"),
                        col("value"),
                        col("rank"),
                        col("of"),
                    ]))
            };
            concat(
                [
                    ranked(lit(city.clone()), Level::District.as_str())?,
                    ranked(lit(city.clone()), Level::Street.as_str())?,
                    ranked(col("parent"), Level::Street.as_str())?,
                ],
                UnionArgs::default(),
            )?
            .collect()
        })
        .await?;
        let (metrics, levels, within, nodes) = (
            tables.column("metric")?.str()?,
            tables.column("level")?.str()?,
            tables.column("within")?.str()?,
            tables.column("node")?.str()?,
        );
        let (values, ranks, ofs) = (
            tables.column("value")?.f64()?,
            tables.column("rank")?.u32()?,
            tables.column("of")?.u32()?,
        );
        let _gate = store.insert_gate().read().await;
        let mut insert = store.client().insert::<LeagueRow>("league_tables").await?;
        for i in 0..tables.height() {
            insert
                .write(&LeagueRow {
                    day: epoch_day(day),
                    metric: metrics.get(i).unwrap_or_default().into(),
                    level: levels.get(i).unwrap_or_default().into(),
                    within: within.get(i).unwrap_or_default().into(),
                    node: nodes.get(i).unwrap_or_default().into(),
                    value: values.get(i).unwrap_or(0.0),
                    rank: ranks.get(i).unwrap_or(0),
                    of: ofs.get(i).unwrap_or(0),
                })
                .await?;
        }
        insert.end().await?;
        Ok(tables.height() as u64)
    })
    .await
}

#[derive(clickhouse::Row, Serialize)]
struct FreshnessRow {
    day: u16,
    node: String,
    kind: String,
    last_at: u32,
    last_received: u32,
    days_since: u32,
}

/// Data freshness: per node (its whole subtree) and record kind, the newest record and how
/// many days ago it was received; kind `*` for any kind.
pub async fn run_freshness(
    store: &Store,
    tree: &Arc<OrgTree>,
    now: OffsetDateTime,
) -> Result<u64, JobError> {
    recorded(store, "freshness", async {
        let oks = store.ok_imports().await?;
        let per_org: Vec<(String, String, u32, u32)> = store
            .client()
            .query(&format!(
                "SELECT org, kind, toUInt32(max(at)), toUInt32(max(received_at)) FROM events WHERE {EFFECTIVE_EVENTS} GROUP BY org, kind"
            ))
            .bind(counted_imports_param(&oks))
            .bind(counted_imports_param(&oks))
            .with_setting("wait_end_of_query", "1")
            .fetch_all()
            .await?;
        // Each org's row counts for the org and every ancestor: explode the path, then take the
        // newest per (node, kind).
        let mut ancestors: HashMap<&str, Vec<String>> = HashMap::new();
        for (idx, node) in tree.nodes() {
            ancestors.insert(node.code.as_str(), tree.path_to_root(idx).map(|a| tree.node(a).code.clone()).collect());
        }
        let (mut node_col, mut kind_col, mut at_col, mut recv_col) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (org, kind, at, received) in &per_org {
            for a in ancestors.get(org.as_str()).into_iter().flatten() {
                for k in [kind.as_str(), "*"] {
                    node_col.push(a.clone());
                    kind_col.push(k.to_string());
                    at_col.push(*at);
                    recv_col.push(*received);
                }
            }
        }
        let today = now.to_offset(SHANGHAI).date();
        let now_secs = now.unix_timestamp().max(0) as u32;
        let fresh = on_polars_thread(move || {
            df!("node" => node_col, "kind" => kind_col, "last_at" => at_col, "last_received" => recv_col)?
            .lazy()
            .group_by([col("node"), col("kind")])
            .agg([col("last_at").max(), col("last_received").max()])
            .with_columns([((lit(now_secs as i64) - col("last_received").cast(DataType::Int64)) / lit(86_400i64))
                .clip_min(lit(0i64))
                .cast(DataType::UInt32)
                .alias("days_since")])
            .sort(["node", "kind"], Default::default())
            .collect()
        })
        .await?;
        let (nodes, kinds) = (fresh.column("node")?.str()?, fresh.column("kind")?.str()?);
        let (ats, recvs, days) = (fresh.column("last_at")?.u32()?, fresh.column("last_received")?.u32()?, fresh.column("days_since")?.u32()?);
        let _gate = store.insert_gate().read().await;
        let mut insert = store.client().insert::<FreshnessRow>("data_freshness").await?;
        for i in 0..fresh.height() {
            insert
                .write(&FreshnessRow {
                    day: epoch_day(today),
                    node: nodes.get(i).unwrap_or_default().into(),
                    kind: kinds.get(i).unwrap_or_default().into(),
                    last_at: ats.get(i).unwrap_or(0),
                    last_received: recvs.get(i).unwrap_or(0),
                    days_since: days.get(i).unwrap_or(0),
                })
                .await?;
        }
        insert.end().await?;
        Ok(fresh.height() as u64)
    })
    .await
}

/// Runs one job by name (`all`: snapshots, then the three tables); rows written per job.
pub async fn run_named(
    store: &Store,
    tree: &Arc<OrgTree>,
    catalogue: &Catalogue,
    job: &str,
    now: OffsetDateTime,
) -> Result<Vec<(String, u64)>, JobError> {
    let today = now.to_offset(SHANGHAI).date();
    let mut done = Vec::new();
    if matches!(job, "snapshots" | "all") {
        done.push((
            "snapshots".to_string(),
            super::snapshots::run(store, tree.clone(), Arc::new(catalogue.clone()), today).await?,
        ));
    }
    if matches!(job, "progress" | "all") {
        done.push((
            "progress".to_string(),
            run_progress(store, tree, catalogue).await?,
        ));
    }
    if matches!(job, "league" | "all") {
        done.push((
            "league".to_string(),
            run_league(store, tree, catalogue).await?,
        ));
    }
    if matches!(job, "freshness" | "all") {
        done.push((
            "freshness".to_string(),
            run_freshness(store, tree, now).await?,
        ));
    }
    Ok(done)
}
