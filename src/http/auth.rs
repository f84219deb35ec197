//! Reading the caller's token from a request.

use actix_web::HttpRequest;

use super::{ApiError, AppState};
use crate::auth::{authorize, Action, Principal};
use crate::domain::org::NodeIdx;

/// The bearer token from `Authorization`, else the `token` query parameter (browsers cannot set
/// headers on a WebSocket upgrade).
pub fn token_of(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        {
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

/// The `scope` query parameter (default: the city) as a node the caller may read: its code and
/// index, or 404 / 401 / 403.
pub fn readable_scope(
    req: &HttpRequest,
    state: &AppState,
    scope: Option<&str>,
) -> Result<(String, NodeIdx), ApiError> {
    let who = principal(req, state)?;
    let tree = &state.tree;
    let code = scope.unwrap_or(&tree.node(tree.root()).code).to_string();
    let idx = tree.get(&code).ok_or_else(|| ApiError::NotFound {
        what: format!("org {code}"),
    })?;
    authorize(tree, &who, Action::ReadFigures, idx)?;
    Ok((code, idx))
}
