//! In-memory aggregates per node of the org tree.
//!
//! Each record changes the own state of its org (`OrgOwn`) and, by the same delta, the subtree
//! sums (`NodeSums`) of every node on the org's path to the root — nothing else. Applying is
//! independent of arrival order ("latest replaces earlier" compares the record's time, then its
//! seq), so the state rebuilt from ClickHouse at start-up equals the state before the restart.

// FxHash: the keys are small integers and hashes, not attacker-chosen text; SipHash was a
// tenth of the aggregation time.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use time::OffsetDateTime;

use crate::domain::metric::{judge, Figure, MetricId, Reading};
use crate::domain::org::{Level, NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};
use crate::domain::time::local_date;

/// How far back spike and cluster detection look (records older than this are not kept).
const RECENT_SECS: u32 = 40 * 86_400;

/// Appeal service levels (信访工作条例): accept or refuse within 15 days of receipt, resolve
/// within 60. Configurable.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct AppealSla {
    pub accept_days: u32,
    pub resolve_days: u32,
}

impl Default for AppealSla {
    fn default() -> Self {
        AppealSla {
            accept_days: 15,
            resolve_days: 60,
        }
    }
}

/// Sums over a node's subtree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSums {
    approved: i64,
    filled: i64,
    staffing_reporters: i64,
    hires: i64,
    veteran_hires: i64,
    headcount: i64,
    /// Distinct staff trained, per calendar year.
    trained: HashMap<i32, i64>,
    rated: i64,
    five_star: i64,
    street_demos: i64,
    district_demos: i64,
    appeals_received: i64,
    open_appeals: i64,
    overdue_accept: i64,
    overdue_resolve: i64,
    overdue: i64,
    registered: i64,
    archived: i64,
    /// Latest arrival time of any record in the subtree (for "stopped reporting").
    last_received: u32,
}

/// What the org itself reported (not its subtree).
#[derive(Debug, Default)]
struct OrgOwn {
    /// (at, seq, approved, filled)
    staffing: Option<(u32, u64, i64, i64)>,
    /// (at, seq, headcount)
    headcount: Option<(u32, u64, i64)>,
    /// (at, seq, stars, demonstration)
    rating: Option<(u32, u64, u8, bool)>,
    /// Distinct classes held, per year (city and district centers only).
    classes: HashMap<i32, HashSet<u64>>,
    trained: HashMap<i32, HashSet<u64>>,
    registered: HashSet<u64>,
    completed: HashSet<u64>,
}

/// An appeal belongs to the org of its earliest `appeal.received` record.
#[derive(Debug, Clone, Default)]
struct Appeal {
    /// (at, seq, org) of the earliest receipt.
    received: Option<(u32, u64, NodeIdx)>,
    accepted: bool,
    closed: bool,
    /// What this appeal currently adds to the overdue counts of its org's path.
    counted: Lateness,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lateness {
    accept: bool,
    resolve: bool,
}

impl Appeal {
    fn open_at(&self) -> Option<(NodeIdx, u32)> {
        match (self.received, self.closed) {
            (Some((at, _, org)), false) => Some((org, at)),
            _ => None,
        }
    }
}

/// Structural counts of a subtree: the denominators of the star-rating shares.
#[derive(Debug, Clone, Copy, Default)]
struct Structure {
    stations: i64,
    streets: i64,
    districts: i64,
}

pub struct Aggregates {
    tree: std::sync::Arc<OrgTree>,
    sums: Vec<NodeSums>,
    own: Vec<OrgOwn>,
    structure: Vec<Structure>,
    appeals: HashMap<u64, Appeal>,
    sla: AppealSla,
    /// Open appeals of each org by receipt time: the oldest per subtree is read off these.
    open_by_org: Vec<std::collections::BTreeSet<(u32, u64)>>,
    /// Future moments at which an open appeal may become overdue: (time, appeal).
    deadlines: std::collections::BTreeSet<(u32, u64)>,
    /// The time overdue counts were last brought up to date.
    as_of: u32,
    /// Records per (org, kind) per hour of `at`, for the recent past (spike detection).
    hourly: HashMap<(NodeIdx, Kind), std::collections::BTreeMap<u32, u32>>,
    /// Located records of the recent past: (at, lon, lat, org, kind) (cluster detection).
    located: std::collections::VecDeque<(u32, f64, f64, NodeIdx, Kind)>,
    /// Daily values of the last 30 days from the snapshots: the trend a projection extends.
    samples: HashMap<(NodeIdx, MetricId), Vec<crate::domain::metric::Sample>>,
    dirty: Vec<bool>,
    dirty_list: Vec<NodeIdx>,
    /// Tests make applying the record with this id fail, as a bug would.
    #[cfg(test)]
    pub(crate) fail_on_id: Option<String>,
}

fn hash_str(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// Adds `delta` to a field of every node on a path; marks them dirty. Saturating: validation
/// keeps every value in a plausible range, so the sums stay far from `i64`'s limits; should a
/// value ever escape it, a figure pins at the limit instead of wrapping or panicking.
macro_rules! bump {
    ($self:ident, $org:expr, $field:ident, $delta:expr) => {{
        let delta: i64 = $delta;
        if delta != 0 {
            let tree = $self.tree.clone();
            for n in tree.path_to_root($org) {
                let sum = &mut $self.sums[n as usize].$field;
                *sum = sum.saturating_add(delta);
                $self.mark(n);
            }
        }
    }};
}

impl Aggregates {
    pub fn new(tree: std::sync::Arc<OrgTree>, sla: AppealSla) -> Self {
        let n = tree.len();
        let mut structure = vec![Structure::default(); n];
        for (idx, node) in tree.nodes() {
            for p in tree.path_to_root(idx) {
                let s = &mut structure[p as usize];
                match node.level {
                    Level::District => {
                        s.stations += 1;
                        s.districts += 1;
                    }
                    Level::Street => {
                        s.stations += 1;
                        s.streets += 1;
                    }
                    _ => {}
                }
            }
        }
        Aggregates {
            tree,
            sums: vec![NodeSums::default(); n],
            own: (0..n).map(|_| OrgOwn::default()).collect(),
            structure,
            appeals: HashMap::default(),
            sla,
            open_by_org: vec![std::collections::BTreeSet::new(); n],
            deadlines: std::collections::BTreeSet::new(),
            as_of: 0,
            hourly: HashMap::default(),
            located: std::collections::VecDeque::new(),
            samples: HashMap::default(),
            dirty: vec![false; n],
            dirty_list: Vec::new(),
            #[cfg(test)]
            fail_on_id: None,
        }
    }

    pub fn tree(&self) -> &OrgTree {
        &self.tree
    }

    fn mark(&mut self, n: NodeIdx) {
        if !self.dirty[n as usize] {
            self.dirty[n as usize] = true;
            self.dirty_list.push(n);
        }
    }

    /// Nodes whose figures may have changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<NodeIdx> {
        for &n in &self.dirty_list {
            self.dirty[n as usize] = false;
        }
        std::mem::take(&mut self.dirty_list)
    }

    /// Applies one record, or answers why it may not enter the live figures (a row stored
    /// under other rules or by an older tree: unknown org or kind, a value out of range).
    pub fn apply(&mut self, r: &EventRow) -> Result<(), String> {
        let (org, kind) = r.admissible(&self.tree)?;
        #[cfg(test)]
        if self.fail_on_id.as_deref() == Some(r.id.as_str()) {
            panic!("injected failure applying {}", r.id);
        }
        self.apply_admitted(r, org, kind);
        Ok(())
    }

    fn apply_admitted(&mut self, r: &EventRow, org: NodeIdx, kind: Kind) {
        let key = (r.at, r.seq);
        let tree = self.tree.clone();
        for n in tree.path_to_root(org) {
            let s = &mut self.sums[n as usize];
            s.last_received = s.last_received.max(r.received_at);
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
        match kind {
            Kind::StaffingReported => {
                let own = &mut self.own[org as usize];
                let old = own.staffing;
                if old.is_some_and(|(at, seq, ..)| (at, seq) > key) {
                    return;
                }
                own.staffing = Some((r.at, r.seq, r.approved_posts, r.filled_posts));
                let (oa, of) = old.map(|(_, _, a, f)| (a, f)).unwrap_or((0, 0));
                bump!(self, org, approved, r.approved_posts.saturating_sub(oa));
                bump!(self, org, filled, r.filled_posts.saturating_sub(of));
                bump!(self, org, staffing_reporters, i64::from(old.is_none()));
            }
            Kind::StaffHired => {
                bump!(self, org, hires, 1);
                bump!(self, org, veteran_hires, i64::from(r.veteran));
            }
            Kind::StaffHeadcount => {
                let own = &mut self.own[org as usize];
                let old = own.headcount;
                if old.is_some_and(|(at, seq, _)| (at, seq) > key) {
                    return;
                }
                own.headcount = Some((r.at, r.seq, r.headcount));
                bump!(
                    self,
                    org,
                    headcount,
                    r.headcount.saturating_sub(old.map(|o| o.2).unwrap_or(0))
                );
                self.mark(org);
            }
            Kind::TrainingClassHeld => {
                if self.own[org as usize]
                    .classes
                    .entry(r.year())
                    .or_default()
                    .insert(hash_str(&r.class_id))
                {
                    self.mark(org);
                }
            }
            Kind::TrainingAttended => {
                let year = r.year();
                if self.own[org as usize]
                    .trained
                    .entry(year)
                    .or_default()
                    .insert(hash_str(&r.staff_id))
                {
                    let tree = self.tree.clone();
                    for n in tree.path_to_root(org) {
                        let trained = self.sums[n as usize].trained.entry(year).or_default();
                        *trained = trained.saturating_add(1);
                        self.mark(n);
                    }
                }
            }
            Kind::StationRated => {
                let level = self.tree.node(org).level;
                let own = &mut self.own[org as usize];
                let old = own.rating;
                if old.is_some_and(|(at, seq, ..)| (at, seq) > key) {
                    return;
                }
                own.rating = Some((r.at, r.seq, r.stars, r.demonstration == 1));
                let was_five = old.is_some_and(|o| o.2 == 5);
                let was_demo = old.is_some_and(|o| o.3);
                let is_five = r.stars == 5;
                let is_demo = r.demonstration == 1;
                bump!(self, org, rated, i64::from(old.is_none()));
                bump!(
                    self,
                    org,
                    five_star,
                    i64::from(is_five) - i64::from(was_five)
                );
                let demo_delta = i64::from(is_demo) - i64::from(was_demo);
                match level {
                    Level::Street => bump!(self, org, street_demos, demo_delta),
                    Level::District => bump!(self, org, district_demos, demo_delta),
                    _ => {}
                }
                self.mark(org);
            }
            Kind::AppealReceived | Kind::AppealAccepted | Kind::AppealClosed => {
                let id = hash_str(&r.appeal_id);
                // Take the appeal's overdue contribution off its current org first: the
                // record may move it to another org.
                self.clear_lateness(id);
                let appeal = self.appeals.entry(id).or_default();
                let before = appeal.open_at();
                let owner_before = appeal.received.map(|r| r.2);
                match kind {
                    Kind::AppealReceived => {
                        if appeal
                            .received
                            .is_none_or(|(at, seq, _)| (r.at, r.seq) < (at, seq))
                        {
                            appeal.received = Some((r.at, r.seq, org));
                        }
                    }
                    Kind::AppealAccepted => appeal.accepted = true,
                    _ => appeal.closed = true,
                }
                let after = appeal.open_at();
                let owner_after = appeal.received.map(|r| r.2);
                if owner_before != owner_after {
                    if let Some(o) = owner_before {
                        bump!(self, o, appeals_received, -1);
                    }
                    if let Some(o) = owner_after {
                        bump!(self, o, appeals_received, 1);
                    }
                }
                if before != after {
                    if let Some((o, at)) = before {
                        bump!(self, o, open_appeals, -1);
                        self.open_by_org[o as usize].remove(&(at, id));
                    }
                    if let Some((o, at)) = after {
                        bump!(self, o, open_appeals, 1);
                        self.open_by_org[o as usize].insert((at, id));
                        self.schedule_deadlines(id, at);
                    }
                    // The oldest open appeal of each node above may have changed.
                    let tree = self.tree.clone();
                    for o in before.iter().chain(after.iter()).map(|(o, _)| *o) {
                        for n in tree.path_to_root(o) {
                            self.mark(n);
                        }
                    }
                }
                self.recount_lateness(id);
            }
            Kind::VeteranRegistered => {
                let id = hash_str(&r.person_id);
                let own = &mut self.own[org as usize];
                if own.registered.insert(id) {
                    let completed = own.completed.contains(&id);
                    bump!(self, org, registered, 1);
                    bump!(self, org, archived, i64::from(completed));
                }
            }
            Kind::ArchiveCompleted => {
                let id = hash_str(&r.person_id);
                let own = &mut self.own[org as usize];
                if own.completed.insert(id) {
                    let registered = own.registered.contains(&id);
                    bump!(self, org, archived, i64::from(registered));
                }
            }
        }
    }

    /// Whether an appeal is past its deadlines at `self.as_of`.
    fn lateness(&self, a: &Appeal) -> Lateness {
        let Some((_, received)) = a.open_at() else {
            return Lateness::default();
        };
        let age = self.as_of.saturating_sub(received);
        let day = 86_400u32;
        Lateness {
            accept: !a.accepted && age > self.sla.accept_days * day,
            resolve: age > self.sla.resolve_days * day,
        }
    }

    fn clear_lateness(&mut self, id: u64) {
        self.set_lateness(id, Lateness::default());
    }

    /// Brings one appeal's contribution to the overdue counts up to date.
    fn recount_lateness(&mut self, id: u64) {
        let Some(a) = self.appeals.get(&id) else {
            return;
        };
        let now = self.lateness(a);
        self.set_lateness(id, now);
    }

    fn set_lateness(&mut self, id: u64, now: Lateness) {
        let Some(a) = self.appeals.get(&id) else {
            return;
        };
        let old = a.counted;
        if now == old {
            return;
        }
        // Lateness only counts while open, so the org is the receipt's.
        let org = a.received.map(|r| r.2);
        if let Some(a) = self.appeals.get_mut(&id) {
            a.counted = now;
        }
        if let Some(org) = org {
            let delta = |new: bool, old: bool| i64::from(new) - i64::from(old);
            bump!(self, org, overdue_accept, delta(now.accept, old.accept));
            bump!(self, org, overdue_resolve, delta(now.resolve, old.resolve));
            bump!(
                self,
                org,
                overdue,
                delta(now.accept || now.resolve, old.accept || old.resolve)
            );
        }
    }

    /// Remembers when an appeal received at `received` turns overdue. A deadline already past
    /// is not kept: the appeal's lateness was just counted at `as_of` (most appeals of a
    /// year-long backlog arrive overdue, and the set is the costliest part of applying them).
    fn schedule_deadlines(&mut self, id: u64, received: u32) {
        let day = 86_400u32;
        for days in [self.sla.accept_days, self.sla.resolve_days] {
            let due = received.saturating_add(days * day).saturating_add(1);
            if due > self.as_of {
                self.deadlines.insert((due, id));
            }
        }
    }

    /// Moves the appeal clock to `now`: appeals whose deadline passed become overdue. Cost is
    /// proportional to the deadlines passed, not to the appeals held.
    pub fn refresh_appeals(&mut self, now: OffsetDateTime) {
        let now = now.unix_timestamp().clamp(0, u32::MAX as i64) as u32;
        self.prune_recent(now);
        if now < self.as_of {
            // The clock went back (tests with a fixed clock): recount everything, and schedule
            // again the deadlines that had passed.
            self.as_of = now;
            self.deadlines.clear();
            let open: Vec<(u64, u32)> = self
                .appeals
                .iter()
                .filter_map(|(id, a)| a.open_at().map(|(_, at)| (*id, at)))
                .collect();
            for (id, at) in open {
                self.recount_lateness(id);
                self.schedule_deadlines(id, at);
            }
            return;
        }
        self.as_of = now;
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            self.recount_lateness(id);
        }
    }

    /// Receipt time of the oldest open appeal in a node's subtree.
    fn oldest_open(&self, node: NodeIdx) -> Option<u32> {
        self.tree
            .subtree(node)
            .into_iter()
            .filter_map(|o| self.open_by_org[o as usize].first().map(|(at, _)| *at))
            .min()
    }

    /// The figures of one node for the given metrics (those that apply to its level).
    pub fn figures(
        &self,
        node: NodeIdx,
        metrics: &[MetricId],
        now: OffsetDateTime,
    ) -> Vec<(MetricId, Figure)> {
        let level = self.tree.node(node).level;
        metrics
            .iter()
            .filter(|m| m.applies_to(level))
            .map(|&m| (m, self.figure(node, m, now)))
            .collect()
    }

    pub fn figure(&self, node: NodeIdx, metric: MetricId, now: OffsetDateTime) -> Figure {
        let s = &self.sums[node as usize];
        let st = self.structure[node as usize];
        let year = local_date(now).year();
        let ratio = |num: i64, den: i64, has: bool| Reading {
            num,
            den: Some(if has { den } else { 0 }),
            has_data: has,
            overdue: None,
        };
        let reading = match metric {
            MetricId::StaffingRate => ratio(s.filled, s.approved, s.staffing_reporters > 0),
            MetricId::VeteranHireShare => ratio(s.veteran_hires, s.hires, s.hires > 0),
            MetricId::TrainingClasses => {
                let classes = &self.own[node as usize].classes;
                Reading {
                    num: classes.get(&year).map_or(0, |c| c.len() as i64),
                    den: None,
                    // A count is no data until the node reported its kind once; from then on a
                    // year without any is 0.
                    has_data: !classes.is_empty(),
                    overdue: None,
                }
            }
            MetricId::TrainingCoverage => ratio(
                s.trained.get(&year).copied().unwrap_or(0),
                s.headcount,
                s.headcount > 0,
            ),
            MetricId::DistrictStarDemos => Reading {
                num: s.district_demos,
                den: None,
                has_data: s.rated > 0,
                overdue: None,
            },
            MetricId::StreetStarDemoShare => {
                ratio(s.street_demos, st.streets, s.rated > 0 && st.streets > 0)
            }
            MetricId::FiveStarShare => ratio(s.five_star, st.stations, s.rated > 0),
            MetricId::OpenAppeals => Reading {
                num: s.open_appeals,
                den: None,
                has_data: s.appeals_received > 0,
                overdue: Some(s.overdue),
            },
            MetricId::ArchiveCoverage => ratio(s.archived, s.registered, s.registered > 0),
        };
        let history = self
            .samples
            .get(&(node, metric))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut f = judge(metric, reading, now, history);
        if metric == MetricId::OpenAppeals {
            f.overdue_accept = Some(s.overdue_accept);
            f.overdue_resolve = Some(s.overdue_resolve);
            let now_unix = now.unix_timestamp().max(0) as u32;
            f.oldest_days = self
                .oldest_open(node)
                .map(|t| (now_unix.saturating_sub(t) / 86_400) as i64);
        }
        f
    }

    /// Replaces the daily samples used to project values to their deadlines.
    pub fn set_samples(
        &mut self,
        samples: std::collections::HashMap<(NodeIdx, MetricId), Vec<crate::domain::metric::Sample>>,
    ) {
        self.samples = samples.into_iter().collect();
        for n in 0..self.sums.len() {
            self.mark(n as NodeIdx);
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
        Some(self.sums[node as usize].last_received).filter(|&t| t > 0)
    }

    /// Every node's figures for every metric: the whole state, for equality checks.
    pub fn all_figures(&self, now: OffsetDateTime) -> Vec<(String, Vec<(MetricId, Figure)>)> {
        self.tree
            .nodes()
            .map(|(i, n)| (n.code.clone(), self.figures(i, &MetricId::ALL, now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::org::tree_of;

    const DAY: i64 = 86_400;

    fn received(seq: u64, appeal: &str, at: i64) -> EventRow {
        let mut r = EventRow::blank(
            format!("e{seq}"),
            Kind::AppealReceived,
            "m1".into(),
            "d1".into(),
            at as u32,
            at as u32,
            "test",
        );
        r.seq = seq;
        r.appeal_id = appeal.into();
        r
    }

    /// (overdue, overdue to accept, overdue to resolve) at the city.
    fn overdue(a: &Aggregates, now: i64) -> (Option<i64>, Option<i64>, Option<i64>) {
        let f = a.figure(
            a.tree().root(),
            MetricId::OpenAppeals,
            OffsetDateTime::from_unix_timestamp(now).unwrap(),
        );
        (f.overdue, f.overdue_accept, f.overdue_resolve)
    }

    fn headcount(seq: u64, org: &str, n: i64) -> EventRow {
        let mut r = EventRow::blank(
            format!("h{seq}"),
            Kind::StaffHeadcount,
            org.into(),
            "d1".into(),
            1_700_000_000,
            1_700_000_000,
            "test",
        );
        r.seq = seq;
        r.headcount = n;
        r
    }

    fn two_communities() -> Aggregates {
        let tree = tree_of(&[
            ("c", Level::City, None),
            ("d1", Level::District, Some("c")),
            ("s1", Level::Street, Some("d1")),
            ("m1", Level::Community, Some("s1")),
            ("m2", Level::Community, Some("s1")),
        ]);
        Aggregates::new(std::sync::Arc::new(tree), AppealSla::default())
    }

    #[test]
    fn values_outside_the_plausible_range_are_refused_with_the_reason() {
        let mut a = two_communities();
        let e = a.apply(&headcount(1, "m1", i64::MAX)).unwrap_err();
        assert!(
            e.contains("data.headcount") && e.contains("0 to 100000"),
            "{e}"
        );
        a.apply(&headcount(2, "m1", 100_000)).unwrap();
        assert_eq!(a.sums[a.tree().root() as usize].headcount, 100_000);
    }

    #[test]
    fn roll_up_sums_saturate_at_the_bounds_instead_of_overflowing() {
        let mut a = two_communities();
        let org = |a: &Aggregates, code: &str| a.tree().get(code).unwrap();
        // The two records, past validation: i64::MAX twice under one city.
        let (m1, m2) = (org(&a, "m1"), org(&a, "m2"));
        a.apply_admitted(&headcount(1, "m1", i64::MAX), m1, Kind::StaffHeadcount);
        a.apply_admitted(&headcount(2, "m2", i64::MAX), m2, Kind::StaffHeadcount);
        let root = a.tree().root() as usize;
        assert_eq!(a.sums[root].headcount, i64::MAX);
        // A later, smaller report replaces the latest: the sum moves down without wrapping.
        a.apply_admitted(&headcount(3, "m1", 10), m1, Kind::StaffHeadcount);
        assert_eq!(a.sums[m1 as usize].headcount, 10);
        assert!(a.sums[root].headcount > 0);
        // And at the other end: no panic, no wrap to a huge positive sum.
        a.apply_admitted(&headcount(4, "m2", i64::MIN), m2, Kind::StaffHeadcount);
        assert!(a.sums[root].headcount <= 10);
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let _ = a.figure(a.tree().root(), MetricId::TrainingCoverage, now);
    }

    #[test]
    fn classes_are_no_data_until_the_node_reports_one_and_zero_in_a_year_without() {
        let tree = tree_of(&[("c", Level::City, None), ("d1", Level::District, Some("c"))]);
        let mut a = Aggregates::new(std::sync::Arc::new(tree), AppealSla::default());
        let d1 = a.tree().get("d1").unwrap();
        let in_2026 = OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap();
        let f = a.figure(d1, MetricId::TrainingClasses, in_2026);
        assert_eq!((f.value, f.status.as_str()), (None, "no_data"));
        // A class in 2025: 2026 has none yet, which is now 0, not no data.
        let mut class = EventRow::blank(
            "k1".into(),
            Kind::TrainingClassHeld,
            "d1".into(),
            "d1".into(),
            1_750_000_000,
            1_750_000_000,
            "test",
        );
        class.class_id = "2025-a".into();
        a.apply(&class).unwrap();
        let f = a.figure(d1, MetricId::TrainingClasses, in_2026);
        assert_eq!(f.value, Some(0.0));
        assert_ne!(f.status.as_str(), "no_data");
    }

    #[test]
    fn appeals_turn_overdue_as_the_clock_passes_their_deadlines_and_back() {
        let tree = tree_of(&[
            ("c", Level::City, None),
            ("d1", Level::District, Some("c")),
            ("s1", Level::Street, Some("d1")),
            ("m1", Level::Community, Some("s1")),
        ]);
        let mut a = Aggregates::new(std::sync::Arc::new(tree), AppealSla::default());
        let t0: i64 = 1_700_000_000;
        let at = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
        a.refresh_appeals(at(t0));
        // One already past its acceptance deadline when it arrives, one an hour short of it.
        a.apply(&received(1, "late", t0 - 20 * DAY)).unwrap();
        a.apply(&received(2, "soon", t0 - 15 * DAY + 3600)).unwrap();
        assert_eq!(overdue(&a, t0), (Some(1), Some(1), Some(0)));
        a.refresh_appeals(at(t0 + 2 * 3600));
        assert_eq!(overdue(&a, t0 + 2 * 3600), (Some(2), Some(2), Some(0)));
        // The clock goes back (a fixed test clock): counted as of then …
        a.refresh_appeals(at(t0));
        assert_eq!(overdue(&a, t0), (Some(1), Some(1), Some(0)));
        // … and the deadlines that had passed before still fire when it comes forward again.
        a.refresh_appeals(at(t0 + 2 * 3600));
        assert_eq!(overdue(&a, t0 + 2 * 3600), (Some(2), Some(2), Some(0)));
        // 60 days after receipt, "late" is also overdue to resolve.
        let later = t0 + 41 * DAY;
        a.refresh_appeals(at(later));
        assert_eq!(overdue(&a, later), (Some(2), Some(2), Some(1)));
    }
}
