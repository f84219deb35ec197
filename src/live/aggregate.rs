//! In-memory aggregates per node of the org tree, for every metric of the catalogue.
//!
//! The catalogue's measures become leaves (a ratio reads two; identical measures share one);
//! a record goes to the leaves that read its kind. What a leaf keeps and reads is its measure
//! type's ([`crate::domain::measure`]).
//! Besides the metrics, the recent past is kept per kind for spike, cluster and silence
//! detection.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use time::OffsetDateTime;

use crate::domain::catalogue::{Catalogue, Measure};
use crate::domain::measure::{Dirty, LeafState, Touch};
use crate::domain::metric::{judge, Figure, MetricId, Reading, Sample};
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};
use crate::domain::time::local_date;

/// How far back spike and cluster detection look (records older than this are not kept).
const RECENT_SECS: u32 = 40 * 86_400;

/// A metric's leaves, in its measure's `leaves()` order (a ratio: its two sides).
type Plan = Vec<usize>;

/// The recent past and arrival times in a checkpoint (kinds by name).
#[derive(serde::Serialize, serde::Deserialize)]
struct RecentSaved {
    last_received: Vec<u32>,
    as_of: u32,
    hourly: Vec<(NodeIdx, String, BTreeMap<u32, u32>)>,
    located: Vec<(u32, f64, f64, NodeIdx, String)>,
}

pub struct Aggregates {
    tree: Arc<OrgTree>,
    catalogue: Arc<Catalogue>,
    leaves: Vec<LeafState>,
    plans: HashMap<MetricId, Plan>,
    /// Per kind: the leaves that read it.
    by_kind: HashMap<Kind, Vec<usize>>,
    /// Latest arrival time of any record per subtree (for "stopped reporting").
    last_received: Vec<u32>,
    /// The time the clock-dependent state (overdue cases, the recent past) was brought to.
    as_of: u32,
    /// Records per (org, kind) per hour of `at`, for the recent past (spike detection).
    hourly: HashMap<(NodeIdx, Kind), BTreeMap<u32, u32>>,
    /// Located records of the recent past: (at, lon, lat, org, kind) (cluster detection).
    located: VecDeque<(u32, f64, f64, NodeIdx, Kind)>,
    /// Daily values of the last 30 days from the snapshots: the trend a projection extends.
    samples: HashMap<(NodeIdx, MetricId), Vec<Sample>>,
    dirty: Dirty,
    /// Tests make applying the record with this id fail, as a bug would.
    #[cfg(test)]
    pub(crate) fail_on_id: Option<String>,
}

/// The leaves of a catalogue: one per distinct measure that is not a ratio.
struct Leaves<'a> {
    tree: &'a OrgTree,
    measures: Vec<Measure>,
    leaves: Vec<LeafState>,
    by_kind: HashMap<Kind, Vec<usize>>,
}

impl Leaves<'_> {
    fn leaf(&mut self, m: &Measure) -> Option<usize> {
        if let Some(i) = self.measures.iter().position(|known| known == m) {
            return Some(i);
        }
        let leaf = m.leaf(self.tree)?;
        let i = self.leaves.len();
        for k in m.kinds() {
            self.by_kind.entry(k).or_default().push(i);
        }
        self.leaves.push(leaf);
        self.measures.push(m.clone());
        Some(i)
    }
}

impl Aggregates {
    pub fn new(tree: Arc<OrgTree>, catalogue: Arc<Catalogue>) -> Self {
        let n = tree.len();
        let mut leaves = Leaves {
            tree: &tree,
            measures: Vec::new(),
            leaves: Vec::new(),
            by_kind: HashMap::default(),
        };
        let mut plans = HashMap::default();
        for def in &catalogue.metrics {
            // The catalogue refuses a ratio of ratios: every leaf has state.
            let plan: Option<Plan> = def
                .measure
                .leaves()
                .into_iter()
                .map(|m| leaves.leaf(m))
                .collect();
            if let Some(plan) = plan {
                plans.insert(def.id, plan);
            }
        }
        let (leaves, by_kind) = (leaves.leaves, leaves.by_kind);
        Aggregates {
            tree,
            catalogue,
            leaves,
            plans,
            by_kind,
            last_received: vec![0; n],
            as_of: 0,
            hourly: HashMap::default(),
            located: VecDeque::new(),
            samples: HashMap::default(),
            dirty: Dirty::new(n),
            #[cfg(test)]
            fail_on_id: None,
        }
    }

    pub fn tree(&self) -> &OrgTree {
        &self.tree
    }

    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.catalogue
    }

    /// Nodes whose figures may have changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<NodeIdx> {
        self.dirty.take()
    }

    /// Takes one committed row in: a version (sign 1) is applied; a cancelling row (sign -1:
    /// a correction's first row, a withdrawal) takes back the version it names; a version read
    /// back as since cancelled (sign 0) is left out.
    pub fn take_in(&mut self, r: &EventRow) -> Result<(), String> {
        match r.sign {
            1 => self.apply(r),
            -1 => self.retract(&r.cancelled()),
            _ => Ok(()),
        }
    }

    /// Applies one record, or answers why it may not enter the live figures (a row stored
    /// under other rules or by an older tree: unknown org or kind, a value out of range).
    pub fn apply(&mut self, r: &EventRow) -> Result<(), String> {
        let (org, kind) = r.admissible(&self.tree, &self.catalogue.kinds)?;
        #[cfg(test)]
        if self.fail_on_id.as_deref() == Some(r.id.as_str()) {
            panic!("injected failure applying {}", r.id);
        }
        self.apply_admitted(r, org, kind);
        Ok(())
    }

    fn apply_admitted(&mut self, r: &EventRow, org: NodeIdx, kind: Kind) {
        for n in self.tree.path_to_root(org) {
            let last = &mut self.last_received[n as usize];
            *last = (*last).max(r.received_at);
        }
        if r.at + RECENT_SECS > self.as_of {
            *self
                .hourly
                .entry((org, kind))
                .or_default()
                .entry(r.at / 3600)
                .or_default() += 1;
            if let (Some(lon), Some(lat)) = (r.lon, r.lat) {
                self.located.push_back((r.at, lon, lat, org, kind));
            }
        }
        let mut touch = Touch {
            tree: &self.tree,
            dirty: &mut self.dirty,
        };
        if let Some(leaves) = self.by_kind.get(&kind) {
            for &l in leaves {
                self.leaves[l].apply(r, org, kind, &mut touch);
            }
        }
    }

    /// Takes back a record applied before (the same row), as a correction or a withdrawal
    /// does: every leaf then holds what the remaining records alone would give it. The time a
    /// subtree last received a record stays: it did receive it.
    pub fn retract(&mut self, r: &EventRow) -> Result<(), String> {
        let (org, kind) = r.admissible(&self.tree, &self.catalogue.kinds)?;
        if let Some(hours) = self.hourly.get_mut(&(org, kind)) {
            if let Some(n) = hours.get_mut(&(r.at / 3600)) {
                *n -= 1;
                if *n == 0 {
                    hours.remove(&(r.at / 3600));
                }
            }
        }
        if let (Some(lon), Some(lat)) = (r.lon, r.lat) {
            if let Some(i) = self
                .located
                .iter()
                .position(|p| *p == (r.at, lon, lat, org, kind))
            {
                self.located.remove(i);
            }
        }
        let mut touch = Touch {
            tree: &self.tree,
            dirty: &mut self.dirty,
        };
        if let Some(leaves) = self.by_kind.get(&kind) {
            for &l in leaves {
                self.leaves[l].retract(r, org, kind, &mut touch);
            }
        }
        Ok(())
    }

    /// The live state as a checkpoint holds it: the recent past and arrival times, then each
    /// leaf's state named by its type, in the catalogue's leaf order. The trend samples are
    /// not in it (they come from the snapshots at every start).
    pub fn save_parts(&self) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
        let recent = postcard::to_stdvec(&RecentSaved {
            last_received: self.last_received.clone(),
            as_of: self.as_of,
            hourly: self
                .hourly
                .iter()
                .map(|(&(org, kind), hours)| (org, kind.as_str().to_string(), hours.clone()))
                .collect(),
            located: self
                .located
                .iter()
                .map(|&(at, lon, lat, org, kind)| (at, lon, lat, org, kind.as_str().to_string()))
                .collect(),
        })
        .map_err(|e| format!("the recent past: {e}"))?;
        let mut parts = vec![("recent", recent)];
        for leaf in &self.leaves {
            let bytes = leaf
                .save()
                .map_err(|e| format!("a {} leaf: {e}", leaf.type_name()))?;
            parts.push((leaf.type_name(), bytes));
        }
        Ok(parts)
    }

    /// Puts back what [`Self::save_parts`] wrote, into aggregates just made for the same
    /// definitions and tree; answers what does not fit (the caller then rebuilds instead).
    pub fn load_parts(&mut self, parts: &[(String, &[u8])]) -> Result<(), String> {
        let Some(((first, recent), leaves)) = parts.split_first() else {
            return Err("no parts".into());
        };
        if first != "recent" || leaves.len() != self.leaves.len() {
            return Err(format!(
                "{} leaves for definitions that make {}",
                leaves.len(),
                self.leaves.len()
            ));
        }
        let recent: RecentSaved =
            postcard::from_bytes(recent).map_err(|e| format!("the recent past: {e}"))?;
        if recent.last_received.len() != self.tree.len() {
            return Err(format!(
                "{} nodes for a tree of {}",
                recent.last_received.len(),
                self.tree.len()
            ));
        }
        let kind = |name: &str| {
            self.catalogue
                .kinds
                .parse_name(name)
                .ok_or_else(|| format!("unknown kind {name}"))
        };
        let mut hourly = HashMap::default();
        for (org, name, hours) in recent.hourly {
            hourly.insert((org, kind(&name)?), hours);
        }
        let mut located = VecDeque::with_capacity(recent.located.len());
        for (at, lon, lat, org, name) in recent.located {
            located.push_back((at, lon, lat, org, kind(&name)?));
        }
        for (leaf, (type_name, bytes)) in self.leaves.iter_mut().zip(leaves) {
            if leaf.type_name() != type_name {
                return Err(format!(
                    "a {type_name} leaf where a {} is",
                    leaf.type_name()
                ));
            }
            leaf.load(bytes)
                .map_err(|e| format!("a {type_name} leaf: {e}"))?;
        }
        self.last_received = recent.last_received;
        self.as_of = recent.as_of;
        self.hourly = hourly;
        self.located = located;
        for n in 0..self.tree.len() {
            self.dirty.mark(n as NodeIdx);
        }
        Ok(())
    }

    /// Moves the clock to `now`: cases whose deadline passed become overdue, and the recent
    /// past forgets what fell out of it. Cost follows what changed, not what is held.
    pub fn refresh_clock(&mut self, now: OffsetDateTime) {
        let now = now.unix_timestamp().clamp(0, u32::MAX as i64) as u32;
        self.prune_recent(now);
        self.as_of = now;
        let mut touch = Touch {
            tree: &self.tree,
            dirty: &mut self.dirty,
        };
        for leaf in &mut self.leaves {
            leaf.advance(now, &mut touch);
        }
    }

    /// The figures of one node for the given metrics (those that apply to its level).
    pub fn figures(
        &self,
        node: NodeIdx,
        metrics: &[MetricId],
        now: OffsetDateTime,
    ) -> Vec<(MetricId, Figure)> {
        metrics
            .iter()
            .filter_map(|&m| Some((m, self.figure(node, m, now)?)))
            .collect()
    }

    /// One metric's figure at one node; `None` when the catalogue has no such metric or does
    /// not show it at the node's level.
    pub fn figure(&self, node: NodeIdx, metric: MetricId, now: OffsetDateTime) -> Option<Figure> {
        let def = self.catalogue.get(metric)?;
        if !def.applies_to(self.tree.node(node).level) {
            return None;
        }
        let reading = self.reading(node, metric, now)?;
        let history = self
            .samples
            .get(&(node, metric))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        Some(judge(def, reading, now, history))
    }

    /// The raw inputs of a figure, before it is judged: the leaves' values read by the measure
    /// type's one reading rule (the SQL recomputation reads its values by the same rule).
    pub fn reading(&self, node: NodeIdx, metric: MetricId, now: OffsetDateTime) -> Option<Reading> {
        let today = local_date(now);
        let plan = self.plans.get(&metric)?;
        let def = self.catalogue.get(metric)?;
        let values: Vec<Vec<i64>> = plan
            .iter()
            .map(|&l| self.leaves[l].values(node, today))
            .collect();
        let mut reading = def.measure.reading(&values);
        // What only the live side keeps: the age of the oldest open case.
        if let [l] = plan.as_slice() {
            if let Some(cases) = self.leaves[*l].as_cases() {
                let now_unix = now.unix_timestamp().clamp(0, u32::MAX as i64) as u32;
                reading.oldest_days = cases.oldest_days(&self.tree, node, now_unix);
            }
        }
        Some(reading)
    }

    /// For a cases metric: when the oldest breach now open in the node's subtree began — the
    /// moment its case passed a deadline (see [`CasesLeaf::first_overdue_at`]).
    ///
    /// [`CasesLeaf::first_overdue_at`]: crate::domain::measure::cases::CasesLeaf::first_overdue_at
    pub fn first_overdue_at(&self, node: NodeIdx, metric: MetricId) -> Option<u32> {
        match self.plans.get(&metric)?.as_slice() {
            [l] => self.leaves[*l]
                .as_cases()?
                .first_overdue_at(&self.tree, node),
            _ => None,
        }
    }

    /// For a cases metric: open cases in the node's subtree that turn overdue within `window`
    /// seconds (see [`CasesLeaf::due_within`]); `None` for other metrics.
    ///
    /// [`CasesLeaf::due_within`]: crate::domain::measure::cases::CasesLeaf::due_within
    pub fn due_within(&self, node: NodeIdx, metric: MetricId, window: u32) -> Option<i64> {
        match self.plans.get(&metric)?.as_slice() {
            [l] => Some(
                self.leaves[*l]
                    .as_cases()?
                    .due_within(&self.tree, node, window),
            ),
            _ => None,
        }
    }

    /// The scheduled reports a node itself must send in the current periods (every kind a
    /// reporting measure of the catalogue follows, once), by kind name.
    pub fn own_reports(
        &self,
        node: NodeIdx,
        now: OffsetDateTime,
    ) -> Vec<crate::domain::measure::reporting::OwnReport> {
        let today = local_date(now);
        let mut out: Vec<crate::domain::measure::reporting::OwnReport> = Vec::new();
        for leaf in self.leaves.iter().filter_map(|l| l.as_reporting()) {
            for report in leaf.own(&self.tree, node, today) {
                if out.iter().all(|r| r.kind != report.kind) {
                    out.push(report);
                }
            }
        }
        out.sort_by(|a, b| a.kind.as_str().cmp(b.kind.as_str()));
        out
    }

    /// Hands over the daily samples (to the state that replaces this one).
    pub fn take_samples(&mut self) -> std::collections::HashMap<(NodeIdx, MetricId), Vec<Sample>> {
        std::mem::take(&mut self.samples).into_iter().collect()
    }

    /// Replaces the daily samples used to project values to their deadlines.
    pub fn set_samples(
        &mut self,
        samples: std::collections::HashMap<(NodeIdx, MetricId), Vec<Sample>>,
    ) {
        self.samples = samples.into_iter().collect();
        for n in 0..self.tree.len() {
            self.dirty.mark(n as NodeIdx);
        }
    }

    fn prune_recent(&mut self, now: u32) {
        let horizon = now.saturating_sub(RECENT_SECS);
        while self.located.front().is_some_and(|p| p.0 < horizon) {
            self.located.pop_front();
        }
        for hours in self.hourly.values_mut() {
            while hours
                .first_key_value()
                .is_some_and(|(h, _)| *h < horizon / 3600)
            {
                hours.pop_first();
            }
        }
        self.hourly.retain(|_, h| !h.is_empty());
    }

    /// Records of `kind` in the subtree of `node` with `from <= at < to`.
    pub fn count_between(&self, node: NodeIdx, kind: Kind, from: u32, to: u32) -> u64 {
        self.tree
            .subtree(node)
            .into_iter()
            .filter_map(|o| self.hourly.get(&(o, kind)))
            .map(|hours| {
                hours
                    .range(from / 3600..to.div_ceil(3600))
                    .map(|(_, c)| *c as u64)
                    .sum::<u64>()
            })
            .sum()
    }

    /// Located records of `kind` in the subtree of `node` since `from`: (lon, lat).
    pub fn located_since(&self, node: NodeIdx, kind: Kind, from: u32) -> Vec<(f64, f64)> {
        self.located
            .iter()
            .filter(|p| p.0 >= from && p.4 == kind && self.tree.is_within(p.3, node))
            .map(|p| (p.1, p.2))
            .collect()
    }

    /// When the subtree of `node` last received a record (Unix seconds), if ever.
    pub fn last_received(&self, node: NodeIdx) -> Option<u32> {
        Some(self.last_received[node as usize]).filter(|&t| t > 0)
    }

    /// Every node's figures for every metric: the whole state, for equality checks.
    pub fn all_figures(&self, now: OffsetDateTime) -> Vec<(String, Vec<(MetricId, Figure)>)> {
        let all = self.catalogue.all();
        self.tree
            .nodes()
            .map(|(i, n)| (n.code.clone(), self.figures(i, &all, now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::org::{tree_of, Level};
    use time::macros::datetime;

    const DAY: i64 = 86_400;

    fn tree() -> Arc<OrgTree> {
        Arc::new(tree_of(&[
            ("c", Level::City, None),
            ("d1", Level::District, Some("c")),
            ("s1", Level::Street, Some("d1")),
            ("s2", Level::Street, Some("d1")),
            ("m1", Level::Community, Some("s1")),
            ("m2", Level::Community, Some("s1")),
        ]))
    }

    /// A catalogue of one metric, `m`, of the given measure (TOML of its `[measure]` table).
    fn one_metric(levels: &str, measure: &str, target: &str) -> Aggregates {
        let text = format!(
            "name = \"m\"\nlabel_zh = \"m\"\nclause = \"三\"\nlevels = {levels}\nunit = \"count\"\n\n[measure]\n{measure}\n{target}"
        );
        let catalogue = Catalogue::parse(
            &crate::domain::kinds::shipped_files("kinds"),
            &[("m.toml".into(), text)],
        )
        .unwrap();
        Aggregates::new(tree(), Arc::new(catalogue))
    }

    fn shipped() -> Aggregates {
        Aggregates::new(tree(), Arc::new(Catalogue::shipped()))
    }

    fn record(seq: u64, kind: Kind, org: &str, at: OffsetDateTime) -> EventRow {
        let at = at.unix_timestamp() as u32;
        let mut r = EventRow::blank(
            format!("e{seq}"),
            kind,
            org.into(),
            "d1".into(),
            at,
            at,
            "test",
        );
        r.seq = seq;
        // A subject and every number of the kind present (0); tests set the ones they vary.
        r.subject = format!("subject{seq}");
        let kinds = crate::domain::kinds::Kinds::shipped();
        for f in kinds
            .get(kind.as_str())
            .into_iter()
            .flat_map(|d| d.numbers())
        {
            r.set_number(f.key, 0);
        }
        r
    }

    fn metric(a: &Aggregates, name: &str) -> MetricId {
        a.catalogue().parse_name(name).unwrap()
    }

    fn at(a: &Aggregates, code: &str, name: &str, now: OffsetDateTime) -> Figure {
        let node = a.tree().get(code).unwrap();
        a.figure(node, metric(a, name), now).unwrap()
    }

    fn value(a: &Aggregates, code: &str, name: &str, now: OffsetDateTime) -> Option<f64> {
        at(a, code, name, now).value
    }

    #[test]
    fn scheduled_reports_are_expected_once_due_and_on_time_by_their_own_date() {
        // The headcount: monthly, by the 5th, from every level (6 units in this tree).
        let mut a = shipped();
        let before_due = datetime!(2026-03-04 12:00 +08:00);
        let after_due = datetime!(2026-03-09 12:00 +08:00);
        let f = |a: &Aggregates, code, now| {
            let f = at(a, code, "headcount_reporting", now);
            (f.num, f.den, f.status.as_str())
        };
        assert_eq!(
            f(&a, "c", before_due),
            (0, Some(0), "no_data"),
            "nothing due yet"
        );
        // m1 on the 3rd (on time), m2 on the 7th (late), s1 in February (another period).
        a.apply(&record(
            1,
            Kind::STAFF_HEADCOUNT,
            "m1",
            datetime!(2026-03-03 09:00 +08:00),
        ))
        .unwrap();
        a.apply(&record(
            2,
            Kind::STAFF_HEADCOUNT,
            "m2",
            datetime!(2026-03-07 09:00 +08:00),
        ))
        .unwrap();
        a.apply(&record(
            3,
            Kind::STAFF_HEADCOUNT,
            "s1",
            datetime!(2026-02-20 09:00 +08:00),
        ))
        .unwrap();
        // Before the 5th only what came is expected; after it, every unit.
        assert_eq!(f(&a, "c", before_due), (1, Some(2), "missed"));
        assert_eq!(f(&a, "c", after_due), (1, Some(6), "missed"));
        assert_eq!(f(&a, "m1", after_due), (1, Some(1), "met"));
        assert_eq!(f(&a, "s1", after_due), (1, Some(3), "missed"));
        let received = at(&a, "c", "reporting_rate", after_due);
        assert_eq!(received.extras["received_staff.headcount"], 2);
        assert_eq!(received.extras["expected_staff.headcount"], 6);
        // A second headcount of m2, dated the 2nd, makes its report on time; withdrawn, late again.
        let early = record(
            4,
            Kind::STAFF_HEADCOUNT,
            "m2",
            datetime!(2026-03-02 09:00 +08:00),
        );
        a.apply(&early).unwrap();
        assert_eq!(f(&a, "s1", after_due), (2, Some(3), "missed"));
        a.retract(&early).unwrap();
        assert_eq!(f(&a, "s1", after_due), (1, Some(3), "missed"));
    }

    #[test]
    fn values_outside_the_plausible_range_are_refused_with_the_reason() {
        let mut a = shipped();
        let mut r = record(
            1,
            Kind::STAFF_HEADCOUNT,
            "m1",
            datetime!(2021-03-01 12:00 +08:00),
        );
        r.set_number("headcount", i64::MAX);
        let e = a.apply(&r).unwrap_err();
        assert!(
            e.contains("data.headcount") && e.contains("0 to 100000"),
            "{e}"
        );
        r.set_number("headcount", 100_000);
        a.apply(&r).unwrap();
        let now = datetime!(2021-03-02 12:00 +08:00);
        assert_eq!(at(&a, "c", "training_coverage", now).den, Some(100_000));
    }

    #[test]
    fn roll_up_sums_saturate_at_the_bounds_instead_of_overflowing() {
        let mut a = shipped();
        let t = datetime!(2021-03-01 12:00 +08:00);
        let head = |seq, org: &str, n| {
            let mut r = record(seq, Kind::STAFF_HEADCOUNT, org, t);
            r.set_number("headcount", n);
            r
        };
        let (m1, m2) = (a.tree().get("m1").unwrap(), a.tree().get("m2").unwrap());
        // Past validation: i64::MAX twice under one city.
        a.apply_admitted(&head(1, "m1", i64::MAX), m1, Kind::STAFF_HEADCOUNT);
        a.apply_admitted(&head(2, "m2", i64::MAX), m2, Kind::STAFF_HEADCOUNT);
        let den = |a: &Aggregates, code| at(a, code, "training_coverage", t).den.unwrap();
        assert_eq!(den(&a, "c"), i64::MAX);
        // A later, smaller report replaces the latest: the sum moves down without wrapping.
        a.apply_admitted(&head(3, "m1", 10), m1, Kind::STAFF_HEADCOUNT);
        assert_eq!(den(&a, "m1"), 10);
        assert!(den(&a, "c") > 0);
        a.apply_admitted(&head(4, "m2", i64::MIN), m2, Kind::STAFF_HEADCOUNT);
        assert!(den(&a, "c") <= 10);
    }

    #[test]
    fn a_count_is_no_data_until_the_node_reports_its_kind_then_zero_in_a_period_without() {
        let mut a = shipped();
        let in_2026 = datetime!(2026-06-01 12:00 +08:00);
        let f = at(&a, "d1", "training_classes", in_2026);
        assert_eq!((f.value, f.status.as_str()), (None, "no_data"));
        let mut class = record(
            1,
            Kind::TRAINING_CLASS_HELD,
            "d1",
            datetime!(2025-06-01 12:00 +08:00),
        );
        class.subject = "2025-a".into();
        a.apply(&class).unwrap();
        let f = at(&a, "d1", "training_classes", in_2026);
        assert_eq!(f.value, Some(0.0));
        assert_ne!(f.status.as_str(), "no_data");
        // `own`: the city did not hold it, and its figure does not sum the district's.
        assert_eq!(value(&a, "c", "training_classes", in_2026), None);
    }

    #[test]
    fn periods_end_on_the_shanghai_calendar_not_utc() {
        for (period, last_second, next_second) in [
            (
                "year",
                datetime!(2021-12-31 23:59:59 +08:00),
                datetime!(2022-01-01 00:00:00 +08:00),
            ),
            (
                "quarter",
                datetime!(2021-03-31 23:59:59 +08:00),
                datetime!(2021-04-01 00:00:00 +08:00),
            ),
            (
                "month",
                datetime!(2021-02-28 23:59:59 +08:00),
                datetime!(2021-03-01 00:00:00 +08:00),
            ),
        ] {
            let mut a = one_metric(
                "[\"city\"]",
                &format!("type = \"count\"\nkind = \"staff.hired\"\nperiod = \"{period}\""),
                &format!("[target]\nvalue = 1\nperiod = \"{period}\""),
            );
            // 23:59:59 in Shenzhen is still the old period, though UTC is 8 hours behind.
            a.apply(&record(1, Kind::STAFF_HIRED, "m1", last_second))
                .unwrap();
            assert_eq!(value(&a, "c", "m", last_second), Some(1.0), "{period}");
            let f = at(&a, "c", "m", next_second);
            assert_eq!(f.value, Some(0.0), "{period}: a new period starts at zero");
            a.apply(&record(2, Kind::STAFF_HIRED, "m1", next_second))
                .unwrap();
            assert_eq!(value(&a, "c", "m", next_second), Some(1.0), "{period}");
            assert_eq!(value(&a, "c", "m", last_second), Some(1.0), "{period}");
            // `due` is the last day of the current period.
            let due = at(&a, "c", "m", last_second).due.unwrap();
            assert_eq!(due, last_second.date().to_string(), "{period}");
        }
    }

    #[test]
    fn counts_filter_on_flags_and_roll_up_as_sums() {
        let mut a = shipped();
        let t = datetime!(2021-05-01 10:00 +08:00);
        for (seq, org, veteran) in [(1, "m1", 1), (2, "m2", 0), (3, "s2", 1), (4, "m1", 0)] {
            let mut r = record(seq, Kind::STAFF_HIRED, org, t);
            r.set_number("veteran", i64::from(veteran));
            a.apply(&r).unwrap();
        }
        let f = at(&a, "c", "veteran_hire_share", t);
        assert_eq!((f.num, f.den), (2, Some(4)));
        let f = at(&a, "s1", "veteran_hire_share", t);
        assert_eq!((f.num, f.den), (1, Some(3)));
        let f = at(&a, "s2", "veteran_hire_share", t);
        assert_eq!((f.num, f.den, f.status.as_str()), (1, Some(1), "met"));
    }

    #[test]
    fn the_latest_report_replaces_earlier_ones_whatever_the_arrival_order() {
        let t = |d: u8| datetime!(2021-01-01 09:00 +08:00) + time::Duration::days(d as i64);
        let staffing = |seq, day, approved, filled| {
            let mut r = record(seq, Kind::STAFFING_REPORTED, "d1", t(day));
            r.set_number("approved_posts", approved);
            r.set_number("filled_posts", filled);
            r
        };
        let reports = [
            staffing(1, 0, 100, 50),
            staffing(2, 5, 100, 99),
            staffing(3, 3, 100, 10),
        ];
        let now = t(10);
        let mut in_order = shipped();
        let mut reversed = shipped();
        for r in &reports {
            in_order.apply(r).unwrap();
        }
        for r in reports.iter().rev() {
            reversed.apply(r).unwrap();
        }
        for a in [&in_order, &reversed] {
            let f = at(a, "c", "staffing_rate", now);
            assert_eq!((f.num, f.den), (99, Some(100)));
        }
        // Same time, higher seq wins.
        let mut tie = staffing(9, 5, 100, 1);
        tie.at = reports[1].at;
        in_order.apply(&tie).unwrap();
        assert_eq!(at(&in_order, "d1", "staffing_rate", now).num, 1);
    }

    #[test]
    fn elapsed_takes_the_quantile_of_first_opening_to_first_arrival_in_any_order() {
        let mut a = one_metric(
            "[\"city\", \"street\"]",
            "type = \"elapsed\"\nfrom = \"order.raised\"\nto = [\"order.taken\", \"order.completed\"]\nquantile = 0.5",
            "",
        );
        let t0 = datetime!(2021-06-01 08:00 +08:00);
        let now = datetime!(2021-07-01 08:00 +08:00);
        let hours = |h: i64| t0 + time::Duration::hours(h);
        let order = |seq, kind: &str, org: &str, subject: &str, at| {
            let mut r = record(seq, Kind::named(kind), org, at);
            r.subject = subject.into();
            r
        };
        a.apply(&order(1, "order.raised", "m1", "o1", hours(0)))
            .unwrap();
        assert_eq!(
            value(&a, "c", "m", now),
            None,
            "raised but not taken: no data, not zero"
        );
        // Taken after 10 h; a later completion does not change it.
        a.apply(&order(2, "order.taken", "m1", "o1", hours(10)))
            .unwrap();
        a.apply(&order(3, "order.completed", "m1", "o1", hours(50)))
            .unwrap();
        assert_eq!(value(&a, "c", "m", now), Some(10.0));
        // Out of order: the taking arrives before the raising; then an earlier raising of the
        // same order moves its start back.
        a.apply(&order(4, "order.taken", "m2", "o2", hours(30)))
            .unwrap();
        a.apply(&order(5, "order.raised", "m2", "o2", hours(10)))
            .unwrap();
        a.apply(&order(6, "order.raised", "m2", "o2", hours(2)))
            .unwrap();
        a.apply(&order(7, "order.raised", "s2", "o3", hours(0)))
            .unwrap();
        a.apply(&order(8, "order.taken", "s2", "o3", hours(4)))
            .unwrap();
        // Durations 10, 28 (under s1) and 4 (s2): the median at the city is the element at
        // floor(0.5 × 3) = 1 of [4, 10, 28].
        assert_eq!(value(&a, "c", "m", now), Some(10.0));
        assert_eq!(
            value(&a, "s1", "m", now),
            Some(28.0),
            "floor(0.5 × 2) = 1 of [10, 28]"
        );
        assert_eq!(value(&a, "s2", "m", now), Some(4.0));
    }

    #[test]
    fn a_case_closed_by_the_level_above_stays_open_when_its_own_level_answers() {
        let mut a = one_metric(
            "[\"city\", \"district\", \"street\"]",
            "type = \"cases\"\nopened = \"feedback.received\"\nclosed = \"feedback.replied\"\nclosed_by = \"level_above\"\ndeadlines = [{ name = \"reply\", days = 15, met_by = [\"feedback.replied\"] }]",
            "",
        );
        let t0 = datetime!(2021-06-01 10:00 +08:00);
        let now = datetime!(2021-07-01 10:00 +08:00);
        let item = |seq, kind: &str, org: &str, subject: &str| {
            let mut r = record(seq, Kind::named(kind), org, t0);
            r.subject = subject.into();
            r
        };
        // A community's item answered by its street (not the level above): still open, overdue.
        a.apply(&item(1, "feedback.received", "m1", "f1")).unwrap();
        a.apply(&item(2, "feedback.replied", "s1", "f1")).unwrap();
        a.refresh_clock(now);
        let f = at(&a, "c", "m", now);
        assert_eq!((f.value, f.overdue), (Some(1.0), Some(1)));
        // Its district answers: closed. A street's item answered by the district first, before
        // the item itself arrives: closed from the start.
        a.apply(&item(3, "feedback.replied", "d1", "f1")).unwrap();
        a.apply(&item(4, "feedback.replied", "d1", "f2")).unwrap();
        a.apply(&item(5, "feedback.received", "s2", "f2")).unwrap();
        // A district's item answered by the district itself stays open; by the city, closed.
        a.apply(&item(6, "feedback.received", "d1", "f3")).unwrap();
        a.apply(&item(7, "feedback.replied", "d1", "f3")).unwrap();
        let f = at(&a, "c", "m", now);
        assert_eq!((f.value, f.overdue), (Some(1.0), Some(1)), "f3 open");
        a.apply(&item(8, "feedback.replied", "c", "f3")).unwrap();
        let f = at(&a, "c", "m", now);
        assert_eq!((f.value, f.overdue), (Some(0.0), Some(0)));
    }

    #[test]
    fn a_sum_adds_its_field_over_the_period_and_is_no_data_until_reported() {
        let mut a = one_metric(
            "[\"city\", \"street\"]",
            "type = \"sum\"\nkind = \"volunteer.activity_held\"\nfield = \"hours\"\nperiod = \"year\"",
            "",
        );
        let t = datetime!(2021-12-31 23:59:59 +08:00);
        assert_eq!(value(&a, "c", "m", t), None, "no data, not zero");
        let activity = |seq, org: &str, hours, at| {
            let mut r = record(seq, Kind::named("volunteer.activity_held"), org, at);
            r.set_number("hours", hours);
            r
        };
        a.apply(&activity(1, "m1", 40, t)).unwrap();
        a.apply(&activity(2, "m2", 25, t)).unwrap();
        // A station that reported an activity of no hours has 0, not no data.
        a.apply(&activity(3, "s2", 0, t)).unwrap();
        assert_eq!(value(&a, "c", "m", t), Some(65.0));
        assert_eq!(value(&a, "s1", "m", t), Some(65.0));
        assert_eq!(value(&a, "s2", "m", t), Some(0.0), "reported zero hours");
        // A new year starts from zero; last year's hours stay with last year.
        let next = datetime!(2022-01-01 00:00:00 +08:00);
        assert_eq!(value(&a, "c", "m", next), Some(0.0));
        a.apply(&activity(4, "m1", 7, next)).unwrap();
        assert_eq!(value(&a, "c", "m", next), Some(7.0));
    }

    #[test]
    fn distinct_subjects_count_once_per_org_and_period_however_often_sent() {
        let mut a = shipped();
        let t = datetime!(2021-04-01 10:00 +08:00);
        let attended = |seq, org: &str, staff: &str| {
            let mut r = record(seq, Kind::TRAINING_ATTENDED, org, t);
            r.subject = staff.into();
            r
        };
        for r in [
            attended(1, "m1", "a"),
            attended(2, "m1", "a"),
            attended(3, "m1", "b"),
            attended(4, "m2", "a"),
        ] {
            a.apply(&r).unwrap();
        }
        let mut head = record(5, Kind::STAFF_HEADCOUNT, "s1", t);
        head.set_number("headcount", 4);
        a.apply(&head).unwrap();
        let f = at(&a, "s1", "training_coverage", t);
        assert_eq!((f.num, f.den), (3, Some(4)));
        // Next year the same people count again, from zero.
        let next_year = datetime!(2022-01-01 00:00 +08:00);
        assert_eq!(at(&a, "s1", "training_coverage", next_year).num, 0);
    }

    #[test]
    fn node_shares_follow_each_stations_latest_rating_and_count_stations_never_rated() {
        let mut a = shipped();
        let t = datetime!(2021-06-01 10:00 +08:00);
        let rated = |seq, org: &str, stars, demo, days: i64| {
            let mut r = record(
                seq,
                Kind::STATION_RATED,
                org,
                t + time::Duration::days(days),
            );
            r.set_number("stars", i64::from(stars));
            r.set_number("demonstration", i64::from(demo));
            r
        };
        let later = t + time::Duration::days(30);
        assert_eq!(
            at(&a, "c", "five_star_share", later).status.as_str(),
            "no_data"
        );
        a.apply(&rated(1, "s1", 5, 1, 0)).unwrap();
        // 1 of 3 stations (d1, s1, s2): the two never rated count in the denominator.
        let f = at(&a, "c", "five_star_share", later);
        assert_eq!((f.num, f.den), (1, Some(3)));
        let f = at(&a, "d1", "street_star_demo_share", later);
        assert_eq!((f.num, f.den), (1, Some(2)));
        // A later rating takes the star away; an earlier one arriving late does not restore it.
        a.apply(&rated(2, "s1", 4, 0, 10)).unwrap();
        a.apply(&rated(3, "s1", 5, 1, 5)).unwrap();
        assert_eq!(at(&a, "c", "five_star_share", later).num, 0);
        assert_eq!(at(&a, "d1", "street_star_demo_share", later).num, 0);
        // District demonstration sites count districts only.
        a.apply(&rated(4, "d1", 5, 1, 0)).unwrap();
        a.apply(&rated(5, "s2", 5, 1, 0)).unwrap();
        assert_eq!(value(&a, "c", "district_star_demos", later), Some(1.0));
    }

    #[test]
    fn matched_subjects_count_when_both_kinds_arrive_in_either_order() {
        let mut a = shipped();
        let t = datetime!(2021-06-01 10:00 +08:00);
        let person = |seq, kind, org: &str, id: &str| {
            let mut r = record(seq, kind, org, t);
            r.subject = id.into();
            r
        };
        a.apply(&person(1, Kind::ARCHIVE_COMPLETED, "m1", "p1"))
            .unwrap();
        assert_eq!(
            at(&a, "c", "archive_coverage", t).status.as_str(),
            "no_data"
        );
        a.apply(&person(2, Kind::VETERAN_REGISTERED, "m1", "p1"))
            .unwrap();
        a.apply(&person(3, Kind::VETERAN_REGISTERED, "m1", "p2"))
            .unwrap();
        a.apply(&person(4, Kind::VETERAN_REGISTERED, "m1", "p2"))
            .unwrap();
        // Matched within the org only: p2's file at another community does not count.
        a.apply(&person(5, Kind::ARCHIVE_COMPLETED, "m2", "p2"))
            .unwrap();
        let f = at(&a, "c", "archive_coverage", t);
        assert_eq!((f.num, f.den), (1, Some(2)));
        a.apply(&person(6, Kind::ARCHIVE_COMPLETED, "m1", "p2"))
            .unwrap();
        assert_eq!(value(&a, "s1", "archive_coverage", t), Some(1.0));
    }

    /// (overdue, overdue to accept, overdue to resolve) at the city.
    fn overdue(a: &Aggregates, now: i64) -> (Option<i64>, i64, i64) {
        let f = at(
            a,
            "c",
            "open_appeals",
            OffsetDateTime::from_unix_timestamp(now).unwrap(),
        );
        (
            f.overdue,
            f.extras["overdue_accept"],
            f.extras["overdue_resolve"],
        )
    }

    fn received(seq: u64, appeal: &str, unix: i64) -> EventRow {
        let mut r = record(
            seq,
            Kind::APPEAL_RECEIVED,
            "m1",
            OffsetDateTime::from_unix_timestamp(unix).unwrap(),
        );
        r.subject = appeal.into();
        r
    }

    #[test]
    fn cases_turn_overdue_as_the_clock_passes_their_deadlines_and_back() {
        let mut a = shipped();
        let t0: i64 = 1_700_000_000;
        let clock = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
        a.refresh_clock(clock(t0));
        // One already past its acceptance deadline when it arrives, one an hour short of it.
        a.apply(&received(1, "late", t0 - 20 * DAY)).unwrap();
        a.apply(&received(2, "soon", t0 - 15 * DAY + 3600)).unwrap();
        assert_eq!(overdue(&a, t0), (Some(1), 1, 0));
        a.refresh_clock(clock(t0 + 2 * 3600));
        assert_eq!(overdue(&a, t0 + 2 * 3600), (Some(2), 2, 0));
        // The clock goes back (a fixed test clock): counted as of then …
        a.refresh_clock(clock(t0));
        assert_eq!(overdue(&a, t0), (Some(1), 1, 0));
        // … and the deadlines that had passed before still fire when it comes forward again.
        a.refresh_clock(clock(t0 + 2 * 3600));
        assert_eq!(overdue(&a, t0 + 2 * 3600), (Some(2), 2, 0));
        // 60 days after receipt, "late" is also overdue to resolve — still one case.
        let later = t0 + 41 * DAY;
        a.refresh_clock(clock(later));
        assert_eq!(overdue(&a, later), (Some(2), 2, 1));
        assert_eq!(
            at(&a, "c", "open_appeals", clock(later)).oldest_days,
            Some(61)
        );
        // Accepting meets the first deadline; closing ends the case.
        let mut accepted = received(3, "soon", later);
        accepted.kind = Kind::APPEAL_ACCEPTED.as_str().into();
        a.apply(&accepted).unwrap();
        assert_eq!(overdue(&a, later), (Some(1), 1, 1));
        let mut closed = received(4, "late", later);
        closed.kind = Kind::APPEAL_CLOSED.as_str().into();
        a.apply(&closed).unwrap();
        assert_eq!(overdue(&a, later), (Some(0), 0, 0));
        let f = at(&a, "c", "open_appeals", clock(later));
        assert_eq!((f.value, f.status.as_str()), (Some(1.0), "met"));
    }

    #[test]
    fn cases_about_to_turn_overdue_are_counted_until_something_meets_their_deadline() {
        let mut a = shipped();
        let t0: i64 = 1_700_000_000;
        let clock = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
        a.refresh_clock(clock(t0));
        let appeals = metric(&a, "open_appeals");
        let (city, s2) = (a.tree().get("c").unwrap(), a.tree().get("s2").unwrap());
        let window = 5 * DAY as u32;
        // Overdue already (not "soon"); three days short of acceptance; a month short.
        a.apply(&received(1, "late", t0 - 20 * DAY)).unwrap();
        a.apply(&received(2, "soon", t0 - 12 * DAY)).unwrap();
        a.apply(&received(3, "fresh", t0 - DAY)).unwrap();
        assert_eq!(a.due_within(city, appeals, window), Some(1));
        assert_eq!(
            a.due_within(s2, appeals, window),
            Some(0),
            "another street's"
        );
        // Accepting meets the 15-day deadline; the 60-day one is far.
        let mut accepted = received(4, "soon", t0);
        accepted.kind = Kind::APPEAL_ACCEPTED.as_str().into();
        a.apply(&accepted).unwrap();
        assert_eq!(a.due_within(city, appeals, window), Some(0));
        assert_eq!(a.due_within(city, metric(&a, "visits"), window), None);
    }

    #[test]
    fn a_breach_is_dated_from_the_moment_its_case_passed_a_deadline() {
        let mut a = shipped();
        let t0: i64 = 1_700_000_000;
        let clock = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
        a.refresh_clock(clock(t0));
        let appeals = metric(&a, "open_appeals");
        let city = a.tree().get("c").unwrap();
        let s2 = a.tree().get("s2").unwrap();
        assert_eq!(a.first_overdue_at(city, appeals), None, "nothing open");
        // Received 20 days ago: it passed its 15-day acceptance deadline 5 days ago.
        a.apply(&received(1, "late", t0 - 20 * DAY)).unwrap();
        // Received 40 days ago but accepted: not overdue until its 60-day resolution deadline.
        a.apply(&received(2, "accepted", t0 - 40 * DAY)).unwrap();
        let mut accepted = received(3, "accepted", t0 - 39 * DAY);
        accepted.kind = Kind::APPEAL_ACCEPTED.as_str().into();
        a.apply(&accepted).unwrap();
        let began = (t0 - 20 * DAY + 15 * DAY + 1) as u32;
        assert_eq!(a.first_overdue_at(city, appeals), Some(began));
        assert_eq!(
            a.first_overdue_at(s2, appeals),
            None,
            "another street's subtree"
        );
        // 21 days on, the accepted one passes its resolution deadline: the earlier breach stays
        // the first.
        a.refresh_clock(clock(t0 + 21 * DAY));
        assert_eq!(a.first_overdue_at(city, appeals), Some(began));
        // The late one closes: the breach now dates from the accepted one's 60th day.
        let mut closed = received(4, "late", t0 + 21 * DAY);
        closed.kind = Kind::APPEAL_CLOSED.as_str().into();
        a.apply(&closed).unwrap();
        assert_eq!(
            a.first_overdue_at(city, appeals),
            Some((t0 - 40 * DAY + 60 * DAY + 1) as u32)
        );
    }

    #[test]
    fn a_case_belongs_to_the_org_of_its_earliest_receipt() {
        let mut a = shipped();
        let t0: i64 = 1_700_000_000;
        let now = OffsetDateTime::from_unix_timestamp(t0).unwrap();
        a.refresh_clock(now);
        let mut elsewhere = received(1, "x", t0 - DAY);
        elsewhere.org = "m2".into();
        a.apply(&elsewhere).unwrap();
        a.apply(&received(2, "x", t0 - 2 * DAY)).unwrap();
        assert_eq!(value(&a, "m1", "open_appeals", now), Some(1.0));
        // m2 never had a case of its own: no data, not zero.
        assert_eq!(value(&a, "m2", "open_appeals", now), None);
        assert_eq!(value(&a, "c", "open_appeals", now), Some(1.0));
    }

    #[test]
    fn identical_measures_share_one_leaf() {
        let text = |name: &str| {
            format!("name = \"{name}\"\nlabel_zh = \"x\"\nclause = \"三\"\nlevels = [\"city\"]\nunit = \"count\"\n[measure]\ntype = \"count\"\nkind = \"staff.hired\"\n")
        };
        let two = Catalogue::parse(
            &crate::domain::kinds::shipped_files("kinds"),
            &[("a.toml".into(), text("a")), ("b.toml".into(), text("b"))],
        )
        .unwrap();
        assert_eq!(Aggregates::new(tree(), Arc::new(two)).leaves.len(), 1);
    }
}
