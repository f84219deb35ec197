//! `distinct`: distinct subjects of a kind in the current period, distinct per org, summed over
//! the subtree (or the node alone, `own`).
//!
//! Values: `[distinct subjects in the period, subjects ever]`; no data until one.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Deserialize;
use time::Date;

use super::common::{self, period_of, PeriodSums, COUNTED};
use super::touch::{hash_str, Touch};
use super::Leaf;
use crate::domain::catalogue::Period;
use crate::domain::kinds::Kinds;
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    kind: String,
    period: Option<String>,
    #[serde(default)]
    own: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Distinct {
    pub kind: Kind,
    pub period: Period,
    pub own: bool,
}

impl Distinct {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let kind = common::kind_named(kinds, &spec.kind, "kind")?;
        if !common::has_subject(kinds, kind) {
            return Err(format!("{} has no subject to count", kind.as_str()));
        }
        Ok(Distinct {
            kind,
            period: common::period(spec.period.as_deref())?,
            own: spec.own,
        })
    }

    pub fn leaf(&self, tree: &OrgTree) -> DistinctLeaf {
        let n = tree.len();
        DistinctLeaf {
            period: self.period,
            own: self.own,
            seen: (0..n).map(|_| HashMap::default()).collect(),
            more: HashMap::default(),
            counts: PeriodSums::new(self.period, n),
            reported: vec![0; n],
        }
    }

    pub fn sql(&self, today: Date) -> (String, bool) {
        (
            format!(
                "SELECT org, [toInt64(uniqExactIf(subject, 1{p})), toInt64(uniqExact(subject))] AS vals \
                 FROM events WHERE kind = {} AND {COUNTED} GROUP BY org",
                common::quoted(self.kind.as_str()),
                p = common::in_period(self.period, today),
            ),
            self.own,
        )
    }
}

/// Distinct subjects of a kind in the current period, distinct per org.
pub struct DistinctLeaf {
    period: Period,
    own: bool,
    seen: Vec<HashMap<u32, HashSet<u64>>>,
    /// (org, period, subject) → the subject's records there beyond its first: a subject leaves
    /// the set only when its last record is taken back. Kept aside because most subjects have
    /// one record per period.
    more: HashMap<(NodeIdx, u32, u64), u32>,
    counts: PeriodSums,
    reported: Vec<i64>,
}

impl Leaf for DistinctLeaf {
    checkpointed!(seen, more, counts, reported);

    fn apply(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        let key = period_of(self.period, r.at);
        let subject = hash_str(&r.subject);
        if self.seen[org as usize]
            .entry(key)
            .or_default()
            .insert(subject)
        {
            self.counts.add(t, org, self.own, key, 1);
            t.add(&mut self.reported, org, self.own, 1);
        } else {
            *self.more.entry((org, key, subject)).or_default() += 1;
        }
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        let key = period_of(self.period, r.at);
        let subject = hash_str(&r.subject);
        if let Some(more) = self.more.get_mut(&(org, key, subject)) {
            *more -= 1;
            if *more == 0 {
                self.more.remove(&(org, key, subject));
            }
            return;
        }
        let held = self.seen[org as usize].get_mut(&key);
        if held.is_some_and(|subjects| subjects.remove(&subject)) {
            self.counts.add(t, org, self.own, key, -1);
            t.add(&mut self.reported, org, self.own, -1);
        }
    }

    fn values(&self, node: NodeIdx, today: Date) -> Vec<i64> {
        vec![
            self.counts.get(node, self.period.key(today)),
            self.reported[node as usize],
        ]
    }
}
