//! The actix-web app: routes, the error → status mapping, OpenAPI and static assets.

mod alerts;
mod audit;
mod auth;
mod corrections;
pub mod error;
mod events;
mod figures;
mod health;
mod imports;
mod jobs;
mod openapi;
mod org;
mod pages;
mod params;
mod query;
mod tasks;
mod unit;
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
pub use figures::local_screens;
pub use jobs::print_newest_brief;

use crate::alert::AlertEngine;
use crate::auth::Authenticator;
use crate::config::WebSettings;
use crate::dashboards::Dashboards;
use crate::domain::OrgTree;
use crate::ingest::IngestSettings;
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
    /// Records in: the durable log, the writer's checkpoint, read-your-writes.
    pub ingest: Arc<crate::ingest::Ingest>,
    /// What every WebSocket session shares.
    pub streams: Arc<crate::stream::Streams>,
    pub auth: Authenticator,
    pub presence: Arc<Presence>,
    pub ingest_limits: IngestSettings,
    pub stream_settings: StreamSettings,
    pub dashboards: Dashboards,
    pub web: WebSettings,
    pub alerts: Arc<AlertEngine>,
    pub sql: Arc<crate::sql::SqlGateway>,
    pub limits: Arc<crate::auth::RateLimits>,
    pub login_throttle: Arc<crate::auth::LoginThrottle>,
    /// The supervisor's report on the managed ClickHouse (none with an external one).
    pub managed_clickhouse: Option<Arc<crate::store::managed::ManagedStatus>>,
    /// Peers whose `X-Forwarded-For` names the client (`server.trusted_proxies`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The bearer token Prometheus scrapes `/metrics` with (`auth.metrics_token`); empty: none.
    pub metrics_token: String,
    /// Shares of `ingest.max_body_bytes_in_flight`, in KiB, held while a body is read.
    pub ingest_budget: Arc<tokio::sync::Semaphore>,
    /// Wakes the import follower (a ledger was just imported here).
    pub imports_applied: Arc<tokio::sync::Notify>,
    /// Who did what: logins, users, tokens, alerts, SQL, imports (admins read it).
    pub audit: crate::store::audit::AuditTrail,
    /// How the metric definition files last read went.
    pub definitions: Arc<crate::dashboards::DefinitionsStatus>,
    /// Where the brief's PDFs go and what prints them.
    pub brief: crate::batch::brief::BriefSettings,
    /// This server as its own pages' printer reaches it (`http://127.0.0.1:PORT`).
    pub local_url: String,
    /// This process among several instances (a new id each start; `/healthz` says it).
    pub instance: String,
    /// How long a shutdown takes to close the streams (`server.drain_secs`).
    pub drain: std::time::Duration,
}

impl AppState {
    /// Brings the gauges and counters that mirror other components up to date (at scrape).
    pub fn refresh_gauges(&self) {
        use std::sync::atomic::Ordering;
        let prom = &self.prom;
        prom.screens.set(self.presence.count() as i64);
        prom.audit_dropped.set(self.audit.dropped() as i64);
        let counters = self.ingest.log.counters();
        prom.spool_bytes
            .set(counters.spool_bytes.load(Ordering::Relaxed) as i64);
        prom.ingest_checkpoint
            .set(counters.checkpoint_seq.load(Ordering::Relaxed) as i64);
        if let Some(managed) = &self.managed_clickhouse {
            prom.clickhouse_up
                .set(i64::from(managed.up.load(Ordering::Relaxed)));
            let restarts = managed.restarts.load(Ordering::Relaxed);
            prom.clickhouse_restarts
                .inc_by(restarts.saturating_sub(prom.clickhouse_restarts.get()));
        }
        prom.resume_epochs.set(self.streams.resumes.count() as i64);
        let (ticks, bytes) = self.hub.history_size();
        prom.history_ticks.set(ticks as i64);
        prom.history_bytes.set(bytes as i64);
        let writer = &self.ingest.writer;
        prom.writer_blocked
            .set(i64::from(writer.blocked().is_some()));
        for (label, count) in [("yes", &writer.failures.0), ("no", &writer.failures.1)] {
            let counter = prom.insert_failures.with_label_values(&[label]);
            counter.inc_by(count.load(Ordering::Relaxed).saturating_sub(counter.get()));
        }
        prom.metric_definitions
            .set(self.hub.catalogue().metrics.len() as i64);
        prom.definitions_reload_ok
            .set(i64::from(self.definitions.refused().is_none()));
        prom.definitions_switches.inc_by(
            self.definitions
                .switches()
                .saturating_sub(prom.definitions_switches.get()),
        );
        let quarantined = self.hub.quarantine().total();
        prom.live_quarantined
            .inc_by(quarantined.saturating_sub(prom.live_quarantined.get()));
    }
}

/// Serves the app on an already-bound listener (port 0 in tests). `handle_signals`: whether
/// SIGINT/SIGTERM stop the server (the binary) or the caller does (tests).
pub fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let streams = state.streams.clone();
    let drain = state.drain;
    let assets_dir = state.web.assets_dir.clone();
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            // Every refusal is the JSON error shape, also those made before a handler runs.
            // A JSON body is read as JSON whatever its Content-Type says (or without one).
            .app_data(
                web::JsonConfig::default()
                    .content_type_required(false)
                    .error_handler(error::json_body_error),
            )
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .wrap(from_fn(observe))
            .configure(health::routes)
            .configure(org::routes)
            .configure(events::routes)
            .configure(corrections::routes)
            .configure(figures::routes)
            .configure(ws::routes)
            .configure(alerts::routes)
            .configure(jobs::routes)
            .configure(users::routes)
            .configure(audit::routes)
            .configure(query::routes)
            .configure(imports::routes)
            .configure(unit::routes)
            .configure(tasks::routes)
            .configure(|cfg| pages::routes(cfg, &assets_dir))
            .configure(openapi::routes)
            .default_service(web::to(no_route))
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
        tokio::spawn(stop_on_signal(server.handle(), streams, drain));
    }
    Ok(server)
}

/// No route answered: 405 with `Allow` when the path is an API route served with other
/// methods, else 404 — both in the JSON error shape.
async fn no_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(match openapi::methods_at(req.path()) {
        Some(methods) => ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: methods.join(", "),
        },
        None => ApiError::NotFound {
            what: format!("{} {}", req.method(), req.path()),
        },
    })
}

/// The client's socket, for handlers that wait long and must notice a client that went away
/// (actix-web does not cancel a handler when its client disconnects), and for streams that
/// must cut off a screen that stopped reading. Its addresses identify the connection: a
/// descriptor number is reused once closed, a connection's address pair is not.
#[derive(Clone, Copy)]
pub struct ClientSocket {
    fd: std::os::fd::RawFd,
    local: Option<std::net::SocketAddr>,
    peer: Option<std::net::SocketAddr>,
}

fn remember_socket(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsRawFd;
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        ext.insert(ClientSocket {
            fd: tcp.as_raw_fd(),
            local: tcp.local_addr().ok(),
            peer: tcp.peer_addr().ok(),
        });
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
                    self.fd,
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

    /// Whether the descriptor still holds this connection (not a later one given its number).
    fn is_still_ours(&self) -> bool {
        let (Some(local), Some(peer)) = (self.local, self.peer) else {
            return false;
        };
        let fd = self.borrowed();
        let sock = socket2::SockRef::from(&fd);
        sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(local)
            && sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer)
    }

    fn borrowed(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: only used while checking and cutting a connection the server holds; the
        // address check above guards against a reused descriptor number.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) }
    }
}

impl crate::stream::Connection for ClientSocket {
    /// Resets the connection: unsent data is dropped and the peer gets RST, so the server's
    /// side closes at once instead of waiting, with a full send buffer, for a peer that does
    /// not read.
    fn abort(&self) {
        if !self.is_still_ours() {
            return;
        }
        let fd = self.borrowed();
        let sock = socket2::SockRef::from(&fd);
        let _ = sock.set_linger(Some(std::time::Duration::ZERO));
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }

    fn unsent(&self) -> usize {
        if !self.is_still_ours() {
            return 0;
        }
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int, the bytes of the send queue not yet
        // acknowledged, into `queued`; the descriptor was checked to be this connection.
        let ok = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &mut queued) } == 0;
        if ok {
            queued.max(0) as usize
        } else {
            0
        }
    }

    fn bound_send_buffer(&self, bytes: usize) {
        if bytes == 0 || !self.is_still_ours() {
            return;
        }
        let fd = self.borrowed();
        let sock = socket2::SockRef::from(&fd);
        if let Err(e) = sock.set_send_buffer_size(bytes) {
            tracing::warn!(error = %e, "could not bound a screen's send buffer");
        }
    }
}

/// The client's address: the peer's, or — only when the peer is one of `server.trusted_proxies`
/// — the last address of its `X-Forwarded-For`.
pub fn client_addr(req: &actix_web::HttpRequest, state: &AppState) -> String {
    let peer = req.peer_addr();
    let trusted = peer.is_some_and(|p| state.trusted_proxies.contains(&p.ip()));
    if trusted {
        if let Some(forwarded) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        {
            return forwarded.to_string();
        }
    }
    peer.map(|a| a.ip().to_string()).unwrap_or_default()
}

/// An audit entry of `action` by the caller: their name, role and scope, and the client's
/// address.
pub fn audit_entry(
    state: &AppState,
    req: &actix_web::HttpRequest,
    who: &crate::auth::Principal,
    action: crate::store::audit::AuditAction,
) -> crate::store::audit::AuditEntry {
    crate::store::audit::AuditEntry::new(action, &who.name)
        .role(who.role.as_str())
        .scope(&state.tree.node(who.scope).code)
        .address(&client_addr(req, state))
}

/// SIGINT or SIGTERM: drain — readiness answers 503 at once (a balancer stops sending new
/// clients), the streams close spread over `drain` with code 1012 (screens reconnect elsewhere,
/// or here later), requests keep being served meanwhile — then stop accepting and finish
/// in-flight requests. A second signal meanwhile stops at once: what was acknowledged is
/// already in the log (fsynced) or the record stream, and a managed ClickHouse is stopped by
/// the kernel (`PR_SET_PDEATHSIG`) — so a Ctrl-C on a whole cluster, whose record stream
/// stopped first, does not wait out in-flight requests that can no longer finish.
async fn stop_on_signal(
    handle: actix_web::dev::ServerHandle,
    streams: Arc<crate::stream::Streams>,
    drain: std::time::Duration,
) {
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
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("a second signal: stopping now");
        std::process::exit(130);
    });
    streams.close_all(drain);
    // Each session closes at its moment within `drain`, then has a second for its close frame;
    // without sessions there is nothing to wait for.
    let until = tokio::time::Instant::now() + drain + std::time::Duration::from_millis(1200);
    while streams.open_sessions() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
