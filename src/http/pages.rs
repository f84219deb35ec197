//! The wall screen, duty console and SQL console pages, their static assets, the vendored ECharts build
//! (installed from npm by scripts/setup), and the dashboard definitions.

use actix_files::NamedFile;
use actix_web::{get, web, HttpResponse};

use super::{auth::Caller, ApiError, AppState};
use crate::auth::Action;

pub fn routes(cfg: &mut web::ServiceConfig, assets_dir: &std::path::Path) {
    cfg.service(index)
        .service(screen)
        .service(board)
        .service(metric_page)
        .service(brief)
        .service(duty)
        .service(unit)
        .service(tasks)
        .service(sql_console)
        .service(echarts)
        .service(dashboards)
        .service(dashboard)
        .service(
            // The files' own refusals (a `..` in the path, a missing file) in the JSON error
            // shape, as every other refusal.
            web::scope("/assets")
                .wrap(actix_web::middleware::ErrorHandlers::new().default_handler(assets_error))
                .service(actix_files::Files::new("", assets_dir).prefer_utf8(true)),
        );
}

fn assets_error<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::ResponseError;
    let status = res.status();
    let (req, _) = res.into_parts();
    let error = if status == actix_web::http::StatusCode::NOT_FOUND {
        ApiError::NotFound {
            what: format!("asset {}", req.path()),
        }
    } else {
        ApiError::bad_request(
            "path",
            format!("'{}' is not a file of the pages", req.path()),
        )
    };
    let res =
        actix_web::dev::ServiceResponse::new(req, error.error_response()).map_into_right_body();
    Ok(actix_web::middleware::ErrorHandlerResponse::Response(res))
}

async fn page(state: &AppState, file: &str) -> Result<NamedFile, ApiError> {
    NamedFile::open_async(state.web.assets_dir.join(file))
        .await
        .map(|f| f.prefer_utf8(true))
        .map_err(|_| ApiError::NotFound {
            what: format!("page {file} (assets folder missing?)"),
        })
}

/// The big screen ("one map"), default dashboard.
#[get("/")]
async fn index(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    page(&state, "index.html").await
}

/// The big screen showing dashboard `name`, in its layout.
#[get("/screen/{name}")]
async fn screen(
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<NamedFile, ApiError> {
    let layout = state.dashboards.get(&name).map(|d| d.dashboard.layout);
    match layout {
        Some(crate::dashboards::Layout::Board) => page(&state, "board.html").await,
        _ => page(&state, "index.html").await,
    }
}

/// The daily brief (每日简报), printable: `?date=YYYY-MM-DD` (default the newest day).
#[get("/brief")]
async fn brief(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    page(&state, "brief.html").await
}

/// The plan board (三年行动计划总览): every metric × the city and its districts.
#[get("/board")]
async fn board(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    page(&state, "board.html").await
}

/// A metric's page: its figure, the map coloured by it, the league table, its trend against
/// the target and deadline, and the nodes at risk farthest from the target first;
/// `?scope=` a district or street (default the city).
#[get("/metric/{id}")]
async fn metric_page(
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<NamedFile, ApiError> {
    if state.hub.catalogue().resolve(&[id.as_str()]).is_err() {
        return Err(ApiError::NotFound {
            what: format!("metric {id} (GET /api/v1/catalogue lists them)"),
        });
    }
    page(&state, "metric.html").await
}

/// A unit's workspace: its standing and required pace, report forms, ledger upload and its
/// records; `?scope=` another unit the caller may read (read-only unless it is their own).
#[get("/unit")]
async fn unit(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    page(&state, "unit.html").await
}

/// 督办台: the tasks sent down the tree from the caller's scope, one task's units on the map,
/// in a table and on a timeline; issuing one (`?new=1&metric=&scope=&units=&alert=&title=`
/// prefill it).
#[get("/tasks")]
async fn tasks(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    page(&state, "tasks.html").await
}

/// The duty console.
#[get("/duty")]
async fn duty(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    page(&state, "duty.html").await
}

/// The analysts' SQL console.
#[get("/sql")]
async fn sql_console(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    page(&state, "sql.html").await
}

#[get("/vendor/echarts.min.js")]
async fn echarts(state: web::Data<AppState>) -> Result<NamedFile, ApiError> {
    NamedFile::open_async(state.web.vendor_dir.join("echarts/dist/echarts.min.js"))
        .await
        .map_err(|_| ApiError::NotFound {
            what: "echarts.min.js (run scripts/setup)".into(),
        })
}

/// Dashboard definitions (`dashboards/*.json`): name, title, version, and any error of a file
/// whose newest content was refused.
#[utoipa::path(get, path = "/api/v1/dashboards", tag = "screens", responses((status = 200, description = "[{name, version, error, dashboard}]"),
    (status = 401, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/api/v1/dashboards")]
async fn dashboards(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    Ok(HttpResponse::Ok().json(state.dashboards.list()))
}

/// One dashboard definition; `version` changes when its file changes.
#[utoipa::path(get, path = "/api/v1/dashboards/{name}", tag = "screens",
    params(("name" = String, Path, description = "File name without .json")),
    responses((status = 200, description = "{name, version, error, dashboard}"), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/dashboards/{name}")]
async fn dashboard(
    caller: Caller,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    let d = state
        .dashboards
        .get(&name)
        .ok_or_else(|| ApiError::NotFound {
            what: format!("dashboard {name}"),
        })?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache"))
        .json(d))
}
