//! What several measure types share: sums per period, conditions on a record's fields, and the
//! pieces of SQL their recomputation is written with.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use time::{Date, PrimitiveDateTime, Time};

use super::touch::Touch;
use crate::domain::catalogue::{Condition, Period};
use crate::domain::kinds::{intern_name, FieldType, Kinds};
use crate::domain::org::NodeIdx;
use crate::domain::record::{EventRow, Kind};
use crate::domain::time::{local_date_of, SHANGHAI};

/// The placeholder for the store's filter of the effective records in a measure's SQL: the
/// last version of each record, less the withdrawn ones, and no records of imports that did
/// not complete. The store puts its own expression there.
pub const COUNTED: &str = "{counted}";

/// Sums per node and per period (a single sum when the period is `All`).
#[derive(serde::Serialize, serde::Deserialize)]
pub enum PeriodSums {
    All(Vec<i64>),
    By(Vec<HashMap<u32, i64>>),
}

impl PeriodSums {
    pub fn new(period: Period, nodes: usize) -> Self {
        match period {
            Period::All => PeriodSums::All(vec![0; nodes]),
            _ => PeriodSums::By((0..nodes).map(|_| HashMap::default()).collect()),
        }
    }

    pub fn add(&mut self, t: &mut Touch, org: NodeIdx, own: bool, key: u32, delta: i64) {
        match self {
            PeriodSums::All(sums) => t.add(sums, org, own, delta),
            PeriodSums::By(per_node) => {
                let tree = t.tree;
                let up = (!own).then(|| tree.path_to_root(org));
                let only = own.then_some(org);
                for n in only.into_iter().chain(up.into_iter().flatten()) {
                    let sum = per_node[n as usize].entry(key).or_default();
                    *sum = sum.saturating_add(delta);
                    t.dirty.mark(n);
                }
            }
        }
    }

    pub fn get(&self, node: NodeIdx, key: u32) -> i64 {
        match self {
            PeriodSums::All(sums) => sums[node as usize],
            PeriodSums::By(per_node) => per_node[node as usize].get(&key).copied().unwrap_or(0),
        }
    }
}

/// Per org, every version of a record whose newest counts (a headcount, a station's rating):
/// the newest by `(at, seq)` counts, the others are kept [`Aside`] to count again should it be
/// taken back (a correction or a withdrawal falls back to the version before).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Versions<V> {
    /// Reversed, so that the aside's least is the newest.
    newest: Vec<Option<Reverse<(u32, u64, V)>>>,
    older: Aside<Reverse<(u32, u64, V)>>,
}

impl<V: Copy + Ord> Versions<V> {
    pub fn new(nodes: usize) -> Self {
        Versions {
            newest: vec![None; nodes],
            older: Aside::default(),
        }
    }

    /// Adds a version; answers the org's newest value before and after.
    pub fn insert(&mut self, org: NodeIdx, at: u32, seq: u64, v: V) -> (Option<V>, Option<V>) {
        self.change(org, |older, key, slot| {
            older.insert(key, slot, Reverse((at, seq, v)))
        })
    }

    /// Takes a version back (the same row again: its time, seq and value); answers the org's
    /// newest value before and after.
    pub fn remove(&mut self, org: NodeIdx, at: u32, seq: u64, v: V) -> (Option<V>, Option<V>) {
        self.change(org, |older, key, slot| {
            older.remove(key, slot, Reverse((at, seq, v)))
        })
    }

    fn change(
        &mut self,
        org: NodeIdx,
        f: impl FnOnce(&mut Aside<Reverse<(u32, u64, V)>>, u64, &mut Option<Reverse<(u32, u64, V)>>),
    ) -> (Option<V>, Option<V>) {
        let slot = &mut self.newest[org as usize];
        let before = slot.map(|Reverse(n)| n.2);
        f(&mut self.older, u64::from(org), slot);
        (before, slot.map(|Reverse(n)| n.2))
    }
}

/// Multisets per key (a subject's openings, arrivals …) kept as their least element inline, in
/// the caller's own state, and the rest here: nearly every key has one element, so nearly
/// none allocates, and taking the least back promotes the next.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Aside<T>(HashMap<u64, Vec<T>>);

impl<T> Default for Aside<T> {
    fn default() -> Self {
        Aside(HashMap::default())
    }
}

impl<T: Ord + Copy> Aside<T> {
    pub fn insert(&mut self, key: u64, least: &mut Option<T>, v: T) {
        match least {
            None => *least = Some(v),
            Some(l) if v < *l => {
                self.0.entry(key).or_default().push(*l);
                *l = v;
            }
            Some(_) => self.0.entry(key).or_default().push(v),
        }
    }

    pub fn remove(&mut self, key: u64, least: &mut Option<T>, v: T) {
        let Some(rest) = self.0.get_mut(&key) else {
            if *least == Some(v) {
                *least = None;
            }
            return;
        };
        if *least == Some(v) {
            let next = (0..rest.len()).min_by_key(|&i| rest[i]);
            *least = next.map(|i| rest.swap_remove(i));
        } else if let Some(i) = rest.iter().position(|x| *x == v) {
            rest.swap_remove(i);
        }
        if rest.is_empty() {
            self.0.remove(&key);
        }
    }

    /// The elements of `key` besides the least.
    pub fn rest(&self, key: u64) -> &[T] {
        self.0.get(&key).map_or(&[], Vec::as_slice)
    }
}

/// The period holding a record's time (no date arithmetic for `All`).
pub fn period_of(period: Period, at: u32) -> u32 {
    match period {
        Period::All => 0,
        p => p.key(local_date_of(at)),
    }
}

/// Conditions as a leaf keeps them: field names interned, so that a row validated here (whose
/// keys are the same interned names) finds them by address.
pub type When = Vec<(&'static str, i64)>;

pub fn interned(when: &[Condition]) -> When {
    when.iter()
        .map(|c| (intern_name(&c.field), c.equals))
        .collect()
}

pub fn holds(when: &When, r: &EventRow) -> bool {
    when.iter()
        .all(|&(field, equals)| r.number(field) == Some(equals))
}

/// The value at `i` of a node's values (0 when absent: a node without records).
pub fn at(v: &[i64], i: usize) -> i64 {
    v.get(i).copied().unwrap_or(0)
}

// --- parsing what definition files say --------------------------------------------------------

pub fn kind_named(kinds: &Kinds, name: &str, what: &str) -> Result<Kind, String> {
    kinds.parse_name(name).ok_or_else(|| {
        format!(
            "{what} '{name}' is not a record kind (known: {})",
            kinds.names().join(", ")
        )
    })
}

pub fn has_subject(kinds: &Kinds, kind: Kind) -> bool {
    kinds
        .get(kind.as_str())
        .is_some_and(|d| d.subject.is_some())
}

pub fn field_of(
    kinds: &Kinds,
    kind: Kind,
    name: &str,
    allowed: &[FieldType],
) -> Result<FieldType, String> {
    kinds
        .get(kind.as_str())
        .and_then(|d| d.field(name))
        .map(|f| f.ty)
        .filter(|t| allowed.contains(t))
        .ok_or_else(|| format!("{kind} has no field '{name}' of type {allowed:?}"))
}

pub fn conditions(
    kinds: &Kinds,
    kind: Kind,
    when: &BTreeMap<String, toml::Value>,
) -> Result<Vec<Condition>, String> {
    when.iter()
        .map(|(field, value)| {
            let equals = match value {
                toml::Value::Boolean(b) => {
                    field_of(kinds, kind, field, &[FieldType::Flag])?;
                    i64::from(*b)
                }
                toml::Value::Integer(n) => {
                    field_of(kinds, kind, field, &[FieldType::Count])?;
                    *n
                }
                other => return Err(format!("when.{field} = {other}: true, false or a number")),
            };
            Ok(Condition {
                field: field.clone(),
                equals,
            })
        })
        .collect()
}

pub fn period(spec: Option<&str>) -> Result<Period, String> {
    match spec {
        None => Ok(Period::All),
        Some(p) => {
            Period::parse(p).ok_or_else(|| format!("period '{p}': all, year, quarter or month"))
        }
    }
}

// --- SQL -------------------------------------------------------------------------------------

pub fn quoted(s: &str) -> String {
    // Definitions only (kind names, level names, field names): no quote can occur, and this
    // keeps it so should one ever slip through.
    format!("'{}'", s.replace(['\\', '\''], ""))
}

fn unix_start(d: Date) -> i64 {
    PrimitiveDateTime::new(d, Time::MIDNIGHT)
        .assume_offset(SHANGHAI)
        .unix_timestamp()
}

/// The first second after `day` (Shenzhen), as Unix seconds: what is dated before it is dated
/// on or before `day`.
pub fn day_end(day: Date) -> i64 {
    day.next_day().map(unix_start).unwrap_or(i64::MAX)
}

/// `AND <at within the current period>`, or nothing for `all`.
pub fn in_period(period: Period, today: Date) -> String {
    if period == Period::All {
        return String::new();
    }
    let (first, last) = period.bounds(today);
    let end = last.next_day().map(unix_start).unwrap_or(i64::MAX);
    format!(
        " AND toInt64(toUInt32(at)) >= {} AND toInt64(toUInt32(at)) < {end}",
        unix_start(first)
    )
}

/// A named number of the generic row.
pub fn num(field: &str) -> String {
    format!("num_values[indexOf(num_keys, {})]", quoted(field))
}

/// ` AND field = value …` (of the latest record's values, `v_<field>`, when `latest`).
pub fn conditions_sql(when: &[Condition], latest: bool) -> String {
    when.iter()
        .map(|c| {
            if latest {
                format!(" AND v_{} = {}", c.field, c.equals)
            } else {
                format!(" AND {} = {}", num(&c.field), c.equals)
            }
        })
        .collect()
}

pub fn of_kinds(kinds: &[Kind]) -> String {
    let list: Vec<String> = kinds.iter().map(|k| quoted(k.as_str())).collect();
    format!("kind IN ({})", list.join(", "))
}
