//! What can go wrong importing a ledger as a whole (a bad row is a reject, not an error).

use polars::prelude::PolarsError;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be imported: not CSV or Excel, not UTF-8, no org or date column …
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<clickhouse::error::Error> for ImportError {
    fn from(e: clickhouse::error::Error) -> Self {
        ImportError::Store(e.into())
    }
}

impl From<PolarsError> for ImportError {
    fn from(e: PolarsError) -> Self {
        ImportError::Unexpected(anyhow::anyhow!("polars: {e}"))
    }
}

pub fn file_error(path: &std::path::Path, reason: impl Into<String>) -> ImportError {
    ImportError::File {
        file: path.display().to_string(),
        reason: reason.into(),
    }
}
