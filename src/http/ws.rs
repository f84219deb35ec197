//! `GET /ws`: the live stream (see CONTRACT.md).

use actix_web::{get, web, HttpRequest, HttpResponse};

use super::{auth::token_of, ApiError, AppState};
use crate::stream::{run_session, SessionContext};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(ws);
}

/// WebSocket upgrade; needs a valid token (header or `token` query parameter) and, from a
/// browser, an Origin on the allow-list.
#[utoipa::path(get, path = "/ws", tag = "figures",
    params(("token" = Option<String>, Query, description = "Bearer token, for browsers")),
    responses((status = 101, description = "Switching to WebSocket"),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)))]
#[get("/ws")]
async fn ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
    // A page served by this server may always open its stream (same origin).
    let host = req.connection_info().host().to_string();
    let same_origin =
        origin.is_some_and(|o| o == format!("http://{host}") || o == format!("https://{host}"));
    if !same_origin && !state.auth.origin_allowed(origin) {
        return Err(ApiError::Forbidden(format!(
            "origin {} is not allowed",
            origin.unwrap_or_default()
        )));
    }
    let token = state.auth.verify(token_of(&req).as_deref())?;
    let who = state.auth.recheck(&token)?;
    let (res, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request("upgrade", format!("not a WebSocket upgrade: {e}")))?;
    let remote = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let screen_id = state.presence.join(
        who.name.clone(),
        remote,
        crate::live::hub::rfc3339(state.hub.now()),
    );
    let ctx = SessionContext {
        hub: state.hub.clone(),
        alerts: state.alerts.subscribe(),
        auth: state.auth.clone(),
        token,
        presence: state.presence.clone(),
        screen_id,
        settings: state.stream_settings.clone(),
    };
    actix_web::rt::spawn(run_session(
        session,
        messages.max_frame_size(64 * 1024),
        ctx,
    ));
    Ok(res)
}
