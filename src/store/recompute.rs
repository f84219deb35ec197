//! Every figure recomputed in plain SQL, generated from the same metric definitions the live
//! engine runs: a second, independent derivation to check the live figures against (the
//! integration tests compare the two for every node × metric, before and after a restart).
//!
//! Each measure becomes one query of per-org values (`SELECT org, [v1, v2, …] AS vals`), summed
//! over each node's subtree with `org_nodes.ancestors` (or kept per org for `own` measures);
//! the reading is then put together as the measure type says. Only definitions reach the SQL
//! text — kinds and fields the catalogue checked against the closed list of each — never input.

use std::collections::{BTreeMap, HashMap};

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use super::{counted_imports_param, Store, StoreError, COUNTED_EVENTS};
use crate::domain::catalogue::{Catalogue, Condition, Measure, Period};
use crate::domain::metric::{MetricId, Reading};
use crate::domain::record::Kind;
use crate::domain::time::{local_date, SHANGHAI};

/// Per org: the org whose closing record closes its cases when only the level above may (the
/// district for a street or community, the city for a district, the city for itself) — as
/// `CasesLeaf::closed_by_level_above` has it.
const RESPONDERS: &str =
    "SELECT org, multiIf(level = 'community', grandparent, level = 'city', org, parent) \
     AS responder FROM (SELECT code AS org, level, parent FROM org_nodes) \
     ANY LEFT JOIN (SELECT node AS parent, grandparent FROM \
     (SELECT code AS node, parent AS grandparent FROM org_nodes)) USING parent";

/// Per node code: the summed values of one measure's query.
type PerNode = HashMap<String, Vec<i64>>;

#[derive(clickhouse::Row, serde::Deserialize)]
struct NodeValues {
    node: String,
    vals: Vec<i64>,
}

fn quoted(s: &str) -> String {
    // Definitions only (kind names, level names, field names): no quote can occur, and this
    // keeps it so should one ever slip through.
    format!("'{}'", s.replace(['\\', '\''], ""))
}

fn unix_start(d: Date) -> i64 {
    PrimitiveDateTime::new(d, Time::MIDNIGHT)
        .assume_offset(SHANGHAI)
        .unix_timestamp()
}

/// `AND <at within the current period>`, or nothing for `all`.
fn in_period(period: Period, today: Date) -> String {
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

/// A count or flag field of the generic row (0 where a row lacks it).
fn num(field: &str) -> String {
    format!("num_values[indexOf(num_keys, {})]", quoted(field))
}

/// `AND <each condition>`, on the stored fields, or on the `v_<field>` columns of a subquery.
fn conditions(when: &[Condition], latest: bool) -> String {
    when.iter()
        .map(|c| {
            let value = if latest {
                format!("v_{}", c.field)
            } else {
                num(&c.field)
            };
            format!(" AND {value} = {}", c.equals)
        })
        .collect()
}

fn of_kinds(kinds: &[Kind]) -> String {
    let names: Vec<String> = kinds.iter().map(|k| quoted(k.as_str())).collect();
    format!("kind IN ({})", names.join(", "))
}

/// The per-org query of a measure that is not a ratio, and whether it stays per org.
fn per_org_sql(m: &Measure, today: Date, now: i64) -> (String, bool) {
    match m {
        Measure::Count {
            kind,
            when,
            period,
            own,
            sum,
        } => {
            let held = format!("1{}{}", conditions(when, false), in_period(*period, today));
            let value = match sum {
                None => format!("countIf({held})"),
                Some(field) => format!("sumIf({}, {held})", num(field)),
            };
            (
                format!(
                    "SELECT org, [toInt64({value}), toInt64(count())] AS vals FROM events \
                     WHERE kind = {} AND {COUNTED_EVENTS} GROUP BY org",
                    quoted(kind.as_str())
                ),
                *own,
            )
        }
        Measure::Distinct { kind, period, own } => (
            format!(
                "SELECT org, [toInt64(uniqExactIf({s}, 1{p})), toInt64(uniqExact({s}))] AS vals \
                 FROM events WHERE kind = {} AND {COUNTED_EVENTS} GROUP BY org",
                quoted(kind.as_str()),
                s = "subject",
                p = in_period(*period, today),
            ),
            *own,
        ),
        Measure::Latest { kind, field } => (
            format!(
                "SELECT org, [toInt64(argMax({}, (at, seq))), 1] AS vals FROM events \
                 WHERE kind = {} AND {COUNTED_EVENTS} GROUP BY org",
                num(field),
                quoted(kind.as_str())
            ),
            false,
        ),
        Measure::Nodes {
            kind, levels, when, ..
        } => {
            let levels: Vec<String> = levels.iter().map(|l| quoted(l.as_str())).collect();
            let latest: Vec<String> = when
                .iter()
                .map(|c| format!(", argMax({}, (at, seq)) AS v_{}", num(&c.field), c.field))
                .collect();
            (
                format!(
                    "SELECT org, [toInt64(1{}), 1] AS vals FROM (SELECT org{} FROM events \
                     WHERE kind = {} AND {COUNTED_EVENTS} AND org IN (SELECT code FROM org_nodes WHERE level IN ({})) \
                     GROUP BY org)",
                    conditions(when, true),
                    latest.concat(),
                    quoted(kind.as_str()),
                    levels.join(", ")
                ),
                false,
            )
        }
        Measure::Matched { kind, with } => (
            format!(
                "SELECT org, [toInt64(sum(a AND b)), toInt64(sum(a))] AS vals FROM (\
                 SELECT org, {s} AS subject, max(kind = {k}) AS a, max(kind = {w}) AS b FROM events \
                 WHERE {kinds} AND {COUNTED_EVENTS} GROUP BY org, subject) GROUP BY org",
                s = "subject",
                k = quoted(kind.as_str()),
                w = quoted(with.as_str()),
                kinds = of_kinds(&[*kind, *with]),
            ),
            false,
        ),
        Measure::Cases {
            opened,
            closed,
            deadlines,
            level_above,
        } => {
            let kinds = m.kinds();
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
                        .map(|k| quoted(k.as_str()))
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
                    format!(
                        ", (NOT closed AND NOT m{i} AND age > {}) AS late{i}",
                        i64::from(d.days) * 86_400
                    )
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
            let per_case = format!(
                "SELECT opener AS org, closers, age{m_names} FROM (\
                 SELECT argMinIf(org, (at, seq), kind = {o}) AS opener, \
                 groupUniqArrayIf(org, kind = {c}) AS closers, \
                 {now} - toInt64(toUInt32(minIf(at, kind = {o}))) AS age{met_cols} \
                 FROM events WHERE {kinds} AND {COUNTED_EVENTS} GROUP BY subject \
                 HAVING countIf(kind = {o}) > 0)",
                o = quoted(opened.as_str()),
                c = quoted(closed.as_str()),
                kinds = of_kinds(&kinds),
            );
            let (source, closed_expr) = if *level_above {
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
        Measure::Elapsed { from, to, quantile } => {
            let to_kinds: Vec<String> = to.iter().map(|k| quoted(k.as_str())).collect();
            (
                // Per node directly (kept "per org"): a quantile does not sum up the tree.
                format!(
                    "SELECT node AS org, [toInt64(quantileExact({quantile:?})(d)), toInt64(count())] AS vals FROM (\
                     SELECT d, ancestors FROM (\
                     SELECT argMinIf(org, (at, seq), kind = {f}) AS org, \
                     greatest(toInt64(toUInt32(minIf(at, kind IN ({t})))) - toInt64(toUInt32(minIf(at, kind = {f}))), 0) AS d \
                     FROM events WHERE {kinds} AND {COUNTED_EVENTS} GROUP BY subject \
                     HAVING countIf(kind = {f}) > 0 AND countIf(kind IN ({t})) > 0) AS q \
                     ANY INNER JOIN (SELECT code AS org, ancestors FROM org_nodes) AS o USING org\
                     ) ARRAY JOIN ancestors AS node GROUP BY node",
                    f = quoted(from.as_str()),
                    t = to_kinds.join(", "),
                    kinds = of_kinds(&m.kinds()),
                ),
                true,
            )
        }
        Measure::Ratio { .. } => (String::new(), false),
    }
}

impl Store {
    /// Runs a per-org query and sums its values over each node's subtree (or keeps them per
    /// org). Nodes without values are absent.
    async fn per_node(
        &self,
        per_org: &str,
        own: bool,
        imports: &[u32],
    ) -> Result<PerNode, StoreError> {
        let sql = if own {
            format!("SELECT org AS node, vals FROM ({per_org})")
        } else {
            format!(
                "SELECT node, groupArray(v) AS vals FROM (\
                   SELECT node, arrayJoin(arrayEnumerate(vals)) AS i, toInt64(sum(vals[i])) AS v FROM (\
                     SELECT ancestors, vals FROM ({per_org}) AS q \
                     ANY INNER JOIN (SELECT code AS org, ancestors FROM org_nodes) AS o USING org\
                   ) ARRAY JOIN ancestors AS node GROUP BY node, i ORDER BY node, i\
                 ) GROUP BY node"
            )
        };
        // Named with its database: on a cluster each shard runs the query's joins and IN
        // subqueries over `events` itself, in its own default database.
        let sql = sql.replace(
            "FROM org_nodes",
            &format!("FROM {}.org_nodes", self.database()),
        );
        let mut query = self.client().query(&sql);
        // One binding per COUNTED_EVENTS in the per-org query.
        for _ in 0..per_org.matches(COUNTED_EVENTS).count() {
            query = query.bind(counted_imports_param(imports));
        }
        let rows: Vec<NodeValues> = query
            .with_setting("wait_end_of_query", "1")
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(|r| (r.node, r.vals)).collect())
    }

    /// Every node's reading of every metric of `catalogue` at `now`, from the stored records
    /// alone: (node code, metric) → reading. `oldest_days` is not recomputed.
    pub async fn recompute(
        &self,
        catalogue: &Catalogue,
        codes: &[String],
        now: OffsetDateTime,
    ) -> Result<HashMap<(String, MetricId), Reading>, StoreError> {
        let today = local_date(now);
        let now_unix = now.unix_timestamp();
        let imports = self.ok_imports().await?;
        let mut out = HashMap::new();
        let mut cache: Vec<(Measure, PerNode)> = Vec::new();
        for def in &catalogue.metrics {
            for leaf in def.measure.leaves() {
                if cache.iter().all(|(m, _)| m != leaf) {
                    let (sql, own) = per_org_sql(leaf, today, now_unix);
                    let values = self.per_node(&sql, own, &imports).await?;
                    let values = match leaf {
                        Measure::Nodes { levels, .. } => {
                            self.with_population(values, levels).await?
                        }
                        _ => values,
                    };
                    cache.push((leaf.clone(), values));
                }
            }
            let values = |m: &Measure, code: &str| -> Vec<i64> {
                cache
                    .iter()
                    .find(|(known, _)| known == m)
                    .and_then(|(_, v)| v.get(code).cloned())
                    .unwrap_or_default()
            };
            for code in codes {
                let reading = match &def.measure {
                    Measure::Ratio { num, den } => {
                        let (n, d) = (values(num, code), values(den, code));
                        let has_data = has_data(den, &d);
                        Reading {
                            num: amount(num, &n),
                            den: Some(if has_data { amount(den, &d) } else { 0 }),
                            has_data,
                            ..Reading::default()
                        }
                    }
                    m => reading(m, &values(m, code)),
                };
                out.insert((code.clone(), def.id), reading);
            }
        }
        Ok(out)
    }

    /// Appends to a `nodes` measure's values the number of nodes of its levels per subtree.
    async fn with_population(
        &self,
        mut values: PerNode,
        levels: &[crate::domain::org::Level],
    ) -> Result<PerNode, StoreError> {
        let levels: Vec<String> = levels.iter().map(|l| quoted(l.as_str())).collect();
        let rows: Vec<(String, i64)> = self
            .client()
            .query(&format!(
                "SELECT node, toInt64(count()) FROM org_nodes ARRAY JOIN ancestors AS node \
                 WHERE level IN ({}) GROUP BY node",
                levels.join(", ")
            ))
            .fetch_all()
            .await?;
        for (node, n) in rows {
            let v = values.entry(node).or_insert_with(|| vec![0, 0]);
            v.push(n);
        }
        for v in values.values_mut() {
            v.resize(3, 0);
        }
        Ok(values)
    }
}

fn at(v: &[i64], i: usize) -> i64 {
    v.get(i).copied().unwrap_or(0)
}

/// What a measure counts: the first value of its query (cases: the open count).
fn amount(m: &Measure, v: &[i64]) -> i64 {
    match m {
        Measure::Cases { .. } => at(v, 1),
        _ => at(v, 0),
    }
}

fn has_data(m: &Measure, v: &[i64]) -> bool {
    match m {
        Measure::Nodes { .. } => at(v, 1) > 0 && at(v, 2) > 0,
        Measure::Cases { .. } => at(v, 0) > 0,
        _ => at(v, 1) > 0,
    }
}

fn reading(m: &Measure, v: &[i64]) -> Reading {
    let has = has_data(m, v);
    match m {
        Measure::Nodes { share: true, .. } => Reading {
            num: at(v, 0),
            den: Some(if has { at(v, 2) } else { 0 }),
            has_data: has,
            ..Reading::default()
        },
        Measure::Matched { .. } => Reading {
            num: at(v, 0),
            den: Some(if has { at(v, 1) } else { 0 }),
            has_data: has,
            ..Reading::default()
        },
        Measure::Elapsed { .. } if has => Reading {
            num: at(v, 0),
            den: Some(3600),
            has_data: true,
            ..Reading::default()
        },
        Measure::Cases { deadlines, .. } => Reading {
            num: at(v, 1),
            den: None,
            has_data: has,
            overdue: Some(at(v, 2)),
            extras: deadlines
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("overdue_{}", d.name), at(v, 3 + i)))
                .collect::<BTreeMap<_, _>>(),
            oldest_days: None,
        },
        _ => Reading {
            num: at(v, 0),
            den: None,
            has_data: has,
            ..Reading::default()
        },
    }
}
