//! Ad-hoc SQL for analysts, run by ClickHouse as a read-only user of the caller's scope.
//!
//! vscc never inspects the SQL: what a query may do is ClickHouse's decision, through the
//! users file this module writes ([`scopes::users_xml`]) and the scope databases it keeps
//! ([`scopes::ensure_scope_database`]). vscc names the query (`query_id`) so that a cancel —
//! or the client going away — can kill it in ClickHouse, and logs every query.

pub mod history;
pub mod refusal;
pub mod scopes;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use crate::domain::org::{NodeIdx, OrgTree};
use crate::store::{Store, StoreError};
pub use history::{QueryLogEntry, SavedQuery};
pub use refusal::{ClickHouseRefusal, RefusalClass};

#[derive(Debug, Clone, Deserialize)]
pub struct SqlSettings {
    /// Folder of ClickHouse's users files (`users.d`); empty: the managed server's, or none.
    pub users_dir: PathBuf,
    pub networks: Vec<String>,
    pub max_execution_time_secs: u64,
    pub max_result_rows: u64,
    pub max_result_bytes: u64,
    pub max_memory_usage: u64,
    pub max_rows_to_read: u64,
    pub quota_queries_per_hour: u64,
    pub quota_execution_secs_per_hour: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// ClickHouse's JSONCompact: `meta`, `data` (rows as arrays), `rows`, `statistics`.
    Json,
    /// CSV with a header row.
    Csv,
}

impl OutputFormat {
    fn clickhouse_name(self) -> &'static str {
        match self {
            OutputFormat::Json => "JSONCompact",
            OutputFormat::Csv => "CSVWithNames",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json; charset=utf-8",
            OutputFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("ClickHouse refused the query: {} (code {})", .0.message, .0.code)]
    Refused(ClickHouseRefusal),
    #[error("the analysts' ClickHouse users are not installed on this server: {0}")]
    NotProvisioned(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Where a query runs: the ClickHouse user and its one database.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: String,
    pub database: String,
    pub scope: String,
}

#[derive(Default)]
struct Provisioned {
    /// Scopes whose users are in the users file.
    in_users_file: BTreeSet<String>,
    /// Users ClickHouse has been seen to accept.
    accepted: BTreeSet<String>,
    /// Scope databases known to exist.
    databases: BTreeSet<String>,
    /// The users file's last modification time (whole seconds).
    users_file_mtime: u64,
    /// Per database: the checksum of the per-kind views made there (remade when the record
    /// kinds change).
    kind_views: std::collections::BTreeMap<String, String>,
}

struct Running {
    user: String,
    cancelled: bool,
}

pub struct SqlGateway {
    store: Store,
    tree: Arc<OrgTree>,
    settings: SqlSettings,
    users_file: Option<PathBuf>,
    password: String,
    http: reqwest::Client,
    provisioned: tokio::sync::Mutex<Provisioned>,
    running: Mutex<HashMap<String, Running>>,
}

impl SqlGateway {
    /// `users_dir`: where to write the users file (None: an operator installs it).
    pub fn new(
        store: Store,
        tree: Arc<OrgTree>,
        settings: SqlSettings,
        users_dir: Option<PathBuf>,
        password: String,
    ) -> Self {
        let users_file = users_dir.map(|d| d.join(format!("vscc-{}.xml", store.database())));
        SqlGateway {
            store,
            tree,
            settings,
            users_file,
            password,
            http: reqwest::Client::new(),
            provisioned: Default::default(),
            running: Mutex::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The users file for an operator to install on an external ClickHouse: every scope.
    pub fn users_xml_for_all_scopes(&self) -> String {
        let scopes: Vec<String> = self.tree.nodes().map(|(_, n)| n.code.clone()).collect();
        scopes::users_xml(
            self.store.database(),
            &scopes,
            &self.password,
            &self.settings,
        )
    }

    /// Where `who` (role, scope) runs SQL over `scope`: admins over the whole city read vscc's
    /// own database unmasked; everyone else the scope's masked copy.
    pub async fn target(
        &self,
        admin_over_city: bool,
        scope: NodeIdx,
        kinds: &crate::domain::kinds::Kinds,
    ) -> Result<Target, SqlError> {
        let db = self.store.database().to_string();
        let code = self.tree.node(scope).code.clone();
        let mut p = self.provisioned.lock().await;
        let (user, database) = if admin_over_city {
            (scopes::admin_user(&db), db.clone())
        } else {
            if !p.databases.contains(&code) {
                scopes::ensure_scope_database(&self.store, &self.tree, scope).await?;
                p.databases.insert(code.clone());
            }
            let sdb = scopes::scope_database(&db, &code);
            (sdb.clone(), sdb)
        };
        let views = scopes::kind_views(kinds);
        let sum = crate::store::migrate::checksum(
            &views
                .iter()
                .map(|(name, select)| format!("{name} {select};"))
                .collect::<String>(),
        );
        if p.kind_views.get(&database) != Some(&sum) {
            scopes::refresh_kind_views(&self.store, &database, &views).await?;
            p.kind_views.insert(database.clone(), sum);
        }
        if let Some(file) = &self.users_file {
            if !admin_over_city && !p.in_users_file.contains(&code) {
                if p.in_users_file.is_empty() {
                    // First use: the root and the nodes below it (Shenzhen: the city and its
                    // districts) at once, so most analysts never wait.
                    for idx in self.tree.with_children(self.tree.root()) {
                        p.in_users_file.insert(self.tree.node(idx).code.clone());
                    }
                }
                p.in_users_file.insert(code.clone());
                p.users_file_mtime =
                    self.write_users_file(file, &p.in_users_file, p.users_file_mtime)?;
            } else if !file.exists() {
                p.users_file_mtime =
                    self.write_users_file(file, &p.in_users_file, p.users_file_mtime)?;
            }
        }
        if !p.accepted.contains(&user) {
            self.wait_until_accepted(&user, &database).await?;
            p.accepted.insert(user.clone());
        }
        Ok(Target {
            user,
            database,
            scope: code,
        })
    }

    /// Writes the users file; returns its modification time. ClickHouse 18.16 notices a changed
    /// config file by its modification time in whole seconds, so two writes within one second
    /// would look like one: each write is stamped at least a second after the last.
    fn write_users_file(
        &self,
        file: &std::path::Path,
        scopes: &BTreeSet<String>,
        last_mtime: u64,
    ) -> Result<u64, SqlError> {
        let scopes: Vec<String> = scopes.iter().cloned().collect();
        let xml = scopes::users_xml(
            self.store.database(),
            &scopes,
            &self.password,
            &self.settings,
        );
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
        // Written whole then renamed: ClickHouse never reads half a file.
        let tmp = file.with_extension("xml.tmp");
        std::fs::write(&tmp, xml).map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mtime = now.max(last_mtime + 1);
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(mtime)))
            .map_err(|e| anyhow::anyhow!("stamping {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, file)
            .map_err(|e| anyhow::anyhow!("renaming to {}: {e}", file.display()))?;
        Ok(mtime)
    }

    /// ClickHouse reloads users files every few seconds: wait until it knows the user.
    async fn wait_until_accepted(&self, user: &str, database: &str) -> Result<(), SqlError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let probe = self
                .post(
                    user,
                    database,
                    &uuid::Uuid::new_v4().to_string(),
                    "TabSeparated",
                    "SELECT 1",
                )
                .await?;
            if probe.status().is_success() {
                return Ok(());
            }
            let body = probe.text().await.unwrap_or_default();
            if Instant::now() >= deadline {
                let refusal = refusal::parse(&body);
                return Err(SqlError::NotProvisioned(format!(
                    "user {user}: {} (code {}); install the file `vscc sql users-xml` prints (README: SQL for analysts)",
                    refusal.message, refusal.code
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn post(
        &self,
        user: &str,
        database: &str,
        query_id: &str,
        format: &str,
        sql: &str,
    ) -> Result<reqwest::Response, SqlError> {
        let url = reqwest::Url::parse_with_params(
            self.store.url(),
            &[
                ("database", database),
                ("query_id", query_id),
                ("default_format", format),
                // Errors found late must come back as errors, not as a cut-off result.
                ("wait_end_of_query", "1"),
            ],
        )
        .map_err(|e| anyhow::anyhow!("ClickHouse URL: {e}"))?;
        self.http
            .post(url)
            .basic_auth(user, Some(&self.password))
            .body(sql.to_string())
            .send()
            .await
            .map_err(|e| SqlError::Store(StoreError::Unavailable(e.to_string())))
    }

    /// Runs `sql` as `target`'s user. The answer streams; the query is logged when it ends,
    /// and killed in ClickHouse if the stream is dropped first.
    pub async fn run(
        self: &Arc<Self>,
        user: &str,
        target: &Target,
        sql: &str,
        format: OutputFormat,
        query_id: Option<String>,
    ) -> Result<QueryRun, SqlError> {
        if sql.trim().is_empty() {
            return Err(SqlError::Invalid {
                field: "sql",
                reason: "is empty".into(),
            });
        }
        let id = query_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                Running {
                    user: user.to_string(),
                    cancelled: false,
                },
            );
        let mut guard = RunGuard {
            gateway: self.clone(),
            id: id.clone(),
            entry: QueryLogEntry::new(&id, user, &target.scope, sql),
            started: Instant::now(),
            finished: false,
        };
        let response = self
            .post(
                &target.user,
                &target.database,
                &id,
                format.clickhouse_name(),
                sql,
            )
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                guard.finish("error", 0, &e.to_string()).await;
                return Err(e);
            }
        };
        if !response.status().is_success() {
            let body = response.text().await.unwrap_or_default();
            let refusal = refusal::with_hint(refusal::parse(&body), sql);
            let cancelled = refusal.class == RefusalClass::Cancelled || self.was_cancelled(&id);
            guard
                .finish(
                    if cancelled { "cancelled" } else { "error" },
                    0,
                    &refusal.message,
                )
                .await;
            let refusal = if cancelled {
                ClickHouseRefusal {
                    class: RefusalClass::Cancelled,
                    ..refusal
                }
            } else {
                refusal
            };
            return Err(SqlError::Refused(refusal));
        }
        Ok(QueryRun {
            id,
            format,
            response,
            guard,
        })
    }

    fn was_cancelled(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|r| r.cancelled)
    }

    /// Cancels a running query of `user` (any user's for admins): killed in ClickHouse.
    pub async fn cancel(&self, id: &str, user: &str, is_admin: bool) -> Result<(), SqlError> {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get_mut(id) {
                Some(r) if r.user == user || is_admin => r.cancelled = true,
                _ => return Err(SqlError::NotFound(format!("running query {id}"))),
            }
        }
        self.kill(id).await
    }

    async fn kill(&self, id: &str) -> Result<(), SqlError> {
        self.store
            .server_client()
            .query("KILL QUERY WHERE query_id = ? SYNC")
            .bind(id)
            .execute()
            .await
            .map_err(|e| SqlError::Store(e.into()))
    }

    /// Whether ClickHouse is still running the query (for tests and the console).
    pub async fn is_running_in_clickhouse(&self, id: &str) -> Result<bool, SqlError> {
        let n: u64 = self
            .store
            .server_client()
            .query("SELECT count() FROM system.processes WHERE query_id = ?")
            .bind(id)
            .fetch_one()
            .await
            .map_err(|e| SqlError::Store(e.into()))?;
        Ok(n > 0)
    }

    /// The tables and columns the target's user may read.
    /// The tables and columns an analyst works with (vscc's bookkeeping — migrations, saved
    /// queries, notifications, the tables a migration kept — is not listed, even to admins).
    pub async fn schema(&self, target: &Target) -> Result<Vec<history::ColumnInfo>, SqlError> {
        Ok(self
            .store
            .server_client()
            .query(
                "SELECT table, name, type FROM system.columns WHERE database = ? \
                 AND (has(?, table) OR startsWith(table, 'kind_')) ORDER BY table, name",
            )
            .bind(target.database.as_str())
            .bind(scopes::ANALYST_TABLES)
            .fetch_all()
            .await
            .map_err(StoreError::from)?)
    }
}

/// Logs the query once, when it ends; kills it in ClickHouse when dropped before the end (the
/// client went away).
struct RunGuard {
    gateway: Arc<SqlGateway>,
    id: String,
    entry: QueryLogEntry,
    started: Instant,
    finished: bool,
}

impl RunGuard {
    /// Ends the run; the returned future writes the log entry. Awaited before the answer ends,
    /// so that a console refreshing its history right after a query sees it.
    #[must_use = "the log entry is written when the future runs"]
    fn finish(
        &mut self,
        outcome: &str,
        rows: u64,
        error: &str,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.finished = true;
        let mut entry = self.entry.clone();
        entry.duration_ms = self.started.elapsed().as_millis() as u64;
        entry.rows = rows;
        entry.outcome = outcome.to_string();
        entry.error = error.to_string();
        self.gateway
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        let store = self.gateway.store.clone();
        async move {
            if let Err(e) = history::log(&store, &entry).await {
                tracing::warn!(error = %e, query = %entry.id, "could not log a query");
            }
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (gateway, id) = (self.gateway.clone(), self.id.clone());
        tokio::spawn(self.finish("cancelled", 0, "the client closed the connection"));
        tokio::spawn(async move {
            if let Err(e) = gateway.kill(&id).await {
                tracing::warn!(error = %e, query = %id, "could not kill an abandoned query");
            }
        });
    }
}

/// A query ClickHouse has answered; its body is still to be streamed.
pub struct QueryRun {
    pub id: String,
    pub format: OutputFormat,
    response: reqwest::Response,
    guard: RunGuard,
}

impl QueryRun {
    /// The answer as it arrives from ClickHouse; counts rows on the way for the log.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        struct State {
            body: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
            guard: RunGuard,
            format: OutputFormat,
            newlines: u64,
            tail: Vec<u8>,
        }
        let state = State {
            body: self.response.bytes_stream().boxed(),
            guard: self.guard,
            format: self.format,
            newlines: 0,
            tail: Vec::new(),
        };
        futures_util::stream::unfold(Some(state), |state| async move {
            let mut s = state?;
            match s.body.next().await {
                Some(Ok(chunk)) => {
                    s.newlines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    s.tail.extend_from_slice(&chunk);
                    if s.tail.len() > 4096 {
                        s.tail.drain(..s.tail.len() - 4096);
                    }
                    Some((Ok(chunk), Some(s)))
                }
                Some(Err(e)) => {
                    s.guard.finish("error", 0, &e.to_string()).await;
                    Some((Err(std::io::Error::other(e)), None))
                }
                None => {
                    let rows = match s.format {
                        OutputFormat::Csv => s.newlines.saturating_sub(1),
                        OutputFormat::Json => rows_in_json_tail(&s.tail).unwrap_or(0),
                    };
                    s.guard.finish("ok", rows, "").await;
                    None
                }
            }
        })
    }
}

/// JSONCompact ends with `"rows": N,`; read N from the last bytes of the answer.
fn rows_in_json_tail(tail: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(tail);
    let at = text.rfind("\"rows\":")?;
    text[at + 7..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_count_comes_from_the_end_of_a_json_answer() {
        let tail = br#"	"data": [[1]],
	"rows": 1234,
	"rows_before_limit_at_least": 1234,
	"statistics": {"elapsed": 0.001, "rows_read": 1, "bytes_read": 1}
}"#;
        assert_eq!(rows_in_json_tail(tail), Some(1234));
        assert_eq!(rows_in_json_tail(b"{}"), None);
    }
}
