//! `POST /api/v1/events`: records in.

use std::time::Duration;

use actix_web::{post, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;

use super::{auth::principal, ApiError, AppState};
use crate::auth::{authorize, Action};
use crate::domain::record::{FieldError, IncomingBatch};
use crate::ingest::{AppendOutcome, LogError, Rejection};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(post_events);
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    /// Records newly accepted (durable when this answer is sent).
    pub accepted: usize,
    /// Records whose id was accepted before: no change.
    pub duplicates: usize,
    pub rejected: usize,
    /// When the accepted records became durable (RFC 3339, UTC, microseconds); absent when
    /// nothing new was accepted. Lets a sender time what happens after acceptance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    /// One entry per rejected record: its index in the body, the field and the reason.
    pub errors: Vec<Rejection>,
}

/// Reads the body up to `limit` bytes; over it: 413 and nothing accepted.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request("$", format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "the body exceeds the limit of {limit} bytes; nothing was accepted"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Send records: a JSON array of events, or NDJSON (`Content-Type: application/x-ndjson`).
/// Valid records are accepted even when others in the same body are rejected; the answer is
/// 200 when anything was accepted or was a duplicate, 422 when every record was rejected.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    request_body(content = Vec<Object>, description = "Events as in CONTRACT.md", content_type = "application/json"),
    responses(
        (status = 200, body = IngestAnswer), (status = 422, body = IngestAnswer),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/events")]
async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    // A role that may not send records is refused as a whole; scope is checked per record.
    authorize(&state.tree, &who, Action::Ingest, who.scope)?;
    state.limits.ingest(&who.token_key)?;
    let limits = &state.ingest_limits;
    let body = read_body(payload, limits.max_body_bytes).await?;
    let ndjson = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl")
        });

    let body = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request("$", format!("the body is not UTF-8: {e}")))?;
    let batch = if ndjson {
        IncomingBatch::from_ndjson(body)
    } else {
        IncomingBatch::from_array(body).map_err(|e| match e.classify() {
            // Well-formed JSON of the wrong shape: no need to parse it again to tell.
            serde_json::error::Category::Data => {
                ApiError::bad_request("$", "the body must be a JSON array of events (or NDJSON)")
            }
            _ => ApiError::bad_request("$", format!("the body is not JSON: {e}")),
        })?
    };
    if batch.len() > limits.max_records {
        return Err(ApiError::TooLarge(format!(
            "{} records exceed the limit of {} per request; nothing was accepted",
            batch.len(),
            limits.max_records
        )));
    }

    let now = time::OffsetDateTime::now_utc();
    let locator = state.map.as_ref();
    let mut rows = Vec::with_capacity(batch.len());
    let mut errors: Vec<Rejection> = Vec::new();
    for (index, (id, checked)) in batch.validate(&state.tree, locator, now, "api").enumerate() {
        let rejection = |id: Option<String>, e: FieldError| Rejection {
            index,
            id,
            field: e.field,
            reason: e.reason,
        };
        match checked {
            Ok(row) => {
                let org = state.tree.get(&row.org).expect("validated org exists");
                match authorize(&state.tree, &who, Action::Ingest, org) {
                    Ok(()) => rows.push(row),
                    Err(e) => errors.push(rejection(
                        Some(row.id),
                        FieldError {
                            field: "org".into(),
                            reason: e.to_string(),
                        },
                    )),
                }
            }
            Err(e) => errors.push(rejection(id, e)),
        }
    }

    let outcomes = if rows.is_empty() {
        Vec::new()
    } else {
        state.log.append(rows).await.map_err(|e| match e {
            LogError::Full { .. } => ApiError::Unavailable {
                reason: e.to_string(),
                retry_after_secs: Some(5),
            },
            other => ApiError::Unavailable {
                reason: other.to_string(),
                retry_after_secs: Some(1),
            },
        })?
    };
    let durable_at = time::OffsetDateTime::now_utc();
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, AppendOutcome::Accepted { .. }))
        .count();
    let duplicates = outcomes.len() - accepted;
    state.prom.ingest_accepted.inc_by(accepted as u64);
    state.prom.ingest_duplicates.inc_by(duplicates as u64);
    state.prom.ingest_rejected.inc_by(errors.len() as u64);
    // Read-your-writes: the answer leaves once the live figures include these records.
    if let Some(max_seq) = outcomes
        .iter()
        .filter_map(|o| match o {
            AppendOutcome::Accepted { seq } => Some(*seq),
            _ => None,
        })
        .max()
    {
        state
            .hub
            .wait_applied(max_seq, Duration::from_secs(2))
            .await;
    }
    errors.sort_by_key(|e| e.index);
    let answer = IngestAnswer {
        accepted,
        duplicates,
        rejected: errors.len(),
        accepted_at: (accepted > 0).then(|| crate::live::hub::rfc3339_micros(durable_at)),
        errors,
    };
    Ok(if accepted + duplicates == 0 && answer.rejected > 0 {
        HttpResponse::UnprocessableEntity().json(answer)
    } else {
        HttpResponse::Ok().json(answer)
    })
}
