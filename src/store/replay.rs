//! Replaying the stored records into the live figures: at start-up, and when a changed
//! catalogue is rebuilt.

use super::{counted_imports_param, Store, StoreError};
use crate::domain::record::{EventRow, IMPORT_SEQ_BASE};

/// Readers of ClickHouse at once: decoding rows is most of a rebuild's work, and two
/// readers keep both cores busy while one thread applies.
const READERS: u64 = 2;

impl Store {
    /// Reads the stored rows that count — the API's up to `upto_seq`, the imports in
    /// `ok_imports` — in batches, in no particular order, handing each batch to `each` (as the
    /// columns of [`LIVE_COLUMNS`](super::LIVE_COLUMNS)). Returns how many were read.
    ///
    /// Every row comes back, for exactly-once to know its key; a version that a counted row
    /// cancels comes back with sign 0, so that only the effective records (sign 1) are
    /// applied, in any order.
    pub async fn replay(
        &self,
        upto_seq: u64,
        ok_imports: &[u32],
        mut each: impl FnMut(&[EventRow]),
    ) -> Result<u64, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EventRow>>(8);
        let mut readers = Vec::new();
        for part in 0..READERS {
            let (store, tx, ok_imports) = (self.clone(), tx.clone(), ok_imports.to_vec());
            readers.push(tokio::spawn(async move {
                const COUNTED: &str = "(seq <= ? OR (seq >= ? AND \
                     has(?, toUInt32(intDiv(seq - ?, 4294967296)))))";
                let counted = |q: clickhouse::query::Query| {
                    q.bind(upto_seq.min(IMPORT_SEQ_BASE - 1))
                        .bind(IMPORT_SEQ_BASE)
                        .bind(counted_imports_param(&ok_imports))
                        .bind(IMPORT_SEQ_BASE)
                };
                let query = store.client().query(&format!(
                    "SELECT {}, if(sign = 1 AND (id, version) GLOBAL IN \
                       (SELECT id, version FROM events WHERE sign = -1 AND {COUNTED}), \
                       toInt8(0), sign) AS sign, cancels, '' AS actor, '' AS reason \
                     FROM events WHERE {COUNTED} AND seq % {READERS} = {part}",
                    live_content!()
                ));
                let mut cursor = counted(counted(query))
                    .with_setting("wait_end_of_query", "1")
                    .fetch::<EventRow>()?;
                let mut batch = Vec::with_capacity(4096);
                while let Some(row) = cursor.next().await? {
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
