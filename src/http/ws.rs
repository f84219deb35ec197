//! `GET /ws`: the live stream (see CONTRACT.md).

use actix_web::{get, web, HttpRequest, HttpResponse};

use super::{auth::token_of, ApiError, AppState, ClientSocket};
use crate::stream::{run_session, SessionContext};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(ws);
}

/// Whether a browser page from `origin` may open the stream: an origin on
/// `auth.allowed_origins`, or this server's own address as the client reached it (the wall
/// screen it serves). Neither `Host` nor `X-Forwarded-Host` counts: both are whatever the
/// client (or a rebinding DNS name) says, so a page of evil.example could claim either.
fn origin_allowed(req: &HttpRequest, state: &AppState, origin: Option<&str>) -> bool {
    let Some(origin) = origin else {
        // Not a browser: origin checks protect browsers' users only.
        return true;
    };
    if state.auth.origin_allowed(Some(origin)) {
        return true;
    }
    let local = req.app_config().local_addr();
    let mut own = vec![format!("http://{local}"), format!("https://{local}")];
    if local.ip().is_loopback() {
        own.push(format!("http://localhost:{}", local.port()));
        own.push(format!("https://localhost:{}", local.port()));
    }
    own.iter().any(|o| o == origin)
}

/// WebSocket upgrade; needs a valid token (header or `token` query parameter) and, from a
/// browser, an Origin on the allow-list or this server's own address.
///
/// Client → server: `{"type": "subscribe", "id", "scope", "metrics", "resume": {"epoch", "seq"}}`,
/// `{"type": "unsubscribe", "id"}`. Server → client: `snapshot` (the `nodes` of
/// `/api/v1/metrics`), then `delta`s with `seq` rising by one. A delta's metric object
/// **replaces** the client's whole object for that node and metric — a field absent from it is
/// null (`oldest_days` once the last case closes); nodes and metrics it does not name are
/// unchanged.
#[utoipa::path(get, path = "/ws", tag = "figures",
    params(("token" = Option<String>, Query, description = "Bearer token, for browsers"),
        ("Upgrade" = String, Header, description = "websocket"),
        ("Connection" = String, Header, description = "Upgrade"),
        ("Sec-WebSocket-Version" = String, Header, description = "13"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's nonce (RFC 6455)")),
    responses((status = 101, description = "Switching to WebSocket"),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/ws")]
async fn ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
    if !origin_allowed(&req, &state, origin) {
        return Err(ApiError::Forbidden(format!(
            "origin {} is not allowed",
            origin.unwrap_or_default()
        )));
    }
    let token = state.auth.verify(token_of(&req).as_deref())?;
    let who = state.auth.recheck(&token)?;
    let (res, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request("upgrade", format!("not a WebSocket upgrade: {e}")))?;
    let remote = super::client_addr(&req, &state);
    let screen_id = state.presence.join(
        who.name.clone(),
        remote,
        crate::domain::time::rfc3339(state.hub.now()),
    );
    let ctx = SessionContext {
        hub: state.hub.clone(),
        streams: state.streams.clone(),
        alerts: state.alerts.subscribe(),
        auth: state.auth.clone(),
        token,
        token_key: who.token_key.clone(),
        presence: state.presence.clone(),
        screen_id,
        settings: state.stream_settings.clone(),
        connection: req
            .conn_data::<ClientSocket>()
            .copied()
            .map(|socket| Box::new(socket) as Box<dyn crate::stream::Connection>),
    };
    if let Some(connection) = &ctx.connection {
        connection.bound_send_buffer(state.stream_settings.send_buffer_bytes);
    }
    actix_web::rt::spawn(run_session(
        session,
        messages.max_frame_size(64 * 1024),
        ctx,
    ));
    Ok(res)
}
