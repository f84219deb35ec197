//! Metric definitions changed while running: re-read every second, refused loudly when
//! broken, and switched to once the live state for them is rebuilt from ClickHouse.

use crate::store::audit::{AuditAction, AuditEntry};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::{CatalogueSettings, Dashboards, DefinitionFiles, DefinitionsStatus};
use crate::domain::catalogue::Catalogue;
use crate::domain::OrgTree;
use crate::live::Hub;
use crate::store::Store;

/// What a switch touches: the live state, the store it is rebuilt from, and who checks the
/// names in their definitions against the new catalogue (the screens here, the alert rules
/// through `revalidate`).
#[derive(Clone)]
pub struct Services {
    pub hub: Arc<Hub>,
    pub store: Store,
    pub tree: Arc<OrgTree>,
    pub definitions: Arc<DefinitionsStatus>,
    pub audit: crate::store::audit::AuditTrail,
    pub dashboards: Dashboards,
    pub revalidate: Arc<dyn Fn() + Send + Sync>,
}

/// Re-reads the metric definitions every `every`. A broken set is reported (log, `/metrics`)
/// and the catalogue in service stays; a valid, changed one is switched to once the live state
/// for it is rebuilt from ClickHouse — meanwhile the old figures keep being served.
pub async fn watch_metric_definitions(
    state: Services,
    dirs: CatalogueSettings,
    keep_dir: std::path::PathBuf,
    checkpoint: watch::Receiver<u64>,
    every: Duration,
) {
    // Reading a few dozen small files is cheaper than trusting modification times that
    // editors and copies set in odd ways. They are read off the async runtime: a file that
    // blocks (a FIFO) or never ends must not park a runtime worker.
    let read = || {
        let dirs = dirs.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                DefinitionFiles::read(&dirs).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("reading the definitions failed: {e}")))
        }
    };
    let keep = |files: &Result<DefinitionFiles, String>| {
        if let Ok(files) = files {
            if let Err(e) = files.keep_as_last_good(&keep_dir) {
                tracing::warn!(error = %e, "could not keep the definitions as the last good set");
            }
        }
    };
    let mut seen = read().await;
    loop {
        tokio::time::sleep(every).await;
        let now = read().await;
        if now == seen {
            continue;
        }
        // Who edited the files is not known here: the trail names the files and what vscc did.
        let files = match (&now, &seen) {
            (Ok(now), Ok(seen)) => now.changed_since(seen).join(", "),
            _ => String::new(),
        };
        let audit = |outcome: &str, detail: String| {
            state.audit.record(
                AuditEntry::new(AuditAction::DefinitionsChanged, "system")
                    .target(&files)
                    .outcome(outcome)
                    .detail(detail),
            );
        };
        match now
            .clone()
            .and_then(|files| files.parse().map_err(|e| e.to_string()))
            .and_then(|c| {
                c.check_levels(&state.tree)
                    .map(|()| c)
                    .map_err(|e| e.to_string())
            }) {
            Err(e) => {
                tracing::error!(error = %e, "definitions refused; the catalogue in service stays");
                audit("refused", format!("the catalogue in service stays: {e}"));
                state.definitions.set_refused(Some(e));
                seen = now;
            }
            Ok(catalogue) if catalogue == *state.hub.catalogue() => {
                state.definitions.set_refused(None);
                audit("ok", "the catalogue is unchanged".into());
                keep(&now);
                seen = now;
            }
            Ok(catalogue) => {
                match switch_catalogue(&state, Arc::new(catalogue), checkpoint.clone()).await {
                    Ok(()) => {
                        audit("ok", "switched to the changed catalogue".into());
                        keep(&now);
                        seen = now;
                    }
                    // Tried again at the next look (the files may change meanwhile).
                    Err(e) => {
                        tracing::warn!(error = %e, "could not rebuild the live state for the changed definitions; trying again")
                    }
                }
            }
        }
    }
}

/// Rebuilds the live state for `catalogue` from ClickHouse and puts it in service.
async fn switch_catalogue(
    state: &Services,
    catalogue: Arc<Catalogue>,
    mut checkpoint: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let hub = &state.hub;
    let upto = hub.begin_switch();
    let rebuilt = async {
        // Every API record applied so far must be in ClickHouse before it is read back.
        tokio::time::timeout(Duration::from_secs(60), checkpoint.wait_for(|c| *c >= upto))
            .await
            .context("the writer did not land the records applied so far within 60 s")??;
        let ok_imports = state.store.ok_imports().await?;
        let (fresh, done) = crate::live::rebuild::from_store(
            &state.store,
            state.tree.clone(),
            catalogue.clone(),
            upto,
            &ok_imports,
        )
        .await?;
        Ok::<_, anyhow::Error>((fresh, done, ok_imports))
    }
    .await;
    match rebuilt {
        Err(e) => {
            hub.abort_switch();
            Err(e)
        }
        Ok((fresh, done, ok_imports)) => {
            hub.finish_switch(fresh, upto, &ok_imports);
            state.definitions.switched();
            // Screens and rules that name a metric are checked against the new catalogue.
            state.dashboards.revalidate();
            (state.revalidate)();
            tracing::info!(
                metrics = catalogue.metrics.len(),
                records = done.records,
                ms = started.elapsed().as_millis() as u64,
                "changed metric definitions in service; live state rebuilt from ClickHouse"
            );
            Ok(())
        }
    }
}
