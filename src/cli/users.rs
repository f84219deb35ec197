//! `vscc user …`: users and screen tokens, straight in the store.

use anyhow::Context;

use super::*;

pub(super) async fn user_command(
    mut settings: Settings,
    command: UserCommand,
) -> anyhow::Result<()> {
    use crate::auth::{Authenticator, Role, UserDirectory};
    let store_args = match &command {
        UserCommand::Add { store, .. }
        | UserCommand::List { store }
        | UserCommand::Revoke { store, .. }
        | UserCommand::ScreenToken { store, .. } => store,
    };
    store_args.apply(&mut settings);
    let tree = std::sync::Arc::new(reference::load_org_tree(
        &settings.reference.divisions_dir,
        &settings.org.region,
    )?);
    let (store, managed) = crate::app::connect_store_shared(&settings).await?;
    let result = async {
        store.migrate().await?;
        let directory = UserDirectory::load(store.clone()).await?;
        let by = format!("cli:{}", std::env::var("USER").unwrap_or_default());
        use crate::store::audit::{AuditAction, AuditEntry};
        let audit = |entry: AuditEntry| {
            let store = store.clone();
            async move {
                if let Err(e) = crate::store::audit::append(&store, &[entry]).await {
                    tracing::warn!(error = %e, "could not write the audit entry");
                }
            }
        };
        match command {
            UserCommand::Add {
                name, role, scope, ..
            } => {
                let role = Role::parse(&role).with_context(|| {
                    format!("--role {role}: one of leader, analyst, duty_officer, clerk, admin")
                })?;
                anyhow::ensure!(
                    tree.get(&scope).is_some(),
                    "--scope {scope}: no such org code (see `vscc org`)"
                );
                let password = match std::env::var("VSCC_USER_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => {
                        if std::io::stdin().is_terminal() {
                            eprint!("password for {name}: ");
                        }
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line.trim_end_matches(['\r', '\n']).to_string()
                    }
                };
                let user = directory
                    .add_user(&name, role, &scope, &password, &by)
                    .await?;
                audit(
                    AuditEntry::new(AuditAction::UserAdded, &by)
                        .target(&user.name)
                        .detail(format!("role {}, scope {}", user.role.as_str(), user.scope)),
                )
                .await;
                println!(
                    "added {} ({}, scope {} {})",
                    user.name,
                    user.role.as_str(),
                    user.scope,
                    tree.node(tree.get(&scope).unwrap_or(tree.root())).name
                );
            }
            UserCommand::List { .. } => {
                println!(
                    "{:<24} {:<13} {:<10} {:<8} changed",
                    "user", "role", "scope", "state"
                );
                for u in directory.users() {
                    let state = if u.disabled { "revoked" } else { "active" };
                    println!(
                        "{:<24} {:<13} {:<10} {:<8} {} by {}",
                        u.name,
                        u.role.as_str(),
                        u.scope,
                        state,
                        u.changed_at,
                        u.changed_by
                    );
                }
                let tokens = directory.screen_tokens();
                if !tokens.is_empty() {
                    println!(
                        "\n{:<34} {:<16} {:<10} {:<8} expires",
                        "screen token", "user", "scope", "state"
                    );
                    for t in tokens {
                        let state = if t.revoked { "revoked" } else { "active" };
                        println!(
                            "{:<34} {:<16} {:<10} {:<8} {}  {}",
                            t.id,
                            t.user,
                            t.scope,
                            state,
                            t.expires_at.date(),
                            t.label
                        );
                    }
                }
            }
            UserCommand::Revoke {
                name,
                screen_token: true,
                ..
            } => {
                let t = directory.revoke_screen_token(&name).await?;
                audit(AuditEntry::new(AuditAction::ScreenTokenRevoked, &by).target(&t.id)).await;
                println!("revoked screen token {} of {}", t.id, t.user);
            }
            UserCommand::Revoke { name, .. } => {
                let u = directory.revoke_user(&name, &by).await?;
                audit(AuditEntry::new(AuditAction::UserRevoked, &by).target(&u.name)).await;
                println!(
                    "revoked {}: its tokens are refused from their next use",
                    u.name
                );
            }
            UserCommand::ScreenToken {
                user, scope, label, ..
            } => {
                let record = directory
                    .user(&user)
                    .filter(|u| !u.disabled)
                    .with_context(|| format!("no active user {user}"))?;
                let scope = scope.unwrap_or_else(|| record.scope.clone());
                let (Some(s), Some(us)) = (tree.get(&scope), tree.get(&record.scope)) else {
                    anyhow::bail!("--scope {scope}: no such org code");
                };
                anyhow::ensure!(
                    tree.is_within(s, us),
                    "--scope {scope} is outside {user}'s scope ({})",
                    record.scope
                );
                let secret = crate::auth::load_or_create_secret(&settings.auth)?;
                let auth = Authenticator::new(
                    &settings.auth,
                    tree.clone(),
                    crate::auth::tokens::random_token(),
                    &secret,
                    directory,
                )?;
                let issued = auth.issue_screen_token(&record, &scope, &label).await?;
                audit(
                    AuditEntry::new(AuditAction::ScreenTokenIssued, &by)
                        .target(&issued.id)
                        .detail(format!("for {user}, scope {scope}, {label}")),
                )
                .await;
                eprintln!(
                    "screen token {} for {user}, scope {scope}, expires {}",
                    issued.id,
                    issued.expires_at.date()
                );
                println!("{}", issued.token);
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Some(mut m) = managed {
        m.stop().await;
    }
    result
}
