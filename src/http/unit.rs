//! A unit's workspace (`/unit`) and what it reads: `GET /api/v1/pace` (standing, rank among
//! siblings, required pace), `GET /api/v1/kinds` (the forms of what the unit may report) and
//! `GET /api/v1/records` (the unit's own records, for correcting or withdrawing).

use actix_web::{get, web, HttpResponse};
use serde::Deserialize;

use super::{
    auth::{readable_scope, Caller},
    params::Params,
    ApiError, AppState,
};
use crate::auth::{authorize, Action};
use crate::domain::catalogue::{Judged, MetricDef};
use crate::domain::kinds::FieldType;
use crate::domain::metric::Figure;
use crate::domain::org::NodeIdx;
use crate::domain::pace::{pace as required_pace, SOON_DAYS};
use crate::domain::time::{local_date, rfc3339, rfc3339_shanghai};
use crate::wire::events::record_json;
use crate::wire::figures::{self, target_zh};
use crate::wire::unit::{
    DueReport, FieldForm, KindForm, PaceAnswer, PaceView, Rank, RecordView, RecordsAnswer, Standing,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(pace).service(kinds).service(records);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnitQuery {
    /// Org code of the unit (default: the caller's own scope).
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
}

/// The unit a request is about: the `scope` given, else the caller's own. Another unit's
/// workspace is answered as missing (404), as another unit's record is.
fn unit_scope(
    caller: &Caller,
    state: &AppState,
    scope: Option<&str>,
) -> Result<(String, NodeIdx), ApiError> {
    let own = state.tree.node(caller.0.scope).code.clone();
    let code = scope.unwrap_or(&own);
    readable_scope(&caller.0, state, Some(code)).map_err(|e| match e {
        ApiError::Forbidden(_) => ApiError::NotFound {
            what: format!("org {code}"),
        },
        other => other,
    })
}

/// Whether lower figures are better: the target is a most, or the measure counts open cases
/// or waiting time (as the catalogue says).
fn lower_is_better(def: &MetricDef) -> bool {
    def.target.is_some_and(|t| t.at_most) || def.measure.lower_is_better()
}

/// What a figure is compared on: the overdue count where the target judges that, else the value.
fn compared(def: &MetricDef, f: &Figure) -> Option<f64> {
    match def.target.map(|t| t.on) {
        Some(Judged::Overdue) => f.overdue.map(|o| o as f64),
        _ => f.value,
    }
}

/// The node's place among its siblings' figures (its own included): 1 + those strictly better.
fn rank(def: &MetricDef, own: &Figure, siblings: &[Figure]) -> Option<Rank> {
    let mine = compared(def, own)?;
    let values: Vec<f64> = siblings.iter().filter_map(|f| compared(def, f)).collect();
    if values.len() < 2 {
        return None;
    }
    let better = |v: f64| {
        if lower_is_better(def) {
            v < mine - 1e-12
        } else {
            v > mine + 1e-12
        }
    };
    Some(Rank {
        position: 1 + values.iter().filter(|&&v| better(v)).count(),
        of: values.len(),
    })
}

/// A unit's standing: every metric shown at its level — value, target, deadline, status, its
/// rank among its siblings — and, for each target not yet met, what it must still do and how
/// much per remaining week, month or quarter (the required pace). Any node the caller may read.
#[utoipa::path(get, path = "/api/v1/pace", tag = "unit", params(UnitQuery),
    responses((status = 200, body = PaceAnswer),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/pace")]
async fn pace(
    caller: Caller,
    q: Params<UnitQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (code, node) = unit_scope(&caller, &state, q.scope.as_deref())?;
    let tree = &state.tree;
    let defs = state.hub.catalogue();
    let now = state.hub.now();
    let today = local_date(now);
    let org = tree.node(node);
    let siblings: Vec<NodeIdx> = match org.parent {
        Some(p) => tree
            .node(p)
            .children
            .iter()
            .copied()
            .filter(|&s| tree.node(s).level == org.level)
            .collect(),
        None => vec![node],
    };
    let window = (SOON_DAYS * 86_400) as u32;
    let metrics: Vec<Standing> = state.hub.read(now, |agg| {
        defs.metrics
            .iter()
            .filter_map(|def| {
                let f = agg.figure(node, def.id, now)?;
                let theirs: Vec<Figure> = siblings
                    .iter()
                    .filter_map(|&s| agg.figure(s, def.id, now))
                    .collect();
                let soon = agg.due_within(node, def.id, window);
                Some(Standing {
                    metric: def.name.clone(),
                    label_zh: def.label_zh.clone(),
                    clause: def.clause.clone(),
                    unit: figures::unit_name(def.unit),
                    unit_zh: figures::unit_zh(def),
                    precision: def.precision,
                    target_zh: target_zh(def),
                    lower_is_better: lower_is_better(def),
                    judged_on: match def.target.map(|t| t.on) {
                        Some(Judged::Overdue) => "overdue",
                        _ => "value",
                    },
                    rank: rank(def, &f, &theirs),
                    pace: required_pace(def, &defs.kinds, &f, today, soon).map(PaceView::from),
                    figure: figures::Figure::from(&f),
                })
            })
            .collect()
    });
    let reports: Vec<DueReport> = state
        .hub
        .read(now, |agg| agg.own_reports(node, now))
        .into_iter()
        .map(|r| {
            let state = if r.on_time > 0 {
                "on_time"
            } else if r.records > 0 {
                "late"
            } else if today > r.due {
                "missing"
            } else {
                "pending"
            };
            DueReport {
                kind: r.kind.as_str().to_string(),
                label_zh: defs
                    .kinds
                    .get(r.kind.as_str())
                    .map(|k| k.label_zh.clone())
                    .unwrap_or_default(),
                every: r.every.as_str(),
                due: r.due.to_string(),
                state,
                records: r.records,
                days_left: (state == "pending").then(|| (r.due - today).whole_days() + 1),
            }
        })
        .collect();
    // The unit's own users, and admins, report; the levels above look on.
    let may_report = (caller.0.scope == node || caller.0.role == crate::auth::Role::Admin)
        && authorize(tree, &caller.0, Action::Ingest, node).is_ok();
    Ok(HttpResponse::Ok().json(PaceAnswer {
        scope: code,
        may_report,
        name: org.name.clone(),
        level: org.level.as_str(),
        parent: org.parent.map(|p| tree.node(p).code.clone()),
        parent_name: org.parent.map(|p| tree.node(p).name.clone()),
        at: rfc3339(now),
        metrics,
        reports,
    }))
}

/// The record kinds a unit may report (those whose levels include the unit's), each as a form
/// shows it: fields with their Chinese labels, types, ranges and bounds, and the subject. A new
/// kind file is a new form.
#[utoipa::path(get, path = "/api/v1/kinds", tag = "unit", params(UnitQuery),
    responses((status = 200, body = Vec<KindForm>),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/kinds")]
async fn kinds(
    caller: Caller,
    q: Params<UnitQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, node) = unit_scope(&caller, &state, q.scope.as_deref())?;
    let level = state.tree.node(node).level;
    let catalogue = state.hub.catalogue();
    let list: Vec<KindForm> = catalogue
        .kinds
        .all()
        .filter(|k| k.allows(level) && !k.made_by_tasks)
        .map(|k| KindForm {
            kind: k.kind.as_str().to_string(),
            label_zh: k.label_zh.clone(),
            levels: k.levels.iter().map(|l| l.as_str()).collect(),
            subject: k.subject.clone(),
            fields: k
                .fields
                .iter()
                .map(|f| {
                    let count = f.ty == FieldType::Count;
                    FieldForm {
                        name: f.name.clone(),
                        label_zh: f.label_zh.clone(),
                        ty: match f.ty {
                            FieldType::Text => "text",
                            FieldType::Count => "count",
                            FieldType::Flag => "flag",
                        },
                        min: count.then_some(f.min),
                        max: count.then_some(f.max),
                        at_most: f.at_most.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Org code of the unit (default: the caller's own scope). Its own records only, not its
    /// subtree's.
    #[param(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    scope: Option<String>,
    /// How many days back, today included (default 30, at most 366).
    #[param(minimum = 1, maximum = 366)]
    days: Option<u32>,
    /// One kind only.
    kind: Option<String>,
    /// At most this many (default 200, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// A unit's own effective records (the current version of each, withdrawn ones left out) of
/// the last `days` days by their time, newest first: who sent each version and how (form,
/// ledger, API). Readable by whoever may read the unit (a clerk of the unit, its leaders, the
/// levels above); changed through `PUT` / `DELETE /api/v1/events/{id}`.
#[utoipa::path(get, path = "/api/v1/records", tag = "unit", params(RecordsQuery),
    responses((status = 200, body = RecordsAnswer),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/records")]
async fn records(
    caller: Caller,
    q: Params<RecordsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (code, node) = unit_scope(&caller, &state, q.scope.as_deref())?;
    let days = super::params::in_range("days", q.days.unwrap_or(30).into(), 1, 366)? as u32;
    let limit = super::params::in_range("limit", q.limit.unwrap_or(200), 1, 1000)?;
    let catalogue = state.hub.catalogue();
    let kind = match q.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(
            catalogue
                .kinds
                .get(k)
                .ok_or_else(|| ApiError::bad_request("kind", format!("unknown kind '{k}'")))?
                .kind
                .as_str(),
        ),
    };
    let now = state.hub.now();
    let today = local_date(now);
    let first = today - time::Duration::days(i64::from(days) - 1);
    let since = first
        .midnight()
        .assume_offset(time::macros::offset!(+8))
        .unix_timestamp()
        .clamp(0, i64::from(u32::MAX)) as u32;
    let org = &state.tree.node(node).code;
    // Read-your-writes: a record just sent, corrected or withdrawn shows as it now is (the
    // list is read from ClickHouse; what was accepted is flushed there first).
    state
        .ingest
        .wait_landed(std::time::Duration::from_secs(5))
        .await;
    let mut rows = state.store.org_records(org, since, kind, limit + 1).await?;
    let truncated = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    // Those who send and correct the unit's records read them as sent; the levels above and
    // the unit's leaders read personal numbers masked, as analysts do in SQL.
    let unmasked = matches!(
        caller.0.role,
        crate::auth::Role::Clerk | crate::auth::Role::Admin
    );
    let records = rows
        .iter()
        .map(|r| RecordView {
            record: if unmasked {
                record_json(r)
            } else {
                masked(record_json(r))
            },
            kind_zh: catalogue
                .kinds
                .get(&r.kind)
                .map(|k| k.label_zh.clone())
                .unwrap_or_default(),
            version: r.version,
            by: r.actor.clone(),
            via: r.source.to_string(),
            received: rfc3339_shanghai(r.received_at as i64),
        })
        .collect();
    Ok(HttpResponse::Ok().json(RecordsAnswer {
        scope: code,
        since: first.to_string(),
        truncated,
        records,
    }))
}

/// A resident ID number (18 characters) keeps its region and last four (440303********123X); a
/// mobile number its first three and last four (138****1234) — wherever a text value is one.
fn masked(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(mask_text(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(masked).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, masked(v))).collect()),
        other => other,
    }
}

fn mask_text(s: &str) -> String {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() == 18 && digits(0..17) && (b[17].is_ascii_digit() || b[17] == b'X' || b[17] == b'x')
    {
        format!("{}********{}", &s[..6], &s[14..])
    } else if b.len() == 11 && digits(0..11) && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) {
        format!("{}****{}", &s[..3], &s[7..])
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn id_and_mobile_numbers_are_masked_other_texts_kept() {
        assert_eq!(super::mask_text("44030319800101123X"), "440303********123X");
        assert_eq!(super::mask_text("13812341234"), "138****1234");
        assert_eq!(super::mask_text("440304001"), "440304001");
        assert_eq!(super::mask_text("12812341234"), "12812341234");
        let v = serde_json::json!({"data": {"person_id": "440303198001011234", "n": 3}});
        assert_eq!(super::masked(v)["data"]["person_id"], "440303********1234");
    }
}
