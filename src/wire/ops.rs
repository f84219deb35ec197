//! Errors, health, readiness and the answers of the batch jobs.

use std::collections::BTreeMap;

use serde::Serialize;

/// Every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable reason.
    pub error: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    pub status: &'static str,
    /// This process (a new id each start): which of several instances answered.
    pub instance: String,
}

/// `GET /readyz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok` or the reason ClickHouse is not usable.
    pub clickhouse: String,
    /// `applied`, `pending` or `unknown`.
    pub migrations: String,
    /// `ok`, or why records cannot be written into ClickHouse (they stay in the log).
    pub writer: String,
    /// With a record stream: `ok`, or `catching up` until this instance has read what the
    /// stream held when it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<&'static str>,
    /// `ok`, or why the definition files on disk were refused — the last good set stays in
    /// service (still ready), but somebody should look.
    pub definitions: String,
    /// Shutting down (SIGTERM): not ready whatever the rest says.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// One recorded run of a batch job.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobRun {
    /// snapshots | progress | league | freshness
    pub job: String,
    /// Unix seconds.
    pub started: u32,
    pub ended: u32,
    /// Rows written.
    pub rows: u64,
    /// ok, or what went wrong.
    pub outcome: String,
}

impl From<crate::batch::snapshots::JobRun> for JobRun {
    fn from(r: crate::batch::snapshots::JobRun) -> Self {
        JobRun {
            job: r.job,
            started: r.started,
            ended: r.ended,
            rows: r.rows,
            outcome: r.outcome,
        }
    }
}

/// `POST /api/v1/jobs/{job}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobsRun {
    /// Rows written in all.
    pub rows: u64,
    /// Rows written per job.
    pub jobs: BTreeMap<String, u64>,
}

/// One entry of the audit trail (`GET /api/v1/audit`).
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    /// RFC 3339, Shenzhen time, to the second.
    pub at: String,
    pub id: String,
    /// The user who acted; `system` for what vscc did of itself (definition files changed on
    /// disk).
    pub actor: String,
    pub role: String,
    /// The actor's scope (org code); empty for a failed login of an unknown name.
    pub scope: String,
    /// `login`, `user_added`, `user_revoked`, `screen_token_issued`, `screen_token_revoked`,
    /// `alert_acknowledged`, `alert_unacknowledged`, `silence_created`, `silence_ended`,
    /// `sql_run`, `definitions_changed`, `ledger_imported`.
    pub action: String,
    /// What the action was on: a user, a token, an alert (`rule/node`), a silence, the SQL's
    /// scope, the changed files, a ledger's file name.
    pub target: String,
    /// The SQL text, the counts of an import, a refusal's reason …
    pub detail: String,
    /// The client's address (the last `X-Forwarded-For` of a trusted proxy).
    pub address: String,
    /// `ok` or `refused`.
    pub outcome: String,
}

impl From<crate::store::audit::AuditEntry> for AuditEntryView {
    fn from(e: crate::store::audit::AuditEntry) -> Self {
        AuditEntryView {
            at: crate::domain::time::rfc3339(e.at),
            id: e.id,
            actor: e.actor,
            role: e.role,
            scope: e.scope,
            action: e.action,
            target: e.target,
            detail: e.detail,
            address: e.address,
            outcome: e.outcome,
        }
    }
}
