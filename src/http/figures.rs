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
use crate::wire::figures::{
    self, AtRiskAnswer, AtRiskNode, CatalogueEntry, FiguresAnswer, Freshness, FreshnessAnswer,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics)
        .service(screens)
        .service(catalogue)
        .service(freshness)
        .service(scorecard)
        .service(at_risk);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
    let mut list = local_screens(&state);
    // With several instances on one record stream: the others' screens too, as each last
    // shared them (every few seconds).
    if let Some(broker) = state.ingest.log.broker() {
        for (instance, document) in broker.shared().await? {
            if instance == state.instance {
                continue;
            }
            if let Ok(theirs) =
                serde_json::from_slice::<crate::wire::stream::InstanceShare>(&document)
            {
                list.extend(theirs.screens);
            }
        }
    }
    let tree = &state.tree;
    list.retain(|s| {
        s.subscriptions.iter().all(|sub| {
            tree.get(&sub.scope)
                .is_some_and(|sc| tree.is_within(sc, who.scope))
        })
    });
    Ok(HttpResponse::Ok().json(list))
}

/// The screens this instance serves.
pub fn local_screens(state: &AppState) -> Vec<crate::wire::stream::Screen> {
    state
        .presence
        .list()
        .iter()
        .map(|s| {
            let mut screen = screen_view(s);
            screen.instance = state.instance.clone();
            screen
        })
        .collect()
}

/// The metric catalogue: ids, Chinese labels, targets and where each metric applies.
#[utoipa::path(get, path = "/api/v1/catalogue", tag = "figures",
    responses((status = 200, body = Vec<CatalogueEntry>), (status = 401, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/catalogue")]
async fn catalogue(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.may(&state, Action::ReadFigures)?;
    let list: Vec<CatalogueEntry> = state
        .hub
        .catalogue()
        .metrics
        .iter()
        .map(CatalogueEntry::from)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AtRiskQuery {
    /// The metric id.
    metric: String,
    /// Org code (default: the city); every node below it where the metric applies is looked at.
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
    /// At most this many nodes (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `true`: `limit` applies to each level apart (the farthest districts, streets and
    /// communities), so that many far communities do not push the districts out of the list.
    per_level: Option<bool>,
}

/// The nodes below a scope (districts, streets, communities) where a metric is at risk or
/// missed, sorted by how far they are from the target (`shortfall`, in the metric's unit),
/// farthest first: the list a metric's page shows.
#[utoipa::path(get, path = "/api/v1/at-risk", tag = "figures", params(AtRiskQuery),
    responses((status = 200, body = AtRiskAnswer), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/at-risk")]
async fn at_risk(
    caller: Caller,
    q: Params<AtRiskQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use crate::domain::metric::{shortfall, Status};
    use crate::domain::pace::{pace, SOON_DAYS};
    let (code, scope) = readable_scope(&caller.0, &state, q.scope.as_deref())?;
    let limit = match q.limit {
        None => 50,
        Some(n @ 1..=1000) => n,
        Some(n) => {
            return Err(ApiError::bad_request(
                "limit",
                format!("{n} is not between 1 and 1000"),
            ))
        }
    };
    let known = state.hub.catalogue();
    let name = q.metric.trim();
    if name.is_empty() || name.contains(',') {
        return Err(ApiError::bad_request("metric", "one metric id is needed"));
    }
    let metric = known
        .resolve(&[name])
        .map_err(|e| ApiError::bad_request("metric", e))?;
    let def = metric
        .first()
        .and_then(|&m| known.get(m))
        .ok_or_else(|| ApiError::bad_request("metric", "one metric id is needed"))?;
    let tree = &state.tree;
    let now = state.hub.now();
    let today = crate::domain::time::local_date(now);
    let mut nodes: Vec<AtRiskNode> = state.hub.read(now, |agg| {
        tree.subtree(scope)
            .into_iter()
            .filter(|&n| n != scope && def.applies_to(tree.node(n).level))
            .filter_map(|n| {
                let f = agg.figures(n, &metric, now).into_iter().next()?.1;
                if !matches!(f.status, Status::AtRisk | Status::Missed) {
                    return None;
                }
                let node = tree.node(n);
                let soon = agg.due_within(n, def.id, (SOON_DAYS * 86_400) as u32);
                Some(AtRiskNode {
                    code: node.code.clone(),
                    name: node.name.clone(),
                    level: node.level.as_str(),
                    parent_name: node.parent.map(|p| tree.node(p).name.clone()),
                    shortfall: shortfall(def, &f).unwrap_or(0.0),
                    pace: pace(def, &known.kinds, &f, today, soon).map(Into::into),
                    figure: figures::Figure::from(&f),
                })
            })
            .collect()
    });
    nodes.sort_by(|a, b| {
        b.shortfall
            .total_cmp(&a.shortfall)
            .then_with(|| a.code.cmp(&b.code))
    });
    let total = nodes.len();
    let mut by_level = std::collections::BTreeMap::new();
    if q.per_level == Some(true) {
        nodes.retain(|n| {
            let seen = by_level.entry(n.level).or_insert(0);
            *seen += 1;
            *seen <= limit
        });
    } else {
        for n in &nodes {
            *by_level.entry(n.level).or_insert(0) += 1;
        }
        nodes.truncate(limit);
    }
    Ok(HttpResponse::Ok().json(AtRiskAnswer {
        metric: def.id.as_str().to_string(),
        scope: code,
        at: rfc3339(now),
        total,
        by_level,
        nodes,
    }))
}

fn screen_view(s: &crate::stream::ScreenInfo) -> crate::wire::stream::Screen {
    use crate::wire::stream::{Screen, ScreenSubscription};
    Screen {
        id: s.id,
        instance: String::new(),
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScorecardQuery {
    /// Org code (default: the city); it and its direct children are scored.
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
}

/// The plan at a glance: how many figures are met, on track, at risk, missed, tracked or
/// without data — the scope's own and every cell of the scope and its children, overall and
/// per clause — and, for each one-off target (a fixed deadline), whether each node met it by
/// its date, late, or not (from the snapshot of the deadline's day).
#[utoipa::path(get, path = "/api/v1/scorecard", tag = "figures", params(ScorecardQuery),
    responses((status = 200, body = figures::ScorecardAnswer),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/scorecard")]
async fn scorecard(
    caller: Caller,
    q: Params<ScorecardQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use crate::domain::catalogue::Deadline;
    use crate::domain::metric::deadline_outcome;
    use figures::{ClauseScore, DeadlineCell, DeadlineScore, ScorecardAnswer, StatusCounts};
    let (code, scope) = readable_scope(&caller.0, &state, q.scope.as_deref())?;
    let tree = &state.tree;
    let defs = state.hub.catalogue();
    let now = state.hub.now();
    let today = crate::domain::time::local_date(now);
    let nodes = tree.with_children(scope);
    // [metric][node]: the figure, where the metric is shown at the node's level.
    let figs: Vec<Vec<Option<crate::domain::metric::Figure>>> = state.hub.read(now, |agg| {
        defs.metrics
            .iter()
            .map(|d| nodes.iter().map(|&n| agg.figure(n, d.id, now)).collect())
            .collect()
    });
    let score = |clause: &str, which: &dyn Fn(&crate::domain::catalogue::MetricDef) -> bool| {
        let mut out = ClauseScore {
            clause: clause.to_string(),
            metrics: Vec::new(),
            scope: StatusCounts::default(),
            cells: StatusCounts::default(),
        };
        for (def, row) in defs.metrics.iter().zip(&figs) {
            if !which(def) {
                continue;
            }
            out.metrics.push(def.name.clone());
            for (i, f) in row.iter().enumerate() {
                let Some(f) = f else { continue };
                if i == 0 {
                    out.scope.add(f.status);
                }
                out.cells.add(f.status);
            }
        }
        out
    };
    let overall = score("全部", &|_| true);
    let mut clauses: Vec<ClauseScore> = Vec::new();
    for def in &defs.metrics {
        if clauses.iter().all(|c| c.clause != def.clause) {
            let clause = def.clause.clone();
            clauses.push(score(&clause, &|d| d.clause == clause));
        }
    }
    let codes: Vec<String> = nodes.iter().map(|&n| tree.node(n).code.clone()).collect();
    let mut deadlines = Vec::new();
    let mut kept: std::collections::HashMap<time::Date, _> = Default::default();
    for (def, row) in defs.metrics.iter().zip(&figs) {
        let Some(Deadline::Fixed(due)) = def.target.map(|t| t.deadline) else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = kept.entry(due) {
            let names: Vec<&str> = defs.metrics.iter().map(|d| d.name.as_str()).collect();
            slot.insert(
                crate::batch::snapshots::values_on(&state.store, due, &names, &codes).await?,
            );
        }
        let on_day = &kept[&due];
        let mut children = std::collections::BTreeMap::new();
        let mut cells = Vec::new();
        for (i, (&n, f)) in nodes.iter().zip(row).enumerate() {
            let Some(f) = f else { continue };
            let node = tree.node(n);
            let then = on_day.get(&(node.code.clone(), def.name.clone())).copied();
            let Some(outcome) = deadline_outcome(def, f, then, today) else {
                continue;
            };
            if i > 0 {
                *children.entry(outcome.as_str()).or_insert(0) += 1;
            }
            cells.push(DeadlineCell {
                code: node.code.clone(),
                name: node.name.clone(),
                outcome: outcome.as_str(),
                value_at_deadline: then.and_then(|t| t.0),
                value: f.value,
            });
        }
        deadlines.push(DeadlineScore {
            metric: def.name.clone(),
            label_zh: def.label_zh.clone(),
            clause: def.clause.clone(),
            deadline: due.to_string(),
            target_zh: figures::target_zh(def),
            children,
            nodes: cells,
        });
    }
    deadlines.sort_by(|a, b| a.deadline.cmp(&b.deadline));
    Ok(HttpResponse::Ok().json(ScorecardAnswer {
        scope: code,
        at: rfc3339(now),
        overall,
        clauses,
        deadlines,
    }))
}
