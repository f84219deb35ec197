//! Login, users and screen tokens.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{audit_entry, auth::Caller, ApiError, AppState};
use crate::auth::{authorize, Action, IssuedToken, Role, ScreenTokenRecord, UserRecord};
use crate::store::audit::{AuditAction, AuditEntry};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(login)
        .service(me)
        .service(list_users)
        .service(add_user)
        .service(revoke_user)
        .service(list_screen_tokens)
        .service(issue_screen_token)
        .service(revoke_screen_token);
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

/// Log in with a user name and password; the answer carries a session token (a signed JWT with
/// an expiry). After `limits.login_failures` failures for a name or from an address, further
/// attempts get 429 with Retry-After until `limits.login_lockout_secs` have passed.
#[utoipa::path(post, path = "/api/v1/login", tag = "users", request_body = LoginRequest,
    responses((status = 200, body = IssuedToken), (status = 401, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody)))]
#[post("/api/v1/login")]
async fn login(
    req: HttpRequest,
    body: web::Json<LoginRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user_key = format!("user:{}", body.name);
    let address = super::client_addr(&req, &state);
    let addr_key = format!("addr:{address}");
    let keys = [user_key.as_str(), addr_key.as_str()];
    // The name's own scope and role, when it names a user: a district's admin then sees the
    // failed logins of the district's users.
    let known = state.auth.directory().user(&body.name);
    let attempt = AuditEntry::new(AuditAction::Login, &body.name)
        .address(&address)
        .role(known.as_ref().map_or("", |u| u.role.as_str()))
        .scope(known.as_ref().map_or("", |u| u.scope.as_str()));
    if let Err(e) = state.login_throttle.check(&keys) {
        state.audit.record(
            attempt
                .outcome("refused")
                .detail("too many failed logins: locked out for now"),
        );
        return Err(e.into());
    }
    match state
        .auth
        .directory()
        .check_password(&body.name, &body.password)
        .await
    {
        Some(user) => {
            state.login_throttle.succeeded(&keys);
            tracing::info!(user = %user.name, "login");
            state.audit.record(attempt);
            Ok(HttpResponse::Ok().json(state.auth.issue_session(&user)?))
        }
        None => {
            state.login_throttle.failed(&keys);
            tracing::info!(user = %body.name, "failed login");
            state.audit.record(
                attempt
                    .outcome("refused")
                    .detail("wrong user name or password"),
            );
            Err(ApiError::Unauthorized("wrong user name or password".into()))
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
    pub scope: String,
    pub scope_name: String,
}

/// Who the token speaks for.
#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, body = Me), (status = 401, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/api/v1/me")]
async fn me(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let who = caller.0;
    let node = state.tree.node(who.scope);
    Ok(HttpResponse::Ok().json(Me {
        name: who.name,
        role: who.role,
        scope: node.code.clone(),
        scope_name: node.name.clone(),
    }))
}

/// The admin, if `code` (an org code from the request) is inside their scope.
fn admin_over_code(
    who: &crate::auth::Principal,
    state: &AppState,
    field: &str,
    code: &str,
) -> Result<(), ApiError> {
    let target = state
        .tree
        .get(code)
        .ok_or_else(|| ApiError::bad_request(field, format!("unknown org code {code}")))?;
    authorize(&state.tree, who, Action::Admin, target)?;
    Ok(())
}

/// Whether a user or token of scope `code` is the admin's to see: outside it, it is as if it
/// did not exist (so that an admin of one district cannot probe names elsewhere).
fn visible_to(who: &crate::auth::Principal, state: &AppState, code: &str) -> bool {
    state
        .tree
        .get(code)
        .is_some_and(|s| state.tree.is_within(s, who.scope))
}

/// Every user (admins only).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserRecord>), (status = 403, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[get("/api/v1/users")]
async fn list_users(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Admin)?;
    let users: Vec<UserRecord> = state
        .auth
        .directory()
        .users()
        .into_iter()
        .filter(|u| visible_to(&who, &state, &u.scope))
        .collect();
    Ok(HttpResponse::Ok().json(users))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    pub role: Role,
    /// Org code; the user sees its subtree.
    #[schema(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    pub scope: String,
    #[schema(min_length = 8)]
    pub password: String,
}

/// Create a user (admins only, within their own scope).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserRecord), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/users")]
async fn add_user(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<NewUser>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Admin)?;
    admin_over_code(&who, &state, "scope", &body.scope)?;
    let user = state
        .auth
        .directory()
        .add_user(
            &body.name,
            body.role,
            &body.scope,
            &body.password,
            &who.name,
        )
        .await?;
    tracing::info!(user = %user.name, role = user.role.as_str(), scope = %user.scope, by = %who.name, "user added");
    state.audit.record(
        audit_entry(&state, &req, &who, AuditAction::UserAdded)
            .target(&user.name)
            .detail(format!("role {}, scope {}", user.role.as_str(), user.scope)),
    );
    Ok(HttpResponse::Created().json(user))
}

/// Disable a user: every token of theirs is refused from its next use on.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    responses((status = 200, body = UserRecord), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[delete("/api/v1/users/{name}")]
async fn revoke_user(
    caller: Caller,
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Admin)?;
    state
        .auth
        .directory()
        .user(&name)
        .filter(|u| visible_to(&who, &state, &u.scope))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("user {name}"),
        })?;
    let user = state.auth.directory().revoke_user(&name, &who.name).await?;
    tracing::info!(user = %user.name, by = %who.name, "user revoked");
    state
        .audit
        .record(audit_entry(&state, &req, &who, AuditAction::UserRevoked).target(&user.name));
    Ok(HttpResponse::Ok().json(user))
}

/// Screen tokens issued so far (admins only).
#[utoipa::path(get, path = "/api/v1/screen-tokens", tag = "users",
    responses((status = 200, body = Vec<ScreenTokenRecord>), (status = 403, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/screen-tokens")]
async fn list_screen_tokens(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Admin)?;
    let tokens: Vec<ScreenTokenRecord> = state
        .auth
        .directory()
        .screen_tokens()
        .into_iter()
        .filter(|t| visible_to(&who, &state, &t.scope))
        .collect();
    Ok(HttpResponse::Ok().json(tokens))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewScreenToken {
    /// The user the screen acts for (e.g. the leader whose office it hangs in).
    #[schema(min_length = 1)]
    pub user: String,
    /// Org code the screen watches; default the user's scope; must be inside it.
    #[schema(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    pub scope: Option<String>,
    /// Where the screen is, e.g. "福田区指挥中心 大屏 1".
    #[serde(default)]
    pub label: String,
}

/// Issue a long-lived screen token (admins only): read-only (leader) access to one scope,
/// revocable one by one.
#[utoipa::path(post, path = "/api/v1/screen-tokens", tag = "users", request_body = NewScreenToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[post("/api/v1/screen-tokens")]
async fn issue_screen_token(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<NewScreenToken>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Admin)?;
    let user = state
        .auth
        .directory()
        .user(&body.user)
        .filter(|u| !u.disabled && visible_to(&who, &state, &u.scope))
        .ok_or_else(|| {
            ApiError::bad_request(
                "user",
                format!("no active user {} in your scope", body.user),
            )
        })?;
    let scope = body.scope.clone().unwrap_or_else(|| user.scope.clone());
    admin_over_code(&who, &state, "scope", &scope)?;
    let (Some(scope_idx), Some(user_scope)) = (state.tree.get(&scope), state.tree.get(&user.scope))
    else {
        return Err(ApiError::bad_request(
            "scope",
            format!("unknown org code {scope}"),
        ));
    };
    if !state.tree.is_within(scope_idx, user_scope) {
        return Err(ApiError::bad_request(
            "scope",
            format!("{scope} is outside {}'s scope ({})", user.name, user.scope),
        ));
    }
    let issued = state
        .auth
        .issue_screen_token(&user, &scope, &body.label)
        .await?;
    tracing::info!(id = %issued.id, user = %user.name, scope = %scope, by = %who.name, "screen token issued");
    state.audit.record(
        audit_entry(&state, &req, &who, AuditAction::ScreenTokenIssued)
            .target(&issued.id)
            .detail(format!("for {}, scope {scope}, {}", user.name, body.label)),
    );
    Ok(HttpResponse::Created().json(issued))
}

/// Revoke a screen token: the screen is refused at its next message.
#[utoipa::path(delete, path = "/api/v1/screen-tokens/{id}", tag = "users",
    responses((status = 200, body = ScreenTokenRecord), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/screen-tokens/{id}")]
async fn revoke_screen_token(
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Admin)?;
    state
        .auth
        .directory()
        .screen_token(&id)
        .filter(|t| visible_to(&who, &state, &t.scope))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("screen token {id}"),
        })?;
    let record = state.auth.directory().revoke_screen_token(&id).await?;
    tracing::info!(id = %record.id, by = %who.name, "screen token revoked");
    state.audit.record(
        audit_entry(&state, &req, &who, AuditAction::ScreenTokenRevoked).target(&record.id),
    );
    Ok(HttpResponse::Ok().json(record))
}
