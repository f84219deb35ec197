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
