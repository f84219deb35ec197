//! The org tree and the district map.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::Action;
use crate::wire::org::OrgView;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(org_tree)
        .service(org_subtree)
        .service(districts)
        .service(locate);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DepthQuery {
    /// Levels of children to include (default: all).
    depth: Option<usize>,
}

/// The whole org tree: city → districts → streets → communities.
#[utoipa::path(get, path = "/api/v1/org", tag = "org", params(DepthQuery),
    responses((status = 200, body = OrgView), (status = 401, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/org")]
async fn org_tree(
    caller: Caller,
    state: web::Data<AppState>,
    q: Params<DepthQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    Ok(HttpResponse::Ok().json(OrgView::of(&state.tree, state.tree.root(), q.depth)))
}

/// One node and its subtree.
#[utoipa::path(get, path = "/api/v1/org/{code}", tag = "org", params(("code" = String, Path, description = "Org code"), DepthQuery),
    responses((status = 200, body = OrgView), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/org/{code}")]
async fn org_subtree(
    caller: Caller,
    state: web::Data<AppState>,
    code: web::Path<String>,
    q: Params<DepthQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    let idx = state.tree.get(&code).ok_or_else(|| ApiError::NotFound {
        what: format!("org {code}"),
    })?;
    Ok(HttpResponse::Ok().json(OrgView::of(&state.tree, idx, q.depth)))
}

/// District outlines (GCJ-02), simplified for a wall screen, with code, name and centroid.
#[utoipa::path(get, path = "/api/v1/geo/districts", tag = "geo",
    responses((status = 200, description = "GeoJSON FeatureCollection", content_type = "application/geo+json")),
    security(("bearer" = [])))]
#[get("/api/v1/geo/districts")]
async fn districts(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    Ok(HttpResponse::Ok()
        .content_type("application/geo+json")
        .insert_header(("Cache-Control", "private, max-age=3600"))
        .body(state.map.feature_collection_json().to_owned()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LocateQuery {
    /// GCJ-02 longitude.
    lon: f64,
    /// GCJ-02 latitude.
    lat: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Located {
    pub code: String,
    pub name: String,
}

/// The district that holds a GCJ-02 point.
#[utoipa::path(get, path = "/api/v1/geo/locate", tag = "geo", params(LocateQuery),
    responses((status = 200, body = Located), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/geo/locate")]
async fn locate(
    caller: Caller,
    state: web::Data<AppState>,
    q: Params<LocateQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    let d = state
        .map
        .locate(q.lon, q.lat)
        .ok_or_else(|| ApiError::NotFound {
            what: format!("a Shenzhen district at ({}, {})", q.lon, q.lat),
        })?;
    Ok(HttpResponse::Ok().json(Located {
        code: d.code.clone(),
        name: d.name.clone(),
    }))
}
