//! A fresh live state for a changed catalogue, built from ClickHouse while the current one keeps
//! serving (see [`super::Hub::begin_switch`] for how nothing is lost or counted twice).

use std::sync::Arc;

use super::aggregate::Aggregates;
use crate::domain::catalogue::Catalogue;
use crate::domain::org::OrgTree;
use crate::domain::record::{EventRow, IMPORT_SEQ_BASE};
use crate::store::{Store, StoreError};

/// What a rebuild read: the records that went in, and those the checks refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rebuilt {
    pub records: u64,
    pub refused: u64,
}

/// Every stored record that counts — the API's up to `upto_seq`, the imports in `ok_imports`
/// — applied to new aggregates for `catalogue`.
pub async fn from_store(
    store: &Store,
    tree: Arc<OrgTree>,
    catalogue: Arc<Catalogue>,
    upto_seq: u64,
    ok_imports: &[u32],
) -> Result<(Aggregates, Rebuilt), StoreError> {
    let mut agg = Aggregates::new(tree, catalogue);
    let mut done = Rebuilt::default();
    store
        .replay(0, upto_seq, ok_imports, |rows| {
            // Only the effective records: a rebuild applies, it never takes back.
            for row in rows.iter().filter(|r| r.sign == 1) {
                done.records += 1;
                if agg.apply(row).is_err() {
                    // Quarantined (and reported) when the serving state took it in.
                    done.refused += 1;
                }
            }
        })
        .await?;
    Ok((agg, done))
}

/// The import a record came from, if it came from one.
pub fn import_of(seq: u64) -> Option<u32> {
    (seq >= IMPORT_SEQ_BASE).then(|| ((seq - IMPORT_SEQ_BASE) >> 32) as u32)
}

/// Whether a record taken in while a rebuild ran is already in the rebuilt state.
pub fn in_rebuild(r: &EventRow, upto_seq: u64, ok_imports: &[u32]) -> bool {
    match import_of(r.seq) {
        Some(import) => ok_imports.contains(&import),
        None => r.seq <= upto_seq,
    }
}
