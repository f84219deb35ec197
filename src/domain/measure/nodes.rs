//! `nodes`: nodes of some levels whose latest record of a kind satisfies conditions (stations
//! with the five haves, five-star stations …) — their count, or their share of all nodes of
//! those levels (`as = "share"`).
//!
//! Values: `[nodes satisfied, nodes that reported, nodes of those levels]`; no data until a
//! node of those levels in the subtree reported (and the subtree has such nodes).

use std::collections::BTreeMap;

use serde::Deserialize;
use time::Date;

use super::common::{self, at, holds, interned, Versions, When, COUNTED};
use super::touch::Touch;
use super::Leaf;
use crate::domain::catalogue::Condition;
use crate::domain::kinds::Kinds;
use crate::domain::metric::Reading;
use crate::domain::org::{Level, NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    kind: String,
    levels: Vec<Level>,
    #[serde(default)]
    when: BTreeMap<String, toml::Value>,
    #[serde(rename = "as")]
    as_: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nodes {
    pub kind: Kind,
    pub levels: Vec<Level>,
    pub when: Vec<Condition>,
    pub share: bool,
}

impl Nodes {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let kind = common::kind_named(kinds, &spec.kind, "kind")?;
        if spec.levels.iter().any(|l| {
            !kinds
                .get(kind.as_str())
                .is_some_and(|d| d.levels.contains(l))
        }) {
            return Err(format!(
                "{} records do not come from every level of {:?}",
                kind.as_str(),
                spec.levels
            ));
        }
        let share = match spec.as_.as_str() {
            "share" => true,
            "count" => false,
            other => return Err(format!("as = {other:?}: \"count\" or \"share\"")),
        };
        Ok(Nodes {
            kind,
            levels: spec.levels.clone(),
            when: common::conditions(kinds, kind, &spec.when)?,
            share,
        })
    }

    pub fn leaf(&self, tree: &OrgTree) -> NodesLeaf {
        let n = tree.len();
        let mut population = vec![0; n];
        for (idx, node) in tree.nodes() {
            if self.levels.contains(&node.level) {
                for p in tree.path_to_root(idx) {
                    population[p as usize] += 1;
                }
            }
        }
        NodesLeaf {
            levels: self.levels.clone(),
            when: interned(&self.when),
            versions: Versions::new(n),
            satisfied: vec![0; n],
            reporters: vec![0; n],
            population,
        }
    }

    /// Per org: `[1 when its latest record satisfies the conditions, 1]`; the store appends
    /// each subtree's population of the levels ([`Self::levels`]) as the third value.
    pub fn sql(&self) -> (String, bool) {
        let levels: Vec<String> = self
            .levels
            .iter()
            .map(|l| common::quoted(l.as_str()))
            .collect();
        let latest: Vec<String> = self
            .when
            .iter()
            .map(|c| {
                format!(
                    ", argMax({}, (at, seq)) AS v_{}",
                    common::num(&c.field),
                    c.field
                )
            })
            .collect();
        (
            format!(
                "SELECT org, [toInt64(1{}), 1] AS vals FROM (SELECT org{} FROM events \
                 WHERE kind = {} AND {COUNTED} AND org IN (SELECT code FROM org_nodes WHERE level IN ({})) \
                 GROUP BY org)",
                common::conditions_sql(&self.when, true),
                latest.concat(),
                common::quoted(self.kind.as_str()),
                levels.join(", ")
            ),
            false,
        )
    }

    pub fn has_data(v: &[i64]) -> bool {
        at(v, 1) > 0 && at(v, 2) > 0
    }

    pub fn reading(&self, v: &[i64]) -> Reading {
        let has_data = Self::has_data(v);
        Reading {
            num: at(v, 0),
            den: self.share.then_some(if has_data { at(v, 2) } else { 0 }),
            has_data,
            ..Reading::default()
        }
    }
}

/// Orgs of some levels whose latest record satisfies the conditions.
pub struct NodesLeaf {
    levels: Vec<Level>,
    when: When,
    /// Per org: whether each version satisfies the conditions.
    versions: Versions<bool>,
    satisfied: Vec<i64>,
    reporters: Vec<i64>,
    /// Nodes of those levels in each subtree (the share's denominator).
    population: Vec<i64>,
}

impl NodesLeaf {
    fn moved(
        &mut self,
        org: NodeIdx,
        (before, after): (Option<bool>, Option<bool>),
        t: &mut Touch,
    ) {
        let satisfied = i64::from(after == Some(true)) - i64::from(before == Some(true));
        t.add(&mut self.satisfied, org, false, satisfied);
        let reporters = i64::from(after.is_some()) - i64::from(before.is_some());
        t.add(&mut self.reporters, org, false, reporters);
    }
}

impl Leaf for NodesLeaf {
    checkpointed!(versions, satisfied, reporters);

    fn apply(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        if !self.levels.contains(&t.tree.node(org).level) {
            return;
        }
        let change = self.versions.insert(org, r.at, r.seq, holds(&self.when, r));
        self.moved(org, change, t);
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        if !self.levels.contains(&t.tree.node(org).level) {
            return;
        }
        let change = self.versions.remove(org, r.at, r.seq, holds(&self.when, r));
        self.moved(org, change, t);
    }

    fn values(&self, node: NodeIdx, _today: Date) -> Vec<i64> {
        let n = node as usize;
        vec![self.satisfied[n], self.reporters[n], self.population[n]]
    }
}
