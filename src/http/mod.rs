//! The actix-web app: routes, the error → status mapping, OpenAPI and static assets.

mod alerts;
mod auth;
pub mod error;
mod events;
mod figures;
mod health;
mod jobs;
mod openapi;
mod org;
mod pages;
mod ws;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{Server, ServiceRequest, ServiceResponse},
    middleware::{from_fn, Next},
    web, App, HttpServer,
};

pub use error::ApiError;

use crate::alert::AlertEngine;
use crate::auth::Authenticator;
use crate::config::WebSettings;
use crate::dashboards::Dashboards;
use crate::domain::OrgTree;
use crate::ingest::{DurableLog, IngestSettings};
use crate::live::Hub;
use crate::stream::{Presence, StreamSettings};
use crate::prom::Prom;
use crate::reference::DistrictMap;
use crate::store::Store;

/// Everything a request handler may need; shared by all workers.
pub struct AppState {
    pub tree: Arc<OrgTree>,
    pub map: Arc<DistrictMap>,
    pub store: Store,
    pub prom: Arc<Prom>,
    pub hub: Arc<Hub>,
    pub log: DurableLog,
    pub auth: Authenticator,
    pub presence: Arc<Presence>,
    pub ingest_limits: IngestSettings,
    pub stream_settings: StreamSettings,
    pub dashboards: Dashboards,
    pub web: WebSettings,
    pub alerts: Arc<AlertEngine>,
    pub appeals_sla: crate::live::AppealSla,
}

/// Serves the app on an already-bound listener (port 0 in tests). `handle_signals`: whether
/// SIGINT/SIGTERM stop the server (the binary) or the caller does (tests).
pub fn run(listener: TcpListener, state: Arc<AppState>, handle_signals: bool) -> std::io::Result<Server> {
    let hub = state.hub.clone();
    let assets_dir = state.web.assets_dir.clone();
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(from_fn(observe))
            .configure(health::routes)
            .configure(org::routes)
            .configure(events::routes)
            .configure(figures::routes)
            .configure(ws::routes)
            .configure(alerts::routes)
            .configure(jobs::routes)
            .configure(|cfg| pages::routes(cfg, &assets_dir))
            .configure(openapi::routes)
    })
    .listen(listener)?
    .shutdown_timeout(5)
    .disable_signals();
    let server = server.run();
    if handle_signals {
        tokio::spawn(stop_on_signal(server.handle(), hub));
    }
    Ok(server)
}

/// SIGINT or SIGTERM: close the streams (screens reconnect elsewhere or later), then stop
/// accepting and finish in-flight requests.
async fn stop_on_signal(handle: actix_web::dev::ServerHandle, hub: Arc<Hub>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    hub.close_streams();
    handle.stop(true).await;
}

/// Counts and times every request under its route pattern (not the raw path: bounded labels).
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let prom = req.app_data::<web::Data<AppState>>().map(|s| s.prom.clone());
    let res = next.call(req).await?;
    if let Some(prom) = prom {
        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        prom.http_requests
            .with_label_values(&[method.as_str(), route.as_str(), res.status().as_str()])
            .inc();
        prom.http_duration
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}
