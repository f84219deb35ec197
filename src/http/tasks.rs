//! Tasks down the tree (部署 / 督办): `POST /api/v1/tasks` issues one, `GET /api/v1/tasks`
//! lists them, `GET /api/v1/tasks/{id}` shows one with every assignment and its timeline,
//! `POST /api/v1/tasks/{id}/assignments/{org}/{action}` takes a step on an assignment, and
//! `GET /api/v1/tasks/mine` / `…/feed` serve the unit workspace and the wall screen.
//!
//! Every step is a record of a task kind, checked by the one validation path and made durable
//! by the one log like any other record; the board (`live::tasks`) says where each assignment
//! stands. A step's record id is its number on the assignment, so two steps raced on one
//! assignment (here or on another instance) cannot both land: exactly-once keeps the first.

use std::sync::LazyLock;

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{
    auth::{readable_scope, Caller},
    params::Params,
    ApiError, AppState,
};
use crate::auth::{Principal, Role};
use crate::domain::metric::Status;
use crate::domain::org::{Level, NodeIdx};
use crate::domain::record::{EventRow, TASKS_SOURCE};
use crate::domain::task::{
    self, assignment_subject, step_id, Priority, Side, Step, CREATED_KIND, ISSUED_KIND,
};
use crate::domain::time::{parse_day, rfc3339, SHANGHAI};
use crate::wire::tasks::{
    AssignmentView, FeedEntry, NewTask, Selector, StepIn, TaskFeed, TaskIssued, TaskList, TaskView,
    UnitAssignment, UnitAssignments,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(issue)
        .service(list)
        .service(mine)
        .service(feed)
        .service(one)
        .service(act);
}

/// The most units one task (or one delegation) goes to.
pub const MAX_UNITS: usize = 1000;
const MAX_TITLE_CHARS: usize = 100;
const MAX_INSTRUCTION_CHARS: usize = 2000;
const MAX_TEXT_CHARS: usize = 1000;
const MAX_REASON_CHARS: usize = 500;
/// A delegation's record names its units while they fit a record's data.
const MAX_DELEGATED: usize = 200;
const DEFAULT_SIGN_HOURS: u32 = 24;
const MAX_DUE_SECONDS: i64 = 315_360_000;

/// Steps are judged against the board and logged one at a time on this instance.
static STEPS: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

fn bounded(
    field: &str,
    value: Option<&str>,
    max: usize,
    required: bool,
) -> Result<String, ApiError> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() && required {
        return Err(ApiError::bad_request(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_request(
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(value.to_string())
}

/// The deadline a client names: a day (its end, Shenzhen time) or an RFC 3339 instant.
fn parse_due(due: &str, now: OffsetDateTime) -> Result<OffsetDateTime, ApiError> {
    let at = if due.len() == 10 {
        let day = parse_day(due).map_err(|e| ApiError::bad_request("due", e))?;
        day.with_hms(23, 59, 59)
            .map_err(|e| ApiError::bad_request("due", e.to_string()))?
            .assume_offset(SHANGHAI)
    } else {
        OffsetDateTime::parse(due, &time::format_description::well_known::Rfc3339).map_err(
            |_| ApiError::bad_request("due", format!("'{due}' is neither YYYY-MM-DD nor RFC 3339")),
        )?
    };
    if at <= now {
        return Err(ApiError::bad_request(
            "due",
            format!("'{due}' is in the past (of the moment it is issued)"),
        ));
    }
    Ok(at)
}

/// Seconds from `now` to `due` (a minute at least): what an assignment's record carries, so
/// that its deadline is the task's to the second.
fn seconds_until(due: i64, now: i64) -> Result<i64, ApiError> {
    let seconds = (due - now).max(60);
    if seconds > MAX_DUE_SECONDS {
        return Err(ApiError::bad_request("due", "at most ten years ahead"));
    }
    Ok(seconds)
}

fn missing(what: String) -> ApiError {
    ApiError::NotFound { what }
}

/// A unit the caller names: in the tree, within `within` (else answered as missing), below it.
fn unit_below(
    state: &AppState,
    code: &str,
    within: NodeIdx,
    field: &str,
) -> Result<NodeIdx, ApiError> {
    let tree = &state.tree;
    let idx = tree
        .get(code)
        .filter(|i| tree.is_within(*i, within))
        .ok_or_else(|| missing(format!("org {code}")))?;
    if idx == within {
        return Err(ApiError::bad_request(
            field,
            format!("{code} is the issuing unit itself: a task goes to units below it"),
        ));
    }
    Ok(idx)
}

fn parse_status(s: &str) -> Option<Status> {
    [
        Status::Met,
        Status::OnTrack,
        Status::AtRisk,
        Status::Missed,
        Status::NoData,
        Status::Tracked,
    ]
    .into_iter()
    .find(|x| x.as_str() == s)
}

/// The units a selector picks now.
fn select(state: &AppState, who: &Principal, sel: &Selector) -> Result<Vec<NodeIdx>, ApiError> {
    let tree = &state.tree;
    let scope = tree
        .get(&sel.scope)
        .filter(|i| tree.is_within(*i, who.scope))
        .ok_or_else(|| missing(format!("org {}", sel.scope)))?;
    let level = Level::ALL
        .into_iter()
        .find(|l| l.as_str() == sel.level && *l > tree.node(tree.root()).level)
        .ok_or_else(|| {
            ApiError::bad_request(
                "selector.level",
                format!("'{}': district, street or community", sel.level),
            )
        })?;
    let mut nodes: Vec<NodeIdx> = tree
        .subtree(scope)
        .into_iter()
        .filter(|n| *n != scope && tree.node(*n).level == level)
        .collect();
    if let Some(name) = &sel.metric {
        let catalogue = state.hub.catalogue();
        let id = catalogue.parse_name(name).ok_or_else(|| {
            ApiError::bad_request("selector.metric", format!("unknown metric '{name}'"))
        })?;
        let wanted: Vec<Status> = match &sel.status {
            None => vec![Status::AtRisk, Status::Missed],
            Some(named) => named
                .iter()
                .map(|s| {
                    parse_status(s).ok_or_else(|| {
                        ApiError::bad_request(
                            "selector.status",
                            format!("'{s}': met, on_track, at_risk, missed, no_data or tracked"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        nodes.retain(|n| {
            state
                .hub
                .current(*n, &[id])
                .get(&id)
                .is_some_and(|f| wanted.contains(&f.status))
        });
    } else if sel.status.is_some() {
        return Err(ApiError::bad_request(
            "selector.status",
            "needs selector.metric",
        ));
    }
    Ok(nodes)
}

fn may_issue(who: &Principal) -> Result<(), ApiError> {
    match who.role {
        Role::Leader | Role::DutyOfficer | Role::Admin => Ok(()),
        other => Err(ApiError::Forbidden(format!(
            "role {} may not issue tasks (leaders, duty officers and admins do)",
            other.as_str()
        ))),
    }
}

/// When a step or an issue happened: now, or (an admin recording what happened before vscc
/// heard of it: a task from the old spreadsheet, an answer taken by phone) the moment given —
/// not in the future, not before `not_before` (the assignment's last step).
fn moment(
    who: &Principal,
    given: Option<&str>,
    now: OffsetDateTime,
    not_before: u32,
) -> Result<OffsetDateTime, ApiError> {
    let Some(given) = given else {
        return Ok(now);
    };
    if who.role != Role::Admin {
        return Err(ApiError::Forbidden(
            "at: only an admin records a step at another moment than now".into(),
        ));
    }
    let at = OffsetDateTime::parse(given, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::bad_request("at", format!("'{given}' is not RFC 3339")))?;
    if at > now {
        return Err(ApiError::bad_request(
            "at",
            format!("'{given}' is in the future"),
        ));
    }
    if at.unix_timestamp() < i64::from(not_before.max(1_577_808_000)) {
        return Err(ApiError::bad_request(
            "at",
            format!("'{given}' is before the assignment's last step (or 2020)"),
        ));
    }
    Ok(at)
}

/// A task record as a client would send it, through the one validation path.
fn record(
    state: &AppState,
    who: &Principal,
    at: OffsetDateTime,
    id: String,
    kind: &str,
    org: &str,
    data: Value,
) -> Result<EventRow, ApiError> {
    let catalogue = state.hub.catalogue();
    let event = json!({"id": id, "kind": kind, "org": org, "at": rfc3339(at), "data": data});
    let row = crate::wire::events::validate(
        &event,
        &catalogue.kinds,
        &state.tree,
        state.map.as_ref(),
        state.hub.now(),
        TASKS_SOURCE,
    )
    .map_err(|e| {
        ApiError::Unexpected(anyhow::anyhow!(
            "a task record did not pass: {}: {}",
            e.field,
            e.reason
        ))
    })?;
    Ok(EventRow {
        actor: who.name.clone(),
        ..row
    })
}

fn issued_row(
    state: &AppState,
    who: &Principal,
    now: OffsetDateTime,
    task_id: &str,
    org: &str,
    due_seconds: i64,
    sign_hours: u32,
    priority: Priority,
    parent: &str,
) -> Result<EventRow, ApiError> {
    record(
        state,
        who,
        now,
        step_id(task_id, org, 1),
        ISSUED_KIND,
        org,
        json!({
            "assignment": assignment_subject(task_id, org),
            "task_id": task_id,
            "due_seconds": due_seconds,
            "sign_seconds": i64::from(sign_hours) * 3600,
            "priority": priority.as_str(),
            "parent": parent,
        }),
    )
}

fn new_task_id(now: OffsetDateTime) -> String {
    let local = now.to_offset(SHANGHAI);
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!(
        "T{:04}{:02}{:02}-{suffix}",
        local.year(),
        u8::from(local.month()),
        local.day()
    )
}

#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = NewTask,
    responses((status = 201, body = TaskIssued), (status = 200, body = TaskIssued, description = "the task of this id was issued before"),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/tasks")]
async fn issue(
    caller: Caller,
    body: web::Json<NewTask>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = &caller.0;
    may_issue(who)?;
    let body = body.into_inner();
    let now = moment(who, body.at.as_deref(), state.hub.now(), 0)?;
    let title = bounded("title", Some(&body.title), MAX_TITLE_CHARS, true)?;
    let instruction = bounded(
        "instruction",
        Some(&body.instruction),
        MAX_INSTRUCTION_CHARS,
        true,
    )?;
    let due = parse_due(body.due.trim(), now)?;
    let priority = match body.priority.as_deref() {
        None => Priority::Normal,
        Some(p) => Priority::parse(p).ok_or_else(|| {
            ApiError::bad_request("priority", format!("'{p}': normal, urgent or incident"))
        })?,
    };
    let sign_hours = body.sign_hours.unwrap_or(DEFAULT_SIGN_HOURS);
    if !(1..=720).contains(&sign_hours) {
        return Err(ApiError::bad_request("sign_hours", "1 to 720"));
    }
    if let Some(named) = body.units.as_ref().filter(|u| u.len() > MAX_UNITS) {
        return Err(ApiError::bad_request(
            "units",
            format!("{} units: a task goes to at most {MAX_UNITS}", named.len()),
        ));
    }
    let mut units: Vec<NodeIdx> = match (&body.units, &body.selector) {
        (Some(named), None) => named
            .iter()
            .map(|code| unit_below(&state, code.trim(), who.scope, "units"))
            .collect::<Result<_, _>>()?,
        (None, Some(sel)) => select(&state, who, sel)?,
        _ => {
            return Err(ApiError::bad_request(
                "units",
                "give either units or selector",
            ))
        }
    };
    units.sort_unstable();
    units.dedup();
    if units.is_empty() {
        return Err(match body.selector {
            Some(_) => ApiError::bad_request("selector", "matches no unit now: nothing to issue"),
            None => ApiError::bad_request("units", "name at least one unit"),
        });
    }
    if units.len() > MAX_UNITS {
        return Err(ApiError::bad_request(
            if body.selector.is_some() {
                "selector"
            } else {
                "units"
            },
            format!("{} units: a task goes to at most {MAX_UNITS}", units.len()),
        ));
    }
    let task_id = match &body.id {
        Some(id) => {
            let ok = !id.is_empty()
                && id.len() <= 40
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(ApiError::bad_request(
                    "id",
                    "1 to 40 letters, digits, - or _",
                ));
            }
            id.clone()
        }
        None => new_task_id(now),
    };
    let tree = &state.tree;
    let scope_code = tree.node(who.scope).code.clone();
    if body.preview {
        let orgs: Vec<String> = units.iter().map(|u| tree.node(*u).code.clone()).collect();
        return Ok(HttpResponse::Ok().json(TaskIssued {
            id: String::new(),
            units: orgs.len(),
            orgs,
        }));
    }
    if state.hub.tasks().exists(&task_id) {
        let orgs = state.hub.tasks().units_of(&task_id);
        return Ok(HttpResponse::Ok().json(TaskIssued {
            id: task_id,
            units: orgs.len(),
            orgs,
        }));
    }
    let due_seconds = seconds_until(due.unix_timestamp(), now.unix_timestamp())?;
    let orgs: Vec<String> = units.iter().map(|u| tree.node(*u).code.clone()).collect();
    let mut rows = Vec::with_capacity(orgs.len() + 1);
    rows.push(record(
        &state,
        who,
        now,
        format!("{task_id}/created"),
        CREATED_KIND,
        &scope_code,
        json!({
            "task_id": task_id,
            "units": orgs.len(),
            "title": title,
            "instruction": instruction,
            "priority": priority.as_str(),
            "due": rfc3339(due.to_offset(SHANGHAI)),
            "source": body.source,
        }),
    )?);
    for org in &orgs {
        rows.push(issued_row(
            &state,
            who,
            now,
            &task_id,
            org,
            due_seconds,
            sign_hours,
            priority,
            "",
        )?);
    }
    state.ingest.accept(rows).await?;
    tracing::info!(task = %task_id, units = orgs.len(), by = %who.name, "task issued");
    notify(
        &state,
        "task_issued",
        &task_id,
        units,
        format!("{}下达督办任务：{title}", tree.node(who.scope).name),
        format!(
            "{}办结时限 {}。{}",
            priority_zh(priority),
            rfc3339(due.to_offset(SHANGHAI)),
            excerpt(&instruction)
        ),
    );
    Ok(HttpResponse::Created().json(TaskIssued {
        id: task_id,
        units: orgs.len(),
        orgs,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Org code (default: the caller's own scope).
    scope: Option<String>,
    /// open (default: not every assignment accepted) | overdue | closed | all
    state: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, body = TaskList), (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tasks")]
async fn list(
    caller: Caller,
    q: Params<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let own = state.tree.node(caller.0.scope).code.clone();
    let (code, node) = readable_scope(&caller.0, &state, Some(q.scope.as_deref().unwrap_or(&own)))?;
    let which = q.state.as_deref().unwrap_or("open");
    if !["open", "overdue", "closed", "all"].contains(&which) {
        return Err(ApiError::bad_request(
            "state",
            format!("'{which}': open, overdue, closed or all"),
        ));
    }
    let now = state.hub.now().unix_timestamp() as u32;
    let mut tasks = state.hub.tasks().list(&state.tree, node, now);
    tasks.retain(|t| match which {
        "open" => !t.closed,
        "overdue" => t.overdue > 0,
        "closed" => t.closed,
        _ => true,
    });
    // Most urgent first: incidents, then by overdue assignments, then newest.
    tasks.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(b.overdue.cmp(&a.overdue))
            .then(b.issued_at.cmp(&a.issued_at))
    });
    Ok(HttpResponse::Ok().json(TaskList { scope: code, tasks }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScopeQuery {
    /// Org code (default: the caller's own scope).
    scope: Option<String>,
    /// feed: how many steps (default 20, at most 200).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/tasks/mine", tag = "tasks", params(ScopeQuery),
    responses((status = 200, body = UnitAssignments), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tasks/mine")]
async fn mine(
    caller: Caller,
    q: Params<ScopeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = &caller.0;
    let own = state.tree.node(who.scope).code.clone();
    let code = q.scope.clone().unwrap_or(own);
    // Another unit's list is answered as missing, as its workspace is.
    let (code, node) = readable_scope(who, &state, Some(&code)).map_err(|e| match e {
        ApiError::Forbidden(_) => missing(format!("org {code}")),
        other => other,
    })?;
    let now = state.hub.now().unix_timestamp() as u32;
    let assignments = state
        .hub
        .tasks()
        .of_unit(&state.tree, &code, now)
        .into_iter()
        .map(|(task, assignment)| UnitAssignment { task, assignment })
        .collect();
    Ok(HttpResponse::Ok().json(UnitAssignments {
        name: state.tree.node(node).name.clone(),
        may_act: acts_for_unit(who, &state, node),
        scope: code,
        assignments,
    }))
}

#[utoipa::path(get, path = "/api/v1/tasks/feed", tag = "tasks", params(ScopeQuery),
    responses((status = 200, body = TaskFeed), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tasks/feed")]
async fn feed(
    caller: Caller,
    q: Params<ScopeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let own = state.tree.node(caller.0.scope).code.clone();
    let (code, node) = readable_scope(&caller.0, &state, Some(q.scope.as_deref().unwrap_or(&own)))?;
    let limit = super::params::in_range("limit", q.limit.unwrap_or(20).into(), 1, 200)? as usize;
    let now = state.hub.now().unix_timestamp() as u32;
    let board = state.hub.tasks();
    let (mut open, mut overdue, mut incidents) = (0, 0, Vec::new());
    for t in board.list(&state.tree, node, now) {
        open += t.assignments_total - t.states.get("accepted").copied().unwrap_or(0);
        overdue += t.overdue;
        if t.priority == Priority::Incident && !t.closed {
            incidents.push(t);
        }
    }
    let steps = board
        .recent_steps(&state.tree, node, limit)
        .into_iter()
        .map(|(task, title, step)| FeedEntry { task, title, step })
        .collect();
    Ok(HttpResponse::Ok().json(TaskFeed {
        scope: code,
        open,
        overdue,
        incidents,
        steps,
    }))
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "the task's id")),
    responses((status = 200, body = TaskView), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tasks/{id}")]
async fn one(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    readable_scope(
        &caller.0,
        &state,
        Some(&state.tree.node(caller.0.scope).code),
    )?;
    let now = state.hub.now().unix_timestamp() as u32;
    let mut view = state
        .hub
        .tasks()
        .view(&state.tree, caller.0.scope, &id, now)
        .ok_or_else(|| missing(format!("task {id}")))?;
    gather_alerts(&state, &caller.0, &mut view).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A task raised from an alert group (`source.alert` = "rule/district", an incident the duty
/// officer turned into a task) gathers that group's alert changes into its timeline, from a day
/// before it was issued: firing, escalated, acknowledged, resolved.
async fn gather_alerts(
    state: &AppState,
    who: &Principal,
    view: &mut TaskView,
) -> Result<(), ApiError> {
    let Some(key) = view
        .summary
        .source
        .as_ref()
        .and_then(|s| s.get("alert"))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let Some((rule, district)) = key.split_once('/') else {
        return Ok(());
    };
    let tree = &state.tree;
    // Only what the caller may see of it.
    let Some(area) = tree
        .get(district)
        .filter(|d| tree.is_within(*d, who.scope) || tree.is_within(who.scope, *d))
    else {
        return Ok(());
    };
    let scope = if tree.is_within(area, who.scope) {
        area
    } else {
        who.scope
    };
    let since = OffsetDateTime::parse(
        &view.summary.issued_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| t.unix_timestamp() - 86_400)
    .unwrap_or(0);
    let events = state.alerts.history(&tree.node(scope).code, 500).await?;
    const STATE_ZH: [(&str, &str); 6] = [
        ("firing", "预警"),
        ("resolved", "预警恢复"),
        ("acknowledged", "预警已确认"),
        ("notified", "预警已通知"),
        ("no_data", "预警无数据"),
        ("pending", "预警待定"),
    ];
    for e in events
        .into_iter()
        .filter(|e| e.rule == rule && i64::from(e.at) >= since)
    {
        let step_zh = STATE_ZH
            .iter()
            .find(|(s, _)| *s == e.state)
            .map_or("预警", |(_, zh)| zh);
        view.timeline.push(crate::wire::tasks::StepEntry {
            step: format!("alert_{}", e.state),
            step_zh: step_zh.to_string(),
            org_name: tree
                .get(&e.node)
                .map(|n| tree.node(n).name.clone())
                .unwrap_or_default(),
            org: e.node,
            by: e.actor,
            at: crate::domain::time::rfc3339_shanghai(i64::from(e.at)),
            text: if e.comment.is_empty() {
                e.summary
            } else {
                format!("{}（{}）", e.summary, e.comment)
            },
            units: Vec::new(),
        });
    }
    view.timeline.sort_by(|a, b| b.at.cmp(&a.at));
    Ok(())
}

fn priority_zh(p: Priority) -> &'static str {
    match p {
        Priority::Normal => "",
        Priority::Urgent => "【紧急】",
        Priority::Incident => "【应急事件】",
    }
}

/// The start of a long text, for a robot's message.
fn excerpt(text: &str) -> String {
    let mut short: String = text.chars().take(120).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Tells the units through the roster's robots (issued to them, returned to one), after the
/// answer: the message is logged and retried by the alert delivery, a failure is logged here.
fn notify(
    state: &AppState,
    event: &'static str,
    key: &str,
    units: Vec<NodeIdx>,
    heading: String,
    body: String,
) {
    let alerts = state.alerts.clone();
    let key = key.to_string();
    tokio::spawn(async move {
        if let Err(e) = alerts
            .notify_task(event, &key, &units, &heading, &body)
            .await
        {
            tracing::warn!(error = %e, event, task = %key, "task notification not queued");
        }
    });
}

/// Whether `who` acts for the unit `node`: its own users (not analysts), or an admin over it.
fn acts_for_unit(who: &Principal, state: &AppState, node: NodeIdx) -> bool {
    match who.role {
        Role::Admin => state.tree.is_within(node, who.scope),
        Role::Analyst => false,
        _ => who.scope == node,
    }
}

/// Whether `who` is on the issuing side of an assignment issued by `issuer`.
fn acts_for_issuer(who: &Principal, state: &AppState, issuer: NodeIdx) -> bool {
    matches!(who.role, Role::Leader | Role::DutyOfficer | Role::Admin)
        && state.tree.is_within(issuer, who.scope)
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/assignments/{org}/{action}", tag = "tasks",
    params(("id" = String, Path, description = "the task's id"),
        ("org" = String, Path, description = "the unit's org code"),
        ("action" = String, Path, description = "sign | feedback | submit | accept | return | delegate")),
    request_body = StepIn,
    responses((status = 200, body = AssignmentView, description = "the assignment after the step"), (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/tasks/{id}/assignments/{org}/{action}")]
async fn act(
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: Option<web::Json<StepIn>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = &caller.0;
    let (task_id, org, action) = path.into_inner();
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let step = Step::parse(&action).ok_or_else(|| {
        ApiError::bad_request(
            "action",
            format!("'{action}': sign, feedback, submit, accept, return or delegate"),
        )
    })?;
    let tree = &state.tree;
    let not_found = || missing(format!("assignment of task {task_id} for {org}"));
    let node = tree.get(&org).ok_or_else(not_found)?;
    let _one_at_a_time = STEPS.lock().await;
    let facts = state
        .hub
        .tasks()
        .facts(&task_id, &org)
        .ok_or_else(not_found)?;
    let issuer = tree
        .get(facts.parent.as_deref().unwrap_or(&facts.scope))
        .ok_or_else(not_found)?;
    let allowed = match step.side() {
        Side::Unit => acts_for_unit(who, &state, node),
        Side::Issuer => acts_for_issuer(who, &state, issuer),
    };
    if !allowed {
        // Seen from outside both sides, the assignment does not exist.
        let sees = tree.is_within(node, who.scope) || tree.is_within(issuer, who.scope);
        if !sees {
            return Err(not_found());
        }
        let name = |n: NodeIdx| tree.node(n).name.clone();
        return Err(ApiError::Forbidden(match step.side() {
            Side::Unit => format!(
                "only {}'s own users {} this assignment",
                name(node),
                step.as_str()
            ),
            Side::Issuer => format!(
                "only the issuing side ({}: leaders, duty officers, admins) may {} it",
                name(issuer),
                step.as_str()
            ),
        }));
    }
    task::after(facts.state, step).map_err(|refused| ApiError::Conflict(refused.to_string()))?;
    let now = moment(who, body.at.as_deref(), state.hub.now(), facts.last_at)?;
    let mut data = json!({
        "assignment": assignment_subject(&task_id, &org),
        "task_id": task_id,
    });
    let mut children: Vec<EventRow> = Vec::new();
    let mut body_reason = String::new();
    let mut delegated: Vec<String> = Vec::new();
    match step {
        Step::Feedback => {
            data["text"] = bounded("text", body.text.as_deref(), MAX_TEXT_CHARS, true)?.into();
        }
        Step::Submit => {
            data["text"] = bounded("text", body.text.as_deref(), MAX_TEXT_CHARS, true)?.into();
        }
        Step::Return => {
            body_reason = bounded("reason", body.reason.as_deref(), MAX_REASON_CHARS, true)?;
            data["reason"] = body_reason.clone().into();
        }
        Step::Accept => {
            data["on_time"] = facts
                .last_submitted
                .is_some_and(|s| s <= facts.due_at)
                .into();
        }
        Step::Delegate => {
            let named = body.units.unwrap_or_default();
            if named.is_empty() {
                return Err(ApiError::bad_request(
                    "units",
                    "name the units below to pass it to",
                ));
            }
            if named.len() > MAX_DELEGATED {
                return Err(ApiError::bad_request(
                    "units",
                    format!(
                        "{} units: an assignment is passed to at most {MAX_DELEGATED}",
                        named.len()
                    ),
                ));
            }
            let taken = state.hub.tasks().units_of(&task_id);
            let mut codes: Vec<String> = Vec::with_capacity(named.len());
            for code in &named {
                let child = unit_below(&state, code.trim(), node, "units")?;
                let code = tree.node(child).code.clone();
                if taken.contains(&code) {
                    return Err(ApiError::Conflict(format!(
                        "{code} ({}) already has an assignment of this task",
                        tree.node(child).name
                    )));
                }
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
            let due_seconds = seconds_until(i64::from(facts.due_at), now.unix_timestamp())?;
            for code in &codes {
                children.push(issued_row(
                    &state,
                    who,
                    now,
                    &task_id,
                    code,
                    due_seconds,
                    DEFAULT_SIGN_HOURS,
                    Priority::Normal,
                    &org,
                )?);
            }
            data["units"] = json!(codes);
            delegated = codes;
        }
        Step::Sign => {}
    }
    let step_row = record(
        &state,
        who,
        now,
        step_id(&task_id, &org, facts.records + 1),
        step.kind(),
        &org,
        data,
    )?;
    let mut rows = vec![step_row];
    rows.extend(children);
    let n = rows.len();
    let done = state.ingest.accept(rows).await?;
    if done.accepted != n
        && done
            .outcomes
            .first()
            .is_some_and(|o| !matches!(o, crate::ingest::AppendOutcome::Accepted { .. }))
    {
        return Err(ApiError::Conflict(format!(
            "the assignment changed meanwhile (another step landed first): read it again (GET /api/v1/tasks/{task_id})"
        )));
    }
    drop(_one_at_a_time);
    let title = || state.hub.tasks().title(&task_id);
    match step {
        Step::Return => notify(
            &state,
            "task_returned",
            &format!("{task_id}/{org}/{}", facts.records + 1),
            vec![node],
            format!("督办事项被退回：{}", title()),
            format!("{}：{}", tree.node(node).name, body_reason),
        ),
        Step::Delegate => notify(
            &state,
            "task_issued",
            &format!("{task_id}/{org}"),
            delegated.iter().filter_map(|c| tree.get(c)).collect(),
            format!("{}转派督办任务：{}", tree.node(node).name, title()),
            format!(
                "办结时限 {}。",
                crate::domain::time::rfc3339_shanghai(i64::from(facts.due_at))
            ),
        ),
        _ => {}
    }
    // The assignment as it stands now (with those it passed down), not the whole task: a
    // task to every unit is hundreds of them.
    let view = state
        .hub
        .tasks()
        .assignment(
            tree,
            who.scope,
            &task_id,
            &org,
            state.hub.now().unix_timestamp() as u32,
        )
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(view))
}
