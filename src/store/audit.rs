//! The audit trail: who did what, when, from where — every action that changes or reveals
//! something. Appended to ClickHouse's `audit` table and never updated; read by admins
//! (`GET /api/v1/audit`, and in SQL).
//!
//! Recording never waits for ClickHouse: an entry goes to a queue that one task drains in
//! batches, retrying with the one backoff while the store is away (a login must not fail
//! because the store is slow). The queue holds [`QUEUE`] entries; should it ever be full, the
//! entry is written to the log instead and counted (`vscc_audit_entries_dropped` in `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::retry::Backoff;
use super::{now_in_seconds, Store, StoreError};

/// Entries waiting to be written, at most.
const QUEUE: usize = 10_000;
/// Entries written in one insert, at most.
const BATCH: usize = 1_000;

/// At most this many characters of an actor's name or a target are kept (a login may name
/// anything), and of a detail (a query's text, a request body).
const MAX_NAME: usize = 128;
const MAX_DETAIL: usize = 4_000;

/// The first `n` characters of `s` (whole characters: names and SQL are often Chinese).
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((end, _)) => s[..end].to_string(),
        None => s.to_string(),
    }
}

/// What was done. The names are the trail's vocabulary (`action` in the table and the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Login,
    UserAdded,
    UserRevoked,
    ScreenTokenIssued,
    ScreenTokenRevoked,
    AlertAcknowledged,
    AlertUnacknowledged,
    SilenceCreated,
    SilenceEnded,
    SqlRun,
    DefinitionsChanged,
    LedgerImported,
    RecordCorrected,
    RecordWithdrawn,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::Login,
        AuditAction::UserAdded,
        AuditAction::UserRevoked,
        AuditAction::ScreenTokenIssued,
        AuditAction::ScreenTokenRevoked,
        AuditAction::AlertAcknowledged,
        AuditAction::AlertUnacknowledged,
        AuditAction::SilenceCreated,
        AuditAction::SilenceEnded,
        AuditAction::SqlRun,
        AuditAction::DefinitionsChanged,
        AuditAction::LedgerImported,
        AuditAction::RecordCorrected,
        AuditAction::RecordWithdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Login => "login",
            AuditAction::UserAdded => "user_added",
            AuditAction::UserRevoked => "user_revoked",
            AuditAction::ScreenTokenIssued => "screen_token_issued",
            AuditAction::ScreenTokenRevoked => "screen_token_revoked",
            AuditAction::AlertAcknowledged => "alert_acknowledged",
            AuditAction::AlertUnacknowledged => "alert_unacknowledged",
            AuditAction::SilenceCreated => "silence_created",
            AuditAction::SilenceEnded => "silence_ended",
            AuditAction::SqlRun => "sql_run",
            AuditAction::DefinitionsChanged => "definitions_changed",
            AuditAction::LedgerImported => "ledger_imported",
            AuditAction::RecordCorrected => "record_corrected",
            AuditAction::RecordWithdrawn => "record_withdrawn",
        }
    }

    pub fn parse(name: &str) -> Option<AuditAction> {
        Self::ALL.iter().copied().find(|a| a.as_str() == name)
    }
}

/// One entry of the trail, as stored.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub at: OffsetDateTime,
    pub id: String,
    /// The user (or `system` for what the server does of itself, `cli` for the command line).
    pub actor: String,
    pub role: String,
    /// The actor's scope (org code); empty when the actor is not known (a failed login of a
    /// name that does not exist).
    pub scope: String,
    pub action: String,
    /// What the action was on: a user's name, an alert, a file, a query's id.
    pub target: String,
    /// What else says what happened (the SQL text, the file names, the counts).
    pub detail: String,
    /// The client's address, when the action came over HTTP.
    pub address: String,
    /// `ok`, `refused` (with the reason in `detail`) or `failed`.
    pub outcome: String,
}

impl AuditEntry {
    /// An entry of `action` by `actor`, now, `ok`; the builder methods fill in the rest.
    pub fn new(action: AuditAction, actor: &str) -> Self {
        AuditEntry {
            at: now_in_seconds(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            actor: clip(actor, MAX_NAME),
            role: String::new(),
            scope: String::new(),
            action: action.as_str().to_string(),
            target: String::new(),
            detail: String::new(),
            address: String::new(),
            outcome: "ok".to_string(),
        }
    }

    pub fn role(mut self, role: &str) -> Self {
        self.role = role.to_string();
        self
    }

    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_string();
        self
    }

    pub fn target(mut self, target: &str) -> Self {
        self.target = clip(target, MAX_NAME);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = clip(&detail.into(), MAX_DETAIL);
        self
    }

    pub fn address(mut self, address: &str) -> Self {
        self.address = address.to_string();
        self
    }

    pub fn outcome(mut self, outcome: &str) -> Self {
        self.outcome = outcome.to_string();
        self
    }
}

/// Where entries are recorded; cheap to clone.
#[derive(Clone)]
pub struct AuditTrail {
    tx: mpsc::Sender<AuditEntry>,
    dropped: Arc<AtomicU64>,
}

impl AuditTrail {
    /// Starts the task that writes entries to `store`.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_entries(store, rx));
        AuditTrail {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records an entry (never waits).
    pub fn record(&self, entry: AuditEntry) {
        if let Err(e) = self.tx.try_send(entry) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            let entry = match e {
                mpsc::error::TrySendError::Full(entry)
                | mpsc::error::TrySendError::Closed(entry) => entry,
            };
            tracing::error!(
                actor = %entry.actor, action = %entry.action, target = %entry.target,
                detail = %entry.detail, address = %entry.address, outcome = %entry.outcome,
                "audit entry not stored: the queue to ClickHouse is full"
            );
        }
    }

    /// Entries that could not be queued since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_entries(store: Store, mut rx: mpsc::Receiver<AuditEntry>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        loop {
            match insert(&store, &batch).await {
                Ok(()) => {
                    backoff.reset();
                    break;
                }
                Err(e) if matches!(e.retry_hint(), super::RetryHint::Retry) => {
                    tracing::warn!(error = %e, entries = batch.len(), "could not store audit entries; trying again");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, entries = batch.len(), "audit entries refused by the store");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Writes entries at once (the command line, which does not stay to drain a queue).
pub async fn append(store: &Store, entries: &[AuditEntry]) -> Result<(), StoreError> {
    insert(store, entries).await
}

async fn insert(store: &Store, entries: &[AuditEntry]) -> Result<(), StoreError> {
    let mut insert = store.client().insert::<AuditEntry>("audit").await?;
    for e in entries {
        insert.write(e).await?;
    }
    insert.end().await?;
    Ok(())
}

/// What an admin asks of the trail.
#[derive(Debug, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    /// Unix seconds, exclusive.
    pub to: Option<i64>,
    /// Only entries whose scope is one of these (an admin below the city sees the subtree's
    /// actors); `None`: every entry.
    pub scopes: Option<Vec<String>>,
    pub limit: u64,
}

/// Entries matching the query, newest first.
pub async fn read(store: &Store, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = String::from("SELECT ?fields FROM audit WHERE 1");
    if q.actor.is_some() {
        sql.push_str(" AND actor = ?");
    }
    if q.action.is_some() {
        sql.push_str(" AND action = ?");
    }
    if q.from.is_some() {
        sql.push_str(" AND toInt64(toUInt32(at)) >= ?");
    }
    if q.to.is_some() {
        sql.push_str(" AND toInt64(toUInt32(at)) < ?");
    }
    if q.scopes.is_some() {
        sql.push_str(" AND has(?, scope)");
    }
    sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?");
    let mut query = store.client().query(&sql);
    if let Some(actor) = &q.actor {
        query = query.bind(actor);
    }
    if let Some(action) = q.action {
        query = query.bind(action.as_str());
    }
    if let Some(from) = q.from {
        query = query.bind(from);
    }
    if let Some(to) = q.to {
        query = query.bind(to);
    }
    if let Some(scopes) = &q.scopes {
        query = query.bind(scopes);
    }
    Ok(query.bind(q.limit).fetch_all().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_details_are_kept_to_their_bounds_in_whole_characters() {
        let e = AuditEntry::new(AuditAction::Login, &"张".repeat(500))
            .target(&"x".repeat(500))
            .detail("查".repeat(5_000));
        assert_eq!(e.actor.chars().count(), MAX_NAME);
        assert!(e.actor.chars().all(|c| c == '张'));
        assert_eq!(e.target.len(), MAX_NAME);
        assert_eq!(e.detail.chars().count(), MAX_DETAIL);
        let short = AuditEntry::new(AuditAction::SqlRun, "an").detail("SELECT 1");
        assert_eq!(
            (short.actor.as_str(), short.detail.as_str()),
            ("an", "SELECT 1")
        );
    }

    #[test]
    fn every_action_reads_back_from_its_name() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
        assert_eq!(AuditAction::parse("drop_table"), None);
    }
}
