//! The audit trail, for admins: who did what, when, from where.

use actix_web::{get, web, HttpResponse};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, Time};

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::Action;
use crate::domain::time::{parse_day, FIRST_DAY, LAST_DAY, SHANGHAI};
use crate::store::audit::{self, AuditAction, AuditQuery};
use crate::wire::ops::AuditEntryView;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this user's actions.
    actor: Option<String>,
    /// Only this action (`login`, `sql_run` …; see the entry's `action`).
    action: Option<String>,
    /// From this day (`YYYY-MM-DD`, Shenzhen) or instant (RFC 3339), inclusive.
    from: Option<String>,
    /// To this day (inclusive) or instant (exclusive).
    to: Option<String>,
    /// At most this many entries, newest first (1–10000, default 500).
    limit: Option<u64>,
}

/// Unix seconds of a day's start (`end`: of the next day's) or of an instant.
fn instant(name: &str, text: &str, end: bool) -> Result<i64, ApiError> {
    if let Ok(day) = parse_day(text) {
        let day = if end {
            day.next_day().unwrap_or(day)
        } else {
            day
        };
        return Ok(PrimitiveDateTime::new(day, Time::MIDNIGHT)
            .assume_offset(SHANGHAI)
            .unix_timestamp());
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        ApiError::bad_request(
            name,
            format!("'{text}' is neither a day YYYY-MM-DD nor an RFC 3339 instant"),
        )
    })?;
    let day = t.to_offset(SHANGHAI).date();
    if day < FIRST_DAY || day > LAST_DAY {
        return Err(ApiError::bad_request(
            name,
            format!("'{text}' is outside {FIRST_DAY} to {LAST_DAY}"),
        ));
    }
    Ok(t.unix_timestamp())
}

/// The audit trail (admins only): logins (failed ones too, with the address), users and
/// screen tokens added or revoked, alerts acknowledged and silenced, SQL run, ledgers
/// imported, definition files changed — newest first. An admin below the city sees the
/// actions of the users of their subtree. Append-only: nothing in vscc changes an entry.
#[utoipa::path(get, path = "/api/v1/audit", tag = "users", params(AuditParams),
    responses((status = 200, body = Vec<AuditEntryView>), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/audit")]
async fn list(
    caller: Caller,
    params: Params<AuditParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Admin)?;
    let p = params.0;
    let action = match p.action.as_deref() {
        None => None,
        Some(name) => Some(AuditAction::parse(name).ok_or_else(|| {
            let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            ApiError::bad_request(
                "action",
                format!("unknown action '{name}' (known: {})", known.join(", ")),
            )
        })?),
    };
    let scopes = (who.scope != state.tree.root()).then(|| {
        state
            .tree
            .subtree(who.scope)
            .into_iter()
            .map(|n| state.tree.node(n).code.clone())
            .collect()
    });
    let query = AuditQuery {
        actor: p.actor,
        action,
        from: p
            .from
            .as_deref()
            .map(|t| instant("from", t, false))
            .transpose()?,
        to: p
            .to
            .as_deref()
            .map(|t| instant("to", t, true))
            .transpose()?,
        scopes,
        limit: super::params::in_range("limit", p.limit.unwrap_or(500), 1, 10_000)?,
    };
    let entries = audit::read(&state.store, &query).await?;
    let views: Vec<AuditEntryView> = entries.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(views))
}
