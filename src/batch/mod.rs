//! The batch side: the simulated Shenzhen, ledger imports, the daily snapshots and the
//! decision-support jobs, each run recorded in `job_runs`.

pub mod brief;
pub mod checkpoints;
pub mod decision;
pub mod ledger;
pub mod nightly;
pub mod simulator;
pub mod snapshots;

use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// Records one run of a batch job in `job_runs` (rows written, or why it failed).
pub async fn record_run(
    store: &Store,
    job: &str,
    started: OffsetDateTime,
    result: &Result<u64, String>,
) -> Result<(), StoreError> {
    let (rows, outcome) = match result {
        Ok(n) => (*n, "ok".to_string()),
        Err(e) => (0, format!("failed: {e}")),
    };
    let run = snapshots::JobRun {
        job: job.into(),
        started: started.unix_timestamp().max(0) as u32,
        ended: OffsetDateTime::now_utc().unix_timestamp().max(0) as u32,
        rows,
        outcome,
    };
    let mut insert = store
        .client()
        .insert::<snapshots::JobRun>("job_runs")
        .await?;
    insert.write(&run).await?;
    insert.end().await?;
    tracing::info!(job, rows, outcome = %run.outcome, "job finished");
    Ok(())
}
