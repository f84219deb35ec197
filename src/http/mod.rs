//! The actix-web app: routes, the error → status mapping, OpenAPI and static assets.

mod alerts;
mod auth;
pub mod error;
mod events;
mod figures;
mod health;
mod imports;
mod jobs;
mod openapi;
mod org;
mod pages;
mod query;
mod users;
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
use crate::prom::Prom;
use crate::reference::DistrictMap;
use crate::store::Store;
use crate::stream::{Presence, StreamSettings};

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
    pub sql: Arc<crate::sql::SqlGateway>,
    pub limits: Arc<crate::auth::RateLimits>,
    pub login_throttle: Arc<crate::auth::LoginThrottle>,
    /// Wakes the import follower (a ledger was just imported here).
    pub imports_applied: Arc<tokio::sync::Notify>,
}

/// Serves the app on an already-bound listener (port 0 in tests). `handle_signals`: whether
/// SIGINT/SIGTERM stop the server (the binary) or the caller does (tests).
pub fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    handle_signals: bool,
) -> std::io::Result<Server> {
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
            .configure(users::routes)
            .configure(query::routes)
            .configure(imports::routes)
            .configure(|cfg| pages::routes(cfg, &assets_dir))
            .configure(openapi::routes)
    })
    .on_connect(remember_socket)
    // Deltas are small frames sent as they happen: with Nagle's algorithm a frame waits for
    // the peer's (delayed) ACK of the previous one, up to 40 ms on Linux.
    .tcp_nodelay(true)
    .listen(listener)?
    .shutdown_timeout(5)
    .disable_signals();
    let server = server.run();
    if handle_signals {
        tokio::spawn(stop_on_signal(server.handle(), hub));
    }
    Ok(server)
}

/// The client's socket, for handlers that wait long and must notice a client that went away
/// (actix-web does not cancel a handler when its client disconnects).
#[derive(Clone, Copy)]
pub struct ClientSocket(pub std::os::fd::RawFd);

fn remember_socket(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsRawFd;
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        ext.insert(ClientSocket(tcp.as_raw_fd()));
    }
}

impl ClientSocket {
    /// Resolves once the peer has closed the connection.
    pub async fn closed(self) {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let mut byte = [0u8; 1];
            // SAFETY: recv(2) with MSG_PEEK on a socket the server keeps open for the whole
            // request; nothing is consumed.
            let n = unsafe {
                libc::recv(
                    self.0,
                    byte.as_mut_ptr().cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                return;
            }
        }
    }
}

/// SIGINT or SIGTERM: close the streams (screens reconnect elsewhere or later), then stop
/// accepting and finish in-flight requests.
async fn stop_on_signal(handle: actix_web::dev::ServerHandle, hub: Arc<Hub>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
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
    let prom = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.prom.clone());
    let res = next.call(req).await?;
    if let Some(prom) = prom {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        prom.http_requests
            .with_label_values(&[method.as_str(), route.as_str(), res.status().as_str()])
            .inc();
        prom.http_duration
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}
