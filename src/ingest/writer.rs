//! Moves committed records from the durable log into ClickHouse in batches (thousands of rows,
//! about one insert per second), then advances the checkpoint and frees consumed segments.
//!
//! Memory stays bounded: the writer keeps at most `max_pending_rows` in memory. When it falls
//! behind (ClickHouse down or slow) it drops what it cannot hold and later reads those records
//! back from the segments — they are on disk anyway.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::log::{Committed, LogCounters};
use super::spool::{self, Frames};
use crate::domain::record::EventRow;
use crate::store::retry::Backoff;
use crate::store::rowbinary::{self, KeyOf};
use crate::store::{RetryHint, Store, StoreError};

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

/// Whether the writer is stuck on an insert that retrying cannot fix: the reason, for
/// `/readyz` and `/metrics`. The records stay in the log meanwhile.
#[derive(Debug, Default)]
pub struct WriterHealth {
    blocked: std::sync::Mutex<Option<String>>,
    /// Failed inserts, (worth retrying, not).
    pub failures: (std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64),
}

impl WriterHealth {
    pub fn blocked(&self) -> Option<String> {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, reason: Option<String>) {
        *self.blocked.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }
}

/// A row to insert: the row, or its RowBinary encoding as the log kept it.
#[derive(Debug, Clone, Copy)]
enum ToInsert<'a> {
    Row(&'a EventRow),
    Encoded(&'a [u8]),
}

impl<'a> ToInsert<'a> {
    fn key(self) -> KeyOf<'a> {
        match self {
            ToInsert::Row(r) => key_of_row(r),
            // Bytes this process encoded; were they not a row, ClickHouse would refuse them.
            ToInsert::Encoded(bytes) => rowbinary::key_of(bytes).unwrap_or_default(),
        }
    }

    fn seq(self) -> u64 {
        match self {
            ToInsert::Row(r) => r.seq,
            ToInsert::Encoded(_) => self.key().seq,
        }
    }
}

fn key_of_row(r: &EventRow) -> KeyOf<'_> {
    KeyOf {
        seq: r.seq,
        kind: r.kind.as_bytes(),
        org: r.org.as_bytes(),
        at: r.at,
    }
}

/// Inserts logged records into `events` in one INSERT (one block: ClickHouse makes it atomic).
pub async fn insert_events(store: &Store, rows: &[EventRow]) -> Result<(), StoreError> {
    insert_rows(
        store,
        rows.iter().map(ToInsert::Row),
        &log_insert_prefix(store),
    )
    .await
}

/// Inserts the rows ClickHouse does not have yet (by seq): what a writer does whose
/// predecessor, or whose own earlier attempt, may have landed part of them. Asking stops any
/// insert of logged records still running first (see [`landed_seqs`]).
pub async fn insert_events_checked(store: &Store, rows: &[&EventRow]) -> Result<(), StoreError> {
    let rows = rows.iter().map(|&r| ToInsert::Row(r));
    if store.cluster().is_some() {
        // A cluster's inserts ask each shard what landed themselves.
        return insert_rows(store, rows, &log_insert_prefix(store)).await;
    }
    let (Some(first), Some(last)) = (
        rows.clone().map(ToInsert::seq).min(),
        rows.clone().map(ToInsert::seq).max(),
    ) else {
        return Ok(());
    };
    let landed = landed_seqs(store, first, last).await?;
    let missing = rows.filter(|r| !landed.contains(&r.seq()));
    insert_rows(store, missing, &log_insert_prefix(store)).await
}

/// Inserts a ledger import's rows into `events`: the same way, but with query ids that
/// recovery of the log leaves alone.
pub async fn insert_imported(store: &Store, rows: &[EventRow]) -> Result<(), StoreError> {
    let prefix = format!("vscc_import_{}_", store.database());
    insert_rows(store, rows.iter().map(ToInsert::Row), &prefix).await
}

/// How much RowBinary is handed to the HTTP body at a time: ClickHouse parses while the rest
/// is still being copied.
const INSERT_CHUNK_BYTES: usize = 1 << 20;

async fn insert_rows<'a>(
    store: &Store,
    rows: impl Iterator<Item = ToInsert<'a>>,
    query_id_prefix: &str,
) -> Result<(), StoreError> {
    let rows = in_table_order(rows.collect(), ToInsert::key);
    if rows.is_empty() {
        return Ok(());
    }
    let _gate = store.insert_gate().read().await;
    if let Some(cluster) = store.cluster() {
        // Each shard's rows to its replicas, with the quorum, after asking what landed: on a
        // cluster every insert is checked, since a quorum insert that failed may have landed
        // on one replica. (A cluster's writer keeps the rows; should an encoding come here
        // all the same, it is decoded.)
        let owned: Vec<std::borrow::Cow<EventRow>> = rows
            .iter()
            .filter_map(|r| match *r {
                ToInsert::Row(r) => Some(std::borrow::Cow::Borrowed(r)),
                ToInsert::Encoded(bytes) => {
                    rowbinary::decode_event(bytes).map(std::borrow::Cow::Owned)
                }
            })
            .collect();
        let rows: Vec<&EventRow> = owned.iter().map(|r| r.as_ref()).collect();
        return cluster.insert_events(&rows, query_id_prefix).await;
    }
    let query_id = format!("{query_id_prefix}{}", uuid::Uuid::new_v4().simple());
    let mut insert = store
        .bulk_client()
        .with_setting("query_id", query_id)
        .insert_formatted_with(rowbinary::events_insert("events"));
    // A row ends a chunk once it holds the chunk's size: room for one more large row.
    let fresh_chunk = || Vec::with_capacity(INSERT_CHUNK_BYTES + (64 << 10));
    let mut chunk = fresh_chunk();
    for row in rows {
        match row {
            ToInsert::Encoded(bytes) => chunk.extend_from_slice(bytes),
            ToInsert::Row(row) => rowbinary::encode_event(row, &mut chunk),
        }
        if chunk.len() >= INSERT_CHUNK_BYTES {
            insert
                .send(std::mem::replace(&mut chunk, fresh_chunk()).into())
                .await?;
        }
    }
    if !chunk.is_empty() {
        insert.send(chunk.into()).await?;
    }
    insert.end().await?;
    Ok(())
}

/// Every insert of logged records into `events` carries a query id with this prefix, so that
/// vscc can settle an insert left in flight (by a killed predecessor, or one that failed)
/// before it asks ClickHouse which records landed: a cut-off RowBinary stream can still land
/// a prefix of the rows after the question has been answered.
fn log_insert_prefix(store: &Store) -> String {
    format!("vscc_events_{}_", store.database())
}

/// Seqs of logged records in `first..=last` already in ClickHouse, asked once no insert of
/// logged records is still running (`KILL QUERY … SYNC` stops or waits them out), so that the
/// answer stays true.
pub async fn landed_seqs(store: &Store, first: u64, last: u64) -> Result<HashSet<u64>, StoreError> {
    if let Some(cluster) = store.cluster() {
        return cluster.landed(first, last, &log_insert_prefix(store)).await;
    }
    store
        .server_client()
        .query("KILL QUERY WHERE startsWith(query_id, ?) SYNC")
        .bind(log_insert_prefix(store))
        .execute()
        .await?;
    Ok(store
        .client()
        .query("SELECT seq FROM events WHERE seq >= ? AND seq <= ?")
        .bind(first)
        .bind(last)
        .with_setting("wait_end_of_query", "1")
        .fetch_all::<u64>()
        .await?
        .into_iter()
        .collect())
}

/// The rows in the order of the `events` sorting key: kind, org, at, seq. ClickHouse checks
/// whether an inserted block is already in key order and then skips sorting it. Measured on
/// 18.16 with 2 M rows: 4.2 s to insert them unsorted, 0.7 s sorted.
///
/// Kinds and orgs are ranked once per batch (a batch holds a few dozen kinds and at most every
/// org), so that the sort compares integers: (kind rank, org rank, at) packed in a u64, then
/// the seq. Comparing the strings through the row pointers made this sort a sixth of the
/// server's ingest CPU. Each row's key is read once (for a logged row, from its bytes).
pub fn in_table_order<'a, T: Copy>(rows: Vec<T>, key: impl Fn(T) -> KeyOf<'a>) -> Vec<T> {
    let keys: Vec<KeyOf> = rows.iter().map(|&r| key(r)).collect();
    let kinds = Ranks::of(keys.iter().map(|k| k.kind));
    let orgs = Ranks::of(keys.iter().map(|k| k.org));
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    if kinds.len() > 1 << 16 || orgs.len() > 1 << 16 {
        // Not from a validated org tree: compare the strings.
        order.sort_unstable_by_key(|&i| {
            let k = &keys[i as usize];
            (k.kind, k.org, k.at, k.seq)
        });
    } else {
        let packed = |i: usize| kinds.rank(i) << 48 | orgs.rank(i) << 32 | u64::from(keys[i].at);
        let mut keyed: Vec<(u64, u64, u32)> = order
            .iter()
            .map(|&i| (packed(i as usize), keys[i as usize].seq, i))
            .collect();
        keyed.sort_unstable();
        order = keyed.into_iter().map(|(_, _, i)| i).collect();
    }
    order.into_iter().map(|i| rows[i as usize]).collect()
}

/// Each name's rank among the distinct names, by position: one hash lookup per name.
struct Ranks {
    /// Per position, the index of its name in first-seen order.
    seen_as: Vec<u32>,
    /// Per first-seen index, the rank in sorted order.
    rank: Vec<u64>,
}

impl Ranks {
    fn of<'a>(names: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut index: FxHashMap<&[u8], u32> = FxHashMap::default();
        let mut distinct: Vec<&[u8]> = Vec::new();
        let seen_as = names
            .map(|name| {
                *index.entry(name).or_insert_with(|| {
                    distinct.push(name);
                    distinct.len() as u32 - 1
                })
            })
            .collect();
        let mut by_name: Vec<u32> = (0..distinct.len() as u32).collect();
        by_name.sort_unstable_by_key(|&i| distinct[i as usize]);
        let mut rank = vec![0; distinct.len()];
        for (r, i) in by_name.into_iter().enumerate() {
            rank[i as usize] = r as u64;
        }
        Ranks { seen_as, rank }
    }

    fn len(&self) -> usize {
        self.rank.len()
    }

    fn rank(&self, position: usize) -> u64 {
        self.rank[self.seen_as[position] as usize]
    }
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
    last_error_log: Option<Instant>,
    /// An insert failed: it, and any insert in flight beside it, may still have landed (the
    /// answer lost, or ClickHouse stopping after the commit). Batches starting at or below this
    /// seq are inserted one at a time, after asking which of their rows are there.
    uncertain_through: Option<u64>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    health: Arc<WriterHealth>,
    last_start: Instant,
    /// Shutting down: whatever is pending is due now.
    draining: bool,
}

impl Writer {
    pub fn new(
        store: Store,
        dir: PathBuf,
        counters: Arc<LogCounters>,
        settings: WriterSettings,
        checkpoint: u64,
        health: Arc<WriterHealth>,
    ) -> (Self, watch::Receiver<u64>) {
        let (checkpoint_tx, rx) = watch::channel(checkpoint);
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
            last_error_log: None,
            uncertain_through: None,
            retry_at: None,
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX),
            health,
            last_start: Instant::now(),
            draining: false,
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
        self.backoff.reset();
        if self.health.blocked().is_some() {
            tracing::info!("inserting into ClickHouse works again");
            self.health.set(None);
        }
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
        let hint = e.retry_hint();
        let (retryable, not) = &self.health.failures;
        match hint {
            RetryHint::Retry => retryable.fetch_add(1, Ordering::Relaxed),
            RetryHint::Fail => not.fetch_add(1, Ordering::Relaxed),
        };
        let log_now = self
            .last_error_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(30));
        let wait = match hint {
            RetryHint::Retry => {
                if log_now {
                    tracing::warn!(error = %e, pending = self.pending_rows, "inserting into ClickHouse failed; records stay in the log and will be retried");
                }
                self.backoff.next_wait()
            }
            RetryHint::Fail => {
                if log_now {
                    tracing::error!(error = %e, pending = self.pending_rows, retry_in = ?self.settings.blocked_retry,
                        "inserting into ClickHouse failed, and trying again will not help until the store is fixed; records stay in the log");
                }
                self.health.set(Some(e.to_string()));
                self.settings.blocked_retry
            }
        };
        if log_now {
            self.last_error_log = Some(Instant::now());
        }
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

#[cfg(test)]
mod order_tests {
    use super::in_table_order;
    use crate::domain::record::{EventRow, Kind};

    #[test]
    fn rows_come_out_in_the_order_of_the_table_key() {
        // Org codes of three lengths (a prefix sorts before its extensions), kinds sharing
        // prefixes, equal (kind, org, at) told apart by seq.
        let orgs = [
            "440303001002",
            "440303",
            "440303001",
            "440304",
            "440303001001",
        ];
        let kinds = [
            Kind::APPEAL_RECEIVED,
            Kind::APPEAL_ACCEPTED,
            Kind::STAFF_HIRED,
        ];
        let mut rows = Vec::new();
        for seq in 0..60u64 {
            let mut row = EventRow::blank(
                format!("r{seq}"),
                kinds[(seq * 7 % 3) as usize],
                orgs[(seq * 11 % 5) as usize].to_string(),
                "440303".into(),
                1_600_000_000 + (seq % 4) as u32,
                0,
                "test",
            );
            row.seq = 1_000 - seq;
            rows.push(row);
        }
        let mut expected: Vec<&EventRow> = rows.iter().collect();
        expected.sort_by(|a, b| {
            (&*a.kind, a.org.as_str(), a.at, a.seq).cmp(&(&*b.kind, b.org.as_str(), b.at, b.seq))
        });
        let expected: Vec<u64> = expected.iter().map(|r| r.seq).collect();
        // As the writer hands them over (in seq order), and in any other order.
        for given in [rows.iter().rev().collect::<Vec<_>>(), rows.iter().collect()] {
            let sorted: Vec<u64> = in_table_order(given, super::key_of_row)
                .iter()
                .map(|r| r.seq)
                .collect();
            assert_eq!(sorted, expected);
        }
    }
}
