//! The lease holder's inserts into ClickHouse, through the one insert path and retry policy of
//! `store::insert` (the local log's writer uses the same): a blocked insert shows in `/readyz`
//! and `/metrics` whichever path is blocked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, stream};
use tokio::sync::watch;

use super::lease::Leadership;
use super::{lock, record_seq, Unlanded, CHECKPOINT_KEY};
use crate::domain::record::EventRow;
use crate::ingest::log::{Committed, LogCounters};
use crate::store::insert::{insert_events_checked, Attempts};
use crate::store::Store;

/// The lease holder's inserts: the records read, message ranges in order, each batch checked
/// against what already landed; then the checkpoint, then the purge.
pub(super) struct Writer {
    pub(super) base: u64,
    pub(super) store: Store,
    pub(super) state: kv::Store,
    pub(super) records: stream::Stream,
    pub(super) unlanded: Unlanded,
    pub(super) checkpoint: watch::Sender<u64>,
    pub(super) counters: Arc<LogCounters>,
    pub(super) batch_rows: usize,
    pub(super) holding: Leadership,
    /// The one retry policy of a writer (the local log's uses it too).
    pub(super) attempts: Attempts,
}

impl Writer {
    pub(super) async fn run(mut self) {
        loop {
            if !self.holding.wait_held().await {
                return;
            }
            let done = *self.checkpoint.borrow();
            let batch: Vec<(u64, Committed)> = {
                let unlanded = lock(&self.unlanded);
                let mut rows = 0;
                unlanded
                    .iter()
                    .filter(|(_, c)| c.last().is_some_and(|r| r.seq > done))
                    .take_while(|(_, c)| {
                        let take = rows < self.batch_rows;
                        rows += c.len();
                        take
                    })
                    .cloned()
                    .collect()
            };
            let Some(&(last_message, _)) = batch.last() else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let rows: Vec<&EventRow> = batch.iter().flat_map(|(_, c)| c.iter()).collect();
            if let Err(e) = insert_events_checked(&self.store, &rows).await {
                let wait = self.attempts.failed(&e, rows.len());
                tokio::time::sleep(wait).await;
                continue;
            }
            self.attempts.landed();
            let landed = record_seq(self.base, last_message + 1, 0) - 1;
            if let Err(e) = self
                .state
                .put(CHECKPOINT_KEY, last_message.to_string().into())
                .await
            {
                tracing::warn!(error = %e, "recording the checkpoint; the next batch records it");
            }
            self.counters
                .checkpoint_seq
                .fetch_max(landed, Ordering::SeqCst);
            self.checkpoint.send_replace(landed);
            lock(&self.unlanded).retain(|(m, _)| *m > last_message);
            if let Err(e) = self.records.purge().sequence(last_message + 1).await {
                tracing::warn!(error = %e, "purging the record stream below the checkpoint");
            }
            // Fill batches: wait a moment unless there is a full one waiting.
            if rows.len() < self.batch_rows {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
