//! `POST /api/v1/events`: records in.

use std::time::Duration;

use actix_web::{post, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{auth::Caller, ApiError, AppState};
use crate::auth::{authorize, Action};
use crate::domain::record::{err, EventRow};
use crate::domain::time::rfc3339_micros;
use crate::wire::events::{ArrayError, IncomingBatch, IngestAnswer, Rejection};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(post_events);
}

/// Reads the body up to `limit` bytes; over it: 413 and nothing accepted. For NDJSON the
/// records are counted as the lines arrive, so a body of more than `max_records` lines is
/// refused without being read to its end.
pub(super) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    declared: Option<usize>,
    ndjson: bool,
    max_records: usize,
) -> Result<web::BytesMut, ApiError> {
    // Sized once from Content-Length (already checked against the limit): growing by
    // doubling would hold up to twice the body.
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut lines = NdjsonLines::default();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request("$", format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "the body exceeds the limit of {limit} bytes; nothing was accepted"
            )));
        }
        if ndjson && lines.feed(&chunk) > max_records {
            return Err(too_many(format!("more than {max_records}"), max_records));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(super) fn too_many(count: String, max_records: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "{count} records exceed the limit of {max_records} per request; nothing was accepted"
    ))
}

/// Counts NDJSON lines that hold anything but ASCII whitespace, across chunk boundaries.
#[derive(Default)]
struct NdjsonLines {
    count: usize,
    line_has_content: bool,
}

impl NdjsonLines {
    fn feed(&mut self, chunk: &[u8]) -> usize {
        for &b in chunk {
            if b == b'\n' {
                self.line_has_content = false;
            } else if !b.is_ascii_whitespace() && !self.line_has_content {
                self.line_has_content = true;
                self.count += 1;
            }
        }
        self.count
    }
}

/// Holds a share of `ingest.max_body_bytes_in_flight` while a body is read and checked, so
/// that many large bodies at once cannot take more memory than that (in KiB units).
pub(super) fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

pub(super) async fn reserve_body_budget(
    state: &AppState,
    req: &HttpRequest,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let limits = &state.ingest_limits;
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(ApiError::TooLarge(format!(
            "the body exceeds the limit of {} bytes; nothing was accepted",
            limits.max_body_bytes
        )));
    }
    // Without a length (chunked), a body may be as large as the limit.
    let bytes = declared.unwrap_or(limits.max_body_bytes as u64);
    let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let wait = tokio::time::timeout(
        Duration::from_secs(5),
        state.ingest_budget.clone().acquire_many_owned(kib),
    );
    match wait.await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::Unavailable {
            reason: "too many request bodies are being read at once; retry shortly".into(),
            retry_after_secs: Some(1),
        }),
    }
}

/// How records were sent (`?via=`): `api` (the default) or `form`.
pub(super) fn via_of(via: Option<&str>) -> Result<&'static str, ApiError> {
    match via {
        None | Some("api") => Ok("api"),
        Some("form") => Ok("form"),
        Some(other) => Err(ApiError::bad_request(
            "via",
            format!("'{other}': api (the default) or form"),
        )),
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    /// How the records were sent, kept with each and shown in a unit's records: `api` (the
    /// default) or `form` (the unit workspace's forms).
    pub(super) via: Option<String>,
}

/// Send records: a JSON array of events, or NDJSON (`Content-Type: application/x-ndjson`).
/// Valid records are accepted even when others in the same body are rejected; the answer is
/// 200 when anything was accepted or was a duplicate, 422 when every record was rejected.
/// Bounds: `ingest.max_body_bytes` per body and `ingest.max_records` per body (413, counted
/// while reading, nothing accepted), `ingest.max_body_bytes_in_flight` over all bodies being
/// read at once (503 with Retry-After when a body waits more than 5 s for its share).
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest", params(IngestQuery),
    request_body(content = Vec<crate::wire::events::EventIn>, description = "Events as in CONTRACT.md: a JSON array, or NDJSON with Content-Type application/x-ndjson", content_type = "application/json"),
    responses(
        (status = 200, body = IngestAnswer), (status = 422, body = IngestAnswer),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/events")]
async fn post_events(
    caller: Caller,
    q: super::params::Params<IngestQuery>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // A role that may not send records is refused as a whole; scope is checked per record.
    let who = caller.may(&state, Action::Ingest)?;
    let via = via_of(q.via.as_deref())?;
    state.limits.ingest(&who.token_key)?;
    let limits = &state.ingest_limits;
    let ndjson = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl")
        });
    let _budget = reserve_body_budget(&state, &req).await?;
    let declared = declared_length(&req).map(|n| n as usize);
    let body = read_body(
        payload,
        limits.max_body_bytes,
        declared,
        ndjson,
        limits.max_records,
    )
    .await?;

    let body = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request("$", format!("the body is not UTF-8: {e}")))?;
    let not_an_array = |e: serde_json::Error| match e.classify() {
        // Well-formed JSON of the wrong shape: no need to parse it again to tell.
        serde_json::error::Category::Data => {
            ApiError::bad_request("$", "the body must be a JSON array of events (or NDJSON)")
        }
        _ => ApiError::bad_request("$", format!("the body is not JSON: {e}")),
    };
    let batch = if ndjson {
        IncomingBatch::from_ndjson(body)
    } else {
        // Elements are counted as they are read: refusing a huge array costs no memory.
        IncomingBatch::from_array(body, limits.max_records).map_err(|e| match e {
            ArrayError::TooMany => too_many(
                format!("more than {}", limits.max_records),
                limits.max_records,
            ),
            ArrayError::Json(e) => not_an_array(e),
        })?
    };
    if batch.len() > limits.max_records {
        return Err(too_many(batch.len().to_string(), limits.max_records));
    }

    let now = time::OffsetDateTime::now_utc();
    let locator = state.map.as_ref();
    let catalogue = state.hub.catalogue();
    let mut rows = Vec::with_capacity(batch.len());
    let mut errors: Vec<Rejection> = Vec::new();
    for (index, (id, checked)) in batch
        .validate(&catalogue.kinds, &state.tree, locator, now, via)
        .enumerate()
    {
        let row = match checked {
            Ok(row) => row,
            Err(e) => {
                errors.push(Rejection::new(index, id, e));
                continue;
            }
        };
        // A valid record's org is in the tree; the token must cover it.
        let allowed = state
            .tree
            .get(&row.org)
            .ok_or_else(|| "unknown org".to_string())
            .and_then(|org| {
                authorize(&state.tree, &who, Action::Ingest, org).map_err(|e| e.to_string())
            });
        match allowed {
            Ok(()) => rows.push(EventRow {
                actor: who.name.clone(),
                ..row
            }),
            Err(reason) => errors.push(Rejection::new(index, Some(row.id), err("org", reason))),
        }
    }

    let done = state.ingest.accept(rows).await?;
    state.prom.ingest_accepted.inc_by(done.accepted as u64);
    state.prom.ingest_duplicates.inc_by(done.duplicates as u64);
    state.prom.ingest_rejected.inc_by(errors.len() as u64);
    let answer = IngestAnswer {
        accepted: done.accepted,
        duplicates: done.duplicates,
        rejected: errors.len(),
        accepted_at: (done.accepted > 0).then(|| rfc3339_micros(done.durable_at)),
        errors,
    };
    Ok(
        if done.accepted + done.duplicates == 0 && answer.rejected > 0 {
            HttpResponse::UnprocessableEntity().json(answer)
        } else {
            HttpResponse::Ok().json(answer)
        },
    )
}
