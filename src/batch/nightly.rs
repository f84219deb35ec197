//! The nightly run: at 01:00 Asia/Shanghai (yesterday is complete by then) the snapshot and
//! decision-support jobs, then the live projections' samples reloaded, then what the caller
//! adds (the brief printed).

use std::sync::Arc;
use std::time::Duration;

use crate::domain::OrgTree;
use crate::live::Hub;
use crate::store::Store;

/// Runs the snapshot job every night at 01:00 Asia/Shanghai (yesterday is complete by then).
pub async fn run_every_night<F: std::future::Future<Output = ()>>(
    store: Store,
    tree: Arc<OrgTree>,
    hub: Arc<Hub>,
    after: impl Fn() -> F,
) {
    loop {
        let now = hub.now().to_offset(crate::domain::time::SHANGHAI);
        let tomorrow_1am = now.date().next_day().map(|d| {
            d.with_hms(1, 0, 0)
                .map(|t| t.assume_offset(crate::domain::time::SHANGHAI))
        });
        let wait = match tomorrow_1am {
            Some(Ok(t)) => (t - now).max(time::Duration::ZERO),
            _ => time::Duration::hours(24),
        };
        tokio::time::sleep(Duration::from_secs(wait.whole_seconds().max(60) as u64)).await;
        if let Err(e) =
            crate::batch::decision::run_named(&store, &tree, &hub.catalogue(), "all", hub.now())
                .await
        {
            tracing::warn!(error = %e, "nightly jobs failed");
        }
        match crate::batch::snapshots::recent_samples(&store, &tree, &hub.catalogue()).await {
            Ok(samples) => hub.set_samples(samples),
            Err(e) => tracing::warn!(error = %e, "could not reload projection samples"),
        }
        after().await;
    }
}
