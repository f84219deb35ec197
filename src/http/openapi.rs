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
        super::figures::metrics,
        super::figures::screens,
        super::figures::catalogue,
        super::figures::freshness,
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
    ),
    components(schemas(crate::domain::org::OrgView, crate::domain::Level, super::error::ErrorBody, super::health::Readiness, super::org::Located, super::events::IngestAnswer, crate::ingest::Rejection)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

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

#[get("/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
