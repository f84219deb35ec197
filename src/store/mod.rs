//! The ClickHouse analytics store: a managed local server (or an external one), schema
//! migrations and typed access. Everything we send works on ClickHouse 18.16 and on current
//! releases; see STACK.md for what that rules out.

/// The filter of counted rows, as a literal for `concat!`.
macro_rules! counted {
    () => {
        "(seq < 4611686018427387904 OR has(?, toUInt32(intDiv(seq - 4611686018427387904, 4294967296))))"
    };
}

/// The content columns the live figures read, up to `version` (see [`LIVE_COLUMNS`]).
macro_rules! live_content {
    () => {
        "seq, id, kind, org, '' AS district, at, received_at, '' AS source, \
         lon, lat, subject, num_keys, num_values, '' AS data, version"
    };
}

pub mod audit;
pub mod error;
pub mod insert;
pub mod managed;
pub mod migrate;
pub mod recompute;
mod replay;
pub mod replicated;
pub mod retry;
pub mod rowbinary;

pub use error::{RetryHint, ServerException, StoreError};
pub use managed::ManagedClickHouse;
pub use migrate::MIGRATIONS;
pub use replicated::Cluster;

use clickhouse::Client;

/// How large inserts to `url` are sent: no LZ4 on loopback (compressing costs both sides CPU
/// and saves nothing there), the client's default (LZ4) to other machines.
fn compression_for(url: &str) -> clickhouse::Compression {
    let local =
        url.contains("://127.0.0.1") || url.contains("://localhost") || url.contains("://[::1]");
    if local {
        clickhouse::Compression::None
    } else {
        clickhouse::Compression::default()
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Bound to the vscc database.
    client: Client,
    /// Not bound to a database: for `CREATE DATABASE` and server-wide questions.
    server: Client,
    database: String,
    url: String,
    /// Held (shared) by every insert into a table that SQL scopes copy, and (exclusive) while a
    /// scope's copy is back-filled and its copying view created: no row is copied twice or lost.
    insert_gate: std::sync::Arc<tokio::sync::RwLock<()>>,
    /// Set when the store is a cluster (`clickhouse.cluster`): its shards, for record inserts.
    cluster: Option<std::sync::Arc<Cluster>>,
}

/// Database and table names cannot be bound as parameters, so they are checked against this
/// shape before they are spliced into SQL.
pub fn is_valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

impl Store {
    pub fn new(url: &str, user: &str, password: &str, database: &str) -> Result<Self, StoreError> {
        if !is_valid_identifier(database) {
            return Err(StoreError::InvalidIdentifier(database.to_string()));
        }
        // 18.16 knows no RowBinaryWithNamesAndTypes, so row validation must be off.
        let server = Client::default()
            .with_url(url)
            .with_user(user)
            .with_password(password)
            .with_validation(false);
        let client = server.clone().with_database(database);
        Ok(Store {
            client,
            server,
            database: database.to_string(),
            url: url.to_string(),
            insert_gate: Default::default(),
            cluster: None,
        })
    }

    /// The store as a cluster: `name` as in the servers' `remote_servers`, `shards` as in
    /// [`Cluster::new`], record inserts acknowledged by `quorum` replicas of their shard.
    pub fn with_cluster(
        mut self,
        name: &str,
        shards: &str,
        quorum: u32,
    ) -> Result<Self, StoreError> {
        let cluster = Cluster::new(name, shards, quorum, &self.client)?;
        self.cluster = Some(std::sync::Arc::new(cluster));
        Ok(self)
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }

    /// The table a server keeps its own rows of `table` in: on a cluster `events` is a
    /// Distributed table over each shard's `events_local`; every other table is itself.
    pub fn local_table<'a>(&self, table: &'a str) -> &'a str {
        match (&self.cluster, table) {
            (Some(_), "events") => "events_local",
            _ => table,
        }
    }

    /// What DDL puts after the name of what it creates or drops: ` ON CLUSTER <name>` on a
    /// cluster, else nothing.
    pub fn on_cluster(&self) -> String {
        self.cluster().map(Cluster::on_cluster).unwrap_or_default()
    }

    /// Runs a DDL statement built with [`on_cluster`](Self::on_cluster). On a cluster, a server
    /// that is down runs it from ZooKeeper's queue when it is back: vscc waits for the others
    /// only, up to [`replicated::DDL_WAIT_SECS`].
    pub async fn ddl(&self, statement: &str) -> Result<(), StoreError> {
        let query = self.server.query_raw(statement);
        if self.cluster.is_none() {
            return Ok(query.execute().await?);
        }
        let result: Result<(), StoreError> = query
            .with_setting(
                "distributed_ddl_task_timeout",
                replicated::DDL_WAIT_SECS.to_string(),
            )
            .execute()
            .await
            .map_err(Into::into);
        match result {
            Err(e) if replicated::queued_for_absent_servers(&e) => {
                tracing::warn!(error = %e, "a ClickHouse server is down; it runs this DDL when it is back");
                Ok(())
            }
            other => other,
        }
    }

    /// Where users and their password hashes live: a database of their own that no analyst's
    /// ClickHouse user is allowed (sql/0012_private_users.sql).
    pub fn users_table(&self) -> String {
        format!("{}_private.users", self.database)
    }

    /// A client of the private database (users), for inserts into it.
    pub fn private_client(&self) -> Client {
        self.client
            .clone()
            .with_database(format!("{}_private", self.database))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// For large inserts from this machine: no LZ4 (on loopback, compressing costs both sides
    /// CPU and saves nothing); bound to the vscc database.
    pub fn bulk_client(&self) -> Client {
        self.client
            .clone()
            .with_compression(compression_for(&self.url))
    }

    /// Not bound to a database: for statements that name their databases.
    pub fn server_client(&self) -> &Client {
        &self.server
    }

    pub fn insert_gate(&self) -> &tokio::sync::RwLock<()> {
        &self.insert_gate
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// True when the server answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let one: u8 = self.server.query("SELECT toUInt8(1)").fetch_one().await?;
        if one == 1 {
            Ok(())
        } else {
            Err(StoreError::Unexpected(anyhow::anyhow!(
                "SELECT 1 returned {one}"
            )))
        }
    }

    /// The server's version string, e.g. `18.16.1`.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        Ok(self
            .server
            .query("SELECT version()")
            .fetch_one::<String>()
            .await?)
    }

    /// Waits until the server answers or `timeout` passes.
    pub async fn wait_until_up(&self, timeout: std::time::Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.ping().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    }
}

#[derive(clickhouse::Row, serde::Serialize, serde::Deserialize, PartialEq)]
struct OrgNodeRow {
    code: String,
    name: String,
    level: String,
    parent: String,
    ancestors: Vec<String>,
}

impl Store {
    /// Makes `org_nodes` the tree loaded at start-up, when it is not already. Rewriting it
    /// only when it differs matters on a cluster: several instances truncating one replicated
    /// table at once left a replica's drop hanging on 18.16 (measured with 3 instances
    /// starting together).
    pub async fn refresh_org_nodes(&self, tree: &crate::domain::OrgTree) -> Result<(), StoreError> {
        let mut wanted: Vec<OrgNodeRow> = tree
            .nodes()
            .map(|(idx, node)| OrgNodeRow {
                code: node.code.clone(),
                name: node.name.clone(),
                level: node.level.as_str().to_string(),
                parent: node
                    .parent
                    .map(|p| tree.node(p).code.clone())
                    .unwrap_or_default(),
                ancestors: tree
                    .path_to_root(idx)
                    .map(|a| tree.node(a).code.clone())
                    .collect(),
            })
            .collect();
        wanted.sort_by(|a, b| a.code.cmp(&b.code));
        let current = || async {
            self.client
                .query("SELECT code, name, level, parent, ancestors FROM org_nodes ORDER BY code")
                .fetch_all::<OrgNodeRow>()
                .await
        };
        if current().await? == wanted {
            return Ok(());
        }
        // One instance at a time (the migrations' lock), and only if still needed then.
        self.acquire_migration_lock().await?;
        let replaced = async {
            if current().await? == wanted {
                return Ok(());
            }
            self.client
                .query("TRUNCATE TABLE org_nodes")
                .execute()
                .await?;
            let mut insert = self.client.insert::<OrgNodeRow>("org_nodes").await?;
            for row in &wanted {
                insert.write(row).await?;
            }
            insert.end().await?;
            Ok::<(), StoreError>(())
        }
        .await;
        self.release_migration_lock().await;
        replaced
    }
}

/// Now, in whole seconds: what a `DateTime` column keeps.
pub fn now_in_seconds() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// The version of a row written now to a ReplacingMergeTree: grows with every change made
/// anywhere (nanoseconds since the epoch).
pub fn next_version() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64
}

/// Which rows of `events` count: every record from the durable log, and ledger imports whose
/// run finished ('ok'). Bind [`counted_imports_param`] of [`Store::ok_imports`] to the `?`.
pub const COUNTED_EVENTS: &str = counted!();

/// Which rows of `events` every figure is computed from: the effective records — counted
/// versions (sign 1) that no counted row cancels (sign -1, same id and version). Bind
/// [`counted_imports_param`] to both `?`. GLOBAL: on a cluster a correction may have moved a
/// record to another shard; on one server it is a plain `NOT IN`.
pub const EFFECTIVE_EVENTS: &str = concat!(
    "(sign = 1 AND ",
    counted!(),
    " AND (id, version) GLOBAL NOT IN (SELECT id, version FROM events WHERE sign = -1 AND ",
    counted!(),
    "))"
);

/// The columns of `events` the live figures read, as an [`EventRow`] (for `SELECT … FROM
/// events`): the raw `data`, `district` and `source`, and who sent a row and why, come back
/// empty — a rebuild reads every stored record, and those are most of a row's bytes.
///
/// [`EventRow`]: crate::domain::record::EventRow
pub const LIVE_COLUMNS: &str = concat!(
    live_content!(),
    ", sign, cancels, '' AS actor, '' AS reason"
);

/// The array to bind into [`COUNTED_EVENTS`]: never empty (18.16 cannot type `has([], x)`;
/// import numbers start at 1, so 0 matches nothing).
pub fn counted_imports_param(ok_imports: &[u32]) -> Vec<u32> {
    std::iter::once(0)
        .chain(ok_imports.iter().copied())
        .collect()
}

impl Store {
    /// The highest seq a record sent through the API (or the record stream) was stored under:
    /// imports' seqs, in their own range above, left aside.
    pub async fn max_api_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .client
            .query("SELECT maxIf(seq, seq < ?) FROM events")
            .bind(crate::domain::record::IMPORT_SEQ_BASE)
            .fetch_one()
            .await?)
    }

    /// Every counted row of one record (its versions, and the rows that cancel them), in seq
    /// order. `kind`, when known, narrows the read to that kind's part of the table (the
    /// table's order starts with it); `id` is not part of the order, so without it every
    /// row's id is read.
    pub async fn record_rows(
        &self,
        id: &str,
        kind: Option<&str>,
    ) -> Result<Vec<crate::domain::record::EventRow>, StoreError> {
        let imports = counted_imports_param(&self.ok_imports().await?);
        let query = match kind {
            Some(kind) => self
                .client
                .query(&format!(
                    "SELECT ?fields FROM events WHERE kind = ? AND id = ? AND {COUNTED_EVENTS} ORDER BY seq"
                ))
                .bind(kind),
            None => self.client.query(&format!(
                "SELECT ?fields FROM events WHERE id = ? AND {COUNTED_EVENTS} ORDER BY seq"
            )),
        };
        Ok(query.bind(id).bind(imports).fetch_all().await?)
    }

    /// Every counted row of the task kinds, whole (the start-up replay leaves out `data` and
    /// `actor`, which the task board shows).
    pub async fn task_rows(&self) -> Result<Vec<crate::domain::record::EventRow>, StoreError> {
        let imports = counted_imports_param(&self.ok_imports().await?);
        Ok(self
            .client
            .query(&format!(
                "SELECT ?fields FROM events WHERE startsWith(kind, 'task.') AND sign = 1 AND {COUNTED_EVENTS} ORDER BY seq"
            ))
            .bind(imports)
            .fetch_all()
            .await?)
    }

    /// Every counted row of the records `ids`, in seq order: one read of the table for a
    /// whole request of corrections (the ids go in the query's text as one array).
    pub async fn records_rows(
        &self,
        ids: &[&str],
    ) -> Result<Vec<crate::domain::record::EventRow>, StoreError> {
        let imports = counted_imports_param(&self.ok_imports().await?);
        let text: usize = ids.iter().map(|id| id.len() + 4).sum();
        Ok(self
            .client
            .query(&format!(
                "SELECT ?fields FROM events WHERE id IN (SELECT arrayJoin(?)) AND {COUNTED_EVENTS} ORDER BY seq"
            ))
            .bind(ids)
            .bind(imports)
            .with_setting("max_query_size", (text + (1 << 16)).to_string())
            .fetch_all()
            .await?)
    }

    /// The effective records of one org (its own, not its subtree's) since `since` (Unix
    /// seconds), optionally of one kind, newest first: at most `limit`.
    pub async fn org_records(
        &self,
        org: &str,
        since: u32,
        kind: Option<&str>,
        limit: u64,
    ) -> Result<Vec<crate::domain::record::EventRow>, StoreError> {
        let imports = counted_imports_param(&self.ok_imports().await?);
        let of_kind = if kind.is_some() { "AND kind = ?" } else { "" };
        let mut query = self
            .client
            .query(&format!(
                // The tasks' steps are the tasks pages' (they are neither corrected nor withdrawn).
                "SELECT ?fields FROM events WHERE org = ? AND at >= toDateTime(?) {of_kind} \
                 AND NOT startsWith(kind, 'task.') AND {EFFECTIVE_EVENTS} ORDER BY at DESC, seq DESC LIMIT ?"
            ))
            .bind(org)
            .bind(since);
        if let Some(kind) = kind {
            query = query.bind(kind);
        }
        Ok(query
            .bind(imports.clone())
            .bind(imports)
            .bind(limit)
            .fetch_all()
            .await?)
    }

    /// The numbers of the ledger imports that finished, ascending.
    pub async fn ok_imports(&self) -> Result<Vec<u32>, StoreError> {
        Ok(self
            .client
            .query("SELECT import_no FROM imports GROUP BY import_no HAVING argMax(outcome, version) = 'ok' ORDER BY import_no")
            .fetch_all::<u32>()
            .await?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_counted_events_filter_names_the_import_seq_base() {
        let base = crate::domain::record::IMPORT_SEQ_BASE;
        assert!(super::COUNTED_EVENTS.contains(&base.to_string()));
        assert_eq!(super::EFFECTIVE_EVENTS.matches('?').count(), 2);
    }
}
