//! `PUT` / `DELETE` / `GET /api/v1/events/{id}`: a record corrected, withdrawn, and its
//! versions.
//!
//! A correction or a withdrawal is rows of the durable log like any record (see
//! [`crate::domain::revision`]): the handler reads the record's stored rows once everything
//! accepted so far has landed in ClickHouse, and logs the rows that replace or withdraw its
//! newest version. Exactly-once keys those rows by id and version, so two corrections of one
//! version cannot both land: the second is told the record changed meanwhile.

use std::time::Duration;

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};

use super::{auth::Caller, ApiError, AppState};
use crate::auth::{authorize, Action, Principal};
use crate::domain::record::EventRow;
use crate::domain::revision::{correction_rows, same_content, withdrawal_row, History};
use crate::ingest::AppendOutcome;
use crate::store::audit::AuditAction;
use crate::wire::events::{
    BulkChangeAnswer, BulkChangeIn, BulkRejection, CorrectionAnswer, CorrectionIn, RecordHistory,
    WithdrawalIn,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(bulk)
        .service(correct)
        .service(withdraw)
        .service(versions);
}

/// The longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 500;

/// How long a correction waits for the records accepted before it to reach ClickHouse, where
/// it reads the record's versions.
const LANDED_WAIT: Duration = Duration::from_secs(10);

fn reason_of(reason: Option<&str>) -> Result<String, ApiError> {
    let reason = reason.map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "a reason is required: say why the record is corrected or withdrawn",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_request(
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(reason.to_string())
}

/// Waits until what was accepted before has reached ClickHouse, where the versions are read.
async fn landed(state: &AppState) -> Result<(), ApiError> {
    if state.ingest.wait_landed(LANDED_WAIT).await {
        return Ok(());
    }
    Err(ApiError::Unavailable {
        reason: "records accepted earlier are still on their way to ClickHouse".into(),
        retry_after_secs: Some(2),
    })
}

/// The record's stored history, once what was accepted before has landed (`None`: no such
/// record). `kind`, when known, narrows the read.
async fn read_history(
    state: &AppState,
    id: &str,
    kind: Option<&str>,
) -> Result<Option<History>, ApiError> {
    landed(state).await?;
    let mut rows = state.store.record_rows(id, kind).await?;
    if rows.is_empty() && kind.is_some() {
        // Stored under another kind? Then it is found, and the kind is what is wrong.
        rows = state.store.record_rows(id, None).await?;
    }
    Ok(History::of(rows))
}

/// The history as the caller may see it: a record outside the caller's scope is answered as
/// missing, as an unknown one is.
fn visible(
    state: &AppState,
    who: &Principal,
    id: &str,
    history: Option<History>,
) -> Result<History, ApiError> {
    history
        .filter(|h| {
            state
                .tree
                .get(&h.newest().row.org)
                .is_some_and(|org| state.tree.is_within(org, who.scope))
        })
        .ok_or_else(|| ApiError::NotFound {
            what: format!("record {id}"),
        })
}

/// A change asked for: a new version (checked), or a withdrawal.
enum Change {
    Correct(Box<EventRow>),
    Withdraw,
}

/// What a change makes of a record, judged the same way for one record and for many.
enum Judged {
    /// Nothing to log: the record already holds it (a change sent again).
    Same { version: u32, withdrawn: bool },
    /// The rows to log, the record's version afterwards, and what the audit trail says.
    Rows {
        rows: Vec<EventRow>,
        version: u32,
        withdrawn: bool,
        detail: String,
    },
}

impl Judged {
    fn answer(&self, id: &str) -> HttpResponse {
        let (Judged::Same { version, withdrawn }
        | Judged::Rows {
            version, withdrawn, ..
        }) = self;
        answer(id, *version, *withdrawn)
    }
}

/// Judges `change` of the record `history` by `who`, with `reason`: the refusal (404, 409,
/// 422), nothing to do, or the rows to log.
fn judge(
    state: &AppState,
    who: &Principal,
    id: &str,
    history: Option<History>,
    change: Change,
    reason: &str,
) -> Result<Judged, ApiError> {
    let history = visible(state, who, id, history)?;
    let newest = &history.newest().row;
    let version = newest.version;
    if state
        .hub
        .catalogue()
        .kinds
        .get(&newest.kind)
        .is_some_and(|k| k.made_by_tasks)
    {
        return Err(ApiError::Unprocessable {
            field: "record.kind".into(),
            reason: format!(
                "record {id} is a {} record, a step of a task: tasks keep every step (answer the task instead)",
                newest.kind
            ),
        });
    }
    if let Change::Correct(new) = &change {
        if newest.kind != new.kind {
            return Err(ApiError::Unprocessable {
                field: "record.kind".into(),
                reason: format!(
                    "record {id} is a {} record; a correction keeps the kind (withdraw it and send a new record instead)",
                    newest.kind
                ),
            });
        }
    }
    if history.is_withdrawn() {
        // The same withdrawal sent again (same sender, same reason) answers the same; any
        // other change is refused.
        let again = matches!(change, Change::Withdraw)
            && history
                .newest()
                .withdrawal
                .as_ref()
                .is_some_and(|w| w.actor == who.name && w.reason == reason);
        if again {
            return Ok(Judged::Same {
                version,
                withdrawn: true,
            });
        }
        return Err(ApiError::Conflict(format!(
            "record {id} is already withdrawn (version {version}): send a new record instead"
        )));
    }
    let detail = |to: String| format!("{} version {version}{to}: {reason}", newest.kind);
    Ok(match change {
        Change::Correct(new) if same_content(newest, &new) => Judged::Same {
            version,
            withdrawn: false,
        },
        Change::Correct(new) => Judged::Rows {
            detail: detail(format!(" → {}", version + 1)),
            rows: correction_rows(&history, *new, &who.name, reason).into(),
            version: version + 1,
            withdrawn: false,
        },
        Change::Withdraw => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp() as u32;
            Judged::Rows {
                detail: detail(String::new()),
                rows: vec![withdrawal_row(&history, &who.name, reason, now)],
                version,
                withdrawn: true,
            }
        }
    })
}

/// Makes one judged change: logs its rows (exactly once: another change of the same version
/// logged first makes them duplicates, 409) and keeps it in the audit trail.
async fn make(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    id: &str,
    judged: Judged,
) -> Result<HttpResponse, ApiError> {
    let response = judged.answer(id);
    let Judged::Rows {
        rows,
        withdrawn,
        detail,
        ..
    } = judged
    else {
        return Ok(response);
    };
    let action = if withdrawn {
        AuditAction::RecordWithdrawn
    } else {
        AuditAction::RecordCorrected
    };
    let audit = super::audit_entry(state, req, who, action)
        .target(id)
        .detail(detail);
    let n = rows.len();
    if state.ingest.accept(rows).await?.accepted != n {
        state.audit.record(audit.outcome("refused"));
        return Err(changed_meanwhile(id));
    }
    state.audit.record(audit);
    Ok(response)
}

fn answer(history_id: &str, version: u32, withdrawn: bool) -> HttpResponse {
    HttpResponse::Ok().json(CorrectionAnswer {
        id: history_id.to_string(),
        version,
        state: if withdrawn { "withdrawn" } else { "current" }.into(),
    })
}

/// A correction's new version, checked as a new record is (the body's `record`, its id the
/// path's), and allowed at its org.
fn new_version(
    state: &AppState,
    who: &Principal,
    id: &str,
    mut record: serde_json::Value,
    via: &'static str,
) -> Result<EventRow, ApiError> {
    let Some(fields) = record.as_object_mut() else {
        return Err(ApiError::bad_request(
            "record",
            "must be a JSON object: the record's new version",
        ));
    };
    match fields.get("id") {
        None | Some(serde_json::Value::Null) => {
            fields.insert("id".into(), serde_json::Value::String(id.to_string()));
        }
        Some(serde_json::Value::String(given)) if given == id => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "record.id",
                format!("must be absent or '{id}': a correction keeps the record's id"),
            ))
        }
    }
    let catalogue = state.hub.catalogue();
    let new = crate::wire::events::validate(
        &record,
        &catalogue.kinds,
        &state.tree,
        state.map.as_ref(),
        time::OffsetDateTime::now_utc(),
        via,
    )
    .map_err(|e| ApiError::Unprocessable {
        field: format!("record.{}", e.field),
        reason: e.message(),
    })?;
    let new_org = state
        .tree
        .get(&new.org)
        .ok_or_else(|| ApiError::Unprocessable {
            field: "record.org".into(),
            reason: format!("unknown org code '{}'", new.org),
        })?;
    authorize(&state.tree, who, Action::Ingest, new_org)?;
    Ok(new)
}

fn changed_meanwhile(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "record {id} was changed by someone else meanwhile: read it again (GET /api/v1/events/{id})"
    ))
}

/// Correct a record: the body's record becomes its new version (clerks and admins whose scope
/// holds the record's org and the new version's).
#[utoipa::path(
    tag = "records",
    request_body = CorrectionIn,
    params(("id" = String, Path, description = "The record's id"), super::events::IngestQuery),
    responses(
        (status = 200, body = CorrectionAnswer),
        (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/events/{id}")]
async fn correct(
    caller: Caller,
    q: super::params::Params<super::events::IngestQuery>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<CorrectionIn>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Ingest)?;
    state.limits.ingest(&who.token_key)?;
    let id = path.into_inner();
    let CorrectionIn { record, reason } = body.into_inner();
    let reason = reason_of(reason.as_deref())?;
    let via = super::events::via_of(q.via.as_deref())?;
    let new = new_version(&state, &who, &id, record, via)?;
    let history = read_history(&state, &id, Some(&new.kind)).await?;
    let judged = judge(
        &state,
        &who,
        &id,
        history,
        Change::Correct(Box::new(new)),
        &reason,
    )?;
    make(&state, &req, &who, &id, judged).await
}

/// Withdraw a record: from now on no figure counts it (clerks and admins whose scope holds
/// the record's org). The same withdrawal sent again answers the same; another withdrawal of a
/// withdrawn record is 409.
#[utoipa::path(
    tag = "records",
    request_body = WithdrawalIn,
    params(("id" = String, Path, description = "The record's id")),
    responses(
        (status = 200, body = CorrectionAnswer),
        (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/events/{id}")]
async fn withdraw(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<WithdrawalIn>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Ingest)?;
    state.limits.ingest(&who.token_key)?;
    let id = path.into_inner();
    let reason = reason_of(body.reason.as_deref())?;
    let history = read_history(&state, &id, None).await?;
    let judged = judge(&state, &who, &id, history, Change::Withdraw, &reason)?;
    make(&state, &req, &who, &id, judged).await
}

/// Every version of a record: its data, who sent it, when, why, and how (clerks and admins
/// whose scope holds the record's org).
#[utoipa::path(
    tag = "records",
    params(("id" = String, Path, description = "The record's id")),
    responses(
        (status = 200, body = RecordHistory),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/events/{id}")]
async fn versions(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Ingest)?;
    let id = path.into_inner();
    let history = visible(&state, &who, &id, read_history(&state, &id, None).await?)?;
    Ok(HttpResponse::Ok().json(RecordHistory::new(&history)))
}

/// Correct and withdraw many records in one request (clerks and admins; each within their
/// scope): a JSON array of `{"id", "record", "reason"}` (a correction) or `{"id", "withdraw":
/// true, "reason"}`. Each item is judged as its single route would judge it; the refused ones
/// are listed with that route's status, the others are made, exactly once, together.
#[utoipa::path(
    tag = "records",
    request_body = Vec<BulkChangeIn>,
    responses(
        (status = 200, body = BulkChangeAnswer),
        (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody),
        (status = 422, body = BulkChangeAnswer),
        (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/corrections")]
async fn bulk(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Ingest)?;
    state.limits.ingest(&who.token_key)?;
    let limits = &state.ingest_limits;
    let _budget = super::events::reserve_body_budget(&state, &req).await?;
    let declared = super::events::declared_length(&req).map(|n| n as usize);
    let body = super::events::read_body(
        payload,
        limits.max_body_bytes,
        declared,
        false,
        limits.max_records,
    )
    .await?;
    let items: Vec<BulkChangeIn> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "$",
            format!("the body must be a JSON array of {{id, record | withdraw, reason}}: {e}"),
        )
    })?;
    if items.len() > limits.max_records {
        return Err(super::events::too_many(
            items.len().to_string(),
            limits.max_records,
        ));
    }

    // Each item checked on its own first: id, reason, the new version.
    let mut errors: Vec<BulkRejection> = Vec::new();
    let refuse =
        |errors: &mut Vec<BulkRejection>, index: usize, id: Option<String>, e: ApiError| {
            use actix_web::ResponseError;
            let (field, reason) = match &e {
                ApiError::BadRequest { field, reason }
                | ApiError::Unprocessable { field, reason } => (field.clone(), reason.clone()),
                other => ("id".to_string(), other.to_string()),
            };
            errors.push(BulkRejection {
                index,
                id,
                status: e.status_code().as_u16(),
                field,
                reason,
            });
        };
    let mut planned: Vec<(usize, String, String, Change)> = Vec::new();
    let mut ids_seen = std::collections::HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let Some(id) = item.id.filter(|id| !id.is_empty()) else {
            refuse(
                &mut errors,
                index,
                None,
                ApiError::bad_request("id", "the record's id is required"),
            );
            continue;
        };
        if !ids_seen.insert(id.clone()) {
            refuse(
                &mut errors,
                index,
                Some(id),
                ApiError::bad_request(
                    "id",
                    "the same record twice in one request: send its last version once",
                ),
            );
            continue;
        }
        let checked = reason_of(item.reason.as_deref()).and_then(|reason| {
            let plan = match (item.record, item.withdraw) {
                (Some(_), true) => Err(ApiError::bad_request(
                    "withdraw",
                    "either a record (a correction) or \"withdraw\": true, not both",
                )),
                (Some(record), false) => new_version(&state, &who, &id, record, "api")
                    .map(|r| Change::Correct(Box::new(r))),
                (None, true) => Ok(Change::Withdraw),
                (None, false) => Err(ApiError::bad_request(
                    "record",
                    "a record to correct it with, or \"withdraw\": true",
                )),
            }?;
            Ok((reason, plan))
        });
        match checked {
            Ok((reason, plan)) => planned.push((index, id, reason, plan)),
            Err(e) => refuse(&mut errors, index, Some(id), e),
        }
    }

    // One read of the stored versions for the whole request, once what was accepted before
    // has landed.
    let started = std::time::Instant::now();
    if !planned.is_empty() {
        landed(&state).await?;
    }
    let landed_ms = started.elapsed().as_millis() as u64;
    let ids: Vec<&str> = planned.iter().map(|(_, id, _, _)| id.as_str()).collect();
    let stored = if ids.is_empty() {
        Vec::new()
    } else {
        state.store.records_rows(&ids).await?
    };
    let read_ms = started.elapsed().as_millis() as u64;
    let mut by_id: std::collections::HashMap<String, Vec<EventRow>> = Default::default();
    for row in stored {
        by_id.entry(row.id.clone()).or_default().push(row);
    }
    let mut rows: Vec<EventRow> = Vec::new();
    // (index, id, first row, rows, is a withdrawal)
    let mut made: Vec<(usize, String, usize, usize, bool)> = Vec::new();
    let mut unchanged = 0;
    for (index, id, reason, change) in planned {
        let history = by_id.remove(&id).and_then(History::of);
        match judge(&state, &who, &id, history, change, &reason) {
            Err(e) => refuse(&mut errors, index, Some(id), e),
            Ok(Judged::Same { .. }) => unchanged += 1,
            Ok(Judged::Rows {
                rows: more,
                withdrawn,
                ..
            }) => {
                made.push((index, id, rows.len(), more.len(), withdrawn));
                rows.extend(more);
            }
        }
    }
    let built_ms = started.elapsed().as_millis() as u64;
    let done = state.ingest.accept(rows).await?;
    tracing::debug!(
        landed_ms,
        read_ms,
        built_ms,
        accepted_ms = started.elapsed().as_millis() as u64,
        "bulk corrections"
    );
    let (mut corrected, mut withdrawn) = (Vec::new(), Vec::new());
    for (index, id, first, n, is_withdrawal) in made {
        let landed = done.outcomes[first..first + n]
            .iter()
            .all(|o| matches!(o, AppendOutcome::Accepted { .. }));
        if !landed {
            refuse(&mut errors, index, Some(id.clone()), changed_meanwhile(&id));
        } else if is_withdrawal {
            withdrawn.push(id);
        } else {
            corrected.push(id);
        }
    }
    errors.sort_by_key(|e| e.index);
    for (action, ids) in [
        (AuditAction::RecordCorrected, &corrected),
        (AuditAction::RecordWithdrawn, &withdrawn),
    ] {
        if !ids.is_empty() {
            state.audit.record(
                super::audit_entry(&state, &req, &who, action)
                    .target(&format!("{} records", ids.len()))
                    .detail(ids.join(", ")),
            );
        }
    }
    let answer = BulkChangeAnswer {
        corrected: corrected.len(),
        withdrawn: withdrawn.len(),
        unchanged,
        rejected: errors.len(),
        errors,
    };
    Ok(
        if answer.corrected + answer.withdrawn + answer.unchanged == 0 && answer.rejected > 0 {
            HttpResponse::UnprocessableEntity().json(answer)
        } else {
            HttpResponse::Ok().json(answer)
        },
    )
}
