//! Who may do what, where. Tokens (from configuration for now) carry a role and an org scope;
//! [`authorize`] is the one function that decides every request.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::domain::org::{NodeIdx, OrgTree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Watches screens.
    Leader,
    /// Screens and ad-hoc SQL.
    Analyst,
    /// Screens and alerts.
    DutyOfficer,
    /// Sends records and imports ledgers.
    Clerk,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// REST figures and the WebSocket stream.
    ReadFigures,
    /// Send records.
    Ingest,
    /// Acknowledge and silence alerts.
    HandleAlerts,
    /// Presence of screens, configuration.
    Admin,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub scope: NodeIdx,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("{0}")]
    Forbidden(String),
}

fn role_allows(role: Role, action: Action) -> bool {
    match action {
        Action::ReadFigures => true,
        Action::Ingest => matches!(role, Role::Clerk | Role::Admin),
        Action::HandleAlerts => matches!(role, Role::DutyOfficer | Role::Admin),
        Action::Admin => role == Role::Admin,
    }
}

/// The one authorisation decision: may `who` do `action` on the node `target`?
pub fn authorize(tree: &OrgTree, who: &Principal, action: Action, target: NodeIdx) -> Result<(), AuthError> {
    if !role_allows(who.role, action) {
        return Err(AuthError::Forbidden(format!("role {:?} may not {action:?}", who.role).to_lowercase()));
    }
    if !tree.is_within(target, who.scope) {
        return Err(AuthError::Forbidden(format!(
            "{} is outside this token's scope ({})",
            tree.node(target).code,
            tree.node(who.scope).code
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenConfig {
    pub token: String,
    pub name: String,
    pub role: Role,
    /// Org code of the subtree the token may see.
    pub scope: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Admin token; empty: `VSCC_ADMIN_TOKEN`, else one is generated at start-up.
    #[serde(default)]
    pub admin_token: String,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Origins allowed to open the WebSocket (browsers send Origin; other clients may omit it).
    pub allowed_origins: Vec<String>,
    /// Role granted to requests without a token, e.g. "leader" for unattended demo screens;
    /// empty: a token is required.
    #[serde(default)]
    pub anonymous_role: Option<Role>,
}

/// Resolves tokens to principals.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<HashMap<String, Principal>>,
    anonymous: Option<Principal>,
    allowed_origins: Arc<Vec<String>>,
    admin_token: String,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings, tree: &OrgTree, admin_token: String) -> anyhow::Result<Self> {
        let mut tokens = HashMap::new();
        tokens.insert(admin_token.clone(), Principal { name: "admin".into(), role: Role::Admin, scope: tree.root() });
        for t in &settings.tokens {
            let scope = tree
                .get(&t.scope)
                .ok_or_else(|| anyhow::anyhow!("auth.tokens '{}': unknown scope {}", t.name, t.scope))?;
            tokens.insert(t.token.clone(), Principal { name: t.name.clone(), role: t.role, scope });
        }
        let anonymous = settings
            .anonymous_role
            .map(|role| Principal { name: "anonymous".into(), role, scope: tree.root() });
        Ok(Authenticator {
            tokens: Arc::new(tokens),
            anonymous,
            allowed_origins: Arc::new(settings.allowed_origins.clone()),
            admin_token,
        })
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The principal behind a token (`None`: no token was sent).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        match token {
            Some(t) => self.tokens.get(t).cloned().ok_or(AuthError::Invalid),
            None => self.anonymous.clone().ok_or(AuthError::Missing),
        }
    }

    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(o) => self.allowed_origins.iter().any(|a| a == o || a == "*"),
        }
    }
}
