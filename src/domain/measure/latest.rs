//! `latest`: the latest value of a field per reporting org — latest by the record's time, then
//! its seq, so arrival order does not matter — summed over the subtree (semi-additive:
//! headcounts, posts).
//!
//! Values: `[the sum of the latest values, orgs that reported]`; no data until one reported.

use serde::Deserialize;
use time::Date;

use super::common::{self, Versions, COUNTED};
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
            versions: Versions::new(n),
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
    versions: Versions<i64>,
    sums: Vec<i64>,
    reporters: Vec<i64>,
}

impl LatestLeaf {
    fn moved(&mut self, org: NodeIdx, (before, after): (Option<i64>, Option<i64>), t: &mut Touch) {
        let delta = after.unwrap_or(0).saturating_sub(before.unwrap_or(0));
        t.add(&mut self.sums, org, false, delta);
        let reporters = i64::from(after.is_some()) - i64::from(before.is_some());
        t.add(&mut self.reporters, org, false, reporters);
    }
}

impl Leaf for LatestLeaf {
    checkpointed!(versions, sums, reporters);

    fn apply(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        let value = r.number(self.field).unwrap_or(0);
        let change = self.versions.insert(org, r.at, r.seq, value);
        self.moved(org, change, t);
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        let value = r.number(self.field).unwrap_or(0);
        let change = self.versions.remove(org, r.at, r.seq, value);
        self.moved(org, change, t);
    }

    fn values(&self, node: NodeIdx, _today: Date) -> Vec<i64> {
        vec![self.sums[node as usize], self.reporters[node as usize]]
    }
}
