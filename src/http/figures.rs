//! `GET /api/v1/metrics`: the figures of a node and its direct children; `GET /api/v1/screens`.

use actix_web::{get, web, HttpResponse};

use serde::Deserialize;

use super::{
    auth::{readable_scope, Caller},
    params::Params,
    ApiError, AppState,
};
use crate::auth::Action;
use crate::domain::catalogue::Catalogue;
use crate::domain::metric::MetricId;
use crate::domain::time::rfc3339;
use crate::wire::figures::{self, CatalogueEntry, FiguresAnswer, Freshness, FreshnessAnswer};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics)
        .service(screens)
        .service(catalogue)
        .service(freshness);
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FiguresQuery {
    /// Org code of the node (default: the city).
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
    /// Comma-separated metric ids (default: all).
    metrics: Option<String>,
}

pub fn parse_metrics(known: &Catalogue, list: Option<&str>) -> Result<Vec<MetricId>, ApiError> {
    let names: Vec<&str> = list
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    known
        .resolve(&names)
        .map_err(|e| ApiError::bad_request("metrics", e))
}

/// The scope node and its direct children, each with every metric it has.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "figures", params(FiguresQuery),
    responses((status = 200, body = FiguresAnswer),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/metrics")]
async fn metrics(
    caller: Caller,
    q: Params<FiguresQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (code, scope) = readable_scope(&caller.0, &state, q.scope.as_deref())?;
    let tree = &state.tree;
    let metrics = parse_metrics(&state.hub.catalogue(), q.metrics.as_deref())?;
    let nodes: Vec<_> = tree
        .with_children(scope)
        .into_iter()
        .map(|n| (n, state.hub.current(n, &metrics)))
        .collect();
    Ok(HttpResponse::Ok().json(FiguresAnswer {
        scope: code,
        at: rfc3339(state.hub.now()),
        nodes: figures::nodes(tree, nodes.iter().map(|(n, f)| (*n, f))),
    }))
}

/// Connected wall screens (presence): who, since when, watching which scopes.
#[utoipa::path(get, path = "/api/v1/screens", tag = "figures",
    responses((status = 200, body = Vec<crate::wire::stream::Screen>)),
    security(("bearer" = [])))]
#[get("/api/v1/screens")]
async fn screens(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::ReadFigures)?;
    let list: Vec<crate::wire::stream::Screen> = state
        .presence
        .list()
        .iter()
        .filter(|s| {
            s.scopes
                .iter()
                .all(|&sc| state.tree.is_within(sc, who.scope))
        })
        .map(screen_view)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// The metric catalogue: ids, Chinese labels, targets and where each metric applies.
#[utoipa::path(get, path = "/api/v1/catalogue", tag = "figures",
    responses((status = 200, body = Vec<CatalogueEntry>)))]
#[get("/api/v1/catalogue")]
async fn catalogue(state: web::Data<AppState>) -> HttpResponse {
    let list: Vec<CatalogueEntry> = state
        .hub
        .catalogue()
        .metrics
        .iter()
        .map(CatalogueEntry::from)
        .collect();
    HttpResponse::Ok().json(list)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FreshnessQuery {
    /// Org code (default: the city); its direct children are included.
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
}

/// When each node (the scope and its children) last received a record of any kind, and how many
/// days ago: the wall screen marks nodes that stopped reporting. `null`: never reported.
#[utoipa::path(get, path = "/api/v1/freshness", tag = "figures", params(FreshnessQuery),
    responses((status = 200, body = std::collections::BTreeMap<String, Freshness>)), security(("bearer" = [])))]
#[get("/api/v1/freshness")]
async fn freshness(
    caller: Caller,
    q: Params<FreshnessQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, scope) = readable_scope(&caller.0, &state, q.scope.as_deref())?;
    let tree = &state.tree;
    let now = state.hub.now();
    let nodes = tree.with_children(scope);
    let out: FreshnessAnswer = state.hub.read(now, |agg| {
        nodes
            .iter()
            .map(|&n| {
                let last = agg.last_received(n);
                let freshness = Freshness {
                    last_received: last
                        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t as i64).ok())
                        .map(rfc3339),
                    days_silent: last.map(|t| (now.unix_timestamp() - t as i64).max(0) / 86_400),
                };
                (tree.node(n).code.clone(), freshness)
            })
            .collect()
    });
    Ok(HttpResponse::Ok().json(out))
}

fn screen_view(s: &crate::stream::ScreenInfo) -> crate::wire::stream::Screen {
    use crate::wire::stream::{Screen, ScreenSubscription};
    Screen {
        id: s.id,
        name: s.name.clone(),
        remote: s.remote.clone(),
        connected_at: s.connected_at.clone(),
        subscriptions: s
            .subscriptions
            .iter()
            .map(|x| ScreenSubscription {
                id: x.id.clone(),
                scope: x.scope.clone(),
                metrics: x.metrics.clone(),
            })
            .collect(),
    }
}
