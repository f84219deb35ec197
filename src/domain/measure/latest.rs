//! `latest`: the latest value of a field per reporting org — latest by the record's time, then
//! its seq, so arrival order does not matter — summed over the subtree (semi-additive:
//! headcounts, posts).
//!
//! Values: `[the sum of the latest values, orgs that reported]`; no data until one reported.

use serde::Deserialize;
use time::Date;

use super::common::{self, COUNTED};
use super::touch::Touch;
use super::Leaf;
use crate::domain::kinds::{intern_name, FieldType, Kinds};
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    kind: String,
    field: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub kind: Kind,
    pub field: String,
}

impl Latest {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let kind = common::kind_named(kinds, &spec.kind, "kind")?;
        common::field_of(kinds, kind, &spec.field, &[FieldType::Count])?;
        Ok(Latest {
            kind,
            field: spec.field.clone(),
        })
    }

    pub fn leaf(&self, tree: &OrgTree) -> LatestLeaf {
        let n = tree.len();
        LatestLeaf {
            field: intern_name(&self.field),
            latest: vec![None; n],
            sums: vec![0; n],
            reporters: vec![0; n],
        }
    }

    pub fn sql(&self) -> (String, bool) {
        (
            format!(
                "SELECT org, [toInt64(argMax({}, (at, seq))), 1] AS vals FROM events \
                 WHERE kind = {} AND {COUNTED} GROUP BY org",
                common::num(&self.field),
                common::quoted(self.kind.as_str())
            ),
            false,
        )
    }
}

/// The latest value of a field per reporting org, summed (semi-additive).
pub struct LatestLeaf {
    field: &'static str,
    latest: Vec<Option<(u32, u64, i64)>>,
    sums: Vec<i64>,
    reporters: Vec<i64>,
}

impl Leaf for LatestLeaf {
    fn apply(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        let old = self.latest[org as usize];
        if old.is_some_and(|(at, seq, _)| (at, seq) > (r.at, r.seq)) {
            return;
        }
        let value = r.number(self.field).unwrap_or(0);
        self.latest[org as usize] = Some((r.at, r.seq, value));
        let before = old.map_or(0, |o| o.2);
        t.add(&mut self.sums, org, false, value.saturating_sub(before));
        t.add(&mut self.reporters, org, false, i64::from(old.is_none()));
    }

    fn values(&self, node: NodeIdx, _today: Date) -> Vec<i64> {
        vec![self.sums[node as usize], self.reporters[node as usize]]
    }
}
