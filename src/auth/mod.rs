//! Who may do what, where. Every request carries a token (a configured service token, or a
//! signed session or screen token of a user in the store) that resolves to a role and an org
//! scope; [`authorize`] is the one function that decides every request: REST, WebSocket
//! subscribe, ingest and SQL.

pub mod limits;
pub mod tokens;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

pub use limits::{LimitSettings, LoginThrottle, RateLimits, RetryAfter};
pub use tokens::{Claims, TokenKind, TokenSigner};
pub use users::{ScreenTokenRecord, UserDirectory, UserError, UserRecord};

use crate::domain::org::{NodeIdx, OrgTree};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
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
    /// Send records, import ledgers.
    Ingest,
    /// Ad-hoc SQL.
    Query,
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
    /// Identifies the token (not the user) for per-token rate limits.
    pub token_key: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token has been revoked")]
    Revoked,
    #[error("{0}")]
    Forbidden(String),
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::ReadFigures => "read figures",
            Action::Ingest => "send records",
            Action::Query => "run SQL",
            Action::HandleAlerts => "handle alerts",
            Action::Admin => "administer",
        }
    }
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Leader,
        Role::Analyst,
        Role::DutyOfficer,
        Role::Clerk,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Analyst => "analyst",
            Role::DutyOfficer => "duty_officer",
            Role::Clerk => "clerk",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// What each role may do, anywhere in its scope. Everyone reads the figures of their scope
/// (a unit's clerk sees where the unit stands and what it must do); clerks send records and
/// import ledgers; analysts add SQL, duty officers alerts.
fn role_allows(role: Role, action: Action) -> bool {
    match action {
        Action::ReadFigures => true,
        Action::Query => matches!(role, Role::Analyst | Role::Admin),
        Action::Ingest => matches!(role, Role::Clerk | Role::Admin),
        Action::HandleAlerts => matches!(role, Role::DutyOfficer | Role::Admin),
        Action::Admin => role == Role::Admin,
    }
}

/// The one authorisation decision: may `who` do `action` on the node `target`?
pub fn authorize(
    tree: &OrgTree,
    who: &Principal,
    action: Action,
    target: NodeIdx,
) -> Result<(), AuthError> {
    if !role_allows(who.role, action) {
        return Err(AuthError::Forbidden(format!(
            "role {} may not {}",
            who.role.as_str(),
            action.describe()
        )));
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
    /// Service tokens from configuration (role + scope, no expiry).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Origins allowed to open the WebSocket (browsers send Origin; other clients may omit it).
    pub allowed_origins: Vec<String>,
    /// Role granted to requests without a token, e.g. "leader" for unattended demo screens;
    /// empty: a token is required.
    #[serde(default)]
    pub anonymous_role: Option<Role>,
    /// A bearer token Prometheus scrapes `/metrics` with (besides admins' tokens); empty:
    /// admins' tokens only. Never anonymous.
    #[serde(default)]
    pub metrics_token: String,
    /// Key that signs tokens; empty: read from `secret_file`, created there on first start.
    /// Every instance behind one balancer needs the same secret.
    #[serde(default)]
    pub secret: String,
    pub secret_file: std::path::PathBuf,
    pub session_hours: u64,
    pub screen_token_days: u64,
    /// How often users and screen tokens are reloaded from the store.
    pub directory_refresh_ms: u64,
}

/// The token-signing secret: configured, else kept in a file created on first use (0600).
pub fn load_or_create_secret(settings: &AuthSettings) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    if !settings.secret.is_empty() {
        return Ok(settings.secret.as_bytes().to_vec());
    }
    let path = &settings.secret_file;
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim();
        anyhow::ensure!(
            text.len() >= 32,
            "{}: the token secret is shorter than 32 characters",
            path.display()
        );
        return Ok(text.as_bytes().to_vec());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let secret = crate::auth::tokens::random_token();
    // Written whole under another name, then linked into place: instances started together
    // (scripts/cluster) share the file, and the one that loses the race reads the winner's
    // complete secret instead of failing or reading a half-written one.
    let draft = path.with_extension(format!(
        "draft-{}",
        &crate::auth::tokens::random_token()[..12]
    ));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&draft)
            .with_context(|| format!("creating {}", draft.display()))?;
        file.write_all(secret.as_bytes())?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&draft, path);
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => {
            tracing::info!(file = %path.display(), "created a token-signing secret");
            Ok(secret.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_secret(settings),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// A token as [`Authenticator::verify`] found it.
#[derive(Debug, Clone)]
pub enum VerifiedToken {
    /// No token was sent (anonymous access, when configured).
    Absent,
    /// A token from the configuration (fixed while the server runs), with whom it stands for.
    Configured(Principal),
    /// A token vscc signed, with its claims.
    Signed(tokens::Claims),
}

/// Resolves tokens to principals: configured service tokens, then signed session and screen
/// tokens checked against the user directory (so revocation is immediate).
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<HashMap<String, Principal>>,
    anonymous: Option<Principal>,
    allowed_origins: Arc<Vec<String>>,
    admin_token: String,
    printer_token: String,
    signer: Arc<TokenSigner>,
    directory: UserDirectory,
    tree: Arc<OrgTree>,
    session_ttl: Duration,
    screen_ttl: Duration,
}

/// A token just issued.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub token: String,
    pub id: String,
    pub user: String,
    pub role: Role,
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub expires_at: OffsetDateTime,
}

impl Authenticator {
    pub fn new(
        settings: &AuthSettings,
        tree: Arc<OrgTree>,
        admin_token: String,
        secret: &[u8],
        directory: UserDirectory,
    ) -> anyhow::Result<Self> {
        let mut tokens = HashMap::new();
        let admin = Principal {
            name: "admin".into(),
            role: Role::Admin,
            scope: tree.root(),
            token_key: "config:admin".into(),
        };
        tokens.insert(admin_token.clone(), admin);
        // The nightly job's own Chromium reads the brief page with this: a leader's view of
        // the city, a new secret each start, never written anywhere.
        let printer_token = tokens::random_token();
        tokens.insert(
            printer_token.clone(),
            Principal {
                name: "brief-printer".into(),
                role: Role::Leader,
                scope: tree.root(),
                token_key: "config:brief-printer".into(),
            },
        );
        for t in &settings.tokens {
            let scope = tree.get(&t.scope).ok_or_else(|| {
                anyhow::anyhow!("auth.tokens '{}': unknown scope {}", t.name, t.scope)
            })?;
            let token_key = format!("config:{}", t.name);
            tokens.insert(
                t.token.clone(),
                Principal {
                    name: t.name.clone(),
                    role: t.role,
                    scope,
                    token_key,
                },
            );
        }
        let anonymous = settings.anonymous_role.map(|role| Principal {
            name: "anonymous".into(),
            role,
            scope: tree.root(),
            token_key: "anonymous".into(),
        });
        Ok(Authenticator {
            tokens: Arc::new(tokens),
            anonymous,
            allowed_origins: Arc::new(settings.allowed_origins.clone()),
            admin_token,
            printer_token,
            signer: Arc::new(TokenSigner::new(secret)),
            directory,
            tree,
            session_ttl: Duration::from_secs(settings.session_hours.max(1) * 3600),
            screen_ttl: Duration::from_secs(settings.screen_token_days.max(1) * 86_400),
        })
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A leader's token for the city that the brief printer uses (see `http::jobs`).
    pub fn printer_token(&self) -> &str {
        &self.printer_token
    }

    pub fn directory(&self) -> &UserDirectory {
        &self.directory
    }

    /// The principal behind a token (`None`: no token was sent).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        self.recheck(&self.verify(token)?)
    }

    /// Checks a token's signature and expiry once. A long-lived connection keeps the result
    /// and [`recheck`](Self::recheck)s it before each message: revocation, expiry and the
    /// user's current role and scope still apply at once, without verifying the signature
    /// (HMAC and JSON) again for every message to every screen.
    pub fn verify(&self, token: Option<&str>) -> Result<VerifiedToken, AuthError> {
        match token {
            None => Ok(VerifiedToken::Absent),
            Some(t) => match self.tokens.get(t) {
                Some(p) => Ok(VerifiedToken::Configured(p.clone())),
                None => Ok(VerifiedToken::Signed(self.signer.verify(t)?)),
            },
        }
    }

    /// The principal behind a verified token, as of now.
    pub fn recheck(&self, token: &VerifiedToken) -> Result<Principal, AuthError> {
        let claims = match token {
            VerifiedToken::Absent => return self.anonymous.clone().ok_or(AuthError::Missing),
            VerifiedToken::Configured(p) => return Ok(p.clone()),
            VerifiedToken::Signed(claims) => claims,
        };
        // As the signature check does it: no grace period.
        if claims.exp < time::OffsetDateTime::now_utc().unix_timestamp() {
            return Err(AuthError::Expired);
        }
        let user = self.directory.user(&claims.sub).ok_or(AuthError::Revoked)?;
        if user.disabled {
            return Err(AuthError::Revoked);
        }
        let (role, scope) = match claims.kind {
            TokenKind::Session => (user.role, user.scope),
            TokenKind::Screen => {
                let record = self
                    .directory
                    .screen_token(&claims.jti)
                    .ok_or(AuthError::Revoked)?;
                if record.revoked {
                    return Err(AuthError::Revoked);
                }
                (Role::Leader, record.scope)
            }
        };
        let scope = self.tree.get(&scope).ok_or(AuthError::Invalid)?;
        Ok(Principal {
            name: user.name,
            role,
            scope,
            token_key: claims.jti.clone(),
        })
    }

    /// A session token for a user who has just logged in.
    pub fn issue_session(&self, user: &UserRecord) -> anyhow::Result<IssuedToken> {
        self.issue(
            &user.name,
            TokenKind::Session,
            user.role,
            &user.scope,
            self.session_ttl,
        )
    }

    /// A long-lived, revocable token for a wall screen watching `scope` (within the user's own).
    pub async fn issue_screen_token(
        &self,
        user: &UserRecord,
        scope: &str,
        label: &str,
    ) -> Result<IssuedToken, UserError> {
        let issued = self.issue(
            &user.name,
            TokenKind::Screen,
            Role::Leader,
            scope,
            self.screen_ttl,
        )?;
        let now = crate::store::now_in_seconds();
        self.directory
            .add_screen_token(ScreenTokenRecord {
                id: issued.id.clone(),
                user: user.name.clone(),
                label: label.to_string(),
                scope: scope.to_string(),
                issued_at: now,
                expires_at: issued.expires_at,
                revoked: false,
            })
            .await?;
        Ok(issued)
    }

    fn issue(
        &self,
        user: &str,
        kind: TokenKind,
        role: Role,
        scope: &str,
        ttl: Duration,
    ) -> anyhow::Result<IssuedToken> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let exp = now + ttl.as_secs() as i64;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let claims = Claims {
            sub: user.to_string(),
            jti: id.clone(),
            kind,
            role,
            scope: scope.to_string(),
            iat: now,
            exp,
        };
        Ok(IssuedToken {
            token: self.signer.sign(&claims)?,
            id,
            user: user.to_string(),
            role,
            scope: scope.to_string(),
            expires_at: OffsetDateTime::from_unix_timestamp(exp)?,
        })
    }

    /// Signs arbitrary claims (tests use it to make tokens that have already expired).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        self.signer.sign(claims)
    }

    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(o) => self.allowed_origins.iter().any(|a| a == o || a == "*"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn instances_creating_the_secret_at_once_all_get_the_same_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::config::Settings::load(None).unwrap().auth;
        settings.secret = String::new();
        settings.secret_file = dir.path().join("auth-secret");
        let secrets: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| super::load_or_create_secret(&settings).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.iter().all(|s| s == &secrets[0] && s.len() >= 32));
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 1, "no draft left behind");
    }
}
