//! The OpenAPI document of the HTTP API, served at `/openapi.json`.

use actix_web::{get, web, HttpResponse};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "vscc — Veterans Service Command Center", description = "Live figures, targets and alerts for the Shenzhen veterans service system."),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::org::org_tree,
        super::org::org_subtree,
        super::org::districts,
        super::org::locate,
        super::events::post_events,
        super::corrections::bulk,
        super::corrections::correct,
        super::corrections::withdraw,
        super::corrections::versions,
        super::figures::metrics,
        super::figures::screens,
        super::figures::catalogue,
        super::figures::freshness,
        super::figures::at_risk,
        super::figures::scorecard,
        super::ws::ws,
        super::pages::dashboards,
        super::alerts::list_alerts,
        super::alerts::alert_history,
        super::alerts::ack_alert,
        super::alerts::unack_alert,
        super::alerts::list_silences,
        super::jobs::list_jobs,
        super::jobs::run_snapshots,
        super::jobs::trends,
        super::jobs::brief,
        super::jobs::brief_days,
        super::jobs::brief_pdf,
        super::jobs::print_brief_now,
        super::alerts::create_silence,
        super::alerts::delete_silence,
        super::pages::dashboard,
        super::users::login,
        super::users::me,
        super::users::list_users,
        super::users::add_user,
        super::users::revoke_user,
        super::users::list_screen_tokens,
        super::users::issue_screen_token,
        super::users::revoke_screen_token,
        super::query::run_query,
        super::query::cancel_query,
        super::query::query_history,
        super::query::schema,
        super::query::list_saved,
        super::query::save_query,
        super::query::delete_saved,
        super::imports::upload,
        super::imports::list,
        super::imports::rejects,
        super::imports::changes,
        super::alerts::quarantine,
        super::audit::list,
        super::unit::pace,
        super::unit::kinds,
        super::unit::records,
        super::tasks::issue,
        super::tasks::list,
        super::tasks::mine,
        super::tasks::feed,
        super::tasks::one,
        super::tasks::act,
    ),
    components(schemas(
        crate::wire::events::CorrectionIn,
        crate::wire::events::BulkChangeIn,
        crate::wire::events::BulkRejection,
        crate::wire::events::BulkChangeAnswer,
        crate::batch::ledger::corrections::ChangeRow,
        crate::wire::events::WithdrawalIn,
        crate::wire::events::CorrectionAnswer,
        crate::wire::events::RecordHistory,
        crate::wire::events::VersionView,
        crate::wire::events::WithdrawalView,
        crate::wire::events::EventIn, crate::wire::events::IngestAnswer, crate::wire::events::Rejection,
        crate::wire::events::QuarantineAnswer, crate::wire::events::QuarantinedRecord,
        crate::wire::org::OrgView, crate::wire::ErrorBody, crate::wire::ops::Readiness, crate::wire::ops::Health, crate::wire::ops::AuditEntryView,
        crate::wire::figures::FiguresAnswer, crate::wire::figures::Figure, crate::wire::figures::CatalogueEntry,
        crate::wire::figures::Freshness, crate::wire::figures::AtRiskAnswer, crate::wire::figures::AtRiskNode, crate::wire::alerts::AlertsAnswer, crate::wire::alerts::Alert,
        crate::wire::alerts::AlertGroup, crate::wire::alerts::AlertCounts,
        crate::wire::figures::ScorecardAnswer, crate::wire::figures::ClauseScore, crate::wire::figures::StatusCounts,
        crate::wire::figures::DeadlineScore, crate::wire::figures::DeadlineCell,
        crate::wire::alerts::AlertNotice, crate::wire::alerts::AlertHistoryEntry, crate::wire::ops::JobsRun,
        crate::wire::unit::PaceAnswer, crate::wire::unit::DueReport, crate::wire::unit::Standing, crate::wire::unit::Rank,
        crate::wire::unit::PaceView, crate::wire::unit::PerPeriodView, crate::wire::unit::KindForm,
        crate::wire::unit::FieldForm, crate::wire::unit::RecordsAnswer, crate::wire::unit::RecordView,
        crate::wire::tasks::NewTask, crate::wire::tasks::Selector, crate::wire::tasks::TaskIssued,
        crate::wire::tasks::StepIn, crate::wire::tasks::TaskList, crate::wire::tasks::UnitAssignments,
        crate::wire::tasks::UnitAssignment, crate::wire::tasks::TaskFeed, crate::wire::tasks::FeedEntry,
        crate::wire::tasks::TaskSummary, crate::wire::tasks::TaskView, crate::wire::tasks::AssignmentView,
        crate::wire::tasks::StepEntry, crate::domain::task::State, crate::domain::task::Priority,
        crate::wire::stream::ClientMessage, crate::wire::stream::Resume, super::org::Located)),
    modifiers(&BearerAuth, &RefusalsDocumented),
)]
pub struct ApiDoc;

/// Refusals every operation of a kind can answer, said once, here, for each operation that
/// does not say it itself: 401 and 403 where a token is taken (the role is always checked), 400
/// where parameters or a body are read.
struct RefusalsDocumented;

impl utoipa::Modify for RefusalsDocumented {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{content::ContentBuilder, Ref, ResponseBuilder};
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let error = |description: &str| {
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build()
                };
                let takes_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty())
                    || op.request_body.is_some();
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let responses = &mut op.responses.responses;
                if secured {
                    responses.entry("401".into()).or_insert_with(|| {
                        error("No valid token (header `Authorization: Bearer …`, or `?token=`)")
                            .into()
                    });
                    // Every secured operation checks the caller's role (and often its scope).
                    responses.entry("403".into()).or_insert_with(|| {
                        error("The token's role or scope does not allow this").into()
                    });
                }
                if takes_input {
                    responses.entry("400".into()).or_insert_with(|| {
                        error("A parameter or the body is not what the operation takes (the field is named)")
                            .into()
                    });
                }
            }
        }
    }
}

/// The methods the API serves at `path`, when `path` is one of its routes (for 405 answers).
pub fn methods_at(path: &str) -> Option<Vec<&'static str>> {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let segments = template.split('/').map(str::to_string).collect();
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter(|(_, has)| *has)
                .map(|(m, _)| m)
                .collect();
                (segments, methods)
            })
            .collect()
    });
    let parts: Vec<&str> = path.split('/').collect();
    let matches = |segments: &[String]| {
        segments.len() == parts.len()
            && segments.iter().zip(&parts).all(|(s, p)| {
                (s.starts_with('{') && !p.is_empty()) || s == p
                    // `{upload_id}/rejects.csv`-style: a parameter followed by a fixed suffix
                    || (s.starts_with('{') && s.contains('}') && p.ends_with(s.split('}').nth(1).unwrap_or("")))
            })
    };
    // The most specific route wins: `/api/v1/query/history` is that path, not `{id}` of
    // `/api/v1/query/{id}` (whose DELETE it does not take).
    let literal = |segments: &[String]| segments.iter().filter(|s| !s.starts_with('{')).count();
    let best = routes
        .iter()
        .filter(|(segments, _)| matches(segments))
        .map(|(segments, _)| literal(segments))
        .max();
    let mut methods: Vec<&'static str> = routes
        .iter()
        .filter(|(segments, _)| matches(segments) && Some(literal(segments)) == best)
        .flat_map(|(_, m)| m.iter().copied())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    (!methods.is_empty()).then_some(methods)
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(openapi_json);
}

/// The document, with the events' schema built from the record kinds in service.
#[get("/openapi.json")]
async fn openapi_json(state: web::Data<super::AppState>) -> HttpResponse {
    let mut doc = ApiDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        components.schemas.insert(
            "EventIn".into(),
            crate::wire::events::event_schema(&state.hub.catalogue().kinds),
        );
    }
    HttpResponse::Ok().json(doc)
}
