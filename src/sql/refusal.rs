//! What ClickHouse said when it refused or cut a query, in the analyst's terms.

/// How a ClickHouse error reaches the analyst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// Not allowed for this user: writes, DDL, settings, table functions, other databases.
    Forbidden,
    /// A limit of the analysts' profile cut the query: time, rows, bytes, memory.
    Limit,
    /// The hourly quota is used up.
    Quota,
    /// The query was cancelled.
    Cancelled,
    /// Anything else about the query itself: syntax, unknown table or column, types.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseRefusal {
    pub code: u32,
    pub message: String,
    pub class: RefusalClass,
}

/// What ClickHouse answered, read by the store's one parser, classed for the analyst.
pub fn parse(body: &str) -> ClickHouseRefusal {
    let e = crate::store::ServerException::parse(body);
    ClickHouseRefusal {
        code: e.code,
        class: classify(e.code),
        message: e.message,
    }
}

fn classify(code: u32) -> RefusalClass {
    match code {
        // READONLY, DATABASE_ACCESS_DENIED, ACCESS_DENIED, UNKNOWN_USER, WRONG_PASSWORD,
        // REQUIRED_PASSWORD, IP_ADDRESS_NOT_ALLOWED, NOT_ENOUGH_PRIVILEGES
        164 | 291 | 497 | 192 | 193 | 194 | 195 | 516 => RefusalClass::Forbidden,
        // TOO_MANY_ROWS, TIMEOUT_EXCEEDED, TOO_MANY_BYTES, TOO_MANY_ROWS_OR_BYTES,
        // MEMORY_LIMIT_EXCEEDED, TOO_SLOW
        158 | 159 | 307 | 396 | 241 | 160 => RefusalClass::Limit,
        201 => RefusalClass::Quota,
        394 => RefusalClass::Cancelled,
        _ => RefusalClass::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classed_for_the_analyst() {
        for (body, class) in [
            ("Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode, e.what() = DB::Exception", RefusalClass::Forbidden),
            ("Code: 291. DB::Exception: Database vscc is not allowed. (DATABASE_ACCESS_DENIED)", RefusalClass::Forbidden),
            ("Code: 159. DB::Exception: Timeout exceeded: elapsed 3.0 seconds. (TIMEOUT_EXCEEDED)", RefusalClass::Limit),
            ("Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded", RefusalClass::Limit),
            ("Code: 201, e.displayText() = DB::Exception: Quota for user exceeded", RefusalClass::Quota),
            ("Code: 394. DB::Exception: Query was cancelled. (QUERY_WAS_CANCELLED)", RefusalClass::Cancelled),
            ("Code: 62, e.displayText() = DB::Exception: Syntax error", RefusalClass::Invalid),
            ("something odd", RefusalClass::Invalid),
        ] {
            assert_eq!(parse(body).class, class, "{body}");
        }
        assert_eq!(
            parse("Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode, e.what() = DB::Exception").message,
            "Cannot insert into table in readonly mode"
        );
    }
}
