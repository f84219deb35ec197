//! `cases`: cases with deadlines (appeals: accept within 15 days, resolve within 60). A case
//! belongs to the org of its earliest opening record; it is open until a closing record
//! arrives (with `closed_by = "level_above"`, only one of the org that answers the opening org:
//! its district for a street or community, the city for a district, the city itself for the
//! city); it is overdue on a deadline when still open, no record that meets the deadline has
//! arrived, and more than the deadline's days have passed since it opened. Fewer open cases are
//! better.
//!
//! Values: `[cases ever opened, open, overdue (on any deadline, counted once), overdue on each
//! deadline …]`; no data until a case was opened in the subtree. The live leaf adds the age of
//! the oldest open case (`oldest_days`), which the SQL does not recompute.
//!
//! The clock moves separately from the records: a queue of the moments at which an open case
//! may turn overdue is drained as time passes, so the cost follows the deadlines passed, not
//! the cases held.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;
use serde::Deserialize;
use time::Date;

use super::common::{self, at, Aside, COUNTED};
use super::touch::{hash_str, Touch};
use super::Leaf;
use crate::domain::catalogue::CaseDeadline;
use crate::domain::kinds::{FieldType, Kinds};
use crate::domain::metric::Reading;
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    opened: String,
    closed: String,
    #[serde(default)]
    deadlines: Vec<DeadlineSpec>,
    closed_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadlineSpec {
    name: String,
    label_zh: Option<String>,
    /// The same span for every case: `days` or `hours` …
    days: Option<u32>,
    hours: Option<u32>,
    /// … or each case's own, in seconds, from a count field of its opening record (a task's
    /// deadline).
    seconds_field: Option<String>,
    met_by: Vec<String>,
}

/// Deadlines whose span each case carries (`seconds_field`), at most: the opening records keep
/// their spans inline.
const MAX_OWN_SPANS: usize = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct Cases {
    pub opened: Kind,
    pub closed: Kind,
    pub deadlines: Vec<CaseDeadline>,
    /// `closed_by = "level_above"`: only a closing record of the level above the opening org
    /// closes the case (and meets the deadlines it meets).
    pub level_above: bool,
}

/// Per org: the org whose closing record closes its cases when only the level above may (the
/// district for a community, the parent for any other node, the root for itself) — as
/// `OrgTree::level_above` has it.
/// Every joined subquery has an alias: current ClickHouse refuses one without
/// (`joined_subquery_requires_alias`), 18.16 accepts both. The inner subquery renames in two
/// steps because an alias is seen by the whole SELECT (`code AS parent, parent AS …` would
/// read the alias).
const RESPONDERS: &str =
    "SELECT org, multiIf(level = 'community', grandparent, parent = '', org, parent) \
     AS responder FROM (SELECT code AS org, level, parent FROM org_nodes) AS n \
     ANY LEFT JOIN (SELECT node AS parent, grandparent FROM \
     (SELECT code AS node, parent AS grandparent FROM org_nodes)) AS g USING parent";

impl Cases {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        if spec.deadlines.len() > 16 {
            return Err(format!("{} deadlines: at most 16", spec.deadlines.len()));
        }
        let level_above = match spec.closed_by.as_deref() {
            None | Some("anyone") => false,
            Some("level_above") => true,
            Some(other) => return Err(format!("closed_by '{other}': anyone or level_above")),
        };
        let opened = common::kind_named(kinds, &spec.opened, "opened")?;
        let own_spans = spec
            .deadlines
            .iter()
            .filter(|d| d.seconds_field.is_some())
            .count();
        if own_spans > MAX_OWN_SPANS {
            return Err(format!(
                "{own_spans} deadlines with seconds_field: at most {MAX_OWN_SPANS}"
            ));
        }
        let cases = Cases {
            level_above,
            opened,
            closed: common::kind_named(kinds, &spec.closed, "closed")?,
            deadlines: spec
                .deadlines
                .iter()
                .map(|d| {
                    let at = |why: &str| format!("deadline '{}': {why}", d.name);
                    let (seconds, seconds_field) = match (d.days, d.hours, &d.seconds_field) {
                        (Some(days), None, None) => (days.saturating_mul(DAY), None),
                        (None, Some(hours), None) => (hours.saturating_mul(3600), None),
                        (None, None, Some(field)) => {
                            common::field_of(kinds, opened, field, &[FieldType::Count])
                                .map_err(|e| at(&e))?;
                            let key = kinds
                                .get(opened.as_str())
                                .and_then(|k| k.field(field))
                                .map(|f| f.key)
                                .ok_or_else(|| at("no such field"))?;
                            (0, Some(key))
                        }
                        _ => return Err(at("give one of days, hours or seconds_field")),
                    };
                    Ok(CaseDeadline {
                        name: d.name.clone(),
                        label_zh: d.label_zh.clone().unwrap_or_else(|| d.name.clone()),
                        days: d.days.unwrap_or(0),
                        seconds,
                        seconds_field,
                        met_by: d
                            .met_by
                            .iter()
                            .map(|k| common::kind_named(kinds, k, "met_by"))
                            .collect::<Result<_, String>>()?,
                    })
                })
                .collect::<Result<_, String>>()?,
        };
        if let Some(k) = cases
            .kinds()
            .into_iter()
            .find(|k| !common::has_subject(kinds, *k))
        {
            return Err(format!("{} has no subject to follow a case by", k.as_str()));
        }
        Ok(cases)
    }

    pub fn kinds(&self) -> Vec<Kind> {
        let mut k = vec![self.opened, self.closed];
        for d in &self.deadlines {
            k.extend(d.met_by.iter().copied());
        }
        k.sort_by_key(|k| k.as_str());
        k.dedup();
        k
    }

    pub fn leaf(&self, tree: &OrgTree) -> CasesLeaf {
        let cases = CasesLeaf::new(self.opened, self.closed, &self.deadlines, tree.len());
        if self.level_above {
            cases.closed_by_level_above(tree)
        } else {
            cases
        }
    }

    pub fn sql(&self, now: i64) -> (String, bool) {
        let closed = &self.closed;
        let deadlines = &self.deadlines;
        // Per deadline: met by a record other than the closing one (the closing one meets
        // it by closing, which `NOT closed` already requires).
        let met_cols: String = deadlines
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let others: Vec<String> = d
                    .met_by
                    .iter()
                    .filter(|k| *k != closed)
                    .map(|k| common::quoted(k.as_str()))
                    .collect();
                if others.is_empty() {
                    format!(", 0 AS m{i}")
                } else {
                    format!(", countIf(kind IN ({})) > 0 AS m{i}", others.join(", "))
                }
            })
            .collect();
        let late_cols: String = deadlines
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let span = match d.seconds_field {
                    Some(_) => format!("span{i}"),
                    None => d.seconds.to_string(),
                };
                format!(", (NOT closed AND NOT m{i} AND age > {span}) AS late{i}")
            })
            .collect();
        let mut vals = vec![
            "toInt64(count())".to_string(),
            "toInt64(countIf(NOT closed))".to_string(),
            format!(
                "toInt64(countIf({}))",
                if deadlines.is_empty() {
                    "0".to_string()
                } else {
                    (0..deadlines.len())
                        .map(|i| format!("late{i}"))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                }
            ),
        ];
        vals.extend((0..deadlines.len()).map(|i| format!("toInt64(countIf(late{i}))")));
        // The opening org is named apart from `org`, which the closers are collected from
        // (an alias would shadow the column in the same SELECT).
        let m_names: String = (0..deadlines.len()).map(|i| format!(", m{i}")).collect();
        // A case's own span: from its earliest opening record, as the live leaf takes it.
        let (span_cols, span_names): (String, String) = deadlines
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.seconds_field.map(|f| (i, f)))
            .map(|(i, field)| {
                (
                    format!(
                        ", toInt64(argMinIf({}, (at, seq), kind = {})) AS span{i}",
                        common::num(field),
                        common::quoted(self.opened.as_str())
                    ),
                    format!(", span{i}"),
                )
            })
            .unzip();
        let per_case = format!(
            "SELECT opener AS org, closers, age{m_names}{span_names} FROM (\
             SELECT argMinIf(org, (at, seq), kind = {o}) AS opener, \
             groupUniqArrayIf(org, kind = {c}) AS closers, \
             {now} - toInt64(toUInt32(minIf(at, kind = {o}))) AS age{met_cols}{span_cols} \
             FROM events WHERE {kinds} AND {COUNTED} GROUP BY subject \
             HAVING countIf(kind = {o}) > 0)",
            o = common::quoted(self.opened.as_str()),
            c = common::quoted(closed.as_str()),
            kinds = common::of_kinds(&self.kinds()),
        );
        let (source, closed_expr) = if self.level_above {
            (
                format!("({per_case}) AS c ANY LEFT JOIN ({RESPONDERS}) AS r USING org"),
                "has(closers, responder)",
            )
        } else {
            (format!("({per_case})"), "notEmpty(closers)")
        };
        (
            format!(
                "SELECT org, [{}] AS vals FROM (\
                 SELECT org, {closed_expr} AS closed{late_cols} FROM {source}\
                 ) GROUP BY org",
                vals.join(", "),
            ),
            false,
        )
    }

    pub fn reading(&self, v: &[i64]) -> Reading {
        Reading {
            num: at(v, 1),
            den: None,
            has_data: at(v, 0) > 0,
            overdue: Some(at(v, 2)),
            extras: self
                .deadlines
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("overdue_{}", d.name), at(v, 3 + i)))
                .collect::<BTreeMap<_, _>>(),
            oldest_days: None,
        }
    }
}

const DAY: u32 = 86_400;

/// An opening record: (at, seq, org, the case's own spans in seconds, in the order of the
/// deadlines that take them from the record).
type Opening = (u32, u64, NodeIdx, [u32; MAX_OWN_SPANS]);

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Case {
    /// The earliest opening record (the leaf keeps later ones aside, should it be taken back).
    opened: Option<Opening>,
    /// Bit i: a record meeting deadline i arrived (other than a closing record) — one such
    /// record's bits; the leaf keeps the others' aside.
    meets: Option<u32>,
    /// The orgs of the closing records that arrived (usually one), once per record.
    closers: Vec<NodeIdx>,
    /// Bit i: what this case currently adds to deadline i's overdue counts.
    counted: u32,
}

impl Case {
    /// Whether a closing record closes it: any, or (`responder`) one from the org that must
    /// answer the opening org.
    fn closed(&self, responder: Option<&[NodeIdx]>) -> bool {
        match (responder, self.opened) {
            _ if self.closers.is_empty() => false,
            (None, _) => true,
            (Some(r), Some((_, _, org, _))) => self.closers.contains(&r[org as usize]),
            (Some(_), None) => false,
        }
    }

    fn open_at(&self, responder: Option<&[NodeIdx]>) -> Option<(NodeIdx, u32)> {
        match self.opened {
            Some((at, _, org, _)) if !self.closed(responder) => Some((org, at)),
            _ => None,
        }
    }

    fn own_spans(&self) -> [u32; MAX_OWN_SPANS] {
        self.opened.map(|o| o.3).unwrap_or_default()
    }

    /// The deadlines met: by their own records (`more`: the bits of those kept aside), and by
    /// the closing record once it closes.
    fn met(&self, responder: Option<&[NodeIdx]>, by_closing: u32, more: &[u32]) -> u32 {
        let met = more
            .iter()
            .fold(self.meets.unwrap_or(0), |bits, m| bits | m);
        if self.closed(responder) {
            met | by_closing
        } else {
            met
        }
    }

    fn is_empty(&self) -> bool {
        self.opened.is_none() && self.meets.is_none() && self.closers.is_empty()
    }
}

pub struct CasesLeaf {
    opened_by: Kind,
    closed_by: Kind,
    /// (name, days, kinds that meet it)
    deadlines: Vec<CaseDeadline>,
    /// Per deadline: where a case's opening record keeps its span, when it carries one.
    own_slot: Vec<Option<usize>>,
    /// Bit i: the closing kind meets deadline i.
    met_by_closing: u32,
    /// Only closing records of the level above close a case: per org, the org that must.
    responder: Option<Vec<NodeIdx>>,
    cases: HashMap<u64, Case>,
    /// Per case: its opening records after the earliest, and its deadline-meeting records'
    /// bits after the first.
    more_openings: Aside<Opening>,
    more_meets: Aside<u32>,
    /// Cases ever opened in each subtree ("no data" until one).
    opened: Vec<i64>,
    open: Vec<i64>,
    /// Open cases past at least one deadline, counted once each.
    overdue: Vec<i64>,
    /// Per deadline: open cases past it.
    overdue_each: Vec<Vec<i64>>,
    /// Open cases of each org by opening time: the oldest per subtree is read off these.
    open_by_org: Vec<BTreeSet<(u32, u64)>>,
    /// Future moments at which an open case may turn overdue: (time, case).
    queue: BTreeSet<(u32, u64)>,
    /// The time the overdue counts were last brought up to date.
    as_of: u32,
}

impl CasesLeaf {
    pub fn new(opened_by: Kind, closed_by: Kind, deadlines: &[CaseDeadline], nodes: usize) -> Self {
        CasesLeaf {
            opened_by,
            closed_by,
            met_by_closing: deadlines
                .iter()
                .enumerate()
                .filter(|(_, d)| d.met_by.contains(&closed_by))
                .fold(0, |bits, (i, _)| bits | 1 << i),
            responder: None,
            own_slot: deadlines
                .iter()
                .scan(0, |slot, d| {
                    Some(d.seconds_field.map(|_| {
                        *slot += 1;
                        *slot - 1
                    }))
                })
                .collect(),
            deadlines: deadlines.to_vec(),
            cases: HashMap::default(),
            more_openings: Aside::default(),
            more_meets: Aside::default(),
            opened: vec![0; nodes],
            open: vec![0; nodes],
            overdue: vec![0; nodes],
            overdue_each: vec![vec![0; nodes]; deadlines.len()],
            open_by_org: vec![BTreeSet::new(); nodes],
            queue: BTreeSet::new(),
            as_of: 0,
        }
    }

    /// Only a closing record of the level above the opening org closes a case: the district
    /// for a street or community, the city for a district, the city for itself.
    pub fn closed_by_level_above(mut self, tree: &OrgTree) -> Self {
        self.responder = Some(tree.nodes().map(|(idx, _)| tree.level_above(idx)).collect());
        self
    }

    fn apply_record(
        &mut self,
        r: &EventRow,
        org: NodeIdx,
        kind: Kind,
        retract: bool,
        t: &mut Touch,
    ) {
        let id = hash_str(&r.subject);
        // Take the case's overdue contribution off its current org first: the record may move
        // it to another org.
        self.set_lateness(id, 0, t);
        let responder = self.responder.as_deref();
        let case = self.cases.entry(id).or_default();
        let before = case.open_at(responder);
        let owner_before = case.opened.map(|o| o.2);
        if kind == self.opened_by {
            let mut spans = [0; MAX_OWN_SPANS];
            for (slot, field) in self
                .deadlines
                .iter()
                .filter_map(|d| d.seconds_field)
                .enumerate()
            {
                spans[slot] = r.number(field).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
            }
            let opening = (r.at, r.seq, org, spans);
            if retract {
                self.more_openings.remove(id, &mut case.opened, opening);
            } else {
                self.more_openings.insert(id, &mut case.opened, opening);
            }
        }
        if kind == self.closed_by {
            if !retract {
                case.closers.push(org);
            } else if let Some(i) = case.closers.iter().position(|c| *c == org) {
                case.closers.swap_remove(i);
            }
        } else {
            let meets = self
                .deadlines
                .iter()
                .enumerate()
                .filter(|(_, d)| d.met_by.contains(&kind))
                .fold(0, |bits, (i, _)| bits | 1 << i);
            if meets != 0 && retract {
                self.more_meets.remove(id, &mut case.meets, meets);
            } else if meets != 0 {
                self.more_meets.insert(id, &mut case.meets, meets);
            }
        }
        let after = case.open_at(responder);
        let owner_after = case.opened.map(|o| o.2);
        if owner_before != owner_after {
            if let Some(o) = owner_before {
                t.add(&mut self.opened, o, false, -1);
            }
            if let Some(o) = owner_after {
                t.add(&mut self.opened, o, false, 1);
            }
        }
        if before != after {
            if let Some((o, at)) = before {
                t.add(&mut self.open, o, false, -1);
                self.open_by_org[o as usize].remove(&(at, id));
            }
            if let Some((o, at)) = after {
                t.add(&mut self.open, o, false, 1);
                self.open_by_org[o as usize].insert((at, id));
                self.schedule(id, at);
            }
            // The oldest open case of each node above may have changed.
            for (o, _) in before.iter().chain(after.iter()) {
                t.mark_path(*o);
            }
        }
        let now = self.lateness(id);
        self.set_lateness(id, now, t);
        if self.cases.get(&id).is_some_and(Case::is_empty) {
            self.cases.remove(&id);
        }
    }

    /// Deadline i's span in seconds for a case whose opening record carries `own`.
    fn span(&self, i: usize, own: [u32; MAX_OWN_SPANS]) -> u32 {
        match self.own_slot[i] {
            Some(slot) => own[slot],
            None => self.deadlines[i].seconds,
        }
    }

    /// Bit i set: the case is past deadline i at `as_of`.
    fn lateness(&self, id: u64) -> u32 {
        self.lateness_at(id, self.as_of)
    }

    /// Bit i set: the case, as it stands, is past deadline i at `at`.
    fn lateness_at(&self, id: u64, at: u32) -> u32 {
        let Some(case) = self.cases.get(&id) else {
            return 0;
        };
        let responder = self.responder.as_deref();
        let Some((_, opened)) = case.open_at(responder) else {
            return 0;
        };
        let age = at.saturating_sub(opened);
        let met = case.met(responder, self.met_by_closing, self.more_meets.rest(id));
        let own = case.own_spans();
        (0..self.deadlines.len())
            .filter(|i| met & (1 << i) == 0 && age > self.span(*i, own))
            .fold(0, |bits, i| bits | 1 << i)
    }

    fn set_lateness(&mut self, id: u64, now: u32, t: &mut Touch) {
        let Some(case) = self.cases.get_mut(&id) else {
            return;
        };
        let old = case.counted;
        if now == old {
            return;
        }
        case.counted = now;
        // Lateness only counts while open, so the org is the opening record's.
        let Some(org) = case.opened.map(|o| o.2) else {
            return;
        };
        let bit = |bits: u32, i: usize| i64::from(bits & (1 << i) != 0);
        for i in 0..self.deadlines.len() {
            t.add(
                &mut self.overdue_each[i],
                org,
                false,
                bit(now, i) - bit(old, i),
            );
        }
        t.add(
            &mut self.overdue,
            org,
            false,
            i64::from(now != 0) - i64::from(old != 0),
        );
    }

    /// Remembers when a case opened at `opened` turns overdue. A deadline already past is not
    /// kept: the case's lateness was just counted at `as_of` (most cases of a year-long backlog
    /// arrive overdue, and the queue is the costliest part of applying them).
    fn schedule(&mut self, id: u64, opened: u32) {
        let own = self.cases.get(&id).map(Case::own_spans).unwrap_or_default();
        for i in 0..self.deadlines.len() {
            let due = opened.saturating_add(self.span(i, own)).saturating_add(1);
            if due > self.as_of {
                self.queue.insert((due, id));
            }
        }
    }

    /// Moves the clock to `now`: cases whose deadline passed become overdue.
    fn advance_to(&mut self, now: u32, t: &mut Touch) {
        if now < self.as_of {
            // The clock went back (tests with a fixed clock): recount everything, and schedule
            // again the deadlines that had passed.
            self.as_of = now;
            self.queue.clear();
            let responder = self.responder.as_deref();
            let open: Vec<(u64, u32)> = self
                .cases
                .iter()
                .filter_map(|(id, c)| c.open_at(responder).map(|(_, at)| (*id, at)))
                .collect();
            for (id, at) in open {
                let late = self.lateness(id);
                self.set_lateness(id, late, t);
                self.schedule(id, at);
            }
            return;
        }
        self.as_of = now;
        while let Some(&(due, id)) = self.queue.first() {
            if due > now {
                break;
            }
            self.queue.pop_first();
            let late = self.lateness(id);
            self.set_lateness(id, late, t);
        }
    }

    /// Open cases in a node's subtree, not overdue now, that turn overdue within `window`
    /// seconds unless something meets their deadline first: what a unit must act on next.
    pub fn due_within(&self, tree: &OrgTree, node: NodeIdx, window: u32) -> i64 {
        let until = self.as_of.saturating_add(window);
        let mut seen = std::collections::HashSet::new();
        for &(_, id) in self
            .queue
            .range((self.as_of.saturating_add(1), 0)..=(until, u64::MAX))
        {
            let Some(case) = self.cases.get(&id) else {
                continue;
            };
            let Some(org) = case.opened.map(|o| o.2) else {
                continue;
            };
            if case.counted == 0 && tree.is_within(org, node) && self.lateness_at(id, until) != 0 {
                seen.insert(id);
            }
        }
        seen.len() as i64
    }

    pub fn open(&self, node: NodeIdx) -> i64 {
        self.open[node as usize]
    }

    pub fn has_data(&self, node: NodeIdx) -> bool {
        self.opened[node as usize] > 0
    }

    /// Opening time of the oldest open case in a node's subtree.
    fn oldest_open(&self, tree: &OrgTree, node: NodeIdx) -> Option<u32> {
        tree.subtree(node)
            .into_iter()
            .filter_map(|o| self.open_by_org[o as usize].first().map(|(at, _)| *at))
            .min()
    }

    /// The moment the longest-running breach in a node's subtree began: the earliest time at
    /// which a case that is overdue now passed a deadline it has not met (Unix seconds). It
    /// comes from the records alone, so it is the same after a restart.
    pub fn first_overdue_at(&self, tree: &OrgTree, node: NodeIdx) -> Option<u32> {
        if self.overdue[node as usize] == 0 {
            return None;
        }
        let mut first: Option<u32> = None;
        for org in tree.subtree(node) {
            // Counts are per subtree: none overdue here, none below.
            if self.overdue[org as usize] == 0 {
                continue;
            }
            // Per deadline, the oldest open case past it is the one that passed it first
            // (`counted` holds what each case adds to the overdue counts now).
            for i in 0..self.deadlines.len() {
                let passed = self.open_by_org[org as usize].iter().find(|(_, id)| {
                    self.cases
                        .get(id)
                        .is_some_and(|c| c.counted & (1 << i) != 0)
                });
                if let Some((opened, id)) = passed {
                    let own = self.cases.get(id).map(Case::own_spans).unwrap_or_default();
                    let at = opened.saturating_add(self.span(i, own)).saturating_add(1);
                    first = Some(first.map_or(at, |f| f.min(at)));
                }
            }
        }
        first
    }

    /// The age in days of the oldest open case in a node's subtree, at `now`.
    pub fn oldest_days(&self, tree: &OrgTree, node: NodeIdx, now: u32) -> Option<i64> {
        self.oldest_open(tree, node)
            .map(|t| (now.saturating_sub(t) / DAY) as i64)
    }
}

impl Leaf for CasesLeaf {
    checkpointed!(
        cases,
        more_openings,
        more_meets,
        opened,
        open,
        overdue,
        overdue_each,
        open_by_org,
        queue,
        as_of
    );

    fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.apply_record(r, org, kind, false, t);
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.apply_record(r, org, kind, true, t);
    }

    fn values(&self, node: NodeIdx, _today: Date) -> Vec<i64> {
        let n = node as usize;
        let mut v = vec![self.opened[n], self.open[n], self.overdue[n]];
        v.extend(self.overdue_each.iter().map(|counts| counts[n]));
        v
    }

    fn advance(&mut self, now: u32, t: &mut Touch) {
        self.advance_to(now, t);
    }

    fn as_cases(&self) -> Option<&CasesLeaf> {
        Some(self)
    }
}
