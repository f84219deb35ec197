//! The live state of each measure type (see [`crate::domain::catalogue`]): what one leaf of a
//! metric keeps, how a record changes it, and what it reads at a node.
//!
//! A record changes its org's own state and, by the same delta, the subtree sums of every node
//! on the org's path to the root (or of the org alone, for `own` measures) — nothing else.
//! "Latest replaces earlier" compares the record's time, then its seq, so applying is
//! independent of arrival order and a rebuild from ClickHouse equals the state it replaces.

// FxHash: the keys are small integers and hashes, not attacker-chosen text; SipHash was a
// tenth of the aggregation time.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use time::Date;

use super::cases::CasesLeaf;
use super::touch::{hash_str, Touch};
use crate::domain::catalogue::{Condition, Measure, Period};
use crate::domain::kinds::intern_name;
use crate::domain::metric::Reading;
use crate::domain::org::{Level, NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};
use crate::domain::time::local_date_of;

/// Sums per node and per period (a single sum when the period is `All`).
enum PeriodSums {
    All(Vec<i64>),
    By(Vec<HashMap<u32, i64>>),
}

impl PeriodSums {
    fn new(period: Period, nodes: usize) -> Self {
        match period {
            Period::All => PeriodSums::All(vec![0; nodes]),
            _ => PeriodSums::By((0..nodes).map(|_| HashMap::default()).collect()),
        }
    }

    fn add(&mut self, t: &mut Touch, org: NodeIdx, own: bool, key: u32, delta: i64) {
        match self {
            PeriodSums::All(sums) => t.add(sums, org, own, delta),
            PeriodSums::By(per_node) => {
                let tree = t.tree;
                let up = (!own).then(|| tree.path_to_root(org));
                let only = own.then_some(org);
                for n in only.into_iter().chain(up.into_iter().flatten()) {
                    let sum = per_node[n as usize].entry(key).or_default();
                    *sum = sum.saturating_add(delta);
                    t.dirty.mark(n);
                }
            }
        }
    }

    fn get(&self, node: NodeIdx, key: u32) -> i64 {
        match self {
            PeriodSums::All(sums) => sums[node as usize],
            PeriodSums::By(per_node) => per_node[node as usize].get(&key).copied().unwrap_or(0),
        }
    }
}

/// The period holding a record's time (no date arithmetic for `All`).
fn period_of(period: Period, at: u32) -> u32 {
    match period {
        Period::All => 0,
        p => p.key(local_date_of(at)),
    }
}

/// Conditions as a leaf keeps them: field names interned, so that a row validated here (whose
/// keys are the same interned names) finds them by address.
type When = Vec<(&'static str, i64)>;

fn interned(when: &[Condition]) -> When {
    when.iter()
        .map(|c| (intern_name(&c.field), c.equals))
        .collect()
}

fn holds(when: &When, r: &EventRow) -> bool {
    when.iter()
        .all(|&(field, equals)| r.number(field) == Some(equals))
}

/// Records of a kind in the current period, optionally only those whose conditions hold.
pub(super) struct CountLeaf {
    /// The field summed (`sum`); none: each record counts 1.
    sum: Option<&'static str>,
    when: When,
    period: Period,
    own: bool,
    counts: PeriodSums,
    /// Records of the kind ever (whatever the conditions): "no data" until one.
    reported: Vec<i64>,
}

/// Distinct subjects of a kind in the current period, distinct per org.
pub(super) struct DistinctLeaf {
    period: Period,
    own: bool,
    seen: Vec<HashMap<u32, HashSet<u64>>>,
    counts: PeriodSums,
    reported: Vec<i64>,
}

/// The latest value of a field per reporting org, summed (semi-additive).
pub(super) struct LatestLeaf {
    field: &'static str,
    latest: Vec<Option<(u32, u64, i64)>>,
    sums: Vec<i64>,
    reporters: Vec<i64>,
}

/// Orgs of some levels whose latest record satisfies the conditions.
pub(super) struct NodesLeaf {
    levels: Vec<Level>,
    when: When,
    share: bool,
    latest: Vec<Option<(u32, u64, bool)>>,
    satisfied: Vec<i64>,
    reporters: Vec<i64>,
    /// Nodes of those levels in each subtree (the share's denominator).
    population: Vec<i64>,
}

/// Subjects of one kind that also appear in another at the same org.
pub(super) struct MatchedLeaf {
    kind: Kind,
    with: Kind,
    firsts: Vec<HashSet<u64>>,
    seconds: Vec<HashSet<u64>>,
    subjects: Vec<i64>,
    matched: Vec<i64>,
}

/// One leaf of a metric: a measure other than a ratio (a ratio reads two leaves).
pub(super) enum Leaf {
    Count(CountLeaf),
    Distinct(DistinctLeaf),
    Latest(LatestLeaf),
    Nodes(NodesLeaf),
    Matched(MatchedLeaf),
    Cases(Box<CasesLeaf>),
    Elapsed(Box<ElapsedLeaf>),
}

/// The time from each subject's first `from` record to its first `to` record: the durations
/// of the subjects that got there, per subtree of the org that opened them, as sorted counts
/// (a quantile is read off them). Order-independent: each subject keeps its earliest opening
/// and earliest arrival, and its duration moves when either does.
/// A subject's earliest opening (at, seq, org) and earliest arrival.
type Journey = (Option<(u32, u64, NodeIdx)>, Option<u32>);

pub(super) struct ElapsedLeaf {
    from: Kind,
    to: Vec<Kind>,
    quantile: f64,
    /// Per subject: the earliest opening (at, seq, org), the earliest arrival.
    subjects: HashMap<u64, Journey>,
    /// Per node: duration (seconds) → subjects of the subtree that took that long.
    durations: Vec<std::collections::BTreeMap<u32, u32>>,
    counts: Vec<i64>,
}

impl ElapsedLeaf {
    fn contribution(state: &Journey) -> Option<(NodeIdx, u32)> {
        match state {
            (Some((opened, _, org)), Some(arrived)) => {
                Some((*org, arrived.saturating_sub(*opened)))
            }
            _ => None,
        }
    }

    fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        let id = hash_str(&r.subject);
        let state = self.subjects.entry(id).or_default();
        let before = Self::contribution(state);
        if kind == self.from && state.0.is_none_or(|(at, seq, _)| (r.at, r.seq) < (at, seq)) {
            state.0 = Some((r.at, r.seq, org));
        }
        if self.to.contains(&kind) && state.1.is_none_or(|at| r.at < at) {
            state.1 = Some(r.at);
        }
        let after = Self::contribution(state);
        if before == after {
            return;
        }
        let tree = t.tree;
        if let Some((o, d)) = before {
            for n in tree.path_to_root(o) {
                let map = &mut self.durations[n as usize];
                if let Some(c) = map.get_mut(&d) {
                    *c -= 1;
                    if *c == 0 {
                        map.remove(&d);
                    }
                }
            }
            t.add(&mut self.counts, o, false, -1);
        }
        if let Some((o, d)) = after {
            for n in tree.path_to_root(o) {
                *self.durations[n as usize].entry(d).or_default() += 1;
            }
            t.add(&mut self.counts, o, false, 1);
        }
    }

    /// The quantile's duration in seconds at a node: the element at `floor(q × n)` (the last
    /// for q = 1) of the sorted durations — as ClickHouse's `quantileExact` picks it.
    fn quantile_at(&self, node: NodeIdx) -> Option<u32> {
        let n = self.counts[node as usize];
        if n <= 0 {
            return None;
        }
        let index = ((self.quantile * n as f64) as i64).min(n - 1);
        let mut seen = 0i64;
        for (d, c) in &self.durations[node as usize] {
            seen += i64::from(*c);
            if seen > index {
                return Some(*d);
            }
        }
        None
    }
}

impl Leaf {
    /// The state for a measure; `None` for a ratio (made of two leaves).
    pub fn new(measure: &Measure, tree: &OrgTree) -> Option<Leaf> {
        let n = tree.len();
        Some(match measure {
            Measure::Count {
                when,
                period,
                own,
                sum,
                ..
            } => Leaf::Count(CountLeaf {
                sum: sum.as_deref().map(intern_name),
                when: interned(when),
                period: *period,
                own: *own,
                counts: PeriodSums::new(*period, n),
                reported: vec![0; n],
            }),
            Measure::Distinct { period, own, .. } => Leaf::Distinct(DistinctLeaf {
                period: *period,
                own: *own,
                seen: (0..n).map(|_| HashMap::default()).collect(),
                counts: PeriodSums::new(*period, n),
                reported: vec![0; n],
            }),
            Measure::Latest { field, .. } => Leaf::Latest(LatestLeaf {
                field: intern_name(field),
                latest: vec![None; n],
                sums: vec![0; n],
                reporters: vec![0; n],
            }),
            Measure::Nodes {
                levels,
                when,
                share,
                ..
            } => {
                let mut population = vec![0; n];
                for (idx, node) in tree.nodes() {
                    if levels.contains(&node.level) {
                        for p in tree.path_to_root(idx) {
                            population[p as usize] += 1;
                        }
                    }
                }
                Leaf::Nodes(NodesLeaf {
                    levels: levels.clone(),
                    when: interned(when),
                    share: *share,
                    latest: vec![None; n],
                    satisfied: vec![0; n],
                    reporters: vec![0; n],
                    population,
                })
            }
            Measure::Matched { kind, with } => Leaf::Matched(MatchedLeaf {
                kind: *kind,
                with: *with,
                firsts: vec![HashSet::default(); n],
                seconds: vec![HashSet::default(); n],
                subjects: vec![0; n],
                matched: vec![0; n],
            }),
            Measure::Cases {
                opened,
                closed,
                deadlines,
                level_above,
            } => {
                let mut cases = CasesLeaf::new(*opened, *closed, deadlines, n);
                if *level_above {
                    cases = cases.closed_by_level_above(tree);
                }
                Leaf::Cases(Box::new(cases))
            }
            Measure::Elapsed { from, to, quantile } => Leaf::Elapsed(Box::new(ElapsedLeaf {
                from: *from,
                to: to.clone(),
                quantile: *quantile,
                subjects: HashMap::default(),
                durations: vec![std::collections::BTreeMap::new(); n],
                counts: vec![0; n],
            })),
            Measure::Ratio { .. } => return None,
        })
    }

    /// Applies a record of a kind this leaf reads.
    pub fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        match self {
            Leaf::Count(c) => {
                t.add(&mut c.reported, org, c.own, 1);
                if holds(&c.when, r) {
                    let key = period_of(c.period, r.at);
                    let delta = match &c.sum {
                        None => 1,
                        Some(field) => r.number(field).unwrap_or(0),
                    };
                    c.counts.add(t, org, c.own, key, delta);
                }
            }
            Leaf::Distinct(d) => {
                let key = period_of(d.period, r.at);
                let subject = hash_str(&r.subject);
                if d.seen[org as usize].entry(key).or_default().insert(subject) {
                    d.counts.add(t, org, d.own, key, 1);
                    t.add(&mut d.reported, org, d.own, 1);
                }
            }
            Leaf::Latest(l) => {
                let old = l.latest[org as usize];
                if old.is_some_and(|(at, seq, _)| (at, seq) > (r.at, r.seq)) {
                    return;
                }
                let value = r.number(l.field).unwrap_or(0);
                l.latest[org as usize] = Some((r.at, r.seq, value));
                let before = old.map_or(0, |o| o.2);
                t.add(&mut l.sums, org, false, value.saturating_sub(before));
                t.add(&mut l.reporters, org, false, i64::from(old.is_none()));
            }
            Leaf::Nodes(s) => {
                if !s.levels.contains(&t.tree.node(org).level) {
                    return;
                }
                let old = s.latest[org as usize];
                if old.is_some_and(|(at, seq, _)| (at, seq) > (r.at, r.seq)) {
                    return;
                }
                let now = holds(&s.when, r);
                s.latest[org as usize] = Some((r.at, r.seq, now));
                let was = old.is_some_and(|o| o.2);
                t.add(
                    &mut s.satisfied,
                    org,
                    false,
                    i64::from(now) - i64::from(was),
                );
                t.add(&mut s.reporters, org, false, i64::from(old.is_none()));
            }
            Leaf::Matched(m) => {
                let subject = hash_str(&r.subject);
                let o = org as usize;
                if kind == m.kind && m.firsts[o].insert(subject) {
                    t.add(&mut m.subjects, org, false, 1);
                    if m.seconds[o].contains(&subject) {
                        t.add(&mut m.matched, org, false, 1);
                    }
                }
                if kind == m.with && m.seconds[o].insert(subject) && m.firsts[o].contains(&subject)
                {
                    t.add(&mut m.matched, org, false, 1);
                }
            }
            Leaf::Cases(c) => c.apply(r, org, kind, t),
            Leaf::Elapsed(e) => e.apply(r, org, kind, t),
        }
    }

    /// What the leaf counts at a node today: the count, the sum, or a share's numerator.
    pub fn amount(&self, node: NodeIdx, today: Date) -> i64 {
        let n = node as usize;
        match self {
            Leaf::Count(c) => c.counts.get(node, c.period.key(today)),
            Leaf::Distinct(d) => d.counts.get(node, d.period.key(today)),
            Leaf::Latest(l) => l.sums[n],
            Leaf::Nodes(s) => s.satisfied[n],
            Leaf::Matched(m) => m.matched[n],
            Leaf::Cases(c) => c.open(node),
            Leaf::Elapsed(e) => e.quantile_at(node).map_or(0, i64::from),
        }
    }

    /// Whether anything feeding the leaf was reported at the node (its subtree, or the node
    /// itself for `own` measures): no data is never zero.
    pub fn has_data(&self, node: NodeIdx) -> bool {
        let n = node as usize;
        match self {
            Leaf::Count(c) => c.reported[n] > 0,
            Leaf::Distinct(d) => d.reported[n] > 0,
            Leaf::Latest(l) => l.reporters[n] > 0,
            Leaf::Nodes(s) => s.reporters[n] > 0 && s.population[n] > 0,
            Leaf::Matched(m) => m.subjects[n] > 0,
            Leaf::Cases(c) => c.has_data(node),
            Leaf::Elapsed(e) => e.counts[n] > 0,
        }
    }

    /// The leaf read as a metric of its own.
    pub fn reading(&self, tree: &OrgTree, node: NodeIdx, today: Date, now: u32) -> Reading {
        let has_data = self.has_data(node);
        let n = node as usize;
        let share = |num: i64, den: i64| Reading {
            num,
            den: Some(if has_data { den } else { 0 }),
            has_data,
            ..Reading::default()
        };
        match self {
            Leaf::Nodes(s) if s.share => share(s.satisfied[n], s.population[n]),
            Leaf::Matched(m) => share(m.matched[n], m.subjects[n]),
            Leaf::Cases(c) => c.reading(tree, node, now),
            // Seconds ÷ 3600: the value is in hours, unrounded.
            Leaf::Elapsed(_) if has_data => Reading {
                num: self.amount(node, today),
                den: Some(3600),
                has_data,
                ..Reading::default()
            },
            _ => Reading {
                num: self.amount(node, today),
                den: None,
                has_data,
                ..Reading::default()
            },
        }
    }

    pub fn as_cases(&self) -> Option<&CasesLeaf> {
        match self {
            Leaf::Cases(c) => Some(c),
            _ => None,
        }
    }

    pub fn as_cases_mut(&mut self) -> Option<&mut CasesLeaf> {
        match self {
            Leaf::Cases(c) => Some(c),
            _ => None,
        }
    }
}
