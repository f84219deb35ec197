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

use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::aggregate::Aggregates;
use crate::domain::catalogue::Catalogue;
use crate::domain::metric::{Figure, MetricId};
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::EventRow;
use crate::domain::time::rfc3339;

/// A live state saved: its position and its parts (see [`Aggregates::save_parts`]).
pub type Saved = (super::checkpoint::Position, Vec<(&'static str, Vec<u8>)>);

/// One node's figures, keyed by metric.
pub type NodeFigures = BTreeMap<MetricId, Figure>;

/// Where published figures stand: every record of the record log up to seq `upto` applied,
/// computed at `when` (Unix milliseconds). Seqs come from the record log, so on one record
/// stream a position means the same on every instance: a screen's view can be resumed
/// elsewhere from it (see `Hub::history_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub upto: u64,
    pub when: i64,
}

impl Position {
    fn at(upto: u64, now: OffsetDateTime) -> Self {
        Position {
            upto,
            when: (now.unix_timestamp_nanos() / 1_000_000) as i64,
        }
    }
}

/// What changed at one tick: only the changed metrics of the changed nodes.
#[derive(Debug)]
pub struct TickChanges {
    pub tick: u64,
    pub at: String,
    /// The position these figures were computed at.
    pub position: Position,
    pub nodes: HashMap<NodeIdx, NodeFigures>,
    /// The catalogue changed: every subscription starts over with a snapshot (its metrics
    /// looked up again), and no resume reaches back past this tick.
    pub restart: bool,
    /// Estimated heap bytes of this tick (for the history's bound).
    bytes: usize,
}

/// Heap cost of one changed node of a tick, for the history's byte bound. A node's figures are
/// a `BTreeMap`, which allocates whole nodes (room for 11 entries each) however few they hold;
/// the hash map adds its slot and slack. Checked against RSS under load (README, "Memory").
const BTREE_LEAF_BYTES: usize =
    16 + 11 * (std::mem::size_of::<MetricId>() + std::mem::size_of::<Figure>());
const NODE_ENTRY_BYTES: usize =
    64 + std::mem::size_of::<NodeIdx>() + std::mem::size_of::<NodeFigures>();
/// Per figure: its `due` string's heap block.
const FIGURE_ENTRY_BYTES: usize = 32;
/// A figure's extra counts (cases' overdue per deadline): one map leaf, and each key's text.
const EXTRAS_LEAF_BYTES: usize =
    16 + 11 * (std::mem::size_of::<String>() + std::mem::size_of::<i64>());
const EXTRA_KEY_BYTES: usize = 32;

fn node_bytes(f: &NodeFigures) -> usize {
    NODE_ENTRY_BYTES
        + f.len().div_ceil(11).max(1) * BTREE_LEAF_BYTES
        + f.values()
            .map(|f| {
                FIGURE_ENTRY_BYTES
                    + if f.extras.is_empty() {
                        0
                    } else {
                        EXTRAS_LEAF_BYTES + f.extras.len() * EXTRA_KEY_BYTES
                    }
            })
            .sum::<usize>()
}

impl TickChanges {
    fn new(
        tick: u64,
        now: OffsetDateTime,
        position: Position,
        nodes: HashMap<NodeIdx, NodeFigures>,
    ) -> Self {
        let at = rfc3339(now);
        let bytes =
            std::mem::size_of::<Self>() + at.len() + nodes.values().map(node_bytes).sum::<usize>();
        TickChanges {
            tick,
            at,
            position,
            nodes,
            restart: false,
            bytes,
        }
    }

    /// Estimated heap bytes this tick holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What changed over several ticks for a subscription to `scope` and `metrics`, as one
    /// (the latest figure of each node and metric wins): what a screen resuming from an
    /// earlier position is sent in one message.
    pub fn merged_for(
        ticks: &[Arc<TickChanges>],
        tree: &OrgTree,
        scope: NodeIdx,
        metrics: &[MetricId],
    ) -> Vec<(NodeIdx, NodeFigures)> {
        let mut merged: BTreeMap<NodeIdx, NodeFigures> = BTreeMap::new();
        for tc in ticks {
            for (n, figures) in tc.changed_for(tree, scope, metrics) {
                merged.entry(n).or_default().extend(figures);
            }
        }
        merged.into_iter().collect()
    }

    /// What changed at this tick for a subscription to `scope` (the node and its children)
    /// and `metrics`: empty when nothing it watches changed.
    pub fn changed_for(
        &self,
        tree: &OrgTree,
        scope: NodeIdx,
        metrics: &[MetricId],
    ) -> Vec<(NodeIdx, NodeFigures)> {
        tree.with_children(scope)
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
            .collect()
    }
}

/// One node's figures as just computed.
type NodeComputed = (NodeIdx, Vec<(MetricId, Figure)>);

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
    position: Position,
    figures: Vec<NodeFigures>,
}

/// The tick history, and where it starts: it holds every tick published after `floor`.
#[derive(Default)]
struct History {
    ticks: VecDeque<Arc<TickChanges>>,
    floor: Position,
}

pub struct HubSettings {
    pub history_ticks: usize,
    /// Bytes the tick history may hold (estimated); the oldest ticks go first.
    pub history_bytes: usize,
}

/// Ticks a stream session may fall behind before it starts over with snapshots.
const BROADCAST_TICKS: usize = 128;

pub struct Hub {
    tree: Arc<OrgTree>,
    catalogue: RwLock<Arc<Catalogue>>,
    agg: Mutex<Aggregates>,
    clock: Arc<dyn Clock>,
    published: RwLock<Published>,
    history: Mutex<History>,
    history_cap: usize,
    tx: broadcast::Sender<Arc<TickChanges>>,
    /// The clock's minute of the last full refresh.
    last_full_refresh: Mutex<Option<i64>>,
    quarantine: Quarantine,
    history_bytes_cap: usize,
    /// Estimated bytes held by `history`.
    history_bytes: std::sync::atomic::AtomicUsize,
    /// While a new catalogue's state is rebuilt: the records taken in meanwhile (locked
    /// after `agg`, never before).
    switching: Mutex<Option<Vec<EventRow>>>,
    /// The highest seq of an API record applied (imports have their own range).
    last_api_seq: std::sync::atomic::AtomicU64,
    /// Every task's records (the task kinds' records, kept as they are applied).
    tasks: super::tasks::TaskBoard,
    /// The imports whose records are all applied; an import is applied whole while
    /// `import_gate` is held, so that a checkpoint never holds part of one.
    imports: Mutex<std::collections::BTreeSet<u32>>,
    import_gate: Mutex<()>,
}

impl Hub {
    pub fn new(
        tree: Arc<OrgTree>,
        catalogue: Arc<Catalogue>,
        settings: HubSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let n = tree.len();
        // The ring keeps its last ticks alive until they are overwritten, whatever the
        // history bound says: small, a session this far behind resyncs with snapshots.
        let (tx, _) = broadcast::channel(settings.history_ticks.clamp(16, BROADCAST_TICKS));
        Hub {
            agg: Mutex::new(Aggregates::new(tree.clone(), catalogue.clone())),
            catalogue: RwLock::new(catalogue),
            tree,
            clock,
            published: RwLock::new(Published {
                tick: 0,
                position: Position::default(),
                figures: vec![NodeFigures::new(); n],
            }),
            history: Mutex::new(History::default()),
            history_cap: settings.history_ticks,
            tx,
            history_bytes_cap: settings.history_bytes,
            history_bytes: std::sync::atomic::AtomicUsize::new(0),
            last_full_refresh: Mutex::new(None),
            quarantine: Quarantine::default(),
            switching: Mutex::new(None),
            last_api_seq: std::sync::atomic::AtomicU64::new(0),
            tasks: super::tasks::TaskBoard::default(),
            imports: Mutex::default(),
            import_gate: Mutex::new(()),
        }
    }

    pub fn tree(&self) -> &Arc<OrgTree> {
        &self.tree
    }

    /// The metric catalogue the figures are computed for.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tasks and their assignments.
    pub fn tasks(&self) -> &super::tasks::TaskBoard {
        &self.tasks
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

    /// Applies committed records (in seq order). A record that
    /// may not enter the live figures (stored under other rules), or whose applying fails, is
    /// quarantined and reported; the others go on, and so do the figures.
    pub fn apply(&self, rows: &[EventRow]) {
        let mut agg = self.agg();
        for r in rows {
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| agg.take_in(r)))
                .unwrap_or_else(|panic| Err(format!("applying it failed: {}", panic_text(&panic))));
            if let Err(reason) = applied {
                self.quarantine.add(r, reason, self.clock.now());
            }
            if r.seq < crate::domain::record::IMPORT_SEQ_BASE {
                self.last_api_seq
                    .fetch_max(r.seq, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(buffer) = self
            .switching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            buffer.extend_from_slice(rows);
        }
        drop(agg);
        self.tasks.take_in(&self.tree, rows);
    }

    /// Applies every record of a finished import, and notes the import as applied.
    pub fn apply_import(&self, import: u32, rows: &[EventRow]) {
        let _whole = self.import_gate.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in rows.chunks(8192) {
            self.apply(chunk);
        }
        self.imports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(import);
    }

    /// Notes imports whose records the start-up rebuild applied.
    pub fn note_imports(&self, imports: &[u32]) {
        self.imports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(imports.iter().copied());
    }

    /// The live state as a checkpoint holds it, at the position it stands at, and the
    /// fingerprint of the definitions it was built under. Records wait while it is saved.
    pub fn save(&self) -> Result<(Saved, u64), String> {
        let _whole = self.import_gate.lock().unwrap_or_else(|p| p.into_inner());
        let agg = self.agg();
        let position = super::checkpoint::Position {
            upto_seq: self.last_api_seq.load(std::sync::atomic::Ordering::Relaxed),
            imports: self
                .imports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect(),
        };
        let parts = agg.save_parts()?;
        Ok(((position, parts), agg.catalogue().fingerprint))
    }

    /// Where the live state stands: the highest API record applied, and the imports applied.
    pub fn applied(&self) -> (u64, usize) {
        (
            self.last_api_seq.load(std::sync::atomic::Ordering::Relaxed),
            self.imports.lock().unwrap_or_else(|p| p.into_inner()).len(),
        )
    }

    /// Puts a checkpoint's state in service, at start-up before any record is applied.
    pub fn install(&self, loaded: Aggregates, position: &super::checkpoint::Position) {
        *self.agg() = loaded;
        self.last_api_seq
            .fetch_max(position.upto_seq, std::sync::atomic::Ordering::Relaxed);
        self.note_imports(&position.imports);
    }

    /// Starts switching to a new catalogue: from now on applied records are also kept aside.
    /// Returns the seq up to which API records were applied before: the rebuild reads those
    /// from ClickHouse (once the writer's checkpoint reaches it) and the kept ones after.
    pub fn begin_switch(&self) -> u64 {
        let _agg = self.agg();
        *self.switching.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
        self.last_api_seq.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Gives up a switch (the rebuild failed): the current state stays.
    pub fn abort_switch(&self) {
        *self.switching.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Puts the rebuilt state in service: the records kept aside that the rebuild did not read
    /// are applied to it, the trend samples carry over, and every screen gets a fresh snapshot.
    pub fn finish_switch(&self, mut fresh: Aggregates, upto_seq: u64, ok_imports: &[u32]) {
        let now = self.now();
        {
            let mut agg = self.agg();
            let kept = self
                .switching
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            for r in kept
                .iter()
                .filter(|r| !super::rebuild::in_rebuild(r, upto_seq, ok_imports))
            {
                // A refusal was reported when the serving state took the record in.
                let _ = fresh.take_in(r);
            }
            fresh.set_samples(agg.take_samples());
            *self.catalogue.write().unwrap_or_else(|p| p.into_inner()) = fresh.catalogue().clone();
            *agg = fresh;
            agg.refresh_clock(now);
            agg.take_dirty();
        }
        self.publish_restart(now);
    }

    /// Replaces every published figure and tells the streams to start over.
    fn publish_restart(&self, now: OffsetDateTime) {
        let (computed, position): (Vec<NodeFigures>, Position) = {
            let agg = self.agg();
            let all = agg.catalogue().all();
            let computed = self
                .tree
                .nodes()
                .map(|(n, _)| agg.figures(n, &all, now).into_iter().collect())
                .collect();
            (computed, self.position(now))
        };
        let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
        published.figures = computed;
        published.tick += 1;
        published.position = position;
        let mut tc = TickChanges::new(published.tick, now, position, HashMap::new());
        tc.restart = true;
        {
            // No resume reaches back past a restart.
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.ticks.clear();
            h.floor = position;
            self.history_bytes
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        drop(published);
        let _ = self.tx.send(Arc::new(tc));
    }

    /// The current figures of one node (REST answers read these, not the last tick).
    pub fn current(&self, node: NodeIdx, metrics: &[MetricId]) -> NodeFigures {
        let now = self.now();
        let mut agg = self.agg();
        agg.refresh_clock(now);
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
        agg.refresh_clock(now);
        f(&agg)
    }

    /// Every node's current figures for every metric (for equality checks).
    pub fn all_current(&self) -> Vec<(String, Vec<(MetricId, Figure)>)> {
        let now = self.now();
        let mut agg = self.agg();
        agg.refresh_clock(now);
        agg.all_figures(now)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TickChanges>> {
        self.tx.subscribe()
    }

    /// The last published figures of `nodes`, and the tick and position they belong to.
    pub fn snapshot(
        &self,
        nodes: &[NodeIdx],
        metrics: &[MetricId],
    ) -> (u64, Position, Vec<(NodeIdx, NodeFigures)>) {
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
        (p.tick, p.position, figures)
    }

    /// The position of the published figures.
    pub fn published_position(&self) -> Position {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .position
    }

    pub fn published_tick(&self) -> u64 {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tick
    }

    /// Ticks after `after`, if the history still holds all of them.
    pub fn history_since(&self, after: u64) -> Option<Vec<Arc<TickChanges>>> {
        // Read before the history's lock: `tick` takes them in the other order.
        let current = self.published_tick();
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if after >= current {
            return Some(Vec::new());
        }
        match h.ticks.front() {
            Some(first) if first.tick <= after + 1 => {
                Some(h.ticks.iter().filter(|t| t.tick > after).cloned().collect())
            }
            _ => None,
        }
    }

    /// The ticks that may have changed what a screen saw at `seen` (a position of another
    /// instance on the same record stream, or of this one before it restarted): every tick
    /// after records beyond `seen.upto`, and every tick from `slack_ms` before `seen.when`
    /// (figures that move with the clock or with ledger imports are published by each
    /// instance at its own moment). A superset is harmless: a delta carries whole figures.
    /// `None` if the history does not reach back that far, or a restart lies between. Also
    /// returns the last tick published, from which the screen goes on.
    pub fn history_after(
        &self,
        seen: Position,
        slack_ms: i64,
    ) -> Option<(Vec<Arc<TickChanges>>, u64)> {
        let current = self.published_tick();
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let since = seen.when.saturating_sub(slack_ms);
        if h.floor.upto > seen.upto || h.floor.when > since {
            return None;
        }
        let ticks: Vec<Arc<TickChanges>> = h
            .ticks
            .iter()
            .filter(|t| t.position.upto > seen.upto || t.position.when >= since)
            .cloned()
            .collect();
        let last = ticks.last().map_or(current, |t| t.tick.max(current));
        Some((ticks, last))
    }

    /// Where the records applied so far stand (the caller holds the aggregates' lock).
    fn position(&self, now: OffsetDateTime) -> Position {
        Position::at(
            self.last_api_seq.load(std::sync::atomic::Ordering::Relaxed),
            now,
        )
    }

    /// Recomputes touched nodes (every node once a minute, since targets depend on the date)
    /// and publishes the changes. Returns the changes, if any.
    pub fn tick(&self) -> Option<Arc<TickChanges>> {
        let now = self.now();
        // Every node once per minute of the clock, at the minute's first tick: instances on
        // one stream publish what moves with the clock at about the same moment, so a screen
        // resumed on another instance misses nothing (see `history_after`).
        let full = {
            let minute = now.unix_timestamp().div_euclid(60);
            let mut last = self
                .last_full_refresh
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = *last != Some(minute);
            *last = Some(minute);
            due
        };
        let (computed, position): (Vec<NodeComputed>, Position) = {
            let mut agg = self.agg();
            agg.refresh_clock(now);
            let all = agg.catalogue().all();
            let dirty = agg.take_dirty();
            let nodes: Vec<NodeIdx> = if full {
                self.tree.nodes().map(|(i, _)| i).collect()
            } else {
                dirty
            };
            let computed = nodes
                .into_iter()
                .map(|n| (n, agg.figures(n, &all, now)))
                .collect();
            (computed, self.position(now))
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
            // Nothing to send, and nothing any screen saw changed: the published figures
            // stand at the new position as well.
            published.position = position;
            return None;
        }
        published.tick += 1;
        published.position = position;
        let tc = Arc::new(TickChanges::new(published.tick, now, position, changes));
        {
            // Bounded by ticks and by bytes: a busy system's ticks are large, and a resume
            // that reaches past the oldest kept tick gets a fresh snapshot instead.
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.ticks.push_back(tc.clone());
            let mut bytes: usize = h.ticks.iter().map(|t| t.bytes()).sum();
            while h.ticks.len() > 1
                && (h.ticks.len() > self.history_cap || bytes > self.history_bytes_cap)
            {
                if let Some(old) = h.ticks.pop_front() {
                    bytes -= old.bytes().min(bytes);
                    h.floor = old.position;
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
        agg.refresh_clock(now);
        agg.take_dirty();
        let all = agg.catalogue().all();
        let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
        for (n, _) in self.tree.nodes() {
            published.figures[n as usize] = agg.figures(n, &all, now).into_iter().collect();
        }
        published.position = self.position(now);
        self.history.lock().unwrap_or_else(|p| p.into_inner()).floor = published.position;
    }

    /// Ticks forever at `interval`.
    pub async fn run_ticker(self: Arc<Self>, interval: Duration) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            self.tick();
        }
    }

    /// Ticks in the history, and their estimated bytes.
    pub fn history_size(&self) -> (usize, usize) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        (
            h.ticks.len(),
            self.history_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
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
#[derive(Debug, Clone)]
pub struct QuarantinedRecord {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub org: String,
    /// Why it was refused.
    pub reason: String,
    /// When it was refused.
    pub at: OffsetDateTime,
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
            kind: r.kind.to_string(),
            org: r.org.clone(),
            reason,
            at: now,
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

    fn hub(history_ticks: usize, history_bytes: usize) -> Hub {
        let tree = tree_of(&[
            ("c", Level::City, None),
            ("d1", Level::District, Some("c")),
            ("s1", Level::Street, Some("d1")),
            ("m1", Level::Community, Some("s1")),
        ]);
        Hub::new(
            Arc::new(tree),
            Arc::new(Catalogue::shipped()),
            HubSettings {
                history_ticks,
                history_bytes,
            },
            Arc::new(Fixed),
        )
    }

    fn appeal(seq: u64, id: &str) -> EventRow {
        let mut r = EventRow::blank(
            id.into(),
            Kind::APPEAL_RECEIVED,
            "m1".into(),
            "d1".into(),
            1_699_990_000,
            1_699_990_000,
            "test",
        );
        r.seq = seq;
        r.subject = id.into();
        r
    }

    fn open_appeals(h: &Hub) -> Option<f64> {
        let m = h.catalogue().parse_name("open_appeals").unwrap();
        h.current(h.tree().root(), &[m])[&m].value
    }

    #[test]
    fn a_record_whose_applying_fails_is_quarantined_and_the_figures_go_on() {
        let h = hub(100, 1 << 20);
        h.agg().fail_on_id = Some("bad".into());
        h.apply(&[appeal(1, "a1"), appeal(2, "bad"), appeal(3, "a2")]);
        assert_eq!(open_appeals(&h), Some(2.0));
        assert_eq!(h.quarantine().total(), 1);
        let q = &h.quarantine().recent()[0];
        assert_eq!((q.seq, q.id.as_str()), (2, "bad"));
        assert!(q.reason.contains("injected failure"), "{}", q.reason);
        // Not frozen: later records still count.
        h.apply(&[appeal(4, "a3")]);
        assert_eq!(open_appeals(&h), Some(3.0));
        // A stored row that no longer validates is refused the same way.
        let mut out_of_range = appeal(5, "h");
        out_of_range.kind = "staff.headcount".into();
        out_of_range.set_number("headcount", i64::MAX);
        h.apply(&[out_of_range]);
        assert_eq!(h.quarantine().total(), 2);
        assert!(h.quarantine().recent()[0].reason.contains("data.headcount"));
    }

    #[test]
    fn the_tick_history_is_bounded_by_bytes_as_well_as_ticks() {
        let h = hub(10_000, 256 * 1024);
        for i in 0..400u64 {
            h.apply(&[appeal(i + 1, &format!("a{i}"))]);
            h.tick();
        }
        let (ticks, bytes) = h.history_size();
        assert!(bytes <= 256 * 1024, "{bytes} bytes kept");
        assert!(ticks < 400, "{ticks} ticks kept");
        assert!(ticks > 10, "only {ticks} ticks kept");
        // A resume from before the oldest kept tick is told to start over.
        assert!(h.history_since(1).is_none());
        assert!(h.history_since(h.published_tick() - 2).is_some());
    }

    struct Manual(Mutex<OffsetDateTime>);
    impl Clock for Manual {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn a_view_of_another_instance_is_resumed_from_its_position_with_slack_for_the_clock() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let clock = Arc::new(Manual(Mutex::new(t0)));
        let mut h = hub(2, 1 << 20);
        h.clock = clock.clone();
        h.publish_initial();
        let set = |secs: i64| *clock.0.lock().unwrap() = t0 + time::Duration::seconds(secs);
        let ms = |secs: i64| (t0.unix_timestamp() + secs) * 1000;
        set(100);
        h.apply(&[appeal(1, "a1")]);
        let t1 = h.tick().expect("a1 changed the figures");
        assert_eq!(
            t1.position,
            Position {
                upto: 1,
                when: ms(100)
            }
        );
        set(300);
        h.apply(&[appeal(2, "a2")]);
        let t2 = h.tick().expect("a2");
        set(301);
        h.apply(&[appeal(3, "a3")]);
        let t3 = h.tick().expect("a3");
        let ticks = |seen: Position, slack_secs: i64| {
            h.history_after(seen, slack_secs * 1000)
                .map(|(ticks, last)| (ticks.iter().map(|t| t.tick).collect::<Vec<_>>(), last))
        };
        // Two ticks kept: T1 is gone, so the history reaches back to its position only.
        assert_eq!(
            ticks(t1.position, 0),
            Some((vec![t2.tick, t3.tick], t3.tick))
        );
        assert_eq!(
            ticks(
                Position {
                    upto: 0,
                    when: ms(100)
                },
                0
            ),
            None
        );
        assert_eq!(
            ticks(t1.position, 90),
            None,
            "the slack reaches before the floor"
        );
        // Later ticks by position; a tick at the same position within the slack too.
        assert_eq!(ticks(t3.position, 0), Some((vec![t3.tick], t3.tick)));
        assert_eq!(
            ticks(t3.position, 90),
            Some((vec![t2.tick, t3.tick], t3.tick))
        );
        set(500);
        assert_eq!(
            ticks(t3.position, 90),
            Some((vec![t2.tick, t3.tick], t3.tick))
        );
        assert_eq!(
            ticks(
                Position {
                    upto: 3,
                    when: ms(500)
                },
                90
            ),
            Some((vec![], t3.tick)),
            "nothing after records up to 3, nor within 90 s before"
        );
        // One message with the latest of each figure.
        let (kept, _) = h.history_after(t1.position, 0).unwrap();
        let m = h.catalogue().parse_name("open_appeals").unwrap();
        let root = h.tree().root();
        let merged = TickChanges::merged_for(&kept, h.tree(), root, &[m]);
        assert_eq!(merged.len(), 2, "the city and its district");
        assert_eq!(merged[0].1[&m].value, Some(3.0), "the latest wins");
        // A restart (a catalogue switch) cuts every resume off before it.
        h.publish_restart(h.now());
        assert_eq!(ticks(t3.position, 0), None);
    }
}
