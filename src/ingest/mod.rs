//! Records in, after validation (`wire/events.rs` parses a request, `domain/record.rs` checks
//! a record against its kind): the durable log, its batched ClickHouse writer and the start-up
//! recovery that makes every acknowledged record land in ClickHouse exactly once — or, with
//! several instances, the shared record stream of [`cluster`].

pub mod cluster;
pub mod idset;
pub mod log;
pub mod spool;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

pub use log::{AppendOutcome, DurableLog, IdSet, LogError, LogSettings};

use crate::domain::record::{EventRow, IMPORT_SEQ_BASE};
use crate::store::insert::{insert_events, landed_seqs};
use crate::store::Store;
use writer::{Writer, WriterSettings};

#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    pub spool_dir: std::path::PathBuf,
    pub max_body_bytes: usize,
    /// Bytes of request bodies being read and checked at once, over all requests.
    pub max_body_bytes_in_flight: usize,
    pub max_records: usize,
    pub max_spool_bytes: u64,
    pub segment_bytes: u64,
    pub batch_rows: usize,
    pub flush_interval_ms: u64,
    pub max_pending_rows: usize,
    pub inserts_in_flight: usize,
    /// Seconds between attempts of an insert that failed for good (see WriterHealth).
    pub blocked_retry_secs: u64,
    pub imports_dir: std::path::PathBuf,
    pub max_import_bytes: usize,
    /// The bound for a caller whose scope is below the city (a district, street or community).
    pub max_unit_import_bytes: usize,
}

/// Where accepted records are kept until they are in ClickHouse: this instance's own log, or
/// the record stream that several instances share.
pub enum RecordLog {
    Local(DurableLog),
    Broker(Box<cluster::Broker>),
}

impl RecordLog {
    pub async fn append(&self, rows: Vec<EventRow>) -> Result<Vec<AppendOutcome>, LogError> {
        match self {
            RecordLog::Local(log) => log.append(rows).await,
            RecordLog::Broker(b) => b.append(rows).await,
        }
    }

    /// A copy of the ids of every record accepted so far, for a checkpoint. On a record stream
    /// none: its reader keeps them, and checkpoints are written by instances with their own
    /// log only (a start from the stream replays every stored record).
    pub async fn copy_ids(&self) -> Option<Result<log::IdSet, LogError>> {
        match self {
            RecordLog::Local(log) => Some(log.copy_ids().await),
            RecordLog::Broker(_) => None,
        }
    }

    /// The record stream, when there is one.
    pub fn broker(&self) -> Option<&cluster::Broker> {
        match self {
            RecordLog::Local(_) => None,
            RecordLog::Broker(b) => Some(b),
        }
    }

    /// Whether this instance has read the record stream up to where it stood at start-up (its
    /// own log: always).
    pub fn caught_up(&self) -> bool {
        match self {
            RecordLog::Local(_) => true,
            RecordLog::Broker(b) => b.caught_up(),
        }
    }

    pub fn counters(&self) -> &Arc<log::LogCounters> {
        match self {
            RecordLog::Local(log) => log.counters(),
            RecordLog::Broker(b) => b.counters(),
        }
    }
}

pub struct Ingest {
    pub log: RecordLog,
    pub checkpoint: watch::Receiver<u64>,
    /// The highest seq the live sink has taken in.
    applied: watch::Receiver<u64>,
    /// Ledger imports already in the live figures.
    pub imports_applied: Vec<u32>,
    /// How the live state was built at start-up.
    pub started: Started,
    /// The live consumer and the writer.
    pub tasks: Vec<tokio::task::AbortHandle>,
    /// Whether the writer is stuck on an insert retrying cannot fix.
    pub writer: Arc<writer::WriterHealth>,
    /// Whether this instance leads (writes into ClickHouse, evaluates alerts): always with its
    /// own log; the holder of the writer's lease on a record stream.
    pub leader: cluster::Leadership,
    /// Asks the writer of this instance's own log to insert what is pending now (none on a
    /// record stream, whose writer keeps its cadence).
    flush_now: Option<Arc<tokio::sync::Notify>>,
}

/// What happened to validated records handed to [`Ingest::accept`].
#[derive(Debug)]
pub struct Accepted {
    /// Newly accepted (durable).
    pub accepted: usize,
    /// Accepted before (their id): no change.
    pub duplicates: usize,
    /// When the new records became durable.
    pub durable_at: time::OffsetDateTime,
    /// Each record's verdict, in the order given.
    pub outcomes: Vec<AppendOutcome>,
}

/// How long an answer waits for its records to reach the live figures (read-your-writes).
const LIVE_WAIT: Duration = Duration::from_secs(2);

impl Ingest {
    /// Waits (up to `limit`) until every record accepted so far is in ClickHouse; answers
    /// whether they all are. A job that reads ClickHouse waits so that it includes what
    /// clients were just told was accepted.
    pub async fn wait_landed(&self, limit: std::time::Duration) -> bool {
        let committed = self
            .log
            .counters()
            .committed_seq
            .load(std::sync::atomic::Ordering::SeqCst);
        let mut checkpoint = self.checkpoint.clone();
        if *checkpoint.borrow() < committed {
            if let Some(flush) = &self.flush_now {
                flush.notify_one();
            }
        }
        let landed = tokio::time::timeout(limit, checkpoint.wait_for(|c| *c >= committed))
            .await
            .is_ok_and(|r| r.is_ok());
        landed
    }

    /// Makes validated records durable (each id once, ever), then waits until they are in
    /// the live figures, so that the sender's next read sees them.
    pub async fn accept(&self, rows: Vec<EventRow>) -> Result<Accepted, LogError> {
        let outcomes = if rows.is_empty() {
            Vec::new()
        } else {
            self.log.append(rows).await?
        };
        let durable_at = time::OffsetDateTime::now_utc();
        let max_seq = outcomes
            .iter()
            .filter_map(|o| match o {
                AppendOutcome::Accepted { seq } => Some(*seq),
                AppendOutcome::Duplicate => None,
            })
            .max();
        let accepted = outcomes
            .iter()
            .filter(|o| matches!(o, AppendOutcome::Accepted { .. }))
            .count();
        if let Some(seq) = max_seq {
            let mut applied = self.applied.clone();
            let _ = tokio::time::timeout(LIVE_WAIT, applied.wait_for(|s| *s >= seq)).await;
        }
        Ok(Accepted {
            accepted,
            duplicates: outcomes.len() - accepted,
            durable_at,
            outcomes,
        })
    }
}

/// Where committed records go besides ClickHouse: the live figures. Given every stored record
/// at start-up (in any order), then each committed batch in seq order.
pub type RecordSink = Arc<dyn Fn(&[EventRow]) + Send + Sync>;

/// A checkpoint of the live state to start from: only the records after it are replayed.
pub struct Resume {
    /// Every API record up to this seq is in the checkpoint …
    pub upto_seq: u64,
    /// … and every record of these imports.
    pub imports: Vec<u32>,
    /// The ids of every record accepted when it was written (and maybe a few after).
    pub ids: log::IdSet,
    /// Puts the checkpoint's live state in service. Called only once the store is known to
    /// hold every record the checkpoint holds; else the checkpoint is dropped, and every
    /// stored record replayed.
    pub install: Box<dyn FnOnce() + Send>,
}

impl Resume {
    /// Whether the record at `seq` is in the checkpoint.
    fn holds(&self, seq: u64) -> bool {
        if seq < IMPORT_SEQ_BASE {
            seq <= self.upto_seq
        } else {
            let import = ((seq - IMPORT_SEQ_BASE) >> 32) as u32;
            self.imports.contains(&import)
        }
    }

    /// Why the store cannot follow on from this checkpoint, if it cannot: the checkpoint is
    /// ahead of the records it holds (a store emptied or restored from an older backup).
    fn unfit(&self, stored_upto: u64, ok_imports: &[u32]) -> Option<String> {
        if self.upto_seq > stored_upto {
            return Some(format!(
                "it holds records up to seq {}, the store only up to {stored_upto}",
                self.upto_seq
            ));
        }
        self.imports
            .iter()
            .find(|i| !ok_imports.contains(i))
            .map(|i| format!("it holds import {i}, which the store does not"))
    }
}

/// How the live state was built at start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Started {
    /// The position of the checkpoint it started from; `None`: every stored record replayed.
    pub checkpoint_seq: Option<u64>,
    /// Stored records replayed (after the checkpoint, if any).
    pub replayed: u64,
}

/// Feeds every stored record up to `upto` (and of the finished imports) to `live`, in any
/// order (applying is order-independent); answers the ids seen, for exactly-once. From a
/// checkpoint (`resume`), only the records after it.
pub(crate) async fn rebuild(
    store: &Store,
    upto: u64,
    ok_imports: &[u32],
    live: &RecordSink,
    resume: Option<Resume>,
) -> anyhow::Result<(log::IdSet, Started)> {
    let started = std::time::Instant::now();
    let resume = match resume {
        None => None,
        Some(resume) => {
            let stored = store.max_api_seq().await?.min(upto);
            match resume.unfit(stored, ok_imports) {
                Some(why) => {
                    tracing::warn!("checkpoint refused: {why}; every stored record is replayed");
                    None
                }
                None => Some(resume),
            }
        }
    };
    let (mut seen, after_seq, imports, resume) = match resume {
        Some(mut resume) => {
            let install = std::mem::replace(&mut resume.install, Box::new(|| {}));
            install();
            let ids = std::mem::take(&mut resume.ids);
            let imports: Vec<u32> = ok_imports
                .iter()
                .copied()
                .filter(|i| !resume.imports.contains(i))
                .collect();
            (ids, resume.upto_seq, imports, Some(resume))
        }
        None => (log::IdSet::default(), 0, ok_imports.to_vec(), None),
    };
    let total = store
        .replay(after_seq, upto, &imports, |rows| {
            let mut all_effective = true;
            for row in rows {
                seen.insert(log::row_key(row));
                all_effective &= row.sign == 1;
            }
            // The effective records enter the live figures (a rebuild applies, it never takes
            // back) — and after a checkpoint, the cancelling rows of versions it holds take
            // them back. A batch without corrections goes as it is.
            if all_effective {
                live(rows);
            } else {
                let effective: Vec<EventRow> = rows
                    .iter()
                    .filter(|r| {
                        r.sign == 1
                            || (r.sign == -1 && resume.as_ref().is_some_and(|c| c.holds(r.cancels)))
                    })
                    .cloned()
                    .collect();
                live(&effective);
            }
        })
        .await?;
    let started_from = Started {
        checkpoint_seq: resume.as_ref().map(|r| r.upto_seq),
        replayed: total,
    };
    match resume {
        Some(resume) => tracing::info!(
            checkpoint_seq = resume.upto_seq,
            records_after = total,
            ms = started.elapsed().as_millis() as u64,
            "live state loaded from a checkpoint and the records after it replayed"
        ),
        None => tracing::info!(
            records = total,
            ms = started.elapsed().as_millis() as u64,
            "live state rebuilt from ClickHouse"
        ),
    }
    Ok((seen, started_from))
}

/// Applies committed batches to the live figures as they come; the watch says the highest seq
/// applied (read-your-writes waits on it).
fn follow_live(
    mut batches: mpsc::UnboundedReceiver<log::Committed>,
    live: RecordSink,
    applied: u64,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<u64>) {
    let (applied_tx, applied) = watch::channel(applied);
    let task = tokio::spawn(async move {
        while let Some(batch) = batches.recv().await {
            live(&batch);
            if let Some(last) = batch.last() {
                applied_tx.send_replace(last.seq);
            }
        }
    });
    (task, applied)
}

/// With a record stream (`[broker] url`): rebuilds the live state from ClickHouse up to the
/// stream's checkpoint, then follows the stream; the writer's lease decides which instance
/// inserts (see [`broker`]).
async fn start_with_broker(
    settings: &IngestSettings,
    broker_settings: &cluster::BrokerSettings,
    instance: &str,
    store: &Store,
    live: RecordSink,
    resume: Option<Resume>,
) -> anyhow::Result<Ingest> {
    let ok_imports = store.ok_imports().await?;
    let (live_tx, live_rx) = mpsc::unbounded_channel::<log::Committed>();
    let rebuild_live = live.clone();
    let mut started_from = Started::default();
    let started = cluster::start(
        broker_settings,
        instance,
        store,
        settings.batch_rows,
        Duration::from_secs(settings.blocked_retry_secs.max(1)),
        async |upto: u64, seen: &mut log::IdSet| {
            (*seen, started_from) =
                rebuild(store, upto, &ok_imports, &rebuild_live, resume).await?;
            Ok(())
        },
        live_tx,
    )
    .await?;
    let read = started
        .broker
        .counters()
        .committed_seq
        .load(std::sync::atomic::Ordering::SeqCst);
    let (live, applied) = follow_live(live_rx, live, read);
    let mut tasks = started.tasks;
    tasks.push(live.abort_handle());
    Ok(Ingest {
        log: RecordLog::Broker(Box::new(started.broker)),
        checkpoint: started.checkpoint,
        applied,
        imports_applied: ok_imports,
        started: started_from,
        tasks,
        writer: started.health,
        leader: started.leader,
        flush_now: None,
    })
}

/// Starts taking records in: on the record stream when `[broker] url` is set, else on this
/// instance's own log (see [`start_local`]).
pub async fn start(
    settings: &IngestSettings,
    broker_settings: &cluster::BrokerSettings,
    instance: &str,
    store: &Store,
    live: RecordSink,
    resume: Option<Resume>,
) -> anyhow::Result<Ingest> {
    if broker_settings.enabled() {
        start_with_broker(settings, broker_settings, instance, store, live, resume).await
    } else {
        start_local(settings, store, live, resume).await
    }
}

/// Recovers the log, lands what it holds in ClickHouse, feeds every stored record to `live`
/// (the rebuild), and starts the appender, the live consumer and the writer.
async fn start_local(
    settings: &IngestSettings,
    store: &Store,
    live: RecordSink,
    resume: Option<Resume>,
) -> anyhow::Result<Ingest> {
    let dir = settings.spool_dir.clone();
    let recovered =
        log::recover(&dir).with_context(|| format!("recovering the log in {}", dir.display()))?;
    if !recovered.pending.is_empty() {
        let landed = landed_seqs(store, recovered.checkpoint + 1, IMPORT_SEQ_BASE - 1).await?;
        let missing: Vec<EventRow> = recovered
            .pending
            .into_iter()
            .filter(|r| !landed.contains(&r.seq))
            .collect();
        tracing::info!(
            landed = landed.len(),
            replaying = missing.len(),
            "recovering records logged before the last stop"
        );
        for chunk in missing.chunks(settings.batch_rows.max(1)) {
            insert_events(store, chunk).await?;
        }
        spool::write_checkpoint(&dir, recovered.max_seq)?;
        spool::delete_consumed(&dir, recovered.max_seq)?;
    }
    let stored_max = store.max_api_seq().await?;
    let next_seq = recovered.max_seq.max(stored_max) + 1;

    // Rebuild: every stored record that counts, in any order (applying is order-independent).
    // Imports finishing from here on are applied by the import follower.
    let ok_imports = store.ok_imports().await?;
    let (seen, started_from) =
        rebuild(store, IMPORT_SEQ_BASE - 1, &ok_imports, &live, resume).await?;

    let (live_tx, live_rx) = mpsc::unbounded_channel::<log::Committed>();
    let (writer_tx, writer_rx) = mpsc::unbounded_channel::<log::Committed>();
    let log = DurableLog::start(
        LogSettings {
            dir: dir.clone(),
            segment_bytes: settings.segment_bytes,
            max_spool_bytes: settings.max_spool_bytes,
        },
        next_seq,
        seen,
        vec![live_tx, writer_tx],
    )?;
    let (live, applied) = follow_live(live_rx, live, next_seq - 1);
    let health = Arc::new(writer::WriterHealth::default());
    let flush_now = Arc::new(tokio::sync::Notify::new());
    let (writer, checkpoint) = Writer::new(
        store.clone(),
        dir,
        log.counters().clone(),
        WriterSettings {
            batch_rows: settings.batch_rows,
            flush_interval: Duration::from_millis(settings.flush_interval_ms),
            max_pending_rows: settings.max_pending_rows,
            inserts_in_flight: settings.inserts_in_flight.max(1),
            blocked_retry: Duration::from_secs(settings.blocked_retry_secs.max(1)),
        },
        next_seq - 1,
        health.clone(),
        flush_now.clone(),
    );
    let writer = tokio::spawn(writer.run(writer_rx));
    Ok(Ingest {
        log: RecordLog::Local(log),
        checkpoint,
        applied,
        imports_applied: ok_imports,
        started: started_from,
        tasks: vec![live.abort_handle(), writer.abort_handle()],
        writer: health,
        leader: cluster::Leadership::always(),
        flush_now: Some(flush_now),
    })
}
