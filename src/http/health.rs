//! Liveness, readiness and Prometheus metrics.

use actix_web::{get, web, HttpResponse};

use super::{ApiError, AppState};
use crate::wire::ops::{Health, Readiness};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// How long a readiness probe waits for ClickHouse.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(800);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
#[get("/healthz")]
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        instance: state.instance.clone(),
    })
}

/// ClickHouse answers, every migration is applied, and the writer is not stuck on an insert that
/// retrying cannot fix.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Not ready", body = Readiness)))]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let check = async {
        match state.store.ping().await {
            Err(e) => (e.to_string(), "unknown".to_string()),
            Ok(()) => match state.store.migrations_current().await {
                Ok(true) => ("ok".into(), "applied".into()),
                Ok(false) => ("ok".into(), "pending".into()),
                Err(e) => ("ok".into(), format!("unknown: {e}")),
            },
        }
    };
    // A frozen ClickHouse accepts connections and never answers: a probe must still get an
    // answer quickly, so that a balancer takes this instance out.
    let (clickhouse, migrations) = tokio::time::timeout(READY_WITHIN, check)
        .await
        .unwrap_or_else(|_| {
            (
                format!("no answer within {} ms", READY_WITHIN.as_millis()),
                "unknown".into(),
            )
        });
    let writer = state.ingest.writer.blocked().unwrap_or_else(|| "ok".into());
    let draining = state.streams.is_draining();
    let caught_up = state.ingest.log.caught_up();
    let stream = match &state.ingest.log {
        crate::ingest::RecordLog::Local(_) => None,
        crate::ingest::RecordLog::Broker(_) if caught_up => Some("ok"),
        crate::ingest::RecordLog::Broker(_) => Some("catching up"),
    };
    let ready =
        clickhouse == "ok" && migrations == "applied" && writer == "ok" && !draining && caught_up;
    let body = Readiness {
        clickhouse,
        migrations,
        writer,
        stream,
        definitions: state.definitions.refused().unwrap_or_else(|| "ok".into()),
        draining,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
/// Prometheus text exposition: for `auth.metrics_token` (what Prometheus's `authorization`
/// sends) or an admin's token; never anonymous — it says how the service and its writer are
/// doing, which is not for every screen.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
    (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/metrics")]
async fn metrics(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = super::auth::token_of(&req).ok_or(crate::auth::AuthError::Missing)?;
    let scraper = !state.metrics_token.is_empty()
        && crate::auth::tokens::same_secret(token.as_bytes(), state.metrics_token.as_bytes());
    if !scraper {
        let who = state.auth.authenticate(Some(&token))?;
        crate::auth::authorize(
            &state.tree,
            &who,
            crate::auth::Action::Admin,
            state.tree.root(),
        )?;
    }
    state.refresh_gauges();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.prom.render()))
}
