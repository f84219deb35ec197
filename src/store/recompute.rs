//! Every figure recomputed in plain SQL, generated from the same metric definitions the live
//! engine runs: a second, independent derivation to check the live figures against (the
//! integration tests compare the two for every node × metric, before and after a restart).
//!
//! Each measure's type writes its per-org query (`SELECT org, [v1, v2, …] AS vals`,
//! [`Measure::sql`]); here it is summed over each node's subtree with `org_nodes.ancestors` (or
//! kept per org), and the values are read by the type's one reading rule — the live engine's.
//! Only definitions reach the SQL text — kinds and fields the catalogue checked against the
//! closed list of each — never input.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::{counted_imports_param, Store, StoreError, EFFECTIVE_EVENTS};
use crate::domain::catalogue::{Catalogue, Measure};
use crate::domain::metric::{MetricId, Reading};
use crate::domain::time::local_date;

/// Per node code: the summed values of one measure's query.
type PerNode = HashMap<String, Vec<i64>>;

#[derive(clickhouse::Row, serde::Deserialize)]
struct NodeValues {
    node: String,
    vals: Vec<i64>,
}

/// The query that sums a per-org query's values over each node's subtree (or keeps them per
/// org), as text to run on any ClickHouse: the finished imports are written in (numbers of
/// vscc's own), the org tree named with its database (on a cluster each shard runs the joins
/// and IN subqueries over `events` itself, in its own default database).
fn per_node_sql(database: &str, per_org: &str, own: bool, imports: &[u32]) -> String {
    let counted = EFFECTIVE_EVENTS.replace(
        '?',
        &format!(
            "[{}]",
            counted_imports_param(imports)
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let per_org = per_org.replace(crate::domain::measure::COUNTED, &counted);
    // ALL INNER JOIN: the same on every ClickHouse (an ANY INNER JOIN joins each right row
    // only once since version 20).
    let sql = if own {
        format!("SELECT org AS node, vals FROM ({per_org})")
    } else {
        format!(
            "SELECT node, groupArray(v) AS vals FROM (\
               SELECT node, arrayJoin(arrayEnumerate(vals)) AS i, toInt64(sum(vals[i])) AS v FROM (\
                 SELECT ancestors, vals FROM ({per_org}) AS q \
                 ALL INNER JOIN (SELECT code AS org, ancestors FROM org_nodes) AS o USING org\
               ) ARRAY JOIN ancestors AS node GROUP BY node, i ORDER BY node, i\
             ) GROUP BY node"
        )
    };
    sql.replace("FROM org_nodes", &format!("FROM {database}.org_nodes"))
}

/// The number of nodes of `levels` in each node's subtree (what a `nodes` measure is a share
/// of). Level names come from the closed `Level` enum, never from input.
fn population_sql(levels: &[crate::domain::org::Level]) -> String {
    let levels: Vec<String> = levels.iter().map(|l| format!("'{}'", l.as_str())).collect();
    format!(
        "SELECT node, toInt64(count()) AS nodes FROM org_nodes ARRAY JOIN ancestors AS node \
         WHERE level IN ({}) GROUP BY node",
        levels.join(", ")
    )
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
        let sql = per_node_sql(self.database(), per_org, own, imports);
        let rows: Vec<NodeValues> = self
            .client()
            .query(&sql)
            .with_setting("wait_end_of_query", "1")
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(|r| (r.node, r.vals)).collect())
    }

    /// The recomputation's queries as text (`SELECT node, vals …`, one per distinct leaf of the
    /// catalogue's measures, and `SELECT node, nodes` for the population a share is of), named
    /// by the first metric that reads each: what a check on another ClickHouse runs.
    pub fn recompute_queries(
        &self,
        catalogue: &Catalogue,
        now: OffsetDateTime,
        imports: &[u32],
    ) -> Vec<(String, String)> {
        let today = local_date(now);
        let mut seen: Vec<&Measure> = Vec::new();
        let mut out = Vec::new();
        for def in &catalogue.metrics {
            for (i, leaf) in def.measure.leaves().into_iter().enumerate() {
                if seen.contains(&leaf) {
                    continue;
                }
                seen.push(leaf);
                if let Some(q) = leaf.sql(today, now.unix_timestamp()) {
                    out.push((
                        format!("{}#{i} ({})", def.name, leaf.type_name()),
                        per_node_sql(self.database(), &q.sql, q.per_org, imports),
                    ));
                }
                if let Some(levels) = leaf.population_levels() {
                    out.push((
                        format!("{}#{i} (population)", def.name),
                        population_sql(levels),
                    ));
                }
            }
        }
        out
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
                    let Some(q) = leaf.sql(today, now_unix) else {
                        continue;
                    };
                    let mut values = self.per_node(&q.sql, q.per_org, &imports).await?;
                    if let Some(levels) = leaf.population_levels() {
                        values = self.with_population(values, levels).await?;
                    }
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
                let leaves: Vec<Vec<i64>> = def
                    .measure
                    .leaves()
                    .into_iter()
                    .map(|m| values(m, code))
                    .collect();
                out.insert((code.clone(), def.id), def.measure.reading(&leaves));
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
        let rows: Vec<(String, i64)> = self
            .client()
            .query(&population_sql(levels))
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
