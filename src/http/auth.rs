//! Reading the caller's token from a request.

use actix_web::HttpRequest;

use super::{ApiError, AppState};
use crate::auth::Principal;

/// The bearer token from `Authorization`, else the `token` query parameter (browsers cannot set
/// headers on a WebSocket upgrade).
pub fn token_of(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
        if let Some(t) = h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")) {
            return Some(t.trim().to_string());
        }
    }
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

pub fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    Ok(state.auth.authenticate(token_of(req).as_deref())?)
}
