//! Store errors, classified: a retryable error (the server is down or overloaded) is worth
//! trying again; a non-retryable one (bad SQL, a schema mismatch) is not.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse is unreachable: {0}")]
    Unavailable(String),
    #[error("ClickHouse refused the query: {0}")]
    Rejected(String),
    #[error("'{0}' is not a valid ClickHouse identifier (letters, digits and _ only)")]
    InvalidIdentifier(String),
    #[error("migration {version:04} ({name}) failed: {reason}")]
    Migration {
        version: u32,
        name: String,
        reason: String,
    },
    #[error("{binary} was not found: run scripts/setup to install ClickHouse (or set clickhouse.url to an external server)")]
    BinaryMissing { binary: String },
    #[error("the managed ClickHouse did not start: {0}")]
    ManagedStart(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl StoreError {
    /// Whether the same request may succeed later without any change on our side.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<clickhouse::error::Error> for StoreError {
    fn from(e: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        match e {
            E::Network(_) | E::TimedOut => StoreError::Unavailable(e.to_string()),
            // The server answered with an exception (bad SQL, unknown table, limits …).
            E::BadResponse(msg) => {
                if is_overload(&msg) {
                    StoreError::Unavailable(msg)
                } else {
                    StoreError::Rejected(msg)
                }
            }
            other => StoreError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

/// ClickHouse codes that mean "not now" rather than "never": too many simultaneous queries
/// (202), too many parts (252), memory limit (241), timeout (159 is the user's own limit, so
/// not retryable).
fn is_overload(msg: &str) -> bool {
    [
        "Code: 202",
        "Code: 252",
        "Code: 241",
        "Code: 209",
        "Code: 210",
    ]
    .iter()
    .any(|c| msg.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_retryable_and_bad_sql_is_not() {
        let overload: StoreError = clickhouse::error::Error::BadResponse(
            "Code: 252, e.displayText() = Too many parts".into(),
        )
        .into();
        assert!(overload.is_retryable());
        let syntax: StoreError = clickhouse::error::Error::BadResponse(
            "Code: 62, e.displayText() = Syntax error".into(),
        )
        .into();
        assert!(!syntax.is_retryable());
    }
}
