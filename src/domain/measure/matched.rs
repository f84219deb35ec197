//! `matched`: subjects of a kind that also appear in another kind at the same org ÷ the
//! subjects of the first (veterans with a complete file ÷ veterans registered).
//!
//! Values: `[subjects matched, subjects of the first kind]`; no data until one subject.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Deserialize;
use time::Date;

use super::common::{self, at, COUNTED};
use super::touch::{hash_str, Touch};
use super::Leaf;
use crate::domain::kinds::Kinds;
use crate::domain::metric::Reading;
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    kind: String,
    with: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub kind: Kind,
    pub with: Kind,
}

impl Matched {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let kind = common::kind_named(kinds, &spec.kind, "kind")?;
        let with = common::kind_named(kinds, &spec.with, "with")?;
        for k in [kind, with] {
            if !common::has_subject(kinds, k) {
                return Err(format!("{} has no subject to match", k.as_str()));
            }
        }
        Ok(Matched { kind, with })
    }

    pub fn leaf(&self, tree: &OrgTree) -> MatchedLeaf {
        let n = tree.len();
        MatchedLeaf {
            kind: self.kind,
            with: self.with,
            firsts: vec![HashSet::default(); n],
            seconds: vec![HashSet::default(); n],
            more: HashMap::default(),
            subjects: vec![0; n],
            matched: vec![0; n],
        }
    }

    pub fn sql(&self) -> (String, bool) {
        (
            format!(
                "SELECT org, [toInt64(sum(a AND b)), toInt64(sum(a))] AS vals FROM (\
                 SELECT org, subject, max(kind = {k}) AS a, max(kind = {w}) AS b FROM events \
                 WHERE {kinds} AND {COUNTED} GROUP BY org, subject) GROUP BY org",
                k = common::quoted(self.kind.as_str()),
                w = common::quoted(self.with.as_str()),
                kinds = common::of_kinds(&[self.kind, self.with]),
            ),
            false,
        )
    }

    pub fn reading(v: &[i64]) -> Reading {
        let has_data = super::count::has_data(v);
        Reading {
            num: at(v, 0),
            den: Some(if has_data { at(v, 1) } else { 0 }),
            has_data,
            ..Reading::default()
        }
    }
}

/// Subjects of one kind that also appear in another at the same org.
pub struct MatchedLeaf {
    kind: Kind,
    with: Kind,
    firsts: Vec<HashSet<u64>>,
    seconds: Vec<HashSet<u64>>,
    /// (org, subject, of the second kind) → the subject's records beyond its first: it leaves
    /// only when its last is taken back. Aside, because most subjects have one.
    more: HashMap<(NodeIdx, u64, bool), u32>,
    subjects: Vec<i64>,
    matched: Vec<i64>,
}

impl MatchedLeaf {
    /// One more record of a subject (`sign` 1) or one fewer (-1); whether the subject came or
    /// went.
    fn count(&mut self, org: NodeIdx, subject: u64, second: bool, sign: i32) -> bool {
        let set = if second {
            &mut self.seconds[org as usize]
        } else {
            &mut self.firsts[org as usize]
        };
        let key = (org, subject, second);
        if sign > 0 {
            if set.insert(subject) {
                return true;
            }
            *self.more.entry(key).or_default() += 1;
            return false;
        }
        match self.more.get_mut(&key) {
            Some(more) => {
                *more -= 1;
                if *more == 0 {
                    self.more.remove(&key);
                }
                false
            }
            None => set.remove(&subject),
        }
    }

    fn add(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, sign: i32, t: &mut Touch) {
        let subject = hash_str(&r.subject);
        let o = org as usize;
        let delta = i64::from(sign);
        if kind == self.kind && self.count(org, subject, false, sign) {
            t.add(&mut self.subjects, org, false, delta);
            if self.seconds[o].contains(&subject) {
                t.add(&mut self.matched, org, false, delta);
            }
        }
        if kind == self.with
            && self.count(org, subject, true, sign)
            && self.firsts[o].contains(&subject)
        {
            t.add(&mut self.matched, org, false, delta);
        }
    }
}

impl Leaf for MatchedLeaf {
    checkpointed!(firsts, seconds, more, subjects, matched);

    fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.add(r, org, kind, 1, t);
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.add(r, org, kind, -1, t);
    }

    fn values(&self, node: NodeIdx, _today: Date) -> Vec<i64> {
        vec![self.matched[node as usize], self.subjects[node as usize]]
    }
}
