//! Several vscc instances as one (`[broker] url`): the cluster's home. Behind a balancer they
//! share one stream of records on NATS JetStream instead of each keeping its own log, one lease
//! that says which of them writes and evaluates the alerts, and a board on which each says
//! what it serves. One file per part:
//!
//! - [`append`]: the appending side request handlers use;
//! - [`reader`]: every instance reads the whole stream in order and decides the verdicts;
//! - [`lease`]: who leads (always, with a local log; while holding the lease, with a stream);
//! - [`writer`]: the lease holder's inserts, through the one insert path of `store::insert`;
//! - [`shared`]: what each instance tells the others (its screens, its epochs).
//!
//! How they fit:
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

pub mod append;
pub mod lease;
mod reader;
pub mod shared;
mod writer;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, kv, stream};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

pub use append::Broker;
pub use lease::Leadership;

use super::log::{Committed, IdSet, LogCounters};
use super::writer::WriterHealth;
use crate::store::insert::Attempts;
use crate::store::Store;
use reader::{follow_checkpoint, Reader};
use writer::Writer;

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
pub(super) const PER_MESSAGE: u64 = 1 << 16;
/// The header naming the instance that published a message (its reader keeps the verdicts).
pub(super) const INSTANCE_HEADER: &str = "Vscc-Instance";
pub(super) const CHECKPOINT_KEY: &str = "checkpoint";
pub(super) const SEQ_BASE_KEY: &str = "seq_base";
pub(super) const WRITER_KEY: &str = "writer";
/// What an instance shares is gone this long after its last word (it shares every few seconds).
pub(super) const SHARED_TTL: Duration = Duration::from_secs(15);
/// How long the reader waits for a message before asking whether the stream holds more.
pub(super) const STALL: Duration = Duration::from_secs(3);
/// … and for a message the stream acknowledged to this instance.
pub(super) const ACKED_STALL: Duration = Duration::from_secs(1);
/// A new lease holder that has not yet learnt how far the stream reached when it took over.
pub(super) const STREAM_END_UNKNOWN: u64 = u64::MAX;

/// The seq of the `index`th record of stream message `message`: the same on every instance.
/// `base` keeps them above every seq a local log gave before the stream existed.
pub(super) fn record_seq(base: u64, message: u64, index: usize) -> u64 {
    (base + message) * PER_MESSAGE + index as u64
}

/// Messages the stream no longer holds but ClickHouse does, and records not yet landed.
pub(super) type Unlanded = Arc<Mutex<VecDeque<(u64, Committed)>>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`start`] hands back: the appending side, the writer's checkpoint (as a record seq:
/// every record at or below it is in ClickHouse), and the tasks.
pub struct Started {
    pub broker: Broker,
    /// Whether this instance holds the writer's lease.
    pub leader: Leadership,
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
            let stored = store.max_api_seq().await?;
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
    let (leadership, keeper) = Leadership::leased();
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
        tokio::spawn(lease::hold(
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
            shared: shared::SharedBoard::new(shared, instance.to_string(), max_message),
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

pub(super) async fn read_u64(store: &kv::Store, key: &str) -> anyhow::Result<Option<u64>> {
    let value = store
        .get(key)
        .await
        .map_err(|e| anyhow::anyhow!("reading {key} from the stream's state: {e}"))?;
    Ok(value.and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_seqs_of_consecutive_messages_never_overlap_and_stay_above_the_base() {
        let base = 3;
        for message in [1, 2, 1_000, 1 << 30] {
            let last_of_this = record_seq(base, message, (PER_MESSAGE - 1) as usize);
            assert!(last_of_this < record_seq(base, message + 1, 0));
            assert!(record_seq(base, message, 0) >= (base + 1) * PER_MESSAGE);
        }
        // The checkpoint as a seq: everything of message m and before, nothing after.
        let checkpoint = record_seq(base, 5 + 1, 0) - 1;
        assert!(record_seq(base, 5, 0) <= checkpoint && checkpoint < record_seq(base, 6, 0));
    }
}
