//! Alerts: current instances, history, acknowledgement.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::{authorize, Action};
use crate::store::audit::AuditAction;
use crate::wire::alerts::{Alert, AlertHistoryEntry, AlertsAnswer, Silence};
use crate::wire::events::{QuarantineAnswer, QuarantinedRecord};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_alerts)
        .service(alert_history)
        .service(ack_alert)
        .service(unack_alert)
        .service(list_silences)
        .service(create_silence)
        .service(delete_silence)
        .service(quarantine);
}

/// Records the live figures refused: stored under other rules (a value now out of range, an
/// org that left the tree) or whose applying failed. They stay in the log and in ClickHouse;
/// the duty console shows them. Duty officers and admins.
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "alerts",
    responses((status = 200, body = QuarantineAnswer), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/api/v1/quarantine")]
async fn quarantine(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::HandleAlerts)?;
    let tree = &state.tree;
    let q = state.hub.quarantine();
    let recent = q
        .recent()
        .into_iter()
        .filter(|r| match tree.get(&r.org) {
            Some(org) => tree.is_within(org, who.scope),
            // An org the tree no longer knows: the city's to see.
            None => who.scope == tree.root(),
        })
        .map(QuarantinedRecord::from)
        .collect();
    Ok(HttpResponse::Ok().json(QuarantineAnswer {
        total: q.total(),
        recent,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// pending | firing | no_data
    state: Option<String>,
    /// info | warning | critical
    severity: Option<String>,
    /// Org code (default: the caller's scope): only alerts of nodes in its subtree — a
    /// district's wall screen shows its own.
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
}

/// Current alerts (pending, firing, no data) inside the caller's scope (or the `scope` asked
/// for within it), most severe first, and the same grouped by rule and district.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertsAnswer), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/alerts")]
async fn list_alerts(
    caller: Caller,
    q: Params<AlertQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let own = state.tree.node(caller.0.scope).code.clone();
    let (_, scope) =
        super::auth::readable_scope(&caller.0, &state, Some(q.scope.as_deref().unwrap_or(&own)))?;
    if let Some(s) = q.state.as_deref() {
        if !["pending", "firing", "no_data"].contains(&s) {
            return Err(ApiError::bad_request(
                "state",
                format!("'{s}' is not one of pending, firing, no_data"),
            ));
        }
    }
    if let Some(s) = q.severity.as_deref() {
        if s.parse::<crate::alert::rules::Severity>().is_err() {
            return Err(ApiError::bad_request(
                "severity",
                format!("'{s}' is not one of info, warning, critical"),
            ));
        }
    }
    let rules = state.alerts.rules();
    let now = state.hub.now().unix_timestamp();
    let alerts: Vec<Alert> = state
        .alerts
        .current()
        .iter()
        .filter(|a| state.tree.is_within(a.node_idx, scope))
        .filter(|a| q.state.as_deref().is_none_or(|s| a.state.as_str() == s))
        .filter(|a| {
            q.severity
                .as_deref()
                .is_none_or(|s| a.severity.as_str() == s)
        })
        .map(|a| Alert::new(a, &state.tree, &rules, &state.hub.catalogue(), now))
        .collect();
    let groups = crate::wire::alerts::group_alerts(
        &alerts,
        &rules,
        &state.hub.catalogue(),
        &state.tree,
        now,
    );
    Ok(HttpResponse::Ok().json(AlertsAnswer {
        rules_error: state.alerts.rules_error(),
        alerts,
        groups,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Newest first; at most this many (default 200, max 5000).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<u64>,
}

/// Every state change and notification, newest first, inside the caller's scope.
#[utoipa::path(get, path = "/api/v1/alerts/history", tag = "alerts", params(HistoryQuery),
    responses((status = 200, body = Vec<AlertHistoryEntry>)), security(("bearer" = [])))]
#[get("/api/v1/alerts/history")]
async fn alert_history(
    caller: Caller,
    q: Params<HistoryQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::ReadFigures)?;
    let limit = super::params::in_range("limit", q.limit.unwrap_or(200), 1, 5000)?;
    let scope = &state.tree.node(who.scope).code;
    let history: Vec<AlertHistoryEntry> = state
        .alerts
        .history(scope, limit)
        .await?
        .into_iter()
        .map(|r| AlertHistoryEntry::new(r, &state.tree))
        .collect();
    Ok(HttpResponse::Ok().json(history))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AckBody {
    #[serde(default)]
    comment: String,
}

async fn set_ack(
    who: crate::auth::Principal,
    req: HttpRequest,
    fingerprint: String,
    comment: String,
    ack: bool,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let instance = state
        .alerts
        .current()
        .into_iter()
        .find(|a| a.fingerprint == fingerprint)
        .ok_or_else(|| ApiError::NotFound {
            what: format!("alert {fingerprint}"),
        })?;
    authorize(&state.tree, &who, Action::HandleAlerts, instance.node_idx)?;
    let updated = state
        .alerts
        .acknowledge(&fingerprint, &who.name, &comment, ack, state.hub.now())
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: format!("alert {fingerprint}"),
        })?;
    let action = if ack {
        AuditAction::AlertAcknowledged
    } else {
        AuditAction::AlertUnacknowledged
    };
    state.audit.record(
        super::audit_entry(&state, &req, &who, action)
            .target(&fingerprint)
            .detail(comment),
    );
    let rules = state.alerts.rules();
    Ok(HttpResponse::Ok().json(Alert::new(
        &updated,
        &state.tree,
        &rules,
        &state.hub.catalogue(),
        state.hub.now().unix_timestamp(),
    )))
}

/// Acknowledge a current alert (duty officers and admins inside their scope).
#[utoipa::path(post, path = "/api/v1/alerts/{rule}/{node}/ack", tag = "alerts", request_body = AckBody,
    params(("rule" = String, Path), ("node" = String, Path)),
    responses((status = 200, body = Alert), (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/alerts/{rule}/{node}/ack")]
async fn ack_alert(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Option<web::Json<AckBody>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::HandleAlerts)?;
    let (rule, node) = path.into_inner();
    let comment = body.map(|b| b.into_inner().comment).unwrap_or_default();
    set_ack(who, req, format!("{rule}/{node}"), comment, true, state).await
}

/// Withdraw an acknowledgement.
#[utoipa::path(delete, path = "/api/v1/alerts/{rule}/{node}/ack", tag = "alerts",
    params(("rule" = String, Path), ("node" = String, Path)),
    responses((status = 200, body = Alert), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[delete("/api/v1/alerts/{rule}/{node}/ack")]
async fn unack_alert(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::HandleAlerts)?;
    let (rule, node) = path.into_inner();
    set_ack(
        who,
        req,
        format!("{rule}/{node}"),
        String::new(),
        false,
        state,
    )
    .await
}

/// Silences in force or scheduled, inside the caller's scope.
#[utoipa::path(get, path = "/api/v1/silences", tag = "alerts", responses((status = 200, body = Vec<Silence>)), security(("bearer" = [])))]
#[get("/api/v1/silences")]
async fn list_silences(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::ReadFigures)?;
    let list: Vec<_> = state
        .alerts
        .silences()
        .into_iter()
        .filter(|s| {
            s.scope_idx.unwrap_or(state.tree.root()) == who.scope
                || state
                    .tree
                    .is_within(s.scope_idx.unwrap_or(state.tree.root()), who.scope)
        })
        .collect();
    Ok(HttpResponse::Ok().json(list.iter().map(Silence::from).collect::<Vec<_>>()))
}

/// Silence matching alerts between two instants, optionally only in a daily window; duty
/// officers and admins, inside their scope.
#[utoipa::path(post, path = "/api/v1/silences", tag = "alerts",
    request_body = crate::alert::silence::SilenceSpec,
    responses((status = 201, body = Silence), (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/silences")]
async fn create_silence(
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::HandleAlerts)?;
    let spec: crate::alert::silence::SilenceSpec =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("$", e.to_string()))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let silence = crate::alert::silence::Silence::new(id, who.name.clone(), spec, &state.tree)
        .map_err(|(field, reason)| ApiError::bad_request(field, reason))?;
    authorize(
        &state.tree,
        &who,
        Action::HandleAlerts,
        silence.scope_idx.unwrap_or(state.tree.root()),
    )?;
    state.alerts.add_silence(silence.clone()).await?;
    state.audit.record(
        super::audit_entry(&state, &req, &who, AuditAction::SilenceCreated)
            .target(&silence.id)
            .detail(String::from_utf8_lossy(&body).into_owned()),
    );
    Ok(HttpResponse::Created().json(Silence::from(&silence)))
}

/// End a silence.
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 204, description = "Ended"), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[delete("/api/v1/silences/{id}")]
async fn delete_silence(
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::HandleAlerts)?;
    let silence = state
        .alerts
        .silences()
        .into_iter()
        .find(|s| s.id == *id)
        .ok_or_else(|| ApiError::NotFound {
            what: format!("silence {id}"),
        })?;
    authorize(
        &state.tree,
        &who,
        Action::HandleAlerts,
        silence.scope_idx.unwrap_or(state.tree.root()),
    )?;
    state.alerts.delete_silence(&id, &who.name).await?;
    state
        .audit
        .record(super::audit_entry(&state, &req, &who, AuditAction::SilenceEnded).target(&id));
    Ok(HttpResponse::NoContent().finish())
}
