//! Ledger uploads: `POST /api/v1/imports`, the list of imports and reject files.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::Action;
use crate::batch::ledger::{import, runs, Family};
use crate::store::audit::AuditAction;
use crate::wire::imports::{ImportAnswer, ImportRun};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(upload)
        .service(list)
        .service(rejects)
        .service(changes);
}

#[derive(Deserialize)]
struct UploadParams {
    /// The file's name, e.g. 招聘台账.xlsx: its extension tells CSV from Excel.
    name: String,
    family: Option<String>,
    /// The file is the whole truth of its family at the orgs it names.
    withdraw_missing: Option<bool>,
}

fn is_safe_upload_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// Import a ledger file (the request body: a CSV in UTF-8, or an Excel workbook). Rows outside
/// the caller's scope are rejected like any other bad row; the answer is the import's summary
/// with the first rejects, and `rejects_url` for the whole reject file.
#[utoipa::path(post, path = "/api/v1/imports", tag = "ingest",
    params(("name" = String, Query, min_length = 1, description = "File name, e.g. 招聘台账.csv"),
        ("family" = Option<String>, Query, description = "Ledger family when the headers do not tell"),
        ("withdraw_missing" = Option<bool>, Query, description = "The file is the whole truth of its family at the orgs it names: records of earlier imports it no longer holds are withdrawn")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ImportAnswer), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/imports")]
async fn upload(
    caller: Caller,
    req: HttpRequest,
    params: Params<UploadParams>,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Ingest)?;
    state.limits.ingest(&who.token_key)?;
    let family = match params.family.as_deref() {
        Some(f) => Some(
            Family::parse(f, &state.hub.catalogue().kinds).ok_or_else(|| {
                ApiError::bad_request("family", format!("unknown ledger family '{f}'"))
            })?,
        ),
        None => None,
    };
    let name = std::path::Path::new(&params.name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name", "a file name such as 招聘台账.csv"))?;
    let ext = std::path::Path::new(&name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("csv")
        .to_ascii_lowercase();
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let dir = state.ingest_limits.imports_dir.join(&upload_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let path = dir.join(format!("upload.{ext}"));
    // A unit's ledger is small; the city's bulk loads are not.
    let limit = if who.scope == state.tree.root() {
        state.ingest_limits.max_import_bytes
    } else {
        state
            .ingest_limits
            .max_unit_import_bytes
            .min(state.ingest_limits.max_import_bytes)
    };
    {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut size = 0usize;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("$", format!("could not read the upload: {e}"))
            })?;
            size += chunk.len();
            if size > limit {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(ApiError::TooLarge(format!(
                    "the file exceeds the limit of {limit} bytes; nothing was imported"
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let options = import::ImportOptions {
        family,
        reject_dir: Some(dir.clone()),
        scope: Some(who.scope),
        by: who.name.clone(),
        display_name: Some(name.clone()),
        withdraw_missing: params.withdraw_missing.unwrap_or(false),
        ..Default::default()
    };
    let locator = state.map.clone();
    let result = import::import_file(
        &state.store,
        std::sync::Arc::new(state.hub.catalogue().kinds.clone()),
        &state.tree,
        locator,
        &path,
        options,
    )
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    let audit = super::audit_entry(&state, &req, &who, AuditAction::LedgerImported).target(&name);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            state
                .audit
                .record(audit.outcome("refused").detail(e.to_string()));
            return Err(e.into());
        }
    };
    state.audit.record(audit.detail(format!(
        "import {}: {} rows, {} accepted, {} duplicates, {} corrected, {} withdrawn, {} rejected",
        summary.import_no,
        summary.rows,
        summary.accepted,
        summary.duplicates,
        summary.corrected,
        summary.withdrawn,
        summary.rejected
    )));
    state.imports_applied.notify_one();
    let rejects_url = summary
        .reject_file
        .as_ref()
        .map(|_| format!("/api/v1/imports/{upload_id}/rejects.csv"));
    let changes_url = summary
        .changes_file
        .as_ref()
        .map(|_| format!("/api/v1/imports/{upload_id}/changes.csv"));
    if rejects_url.is_none() && changes_url.is_none() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    Ok(HttpResponse::Ok().json(ImportAnswer::new(&summary, rejects_url, changes_url)))
}

/// The last 200 imports, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "ingest", responses((status = 200, body = Vec<ImportRun>)),
    security(("bearer" = [])))]
#[get("/api/v1/imports")]
async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::Ingest)?;
    let runs: Vec<ImportRun> = runs::list(&state.store)
        .await?
        .into_iter()
        .map(ImportRun::from)
        .collect();
    Ok(HttpResponse::Ok().json(runs))
}

/// An upload's reject file (CSV: 行号, 列, 内容, 原因).
#[utoipa::path(get, path = "/api/v1/imports/{upload_id}/rejects.csv", tag = "ingest",
    responses((status = 200, description = "CSV", content_type = "text/csv"), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/api/v1/imports/{upload_id}/rejects.csv")]
async fn rejects(
    caller: Caller,
    upload_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::Ingest)?;
    report(&state, &upload_id, ".rejects.csv", "reject file").await
}

/// An upload's change report (CSV: 行号, 记录编号, 列, 原值, 新值): the cells each corrected
/// record changed.
#[utoipa::path(get, path = "/api/v1/imports/{upload_id}/changes.csv", tag = "ingest",
    responses((status = 200, description = "CSV", content_type = "text/csv"), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/api/v1/imports/{upload_id}/changes.csv")]
async fn changes(
    caller: Caller,
    upload_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::Ingest)?;
    report(&state, &upload_id, ".changes.csv", "change report").await
}

/// The file of an upload's folder whose name ends with `suffix`.
async fn report(
    state: &AppState,
    upload_id: &str,
    suffix: &str,
    what: &str,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound {
        what: format!("{what} of upload {upload_id}"),
    };
    if !is_safe_upload_id(upload_id) {
        return Err(not_found());
    }
    let dir = state.ingest_limits.imports_dir.join(upload_id);
    let mut entries = tokio::fs::read_dir(&dir).await.map_err(|_| not_found())?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.to_string_lossy().ends_with(suffix) {
            let body = tokio::fs::read(&path).await.map_err(|_| not_found())?;
            return Ok(HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .body(body));
        }
    }
    Err(not_found())
}
