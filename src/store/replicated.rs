//! The store on a ClickHouse cluster (`clickhouse.cluster`): shards of replicas, ZooKeeper.
//!
//! - **Schema**: `sql/cluster/`, run `ON CLUSTER` (see its first file for the layout:
//!   `events` sharded by district, every other table whole on every server).
//! - **Reads** go wherever `clickhouse.url` points (one server, or HAProxy in front of them):
//!   `events` is a Distributed table, so any server answers for the whole cluster.
//! - **Record inserts** go to each shard's `events_local` directly, with `insert_quorum`, one
//!   insert at a time per shard (18.16 cannot run quorum inserts in parallel on one shard).
//!   Before inserting, the writer stops any insert of its kind still running on the shard's
//!   replicas and asks all of them which seqs landed, so that a batch retried after a failure,
//!   by this or another instance, never lands twice.
//! - **DDL** vscc issues while running (views, scope copies) goes `ON CLUSTER`. A server that is
//!   down runs it from ZooKeeper's queue when it is back; vscc does not wait for it.

use std::collections::HashSet;

use clickhouse::Client;

use super::{ServerException, StoreError};
use crate::domain::record::EventRow;

/// How long a quorum insert may wait for the other replicas (ClickHouse's own default is 10 min).
const QUORUM_TIMEOUT_MS: u32 = 10_000;
/// How long vscc waits for every server to run a DDL statement issued `ON CLUSTER`.
pub const DDL_WAIT_SECS: u32 = 20;

/// The cluster as vscc sees it: its name in the servers' `remote_servers`, and per shard (in
/// that configuration's order) its replicas' HTTP clients.
pub struct Cluster {
    name: String,
    shards: Vec<Vec<Replica>>,
    /// Held per shard from asking what landed to the insert's end: one quorum insert at a time
    /// per shard from this process (the writer and a ledger import may both insert), and no
    /// insert between another's question and its insert.
    shard_locks: Vec<tokio::sync::Mutex<()>>,
    quorum: u32,
}

struct Replica {
    url: String,
    client: Client,
}

impl Cluster {
    /// `shards`: the shards' replicas' HTTP URLs, shards separated by `;`, replicas by `,`
    /// (`http://a:8123,http://b:8123;http://c:8123,http://d:8123`), in the order of the
    /// cluster's `remote_servers`.
    pub fn new(name: &str, shards: &str, quorum: u32, base: &Client) -> Result<Self, StoreError> {
        if !super::is_valid_identifier(name) {
            return Err(StoreError::InvalidIdentifier(name.to_string()));
        }
        let shards: Vec<Vec<Replica>> = shards
            .split(';')
            .map(|shard| {
                shard
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|url| Replica {
                        url: url.to_string(),
                        client: base
                            .clone()
                            .with_url(url)
                            .with_compression(super::compression_for(url)),
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|replicas| !replicas.is_empty())
            .collect();
        if shards.is_empty() {
            return Err(StoreError::Unexpected(anyhow::anyhow!(
                "clickhouse.shards names no server: list each shard's replicas' HTTP URLs, \
                 shards separated by ';' and replicas by ','"
            )));
        }
        Ok(Cluster {
            name: name.to_string(),
            shard_locks: shards.iter().map(|_| Default::default()).collect(),
            shards,
            quorum: quorum.max(1),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard a record's row lives on: the Distributed table's sharding key,
    /// `toUInt64OrZero(district) % shards`.
    pub fn shard_of(&self, district: &str) -> usize {
        (district.parse::<u64>().unwrap_or(0) % self.shards.len() as u64) as usize
    }

    /// Inserts the rows not yet in the cluster (by seq), each shard's into its `events_local`
    /// with the quorum, shards one after another, keeping the rows' order (the caller puts
    /// them in the table's order, which spares ClickHouse the sort). `query_id_prefix` marks the inserts that
    /// may be stopped before asking what landed.
    pub async fn insert_events(
        &self,
        rows: &[&EventRow],
        query_id_prefix: &str,
    ) -> Result<(), StoreError> {
        let mut by_shard: Vec<Vec<&EventRow>> = vec![Vec::new(); self.shards.len()];
        for row in rows {
            by_shard[self.shard_of(&row.district)].push(row);
        }
        for (shard, rows) in by_shard.into_iter().enumerate() {
            if !rows.is_empty() {
                self.insert_into_shard(shard, rows, query_id_prefix).await?;
            }
        }
        Ok(())
    }

    async fn insert_into_shard(
        &self,
        shard: usize,
        rows: Vec<&EventRow>,
        query_id_prefix: &str,
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (
            rows.iter().map(|r| r.seq).min(),
            rows.iter().map(|r| r.seq).max(),
        ) else {
            return Ok(());
        };
        let _one_at_a_time = self.shard_locks[shard].lock().await;
        let landed = self
            .landed_on_shard(shard, first, last, query_id_prefix)
            .await?;
        let missing: Vec<&EventRow> = rows
            .into_iter()
            .filter(|r| !landed.contains(&r.seq))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut last_error = None;
        for replica in &self.shards[shard] {
            let query_id = format!("{query_id_prefix}{}", uuid::Uuid::new_v4().simple());
            let attempt = async {
                let mut insert = replica
                    .client
                    .clone()
                    .with_setting("query_id", query_id)
                    .with_setting("insert_quorum", self.quorum.to_string())
                    .with_setting("insert_quorum_timeout", QUORUM_TIMEOUT_MS.to_string())
                    .insert::<EventRow>("events_local")
                    .await?;
                for row in &missing {
                    insert.write(*row).await?;
                }
                insert.end().await?;
                Ok::<(), StoreError>(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                // This replica is down: another of the shard takes the insert.
                Err(StoreError::Unavailable(e)) => {
                    tracing::debug!(replica = %replica.url, error = %e, "a replica does not answer; trying the next");
                    last_error = Some(StoreError::Unavailable(e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| StoreError::Unavailable("no replica".into())))
    }

    /// Seqs in `first..=last` on any replica of `shard`, asked once no insert with the prefix
    /// is still running on any of them. A quorum insert that failed may have left its rows on
    /// one replica only (the other fetches them later), so every replica that answers is asked.
    /// Seqs in `first..=last` landed on any shard (see [`Self::landed_on_shard`]).
    pub async fn landed(
        &self,
        first: u64,
        last: u64,
        query_id_prefix: &str,
    ) -> Result<HashSet<u64>, StoreError> {
        let mut landed = HashSet::new();
        for shard in 0..self.shards.len() {
            landed.extend(
                self.landed_on_shard(shard, first, last, query_id_prefix)
                    .await?,
            );
        }
        Ok(landed)
    }

    async fn landed_on_shard(
        &self,
        shard: usize,
        first: u64,
        last: u64,
        query_id_prefix: &str,
    ) -> Result<HashSet<u64>, StoreError> {
        let mut landed = HashSet::new();
        let mut answered = 0;
        let mut last_error = None;
        for replica in &self.shards[shard] {
            let asked = async {
                replica
                    .client
                    .query("KILL QUERY WHERE startsWith(query_id, ?) SYNC")
                    .bind(query_id_prefix)
                    .execute()
                    .await?;
                Ok::<Vec<u64>, StoreError>(
                    replica
                        .client
                        .query("SELECT seq FROM events_local WHERE seq >= ? AND seq <= ?")
                        .bind(first)
                        .bind(last)
                        .fetch_all::<u64>()
                        .await?,
                )
            };
            match asked.await {
                Ok(seqs) => {
                    answered += 1;
                    landed.extend(seqs);
                }
                Err(e @ StoreError::Unavailable(_)) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        if answered == 0 {
            return Err(last_error.unwrap_or_else(|| StoreError::Unavailable("no replica".into())));
        }
        Ok(landed)
    }

    /// `ON CLUSTER <name>`, for DDL.
    pub fn on_cluster(&self) -> String {
        format!(" ON CLUSTER {}", self.name)
    }
}

/// Whether a failed `ON CLUSTER` statement ran where it could and is queued for the servers
/// that are down: ClickHouse stopped waiting for them (TIMEOUT_EXCEEDED), and each runs it from
/// ZooKeeper's queue when it is back.
pub fn queued_for_absent_servers(e: &StoreError) -> bool {
    matches!(e, StoreError::Rejected(ServerException { code: 159, message }) if message.contains("distributed_ddl_task_timeout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(shards: &str) -> Cluster {
        Cluster::new("vscc", shards, 2, &Client::default()).unwrap()
    }

    #[test]
    fn shards_and_replicas_are_read_in_order() {
        let c = cluster("http://a:1, http://b:1; http://c:1,http://d:1;");
        assert_eq!(c.shard_count(), 2);
        let urls: Vec<Vec<&str>> = c
            .shards
            .iter()
            .map(|s| s.iter().map(|r| r.url.as_str()).collect())
            .collect();
        assert_eq!(
            urls,
            [["http://a:1", "http://b:1"], ["http://c:1", "http://d:1"]]
        );
        assert!(Cluster::new("vscc", " ; ", 2, &Client::default()).is_err());
        assert!(Cluster::new("no such", "http://a:1", 2, &Client::default()).is_err());
    }

    #[test]
    fn rows_go_to_the_shard_the_distributed_table_would_pick() {
        let c = cluster("http://a:1;http://b:1");
        // toUInt64OrZero(district) % 2
        assert_eq!(c.shard_of("440303"), 1);
        assert_eq!(c.shard_of("440304"), 0);
        assert_eq!(
            c.shard_of(""),
            0,
            "a city-level record has no district: key 0"
        );
        assert_eq!(cluster("http://a:1").shard_of("440303"), 0);
    }
}
