//! Schema migrations: `sql/NNNN_name.sql`, embedded at build time, applied in order, each once,
//! recorded in `schema_migrations`.
//!
//! ClickHouse has no transactions or advisory locks, so two vscc processes starting together
//! serialise on a lock *table*: `CREATE TABLE` of an existing table fails atomically, so whoever
//! creates `schema_migrations_lock` holds the lock and drops it when done. A lock older than
//! [`STALE_LOCK_SECS`] belonged to a process that died mid-migration and is broken.

use std::time::Duration;

use clickhouse::Row;
use serde::Deserialize;

use super::{Store, StoreError};

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

const STALE_LOCK_SECS: u32 = 120;
const LOCK_WAIT: Duration = Duration::from_secs(90);

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub already_applied: usize,
}

#[derive(Row, Deserialize)]
struct AppliedRow {
    version: u32,
    name: String,
    checksum: String,
}

/// A stable checksum of a migration's text (FNV-1a, hex): detects a file edited after it ran.
pub fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in sql.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Splits a migration into statements at `;` outside quotes and `--` comments.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for n in chars.by_ref() {
                        if n == '\n' {
                            cur.push('\n');
                            break;
                        }
                    }
                }
                ';' => {
                    if !cur.trim().is_empty() {
                        out.push(cur.trim().to_string());
                    }
                    cur.clear();
                }
                _ => cur.push(c),
            },
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

impl Store {
    /// Creates the database if needed and applies every migration not yet applied.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.migrate_until(u32::MAX).await
    }

    /// As [`migrate`](Self::migrate), up to version `last` (to build a store as an earlier
    /// release left it, and check that the migrations after keep it whole).
    pub async fn migrate_until(&self, last: u32) -> Result<MigrationReport, StoreError> {
        if self.cluster().is_some() {
            self.create_cluster_bookkeeping().await?;
        } else {
            self.server
                .query(&format!("CREATE DATABASE IF NOT EXISTS {}", self.database))
                .execute()
                .await?;
            self.client
                .query(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, \
                     checksum String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version",
                )
                .execute()
                .await?;
        }
        self.acquire_migration_lock().await?;
        let result = self.apply_pending(last).await;
        self.release_migration_lock().await;
        result
    }

    pub(super) async fn release_migration_lock(&self) {
        if let Err(e) = self
            .client
            .query("DROP TABLE IF EXISTS schema_migrations_lock")
            .execute()
            .await
        {
            tracing::warn!(error = %e, "could not release the migration lock; it expires by itself");
        }
    }

    /// On a cluster: the database and `schema_migrations` on every server (replicated, so
    /// that every server knows what was applied). Only when missing: `ON CLUSTER` waits for
    /// servers that are down, and an instance starting then should not.
    async fn create_cluster_bookkeeping(&self) -> Result<(), StoreError> {
        let present: u64 = self
            .server
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
            .bind(&self.database)
            .fetch_one()
            .await?;
        if present > 0 {
            return Ok(());
        }
        let (db, on) = (&self.database, self.on_cluster());
        self.ddl(&format!("CREATE DATABASE IF NOT EXISTS {db}{on}"))
            .await?;
        self.ddl(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations{on} (version UInt32, name String, \
             checksum String, applied_at DateTime) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/schema_migrations', '{{replica}}') \
             ORDER BY version"
        ))
        .await
    }

    /// The migrations this store takes: the cluster form on a cluster.
    fn migrations(&self) -> &'static [Migration] {
        if self.cluster().is_some() {
            CLUSTER_MIGRATIONS
        } else {
            MIGRATIONS
        }
    }

    async fn apply_pending(&self, last: u32) -> Result<MigrationReport, StoreError> {
        let applied: Vec<AppliedRow> = self
            .client
            .query(
                "SELECT version, any(name), any(checksum) FROM schema_migrations GROUP BY version",
            )
            .fetch_all()
            .await?;
        let mut report = MigrationReport::default();
        for m in self.migrations().iter().filter(|m| m.version <= last) {
            let sum = checksum(m.sql);
            if let Some(done) = applied.iter().find(|a| a.version == m.version) {
                if done.name != m.name {
                    let (this, other) = match self.cluster() {
                        Some(_) => ("a cluster", "one server"),
                        None => ("one server", "a cluster"),
                    };
                    return Err(StoreError::Migration {
                        version: m.version,
                        name: m.name.into(),
                        reason: format!(
                            "database {} was made for {other} (its migration {} is '{}'), and \
                             vscc is configured for {this}: check clickhouse.cluster",
                            self.database, done.version, done.name
                        ),
                    });
                }
                if done.checksum != sum {
                    return Err(StoreError::Migration {
                        version: m.version,
                        name: m.name.into(),
                        reason:
                            "the file changed after it was applied; add a new migration instead"
                                .into(),
                    });
                }
                report.already_applied += 1;
                continue;
            }
            self.before_migration(m.version)
                .await
                .map_err(|e| StoreError::Migration {
                    version: m.version,
                    name: m.name.into(),
                    reason: e.to_string(),
                })?;
            for statement in split_statements(m.sql) {
                let applied = match self.cluster() {
                    Some(cluster) => {
                        let statement = statement
                            .replace("{db}", &self.database)
                            .replace("{cluster}", cluster.name());
                        self.ddl(&statement).await
                    }
                    None => self
                        .client
                        .query_raw(&statement.replace("{db}", &self.database))
                        .with_setting("allow_experimental_low_cardinality_type", "1")
                        .execute()
                        .await
                        .map_err(Into::into),
                };
                applied.map_err(|e| StoreError::Migration {
                    version: m.version,
                    name: m.name.into(),
                    reason: e.to_string(),
                })?;
            }
            self.client
                .query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, now())")
                .bind(m.version)
                .bind(m.name)
                .bind(&sum)
                .execute()
                .await?;
            tracing::info!(version = m.version, name = m.name, "migration applied");
            report.applied.push(format!("{:04}_{}", m.version, m.name));
        }
        Ok(report)
    }

    /// What a migration needs done first that SQL alone cannot say.
    async fn before_migration(&self, version: u32) -> Result<(), StoreError> {
        if self.cluster().is_some() {
            // The cluster form starts at today's shape: nothing to carry over.
            return Ok(());
        }
        match version {
            // 0010 gives `events` new columns, 0011 `metric_snapshots` one.
            10 => {
                self.undo_unrecorded_0010().await?;
                self.drop_scope_copies("events").await
            }
            11 => self.drop_scope_copies("metric_snapshots").await,
            // 0014 gives `events` the columns of corrections.
            14 => self.drop_scope_copies("events").await,
            _ => Ok(()),
        }
    }

    /// 0010 ends with `RENAME events TO events_typed_0009, events_generic TO events`. A process
    /// that died after the rename but before recording the migration leaves the generic table
    /// as `events` — and a second run would copy from it as if it were typed. Nothing writes
    /// during a migration (it runs under the lock, before the writer starts), so the rename is
    /// undone and 0010 runs again from the typed rows, which are all still there.
    async fn undo_unrecorded_0010(&self) -> Result<(), StoreError> {
        let has = |table: &'static str| async move {
            let n: u64 = self
                .client
                .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
                .bind(&self.database)
                .bind(table)
                .fetch_one()
                .await?;
            Ok::<bool, StoreError>(n > 0)
        };
        if has("events_typed_0009").await? {
            tracing::warn!(
                "0010 was cut off after its rename; undoing the rename and running it again"
            );
            self.client
                .query("DROP TABLE IF EXISTS events_generic")
                .execute()
                .await?;
            self.client
                .query("RENAME TABLE events TO events_generic, events_typed_0009 TO events")
                .execute()
                .await?;
        }
        Ok(())
    }

    /// The materialised views copying `table` into the analysts' scope databases
    /// (`sql_<code>_<table>`) select its columns as they were when made — inserts would fail, or
    /// new columns would never reach the copies — so they and the copies go, and are built
    /// again (back-filled) with the new columns the next time each scope is used.
    async fn drop_scope_copies(&self, table: &str) -> Result<(), StoreError> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Named {
            database: String,
            name: String,
        }
        let scope_databases = format!("{}_sql_", self.database);
        // Only this store's databases are listed: 18.16 builds `system.tables` by walking every
        // database it is asked about, and a table another process drops meanwhile (another
        // vscc's migration lock) fails the whole query with "doesn't exist" (code 60) —
        // measured in CI, with many databases migrating on one server. A race that still
        // slips through is asked again.
        let mut attempts = 0;
        let (views, copies) = loop {
            let listed = async {
                let views: Vec<Named> = self
                    .server
                    .query(
                        "SELECT database, name FROM system.tables WHERE database = ? \
                         AND engine = 'MaterializedView' AND name LIKE concat('sql_%_', ?)",
                    )
                    .bind(&self.database)
                    .bind(table)
                    .fetch_all()
                    .await?;
                let copies: Vec<Named> = self
                    .server
                    .query(
                        "SELECT database, name FROM system.tables \
                         WHERE startsWith(database, ?) AND name = ?",
                    )
                    .bind(&scope_databases)
                    .bind(table)
                    .fetch_all::<Named>()
                    .await?;
                Ok::<_, StoreError>((views, copies))
            }
            .await;
            match listed {
                Err(e) if attempts < 5 && e.exception().is_some_and(|x| x.code == 60) => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
                }
                other => break other?,
            }
        };
        let copies: Vec<Named> = copies
            .into_iter()
            .filter(|t| t.database.starts_with(&scope_databases))
            .collect();
        for t in views.iter().chain(&copies) {
            if super::is_valid_identifier(&t.database) && super::is_valid_identifier(&t.name) {
                self.server
                    .query(&format!("DROP TABLE IF EXISTS {}.{}", t.database, t.name))
                    .execute()
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn acquire_migration_lock(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            let created = self
                .client
                .query("CREATE TABLE schema_migrations_lock (holder String) ENGINE = TinyLog")
                .execute()
                .await;
            match created {
                Ok(()) => return Ok(()),
                // 57: held by another. 60: measured on 18.16 with three processes taking and
                // releasing the lock at once, a CREATE racing a DROP can say the table it is
                // creating does not exist; the lock was contended, so wait likewise.
                Err(clickhouse::error::Error::BadResponse(msg))
                    if msg.contains("already exists")
                        || msg.contains("Code: 57")
                        || msg.contains("Code: 60") =>
                {
                    let age: Option<u32> = self
                        .client
                        .query(
                            "SELECT toUInt32(now() - metadata_modification_time) FROM system.tables \
                             WHERE database = ? AND name = 'schema_migrations_lock'",
                        )
                        .bind(&self.database)
                        .fetch_optional()
                        .await?;
                    if age.is_some_and(|a| a > STALE_LOCK_SECS) {
                        tracing::warn!("breaking a stale migration lock");
                        self.client
                            .query("DROP TABLE IF EXISTS schema_migrations_lock")
                            .execute()
                            .await?;
                        continue;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(StoreError::Migration {
                            version: 0,
                            name: "lock".into(),
                            reason: "another vscc has held the migration lock too long".into(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// True when every embedded migration is recorded as applied.
    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        let applied: Vec<u32> = self
            .client
            .query("SELECT DISTINCT version FROM schema_migrations")
            .fetch_all()
            .await?;
        Ok(self
            .migrations()
            .iter()
            .all(|m| applied.contains(&m.version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let sql =
            "-- a comment; with a semicolon\nCREATE TABLE a (x String DEFAULT ';');\n\nSELECT 1;";
        assert_eq!(
            split_statements(sql),
            ["CREATE TABLE a (x String DEFAULT ';')", "SELECT 1"]
        );
    }

    #[test]
    fn migrations_are_numbered_in_order_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{} is out of sequence", m.name);
        }
    }
}
