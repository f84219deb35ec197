//! The record stream on NATS JetStream (`[broker] url`): what lets several vscc instances
//! behind a balancer share one stream of records instead of each keeping its own log.
//!
//! - **Append**: one request's records are one message, published with a `Nats-Msg-Id` and
//!   acknowledged by the stream. A publish that times out may still have been stored, so it is
//!   retried with the same id: the stream drops the copy and its ack names the first.
//! - **Verdicts in stream order**: every instance reads the whole stream in order and decides,
//!   message by message, which records are new (the first copy of an id wins). A record's seq
//!   is derived from its message's stream sequence and its place in the message, so every
//!   instance numbers it alike. The publisher answers its client once its own reader has
//!   reached the message (so the records are in its live figures).
//! - **One writer**: the instance holding the lease (a key with a time to live in a JetStream
//!   key-value bucket) inserts what was read into ClickHouse, message ranges in order,
//!   checking first what already landed (a previous holder may have landed part); then it
//!   records the checkpoint (the last message wholly in ClickHouse) in the bucket and purges
//!   the stream below it. Every instance keeps the records not yet in ClickHouse (bounded by
//!   the stream's byte limit) so that any of them can take over.
//! - **Start-up**: the live state is rebuilt from ClickHouse up to the checkpoint, then the
//!   stream is read from the message after it. Messages purged meanwhile are in ClickHouse and
//!   are read from there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::log::{id_hash, AppendOutcome, Committed, IdSet, LogCounters, LogError};
use super::spool::{self, LogBatch};
use super::writer::WriterHealth;
use crate::store::insert::{insert_events_checked, Attempts};
use crate::domain::record::{EventRow, IMPORT_SEQ_BASE};
use crate::store::{Store, LIVE_COLUMNS};

/// `[broker]`.
#[derive(Debug, Clone, Deserialize)]
pub struct BrokerSettings {
    /// `nats://host:4222[,nats://host2:4222 …]` (any servers of one NATS cluster); empty: the
    /// local log (one instance).
    pub url: String,
    /// The JetStream stream of records; its key-value bucket is `<stream>_STATE`.
    pub stream: String,
    pub replicas: usize,
    /// Bytes of records the stream holds (those not yet in ClickHouse); publishing beyond is
    /// refused (503).
    pub max_bytes: i64,
    pub duplicate_window_secs: u64,
    /// The writer's lease lives this long without renewal (renewed every third of it).
    pub lease_secs: u64,
}

impl BrokerSettings {
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    fn subject(&self) -> String {
        format!("{}.records", self.stream.to_lowercase())
    }
}

/// Records in one message at most (a request holds at most `ingest.max_records`, 50,000).
const PER_MESSAGE: u64 = 1 << 16;
/// The header naming the instance that published a message (its reader keeps the verdicts).
const INSTANCE_HEADER: &str = "Vscc-Instance";
const CHECKPOINT_KEY: &str = "checkpoint";
const SEQ_BASE_KEY: &str = "seq_base";
const WRITER_KEY: &str = "writer";
/// What an instance shares is gone this long after its last word (it shares every few seconds).
const SHARED_TTL: Duration = Duration::from_secs(15);
/// How long the reader waits for a message before asking whether the stream holds more.
const STALL: Duration = Duration::from_secs(3);
/// … and for a message the stream acknowledged to this instance.
const ACKED_STALL: Duration = Duration::from_secs(1);
/// A new lease holder that has not yet learnt how far the stream reached when it took over.
const STREAM_END_UNKNOWN: u64 = u64::MAX;

/// The seq of the `index`th record of stream message `message`: the same on every instance.
/// `base` keeps them above every seq a local log gave before the stream existed.
fn record_seq(base: u64, message: u64, index: usize) -> u64 {
    (base + message) * PER_MESSAGE + index as u64
}

/// Messages the stream no longer holds but ClickHouse does, and records not yet landed.
type Unlanded = Arc<Mutex<VecDeque<(u64, Committed)>>>;

/// The appending side, used by request handlers.
pub struct Broker {
    js: jetstream::Context,
    subject: String,
    instance: String,
    counters: Arc<LogCounters>,
    /// The last stream sequence this instance's reader has taken in.
    read: watch::Receiver<u64>,
    /// The highest sequence the stream acknowledged to this instance's publishes.
    acked: watch::Sender<u64>,
    /// The stream's last sequence when this instance started: until the reader is there, its
    /// figures are behind the others' and it is not ready.
    caught_up_at: u64,
    verdicts: Arc<Mutex<HashMap<u64, Vec<AppendOutcome>>>>,
    max_bytes: u64,
    /// Bytes of records in one message at most: the server's largest message, less room for
    /// headers.
    max_message: usize,
    /// What each instance says it serves (its screens), kept a few seconds past its last word.
    shared: super::shared::SharedBoard,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`start`] hands back: the appending side, the writer's checkpoint (as a record seq:
/// every record at or below it is in ClickHouse), and the tasks.
pub struct Started {
    pub broker: Broker,
    /// Whether this instance holds the writer's lease.
    pub leader: super::leadership::Leadership,
    pub checkpoint: watch::Receiver<u64>,
    pub health: Arc<WriterHealth>,
    pub tasks: Vec<tokio::task::AbortHandle>,
}

/// Connects, makes the stream and the bucket if missing, rebuilds the live state from
/// ClickHouse up to the checkpoint (`rebuild` gets the bound and fills `seen`), and starts
/// the reader (feeding `live`), the lease and the writer.
pub async fn start(
    settings: &BrokerSettings,
    instance: &str,
    store: &Store,
    batch_rows: usize,
    blocked_retry: Duration,
    rebuild: impl AsyncFnOnce(u64, &mut IdSet) -> anyhow::Result<()>,
    live: mpsc::UnboundedSender<Committed>,
) -> anyhow::Result<Started> {
    // NATS may be starting beside this instance: wait for it a while, then say so.
    let servers = settings
        .url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "broker.url '{}': not a list of nats:// addresses",
                settings.url
            )
        })?;
    let connect = async_nats::ConnectOptions::new()
        .name(format!("vscc {instance}"))
        .retry_on_initial_connect()
        .connect(servers);
    let client = tokio::time::timeout(Duration::from_secs(30), connect)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the record stream at {} did not answer within 30 s",
                settings.url
            )
        })?
        .with_context(|| format!("connecting to the record stream at {}", settings.url))?;
    let max_message = client
        .server_info()
        .max_payload
        .saturating_sub(4096)
        .max(64 * 1024);
    let js = jetstream::new(client);
    let subject = settings.subject();
    // A NATS cluster starting beside this instance takes seconds to elect its JetStream
    // leader; until then requests time out.
    let records = patiently("the record stream", || {
        js.get_or_create_stream(stream::Config {
            name: settings.stream.clone(),
            subjects: vec![subject.clone()],
            max_bytes: settings.max_bytes,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas.max(1),
            duplicate_window: Duration::from_secs(settings.duplicate_window_secs.max(1)),
            ..Default::default()
        })
    })
    .await?;
    let replicas = settings.replicas.max(1);
    let state_name = format!("{}_STATE", settings.stream);
    let state = patiently("the stream's state bucket", || {
        bucket(&js, &state_name, None, replicas)
    })
    .await?;
    let lease_name = format!("{}_LEASE", settings.stream);
    let lease_ttl = Duration::from_secs(settings.lease_secs.max(2));
    let lease = patiently("the writer's lease bucket", || {
        bucket(&js, &lease_name, Some(lease_ttl), replicas)
    })
    .await?;

    // The seq base: decided once, by the first instance, above every seq already stored.
    let base = match patiently("the stream's state", || read_u64(&state, SEQ_BASE_KEY)).await? {
        Some(b) => b,
        None => {
            let stored: u64 = store
                .client()
                .query("SELECT maxIf(seq, seq < ?) FROM events")
                .bind(IMPORT_SEQ_BASE)
                .fetch_one()
                .await?;
            let proposed = stored / PER_MESSAGE + 1;
            match state
                .create(SEQ_BASE_KEY, proposed.to_string().into())
                .await
            {
                Ok(_) => proposed,
                Err(_) => patiently("the stream's state", || read_u64(&state, SEQ_BASE_KEY))
                    .await?
                    .context("the seq base vanished")?,
            }
        }
    };
    let checkpoint_message = patiently("the stream's state", || read_u64(&state, CHECKPOINT_KEY))
        .await?
        .unwrap_or(0);
    let shared_name = format!("{}_SHARED", settings.stream);
    let shared = patiently("the instances' shared bucket", || {
        bucket(&js, &shared_name, Some(SHARED_TTL), replicas)
    })
    .await?;
    let mut records = records;
    let caught_up_at = records
        .info()
        .await
        .map(|i| i.state.last_sequence)
        .map_err(|e| anyhow::anyhow!("the record stream's state: {e}"))?;
    let mut seen = IdSet::default();
    rebuild(record_seq(base, checkpoint_message + 1, 0) - 1, &mut seen).await?;

    let counters = Arc::new(LogCounters::default());
    let landed_seq = record_seq(base, checkpoint_message + 1, 0) - 1;
    counters.committed_seq.store(landed_seq, Ordering::SeqCst);
    counters.checkpoint_seq.store(landed_seq, Ordering::SeqCst);
    let (read_tx, read_rx) = watch::channel(checkpoint_message);
    let (acked_tx, acked_rx) = watch::channel(checkpoint_message);
    let (checkpoint_tx, checkpoint_rx) = watch::channel(landed_seq);
    let verdicts = Arc::default();
    let unlanded: Unlanded = Arc::default();
    let reader = Reader {
        base,
        last: checkpoint_message,
        seen,
        instance: instance.to_string(),
        live,
        read: read_tx,
        verdicts: Arc::clone(&verdicts),
        unlanded: unlanded.clone(),
        counters: counters.clone(),
        store: store.clone(),
        acked: acked_rx,
    };
    let (leadership, keeper) = super::leadership::Leadership::leased();
    let health = Arc::new(WriterHealth::default());
    let writer = Writer {
        base,
        store: store.clone(),
        state: state.clone(),
        records: records.clone(),
        unlanded: unlanded.clone(),
        checkpoint: checkpoint_tx,
        counters: counters.clone(),
        batch_rows: batch_rows.max(1),
        holding: leadership.clone(),
        attempts: Attempts::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            blocked_retry,
            health.clone(),
        ),
    };
    let tasks = vec![
        tokio::spawn(reader.run(records.clone())).abort_handle(),
        tokio::spawn(follow_checkpoint(
            state,
            base,
            unlanded,
            writer.checkpoint.clone(),
            counters.clone(),
        ))
        .abort_handle(),
        tokio::spawn(hold_lease(
            lease,
            instance.to_string(),
            Duration::from_secs(settings.lease_secs.max(2)),
            keeper,
            records.clone(),
            read_rx.clone(),
        ))
        .abort_handle(),
        tokio::spawn(writer.run()).abort_handle(),
    ];
    Ok(Started {
        broker: Broker {
            js,
            subject,
            instance: instance.to_string(),
            counters,
            read: read_rx,
            acked: acked_tx,
            caught_up_at,
            verdicts,
            max_bytes: settings.max_bytes.max(0) as u64,
            max_message,
            shared: super::shared::SharedBoard::new(shared, instance.to_string(), max_message),
        },
        checkpoint: checkpoint_rx,
        health,
        tasks,
        leader: leadership,
    })
}

/// `attempt` again every half second for 30 s while it fails, then its last error.
async fn patiently<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => anyhow::bail!("{what}: {e}"),
            Err(e) => {
                tracing::info!(error = %e, "{what}: NATS not ready; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A key-value bucket (one value per key), made if missing. Its stream is made here as the
/// client would make it: the client's own bucket creation first asks for the account's
/// limits, in a form NATS 2.9 does not answer.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Option<Duration>,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: max_age.unwrap_or_default(),
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("the bucket {name}: {e}"))?;
    js.get_key_value(name)
        .await
        .map_err(|e| anyhow::anyhow!("the bucket {name}: {e}"))
}

async fn read_u64(store: &kv::Store, key: &str) -> anyhow::Result<Option<u64>> {
    let value = store
        .get(key)
        .await
        .map_err(|e| anyhow::anyhow!("reading {key} from the stream's state: {e}"))?;
    Ok(value.and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()))
}

/// Reads the whole stream in order; decides each record's verdict and seq.
struct Reader {
    base: u64,
    /// The last stream sequence taken in.
    last: u64,
    seen: IdSet,
    instance: String,
    live: mpsc::UnboundedSender<Committed>,
    read: watch::Sender<u64>,
    verdicts: Arc<Mutex<HashMap<u64, Vec<AppendOutcome>>>>,
    unlanded: Unlanded,
    counters: Arc<LogCounters>,
    store: Store,
    /// The highest sequence the stream acknowledged to this instance's publishes: when the
    /// reader has not reached it and nothing arrives, its consumer stalled (its server died).
    acked: watch::Receiver<u64>,
}

impl Reader {
    async fn run(mut self, mut records: stream::Stream) {
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
        for (i, mut row) in rows.into_iter().enumerate() {
            if i as u64 >= PER_MESSAGE || !self.seen.insert(id_hash(&row.id)) {
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
            self.seen.insert(id_hash(&row.id));
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
async fn follow_checkpoint(
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

/// Takes the writer's lease when it is free and keeps renewing it; `holding` says whether this
/// instance holds it. A renewal that fails (another instance took it after it expired) lets
/// go at once.
async fn hold_lease(
    lease: kv::Store,
    instance: String,
    ttl: Duration,
    keeper: super::leadership::LeaseKeeper,
    mut records: stream::Stream,
    read: watch::Receiver<u64>,
) {
    let mut revision: Option<u64> = None;
    // On taking the lease: the stream's last message then. This instance leads once its
    // reader got that far — the previous leader may have evaluated alerts on records this one
    // has not read yet, and would see them "resolve" and fire again.
    let mut catching_up: Option<u64> = None;
    loop {
        let sent = Instant::now();
        let attempt = async {
            match revision {
                None => lease
                    .create(WRITER_KEY, instance.clone().into())
                    .await
                    .map_err(|e| e.to_string()),
                Some(r) => lease
                    .update(WRITER_KEY, instance.clone().into(), r)
                    .await
                    .map_err(|e| e.to_string()),
            }
        };
        match tokio::time::timeout(ttl / 3, attempt).await {
            Ok(Ok(r)) => {
                if revision.is_none() {
                    catching_up = Some(STREAM_END_UNKNOWN);
                }
                revision = Some(r);
                // Asked with a time limit, and again at the next renewal if unanswered: NATS
                // may be electing a leader, and the renewals must go on meanwhile.
                if catching_up == Some(STREAM_END_UNKNOWN) {
                    if let Ok(Ok(info)) =
                        tokio::time::timeout(Duration::from_secs(1), records.info()).await
                    {
                        catching_up = Some(info.state.last_sequence);
                    }
                }
                if let Some(end) = catching_up {
                    if *read.borrow() >= end {
                        catching_up = None;
                        tracing::info!(
                            instance,
                            "this instance writes the record stream into ClickHouse and evaluates the alerts"
                        );
                    }
                }
                if catching_up.is_none() {
                    keeper.renewed(sent, ttl);
                }
            }
            Ok(Err(e)) => {
                catching_up = None;
                if revision.take().is_some() {
                    tracing::warn!(error = %e, "the writer's lease is lost");
                    keeper.lost();
                }
            }
            // Unanswered: leading stops by itself once the last renewal is too old.
            Err(_) => tracing::warn!("renewing the writer's lease timed out"),
        }
        let pause = if catching_up.is_some() {
            Duration::from_millis(100).min(ttl / 3)
        } else {
            ttl / 3
        };
        tokio::time::sleep(pause).await;
    }
}

/// The lease holder's inserts: the records read, message ranges in order, each batch checked
/// against what already landed; then the checkpoint, then the purge.
struct Writer {
    base: u64,
    store: Store,
    state: kv::Store,
    records: stream::Stream,
    unlanded: Unlanded,
    checkpoint: watch::Sender<u64>,
    counters: Arc<LogCounters>,
    batch_rows: usize,
    holding: super::leadership::Leadership,
    /// The one retry policy of a writer (the local log's uses it too).
    attempts: Attempts,
}

impl Writer {
    async fn run(mut self) {
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
