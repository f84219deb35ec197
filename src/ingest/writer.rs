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
use super::spool;
use crate::domain::record::EventRow;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub batch_rows: usize,
    pub flush_interval: Duration,
    pub max_pending_rows: usize,
}

/// Inserts rows into `events` in one INSERT (one block: ClickHouse makes it atomic).
pub async fn insert_events(store: &Store, rows: &[EventRow]) -> Result<(), StoreError> {
    let mut insert = store.client().insert::<EventRow>("events").await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    Ok(())
}

pub struct Writer {
    store: Store,
    dir: PathBuf,
    counters: Arc<LogCounters>,
    settings: WriterSettings,
    /// Next seq to insert; everything below is in ClickHouse.
    next: u64,
    pending: VecDeque<EventRow>,
    /// Records were dropped from memory: read them back from disk.
    behind: bool,
    /// The checkpoint, published for tests and /metrics.
    checkpoint_tx: watch::Sender<u64>,
    last_error_log: Option<Instant>,
}

impl Writer {
    pub fn new(
        store: Store,
        dir: PathBuf,
        counters: Arc<LogCounters>,
        settings: WriterSettings,
        checkpoint: u64,
    ) -> (Self, watch::Receiver<u64>) {
        let (checkpoint_tx, rx) = watch::channel(checkpoint);
        let writer = Writer {
            store,
            dir,
            counters,
            settings,
            next: checkpoint + 1,
            pending: VecDeque::new(),
            behind: true,
            checkpoint_tx,
            last_error_log: None,
        };
        (writer, rx)
    }

    fn take(&mut self, batch: &[EventRow]) {
        for row in batch {
            let expected = self.next + self.pending.len() as u64;
            if row.seq < expected {
                continue;
            }
            if self.behind || row.seq > expected || self.pending.len() >= self.settings.max_pending_rows {
                self.behind = true;
                return;
            }
            self.pending.push_back(row.clone());
        }
    }

    fn catch_up_from_disk(&mut self) {
        let committed = self.counters.committed_seq.load(Ordering::SeqCst);
        let from = self.next + self.pending.len() as u64;
        if committed < from {
            self.behind = false;
            return;
        }
        let room = self.settings.max_pending_rows.saturating_sub(self.pending.len()).max(1) as u64;
        let to = (committed + 1).min(from + room);
        match spool::read_range(&self.dir, from, to) {
            Ok(rows) => {
                let got = rows.len() as u64;
                self.pending.extend(rows);
                if to == committed + 1 && got == to - from {
                    self.behind = false;
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the log back failed"),
        }
    }

    /// Inserts up to one batch; true when something was written.
    async fn flush(&mut self) -> Result<bool, StoreError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let n = self.pending.len().min(self.settings.batch_rows);
        let rows: Vec<EventRow> = self.pending.iter().take(n).cloned().collect();
        insert_events(&self.store, &rows).await?;
        self.pending.drain(..n);
        let last = rows.last().map(|r| r.seq).unwrap_or(self.next - 1);
        self.next = last + 1;
        if let Err(e) = spool::write_checkpoint(&self.dir, last) {
            // The rows are in ClickHouse; a stale checkpoint only means a recheck at restart.
            tracing::warn!(error = %e, "could not write the checkpoint");
        }
        match spool::delete_consumed(&self.dir, last) {
            Ok(freed) => {
                self.counters.spool_bytes.fetch_sub(freed.min(self.counters.spool_bytes.load(Ordering::SeqCst)), Ordering::SeqCst);
            }
            Err(e) => tracing::warn!(error = %e, "could not delete consumed segments"),
        }
        self.counters.checkpoint_seq.store(last, Ordering::SeqCst);
        let _ = self.checkpoint_tx.send(last);
        Ok(true)
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Committed>) {
        let mut last_flush = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let wake = match retry_at {
                Some(t) => t,
                None if !self.pending.is_empty() || self.behind => last_flush + self.settings.flush_interval,
                None => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(b) => self.take(&b),
                    None => {
                        // Shutting down: one last attempt to land what is pending.
                        if self.behind { self.catch_up_from_disk(); }
                        let _ = self.flush().await;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            while let Ok(b) = rx.try_recv() {
                self.take(&b);
            }
            if retry_at.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            let full = self.pending.len() >= self.settings.batch_rows;
            let due = Instant::now() >= last_flush + self.settings.flush_interval;
            if !(full || due || retry_at.is_some()) {
                continue;
            }
            if self.behind && self.pending.len() < self.settings.batch_rows {
                self.catch_up_from_disk();
            }
            match self.flush().await {
                Ok(_) => {
                    last_flush = Instant::now();
                    retry_at = None;
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    if self.last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                        tracing::warn!(error = %e, retryable = e.is_retryable(), pending = self.pending.len(), "inserting into ClickHouse failed; records stay in the log and will be retried");
                        self.last_error_log = Some(Instant::now());
                    }
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Hold little in memory while ClickHouse is away: the log has it all.
                    if self.pending.len() > self.settings.batch_rows {
                        self.pending.truncate(self.settings.batch_rows);
                        self.behind = true;
                    }
                }
            }
        }
    }
}
