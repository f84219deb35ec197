//! `elapsed`: the `quantile` of the time from each subject's first `from` record to its first
//! record of any `to` kind, over the subjects that got there, opened in the subtree (hours to
//! take a work order). Fewer hours are better.
//!
//! Values: `[the quantile's seconds, subjects that got there]`; the reading is in fractional
//! hours (`num ÷ 3600`); no data until one subject opened in the subtree got there.

use rustc_hash::FxHashMap as HashMap;
use serde::Deserialize;
use time::Date;

use super::common::{self, at, Aside, COUNTED};
use super::touch::{hash_str, Touch};
use super::Leaf;
use crate::domain::kinds::Kinds;
use crate::domain::metric::Reading;
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    from: String,
    to: Vec<String>,
    quantile: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Elapsed {
    pub from: Kind,
    pub to: Vec<Kind>,
    pub quantile: f64,
}

impl Elapsed {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let from = common::kind_named(kinds, &spec.from, "from")?;
        if spec.to.is_empty() {
            return Err("to: at least one record kind".into());
        }
        let to = spec
            .to
            .iter()
            .map(|k| common::kind_named(kinds, k, "to"))
            .collect::<Result<Vec<_>, String>>()?;
        let quantile = spec.quantile.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&quantile) {
            return Err(format!("quantile {quantile}: 0 to 1"));
        }
        if let Some(k) = std::iter::once(&from)
            .chain(&to)
            .find(|k| !common::has_subject(kinds, **k))
        {
            return Err(format!("{k} has no subject to follow a case by"));
        }
        Ok(Elapsed { from, to, quantile })
    }

    pub fn kinds(&self) -> Vec<Kind> {
        let mut k = vec![self.from];
        k.extend(self.to.iter().copied());
        k.sort_by_key(|k| k.as_str());
        k.dedup();
        k
    }

    pub fn leaf(&self, tree: &OrgTree) -> ElapsedLeaf {
        let n = tree.len();
        ElapsedLeaf {
            from: self.from,
            to: self.to.clone(),
            quantile: self.quantile,
            subjects: HashMap::default(),
            more_openings: Aside::default(),
            more_arrivals: Aside::default(),
            durations: vec![std::collections::BTreeMap::new(); n],
            counts: vec![0; n],
        }
    }

    /// Per node directly (kept "per org"): a quantile does not add up the tree.
    pub fn sql(&self) -> (String, bool) {
        let to_kinds: Vec<String> = self.to.iter().map(|k| common::quoted(k.as_str())).collect();
        // ALL, not ANY: since ClickHouse 20 an ANY INNER JOIN joins each right row once, and
        // the subjects opened at one org would all but one go missing (18.16 kept them all).
        (
            format!(
                "SELECT node AS org, [toInt64(quantileExact({quantile:?})(d)), toInt64(count())] AS vals FROM (\
                 SELECT d, ancestors FROM (\
                 SELECT argMinIf(org, (at, seq), kind = {f}) AS org, \
                 greatest(toInt64(toUInt32(minIf(at, kind IN ({t})))) - toInt64(toUInt32(minIf(at, kind = {f}))), 0) AS d \
                 FROM events WHERE {kinds} AND {COUNTED} GROUP BY subject \
                 HAVING countIf(kind = {f}) > 0 AND countIf(kind IN ({t})) > 0) AS q \
                 ALL INNER JOIN (SELECT code AS org, ancestors FROM org_nodes) AS o USING org\
                 ) ARRAY JOIN ancestors AS node GROUP BY node",
                quantile = self.quantile,
                f = common::quoted(self.from.as_str()),
                t = to_kinds.join(", "),
                kinds = common::of_kinds(&self.kinds()),
            ),
            true,
        )
    }

    /// Seconds ÷ 3600: the value is in hours, unrounded.
    pub fn reading(v: &[i64]) -> Reading {
        let has_data = at(v, 1) > 0;
        Reading {
            num: at(v, 0),
            den: has_data.then_some(3600),
            has_data,
            ..Reading::default()
        }
    }
}

/// A subject's earliest opening record (at, seq, org) and earliest arrival (at); the leaf
/// keeps the others aside, for when one is taken back.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Journey {
    opened: Option<(u32, u64, NodeIdx)>,
    arrived: Option<u32>,
}

/// The time from each subject's first `from` record to its first `to` record: the durations
/// of the subjects that got there, per subtree of the org that opened them, as sorted counts
/// (a quantile is read off them). Order-independent: each subject's duration follows its
/// earliest opening and earliest arrival, and moves when either does.
pub struct ElapsedLeaf {
    from: Kind,
    to: Vec<Kind>,
    quantile: f64,
    subjects: HashMap<u64, Journey>,
    more_openings: Aside<(u32, u64, NodeIdx)>,
    more_arrivals: Aside<u32>,
    /// Per node: duration (seconds) → subjects of the subtree that took that long.
    durations: Vec<std::collections::BTreeMap<u32, u32>>,
    counts: Vec<i64>,
}

impl ElapsedLeaf {
    fn contribution(journey: &Journey) -> Option<(NodeIdx, u32)> {
        let (opened, _, org) = journey.opened?;
        let arrived = journey.arrived?;
        Some((org, arrived.saturating_sub(opened)))
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

    /// Adds a record to its subject's journey (`retract`: takes it out), and moves the
    /// subject's duration if its earliest opening or arrival moved.
    fn change(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, retract: bool, t: &mut Touch) {
        let id = hash_str(&r.subject);
        let journey = self.subjects.entry(id).or_default();
        let before = Self::contribution(journey);
        if kind == self.from {
            let (opened, aside) = (&mut journey.opened, &mut self.more_openings);
            if retract {
                aside.remove(id, opened, (r.at, r.seq, org));
            } else {
                aside.insert(id, opened, (r.at, r.seq, org));
            }
        }
        if self.to.contains(&kind) {
            let (arrived, aside) = (&mut journey.arrived, &mut self.more_arrivals);
            if retract {
                aside.remove(id, arrived, r.at);
            } else {
                aside.insert(id, arrived, r.at);
            }
        }
        let after = Self::contribution(journey);
        if journey.opened.is_none() && journey.arrived.is_none() {
            self.subjects.remove(&id);
        }
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
}

impl Leaf for ElapsedLeaf {
    checkpointed!(subjects, more_openings, more_arrivals, durations, counts);

    fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.change(r, org, kind, false, t);
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.change(r, org, kind, true, t);
    }

    fn values(&self, node: NodeIdx, _today: Date) -> Vec<i64> {
        vec![
            self.quantile_at(node).map_or(0, i64::from),
            self.counts[node as usize],
        ]
    }
}
