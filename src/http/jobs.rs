//! Batch jobs and the history they write: runs, trends.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::{authorize, Action};
use crate::batch::snapshots::JobRun;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_jobs)
        .service(run_snapshots)
        .service(trends);
}

/// Recorded job runs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", responses((status = 200, description = "[{job, started, ended, rows, outcome}]")), security(("bearer" = [])))]
#[get("/api/v1/jobs")]
async fn list_jobs(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    let runs: Vec<JobRun> = state
        .store
        .client()
        .query("SELECT ?fields FROM job_runs ORDER BY started DESC LIMIT 200")
        .fetch_all()
        .await?;
    Ok(HttpResponse::Ok().json(runs))
}

/// Runs a batch job now (admin): `snapshots`, `progress`, `league`, `freshness` or `all`;
/// answers when it is done with the rows each job wrote.
#[utoipa::path(post, path = "/api/v1/jobs/{job}", tag = "jobs",
    responses((status = 200, description = "{rows, jobs: {job: rows}}"), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[post("/api/v1/jobs/{job}")]
async fn run_snapshots(
    caller: Caller,
    job: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0;
    authorize(&state.tree, &who, Action::Admin, state.tree.root())?;
    if !crate::batch::decision::JOBS.contains(&job.as_str()) {
        return Err(ApiError::NotFound {
            what: format!(
                "job {job}; jobs: {}",
                crate::batch::decision::JOBS.join(", ")
            ),
        });
    }
    let done = crate::batch::decision::run_named(
        &state.store,
        &state.tree,
        state.appeals_sla,
        &job,
        state.hub.now(),
    )
    .await
    .map_err(|e| match e {
        crate::batch::decision::JobError::Store(s) => ApiError::from(s),
        other => ApiError::Unexpected(anyhow::anyhow!(other)),
    })?;
    if done.iter().any(|(j, _)| j == "snapshots") {
        state
            .hub
            .set_samples(crate::batch::snapshots::recent_samples(&state.store, &state.tree).await?);
    }
    let rows: u64 = done.iter().map(|(_, n)| n).sum();
    let jobs: serde_json::Map<String, serde_json::Value> =
        done.into_iter().map(|(j, n)| (j, n.into())).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"rows": rows, "jobs": jobs})))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TrendQuery {
    /// Org code (default: the city); its direct children are included.
    scope: Option<String>,
    /// Comma-separated metric ids (default: all).
    metrics: Option<String>,
    /// How many days back (default 365).
    days: Option<u32>,
}

/// Daily values from the snapshots: `{metric: {node: [[day, value], …]}}`.
#[utoipa::path(get, path = "/api/v1/trends", tag = "jobs", params(TrendQuery),
    responses((status = 200, description = "{metric: {node: [[YYYY-MM-DD, value|null], …]}}")), security(("bearer" = [])))]
#[get("/api/v1/trends")]
async fn trends(
    caller: Caller,
    q: Params<TrendQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, scope) = super::auth::readable_scope(&caller.0, &state, q.scope.as_deref())?;
    let days = super::params::in_range("days", q.days.unwrap_or(365).into(), 1, 4000)?;
    let tree = &state.tree;
    let metrics = super::figures::parse_metrics(q.metrics.as_deref())?;
    let nodes: Vec<String> = tree
        .with_children(scope)
        .into_iter()
        .map(|n| tree.node(n).code.clone())
        .collect();
    let names: Vec<String> = metrics.iter().map(|m| m.as_str().to_string()).collect();
    let rows: Vec<(String, String, u16, Option<f64>)> = state
        .store
        .client()
        .query(
            "SELECT metric, node, day, argMax(value, day) FROM metric_snapshots FINAL \
             WHERE has(?, metric) AND has(?, node) AND day >= today() - ? GROUP BY metric, node, day ORDER BY metric, node, day",
        )
        .bind(names)
        .bind(nodes)
        .bind(days)
        .with_setting("wait_end_of_query", "1")
        .fetch_all()
        .await?;
    let epoch = time::Date::from_calendar_date(1970, time::Month::January, 1).expect("valid");
    let mut out = serde_json::Map::new();
    for (metric, node, day, value) in rows {
        let day = (epoch + time::Duration::days(day as i64)).to_string();
        let m = out.entry(metric).or_insert_with(|| serde_json::json!({}));
        let series = m
            .as_object_mut()
            .expect("object")
            .entry(node)
            .or_insert_with(|| serde_json::json!([]));
        series
            .as_array_mut()
            .expect("array")
            .push(serde_json::json!([day, value]));
    }
    Ok(HttpResponse::Ok().json(out))
}
