//! Who is calling: the bearer token read from a request, authenticated before anything else.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

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

/// The authenticated caller. As a handler's first argument it is extracted before the body,
/// the path and the query: a request without a valid token gets 401 before anything it names
/// is parsed or looked up, so nothing can be learnt about users, alerts or tokens without one.
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::Unexpected(anyhow::anyhow!(
                "the app state is not configured"
            ))));
        };
        ready(
            state
                .auth
                .authenticate(token_of(req).as_deref())
                .map(Caller)
                .map_err(ApiError::from),
        )
    }
}

impl Caller {
    /// The caller, if their role may do `action` at all (inside their own scope): checked
    /// before the handler looks anything up.
    pub fn may(self, state: &AppState, action: Action) -> Result<Principal, ApiError> {
        authorize(&state.tree, &self.0, action, self.0.scope)?;
        Ok(self.0)
    }
}

/// The `scope` query parameter (default: the city) as a node the caller may read: its code and
/// index, or 404 / 403.
pub fn readable_scope(
    who: &Principal,
    state: &AppState,
    scope: Option<&str>,
) -> Result<(String, NodeIdx), ApiError> {
    authorize(&state.tree, who, Action::ReadFigures, who.scope)?;
    let tree = &state.tree;
    let code = scope.unwrap_or(&tree.node(tree.root()).code).to_string();
    let idx = tree.get(&code).ok_or_else(|| ApiError::NotFound {
        what: format!("org {code}"),
    })?;
    authorize(tree, who, Action::ReadFigures, idx)?;
    Ok((code, idx))
}
