//! The measure types: a metric is data (a definition file), its measure is one of these types,
//! and each type is one module holding everything about it — its spec as a file writes it
//! (parsed strictly: a key the type does not use is refused), its live leaf (the state a record
//! changes), its per-org SQL for the independent recomputation, its reading rule (values →
//! reading, with "no data", shared by the live engine and the SQL) and its direction.
//!
//! | type | value at a node | no data until | lower is better |
//! |---|---|---|---|
//! | [`count`] | records of a kind in the current period (optionally only those whose flags or counts hold; `own`: the node's alone) | the node (`own`) or its subtree reported the kind once | |
//! | [`sum`] | a count field summed over those records | as `count` | |
//! | [`distinct`] | distinct subjects of a kind in the current period | as `count` | |
//! | [`latest`] | the latest value of a field per reporting org, summed over the subtree | an org of the subtree reported | |
//! | [`nodes`] | nodes of some levels whose latest record satisfies conditions: their count or share | a node of those levels in the subtree reported | |
//! | [`matched`] | subjects of a kind also found in another kind at the same org ÷ subjects of the first | a subject of the first kind | |
//! | [`ratio`] | num ÷ den, two of the above | the denominator has data | |
//! | [`cases`] | cases opened and not closed: open, overdue (once), per deadline, oldest | a case was opened in the subtree | ✓ |
//! | [`elapsed`] | a quantile of the hours from a subject's first `from` to its first `to` record | a subject opened in the subtree got there | ✓ |
//! | [`reporting`] | scheduled reports (kinds with `[report]`) received, or received on time, ÷ expected in the current period | a report is expected in the subtree | |
//!
//! Adding a type: a module here with its `Spec`, its struct, `parse`, `leaf`, `sql` and
//! reading; one line in [`Spec`] and one in [`Measure`]; the compiler then names every match
//! of this file that needs its arm (there is no `_ =>` over the types).

/// The `save` and `load` of a leaf: the named fields are what records built (the rest is the
/// definition's, which a checkpoint must match), written as one tuple and read back in place.
macro_rules! checkpointed {
    ($($field:ident),+ $(,)?) => {
        fn save(&self) -> Result<Vec<u8>, postcard::Error> {
            postcard::to_stdvec(&($(&self.$field,)+))
        }

        fn load(&mut self, bytes: &[u8]) -> Result<(), postcard::Error> {
            let ($($field,)+) = postcard::from_bytes(bytes)?;
            $(self.$field = $field;)+
            Ok(())
        }
    };
}

pub mod cases;
mod common;
pub mod count;
pub mod distinct;
pub mod elapsed;
pub mod latest;
pub mod matched;
pub mod nodes;
pub mod ratio;
pub mod reporting;
pub mod sum;
pub mod touch;

use serde::Deserialize;
use time::Date;

pub use common::COUNTED;
pub use touch::{hash_str, Dirty, Touch};

use super::catalogue::Period;
use super::kinds::Kinds;
use super::metric::Reading;
use super::org::{Level, NodeIdx, OrgTree};
use super::record::{EventRow, Kind};

/// The live state of one measure (a ratio has two: its sides'), per node of the tree.
///
/// A leaf keeps what it needs to take a record back out (`retract`): a corrected record is its
/// old version retracted and its new one applied, a withdrawn one is retracted. Applying and
/// retracting in any order leaves the state that the remaining records alone would build.
pub trait Leaf: Send + Sync {
    /// Applies a record of a kind the measure reads, at `org`.
    fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch);
    /// Takes back a record applied before (the same row: seq, time, org and values).
    fn retract(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch);
    /// The node's values, in the layout of the type's SQL (`vals`), read on `today`.
    fn values(&self, node: NodeIdx, today: Date) -> Vec<i64>;
    /// Brings clock-dependent state to `now` (cases turning overdue).
    fn advance(&mut self, _now: u32, _t: &mut Touch) {}
    /// What records built, as bytes (a checkpoint of the live state; `checkpointed!`).
    fn save(&self) -> Result<Vec<u8>, postcard::Error>;
    /// Puts back what `save` wrote, for the same definition and tree.
    fn load(&mut self, bytes: &[u8]) -> Result<(), postcard::Error>;
    /// The cases leaf, for what only cases answer (the oldest open case, a breach's start).
    fn as_cases(&self) -> Option<&cases::CasesLeaf> {
        None
    }
}

/// A leaf of any type. An enum rather than a `Box<dyn Leaf>`: applying a record is the
/// hottest path of ingest and rebuild, and a match the compiler can inline measured cheaper
/// than a virtual call per leaf; each type's logic stays in its module.
pub enum LeafState {
    /// `count` and `sum`.
    Count(count::CountLeaf),
    Distinct(distinct::DistinctLeaf),
    Latest(latest::LatestLeaf),
    Nodes(nodes::NodesLeaf),
    Matched(matched::MatchedLeaf),
    Cases(cases::CasesLeaf),
    Elapsed(elapsed::ElapsedLeaf),
    Reporting(reporting::ReportingLeaf),
}

macro_rules! each_leaf {
    ($state:expr, $leaf:ident => $body:expr) => {
        match $state {
            LeafState::Count($leaf) => $body,
            LeafState::Distinct($leaf) => $body,
            LeafState::Latest($leaf) => $body,
            LeafState::Nodes($leaf) => $body,
            LeafState::Matched($leaf) => $body,
            LeafState::Cases($leaf) => $body,
            LeafState::Elapsed($leaf) => $body,
            LeafState::Reporting($leaf) => $body,
        }
    };
}

impl LeafState {
    #[inline]
    pub fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        each_leaf!(self, l => l.apply(r, org, kind, t))
    }

    #[inline]
    pub fn retract(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        each_leaf!(self, l => l.retract(r, org, kind, t))
    }

    pub fn values(&self, node: NodeIdx, today: Date) -> Vec<i64> {
        each_leaf!(self, l => l.values(node, today))
    }

    pub fn advance(&mut self, now: u32, t: &mut Touch) {
        each_leaf!(self, l => l.advance(now, t))
    }

    pub fn save(&self) -> Result<Vec<u8>, postcard::Error> {
        each_leaf!(self, l => l.save())
    }

    pub fn load(&mut self, bytes: &[u8]) -> Result<(), postcard::Error> {
        each_leaf!(self, l => l.load(bytes))
    }

    /// The leaf's type, as a checkpoint names it (a leaf is only loaded from its own type).
    pub fn type_name(&self) -> &'static str {
        match self {
            LeafState::Count(_) => "count",
            LeafState::Distinct(_) => "distinct",
            LeafState::Latest(_) => "latest",
            LeafState::Nodes(_) => "nodes",
            LeafState::Matched(_) => "matched",
            LeafState::Cases(_) => "cases",
            LeafState::Elapsed(_) => "elapsed",
            LeafState::Reporting(_) => "reporting",
        }
    }

    pub fn as_cases(&self) -> Option<&cases::CasesLeaf> {
        each_leaf!(self, l => l.as_cases())
    }

    /// The reporting leaf, for what only it answers (a unit's own reports).
    pub fn as_reporting(&self) -> Option<&reporting::ReportingLeaf> {
        match self {
            LeafState::Reporting(l) => Some(l),
            _ => None,
        }
    }
}

/// A measure as a definition file writes it: `[measure] type = "…"` and the type's own keys.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Spec {
    Count(count::Spec),
    Sum(sum::Spec),
    Distinct(distinct::Spec),
    Latest(latest::Spec),
    Nodes(nodes::Spec),
    Matched(matched::Spec),
    Ratio(ratio::Spec),
    Cases(cases::Spec),
    Elapsed(elapsed::Spec),
    Reporting(reporting::Spec),
}

/// One of the measure types (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Count(count::Count),
    Sum(sum::Sum),
    Distinct(distinct::Distinct),
    Latest(latest::Latest),
    Nodes(nodes::Nodes),
    Matched(matched::Matched),
    Ratio(ratio::Ratio),
    Cases(cases::Cases),
    Elapsed(elapsed::Elapsed),
    Reporting(reporting::Reporting),
}

/// A measure's per-org query (`SELECT org, [v1, v2, …] AS vals`; [`COUNTED`] marks where the
/// store's filter of counted records goes), and whether it stays per org (`own`, or a quantile)
/// rather than being summed over each node's subtree.
pub struct PerOrgSql {
    pub sql: String,
    pub per_org: bool,
}

impl Measure {
    /// The measure a spec describes, checked against the record kinds.
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Measure, String> {
        Ok(match spec {
            Spec::Count(s) => Measure::Count(count::Count::parse(s, kinds)?),
            Spec::Sum(s) => Measure::Sum(sum::Sum::parse(s, kinds)?),
            Spec::Distinct(s) => Measure::Distinct(distinct::Distinct::parse(s, kinds)?),
            Spec::Latest(s) => Measure::Latest(latest::Latest::parse(s, kinds)?),
            Spec::Nodes(s) => Measure::Nodes(nodes::Nodes::parse(s, kinds)?),
            Spec::Matched(s) => Measure::Matched(matched::Matched::parse(s, kinds)?),
            Spec::Ratio(s) => Measure::Ratio(ratio::Ratio::parse(s, kinds)?),
            Spec::Cases(s) => Measure::Cases(cases::Cases::parse(s, kinds)?),
            Spec::Elapsed(s) => Measure::Elapsed(elapsed::Elapsed::parse(s, kinds)?),
            Spec::Reporting(s) => Measure::Reporting(reporting::Reporting::parse(s, kinds)?),
        })
    }

    /// The measure type's name, as definition files write it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Measure::Count(_) => "count",
            Measure::Sum(_) => "sum",
            Measure::Distinct(_) => "distinct",
            Measure::Latest(_) => "latest",
            Measure::Nodes(_) => "nodes",
            Measure::Matched(_) => "matched",
            Measure::Ratio(_) => "ratio",
            Measure::Cases(_) => "cases",
            Measure::Elapsed(_) => "elapsed",
            Measure::Reporting(_) => "reporting",
        }
    }

    /// Whether fewer is better (open cases, waiting time): every page ranks and compares in
    /// this direction unless a target says otherwise.
    pub fn lower_is_better(&self) -> bool {
        match self {
            Measure::Cases(_) | Measure::Elapsed(_) => true,
            Measure::Count(_)
            | Measure::Sum(_)
            | Measure::Distinct(_)
            | Measure::Latest(_)
            | Measure::Nodes(_)
            | Measure::Matched(_)
            | Measure::Ratio(_)
            | Measure::Reporting(_) => false,
        }
    }

    /// Whether the figure is a ratio (num ÷ den) or a count.
    pub fn is_ratio(&self) -> bool {
        match self {
            Measure::Ratio(_) | Measure::Matched(_) | Measure::Reporting(_) => true,
            Measure::Nodes(n) => n.share,
            Measure::Count(_)
            | Measure::Sum(_)
            | Measure::Distinct(_)
            | Measure::Latest(_)
            | Measure::Cases(_)
            | Measure::Elapsed(_) => false,
        }
    }

    /// Whether it may be a side of a ratio (its first value is an amount that adds up).
    pub fn side_of_a_ratio(&self) -> bool {
        match self {
            Measure::Count(_)
            | Measure::Sum(_)
            | Measure::Distinct(_)
            | Measure::Latest(_)
            | Measure::Nodes(_)
            | Measure::Matched(_) => true,
            Measure::Ratio(_) | Measure::Cases(_) | Measure::Elapsed(_) | Measure::Reporting(_) => {
                false
            }
        }
    }

    /// The cases measure, for what only cases have (deadlines, overdue counts).
    pub fn as_cases(&self) -> Option<&cases::Cases> {
        match self {
            Measure::Cases(c) => Some(c),
            Measure::Count(_)
            | Measure::Sum(_)
            | Measure::Distinct(_)
            | Measure::Latest(_)
            | Measure::Nodes(_)
            | Measure::Matched(_)
            | Measure::Ratio(_)
            | Measure::Elapsed(_)
            | Measure::Reporting(_) => None,
        }
    }

    /// The measure's leaves: a ratio's two sides; any other measure itself.
    pub fn leaves(&self) -> Vec<&Measure> {
        match self {
            Measure::Ratio(r) => vec![&r.num, &r.den],
            Measure::Count(_)
            | Measure::Sum(_)
            | Measure::Distinct(_)
            | Measure::Latest(_)
            | Measure::Nodes(_)
            | Measure::Matched(_)
            | Measure::Cases(_)
            | Measure::Elapsed(_)
            | Measure::Reporting(_) => vec![self],
        }
    }

    /// Every kind the measure reads.
    pub fn kinds(&self) -> Vec<Kind> {
        match self {
            Measure::Count(c) => vec![c.kind],
            Measure::Sum(s) => vec![s.kind],
            Measure::Distinct(d) => vec![d.kind],
            Measure::Latest(l) => vec![l.kind],
            Measure::Nodes(n) => vec![n.kind],
            Measure::Matched(m) => vec![m.kind, m.with],
            Measure::Ratio(r) => [r.num.kinds(), r.den.kinds()].concat(),
            Measure::Cases(c) => c.kinds(),
            Measure::Elapsed(e) => e.kinds(),
            Measure::Reporting(r) => r.kinds(),
        }
    }

    /// The period a count-like measure reads (the ratio's numerator's), if any.
    pub fn period(&self) -> Period {
        match self {
            Measure::Count(c) => c.period,
            Measure::Sum(s) => s.period,
            Measure::Distinct(d) => d.period,
            Measure::Ratio(r) => r.num.period(),
            Measure::Latest(_)
            | Measure::Nodes(_)
            | Measure::Matched(_)
            | Measure::Cases(_)
            | Measure::Elapsed(_)
            | Measure::Reporting(_) => Period::All,
        }
    }

    /// The live state of a measure that is not a ratio (`None` for a ratio: its sides have one
    /// each).
    pub fn leaf(&self, tree: &OrgTree) -> Option<LeafState> {
        Some(match self {
            Measure::Count(c) => LeafState::Count(c.leaf(tree)),
            Measure::Sum(s) => LeafState::Count(s.leaf(tree)),
            Measure::Distinct(d) => LeafState::Distinct(d.leaf(tree)),
            Measure::Latest(l) => LeafState::Latest(l.leaf(tree)),
            Measure::Nodes(n) => LeafState::Nodes(n.leaf(tree)),
            Measure::Matched(m) => LeafState::Matched(m.leaf(tree)),
            Measure::Cases(c) => LeafState::Cases(c.leaf(tree)),
            Measure::Elapsed(e) => LeafState::Elapsed(e.leaf(tree)),
            Measure::Reporting(r) => LeafState::Reporting(r.leaf(tree)),
            Measure::Ratio(_) => return None,
        })
    }

    /// The per-org query of a measure that is not a ratio, at `today` / `now` (Unix seconds).
    pub fn sql(&self, today: Date, now: i64) -> Option<PerOrgSql> {
        let (sql, per_org) = match self {
            Measure::Count(c) => c.sql(today),
            Measure::Sum(s) => s.sql(today),
            Measure::Distinct(d) => d.sql(today),
            Measure::Latest(l) => l.sql(),
            Measure::Nodes(n) => n.sql(),
            Measure::Matched(m) => m.sql(),
            Measure::Cases(c) => c.sql(now),
            Measure::Elapsed(e) => e.sql(),
            Measure::Reporting(r) => r.sql(today),
            Measure::Ratio(_) => return None,
        };
        Some(PerOrgSql { sql, per_org })
    }

    /// The levels whose node counts per subtree the store appends to the values (a `nodes`
    /// share's denominator), if the type needs them.
    pub fn population_levels(&self) -> Option<&[Level]> {
        match self {
            Measure::Nodes(n) => Some(&n.levels),
            Measure::Count(_)
            | Measure::Sum(_)
            | Measure::Distinct(_)
            | Measure::Latest(_)
            | Measure::Matched(_)
            | Measure::Ratio(_)
            | Measure::Reporting(_)
            | Measure::Cases(_)
            | Measure::Elapsed(_) => None,
        }
    }

    /// What a side of a ratio counts: the first of its values.
    pub fn side_amount(&self, v: &[i64]) -> i64 {
        count::amount(v)
    }

    /// Whether a side of a ratio has data.
    pub fn side_has_data(&self, v: &[i64]) -> bool {
        match self {
            Measure::Nodes(_) => nodes::Nodes::has_data(v),
            Measure::Count(_)
            | Measure::Sum(_)
            | Measure::Distinct(_)
            | Measure::Latest(_)
            | Measure::Matched(_)
            | Measure::Ratio(_)
            | Measure::Cases(_)
            | Measure::Elapsed(_) => count::has_data(v),
            Measure::Reporting(_) => reporting::Reporting::has_data(v),
        }
    }

    /// The reading of a node from its leaves' values (in [`Self::leaves`] order): the one rule,
    /// shared by the live engine and the SQL recomputation.
    pub fn reading(&self, values: &[Vec<i64>]) -> Reading {
        let first = values.first().map(Vec::as_slice).unwrap_or(&[]);
        match self {
            Measure::Count(_) | Measure::Sum(_) | Measure::Distinct(_) | Measure::Latest(_) => {
                count::reading(first)
            }
            Measure::Nodes(n) => n.reading(first),
            Measure::Matched(_) => matched::Matched::reading(first),
            Measure::Ratio(r) => {
                let second = values.get(1).map(Vec::as_slice).unwrap_or(&[]);
                r.reading(first, second)
            }
            Measure::Cases(c) => c.reading(first),
            Measure::Elapsed(_) => elapsed::Elapsed::reading(first),
            Measure::Reporting(r) => r.reading(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::catalogue::Catalogue;
    use crate::domain::kinds::shipped_files;

    fn parse(measure: &str) -> Result<Catalogue, crate::domain::definition::DefinitionError> {
        let text = format!(
            "name = \"m\"\nlabel_zh = \"m\"\nclause = \"三\"\nlevels = [\"city\"]\nunit = \"count\"\n\n[measure]\n{measure}\n"
        );
        Catalogue::parse(&shipped_files("kinds"), &[("m.toml".into(), text)])
    }

    #[test]
    fn a_key_the_type_does_not_use_is_refused_naming_the_file_line_and_key() {
        for (measure, key) in [
            ("type = \"latest\"\nkind = \"staff.headcount\"\nfield = \"headcount\"\nperiod = \"year\"", "period"),
            ("type = \"latest\"\nkind = \"staff.headcount\"\nfield = \"headcount\"\nwhen = { headcount = 1 }", "when"),
            ("type = \"count\"\nkind = \"staff.hired\"\nfield = \"veteran\"", "field"),
            ("type = \"distinct\"\nkind = \"staff.hired\"\nquantile = 0.5", "quantile"),
            ("type = \"matched\"\nkind = \"veteran.registered\"\nwith = \"archive.completed\"\nown = true", "own"),
        ] {
            let e = parse(measure).unwrap_err();
            assert_eq!(e.file, "m.toml");
            assert!(e.line.is_some_and(|l| l >= 7), "{measure}: {e}");
            assert!(e.reason.contains(key), "{measure}: {e}");
        }
        let e = parse("type = \"median\"\nkind = \"staff.hired\"").unwrap_err();
        assert!(
            e.reason.contains("median") && e.reason.contains("count"),
            "{e}"
        );
        // What each type needs is still required.
        let e = parse("type = \"sum\"\nkind = \"volunteer.activity_held\"").unwrap_err();
        assert!(e.reason.contains("field"), "{e}");
    }

    #[test]
    fn every_shipped_metric_states_its_direction() {
        let c = Catalogue::shipped();
        let lower: Vec<&str> = c
            .metrics
            .iter()
            .filter(|m| m.measure.lower_is_better())
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            lower,
            [
                "task_assignments",
                "open_appeals",
                "work_order_take_hours",
                "work_orders",
                "feedback"
            ]
        );
    }
}
