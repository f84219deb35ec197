//! `reporting`: scheduled reports received, and received on time, in the current period — the
//! reporting rate and the on-time rate of DHIS2 (REPORTING_RATE, REPORTING_RATE_ON_TIME), over
//! the kinds whose files declare a schedule (`[report] every, due_day, levels`), or some of them.
//!
//! A unit of a schedule's levels **reported** kind k in period P when an effective record of k
//! at the unit is dated in P; **on time** when one of them is dated on or before P's due day.
//! The record's own date decides, not when it reached vscc: a correction keeps its date, and a
//! report corrected after its due day must not turn late. **Expected**: every unit of the
//! levels once the due day has passed; before it, the units that already reported (a report
//! not yet due is not missing).
//!
//! Values: `[received, on time, expected]` summed over the kinds, then `[received, on time,
//! expected]` of each kind in turn. No data while nothing is expected.

use rustc_hash::FxHashMap as HashMap;
use serde::Deserialize;
use time::Date;

use super::common::{self, at, PeriodSums, COUNTED};
use super::touch::Touch;
use super::Leaf;
use crate::domain::kinds::{Kinds, Schedule};
use crate::domain::metric::Reading;
use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::{EventRow, Kind};
use crate::domain::time::local_date_of;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The scheduled kinds counted; none: every kind with a schedule.
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(rename = "as")]
    as_: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reporting {
    /// The kinds counted and their schedules, by name.
    pub kinds: Vec<(Kind, Schedule)>,
    /// The value is the reports on time (else the reports received).
    pub on_time: bool,
}

impl Reporting {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let on_time = match spec.as_.as_str() {
            "received" => false,
            "on_time" => true,
            other => return Err(format!("as = {other:?}: \"received\" or \"on_time\"")),
        };
        let mut list: Vec<(Kind, Schedule)> = if spec.kinds.is_empty() {
            kinds
                .all()
                .filter_map(|k| Some((k.kind, k.report.clone()?)))
                .collect()
        } else {
            let mut out = Vec::new();
            for name in &spec.kinds {
                let kind = common::kind_named(kinds, name, "kinds")?;
                let schedule = kinds
                    .get(kind.as_str())
                    .and_then(|k| k.report.clone())
                    .ok_or_else(|| {
                        format!("kinds: '{name}' has no [report] schedule in its file")
                    })?;
                if out.iter().any(|(k, _)| *k == kind) {
                    return Err(format!("kinds: '{name}' named twice"));
                }
                out.push((kind, schedule));
            }
            out
        };
        if list.is_empty() {
            return Err("no record kind declares a [report] schedule".into());
        }
        list.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(Reporting {
            kinds: list,
            on_time,
        })
    }

    pub fn kinds(&self) -> Vec<Kind> {
        self.kinds.iter().map(|(k, _)| *k).collect()
    }

    pub fn leaf(&self, tree: &OrgTree) -> ReportingLeaf {
        let n = tree.len();
        let population = self
            .kinds
            .iter()
            .map(|(_, s)| {
                let mut per_node = vec![0; n];
                for (idx, node) in tree.nodes() {
                    if s.levels.contains(&node.level) {
                        for p in tree.path_to_root(idx) {
                            per_node[p as usize] += 1;
                        }
                    }
                }
                per_node
            })
            .collect();
        ReportingLeaf {
            kinds: self.kinds.clone(),
            per_org: HashMap::default(),
            received: self
                .kinds
                .iter()
                .map(|(_, s)| PeriodSums::new(s.every, n))
                .collect(),
            on_time: self
                .kinds
                .iter()
                .map(|(_, s)| PeriodSums::new(s.every, n))
                .collect(),
            population,
        }
    }

    /// Per org: `[received, on time, expected, (received, on time, expected) per kind]` —
    /// the reports of the current periods (one row per org and kind that reported), and the
    /// units past their due day (one row per org of the tree).
    pub fn sql(&self, today: Date) -> (String, bool) {
        // Per report (org × kind that reported): 1 received, 1 when on time, 1 expected when
        // not yet due (once due, the unit rows below count it) — in total, then per kind.
        let mut report_values = vec![
            "toInt64(1)".to_string(),
            "toInt64(o)".to_string(),
            String::new(),
        ];
        // Per unit of the tree: expected, for the kinds past their due day whose levels hold it.
        let mut unit_values = vec![
            "toInt64(0)".to_string(),
            "toInt64(0)".to_string(),
            String::new(),
        ];
        let mut reported = Vec::new();
        let mut on_time = Vec::new();
        let mut not_yet_due = Vec::new();
        let mut past_due = Vec::new();
        for (kind, s) in &self.kinds {
            let k = common::quoted(kind.as_str());
            let levels: Vec<String> = s
                .levels
                .iter()
                .map(|l| common::quoted(l.as_str()))
                .collect();
            let levels = levels.join(", ");
            let due = s.due(today);
            let past = today > due;
            reported.push(format!(
                "(kind = {k}{} AND org IN (SELECT code FROM org_nodes WHERE level IN ({levels})))",
                common::in_period(s.every, today)
            ));
            on_time.push(format!(
                "kind = {k}, toInt64(toUInt32(at)) < {}",
                common::day_end(due)
            ));
            not_yet_due.push(format!("kind = {k}, {}", i64::from(!past)));
            report_values.extend([
                format!("toInt64(kind = {k})"),
                format!("toInt64(kind = {k} AND o = 1)"),
                format!("toInt64(kind = {k} AND {})", i64::from(!past)),
            ]);
            let unit_due = if past {
                format!("toInt64(level IN ({levels}))")
            } else {
                "toInt64(0)".into()
            };
            past_due.push(unit_due.clone());
            unit_values.extend(["toInt64(0)".into(), "toInt64(0)".into(), unit_due]);
        }
        report_values[2] = format!("toInt64(multiIf({}, 0))", not_yet_due.join(", "));
        unit_values[2] = format!("toInt64({})", past_due.join(" + "));
        // materialize(): 18.16 refuses a UNION ALL whose column is constant on one side and
        // not on the other.
        let named = |values: &[String]| -> String {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("materialize({v}) AS v{}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sums: Vec<String> = (1..=report_values.len())
            .map(|i| format!("toInt64(sum(v{i}))"))
            .collect();
        (
            format!(
                "SELECT org, [{}] AS vals FROM (\
                   SELECT org, {} FROM (\
                     SELECT org, kind, max(toUInt8(multiIf({}, 0))) AS o FROM events \
                     WHERE {COUNTED} AND ({}) GROUP BY org, kind) \
                   UNION ALL \
                   SELECT code AS org, {} FROM org_nodes\
                 ) GROUP BY org",
                sums.join(", "),
                named(&report_values),
                on_time.join(", "),
                reported.join(" OR "),
                named(&unit_values),
            ),
            false,
        )
    }

    pub fn has_data(v: &[i64]) -> bool {
        at(v, 2) > 0
    }

    pub fn reading(&self, v: &[i64]) -> Reading {
        let has_data = Self::has_data(v);
        let mut extras = std::collections::BTreeMap::new();
        for (i, (kind, _)) in self.kinds.iter().enumerate() {
            let base = 3 + 3 * i;
            extras.insert(format!("received_{}", kind.as_str()), at(v, base));
            extras.insert(format!("on_time_{}", kind.as_str()), at(v, base + 1));
            extras.insert(format!("expected_{}", kind.as_str()), at(v, base + 2));
        }
        Reading {
            num: at(v, if self.on_time { 1 } else { 0 }),
            den: Some(at(v, 2)),
            has_data,
            extras,
            ..Reading::default()
        }
    }
}

/// Per kind, the units of its levels that reported in each period, and on time.
pub struct ReportingLeaf {
    kinds: Vec<(Kind, Schedule)>,
    /// Per (org, kind's index, period key): (records, records dated by the due day).
    per_org: HashMap<(NodeIdx, u8, u32), (u32, u32)>,
    /// Per kind: units that reported, per subtree and period.
    received: Vec<PeriodSums>,
    /// Per kind: units that reported on time, per subtree and period.
    on_time: Vec<PeriodSums>,
    /// Per kind: units of its levels in each subtree.
    population: Vec<Vec<i64>>,
}

/// One scheduled report of a unit in the current period, as the unit must see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnReport {
    pub kind: Kind,
    pub every: crate::domain::catalogue::Period,
    pub due: Date,
    /// Records of the kind at the unit dated in the period.
    pub records: u32,
    /// Of them, dated on or before the due day.
    pub on_time: u32,
}

impl OwnReport {
    /// Past its due day with nothing received.
    pub fn missing(&self, today: Date) -> bool {
        self.records == 0 && today > self.due
    }

    /// Not received on time, the due day passed (missing, or received late).
    pub fn late(&self, today: Date) -> bool {
        self.on_time == 0 && today > self.due
    }
}

impl ReportingLeaf {
    /// The reports `org` itself must send in the periods holding `today`, by kind name.
    pub fn own(&self, tree: &OrgTree, org: NodeIdx, today: Date) -> Vec<OwnReport> {
        let level = tree.node(org).level;
        self.kinds
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| s.levels.contains(&level))
            .map(|(i, (kind, s))| {
                let (records, on_time) = self
                    .per_org
                    .get(&(org, i as u8, s.every.key(today)))
                    .copied()
                    .unwrap_or_default();
                OwnReport {
                    kind: *kind,
                    every: s.every,
                    due: s.due(today),
                    records,
                    on_time,
                }
            })
            .collect()
    }

    fn add(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, sign: i32, t: &mut Touch) {
        let Some(i) = self.kinds.iter().position(|(k, _)| *k == kind) else {
            return;
        };
        let schedule = &self.kinds[i].1;
        if !schedule.levels.contains(&t.tree.node(org).level) {
            return;
        }
        let day = local_date_of(r.at);
        let key = schedule.every.key(day);
        let timely = u32::from(day <= schedule.due(day));
        let slot = self.per_org.entry((org, i as u8, key)).or_default();
        let before = *slot;
        if sign > 0 {
            slot.0 += 1;
            slot.1 += timely;
        } else {
            slot.0 = slot.0.saturating_sub(1);
            slot.1 = slot.1.saturating_sub(timely);
        }
        let after = *slot;
        if after == (0, 0) {
            self.per_org.remove(&(org, i as u8, key));
        }
        let flipped = |b: u32, a: u32| i64::from(a > 0) - i64::from(b > 0);
        self.received[i].add(t, org, false, key, flipped(before.0, after.0));
        self.on_time[i].add(t, org, false, key, flipped(before.1, after.1));
    }
}

impl Leaf for ReportingLeaf {
    checkpointed!(per_org, received, on_time);

    fn apply(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.add(r, org, kind, 1, t);
    }

    fn retract(&mut self, r: &EventRow, org: NodeIdx, kind: Kind, t: &mut Touch) {
        self.add(r, org, kind, -1, t);
    }

    fn values(&self, node: NodeIdx, today: Date) -> Vec<i64> {
        let mut total = [0i64; 3];
        let mut each = Vec::with_capacity(3 * self.kinds.len());
        for (i, (_, s)) in self.kinds.iter().enumerate() {
            let key = s.every.key(today);
            let received = self.received[i].get(node, key);
            let on_time = self.on_time[i].get(node, key);
            let expected = if today > s.due(today) {
                self.population[i][node as usize]
            } else {
                received
            };
            for (sum, v) in total.iter_mut().zip([received, on_time, expected]) {
                *sum += v;
            }
            each.extend([received, on_time, expected]);
        }
        total.into_iter().chain(each).collect()
    }
}
