//! Every instance reads the whole stream in order and decides, message by message, which
//! records are new (the first copy of an id wins), numbering them alike on every instance;
//! and follows the checkpoint the writer records, to stop keeping what landed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{consumer, kv, stream};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::{
    lock, read_u64, record_seq, Unlanded, ACKED_STALL, CHECKPOINT_KEY, INSTANCE_HEADER,
    PER_MESSAGE, STALL,
};
use crate::domain::record::EventRow;
use crate::ingest::log::{row_key, AppendOutcome, Committed, IdSet, LogCounters, Partner};
use crate::ingest::spool::{self, LogBatch};
use crate::store::{Store, LIVE_COLUMNS};

/// Reads the whole stream in order; decides each record's verdict and seq.
pub(super) struct Reader {
    pub(super) base: u64,
    /// The last stream sequence taken in.
    pub(super) last: u64,
    pub(super) seen: IdSet,
    pub(super) instance: String,
    pub(super) live: mpsc::UnboundedSender<Committed>,
    pub(super) read: watch::Sender<u64>,
    pub(super) verdicts: Arc<Mutex<HashMap<u64, Vec<AppendOutcome>>>>,
    pub(super) unlanded: Unlanded,
    pub(super) counters: Arc<LogCounters>,
    pub(super) store: Store,
    /// The highest sequence the stream acknowledged to this instance's publishes: when the
    /// reader has not reached it and nothing arrives, its consumer stalled (its server died).
    pub(super) acked: watch::Receiver<u64>,
}

impl Reader {
    pub(super) async fn run(mut self, mut records: stream::Stream) {
        loop {
            let from = self.last + 1;
            let consumer = tokio::time::timeout(
                Duration::from_secs(2),
                records.create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    },
                    ..Default::default()
                }),
            )
            .await
            .unwrap_or_else(|_| {
                Err(async_nats::jetstream::stream::ConsumerError::new(
                    async_nats::jetstream::stream::ConsumerErrorKind::TimedOut,
                ))
            });
            let mut messages = match consumer {
                Ok(c) => match c.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the record stream; again in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "subscribing to the record stream; again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                // A consumer whose NATS server died can stall without an error: when nothing
                // comes for a while although the stream holds more, it is made again.
                // Records this instance published are known to be there: waiting for them, a
                // second of silence is enough (asking the stream may itself time out while
                // NATS elects a new leader).
                let waited_for = *self.acked.borrow() > self.last;
                let patience = if waited_for { ACKED_STALL } else { STALL };
                let message = match tokio::time::timeout(patience, messages.next()).await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(_) => {
                        // Unanswered within a second: NATS is electing a leader, and this
                        // consumer's server may be the one that died.
                        let behind = *self.acked.borrow() > self.last
                            || tokio::time::timeout(Duration::from_secs(1), records.info())
                                .await
                                .ok()
                                .and_then(|i| i.ok())
                                .is_none_or(|i| i.state.last_sequence > self.last);
                        if behind {
                            tracing::warn!(
                                read = self.last,
                                "the record stream stalled; subscribing again"
                            );
                            break;
                        }
                        continue;
                    }
                };
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "the record stream broke off; subscribing again");
                        break;
                    }
                };
                let Ok(sequence) = message.info().map(|i| i.stream_sequence) else {
                    continue;
                };
                if sequence <= self.last {
                    continue;
                }
                if sequence > self.last + 1 {
                    // Purged below the checkpoint while this instance started: in ClickHouse.
                    if let Err(e) = self.fill_gap(self.last + 1, sequence - 1).await {
                        tracing::warn!(error = %e, "reading purged records back from ClickHouse; again in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
                let ours = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(INSTANCE_HEADER))
                    .is_some_and(|v| v.as_str() == self.instance);
                self.take(sequence, &message.payload, ours);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn take(&mut self, sequence: u64, payload: &[u8], ours: bool) {
        let rows = spool::decode_frames(payload).unwrap_or_else(|| {
            tracing::error!(
                sequence,
                "a message of the record stream does not decode; skipped"
            );
            Vec::new()
        });
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut committed = Vec::with_capacity(rows.len());
        let mut partner = Partner::default();
        for (i, mut row) in rows.into_iter().enumerate() {
            let is_new =
                i < PER_MESSAGE as usize && partner.admit(&mut self.seen, &row, row_key(&row));
            if !is_new {
                outcomes.push(AppendOutcome::Duplicate);
                continue;
            }
            row.seq = record_seq(self.base, sequence, i);
            outcomes.push(AppendOutcome::Accepted { seq: row.seq });
            committed.push(row);
        }
        if ours {
            let mut verdicts = lock(&self.verdicts);
            // Answers nobody waited for (a publisher that gave up) do not pile up.
            verdicts.retain(|s, _| s + 10_000 > sequence);
            verdicts.insert(sequence, outcomes);
        }
        if let Some(last) = committed.last() {
            self.counters
                .committed_seq
                .store(last.seq, Ordering::SeqCst);
            let committed = Arc::new(LogBatch::from_rows(committed));
            lock(&self.unlanded).push_back((sequence, committed.clone()));
            let _ = self.live.send(committed);
        }
        self.last = sequence;
        self.read.send_replace(sequence);
    }

    /// Messages `from..=to` left the stream (purged once in ClickHouse) before this instance
    /// read them: their records are read from ClickHouse instead.
    async fn fill_gap(&mut self, from: u64, to: u64) -> anyhow::Result<()> {
        let rows: Vec<EventRow> = self
            .store
            .client()
            .query(&format!(
                "SELECT {LIVE_COLUMNS} FROM events WHERE seq >= ? AND seq < ? ORDER BY seq"
            ))
            .bind(record_seq(self.base, from, 0))
            .bind(record_seq(self.base, to + 1, 0))
            .fetch_all()
            .await?;
        tracing::info!(
            from,
            to,
            records = rows.len(),
            "messages purged before they were read here: taken from ClickHouse"
        );
        for row in &rows {
            self.seen.insert(row_key(row));
        }
        if let Some(last) = rows.last() {
            self.counters
                .committed_seq
                .store(last.seq, Ordering::SeqCst);
            let _ = self.live.send(Arc::new(LogBatch::from_rows(rows)));
        }
        self.last = to;
        self.read.send_replace(to);
        Ok(())
    }
}

/// Follows the checkpoint the writer (whichever instance holds the lease) records: records at
/// or below it are in ClickHouse, so this instance stops keeping them.
pub(super) async fn follow_checkpoint(
    state: kv::Store,
    base: u64,
    unlanded: Unlanded,
    checkpoint: watch::Sender<u64>,
    counters: Arc<LogCounters>,
) {
    loop {
        if let Ok(Some(message)) = read_u64(&state, CHECKPOINT_KEY).await {
            let seq = record_seq(base, message + 1, 0) - 1;
            lock(&unlanded).retain(|(m, _)| *m > message);
            counters.checkpoint_seq.fetch_max(seq, Ordering::SeqCst);
            checkpoint.send_if_modified(|c| {
                let newer = seq > *c;
                if newer {
                    *c = seq;
                }
                newer
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::Kind;

    fn row(id: &str) -> EventRow {
        EventRow::blank(
            id.to_string(),
            Kind::TRAINING_CLASS_HELD,
            "440303001002".into(),
            "440303".into(),
            1_700_000_000,
            1_700_000_000,
            "test",
        )
    }

    fn message(ids: &[&str]) -> Vec<u8> {
        let mut payload = Vec::new();
        for id in ids {
            spool::encode_frame(&row(id), &mut payload);
        }
        payload
    }

    fn reader(live: mpsc::UnboundedSender<Committed>) -> (Reader, watch::Receiver<u64>) {
        let (read, read_rx) = watch::channel(0);
        let reader = Reader {
            base: 7,
            last: 0,
            seen: IdSet::default(),
            instance: "me".into(),
            live,
            read,
            verdicts: Arc::default(),
            unlanded: Arc::default(),
            counters: Arc::default(),
            // Never reached by `take`: the store is asked only for purged messages.
            store: Store::new("http://127.0.0.1:9", "default", "", "vscc").expect("valid"),
            acked: watch::channel(0).1,
        };
        (reader, read_rx)
    }

    #[test]
    fn the_first_copy_of_an_id_wins_and_every_instance_numbers_records_alike() {
        let (live_tx, mut live_rx) = mpsc::unbounded_channel();
        let (mut ours, read) = reader(live_tx);
        let (other_tx, _other_rx) = mpsc::unbounded_channel();
        let (mut theirs, _) = reader(other_tx);
        let messages = [
            (1, message(&["a", "b", "a"]), true),
            (2, message(&["b", "c"]), false),
            (3, message(&["d"]), true),
        ];
        for (sequence, payload, published_here) in &messages {
            ours.take(*sequence, payload, *published_here);
            theirs.take(*sequence, payload, !published_here);
        }
        assert_eq!(*read.borrow(), 3, "the reader says how far it got");

        let verdicts = lock(&ours.verdicts);
        assert_eq!(
            verdicts.get(&1),
            Some(&vec![
                AppendOutcome::Accepted {
                    seq: record_seq(7, 1, 0)
                },
                AppendOutcome::Accepted {
                    seq: record_seq(7, 1, 1)
                },
                AppendOutcome::Duplicate,
            ]),
            "a repeated id within one request is a duplicate"
        );
        assert!(
            !verdicts.contains_key(&2),
            "only this instance's publishes wait for verdicts"
        );
        assert_eq!(
            verdicts.get(&3),
            Some(&vec![AppendOutcome::Accepted {
                seq: record_seq(7, 3, 0)
            }])
        );
        let other = lock(&theirs.verdicts);
        assert_eq!(
            other.get(&2),
            Some(&vec![
                AppendOutcome::Duplicate,
                AppendOutcome::Accepted {
                    seq: record_seq(7, 2, 1)
                },
            ]),
            "an id first seen in an earlier message is a duplicate on every instance"
        );

        let mut live = Vec::new();
        while let Ok(batch) = live_rx.try_recv() {
            live.extend(batch.iter().map(|r| (r.id.clone(), r.seq)));
        }
        assert_eq!(
            live,
            vec![
                ("a".to_string(), record_seq(7, 1, 0)),
                ("b".to_string(), record_seq(7, 1, 1)),
                ("c".to_string(), record_seq(7, 2, 1)),
                ("d".to_string(), record_seq(7, 3, 0)),
            ],
            "the live figures get each record once, with the seq every instance gives it"
        );
        let kept: Vec<u64> = lock(&ours.unlanded).iter().map(|(m, _)| *m).collect();
        assert_eq!(
            kept,
            vec![1, 2, 3],
            "kept until the writer's checkpoint passes them"
        );
    }

    #[test]
    fn a_message_that_does_not_decode_is_skipped_without_stopping_the_reader() {
        let (live_tx, _live_rx) = mpsc::unbounded_channel();
        let (mut reader, read) = reader(live_tx);
        reader.take(1, b"not frames", true);
        reader.take(2, &message(&["x"]), true);
        assert_eq!(*read.borrow(), 2);
        assert_eq!(lock(&reader.verdicts).get(&1), Some(&vec![]));
        assert_eq!(
            lock(&reader.verdicts).get(&2),
            Some(&vec![AppendOutcome::Accepted {
                seq: record_seq(7, 2, 0)
            }])
        );
    }
}
