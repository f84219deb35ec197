//! Per measure type: any sequence of records, corrections (the old version taken back, the new
//! one applied) and withdrawals (the record taken back) leaves the live state equal to the
//! state that the effective records alone build — the last version of each record, less the
//! withdrawn ones, applied in any order. A third of the way through, the live state is saved
//! as a checkpoint holds it and the rest of the sequence goes on from the state loaded back:
//! what comes after a checkpoint (taking back records from before it too) lands the same.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;

use super::Aggregates;
use crate::domain::catalogue::Catalogue;
use crate::domain::kinds::{FieldType, Kinds};
use crate::domain::metric::MetricId;
use crate::domain::org::{tree_of, Level, OrgTree};
use crate::domain::record::{EventRow, Kind};

const DAY: i64 = 86_400;
/// Sequences tried per measure type, and steps in each.
const SEQUENCES: u64 = 60;
const STEPS: usize = 120;

fn tree() -> Arc<OrgTree> {
    Arc::new(tree_of(&[
        ("c", Level::City, None),
        ("d1", Level::District, Some("c")),
        ("d2", Level::District, Some("c")),
        ("s1", Level::Street, Some("d1")),
        ("s2", Level::Street, Some("d1")),
        ("s3", Level::Street, Some("d2")),
        ("m1", Level::Community, Some("s1")),
        ("m2", Level::Community, Some("s1")),
        ("m3", Level::Community, Some("s3")),
    ]))
}

/// The shipped metrics with a leaf of the given type (or, for `ratio`, the ratios), and every
/// kind those leaves read.
fn metrics_of(catalogue: &Catalogue, type_name: &str) -> (Vec<MetricId>, Vec<Kind>) {
    let mut metrics = Vec::new();
    let mut kinds = Vec::new();
    for def in &catalogue.metrics {
        let leaves: Vec<_> = if def.measure.type_name() == type_name {
            def.measure.leaves()
        } else {
            def.measure
                .leaves()
                .into_iter()
                .filter(|m| m.type_name() == type_name)
                .collect()
        };
        if leaves.is_empty() {
            continue;
        }
        metrics.push(def.id);
        kinds.extend(leaves.iter().flat_map(|m| m.kinds()));
    }
    kinds.sort_by_key(|k| k.as_str());
    kinds.dedup();
    (metrics, kinds)
}

/// A version of record `id` of `kind`: a random org that may send it, a random time over two
/// years (so periods and deadlines differ), a subject from a small pool (so subjects meet),
/// and random values within the kind's ranges.
fn version(
    rng: &mut StdRng,
    tree: &OrgTree,
    kinds: &Kinds,
    id: &str,
    kind: Kind,
    seq: u64,
    t0: i64,
) -> EventRow {
    let def = kinds.get(kind.as_str()).expect("a shipped kind");
    let orgs: Vec<&str> = tree
        .nodes()
        .filter(|(_, n)| def.levels.contains(&n.level))
        .map(|(_, n)| n.code.as_str())
        .collect();
    let org = orgs.choose(rng).copied().unwrap_or("c");
    let at = (t0 - rng.random_range(0..700) * DAY + rng.random_range(0..DAY)) as u32;
    let mut r = EventRow::blank(id.into(), kind, org.into(), String::new(), at, at, "test");
    r.seq = seq;
    r.subject = format!("p{}", rng.random_range(0..6));
    for f in def.numbers() {
        let n = match f.ty {
            FieldType::Flag => rng.random_range(0..=1),
            _ => rng.random_range(f.min..=f.max.min(f.min + 6)),
        };
        r.set_number(f.key, n);
    }
    for f in def.numbers() {
        if let Some(bound) = f.at_most.as_deref().and_then(|b| r.number(b)) {
            if r.number(f.key).is_some_and(|n| n > bound) {
                r.set_number(f.key, bound);
            }
        }
    }
    r
}

/// The state saved as a checkpoint does, and loaded into aggregates made afresh.
fn through_checkpoint(
    live: &Aggregates,
    tree: &Arc<OrgTree>,
    catalogue: &Arc<Catalogue>,
) -> Aggregates {
    let parts = live.save_parts().expect("saved");
    let parts: Vec<(String, &[u8])> = parts
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.as_slice()))
        .collect();
    let mut loaded = Aggregates::new(tree.clone(), catalogue.clone());
    loaded.load_parts(&parts).expect("loaded");
    loaded
}

fn check(type_name: &str) {
    let catalogue = Arc::new(Catalogue::shipped());
    let (metrics, kinds) = metrics_of(&catalogue, type_name);
    assert!(!metrics.is_empty(), "no shipped metric of type {type_name}");
    let tree = tree();
    let t0: i64 = 1_700_000_000;
    let (mid, end) = (
        OffsetDateTime::from_unix_timestamp(t0 - 300 * DAY).unwrap(),
        OffsetDateTime::from_unix_timestamp(t0).unwrap(),
    );
    for seed in 0..SEQUENCES {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut live = Aggregates::new(tree.clone(), catalogue.clone());
        live.refresh_clock(mid);
        // The effective records: the last version of each id not withdrawn.
        let mut effective: BTreeMap<String, EventRow> = BTreeMap::new();
        let mut seq = 0u64;
        let mut log = Vec::new();
        for step in 0..STEPS {
            if step == STEPS / 2 {
                live.refresh_clock(end);
            }
            if step == STEPS / 3 {
                live = through_checkpoint(&live, &tree, &catalogue);
            }
            seq += 1;
            let ids: Vec<String> = effective.keys().cloned().collect();
            let roll = rng.random_range(0..100);
            if ids.is_empty() || roll < 55 {
                let kind = *kinds.choose(&mut rng).unwrap();
                let r = version(
                    &mut rng,
                    &tree,
                    &catalogue.kinds,
                    &format!("e{seq}"),
                    kind,
                    seq,
                    t0,
                );
                live.apply(&r).unwrap();
                log.push(format!(
                    "apply {} {} {} {} {}",
                    r.id, r.kind, r.org, r.subject, r.at
                ));
                effective.insert(r.id.clone(), r);
            } else {
                let id = ids.choose(&mut rng).unwrap().clone();
                let old = effective.remove(&id).unwrap();
                live.retract(&old).unwrap();
                if roll < 85 {
                    // A correction: a new version of the same kind (another org, time, subject
                    // or values), under the correction's own position in the log.
                    let kind = Kind::named(&old.kind);
                    let r = version(&mut rng, &tree, &catalogue.kinds, &id, kind, seq, t0);
                    live.apply(&r).unwrap();
                    log.push(format!("correct {id} → {} {} {}", r.org, r.subject, r.at));
                    effective.insert(id, r);
                } else {
                    log.push(format!("withdraw {id}"));
                }
            }
        }
        let mut rebuilt = Aggregates::new(tree.clone(), catalogue.clone());
        rebuilt.refresh_clock(end);
        let mut rows: Vec<&EventRow> = effective.values().collect();
        rows.shuffle(&mut rng);
        for r in rows {
            rebuilt.apply(r).unwrap();
        }
        for (node, n) in tree.nodes() {
            for &m in &metrics {
                let name = &catalogue.get(m).unwrap().name;
                let (a, b) = (live.reading(node, m, end), rebuilt.reading(node, m, end));
                assert_eq!(
                    a,
                    b,
                    "{type_name}, seed {seed}: {name} at {} differs from the effective records' (live, then rebuilt)\n{}",
                    n.code,
                    log.join("\n")
                );
                assert_eq!(
                    live.first_overdue_at(node, m),
                    rebuilt.first_overdue_at(node, m),
                    "{type_name}, seed {seed}: {name} at {}: breach start",
                    n.code
                );
            }
        }
    }
}

#[test]
fn count_follows_corrections_and_withdrawals() {
    check("count");
}

#[test]
fn sum_follows_corrections_and_withdrawals() {
    check("sum");
}

#[test]
fn distinct_follows_corrections_and_withdrawals() {
    check("distinct");
}

#[test]
fn latest_follows_corrections_and_withdrawals() {
    check("latest");
}

#[test]
fn nodes_follows_corrections_and_withdrawals() {
    check("nodes");
}

#[test]
fn matched_follows_corrections_and_withdrawals() {
    check("matched");
}

#[test]
fn ratio_follows_corrections_and_withdrawals() {
    check("ratio");
}

#[test]
fn cases_follows_corrections_and_withdrawals() {
    check("cases");
}

#[test]
fn elapsed_follows_corrections_and_withdrawals() {
    check("elapsed");
}

#[test]
fn reporting_follows_corrections_and_withdrawals() {
    check("reporting");
}
