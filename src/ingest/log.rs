//! The durable log: the one seam between accepting a record and everything downstream.
//!
//! `append` returns only after the records are on disk (fdatasync), so an acknowledged record
//! survives a crash. One appender thread owns the files, the next seq and the set of ids seen,
//! so deduplication and ordering need no further locking; it commits whatever requests queued
//! up while the previous fsync ran in one write + one fsync (group commit). Committed records
//! go to the subscribers (live aggregates, the ClickHouse writer) in seq order.
//!
//! On several instances behind a balancer a broker (NATS JetStream, Kafka) takes this type's
//! place: `append` publishes and waits for the broker's ack, and every instance's subscribers
//! consume the broker's stream. Nothing downstream knows about files or frames.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::spool;
use crate::domain::record::EventRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Accepted { seq: u64 },
    Duplicate,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error(
        "the local spool is full ({used} of {limit} bytes not yet in ClickHouse); retry later"
    )]
    Full { used: u64, limit: u64 },
    /// Ours to fix (a full or failing disk), not the client's to retry.
    #[error("the durable log could not write: {0}")]
    Io(Arc<std::io::Error>),
    #[error("the durable log is shut down")]
    Closed,
    /// The record stream (broker) cannot take records now; retrying later is safe.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    /// Appends are refused (503) while more than this many bytes of records are logged but not
    /// yet in ClickHouse.
    pub max_spool_bytes: u64,
}

/// A committed batch, in seq order.
pub type Committed = Arc<spool::LogBatch>;

struct AppendRequest {
    rows: Vec<EventRow>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, LogError>>,
}

/// What the appender thread is asked.
enum Request {
    Append(AppendRequest),
    /// A copy of the ids seen, between commits (a checkpoint's: every id in it is durable).
    CopyIds(oneshot::Sender<IdSet>),
}

/// Shared counters the writer and `/metrics` read.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Highest seq on disk.
    pub committed_seq: AtomicU64,
    /// Bytes held in segment files (disk use).
    pub spool_bytes: AtomicU64,
    /// Highest seq the writer has put in ClickHouse.
    pub checkpoint_seq: AtomicU64,
    /// Bytes of records logged but not yet in ClickHouse: what the spool bound limits.
    pub pending_bytes: AtomicU64,
}

#[derive(Clone)]
pub struct DurableLog {
    tx: mpsc::Sender<Request>,
    counters: Arc<LogCounters>,
    dir: PathBuf,
}

/// Ids are remembered as 128-bit hashes: 16 bytes each, and a collision is as unlikely as
/// 2^-64 per pair. Only kept in memory (rebuilt from ClickHouse at start-up), so the hash
/// function may change between versions.
pub fn id_hash(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// What exactly-once remembers of a row: its id's hash for a first version, so that a record
/// re-sent is a duplicate; for a correction's or a withdrawal's rows, the id with the version
/// and whether the row cancels it. Two corrections (or a correction and a withdrawal) of the
/// same version then collide: the first logged wins, the other is a duplicate, on every
/// instance alike. A row read back as a cancelled version (sign 0) keeps its sign-1 key.
pub fn row_key(row: &EventRow) -> u128 {
    if row.version == 1 && row.sign >= 0 {
        return id_hash(&row.id);
    }
    let mut key = Vec::with_capacity(row.id.len() + 6);
    key.extend_from_slice(row.id.as_bytes());
    key.push(0);
    key.extend_from_slice(&row.version.to_le_bytes());
    key.push(if row.sign < 0 { b'-' } else { b'+' });
    xxhash_rust::xxh3::xxh3_128(&key)
}

/// A correction is two rows, the cancelling one first: its new version may be logged only
/// right after it. When the cancelling row was a duplicate (the version was corrected or
/// withdrawn meanwhile), the new version is one too; the same rule on every instance.
#[derive(Debug, Default)]
pub struct Partner {
    /// The id and version of the cancelling row just logged.
    cancelled: Option<(String, u32)>,
}

impl Partner {
    /// Whether `row` (its key `key`, see [`row_key`]) is new and may be logged; remembers its
    /// key when it is. Called for each row of a request (or a stream message) in order.
    pub fn admit(&mut self, seen: &mut IdSet, row: &EventRow, key: u128) -> bool {
        if row.version == 1 && row.sign > 0 {
            // The common case, one lookup: a first version.
            self.cancelled = None;
            return seen.insert(key);
        }
        self.admits(row, !seen.contains(key)) && seen.insert(key)
    }

    fn admits(&mut self, row: &EventRow, key_is_new: bool) -> bool {
        let admitted = if row.sign > 0 && row.version > 1 {
            key_is_new
                && self
                    .cancelled
                    .as_ref()
                    .is_some_and(|(id, v)| *id == row.id && v + 1 == row.version)
        } else {
            key_is_new
        };
        self.cancelled = (admitted && row.is_cancelling()).then(|| (row.id.clone(), row.version));
        admitted
    }
}

pub use super::idset::IdSet;

/// What recovery found on disk.
pub struct Recovered {
    /// Records after the checkpoint, which may or may not have reached ClickHouse.
    pub pending: Vec<EventRow>,
    pub checkpoint: u64,
    pub max_seq: u64,
}

/// Scans the spool folder, cuts off a torn tail, and returns what is not yet checkpointed.
pub fn recover(dir: &Path) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let checkpoint = spool::read_checkpoint(dir);
    let segments = spool::list_segments(dir)?;
    let mut pending = Vec::new();
    let mut max_seq = checkpoint;
    let last = segments.len().saturating_sub(1);
    for (i, (_, path)) in segments.iter().enumerate() {
        let (rows, good_len) = spool::read_segment(path)?;
        let file_len = std::fs::metadata(path)?.len();
        if good_len < file_len {
            if i == last {
                tracing::warn!(path = %path.display(), torn = file_len - good_len, "cutting a torn tail off the log");
                spool::open_for_append(path, good_len)?.sync_all()?;
            } else {
                tracing::error!(path = %path.display(), "a sealed log segment is corrupt after byte {good_len}");
            }
        }
        for r in rows {
            max_seq = max_seq.max(r.seq);
            if r.seq > checkpoint {
                pending.push(r);
            }
        }
    }
    Ok(Recovered {
        pending,
        checkpoint,
        max_seq,
    })
}

impl DurableLog {
    /// Starts the appender. `next_seq` must exceed every seq ever used; `seen` holds the id
    /// hashes of every record already accepted.
    pub fn start(
        settings: LogSettings,
        next_seq: u64,
        seen: IdSet,
        subscribers: Vec<mpsc::UnboundedSender<Committed>>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&settings.dir)?;
        let segments = spool::list_segments(&settings.dir)?;
        let spool_bytes: u64 = segments
            .iter()
            .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let (first, path) = match segments.last() {
            Some((first, path)) => (*first, path.clone()),
            None => (next_seq, spool::segment_path(&settings.dir, next_seq)),
        };
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let file = spool::open_for_append(&path, len)?;
        let counters = Arc::new(LogCounters::default());
        counters
            .committed_seq
            .store(next_seq.saturating_sub(1), Ordering::SeqCst);
        counters.spool_bytes.store(spool_bytes, Ordering::SeqCst);
        counters
            .checkpoint_seq
            .store(next_seq.saturating_sub(1), Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(1024);
        let appender = Appender {
            settings: settings.clone(),
            file,
            file_len: len,
            segment_first: first,
            next_seq,
            seen,
            subscribers,
            counters: counters.clone(),
            commits: VecDeque::new(),
            appended: 0,
            consumed: 0,
            frames_capacity: 0,
        };
        std::thread::Builder::new()
            .name("vscc-log-appender".into())
            .spawn(move || appender.run(rx))?;
        Ok(DurableLog {
            tx,
            counters,
            dir: settings.dir,
        })
    }

    /// Appends rows (their `seq` is assigned here); returns once they are durable.
    pub async fn append(&self, rows: Vec<EventRow>) -> Result<Vec<AppendOutcome>, LogError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Append(AppendRequest { rows, reply }))
            .await
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// A copy of the ids of every record accepted so far (for a checkpoint).
    pub async fn copy_ids(&self) -> Result<IdSet, LogError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::CopyIds(reply))
            .await
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)
    }

    pub fn counters(&self) -> &Arc<LogCounters> {
        &self.counters
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// How many ids ahead the appender asks for the id set's slots: enough to cover a memory
/// access while the rows in between are framed.
const PREFETCH_AHEAD: usize = 8;

struct Appender {
    settings: LogSettings,
    file: File,
    file_len: u64,
    segment_first: u64,
    next_seq: u64,
    seen: IdSet,
    subscribers: Vec<mpsc::UnboundedSender<Committed>>,
    counters: Arc<LogCounters>,
    /// (last seq, bytes appended up to and including it) per commit not yet in ClickHouse.
    commits: VecDeque<(u64, u64)>,
    appended: u64,
    consumed: u64,
    /// The size of the last commit's frames: the next commit's buffer starts that large
    /// (capped), since growing one from empty, commit after commit, paged each size in anew.
    frames_capacity: usize,
}

impl Appender {
    /// Bytes logged but not yet in ClickHouse.
    fn pending_bytes(&mut self) -> u64 {
        let checkpoint = self.counters.checkpoint_seq.load(Ordering::SeqCst);
        while let Some(&(last, cumulative)) = self.commits.front() {
            if last > checkpoint {
                break;
            }
            self.consumed = cumulative;
            self.commits.pop_front();
        }
        self.appended - self.consumed
    }

    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let (mut requests, mut copies) = (Vec::new(), Vec::new());
            let mut next = Some(first);
            while let Some(request) = next {
                match request {
                    Request::Append(r) => requests.push(r),
                    Request::CopyIds(reply) => copies.push(reply),
                }
                next = if requests.len() < 512 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !requests.is_empty() {
                self.commit(requests);
            }
            for reply in copies {
                let _ = reply.send(self.seen.clone());
            }
        }
    }

    fn commit(&mut self, requests: Vec<AppendRequest>) {
        let used = self.pending_bytes();
        let limit = self.settings.max_spool_bytes;
        let mut buf = Vec::with_capacity(self.frames_capacity);
        let records: usize = requests.iter().map(|r| r.rows.len()).sum();
        // Ids of this commit go straight into `seen` (one hash lookup per record, not two)
        // and come out again if the write fails.
        let mut batch_ids: Vec<u128> = Vec::with_capacity(records);
        let mut committed = Vec::with_capacity(records);
        let mut encoded = Vec::with_capacity(records);
        let mut replies = Vec::with_capacity(requests.len());
        let start_seq = self.next_seq;
        // The ids' hashes first, so that the set can fetch the slots of the ids coming next
        // while it looks up this one.
        let hashes: Vec<u128> = requests
            .iter()
            .flat_map(|r| r.rows.iter().map(row_key))
            .collect();
        self.seen.reserve(hashes.len());
        let mut first = 0;
        for req in requests {
            let request_first = first;
            first += req.rows.len();
            if used + buf.len() as u64 > limit {
                let _ = req.reply.send(Err(LogError::Full { used, limit }));
                continue;
            }
            let mut outcomes = Vec::with_capacity(req.rows.len());
            let mut partner = Partner::default();
            for (i, mut row) in (request_first..).zip(req.rows) {
                let h = hashes[i];
                if let Some(&ahead) = hashes.get(i + PREFETCH_AHEAD) {
                    self.seen.prefetch(ahead);
                }
                if !partner.admit(&mut self.seen, &row, h) {
                    outcomes.push(AppendOutcome::Duplicate);
                    continue;
                }
                batch_ids.push(h);
                row.seq = self.next_seq;
                self.next_seq += 1;
                encoded.push(spool::encode_frame(&row, &mut buf));
                outcomes.push(AppendOutcome::Accepted { seq: row.seq });
                committed.push(row);
            }
            replies.push((req.reply, outcomes));
        }
        if !buf.is_empty() {
            if let Err(e) = self.write_durably(&buf) {
                let e = Arc::new(e);
                tracing::error!(error = %e, "log append failed");
                self.next_seq = start_seq;
                for h in &batch_ids {
                    self.seen.remove(*h);
                }
                let _ = self.file.set_len(self.file_len);
                for (reply, _) in replies {
                    let _ = reply.send(Err(LogError::Io(e.clone())));
                }
                return;
            }
            self.counters
                .committed_seq
                .store(self.next_seq - 1, Ordering::SeqCst);
            self.counters
                .spool_bytes
                .fetch_add(buf.len() as u64, Ordering::SeqCst);
            self.appended += buf.len() as u64;
            self.commits.push_back((self.next_seq - 1, self.appended));
            self.counters
                .pending_bytes
                .store(self.appended - self.consumed, Ordering::Relaxed);
            // The frames go on with the rows: the writer sends their RowBinary to ClickHouse.
            self.frames_capacity = buf.len().min(64 << 20);
            let committed = Arc::new(spool::LogBatch::with_frames(
                committed,
                spool::Frames::new(buf, encoded),
            ));
            for s in &self.subscribers {
                let _ = s.send(committed.clone());
            }
        }
        for (reply, outcomes) in replies {
            let _ = reply.send(Ok(outcomes));
        }
    }

    fn write_durably(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.file_len > 0 && self.file_len + buf.len() as u64 > self.settings.segment_bytes {
            let path = spool::segment_path(&self.settings.dir, self.next_seq_of_buffer());
            self.file = spool::open_for_append(&path, 0)?;
            self.file_len = 0;
            self.segment_first = self.next_seq_of_buffer();
            File::open(&self.settings.dir)?.sync_all()?;
        }
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.file_len += buf.len() as u64;
        Ok(())
    }

    /// The first seq of the buffer being written: the committed seq + 1.
    fn next_seq_of_buffer(&self) -> u64 {
        self.counters.committed_seq.load(Ordering::SeqCst) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::Kind;
    use crate::domain::revision::{correction_rows, withdrawal_row, History};

    /// Which rows of one request the appender would log.
    fn log(seen: &mut IdSet, rows: &[EventRow]) -> Vec<bool> {
        let mut partner = Partner::default();
        rows.iter()
            .map(|row| partner.admit(seen, row, row_key(row)))
            .collect()
    }

    #[test]
    fn of_two_changes_to_one_version_only_the_first_lands_whole() {
        let mut first = EventRow::blank(
            "hc-1".into(),
            Kind::STAFF_HEADCOUNT,
            "440304001".into(),
            "440304".into(),
            1_780_000_000,
            1_780_000_000,
            "api",
        );
        first.seq = 1;
        first.set_number("headcount", 120);
        let mut seen = IdSet::default();
        assert_eq!(log(&mut seen, &[first.clone()]), [true]);
        assert_eq!(
            log(&mut seen, &[first.clone()]),
            [false],
            "a re-sent record"
        );

        let history = History::of(vec![first.clone()]).expect("a record");
        let mut fixed = first.clone();
        fixed.set_number("headcount", 12);
        let correction = correction_rows(&history, fixed.clone(), "a", "typo");
        let withdrawal = withdrawal_row(&history, "b", "duplicate", 1_780_000_100);
        let mut other = fixed;
        other.set_number("headcount", 13);
        let racing = correction_rows(&history, other, "c", "typo");

        // The withdrawal was logged first: the correction of the same version is refused
        // whole — its new version too, though no row had its key.
        assert_eq!(
            log(&mut seen.clone(), std::slice::from_ref(&withdrawal)),
            [true]
        );
        let mut after_withdrawal = seen.clone();
        log(&mut after_withdrawal, &[withdrawal]);
        assert_eq!(log(&mut after_withdrawal, &correction), [false, false]);

        // Two corrections of version 1: the first lands, the second not at all.
        assert_eq!(log(&mut seen, &correction), [true, true]);
        assert_eq!(log(&mut seen, &racing), [false, false]);
        // A new version sent without its cancelling row is refused.
        let mut orphan = correction[1].clone();
        orphan.version = 3;
        assert_eq!(log(&mut seen, &[orphan]), [false]);
    }
}
