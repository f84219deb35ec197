//! Replaying the stored records into the live figures: at start-up, and when a changed
//! catalogue is rebuilt.

use super::{counted_imports_param, Store, StoreError};
use crate::domain::record::{EventRow, IMPORT_SEQ_BASE};

/// Readers of ClickHouse at once: decoding rows is most of a rebuild's work, and two
/// readers keep both cores busy while one thread applies.
const READERS: u64 = 2;

/// A version of a record, as one number: its id and version number hashed.
fn version_key(id: &str, version: u32) -> u128 {
    let mut key = Vec::with_capacity(id.len() + 4);
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(&version.to_le_bytes());
    xxhash_rust::xxh3::xxh3_128(&key)
}

impl Store {
    /// Reads the stored rows that count — the API's after `after_seq` up to `upto_seq`, the
    /// imports in `ok_imports` — in batches, in no particular order, handing each batch to `each` (as the
    /// columns of [`LIVE_COLUMNS`](super::LIVE_COLUMNS)). Returns how many were read.
    ///
    /// Every row comes back, for exactly-once to know its key; a version that a counted row
    /// cancels comes back with sign 0, so that only the effective records (sign 1) are
    /// applied, in any order.
    pub async fn replay(
        &self,
        after_seq: u64,
        upto_seq: u64,
        ok_imports: &[u32],
        mut each: impl FnMut(&[EventRow]),
    ) -> Result<u64, StoreError> {
        const COUNTED: &str = "((seq > ? AND seq <= ?) OR (seq >= ? AND \
             has(?, toUInt32(intDiv(seq - ?, 4294967296)))))";
        let counted = move |q: clickhouse::query::Query, ok_imports: &[u32]| {
            q.bind(after_seq)
                .bind(upto_seq.min(IMPORT_SEQ_BASE - 1))
                .bind(IMPORT_SEQ_BASE)
                .bind(counted_imports_param(ok_imports))
                .bind(IMPORT_SEQ_BASE)
        };
        // The versions cancelled, read first (few: the corrections and withdrawals), and
        // looked up here as the rows stream by: asking ClickHouse to mark each row against a
        // set of them doubled the time a rebuild reads (15.2 s against 7 s for 10 M rows).
        let mut cancelled = std::collections::HashSet::new();
        let mut cursor = counted(
            self.client().query(&format!(
                "SELECT id, version FROM events WHERE sign = -1 AND {COUNTED}"
            )),
            ok_imports,
        )
        .with_setting("wait_end_of_query", "1")
        .fetch::<(String, u32)>()?;
        while let Some((id, version)) = cursor.next().await? {
            cancelled.insert(version_key(&id, version));
        }
        let cancelled = std::sync::Arc::new(cancelled);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EventRow>>(8);
        let mut readers = Vec::new();
        for part in 0..READERS {
            let (store, tx, ok_imports) = (self.clone(), tx.clone(), ok_imports.to_vec());
            let cancelled = cancelled.clone();
            readers.push(tokio::spawn(async move {
                let query = store.client().query(&format!(
                    "SELECT {} FROM events WHERE {COUNTED} AND seq % {READERS} = {part}",
                    super::LIVE_COLUMNS
                ));
                let mut cursor = counted(query, &ok_imports)
                    .with_setting("wait_end_of_query", "1")
                    .fetch::<EventRow>()?;
                let mut batch = Vec::with_capacity(4096);
                while let Some(mut row) = cursor.next().await? {
                    if row.sign == 1
                        && !cancelled.is_empty()
                        && cancelled.contains(&version_key(&row.id, row.version))
                    {
                        row.sign = 0;
                    }
                    batch.push(row);
                    if batch.len() == 4096 {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(4096));
                        if tx.send(full).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                let _ = tx.send(batch).await;
                Ok::<_, StoreError>(())
            }));
        }
        drop(tx);
        let mut read = 0u64;
        while let Some(batch) = rx.recv().await {
            read += batch.len() as u64;
            each(&batch);
            // Long rebuilds share the runtime with the requests being served meanwhile.
            tokio::task::yield_now().await;
        }
        for reader in readers {
            reader
                .await
                .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("a reader failed: {e}")))??;
        }
        Ok(read)
    }
}
