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
        let rendered = (!changed.is_empty())
            .then(|| Arc::from(nodes_json(tree, changed.iter().map(|(n, f)| (*n, f))).to_string()));
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
    pub sla: AppealSla,
}

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
    epochs: Mutex<rustc_hash::FxHashMap<String, EpochLog>>,
    last_full_refresh: Mutex<Option<std::time::Instant>>,
    closing: watch::Sender<bool>,
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
        let (tx, _) = broadcast::channel(settings.history_ticks.max(16));
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
            epochs: Mutex::new(Default::default()),
            last_full_refresh: Mutex::new(None),
            closing: watch::channel(false).0,
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

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn agg(&self) -> std::sync::MutexGuard<'_, Aggregates> {
        self.agg.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies committed records (in seq order) and advances the applied seq.
    pub fn apply(&self, rows: &[EventRow]) {
        let mut agg = self.agg();
        for r in rows {
            agg.apply(r);
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
        let tc = Arc::new(TickChanges {
            tick: published.tick,
            at: rfc3339(now),
            nodes: changes,
            rendered: Mutex::new(HashMap::new()),
        });
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.push_back(tc.clone());
            while h.len() > self.history_cap {
                h.pop_front();
            }
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
            self.expire_epochs(Duration::from_secs(600));
        }
    }

    /// The message log of `epoch`, for a client resuming it.
    pub fn epoch(&self, epoch: &str) -> Option<EpochLog> {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(epoch)
            .cloned()
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
        })));
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(epoch.to_string(), log.clone());
        log
    }

    fn expire_epochs(&self, ttl: Duration) {
        let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        epochs.retain(|_, e| e.lock().touched.elapsed() < ttl);
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
