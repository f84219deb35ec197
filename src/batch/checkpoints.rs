//! Checkpoints of the live state, as a job: one is written every so often while records
//! arrive, and at a clean stop; a start loads the newest that fits (see
//! [`crate::live::checkpoint`] for the file and what is refused).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::ingest::{IdSet, RecordLog, Resume};
use crate::live::checkpoint::{self, Identity};
use crate::live::{Aggregates, Hub};

/// One checkpoint written.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub upto_seq: u64,
    /// How long records waited while the state was saved.
    pub paused: Duration,
    pub took: Duration,
}

/// Writes a checkpoint of the live state now; `None` on a record stream (see
/// [`RecordLog::copy_ids`]).
pub async fn write_now(
    hub: &Arc<Hub>,
    log: &RecordLog,
    dir: &Path,
) -> anyhow::Result<Option<Written>> {
    if log.broker().is_some() {
        return Ok(None);
    }
    let started = Instant::now();
    let saving = hub.clone();
    let ((position, parts), definitions) = tokio::task::spawn_blocking(move || saving.save())
        .await
        .context("saving the live state")?
        .map_err(|e| anyhow::anyhow!("saving the live state: {e}"))?;
    let paused = started.elapsed();
    // Taken after the state: it holds the id of every record the state holds (and maybe more,
    // all durable), as exactly-once after a start needs.
    let ids = match log.copy_ids().await {
        Some(ids) => ids.context("copying the ids seen")?,
        None => return Ok(None),
    };
    let identity = Identity::of(definitions, hub.tree());
    let dir = dir.to_path_buf();
    let upto_seq = position.upto_seq;
    let (path, bytes) = tokio::task::spawn_blocking(move || {
        checkpoint::write(
            &dir,
            identity,
            &position,
            &parts,
            ids.slots(),
            ids.len() as u64,
        )
    })
    .await
    .context("writing the checkpoint")?
    .context("writing the checkpoint")?;
    Ok(Some(Written {
        path,
        bytes,
        upto_seq,
        paused,
        took: started.elapsed(),
    }))
}

/// Writes a checkpoint and logs it (or why not).
pub async fn write_logged(hub: &Arc<Hub>, log: &RecordLog, dir: &Path, why: &str) {
    match write_now(hub, log, dir).await {
        Ok(Some(w)) => tracing::info!(
            path = %w.path.display(),
            bytes = w.bytes,
            upto_seq = w.upto_seq,
            records_waited_ms = w.paused.as_millis() as u64,
            ms = w.took.as_millis() as u64,
            "checkpoint of the live state written ({why})"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = format!("{e:#}"), "no checkpoint written ({why})"),
    }
}

/// Every `every`, a checkpoint when records arrived since the last one.
pub async fn keep_writing(
    hub: Arc<Hub>,
    ingest: Arc<crate::ingest::Ingest>,
    dir: PathBuf,
    every: Duration,
) {
    let mut last = hub.applied();
    loop {
        tokio::time::sleep(every).await;
        let now = hub.applied();
        if now != last {
            write_logged(&hub, &ingest.log, &dir, "periodic").await;
            last = now;
        }
    }
}

/// The newest checkpoint in `dir` that fits this build, the hub's definitions and tree, read
/// into a state ready to be put in service; `None` (logged) when there is none that fits.
pub async fn load(hub: &Arc<Hub>, dir: &Path) -> Option<Resume> {
    let started = Instant::now();
    let (tree, catalogue) = (hub.tree().clone(), hub.catalogue());
    let identity = Identity::of(catalogue.fingerprint, &tree);
    let dir = dir.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        let loaded = checkpoint::read_newest(&dir, &identity)?;
        let mut state = Aggregates::new(tree, catalogue);
        if let Err(why) = state.load_parts(&loaded.part_slices()) {
            tracing::warn!(path = %loaded.path.display(), "checkpoint refused: its state does not fit: {why}");
            return None;
        }
        let Some(ids) = IdSet::from_slots(loaded.id_slots, loaded.ids as usize) else {
            tracing::warn!(path = %loaded.path.display(), "checkpoint refused: its ids seen are malformed");
            return None;
        };
        Some((state, loaded.position, ids, loaded.path))
    })
    .await
    .ok()
    .flatten();
    let Some((state, position, ids, path)) = read else {
        tracing::info!("no checkpoint to start from: every stored record is replayed");
        return None;
    };
    tracing::info!(
        path = %path.display(),
        upto_seq = position.upto_seq,
        ids = ids.len(),
        ms = started.elapsed().as_millis() as u64,
        "checkpoint read"
    );
    let hub = hub.clone();
    Some(Resume {
        upto_seq: position.upto_seq,
        imports: position.imports.clone(),
        ids,
        install: Box::new(move || hub.install(state, &position)),
    })
}
