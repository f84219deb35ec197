//! The hub: owns the aggregates, applies committed records, and publishes what changed.
//!
//! Publishing is ticked (e.g. every 250 ms — the maximum message rate per subscription): at
//! each tick the figures of the nodes touched since the last tick are recomputed and compared
//! with what was last published; the changed metrics form one numbered `TickChanges`, kept in a
//! bounded history and broadcast to every stream session. Bursts coalesce (the latest value
//! wins) and resume replays exactly the ticks a client missed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};
use tokio::sync::{broadcast, watch};

use super::aggregate::{Aggregates, AppealSla};
use crate::domain::metric::{Figure, MetricId};
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, SHANGHAI};

/// One node's figures, keyed by metric.
pub type NodeFigures = BTreeMap<MetricId, Figure>;

/// What changed at one tick: only the changed metrics of the changed nodes.
#[derive(Debug)]
pub struct TickChanges {
    pub tick: u64,
    pub at: String,
    pub nodes: HashMap<NodeIdx, NodeFigures>,
    /// The `nodes` JSON of a delta, per (scope, metric set): built once per tick however many
    /// screens watch the same thing.
    rendered: Mutex<HashMap<(NodeIdx, u16), Option<Arc<str>>>>,
    /// Estimated heap bytes of `nodes`, and of `rendered` as it fills (for the history bound).
    base_bytes: usize,
    rendered_bytes: std::sync::atomic::AtomicUsize,
}

/// Rough heap cost of one entry of a tick's maps (key, value, hash-table slack), for the
/// history's byte bound: an estimate, measured against RSS in the README.
const RENDERED_ENTRY_BYTES: usize = 64;
const NODE_ENTRY_BYTES: usize = 48 + std::mem::size_of::<NodeFigures>();
const FIGURE_ENTRY_BYTES: usize =
    32 + std::mem::size_of::<MetricId>() + std::mem::size_of::<Figure>() + 16;

impl TickChanges {
    fn new(tick: u64, at: String, nodes: HashMap<NodeIdx, NodeFigures>) -> Self {
        let base_bytes = std::mem::size_of::<Self>()
            + at.len()
            + nodes
                .values()
                .map(|f| NODE_ENTRY_BYTES + f.len() * FIGURE_ENTRY_BYTES)
                .sum::<usize>();
        TickChanges {
            tick,
            at,
            nodes,
            rendered: Mutex::new(HashMap::new()),
            base_bytes,
            rendered_bytes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Estimated heap bytes this tick holds.
    pub fn bytes(&self) -> usize {
        self.base_bytes
            + self
                .rendered_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}

pub fn metric_mask(metrics: &[MetricId]) -> u16 {
    metrics.iter().fold(0u16, |m, id| m | 1 << (*id as u16))
}

impl TickChanges {
    /// The delta `nodes` object for a subscription to `scope` (the node and its children) and
    /// `metrics`, or `None` when nothing it watches changed at this tick.
    pub fn nodes_json_for(
        &self,
        tree: &OrgTree,
        scope: NodeIdx,
        metrics: &[MetricId],
    ) -> Option<Arc<str>> {
        let key = (scope, metric_mask(metrics));
        if let Some(hit) = self
            .rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return hit.clone();
        }
        let changed: Vec<(NodeIdx, NodeFigures)> = tree
            .with_children(scope)
            .into_iter()
            .filter_map(|n| {
                let f = self.nodes.get(&n)?;
                let only: NodeFigures = f
                    .iter()
                    .filter(|(m, _)| metrics.contains(m))
                    .map(|(m, f)| (*m, f.clone()))
                    .collect();
                (!only.is_empty()).then_some((n, only))
            })
            .collect();
        let rendered: Option<Arc<str>> = (!changed.is_empty())
            .then(|| Arc::from(nodes_json(tree, changed.iter().map(|(n, f)| (*n, f))).to_string()));
        self.rendered_bytes.fetch_add(
            RENDERED_ENTRY_BYTES + rendered.as_ref().map_or(0, |r| r.len()),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, rendered.clone());
        rendered
    }
}

/// The time source; tests inject a fixed or manual clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

struct Published {
    tick: u64,
    figures: Vec<NodeFigures>,
}

/// A subscription stream that can be resumed: which tick each of its messages carried.
#[derive(Debug, Clone)]
pub struct EpochState {
    pub scope: NodeIdx,
    pub metrics: Vec<MetricId>,
    /// Seq of the first entry of `ticks`.
    pub base_seq: u64,
    /// `ticks[i]` is the tick that message `base_seq + i` carried.
    pub ticks: VecDeque<u64>,
    pub touched: std::time::Instant,
    /// Whether a connection is sending this epoch's messages now.
    pub attached: bool,
}

/// One epoch's message log, shared by the hub's index (for a client that reconnects) and the
/// subscription sending its messages. Each message to each screen is recorded here: under one
/// lock of its own, a thousand screens no longer contend for the hub's index at every tick.
#[derive(Clone)]
pub struct EpochLog(Arc<Mutex<EpochState>>);

impl EpochLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, EpochState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> EpochState {
        self.lock().clone()
    }

    /// Records that message `seq` carried `tick` (keeping the last `keep`).
    pub fn record(&self, seq: u64, tick: u64, keep: usize) {
        let mut e = self.lock();
        // A replay re-sends seqs already recorded: cut the record back to before `seq`.
        let idx = seq.saturating_sub(e.base_seq) as usize;
        e.ticks.truncate(idx);
        e.ticks.push_back(tick);
        while e.ticks.len() > keep {
            e.ticks.pop_front();
            e.base_seq += 1;
        }
        e.touched = std::time::Instant::now();
    }
}

pub struct HubSettings {
    pub history_ticks: usize,
    /// Bytes the tick history may hold (estimated); the oldest ticks go first.
    pub history_bytes: usize,
    pub sla: AppealSla,
    /// Epochs kept for resume after their connection closed, per token and in all.
    pub resume_epochs_per_token: usize,
    pub resume_epochs_total: usize,
}

/// The resumable epochs. Those of open connections are bounded by the connections (each
/// has at most `stream.max_subscriptions`); those whose connection closed wait for a client
/// to resume them for `EPOCH_TTL`, at most `resume_epochs_per_token` per token and
/// `resume_epochs_total` in all, the oldest forgotten first.
#[derive(Default)]
struct Epochs {
    by_id: rustc_hash::FxHashMap<String, EpochLog>,
    /// Detached epochs per token, oldest first (an entry may have been re-attached since).
    detached: HashMap<String, VecDeque<String>>,
    detached_count: usize,
}

/// Ticks a stream session may fall behind before it starts over with snapshots.
const BROADCAST_TICKS: usize = 128;

/// How long an epoch whose connection closed stays resumable.
const EPOCH_TTL: Duration = Duration::from_secs(600);

pub struct Hub {
    tree: Arc<OrgTree>,
    agg: Mutex<Aggregates>,
    clock: Arc<dyn Clock>,
    published: RwLock<Published>,
    history: Mutex<VecDeque<Arc<TickChanges>>>,
    history_cap: usize,
    tx: broadcast::Sender<Arc<TickChanges>>,
    applied: watch::Sender<u64>,
    /// Keys are server-made uuids (clients only look up): FxHash is safe here.
    epochs: Mutex<Epochs>,
    last_full_refresh: Mutex<Option<std::time::Instant>>,
    closing: watch::Sender<bool>,
    quarantine: Quarantine,
    /// (per token, in all) for detached epochs.
    epoch_caps: (usize, usize),
    history_bytes_cap: usize,
    /// Estimated bytes held by `history`.
    history_bytes: std::sync::atomic::AtomicUsize,
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    rfc3339_truncated(t, t.millisecond() as u32 * 1_000_000)
}

/// As [`rfc3339`], to the microsecond: for instants a client times against.
pub fn rfc3339_micros(t: OffsetDateTime) -> String {
    rfc3339_truncated(t, t.microsecond() * 1_000)
}

fn rfc3339_truncated(t: OffsetDateTime, nanosecond: u32) -> String {
    t.to_offset(SHANGHAI)
        .replace_nanosecond(nanosecond)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl Hub {
    pub fn new(tree: Arc<OrgTree>, settings: HubSettings, clock: Arc<dyn Clock>) -> Self {
        let n = tree.len();
        // The ring keeps its last ticks alive until they are overwritten, whatever the
        // history bound says: small, a session this far behind resyncs with snapshots.
        let (tx, _) = broadcast::channel(settings.history_ticks.clamp(16, BROADCAST_TICKS));
        let (applied, _) = watch::channel(0);
        Hub {
            agg: Mutex::new(Aggregates::new(tree.clone(), settings.sla)),
            tree,
            clock,
            published: RwLock::new(Published {
                tick: 0,
                figures: vec![NodeFigures::new(); n],
            }),
            history: Mutex::new(VecDeque::new()),
            history_cap: settings.history_ticks,
            tx,
            applied,
            epochs: Mutex::new(Epochs::default()),
            epoch_caps: (
                settings.resume_epochs_per_token.max(1),
                settings.resume_epochs_total.max(1),
            ),
            history_bytes_cap: settings.history_bytes,
            history_bytes: std::sync::atomic::AtomicUsize::new(0),
            last_full_refresh: Mutex::new(None),
            closing: watch::channel(false).0,
            quarantine: Quarantine::default(),
        }
    }

    /// Tells every stream session to close (server shutdown).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the server is shutting down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn tree(&self) -> &Arc<OrgTree> {
        &self.tree
    }

    /// Records the live figures refused.
    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn agg(&self) -> std::sync::MutexGuard<'_, Aggregates> {
        self.agg.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies committed records (in seq order) and advances the applied seq. A record that
    /// may not enter the live figures (stored under other rules), or whose applying fails, is
    /// quarantined and reported; the others go on, and so do the figures.
    pub fn apply(&self, rows: &[EventRow]) {
        let mut agg = self.agg();
        for r in rows {
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| agg.apply(r)))
                .unwrap_or_else(|panic| Err(format!("applying it failed: {}", panic_text(&panic))));
            if let Err(reason) = applied {
                self.quarantine.add(r, reason, self.clock.now());
            }
        }
        drop(agg);
        if let Some(last) = rows.last() {
            self.applied.send_if_modified(|s| {
                let changed = last.seq > *s;
                *s = (*s).max(last.seq);
                changed
            });
        }
    }

    /// Waits until every record up to `seq` is in the aggregates (read-your-writes).
    pub async fn wait_applied(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|s| *s >= seq))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }

    /// The current figures of one node (REST answers read these, not the last tick).
    pub fn current(&self, node: NodeIdx, metrics: &[MetricId]) -> NodeFigures {
        let now = self.now();
        let mut agg = self.agg();
        agg.refresh_appeals(now);
        agg.figures(node, metrics, now).into_iter().collect()
    }

    /// Installs the daily samples (from the snapshots) that trend projections extend.
    pub fn set_samples(
        &self,
        samples: HashMap<(NodeIdx, MetricId), Vec<crate::domain::metric::Sample>>,
    ) {
        self.agg().set_samples(samples);
    }

    /// Runs `f` on the current aggregates, brought up to `now` (one lock for many reads).
    pub fn read<R>(&self, now: OffsetDateTime, f: impl FnOnce(&Aggregates) -> R) -> R {
        let mut agg = self.agg();
        agg.refresh_appeals(now);
        f(&agg)
    }

    /// Every node's current figures for every metric (for equality checks).
    pub fn all_current(&self) -> Vec<(String, Vec<(MetricId, Figure)>)> {
        let now = self.now();
        let mut agg = self.agg();
        agg.refresh_appeals(now);
        agg.all_figures(now)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TickChanges>> {
        self.tx.subscribe()
    }

    /// The last published figures of `nodes`, and the tick they belong to.
    pub fn snapshot(
        &self,
        nodes: &[NodeIdx],
        metrics: &[MetricId],
    ) -> (u64, Vec<(NodeIdx, NodeFigures)>) {
        let p = self.published.read().unwrap_or_else(|p| p.into_inner());
        let figures = nodes
            .iter()
            .map(|&n| {
                let f = p.figures[n as usize]
                    .iter()
                    .filter(|(m, _)| metrics.contains(m))
                    .map(|(m, f)| (*m, f.clone()))
                    .collect();
                (n, f)
            })
            .collect();
        (p.tick, figures)
    }

    pub fn published_tick(&self) -> u64 {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tick
    }

    /// Ticks after `after`, if the history still holds all of them.
    pub fn history_since(&self, after: u64) -> Option<Vec<Arc<TickChanges>>> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.published_tick();
        if after >= current {
            return Some(Vec::new());
        }
        match h.front() {
            Some(first) if first.tick <= after + 1 => {
                Some(h.iter().filter(|t| t.tick > after).cloned().collect())
            }
            _ => None,
        }
    }

    /// Recomputes touched nodes (every node once a minute, since targets depend on the date)
    /// and publishes the changes. Returns the changes, if any.
    pub fn tick(&self) -> Option<Arc<TickChanges>> {
        let now = self.now();
        let full = {
            let mut last = self
                .last_full_refresh
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        let computed: Vec<(NodeIdx, Vec<(MetricId, Figure)>)> = {
            let mut agg = self.agg();
            agg.refresh_appeals(now);
            let dirty = agg.take_dirty();
            let nodes: Vec<NodeIdx> = if full {
                self.tree.nodes().map(|(i, _)| i).collect()
            } else {
                dirty
            };
            nodes
                .into_iter()
                .map(|n| (n, agg.figures(n, &MetricId::ALL, now)))
                .collect()
        };
        let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
        let mut changes: HashMap<NodeIdx, NodeFigures> = HashMap::new();
        for (node, figures) in computed {
            let current = &mut published.figures[node as usize];
            for (metric, figure) in figures {
                if current.get(&metric) != Some(&figure) {
                    current.insert(metric, figure.clone());
                    changes.entry(node).or_default().insert(metric, figure);
                }
            }
        }
        if changes.is_empty() {
            return None;
        }
        published.tick += 1;
        let tc = Arc::new(TickChanges::new(published.tick, rfc3339(now), changes));
        {
            // Bounded by ticks and by bytes: a busy system's ticks are large, and a resume
            // that reaches past the oldest kept tick gets a fresh snapshot instead.
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.push_back(tc.clone());
            let mut bytes: usize = h.iter().map(|t| t.bytes()).sum();
            while h.len() > 1 && (h.len() > self.history_cap || bytes > self.history_bytes_cap) {
                if let Some(old) = h.pop_front() {
                    bytes -= old.bytes().min(bytes);
                }
            }
            self.history_bytes
                .store(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        drop(published);
        let _ = self.tx.send(tc.clone());
        Some(tc)
    }

    /// Publishes everything as the starting point (after the rebuild), without broadcasting.
    pub fn publish_initial(&self) {
        let now = self.now();
        let mut agg = self.agg();
        agg.refresh_appeals(now);
        agg.take_dirty();
        let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
        for (n, _) in self.tree.nodes() {
            published.figures[n as usize] =
                agg.figures(n, &MetricId::ALL, now).into_iter().collect();
        }
    }

    /// Ticks forever at `interval`.
    pub async fn run_ticker(self: Arc<Self>, interval: Duration) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            self.tick();
            self.expire_epochs(EPOCH_TTL);
        }
    }

    /// The message log of `epoch`, for a client resuming it; it is attached again.
    pub fn epoch(&self, epoch: &str) -> Option<EpochLog> {
        let epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        let log = epochs.by_id.get(epoch).cloned()?;
        log.lock().attached = true;
        Some(log)
    }

    /// Starts the message log of a new epoch, whose first message `seq` carried `tick`.
    pub fn open_epoch(
        &self,
        epoch: &str,
        scope: NodeIdx,
        metrics: &[MetricId],
        seq: u64,
        tick: u64,
    ) -> EpochLog {
        let log = EpochLog(Arc::new(Mutex::new(EpochState {
            scope,
            metrics: metrics.to_vec(),
            base_seq: seq,
            ticks: VecDeque::from([tick]),
            touched: std::time::Instant::now(),
            attached: true,
        })));
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .insert(epoch.to_string(), log.clone());
        log
    }

    /// Forgets an epoch its connection replaced or dropped (a re-sent or withdrawn
    /// subscription): nobody can resume it any more.
    pub fn close_epoch(&self, epoch: &str) {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .remove(epoch);
    }

    /// The connection of these epochs closed: they stay resumable for a while, within the
    /// caps, the oldest of the token's (and of all) forgotten first.
    pub fn detach_epochs(&self, token_key: &str, epochs: impl IntoIterator<Item = String>) {
        let (per_token, total) = self.epoch_caps;
        let mut guard = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        let e = &mut *guard;
        for id in epochs {
            let Some(log) = e.by_id.get(&id) else {
                continue;
            };
            log.lock().attached = false;
            e.detached
                .entry(token_key.to_string())
                .or_default()
                .push_back(id);
            e.detached_count += 1;
        }
        let forget = |e: &mut Epochs, token: &str| {
            let Some(queue) = e.detached.get_mut(token) else {
                return;
            };
            if let Some(id) = queue.pop_front() {
                e.detached_count -= 1;
                // An entry re-attached since (resumed by a new connection) stays.
                if e.by_id.get(&id).is_some_and(|l| !l.lock().attached) {
                    e.by_id.remove(&id);
                }
            }
            if queue.is_empty() {
                e.detached.remove(token);
            }
        };
        while e
            .detached
            .get(token_key)
            .is_some_and(|q| q.len() > per_token)
        {
            forget(e, token_key);
        }
        while e.detached_count > total {
            // Over the total: the token with the longest queue gives up its oldest.
            let Some(longest) = e
                .detached
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            forget(e, &longest);
        }
    }

    /// Ticks in the history, and their estimated bytes.
    pub fn history_size(&self) -> (usize, usize) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        (
            h.len(),
            self.history_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Epochs a client could resume now (of open and of closed connections).
    pub fn epoch_count(&self) -> usize {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .len()
    }

    fn expire_epochs(&self, ttl: Duration) {
        let mut guard = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        let e = &mut *guard;
        e.by_id.retain(|_, log| {
            let s = log.lock();
            s.attached || s.touched.elapsed() < ttl
        });
        let by_id = &e.by_id;
        let mut count = 0;
        e.detached.retain(|_, q| {
            q.retain(|id| by_id.contains_key(id));
            count += q.len();
            !q.is_empty()
        });
        e.detached_count = count;
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// A record the live figures refused.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuarantinedRecord {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub org: String,
    /// Why it was refused.
    pub reason: String,
    /// When it was refused (RFC 3339).
    pub at: String,
}

/// Records the live figures refused since start-up: how many, and the latest few (for the log,
/// `/metrics` and the duty console). The records themselves stay in the log and ClickHouse.
#[derive(Default)]
pub struct Quarantine {
    total: std::sync::atomic::AtomicU64,
    recent: Mutex<VecDeque<QuarantinedRecord>>,
}

impl Quarantine {
    const KEEP: usize = 100;
    /// Each of the first records is logged; after that one in `LOG_EVERY`, with the count.
    const LOG_FIRST: u64 = 20;
    const LOG_EVERY: u64 = 1000;

    fn add(&self, r: &EventRow, reason: String, now: OffsetDateTime) {
        let n = self
            .total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n <= Self::LOG_FIRST || n.is_multiple_of(Self::LOG_EVERY) {
            tracing::warn!(seq = r.seq, id = %r.id, kind = %r.kind, org = %r.org, %reason, quarantined = n,
                "record kept out of the live figures");
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == Self::KEEP {
            recent.pop_front();
        }
        recent.push_back(QuarantinedRecord {
            seq: r.seq,
            id: r.id.clone(),
            kind: r.kind.clone(),
            org: r.org.clone(),
            reason,
            at: rfc3339(now),
        });
    }

    /// Records refused since start-up.
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The latest refused records, newest first.
    pub fn recent(&self) -> Vec<QuarantinedRecord> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }
}

/// `{code: {metric: figure}}` as the contract shows it.
pub fn nodes_json<'a>(
    tree: &OrgTree,
    nodes: impl IntoIterator<Item = (NodeIdx, &'a NodeFigures)>,
) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = nodes
        .into_iter()
        .map(|(n, f)| {
            (
                tree.node(n).code.clone(),
                serde_json::to_value(f).unwrap_or_default(),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

#[derive(Serialize)]
pub struct FiguresAnswer {
    pub scope: String,
    pub at: String,
    pub nodes: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::org::{tree_of, Level};
    use crate::domain::record::Kind;

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
        }
    }

    fn hub(history_ticks: usize, history_bytes: usize, per_token: usize) -> Hub {
        let tree = tree_of(&[
            ("c", Level::City, None),
            ("d1", Level::District, Some("c")),
            ("s1", Level::Street, Some("d1")),
            ("m1", Level::Community, Some("s1")),
        ]);
        Hub::new(
            Arc::new(tree),
            HubSettings {
                history_ticks,
                history_bytes,
                sla: AppealSla::default(),
                resume_epochs_per_token: per_token,
                resume_epochs_total: 1000,
            },
            Arc::new(Fixed),
        )
    }

    fn appeal(seq: u64, id: &str) -> EventRow {
        let mut r = EventRow::blank(
            id.into(),
            Kind::AppealReceived,
            "m1".into(),
            "d1".into(),
            1_699_990_000,
            1_699_990_000,
            "test",
        );
        r.seq = seq;
        r.appeal_id = id.into();
        r
    }

    fn open_appeals(h: &Hub) -> Option<f64> {
        h.current(h.tree().root(), &[MetricId::OpenAppeals])[&MetricId::OpenAppeals].value
    }

    #[test]
    fn a_record_whose_applying_fails_is_quarantined_and_the_figures_go_on() {
        let h = hub(100, 1 << 20, 10);
        h.agg().fail_on_id = Some("bad".into());
        h.apply(&[appeal(1, "a1"), appeal(2, "bad"), appeal(3, "a2")]);
        assert_eq!(open_appeals(&h), Some(2.0));
        assert_eq!(h.quarantine().total(), 1);
        let q = &h.quarantine().recent()[0];
        assert_eq!((q.seq, q.id.as_str()), (2, "bad"));
        assert!(q.reason.contains("injected failure"), "{}", q.reason);
        // Not frozen: later records still count, and the applied seq moved past the bad one.
        h.apply(&[appeal(4, "a3")]);
        assert_eq!(open_appeals(&h), Some(3.0));
        assert_eq!(*h.applied.borrow(), 4);
        // A stored row that no longer validates is refused the same way.
        let mut out_of_range = appeal(5, "h");
        out_of_range.kind = "staff.headcount".into();
        out_of_range.headcount = i64::MAX;
        h.apply(&[out_of_range]);
        assert_eq!(h.quarantine().total(), 2);
        assert!(h.quarantine().recent()[0].reason.contains("data.headcount"));
    }

    #[test]
    fn the_tick_history_is_bounded_by_bytes_as_well_as_ticks() {
        let h = hub(10_000, 64 * 1024, 10);
        for i in 0..400u64 {
            h.apply(&[appeal(i + 1, &format!("a{i}"))]);
            h.tick();
        }
        let (ticks, bytes) = h.history_size();
        assert!(bytes <= 64 * 1024, "{bytes} bytes kept");
        assert!(ticks < 400, "{ticks} ticks kept");
        assert!(ticks > 10, "only {ticks} ticks kept");
        // A resume from before the oldest kept tick is told to start over.
        assert!(h.history_since(1).is_none());
        assert!(h.history_since(h.published_tick() - 2).is_some());
    }

    #[test]
    fn resumable_epochs_are_bounded_per_token_and_replaced_ones_forgotten() {
        let h = hub(100, 1 << 20, 3);
        let root = h.tree().root();
        // One connection re-subscribing: each replaced epoch is closed at once.
        for i in 0..1000 {
            let id = format!("e{i}");
            h.open_epoch(&id, root, &[MetricId::OpenAppeals], 1, 0);
            if i > 0 {
                h.close_epoch(&format!("e{}", i - 1));
            }
        }
        assert_eq!(h.epoch_count(), 1);
        // Connections of one token closing one after another: at most 3 stay resumable.
        for i in 0..10 {
            let id = format!("t{i}");
            h.open_epoch(&id, root, &[MetricId::OpenAppeals], 1, 0);
            h.detach_epochs("token-a", [id]);
        }
        h.detach_epochs("token-b", ["e999".to_string()]);
        assert_eq!(h.epoch_count(), 4);
        assert!(h.epoch("t9").is_some() && h.epoch("t0").is_none());
        // A resumed (re-attached) epoch is not forgotten while in use.
        for i in 10..20 {
            let id = format!("t{i}");
            h.open_epoch(&id, root, &[MetricId::OpenAppeals], 1, 0);
            h.detach_epochs("token-a", [id]);
        }
        assert!(h.epoch("t9").is_some(), "attached again above, so kept");
    }
}
