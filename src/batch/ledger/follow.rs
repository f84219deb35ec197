//! Finished imports reach the live figures of every running instance: each polls `imports`.

use std::collections::HashSet;
use std::sync::Arc;

use crate::domain::record::{import_seq_base, EventRow};
use crate::store::Store;

/// Applies finished imports to the live figures, in every running instance: polls `imports`
/// and feeds each newly finished import's records, all of them at once, to `apply`.
pub async fn follow(
    store: Store,
    mut applied: HashSet<u32>,
    apply: impl Fn(u32, &[EventRow]),
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = wake.notified() => {}
        }
        let oks = match store.ok_imports().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the imports table");
                continue;
            }
        };
        let new: Vec<u32> = oks.into_iter().filter(|n| !applied.contains(n)).collect();
        for no in new {
            let from = import_seq_base(no);
            let rows = store
                .client()
                .query(&format!(
                    "SELECT {} FROM events WHERE seq >= ? AND seq < ?",
                    crate::store::LIVE_COLUMNS
                ))
                .bind(from)
                .bind(from + (1 << 32))
                .with_setting("wait_end_of_query", "1")
                .fetch_all::<EventRow>()
                .await;
            match rows {
                Ok(rows) => {
                    apply(no, &rows);
                    tracing::info!(
                        import_no = no,
                        records = rows.len(),
                        "import applied to the live figures"
                    );
                    applied.insert(no);
                }
                Err(e) => {
                    tracing::warn!(error = %e, import_no = no, "cannot read an import's records; retrying")
                }
            }
        }
    }
}
