//! The one insert path into `events`: every writer of records — the local log's, the record
//! stream's, a ledger import, the benches — goes through here. Rows in the order of the table's
//! key, as RowBinary (copied as the log kept it, or encoded here), one INSERT a batch; on a
//! cluster, each shard's rows to its replicas with the quorum. And the one retry policy of a
//! writer ([`Attempts`]): what failed is classed by its [`RetryHint`], waited for with the one
//! [`Backoff`], and a failure retrying cannot fix is reported in [`InsertHealth`] (`/readyz`,
//! `/metrics`) until an insert works again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::retry::Backoff;
use super::rowbinary::{self, KeyOf};
use super::{RetryHint, Store, StoreError};
use crate::domain::record::EventRow;

/// Whether a writer is stuck on an insert that retrying cannot fix: the reason, for `/readyz`
/// and `/metrics`. The records stay in the log (or the record stream) meanwhile.
#[derive(Debug, Default)]
pub struct InsertHealth {
    blocked: std::sync::Mutex<Option<String>>,
    /// Failed inserts, (worth retrying, not).
    pub failures: (std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64),
}

impl InsertHealth {
    pub fn blocked(&self) -> Option<String> {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set(&self, reason: Option<String>) {
        *self.blocked.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }
}

/// How a writer tries again: a failure worth retrying waits the backoff (doubling from
/// `first` to `most`); one that retrying cannot fix (a bad schema, a limit) is said in the
/// health and tried again every `blocked_retry`, since only a change elsewhere fixes it.
#[derive(Debug)]
pub struct Attempts {
    backoff: Backoff,
    blocked_retry: Duration,
    health: std::sync::Arc<InsertHealth>,
    last_error_log: Option<Instant>,
}

impl Attempts {
    pub fn new(
        first: Duration,
        most: Duration,
        blocked_retry: Duration,
        health: std::sync::Arc<InsertHealth>,
    ) -> Self {
        Attempts {
            backoff: Backoff::new(first, most),
            blocked_retry,
            health,
            last_error_log: None,
        }
    }

    /// An insert failed: counted, logged (at most every 30 s), said in the health when retrying
    /// cannot fix it; answers how long to wait before the next attempt. `pending`: the rows
    /// waiting, for the log.
    pub fn failed(&mut self, e: &StoreError, pending: usize) -> Duration {
        let hint = e.retry_hint();
        let (retryable, not) = &self.health.failures;
        match hint {
            RetryHint::Retry => retryable.fetch_add(1, Ordering::Relaxed),
            RetryHint::Fail => not.fetch_add(1, Ordering::Relaxed),
        };
        let log_now = self
            .last_error_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(30));
        if log_now {
            self.last_error_log = Some(Instant::now());
        }
        match hint {
            RetryHint::Retry => {
                if log_now {
                    tracing::warn!(error = %e, pending, "inserting into ClickHouse failed; the records are kept and will be retried");
                }
                self.backoff.next_wait()
            }
            RetryHint::Fail => {
                if log_now {
                    tracing::error!(error = %e, pending, retry_in = ?self.blocked_retry,
                        "inserting into ClickHouse failed, and trying again will not help until the store is fixed; the records are kept");
                }
                self.health.set(Some(e.to_string()));
                self.blocked_retry
            }
        }
    }

    /// An insert landed: the backoff starts over and a blocked writer is unblocked.
    pub fn landed(&mut self) {
        self.backoff.reset();
        if self.health.blocked().is_some() {
            tracing::info!("inserting into ClickHouse works again");
            self.health.set(None);
        }
    }
}

/// A row to insert: the row, or its RowBinary encoding as the log kept it.
#[derive(Debug, Clone, Copy)]
pub enum ToInsert<'a> {
    Row(&'a EventRow),
    Encoded(&'a [u8]),
}

impl<'a> ToInsert<'a> {
    pub fn key(self) -> KeyOf<'a> {
        match self {
            ToInsert::Row(r) => key_of_row(r),
            // Bytes this process encoded; were they not a row, ClickHouse would refuse them.
            ToInsert::Encoded(bytes) => rowbinary::key_of(bytes).unwrap_or_default(),
        }
    }

    pub fn seq(self) -> u64 {
        match self {
            ToInsert::Row(r) => r.seq,
            ToInsert::Encoded(_) => self.key().seq,
        }
    }
}

pub fn key_of_row(r: &EventRow) -> KeyOf<'_> {
    KeyOf {
        seq: r.seq,
        kind: r.kind.as_bytes(),
        org: r.org.as_bytes(),
        at: r.at,
    }
}

/// Inserts logged records into `events` in one INSERT (one block: ClickHouse makes it atomic).
pub async fn insert_events(store: &Store, rows: &[EventRow]) -> Result<(), StoreError> {
    insert_rows(
        store,
        rows.iter().map(ToInsert::Row),
        &log_insert_prefix(store),
    )
    .await
}

/// Inserts the rows ClickHouse does not have yet (by seq): what a writer does whose
/// predecessor, or whose own earlier attempt, may have landed part of them. Asking stops any
/// insert of logged records still running first (see [`landed_seqs`]).
pub async fn insert_events_checked(store: &Store, rows: &[&EventRow]) -> Result<(), StoreError> {
    let rows = rows.iter().map(|&r| ToInsert::Row(r));
    if store.cluster().is_some() {
        // A cluster's inserts ask each shard what landed themselves.
        return insert_rows(store, rows, &log_insert_prefix(store)).await;
    }
    let (Some(first), Some(last)) = (
        rows.clone().map(ToInsert::seq).min(),
        rows.clone().map(ToInsert::seq).max(),
    ) else {
        return Ok(());
    };
    let landed = landed_seqs(store, first, last).await?;
    let missing = rows.filter(|r| !landed.contains(&r.seq()));
    insert_rows(store, missing, &log_insert_prefix(store)).await
}

/// Inserts a ledger import's rows into `events`: the same way, but with query ids that
/// recovery of the log leaves alone.
pub async fn insert_imported(store: &Store, rows: &[EventRow]) -> Result<(), StoreError> {
    let prefix = format!("vscc_import_{}_", store.database());
    insert_rows(store, rows.iter().map(ToInsert::Row), &prefix).await
}

/// How much RowBinary is handed to the HTTP body at a time: ClickHouse parses while the rest
/// is still being copied.
const INSERT_CHUNK_BYTES: usize = 1 << 20;

pub async fn insert_rows<'a>(
    store: &Store,
    rows: impl Iterator<Item = ToInsert<'a>>,
    query_id_prefix: &str,
) -> Result<(), StoreError> {
    let rows = in_table_order(rows.collect(), ToInsert::key);
    if rows.is_empty() {
        return Ok(());
    }
    let _gate = store.insert_gate().read().await;
    if let Some(cluster) = store.cluster() {
        // Each shard's rows to its replicas, with the quorum, after asking what landed: on a
        // cluster every insert is checked, since a quorum insert that failed may have landed
        // on one replica. (A cluster's writer keeps the rows; should an encoding come here
        // all the same, it is decoded.)
        let owned: Vec<std::borrow::Cow<EventRow>> = rows
            .iter()
            .filter_map(|r| match *r {
                ToInsert::Row(r) => Some(std::borrow::Cow::Borrowed(r)),
                ToInsert::Encoded(bytes) => {
                    rowbinary::decode_event(bytes).map(std::borrow::Cow::Owned)
                }
            })
            .collect();
        let rows: Vec<&EventRow> = owned.iter().map(|r| r.as_ref()).collect();
        return cluster.insert_events(&rows, query_id_prefix).await;
    }
    let query_id = format!("{query_id_prefix}{}", uuid::Uuid::new_v4().simple());
    let mut insert = store
        .bulk_client()
        .with_setting("query_id", query_id)
        .insert_formatted_with(rowbinary::events_insert("events"));
    // A row ends a chunk once it holds the chunk's size: room for one more large row.
    let fresh_chunk = || Vec::with_capacity(INSERT_CHUNK_BYTES + (64 << 10));
    let mut chunk = fresh_chunk();
    for row in rows {
        match row {
            ToInsert::Encoded(bytes) => chunk.extend_from_slice(bytes),
            ToInsert::Row(row) => rowbinary::encode_event(row, &mut chunk),
        }
        if chunk.len() >= INSERT_CHUNK_BYTES {
            insert
                .send(std::mem::replace(&mut chunk, fresh_chunk()).into())
                .await?;
        }
    }
    if !chunk.is_empty() {
        insert.send(chunk.into()).await?;
    }
    insert.end().await?;
    Ok(())
}

/// Every insert of logged records into `events` carries a query id with this prefix, so that
/// vscc can settle an insert left in flight (by a killed predecessor, or one that failed)
/// before it asks ClickHouse which records landed: a cut-off RowBinary stream can still land
/// a prefix of the rows after the question has been answered.
pub fn log_insert_prefix(store: &Store) -> String {
    format!("vscc_events_{}_", store.database())
}

/// Seqs of logged records in `first..=last` already in ClickHouse, asked once no insert of
/// logged records is still running (`KILL QUERY … SYNC` stops or waits them out), so that the
/// answer stays true.
pub async fn landed_seqs(store: &Store, first: u64, last: u64) -> Result<HashSet<u64>, StoreError> {
    if let Some(cluster) = store.cluster() {
        return cluster.landed(first, last, &log_insert_prefix(store)).await;
    }
    store
        .server_client()
        .query("KILL QUERY WHERE startsWith(query_id, ?) SYNC")
        .bind(log_insert_prefix(store))
        .execute()
        .await?;
    Ok(store
        .client()
        .query("SELECT seq FROM events WHERE seq >= ? AND seq <= ?")
        .bind(first)
        .bind(last)
        .with_setting("wait_end_of_query", "1")
        .fetch_all::<u64>()
        .await?
        .into_iter()
        .collect())
}

/// The rows in the order of the `events` sorting key: kind, org, at, seq. ClickHouse checks
/// whether an inserted block is already in key order and then skips sorting it. Measured on
/// 18.16 with 2 M rows: 4.2 s to insert them unsorted, 0.7 s sorted.
///
/// Kinds and orgs are ranked once per batch (a batch holds a few dozen kinds and at most every
/// org), so that the sort compares integers: (kind rank, org rank, at) packed in a u64, then
/// the seq. Comparing the strings through the row pointers made this sort a sixth of the
/// server's ingest CPU. Each row's key is read once (for a logged row, from its bytes).
pub fn in_table_order<'a, T: Copy>(rows: Vec<T>, key: impl Fn(T) -> KeyOf<'a>) -> Vec<T> {
    let keys: Vec<KeyOf> = rows.iter().map(|&r| key(r)).collect();
    let kinds = Ranks::of(keys.iter().map(|k| k.kind));
    let orgs = Ranks::of(keys.iter().map(|k| k.org));
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    if kinds.len() > 1 << 16 || orgs.len() > 1 << 16 {
        // Not from a validated org tree: compare the strings.
        order.sort_unstable_by_key(|&i| {
            let k = &keys[i as usize];
            (k.kind, k.org, k.at, k.seq)
        });
    } else {
        let packed = |i: usize| kinds.rank(i) << 48 | orgs.rank(i) << 32 | u64::from(keys[i].at);
        let mut keyed: Vec<(u64, u64, u32)> = order
            .iter()
            .map(|&i| (packed(i as usize), keys[i as usize].seq, i))
            .collect();
        keyed.sort_unstable();
        order = keyed.into_iter().map(|(_, _, i)| i).collect();
    }
    order.into_iter().map(|i| rows[i as usize]).collect()
}

/// Each name's rank among the distinct names, by position: one hash lookup per name.
struct Ranks {
    /// Per position, the index of its name in first-seen order.
    seen_as: Vec<u32>,
    /// Per first-seen index, the rank in sorted order.
    rank: Vec<u64>,
}

impl Ranks {
    fn of<'a>(names: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut index: FxHashMap<&[u8], u32> = FxHashMap::default();
        let mut distinct: Vec<&[u8]> = Vec::new();
        let seen_as = names
            .map(|name| {
                *index.entry(name).or_insert_with(|| {
                    distinct.push(name);
                    distinct.len() as u32 - 1
                })
            })
            .collect();
        let mut by_name: Vec<u32> = (0..distinct.len() as u32).collect();
        by_name.sort_unstable_by_key(|&i| distinct[i as usize]);
        let mut rank = vec![0; distinct.len()];
        for (r, i) in by_name.into_iter().enumerate() {
            rank[i as usize] = r as u64;
        }
        Ranks { seen_as, rank }
    }

    fn len(&self) -> usize {
        self.rank.len()
    }

    fn rank(&self, position: usize) -> u64 {
        self.rank[self.seen_as[position] as usize]
    }
}

#[cfg(test)]
mod order_tests {
    use super::in_table_order;
    use crate::domain::record::{EventRow, Kind};

    #[test]
    fn rows_come_out_in_the_order_of_the_table_key() {
        // Org codes of three lengths (a prefix sorts before its extensions), kinds sharing
        // prefixes, equal (kind, org, at) told apart by seq.
        let orgs = [
            "440303001002",
            "440303",
            "440303001",
            "440304",
            "440303001001",
        ];
        let kinds = [
            Kind::APPEAL_RECEIVED,
            Kind::APPEAL_ACCEPTED,
            Kind::STAFF_HIRED,
        ];
        let mut rows = Vec::new();
        for seq in 0..60u64 {
            let mut row = EventRow::blank(
                format!("r{seq}"),
                kinds[(seq * 7 % 3) as usize],
                orgs[(seq * 11 % 5) as usize].to_string(),
                "440303".into(),
                1_600_000_000 + (seq % 4) as u32,
                0,
                "test",
            );
            row.seq = 1_000 - seq;
            rows.push(row);
        }
        let mut expected: Vec<&EventRow> = rows.iter().collect();
        expected.sort_by(|a, b| {
            (&*a.kind, a.org.as_str(), a.at, a.seq).cmp(&(&*b.kind, b.org.as_str(), b.at, b.seq))
        });
        let expected: Vec<u64> = expected.iter().map(|r| r.seq).collect();
        // As the writer hands them over (in seq order), and in any other order.
        for given in [rows.iter().rev().collect::<Vec<_>>(), rows.iter().collect()] {
            let sorted: Vec<u64> = in_table_order(given, super::key_of_row)
                .iter()
                .map(|r| r.seq)
                .collect();
            assert_eq!(sorted, expected);
        }
    }
}
