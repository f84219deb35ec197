//! `matched`: subjects of a kind that also appear in another kind at the same org ÷ the
//! subjects of the first (veterans with a complete file ÷ veterans registered).
//!
//! Values: `[subjects matched, subjects of the first kind]`; no data until one subject.

use rustc_hash::FxHashMap as HashMap;
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
            firsts: vec![HashMap::default(); n],
            seconds: vec![HashMap::default(); n],
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
    /// Per org: each subject's records of the first kind, and of the second.
    firsts: Vec<HashMap<u64, u32>>,
    seconds: Vec<HashMap<u64, u32>>,
    subjects: Vec<i64>,
    matched: Vec<i64>,
}

/// One more record of a subject (`sign` 1) or one fewer (-1); whether the subject came or went.
fn count(records: &mut HashMap<u64, u32>, subject: u64, sign: i32) -> bool {
    if sign > 0 {
        let n = records.entry(subject).or_default();
        *n += 1;
        *n == 1
    } else {
        match records.get_mut(&subject) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                records.remove(&subject);
                true
            }
            None => false,
        }
    }
}

impl MatchedLeaf {
    fn add(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, sign: i32, t: &mut Touch) {
        let subject = hash_str(&r.subject);
        let o = org as usize;
        let delta = i64::from(sign);
        if kind == self.kind && count(&mut self.firsts[o], subject, sign) {
            t.add(&mut self.subjects, org, false, delta);
            if self.seconds[o].contains_key(&subject) {
                t.add(&mut self.matched, org, false, delta);
            }
        }
        if kind == self.with
            && count(&mut self.seconds[o], subject, sign)
            && self.firsts[o].contains_key(&subject)
        {
            t.add(&mut self.matched, org, false, delta);
        }
    }
}

impl Leaf for MatchedLeaf {
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
