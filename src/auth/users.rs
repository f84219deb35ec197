//! Users and screen tokens, kept in the store and mirrored in memory.
//!
//! The mirror answers every request without a round trip; it is reloaded every few seconds, so
//! a user disabled or a screen token revoked by another instance or by `vscc user` takes effect
//! everywhere within that interval (at once on the instance that made the change).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Role;
use crate::store::{next_version, now_in_seconds, Store, StoreError};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// Org code of the subtree the user may see.
    pub scope: String,
    #[serde(skip)]
    pub password_hash: String,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub changed_at: OffsetDateTime,
    pub changed_by: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScreenTokenRecord {
    pub id: String,
    pub user: String,
    pub label: String,
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("user {0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Row, Serialize, Deserialize)]
struct UserRow {
    name: String,
    role: String,
    scope: String,
    password_hash: String,
    disabled: u8,
    #[serde(with = "clickhouse::serde::time::datetime")]
    changed_at: OffsetDateTime,
    changed_by: String,
    version: u64,
}

#[derive(Row, Serialize, Deserialize)]
struct ScreenTokenRow {
    id: String,
    user: String,
    label: String,
    scope: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    issued_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime")]
    expires_at: OffsetDateTime,
    revoked: u8,
    version: u64,
}

#[derive(Default)]
struct Mirror {
    users: HashMap<String, UserRecord>,
    screens: HashMap<String, ScreenTokenRecord>,
    /// Changes this instance made itself; a reload that saw the store before one of them does
    /// not replace the mirror (it would undo the change until the next reload).
    local_writes: u64,
}

#[derive(Clone)]
pub struct UserDirectory {
    store: Store,
    mirror: Arc<RwLock<Mirror>>,
}

pub fn validate_user_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid {
            field: "name",
            reason: "1–64 characters of a–z, A–Z, 0–9, _ - . @".into(),
        })
    }
}

pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < 8 {
        return Err(UserError::Invalid {
            field: "password",
            reason: "must have at least 8 characters".into(),
        });
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Unexpected(anyhow::anyhow!("argon2: {e}")))
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl UserDirectory {
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let directory = UserDirectory {
            store,
            mirror: Arc::default(),
        };
        directory.refresh().await?;
        Ok(directory)
    }

    /// Reloads the mirror from the store (latest version of every user and screen token).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let writes_before = self
            .mirror
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .local_writes;
        let users: Vec<UserRow> = self
            .store
            .private_client()
            .query(&format!(
                "SELECT name, argMax(role, version), argMax(scope, version), argMax(password_hash, version), \
                 argMax(disabled, version), argMax(changed_at, version), argMax(changed_by, version), max(version) \
                 FROM {} GROUP BY name",
                self.store.users_table()
            ))
            .fetch_all()
            .await?;
        let screens: Vec<ScreenTokenRow> = self
            .store
            .client()
            .query(
                "SELECT id, argMax(user, version), argMax(label, version), argMax(scope, version), \
                 argMax(issued_at, version), argMax(expires_at, version), argMax(revoked, version), max(version) \
                 FROM screen_tokens GROUP BY id",
            )
            .fetch_all()
            .await?;
        let mut mirror = Mirror::default();
        for u in users {
            let Ok(role) =
                serde_json::from_value::<Role>(serde_json::Value::String(u.role.clone()))
            else {
                tracing::warn!(user = %u.name, role = %u.role, "user with an unknown role ignored");
                continue;
            };
            mirror.users.insert(
                u.name.clone(),
                UserRecord {
                    name: u.name,
                    role,
                    scope: u.scope,
                    password_hash: u.password_hash,
                    disabled: u.disabled != 0,
                    changed_at: u.changed_at,
                    changed_by: u.changed_by,
                },
            );
        }
        for s in screens {
            mirror.screens.insert(
                s.id.clone(),
                ScreenTokenRecord {
                    id: s.id,
                    user: s.user,
                    label: s.label,
                    scope: s.scope,
                    issued_at: s.issued_at,
                    expires_at: s.expires_at,
                    revoked: s.revoked != 0,
                },
            );
        }
        let mut current = self.mirror.write().unwrap_or_else(|p| p.into_inner());
        if current.local_writes == writes_before {
            mirror.local_writes = writes_before;
            *current = mirror;
        }
        Ok(())
    }

    pub fn user(&self, name: &str) -> Option<UserRecord> {
        self.mirror
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .get(name)
            .cloned()
    }

    pub fn screen_token(&self, id: &str) -> Option<ScreenTokenRecord> {
        self.mirror
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .screens
            .get(id)
            .cloned()
    }

    pub fn users(&self) -> Vec<UserRecord> {
        let mut users: Vec<_> = self
            .mirror
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .values()
            .cloned()
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    pub fn screen_tokens(&self) -> Vec<ScreenTokenRecord> {
        let mut tokens: Vec<_> = self
            .mirror
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .screens
            .values()
            .cloned()
            .collect();
        tokens.sort_by_key(|t| std::cmp::Reverse(t.issued_at));
        tokens
    }

    async fn write_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let row = UserRow {
            name: user.name.clone(),
            role: user.role.as_str().to_string(),
            scope: user.scope.clone(),
            password_hash: user.password_hash.clone(),
            disabled: user.disabled as u8,
            changed_at: user.changed_at,
            changed_by: user.changed_by.clone(),
            version: next_version(),
        };
        let mut insert = self
            .store
            .private_client()
            .insert::<UserRow>("users")
            .await?;
        insert.write(&row).await?;
        insert.end().await?;
        let mut mirror = self.mirror.write().unwrap_or_else(|p| p.into_inner());
        mirror.local_writes += 1;
        mirror.users.insert(user.name.clone(), user.clone());
        Ok(())
    }

    /// Creates a user. The scope must already be checked against the org tree.
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        scope: &str,
        password: &str,
        by: &str,
    ) -> Result<UserRecord, UserError> {
        validate_user_name(name)?;
        if self.user(name).is_some_and(|u| !u.disabled) {
            return Err(UserError::Exists(name.to_string()));
        }
        let password = password.to_string();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| UserError::Unexpected(e.into()))??;
        let user = UserRecord {
            name: name.to_string(),
            role,
            scope: scope.to_string(),
            password_hash,
            disabled: false,
            changed_at: now_in_seconds(),
            changed_by: by.to_string(),
        };
        self.write_user(&user).await?;
        Ok(user)
    }

    /// Disables a user: its session and screen tokens stop working at their next use.
    pub async fn revoke_user(&self, name: &str, by: &str) -> Result<UserRecord, UserError> {
        let mut user = self
            .user(name)
            .ok_or_else(|| UserError::NotFound(format!("user {name}")))?;
        user.disabled = true;
        user.changed_at = now_in_seconds();
        user.changed_by = by.to_string();
        self.write_user(&user).await?;
        Ok(user)
    }

    /// The user, if the name exists, is enabled and the password matches. Hashing is slow on
    /// purpose, so it runs off the async workers.
    pub async fn check_password(&self, name: &str, password: &str) -> Option<UserRecord> {
        let user = self.user(name).filter(|u| !u.disabled)?;
        let (hash, password) = (user.password_hash.clone(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || password_matches(&hash, &password))
            .await
            .unwrap_or(false);
        ok.then_some(user)
    }

    pub async fn add_screen_token(&self, record: ScreenTokenRecord) -> Result<(), StoreError> {
        self.write_screen_token(&record).await
    }

    pub async fn revoke_screen_token(&self, id: &str) -> Result<ScreenTokenRecord, UserError> {
        let mut record = self
            .screen_token(id)
            .ok_or_else(|| UserError::NotFound(format!("screen token {id}")))?;
        record.revoked = true;
        self.write_screen_token(&record).await?;
        Ok(record)
    }

    async fn write_screen_token(&self, record: &ScreenTokenRecord) -> Result<(), StoreError> {
        let row = ScreenTokenRow {
            id: record.id.clone(),
            user: record.user.clone(),
            label: record.label.clone(),
            scope: record.scope.clone(),
            issued_at: record.issued_at,
            expires_at: record.expires_at,
            revoked: record.revoked as u8,
            version: next_version(),
        };
        let mut insert = self
            .store
            .client()
            .insert::<ScreenTokenRow>("screen_tokens")
            .await?;
        insert.write(&row).await?;
        insert.end().await?;
        let mut mirror = self.mirror.write().unwrap_or_else(|p| p.into_inner());
        mirror.local_writes += 1;
        mirror.screens.insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Reloads the mirror every `every`, so changes made elsewhere arrive.
    pub async fn keep_fresh(self, every: std::time::Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "reloading users and screen tokens failed; keeping the last copy");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_hash_checks_the_password_it_was_made_from_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches(&hash, "correct horse"));
        assert!(!password_matches(&hash, "correct horsf"));
        assert!(!password_matches("not a hash", "correct horse"));
    }

    #[test]
    fn short_passwords_and_odd_names_are_refused_with_the_field() {
        assert!(matches!(
            hash_password("short"),
            Err(UserError::Invalid {
                field: "password",
                ..
            })
        ));
        assert!(matches!(
            validate_user_name("a b"),
            Err(UserError::Invalid { field: "name", .. })
        ));
        assert!(matches!(
            validate_user_name(""),
            Err(UserError::Invalid { field: "name", .. })
        ));
        assert!(validate_user_name("li.wei@futian").is_ok());
    }
}
