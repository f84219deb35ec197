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

pub use log::{AppendOutcome, DurableLog, LogError, LogSettings};

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

/// Feeds every stored record up to `upto` (and of the finished imports) to `live`, in any
/// order (applying is order-independent); answers the ids seen, for exactly-once.
async fn rebuild(
    store: &Store,
    upto: u64,
    ok_imports: &[u32],
    live: &RecordSink,
) -> anyhow::Result<log::IdSet> {
    let started = std::time::Instant::now();
    let mut seen = log::IdSet::default();
    let total = store
        .replay(upto, ok_imports, |rows| {
            let mut all_effective = true;
            for row in rows {
                seen.insert(log::row_key(row));
                all_effective &= row.sign == 1;
            }
            // Only the effective records enter the live figures (a rebuild applies, it never
            // takes back); a batch without corrections goes as it is.
            if all_effective {
                live(rows);
            } else {
                let effective: Vec<EventRow> =
                    rows.iter().filter(|r| r.sign == 1).cloned().collect();
                live(&effective);
            }
        })
        .await?;
    tracing::info!(
        records = total,
        ms = started.elapsed().as_millis() as u64,
        "live state rebuilt from ClickHouse"
    );
    Ok(seen)
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
) -> anyhow::Result<Ingest> {
    let ok_imports = store.ok_imports().await?;
    let (live_tx, live_rx) = mpsc::unbounded_channel::<log::Committed>();
    let rebuild_live = live.clone();
    let started = cluster::start(
        broker_settings,
        instance,
        store,
        settings.batch_rows,
        Duration::from_secs(settings.blocked_retry_secs.max(1)),
        async |upto: u64, seen: &mut log::IdSet| {
            *seen = rebuild(store, upto, &ok_imports, &rebuild_live).await?;
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
) -> anyhow::Result<Ingest> {
    if broker_settings.enabled() {
        start_with_broker(settings, broker_settings, instance, store, live).await
    } else {
        start_local(settings, store, live).await
    }
}

/// Recovers the log, lands what it holds in ClickHouse, feeds every stored record to `live`
/// (the rebuild), and starts the appender, the live consumer and the writer.
async fn start_local(
    settings: &IngestSettings,
    store: &Store,
    live: RecordSink,
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
    let seen = rebuild(store, IMPORT_SEQ_BASE - 1, &ok_imports, &live).await?;

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
        tasks: vec![live.abort_handle(), writer.abort_handle()],
        writer: health,
        leader: cluster::Leadership::always(),
        flush_now: Some(flush_now),
    })
}
