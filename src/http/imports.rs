//! Ledger uploads: `POST /api/v1/imports`, the list of imports and reject files.

use actix_web::{get, post, web, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::Action;
use crate::batch::ledger::{import, Family};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(upload).service(list).service(rejects);
}

#[derive(Deserialize)]
struct UploadParams {
    /// The file's name, e.g. 招聘台账.xlsx: its extension tells CSV from Excel.
    name: String,
    family: Option<String>,
}

fn is_safe_upload_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// Import a ledger file (the request body: a CSV in UTF-8, or an Excel workbook). Rows outside
/// the caller's scope are rejected like any other bad row; the answer is the import's summary
/// with the first rejects, and `rejects_url` for the whole reject file.
#[utoipa::path(post, path = "/api/v1/imports", tag = "ingest",
    params(("name" = String, Query, description = "File name, e.g. 招聘台账.csv"),
        ("family" = Option<String>, Query, description = "Ledger family when the headers do not tell")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = import::ImportSummary), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/imports")]
async fn upload(
    caller: Caller,
    params: Params<UploadParams>,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Ingest)?;
    state.limits.ingest(&who.token_key)?;
    let family = match params.family.as_deref() {
        Some(f) => Some(Family::parse(f).ok_or_else(|| {
            ApiError::bad_request("family", format!("unknown ledger family '{f}'"))
        })?),
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
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let path = dir.join(format!("upload.{ext}"));
    let limit = state.ingest_limits.max_import_bytes;
    {
        use std::io::Write;
        let mut file =
            std::fs::File::create(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut size = 0usize;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("$", format!("could not read the upload: {e}"))
            })?;
            size += chunk.len();
            if size > limit {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(ApiError::TooLarge(format!(
                    "the file exceeds the limit of {limit} bytes; nothing was imported"
                )));
            }
            file.write_all(&chunk)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
    }
    let options = import::ImportOptions {
        family,
        reject_dir: Some(dir.clone()),
        scope: Some(who.scope),
        by: who.name.clone(),
        display_name: Some(name),
        ..Default::default()
    };
    let locator = state.map.clone();
    let result = import::import_file(&state.store, &state.tree, locator, &path, options).await;
    let _ = std::fs::remove_file(&path);
    let summary = match result {
        Ok(s) => s,
        Err(import::ImportError::File { reason, .. }) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::bad_request("file", reason));
        }
        Err(import::ImportError::Store(e)) => return Err(e.into()),
        Err(import::ImportError::Unexpected(e)) => return Err(ApiError::Unexpected(e)),
    };
    state.imports_applied.notify_one();
    let mut answer = serde_json::to_value(&summary).map_err(|e| anyhow::anyhow!(e))?;
    answer["reject_file"] = serde_json::Value::Null;
    answer["rejects_url"] = match summary.reject_file {
        Some(_) => format!("/api/v1/imports/{upload_id}/rejects.csv").into(),
        None => {
            let _ = std::fs::remove_dir_all(&dir);
            serde_json::Value::Null
        }
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// The last 200 imports (file, ledger, rows, accepted, duplicates, rejected, outcome).
#[utoipa::path(get, path = "/api/v1/imports", tag = "ingest", responses((status = 200, description = "Imports, newest first")),
    security(("bearer" = [])))]
#[get("/api/v1/imports")]
async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::Ingest)?;
    Ok(HttpResponse::Ok().json(import::list(&state.store).await?))
}

/// An upload's reject file (CSV: 行号, 列, 内容, 原因).
#[utoipa::path(get, path = "/api/v1/imports/{upload_id}/rejects.csv", tag = "ingest",
    responses((status = 200, description = "CSV"), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/api/v1/imports/{upload_id}/rejects.csv")]
async fn rejects(
    caller: Caller,
    upload_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::Ingest)?;
    let not_found = || ApiError::NotFound {
        what: format!("reject file of upload {upload_id}"),
    };
    if !is_safe_upload_id(&upload_id) {
        return Err(not_found());
    }
    let dir = state.ingest_limits.imports_dir.join(upload_id.as_str());
    let file = std::fs::read_dir(&dir)
        .map_err(|_| not_found())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".rejects.csv"))
        .ok_or_else(not_found)?;
    let body = std::fs::read(&file).map_err(|_| not_found())?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(body))
}
