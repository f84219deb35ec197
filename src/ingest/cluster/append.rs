//! The appending side, used by request handlers: one request's records are one message (or
//! several in order), published with a `Nats-Msg-Id`; the answer waits for this instance's
//! reader to reach the message, so the records are in its live figures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::watch;

use super::{lock, INSTANCE_HEADER};
use crate::domain::record::EventRow;
use crate::ingest::log::{AppendOutcome, LogCounters, LogError};
use crate::ingest::spool;

/// The appending side, used by request handlers.
pub struct Broker {
    pub(super) js: jetstream::Context,
    pub(super) subject: String,
    pub(super) instance: String,
    pub(super) counters: Arc<LogCounters>,
    /// The last stream sequence this instance's reader has taken in.
    pub(super) read: watch::Receiver<u64>,
    /// The highest sequence the stream acknowledged to this instance's publishes.
    pub(super) acked: watch::Sender<u64>,
    /// The stream's last sequence when this instance started: until the reader is there, its
    /// figures are behind the others' and it is not ready.
    pub(super) caught_up_at: u64,
    pub(super) verdicts: Arc<Mutex<HashMap<u64, Vec<AppendOutcome>>>>,
    pub(super) max_bytes: u64,
    /// Bytes of records in one message at most: the server's largest message, less room for
    /// headers.
    pub(super) max_message: usize,
    /// What each instance says it serves (its screens), kept a few seconds past its last word.
    pub(super) shared: super::shared::SharedBoard,
}

impl Broker {
    pub fn counters(&self) -> &Arc<LogCounters> {
        &self.counters
    }

    /// Tells the other instances what this one serves (a JSON document of the caller's).
    pub async fn share(&self, document: &[u8]) -> anyhow::Result<()> {
        self.shared.put(document).await
    }

    /// What every live instance last shared, by instance.
    pub async fn shared(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        self.shared.all().await
    }

    /// Whether the reader has reached what the stream held when this instance started.
    pub fn caught_up(&self) -> bool {
        *self.read.borrow() >= self.caught_up_at
    }

    /// Publishes the records (one message, or several in order where they exceed the
    /// server's largest message) and answers, once this instance's reader has taken them in,
    /// which of them were new.
    pub async fn append(&self, rows: Vec<EventRow>) -> Result<Vec<AppendOutcome>, LogError> {
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut payload = Vec::new();
        let mut count = 0;
        for row in &rows {
            let before = payload.len();
            spool::encode_frame(row, &mut payload);
            if payload.len() > self.max_message && count > 0 {
                tracing::debug!(
                    bytes = before,
                    "a message of the record stream is full; the rest go in the next"
                );
                let next = payload.split_off(before);
                outcomes.extend(self.publish(std::mem::replace(&mut payload, next)).await?);
                count = 0;
            }
            count += 1;
        }
        if count > 0 {
            outcomes.extend(self.publish(payload).await?);
        }
        Ok(outcomes)
    }

    /// Publishes one message of records; its verdicts once this instance has read it.
    async fn publish(&self, payload: Vec<u8>) -> Result<Vec<AppendOutcome>, LogError> {
        let payload = bytes::Bytes::from(payload);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            uuid::Uuid::new_v4().simple().to_string().as_str(),
        );
        headers.insert(INSTANCE_HEADER, self.instance.as_str());
        let deadline = Instant::now() + Duration::from_secs(10);
        let ack = loop {
            let attempt = async {
                self.js
                    .publish_with_headers(self.subject.clone(), headers.clone(), payload.clone())
                    .await?
                    .await
            };
            let error = match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(ack)) => break ack,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no acknowledgement within 3 s".to_string(),
            };
            if error.contains("maximum bytes") || error.contains("10054") {
                return Err(LogError::Full {
                    used: self.max_bytes,
                    limit: self.max_bytes,
                });
            }
            if Instant::now() > deadline {
                return Err(LogError::Unavailable(format!(
                    "the record stream did not acknowledge: {error}"
                )));
            }
            tracing::warn!(
                error,
                "publishing to the record stream; trying again with the same id"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        self.acked.send_if_modified(|a| {
            let higher = ack.sequence > *a;
            *a = (*a).max(ack.sequence);
            higher
        });
        let mut read = self.read.clone();
        let reached = tokio::time::timeout(
            Duration::from_secs(10),
            read.wait_for(|r| *r >= ack.sequence),
        )
        .await;
        if !matches!(reached, Ok(Ok(_))) {
            return Err(LogError::Unavailable(
                "the records are in the stream but not yet read back here; sending them again is safe (ids already taken are duplicates)".into(),
            ));
        }
        let outcomes = lock(&self.verdicts).remove(&ack.sequence);
        outcomes.ok_or_else(|| {
            LogError::Unavailable(
                "the stream took the records before this instance started reading; sending them again is safe".into(),
            )
        })
    }
}

impl Broker {
    /// Every `every`, for good: shares the document `mine` writes, then hands `theirs` what
    /// every other live instance last shared. A failed round is logged and the next one tries
    /// again (what was shared stays readable until it expires).
    pub async fn exchange_every(
        &self,
        every: Duration,
        mine: impl Fn() -> serde_json::Result<Vec<u8>>,
        theirs: impl Fn(Vec<(String, Vec<u8>)>),
    ) {
        loop {
            match mine() {
                Ok(document) => {
                    if let Err(e) = self.share(&document).await {
                        tracing::warn!(error = %e, "could not share this instance's document");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not write this instance's document"),
            }
            match self.shared().await {
                Ok(all) => theirs(
                    all.into_iter()
                        .filter(|(instance, _)| *instance != self.instance)
                        .collect(),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the other instances' documents")
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}
