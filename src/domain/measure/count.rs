//! `count`: records of a kind in the current period, optionally only those whose fields hold
//! (`when`), of the node's subtree — or of the node alone (`own`).
//!
//! Values (live and SQL alike): `[records counted, records of the kind ever]`; no data until
//! the node (or its subtree) reported the kind once.

use std::collections::BTreeMap;

use serde::Deserialize;
use time::Date;

use super::common::{self, at, holds, interned, period_of, PeriodSums, When, COUNTED};
use super::touch::Touch;
use super::Leaf;
use crate::domain::catalogue::{Condition, Period};
use crate::domain::kinds::{intern_name, Kinds};
use crate::domain::metric::Reading;
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    kind: String,
    #[serde(default)]
    when: BTreeMap<String, toml::Value>,
    period: Option<String>,
    #[serde(default)]
    own: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    pub kind: Kind,
    pub when: Vec<Condition>,
    pub period: Period,
    pub own: bool,
}

impl Count {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let kind = common::kind_named(kinds, &spec.kind, "kind")?;
        Ok(Count {
            kind,
            when: common::conditions(kinds, kind, &spec.when)?,
            period: common::period(spec.period.as_deref())?,
            own: spec.own,
        })
    }

    pub fn leaf(&self, tree: &OrgTree) -> CountLeaf {
        CountLeaf::new(None, &self.when, self.period, self.own, tree.len())
    }

    pub fn sql(&self, today: Date) -> (String, bool) {
        sql(self.kind, None, &self.when, self.period, self.own, today)
    }
}

/// The per-org query of a count or a sum (`field`).
pub(super) fn sql(
    kind: Kind,
    field: Option<&str>,
    when: &[Condition],
    period: Period,
    own: bool,
    today: Date,
) -> (String, bool) {
    let held = format!(
        "1{}{}",
        common::conditions_sql(when, false),
        common::in_period(period, today)
    );
    let value = match field {
        None => format!("countIf({held})"),
        Some(field) => format!("sumIf({}, {held})", common::num(field)),
    };
    (
        format!(
            "SELECT org, [toInt64({value}), toInt64(count())] AS vals FROM events \
             WHERE kind = {} AND {COUNTED} GROUP BY org",
            common::quoted(kind.as_str())
        ),
        own,
    )
}

/// What a count (or a sum, or any measure whose first value is its amount) counts.
pub fn amount(v: &[i64]) -> i64 {
    at(v, 0)
}

/// Reported at least once (the second value: records, reporters or subjects ever).
pub fn has_data(v: &[i64]) -> bool {
    at(v, 1) > 0
}

/// The reading of a count-like measure: its amount, no denominator.
pub fn reading(v: &[i64]) -> Reading {
    Reading {
        num: amount(v),
        den: None,
        has_data: has_data(v),
        ..Reading::default()
    }
}

/// Records of a kind in the current period — or the sum of one of their count fields (`sum`).
pub struct CountLeaf {
    /// The field summed; none: each record counts 1.
    field: Option<&'static str>,
    when: When,
    period: Period,
    own: bool,
    counts: PeriodSums,
    /// Records of the kind ever (whatever the conditions): "no data" until one.
    reported: Vec<i64>,
}

impl CountLeaf {
    pub(super) fn new(
        field: Option<&str>,
        when: &[Condition],
        period: Period,
        own: bool,
        nodes: usize,
    ) -> Self {
        CountLeaf {
            field: field.map(intern_name),
            when: interned(when),
            period,
            own,
            counts: PeriodSums::new(period, nodes),
            reported: vec![0; nodes],
        }
    }
}

impl CountLeaf {
    /// Adds a record (`sign` 1) or takes it back (`sign` -1): a count is a sum, so taking
    /// back is subtracting what it added.
    fn add(&mut self, r: &EventRow, org: NodeIdx, sign: i64, t: &mut Touch) {
        t.add(&mut self.reported, org, self.own, sign);
        if holds(&self.when, r) {
            let key = period_of(self.period, r.at);
            let delta = match self.field {
                None => 1,
                Some(field) => r.number(field).unwrap_or(0),
            };
            self.counts.add(t, org, self.own, key, sign * delta);
        }
    }
}

impl Leaf for CountLeaf {
    checkpointed!(counts, reported);

    fn apply(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        self.add(r, org, 1, t);
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, _kind: Kind, t: &mut Touch) {
        self.add(r, org, -1, t);
    }

    fn values(&self, node: NodeIdx, today: Date) -> Vec<i64> {
        vec![
            self.counts.get(node, self.period.key(today)),
            self.reported[node as usize],
        ]
    }
}
