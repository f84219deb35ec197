//! Batch jobs and the history they write: runs, trends.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::{authorize, Action};
use crate::batch::snapshots;
use crate::wire::figures::TrendsAnswer;
use crate::wire::ops::{JobRun, JobsRun};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_jobs)
        .service(run_snapshots)
        .service(trends);
}

/// Recorded job runs, newest first (the last 200).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", responses((status = 200, body = Vec<JobRun>)), security(("bearer" = [])))]
#[get("/api/v1/jobs")]
async fn list_jobs(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    let runs: Vec<JobRun> = snapshots::recent_runs(&state.store, 200)
        .await?
        .into_iter()
        .map(JobRun::from)
        .collect();
    Ok(HttpResponse::Ok().json(runs))
}

/// Runs a batch job now (admin): `snapshots`, `progress`, `league`, `freshness` or `all`;
/// answers when it is done with the rows each job wrote.
#[utoipa::path(post, path = "/api/v1/jobs/{job}", tag = "jobs",
    responses((status = 200, body = JobsRun), (status = 403, body = super::error::ErrorBody),
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
        &state.hub.catalogue(),
        &job,
        state.hub.now(),
    )
    .await?;
    if done.iter().any(|(j, _)| j == "snapshots") {
        state.hub.set_samples(
            snapshots::recent_samples(&state.store, &state.tree, &state.hub.catalogue()).await?,
        );
    }
    Ok(HttpResponse::Ok().json(JobsRun {
        rows: done.iter().map(|(_, n)| n).sum(),
        jobs: done.into_iter().collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TrendQuery {
    /// Org code (default: the city); its direct children are included.
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
    /// Comma-separated metric ids (default: all).
    metrics: Option<String>,
    /// How many days back (default 365, at most 4000).
    #[param(minimum = 1, maximum = 4000)]
    days: Option<u32>,
}

/// Daily values from the snapshots: `{metric: {node: [[day, value], …]}}`.
#[utoipa::path(get, path = "/api/v1/trends", tag = "jobs", params(TrendQuery),
    responses((status = 200, body = Object, description = "`{metric: {node: [[YYYY-MM-DD, value or null], …]}}`")), security(("bearer" = [])))]
#[get("/api/v1/trends")]
async fn trends(
    caller: Caller,
    q: Params<TrendQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, scope) = super::auth::readable_scope(&caller.0, &state, q.scope.as_deref())?;
    let days = super::params::in_range("days", q.days.unwrap_or(365).into(), 1, 4000)?;
    let tree = &state.tree;
    let metrics = super::figures::parse_metrics(&state.hub.catalogue(), q.metrics.as_deref())?;
    let nodes: Vec<String> = tree
        .with_children(scope)
        .into_iter()
        .map(|n| tree.node(n).code.clone())
        .collect();
    let names: Vec<&str> = metrics.iter().map(|m| m.as_str()).collect();
    let rows = snapshots::trend_series(&state.store, &names, &nodes, days).await?;
    let epoch = time::Date::from_calendar_date(1970, time::Month::January, 1)
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut out = TrendsAnswer::new();
    for (metric, node, day, value) in rows {
        let day = (epoch + time::Duration::days(day as i64)).to_string();
        out.entry(metric)
            .or_default()
            .entry(node)
            .or_default()
            .push((day, value));
    }
    Ok(HttpResponse::Ok().json(out))
}
