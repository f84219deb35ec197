//! `sum`: a count field summed over the records of a kind in the current period (volunteer
//! hours, placements) — a `count` whose records weigh their field.
//!
//! Values: `[the sum, records of the kind ever]`; no data until one record.

use std::collections::BTreeMap;

use serde::Deserialize;
use time::Date;

use super::common;
use super::count::CountLeaf;
use crate::domain::catalogue::{Condition, Period};
use crate::domain::kinds::{FieldType, Kinds};
use crate::domain::org::OrgTree;
use crate::domain::record::Kind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    kind: String,
    field: String,
    #[serde(default)]
    when: BTreeMap<String, toml::Value>,
    period: Option<String>,
    #[serde(default)]
    own: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sum {
    pub kind: Kind,
    pub field: String,
    pub when: Vec<Condition>,
    pub period: Period,
    pub own: bool,
}

impl Sum {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let kind = common::kind_named(kinds, &spec.kind, "kind")?;
        common::field_of(kinds, kind, &spec.field, &[FieldType::Count])?;
        Ok(Sum {
            kind,
            field: spec.field.clone(),
            when: common::conditions(kinds, kind, &spec.when)?,
            period: common::period(spec.period.as_deref())?,
            own: spec.own,
        })
    }

    pub fn leaf(&self, tree: &OrgTree) -> CountLeaf {
        CountLeaf::new(
            Some(&self.field),
            &self.when,
            self.period,
            self.own,
            tree.len(),
        )
    }

    pub fn sql(&self, today: Date) -> (String, bool) {
        super::count::sql(
            self.kind,
            Some(&self.field),
            &self.when,
            self.period,
            self.own,
            today,
        )
    }
}
