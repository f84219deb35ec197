//! Batch jobs and the history they write: runs, trends.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;
use time::Date;

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::{authorize, Action};
use crate::batch::snapshots;
use crate::wire::figures::TrendsAnswer;
use crate::wire::ops::{JobRun, JobsRun};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_jobs)
        .service(run_snapshots)
        .service(trends)
        .service(brief_days)
        .service(brief_pdf)
        .service(print_brief_now)
        .service(brief);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BriefQuery {
    /// The day, YYYY-MM-DD (default: the newest day with snapshots).
    #[param(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    date: Option<String>,
    /// Org code (default: the caller's scope); its direct children are the columns.
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
}

/// One metric of the brief: the scope's figure on the day and the day before, and each child's,
/// with the metric's catalogue entry (its target stated as every page states it).
#[derive(serde::Serialize)]
struct BriefMetric {
    #[serde(flatten)]
    entry: crate::wire::figures::CatalogueEntry,
    day: Option<BriefFigure>,
    before: Option<BriefFigure>,
    children: Vec<BriefChild>,
}

#[derive(serde::Serialize, Clone)]
struct BriefFigure {
    value: Option<f64>,
    status: String,
    /// Cases metrics: open cases past a deadline that day.
    #[serde(skip_serializing_if = "Option::is_none")]
    overdue: Option<i64>,
}

#[derive(serde::Serialize)]
struct BriefChild {
    code: String,
    name: String,
    value: Option<f64>,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    overdue: Option<i64>,
    /// What the child must still do, from the live figures (the newest day's brief only: a
    /// past day's brief says what was known then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pace: Option<crate::wire::unit::PaceView>,
}

/// The alerts of one rule under one child of the scope (a district of the city, a street of a
/// district) on the brief's day: how many fired that day and how many were open at its end.
#[derive(serde::Serialize)]
struct BriefAlertGroup {
    rule: String,
    /// What the rule is about, in a few words (信访超期, 7 天以上未报送 …).
    title: String,
    severity: String,
    /// The scope's child the alerts lie under (the scope itself for its own alerts).
    area: String,
    area_name: String,
    fired: usize,
    open_at_end: usize,
    /// The units concerned (their names), the ones open at the day's end first.
    nodes: Vec<String>,
}

/// A snapshot's status as the catalogue judges now: a metric without a target was snapshotted
/// as `on_track` before `tracked` existed.
fn snapshot_status(def: &crate::domain::catalogue::MetricDef, status: &str) -> String {
    if def.target.is_none() && status == "on_track" {
        "tracked".into()
    } else {
        status.into()
    }
}

/// The daily brief (每日简报): the day's figures from the nightly snapshots beside the day
/// before's, each child's, and the day's alerts grouped by rule and area — a past day shows
/// that day's figures. Only the metrics shown at the scope's level are in it.
#[utoipa::path(get, path = "/api/v1/brief", tag = "jobs", params(BriefQuery),
    responses((status = 200, body = Object, description = "{date, before, scope, scope_name, scope_level, child_level, children, metrics: [{…catalogue entry, day: {value, status, overdue}, before, children: [{code, name, value, status, overdue}]}], alert_groups: [{rule, title, severity, area, area_name, fired, open_at_end, nodes}], alerts_since, corrections: {corrected, withdrawn} (records of the scope corrected and withdrawn that day)}"),
        (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/brief")]
async fn brief(
    caller: Caller,
    q: Params<BriefQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use crate::batch::brief;
    // Without ?scope=, the caller's own (a district's leader reads the district's brief).
    let own = state.tree.node(caller.0.scope).code.clone();
    let (code, scope) =
        super::auth::readable_scope(&caller.0, &state, Some(q.scope.as_deref().unwrap_or(&own)))?;
    let day = brief_day(&state, q.date.as_deref()).await?;
    let tree = &state.tree;
    let scope_node = tree.node(scope);
    let children: Vec<_> = scope_node.children.clone();
    let mut nodes: Vec<String> = vec![code.clone()];
    nodes.extend(children.iter().map(|c| tree.node(*c).code.clone()));
    let rows = brief::snapshots(&state.store, day, &nodes).await?;
    if !rows.iter().any(|r| i64::from(r.day) == day_number(day)) {
        return Err(ApiError::NotFound {
            what: format!("snapshots of {day} (the nightly job writes each day's)"),
        });
    }
    let before = day.previous_day().unwrap_or(day);
    let catalogue = state.hub.catalogue();
    // The required pace of each child, for the newest day's brief (today's or yesterday's).
    let now = state.hub.now();
    let today = crate::domain::time::local_date(now);
    // With the live figure it was computed from: a line of the brief shows it only where that
    // figure is the one the brief's snapshot says (else the value and the pace would disagree).
    type Live = (crate::wire::unit::PaceView, Option<f64>, Option<i64>);
    let mut paces: std::collections::HashMap<(String, String), Live> = Default::default();
    if day >= today.previous_day().unwrap_or(today) {
        use crate::domain::pace::{pace, SOON_DAYS};
        state.hub.read(now, |agg| {
            for def in &catalogue.metrics {
                for &c in &children {
                    let Some(f) = agg.figure(c, def.id, now) else {
                        continue;
                    };
                    let soon = agg.due_within(c, def.id, (SOON_DAYS * 86_400) as u32);
                    if let Some(p) = pace(def, &catalogue.kinds, &f, today, soon) {
                        paces.insert(
                            (tree.node(c).code.clone(), def.name.clone()),
                            (p.into(), f.value, f.overdue),
                        );
                    }
                }
            }
        });
    }
    let metrics: Vec<BriefMetric> = catalogue
        .metrics
        .iter()
        .filter(|def| def.applies_to(scope_node.level))
        // One sheet: the reporting rates of single kinds are said in the brief's line on late
        // reports (which kind, which units); the table keeps the rates over all of them.
        .filter(|def| {
            !matches!(&def.measure, crate::domain::catalogue::Measure::Reporting(r) if r.kinds.len() == 1)
        })
        .map(|def| {
            let find = |d: Date, node: &str| {
                rows.iter()
                    .find(|r| {
                        i64::from(r.day) == day_number(d) && r.node == node && r.metric == def.name
                    })
                    .map(|r| BriefFigure {
                        value: r.value,
                        status: snapshot_status(def, &r.status),
                        overdue: r.overdue,
                    })
            };
            BriefMetric {
                entry: crate::wire::figures::CatalogueEntry::from(def),
                day: find(day, &code),
                before: find(before, &code),
                children: children
                    .iter()
                    .filter(|c| def.applies_to(tree.node(**c).level))
                    .filter_map(|c| {
                        let node = tree.node(*c);
                        find(day, &node.code).map(|f| BriefChild {
                            pace: paces
                                .remove(&(node.code.clone(), def.name.clone()))
                                .filter(|(_, value, overdue)| {
                                    *overdue == f.overdue
                                        && match (value, f.value) {
                                            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                                            (a, b) => a.is_none() && b.is_none(),
                                        }
                                })
                                .map(|(p, _, _)| p),
                            code: node.code.clone(),
                            name: node.name.clone(),
                            value: f.value,
                            status: f.status,
                            overdue: f.overdue,
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    // What each rule's alerts are about, in a few words (the brief groups them by rule).
    let rules = state.alerts.rules();
    let titles: std::collections::HashMap<String, String> = rules
        .iter()
        .map(|r| (r.name.clone(), r.title(&catalogue)))
        .collect();
    let mut groups: std::collections::BTreeMap<(String, u32), BriefAlertGroup> = Default::default();
    for a in brief::alert_day(&state.store, day).await? {
        let Some(node) = tree.get(&a.node).filter(|&n| tree.is_within(n, scope)) else {
            continue;
        };
        let area = tree.child_toward(scope, node).unwrap_or(scope);
        let group = groups
            .entry((a.rule.clone(), area))
            .or_insert_with(|| BriefAlertGroup {
                rule: a.rule.clone(),
                title: titles
                    .get(&a.rule)
                    .cloned()
                    .unwrap_or_else(|| a.rule.clone()),
                severity: a.severity.clone(),
                area: tree.node(area).code.clone(),
                area_name: tree.node(area).name.clone(),
                fired: 0,
                open_at_end: 0,
                nodes: Vec::new(),
            });
        group.fired += usize::from(a.fired == 1);
        group.open_at_end += usize::from(a.open_at_end == 1);
        if severity_rank(&a.severity) > severity_rank(&group.severity) {
            group.severity = a.severity.clone();
        }
        let name = tree.node(node).name.clone();
        if a.open_at_end == 1 {
            group.nodes.insert(0, name);
        } else {
            group.nodes.push(name);
        }
    }
    let mut alert_groups: Vec<BriefAlertGroup> = groups.into_values().collect();
    alert_groups.sort_by(|a, b| {
        severity_rank(&b.severity)
            .cmp(&severity_rank(&a.severity))
            .then(b.open_at_end.cmp(&a.open_at_end))
            .then(b.fired.cmp(&a.fired))
            .then(a.area.cmp(&b.area))
    });
    let alerts_since = brief::alerts_since(&state.store).await?;
    let (corrected, withdrawn) = brief::corrections_on(&state.store, day, &code).await?;
    let late_reports = brief::late_reports(&state.store, &catalogue.kinds, day, &code).await?;
    let tasks = brief::tasks_on(&state.store, day, &code).await?;
    // The printed copy is the city's; a district's reader gets its own page only.
    let pdf = scope == tree.root() && state.brief.pdf_path(day).is_file();
    let child_level = children.first().map(|c| tree.node(*c).level.as_str());
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "date": day.to_string(), "before": before.to_string(), "scope": code,
        "scope_name": scope_node.name, "scope_level": scope_node.level.as_str(),
        "child_level": child_level, "children": children.len(),
        "metrics": metrics, "alert_groups": alert_groups,
        "alerts_since": alerts_since.map(|d| d.to_string()),
        "corrections": {"corrected": corrected, "withdrawn": withdrawn},
        "late_reports": late_reports,
        "tasks": tasks,
        "pdf": pdf.then(|| format!("/api/v1/brief/pdf?date={day}")),
    })))
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    }
}

/// The day a brief request names, or the newest day with snapshots.
async fn brief_day(state: &AppState, date: Option<&str>) -> Result<Date, ApiError> {
    match date {
        Some(d) => crate::domain::time::parse_day(d).map_err(|e| ApiError::bad_request("date", e)),
        None => {
            let newest = crate::batch::brief::days(&state.store, 1).await?;
            let d = newest.first().ok_or_else(|| ApiError::NotFound {
                what: "a day with snapshots (the nightly job writes them)".into(),
            })?;
            Ok(crate::domain::time::parse_day(d).map_err(|e| anyhow::anyhow!(e))?)
        }
    }
}

/// Prints `day`'s brief of the city to its PDF (`brief.dir`) with headless Chromium, reading
/// the page from this very server; answers the PDF's size.
pub async fn print_brief(state: &AppState, day: Date) -> anyhow::Result<u64> {
    let chromium = state.brief.printer().ok_or_else(|| {
        anyhow::anyhow!(
            "no Chromium to print with (brief.chromium = '{}')",
            state.brief.chromium
        )
    })?;
    let url = format!(
        "{}/brief?date={day}&print=1&token={}",
        state.local_url,
        state.auth.printer_token()
    );
    let timeout = std::time::Duration::from_secs(state.brief.print_timeout_secs.max(5));
    crate::batch::brief::print_pdf(&chromium, &url, &state.brief.pdf_path(day), timeout).await
}

/// Prints the brief of the newest day with snapshots (the nightly job, after the snapshots).
pub async fn print_newest_brief(state: &AppState) -> anyhow::Result<(Date, u64)> {
    let day = brief_day(state, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((day, print_brief(state, day).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BriefPdfQuery {
    /// The day, YYYY-MM-DD (default: the newest day with snapshots).
    #[param(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    date: Option<String>,
}

/// The city's brief of a day as the nightly job printed it (A4 PDF); 404 when it was not
/// printed (no Chromium on the server, or the day predates it) — the page `/brief` still is.
#[utoipa::path(get, path = "/api/v1/brief/pdf", tag = "jobs", params(BriefPdfQuery),
    responses((status = 200, content_type = "application/pdf", description = "the printed brief"),
        (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/brief/pdf")]
async fn brief_pdf(
    req: actix_web::HttpRequest,
    caller: Caller,
    q: Params<BriefPdfQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let root = state.tree.node(state.tree.root()).code.clone();
    super::auth::readable_scope(&caller.0, &state, Some(&root))?;
    let day = brief_day(&state, q.date.as_deref()).await?;
    let file = actix_files::NamedFile::open_async(state.brief.pdf_path(day))
        .await
        .map_err(|_| ApiError::NotFound {
            what: format!(
                "a printed brief of {day} (printed nightly where Chromium is installed; the page /brief?date={day} is served)"
            ),
        })?;
    Ok(file
        .set_content_type(
            "application/pdf"
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        )
        .set_content_disposition(actix_web::http::header::ContentDisposition {
            disposition: actix_web::http::header::DispositionType::Inline,
            parameters: vec![actix_web::http::header::DispositionParam::Filename(
                format!("brief-{day}.pdf"),
            )],
        })
        .into_response(&req))
}

/// Prints a day's brief to PDF now (admin), as the nightly job does; 503 without Chromium.
#[utoipa::path(post, path = "/api/v1/brief/pdf", tag = "jobs", params(BriefPdfQuery),
    responses((status = 200, description = "{date, bytes, pdf}"), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/brief/pdf")]
async fn print_brief_now(
    caller: Caller,
    q: Params<BriefPdfQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state.tree, &caller.0, Action::Admin, state.tree.root())?;
    let day = brief_day(&state, q.date.as_deref()).await?;
    // Only a day with snapshots has a brief to print.
    if !crate::batch::brief::days(&state.store, 366)
        .await?
        .contains(&day.to_string())
    {
        return Err(ApiError::NotFound {
            what: format!("snapshots of {day} (the nightly job writes each day's)"),
        });
    }
    if state.brief.printer().is_none() {
        return Err(ApiError::Unavailable {
            reason: format!(
                "no Chromium to print with (brief.chromium = '{}'); the page /brief?date={day} is served",
                state.brief.chromium
            ),
            retry_after_secs: None,
        });
    }
    let bytes = print_brief(&state, day).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "date": day.to_string(), "bytes": bytes, "pdf": format!("/api/v1/brief/pdf?date={day}"),
    })))
}

fn day_number(d: Date) -> i64 {
    i64::from(d.to_julian_day()) - 2_440_588
}

/// Days with a brief (days the nightly snapshots cover), newest first (the last 366).
#[utoipa::path(get, path = "/api/v1/brief/days", tag = "jobs",
    responses((status = 200, body = Vec<String>)), security(("bearer" = [])))]
#[get("/api/v1/brief/days")]
async fn brief_days(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    Ok(HttpResponse::Ok().json(crate::batch::brief::days(&state.store, 366).await?))
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
    // The job reads ClickHouse: what was just accepted is in it first (the writer lands it
    // within a second or two; a stuck writer is reported by /readyz, not waited for here).
    if !state
        .ingest
        .wait_landed(std::time::Duration::from_secs(30))
        .await
    {
        tracing::warn!(job = %job, "records accepted are not all in ClickHouse yet; the job runs without them");
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
#[into_params(parameter_in = Query)]
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

/// Daily values from the snapshots: `{metric: {node: [[day, value, overdue], …]}}`.
#[utoipa::path(get, path = "/api/v1/trends", tag = "jobs", params(TrendQuery),
    responses((status = 200, body = Object, description = "`{metric: {node: [[YYYY-MM-DD, value or null, overdue or null], …]}}`: overdue is a cases metric's overdue count that day (what its status is judged on), null for other metrics")), security(("bearer" = [])))]
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
    for (metric, node, day, value, overdue) in rows {
        let day = (epoch + time::Duration::days(day as i64)).to_string();
        out.entry(metric)
            .or_default()
            .entry(node)
            .or_default()
            .push((day, value, overdue));
    }
    Ok(HttpResponse::Ok().json(out))
}
