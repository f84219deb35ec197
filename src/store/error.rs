//! Store errors, classified once: ClickHouse's exception text is parsed here (both its 18.16
//! and its current shape) into a code and a message, and every error says whether the same
//! request may succeed later ([`RetryHint`]). The analysts' SQL maps the same codes to what
//! the analyst is told (`sql::refusal`); the writer, the alert deliveries and the HTTP edge
//! act on the hint.

/// Whether trying the same request again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// The server is down, restarting or overloaded: the same request may succeed later.
    Retry,
    /// Never without a change on our side: bad SQL, a schema mismatch, a limit, no access.
    Fail,
}

/// An exception ClickHouse answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerException {
    /// 0 when the text carried none.
    pub code: u32,
    pub message: String,
}

impl ServerException {
    /// Reads the error body of ClickHouse's HTTP interface, e.g. (18.16)
    /// `Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode, e.what() = DB::Exception`
    /// or (current) `Code: 164. DB::Exception: Cannot insert into table in readonly mode. (READONLY) (version 24.3.1.1)`.
    pub fn parse(body: &str) -> Self {
        let body = body.trim();
        // The client crate may put its own words before the server's: find the code anywhere.
        let from_code = body.find("Code: ").map_or(body, |at| &body[at..]);
        let code = from_code
            .strip_prefix("Code: ")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse::<u32>().ok())
            .unwrap_or(0);
        let mut message = match body.find("DB::Exception: ") {
            Some(at) => &body[at + "DB::Exception: ".len()..],
            None => body,
        };
        for tail in [", e.what() = ", " (version "] {
            if let Some(at) = message.find(tail) {
                message = &message[..at];
            }
        }
        let message = message.trim().trim_end_matches('.').trim().to_string();
        ServerException { code, message }
    }

    /// Codes that mean "not now" rather than "never". A limit (memory 241, time 159, rows …)
    /// is the request's own: the same request would hit it again.
    pub fn retry_hint(&self) -> RetryHint {
        match self.code {
            // TOO_MANY_SIMULTANEOUS_QUERIES, TOO_MANY_PARTS, SOCKET_TIMEOUT, NETWORK_ERROR,
            // TABLE_IS_READ_ONLY (a replica without ZooKeeper), UNKNOWN_STATUS_OF_INSERT,
            // ALL_CONNECTION_TRIES_FAILED, NO_ZOOKEEPER, KEEPER_EXCEPTION, TOO_FEW_LIVE_REPLICAS
            // and UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE (a quorum insert while a replica is down)
            202 | 252 | 209 | 210 | 242 | 319 | 279 | 225 | 999 | 285 | 286 => RetryHint::Retry,
            _ => RetryHint::Fail,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse is unreachable: {0}")]
    Unavailable(String),
    #[error("ClickHouse refused the query: {} (code {})", .0.message, .0.code)]
    Rejected(ServerException),
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
    pub fn retry_hint(&self) -> RetryHint {
        match self {
            StoreError::Unavailable(_) => RetryHint::Retry,
            StoreError::Rejected(e) => e.retry_hint(),
            _ => RetryHint::Fail,
        }
    }

    /// The server's exception, when it answered with one.
    pub fn exception(&self) -> Option<&ServerException> {
        match self {
            StoreError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl From<clickhouse::error::Error> for StoreError {
    fn from(e: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        match e {
            E::Network(_) | E::TimedOut => StoreError::Unavailable(e.to_string()),
            // The server answered with an exception (bad SQL, unknown table, limits …).
            E::BadResponse(msg) => StoreError::Rejected(ServerException::parse(&msg)),
            other => StoreError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_server(body: &str) -> StoreError {
        clickhouse::error::Error::BadResponse(body.into()).into()
    }

    #[test]
    fn reads_the_18_16_error_shape() {
        let e = ServerException::parse("Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode, e.what() = DB::Exception\n");
        assert_eq!(
            e,
            ServerException {
                code: 164,
                message: "Cannot insert into table in readonly mode".into(),
            }
        );
    }

    #[test]
    fn reads_the_current_error_shape() {
        let e = ServerException::parse("Code: 159. DB::Exception: Timeout exceeded: elapsed 3.0 seconds, maximum: 3. (TIMEOUT_EXCEEDED) (version 24.3.1.1 (official build))");
        assert_eq!(e.code, 159);
        assert_eq!(
            e.message,
            "Timeout exceeded: elapsed 3.0 seconds, maximum: 3. (TIMEOUT_EXCEEDED)"
        );
    }

    #[test]
    fn unknown_shapes_keep_the_text() {
        let e = ServerException::parse("something odd");
        assert_eq!((e.code, e.message.as_str()), (0, "something odd"));
    }

    #[test]
    fn overload_and_outages_are_worth_retrying_and_mistakes_and_limits_are_not() {
        for (body, hint) in [
            ("Code: 252, e.displayText() = DB::Exception: Too many parts", RetryHint::Retry),
            ("Code: 202. DB::Exception: Too many simultaneous queries. (TOO_MANY_SIMULTANEOUS_QUERIES)", RetryHint::Retry),
            // Measured on 18.16: a quorum insert with one of two replicas stopped.
            ("Code: 285, e.displayText() = DB::Exception: Number of alive replicas (1) is less than requested quorum (2)., e.what() = DB::Exception", RetryHint::Retry),
            ("Code: 62, e.displayText() = DB::Exception: Syntax error", RetryHint::Fail),
            ("Code: 16, e.displayText() = DB::Exception: No such column headcount in table vscc.events", RetryHint::Fail),
            // One reading of 241 everywhere: the request's own memory limit, not an outage.
            ("Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded", RetryHint::Fail),
            ("Code: 164. DB::Exception: Cannot insert into table in readonly mode. (READONLY)", RetryHint::Fail),
        ] {
            assert_eq!(from_server(body).retry_hint(), hint, "{body}");
        }
        assert_eq!(
            StoreError::Unavailable("connection refused".into()).retry_hint(),
            RetryHint::Retry
        );
        assert_eq!(
            StoreError::InvalidIdentifier("a-b".into()).retry_hint(),
            RetryHint::Fail
        );
    }
}
