//! Moves committed records from the durable log into ClickHouse in batches (thousands of rows,
//! about one insert per second), then advances the checkpoint and frees consumed segments.
//!
//! Memory stays bounded: the writer keeps at most `max_pending_rows` in memory. When it falls
//! behind (ClickHouse down or slow) it drops what it cannot hold and later reads those records
//! back from the segments — they are on disk anyway.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::log::{Committed, LogCounters};
use super::spool::{self, Frames};
pub use crate::store::insert::InsertHealth as WriterHealth;
use crate::store::insert::{insert_rows, landed_seqs, log_insert_prefix, Attempts, ToInsert};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub batch_rows: usize,
    pub flush_interval: Duration,
    pub max_pending_rows: usize,
    /// Inserts under way at once. With one, ClickHouse sat idle while vscc sorted and sent the
    /// next batch, and vscc waited while ClickHouse wrote the part; two overlap them.
    pub inserts_in_flight: usize,
    /// How often an insert that failed for good (bad schema, a limit) is tried again: only a
    /// change elsewhere can fix it.
    pub blocked_retry: Duration,
}

/// What the writer holds of a committed batch: the log's frames when it kept them, so that
/// the rows are freed as soon as the live figures have taken them in (while they are still in
/// the cache); otherwise, or for a cluster's inserts (which need the rows), the batch.
#[derive(Debug, Clone)]
enum Held {
    Frames(Arc<Frames>),
    Batch(Committed),
}

impl Held {
    fn of(batch: Committed, store: &Store) -> Held {
        match batch.frames() {
            Some(frames) if store.cluster().is_none() => Held::Frames(frames.clone()),
            _ => Held::Batch(batch),
        }
    }

    fn len(&self) -> usize {
        match self {
            Held::Frames(f) => f.len(),
            Held::Batch(b) => b.len(),
        }
    }

    fn item(&self, i: usize) -> ToInsert<'_> {
        match self {
            Held::Frames(f) => ToInsert::Encoded(f.payload(i)),
            Held::Batch(b) => ToInsert::Row(&b[i]),
        }
    }
}

/// Rows of committed batches: (batch, from, to).
type Slices = Vec<(Held, usize, usize)>;

/// An insert under way: the `rows` after those of the inserts before it.
struct InFlight {
    id: u64,
    rows: usize,
    last: u64,
    task: tokio::task::AbortHandle,
    result: Option<Result<(), StoreError>>,
}

pub struct Writer {
    store: Store,
    dir: PathBuf,
    counters: Arc<LogCounters>,
    settings: WriterSettings,
    /// Next seq to insert; everything below is in ClickHouse.
    next: u64,
    /// Committed batches (shared with the live consumer, not copied) and where in each the
    /// rows still to insert start. The first `in_flight_rows` of them are being inserted.
    pending: VecDeque<(Held, usize)>,
    pending_rows: usize,
    in_flight: VecDeque<InFlight>,
    in_flight_rows: usize,
    next_insert_id: u64,
    /// Records were dropped from memory: read them back from disk.
    behind: bool,
    reader: spool::LogReader,
    /// The checkpoint, published for tests and /metrics.
    checkpoint_tx: watch::Sender<u64>,
    /// An insert failed: it, and any insert in flight beside it, may still have landed (the
    /// answer lost, or ClickHouse stopping after the commit). Batches starting at or below this
    /// seq are inserted one at a time, after asking which of their rows are there.
    uncertain_through: Option<u64>,
    retry_at: Option<Instant>,
    attempts: Attempts,
    last_start: Instant,
    /// Shutting down: whatever is pending is due now.
    draining: bool,
    /// Someone waits for what is pending to land (a correction reads the stored versions, a
    /// job reads ClickHouse): it is due now, not at the next tick.
    urgent: Arc<tokio::sync::Notify>,
    flush_requested: bool,
}

impl Writer {
    pub fn new(
        store: Store,
        dir: PathBuf,
        counters: Arc<LogCounters>,
        settings: WriterSettings,
        checkpoint: u64,
        health: Arc<WriterHealth>,
        urgent: Arc<tokio::sync::Notify>,
    ) -> (Self, watch::Receiver<u64>) {
        let (checkpoint_tx, rx) = watch::channel(checkpoint);
        let settings_blocked_retry = settings.blocked_retry;
        let writer = Writer {
            store,
            dir: dir.clone(),
            counters,
            settings,
            next: checkpoint + 1,
            pending: VecDeque::new(),
            pending_rows: 0,
            in_flight: VecDeque::new(),
            in_flight_rows: 0,
            next_insert_id: 0,
            behind: true,
            reader: spool::LogReader::new(&dir, checkpoint + 1),
            checkpoint_tx,
            uncertain_through: None,
            retry_at: None,
            attempts: Attempts::new(RETRY_FIRST, RETRY_MAX, settings_blocked_retry, health),
            last_start: Instant::now(),
            draining: false,
            urgent,
            flush_requested: false,
        };
        (writer, rx)
    }

    fn take(&mut self, batch: Committed) {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let expected = self.next + self.pending_rows as u64;
        if last.seq < expected {
            return;
        }
        if self.behind
            || first.seq > expected
            || self.pending_rows >= self.settings.max_pending_rows
        {
            self.behind = true;
            return;
        }
        // Seqs in a committed batch are consecutive.
        let start = (expected - first.seq) as usize;
        self.pending_rows += batch.len() - start;
        self.pending
            .push_back((Held::of(batch, &self.store), start));
    }

    fn catch_up_from_disk(&mut self) {
        let committed = self.counters.committed_seq.load(Ordering::SeqCst);
        let from = self.next + self.pending_rows as u64;
        if committed < from {
            self.behind = false;
            return;
        }
        self.reader.seek(from);
        let room = self
            .settings
            .max_pending_rows
            .saturating_sub(self.pending_rows)
            .max(self.settings.batch_rows);
        match self.reader.read(committed + 1, room) {
            Ok(rows) => {
                let caught_up = rows.last().is_some_and(|r| r.seq >= committed);
                if !rows.is_empty() {
                    self.pending_rows += rows.len();
                    self.pending
                        .push_back((Held::of(Arc::new(rows), &self.store), 0));
                }
                if caught_up {
                    self.behind = false;
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the log back failed"),
        }
    }

    /// Up to `n` pending rows after the first `skip`, as slices of the committed batches.
    fn slices(&self, mut skip: usize, mut n: usize) -> Slices {
        let mut out = Vec::new();
        for (batch, start) in &self.pending {
            if n == 0 {
                break;
            }
            let here = batch.len() - start;
            if skip >= here {
                skip -= here;
                continue;
            }
            let from = start + skip;
            let to = (from + n).min(batch.len());
            skip = 0;
            n -= to - from;
            out.push((batch.clone(), from, to));
        }
        out
    }

    /// Starts inserts while there is room in flight and a batch is full, or one is due (at
    /// most one a `flush_interval` when not full), or a retry is due.
    fn start_inserts(&mut self, done: &mpsc::UnboundedSender<(u64, Result<(), StoreError>)>) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        while self.in_flight.len() < self.settings.inserts_in_flight {
            if self.behind && self.pending_rows - self.in_flight_rows < self.settings.batch_rows {
                self.catch_up_from_disk();
            }
            let unassigned = self.pending_rows - self.in_flight_rows;
            if unassigned == 0 {
                self.flush_requested = false;
                return;
            }
            let first = self.next + self.in_flight_rows as u64;
            let check = self.uncertain_through.is_some_and(|u| first <= u);
            // Asking what landed settles our inserts in flight first (KILL QUERY): it must
            // not cut off one of our own.
            if check && !self.in_flight.is_empty() {
                return;
            }
            let full = unassigned >= self.settings.batch_rows || self.behind;
            let due = self.retry_at.is_some()
                || self.draining
                || self.flush_requested
                || Instant::now() >= self.last_start + self.settings.flush_interval;
            if !(full || due) {
                return;
            }
            let n = unassigned.min(self.settings.batch_rows);
            let slices = self.slices(self.in_flight_rows, n);
            let last = first + n as u64 - 1;
            let (id, store, done) = (self.next_insert_id, self.store.clone(), done.clone());
            self.next_insert_id += 1;
            let task = tokio::spawn(async move {
                let _ = done.send((id, insert_batch(&store, &slices, check).await));
            });
            self.in_flight.push_back(InFlight {
                id,
                rows: n,
                last,
                task: task.abort_handle(),
                result: None,
            });
            self.in_flight_rows += n;
            self.last_start = Instant::now();
            if check {
                return;
            }
        }
    }

    /// Takes an insert's answer; settles, in seq order, every insert whose answer is in.
    fn finished(&mut self, id: u64, result: Result<(), StoreError>) {
        // An insert aborted after a failure may still answer: it is no longer ours to count.
        let Some(insert) = self.in_flight.iter_mut().find(|i| i.id == id) else {
            return;
        };
        insert.result = Some(result);
        while self.in_flight.front().is_some_and(|i| i.result.is_some()) {
            let Some(InFlight {
                rows, last, result, ..
            }) = self.in_flight.pop_front()
            else {
                break;
            };
            match result {
                Some(Ok(())) => self.landed(rows, last),
                Some(Err(e)) => {
                    self.failed(e, last);
                    return;
                }
                None => {}
            }
        }
    }

    fn landed(&mut self, n: usize, last: u64) {
        self.retry_at = None;
        self.attempts.landed();
        let mut left = n;
        while left > 0 {
            let Some((batch, start)) = self.pending.front_mut() else {
                break;
            };
            let here = batch.len() - *start;
            if here <= left {
                left -= here;
                self.pending.pop_front();
            } else {
                *start += left;
                left = 0;
            }
        }
        self.pending_rows -= n;
        self.in_flight_rows -= n;
        self.next = last + 1;
        if self.uncertain_through.is_some_and(|u| u <= last) {
            self.uncertain_through = None;
        }
        tracing::debug!(rows = n, last, behind = self.behind, "inserted");
        if let Err(e) = spool::write_checkpoint(&self.dir, last) {
            // The rows are in ClickHouse; a stale checkpoint only means a recheck at restart.
            tracing::warn!(error = %e, "could not write the checkpoint");
        }
        match spool::delete_consumed(&self.dir, last) {
            Ok(freed) => {
                self.counters.spool_bytes.fetch_sub(
                    freed.min(self.counters.spool_bytes.load(Ordering::SeqCst)),
                    Ordering::SeqCst,
                );
            }
            Err(e) => tracing::warn!(error = %e, "could not delete consumed segments"),
        }
        self.counters.checkpoint_seq.store(last, Ordering::SeqCst);
        let _ = self.checkpoint_tx.send(last);
    }

    /// The oldest insert in flight failed: the others are cut off (whatever of them landed is
    /// asked for before the retry), and the retry waits for the backoff.
    fn failed(&mut self, e: StoreError, last: u64) {
        let mut uncertain = last;
        for other in self.in_flight.drain(..) {
            other.task.abort();
            uncertain = uncertain.max(other.last);
        }
        self.in_flight_rows = 0;
        self.uncertain_through = Some(self.uncertain_through.unwrap_or(0).max(uncertain));
        let wait = self.attempts.failed(&e, self.pending_rows);
        self.retry_at = Some(Instant::now() + wait);
        // Hold little in memory while ClickHouse is away: the log has it all.
        if self.pending_rows > self.settings.batch_rows {
            self.pending.clear();
            self.pending_rows = 0;
            self.behind = true;
        }
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Committed>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let urgent = self.urgent.clone();
        loop {
            while let Ok(b) = rx.try_recv() {
                self.take(b);
            }
            self.start_inserts(&done_tx);
            let timer = match self.retry_at {
                Some(t) => Some(t),
                None if self.pending_rows > self.in_flight_rows => {
                    Some(self.last_start + self.settings.flush_interval)
                }
                None => None,
            };
            // A timer already run out while inserts are in flight means they hold things up:
            // their answers wake the loop, not the timer (which would spin).
            let wake = timer
                .filter(|t| self.in_flight.is_empty() || *t > Instant::now())
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(b) => self.take(b),
                    None => break,
                },
                Some((id, result)) = done_rx.recv() => self.finished(id, result),
                _ = urgent.notified() => self.flush_requested = true,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        // Shutting down: one last attempt to land what is pending, without waiting for a tick.
        self.retry_at = None;
        self.draining = true;
        loop {
            self.start_inserts(&done_tx);
            if self.in_flight.is_empty() {
                return;
            }
            let Some((id, result)) = done_rx.recv().await else {
                return;
            };
            let failed = result.is_err();
            self.finished(id, result);
            if failed {
                return;
            }
        }
    }
}

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Inserts one batch. `check_landed`: an earlier attempt may have landed part of it, so only
/// the rows ClickHouse does not have yet are inserted.
async fn insert_batch(
    store: &Store,
    slices: &Slices,
    check_landed: bool,
) -> Result<(), StoreError> {
    let prefix = log_insert_prefix(store);
    if !check_landed {
        return insert_rows(store, rows_of(slices), &prefix).await;
    }
    let (Some(first), Some(last)) = (rows_of(slices).next(), rows_of(slices).last()) else {
        return Ok(());
    };
    let landed = landed_seqs(store, first.seq(), last.seq()).await?;
    if !landed.is_empty() {
        tracing::info!(
            landed = landed.len(),
            "part of a failed insert had landed; inserting only the rest"
        );
    }
    let missing = rows_of(slices).filter(|r| !landed.contains(&r.seq()));
    insert_rows(store, missing, &prefix).await
}

/// The rows of the slices.
fn rows_of(slices: &Slices) -> impl Iterator<Item = ToInsert<'_>> + Clone {
    slices
        .iter()
        .flat_map(|(b, from, to)| (*from..*to).map(move |i| b.item(i)))
}
