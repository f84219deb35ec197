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

/// Reads the error body of ClickHouse's HTTP interface, e.g. (18.16)
/// `Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode, e.what() = DB::Exception`
/// or (current) `Code: 164. DB::Exception: Cannot insert into table in readonly mode. (READONLY) (version 24.3.1.1)`.
pub fn parse(body: &str) -> ClickHouseRefusal {
    let body = body.trim();
    let code = body
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
    ClickHouseRefusal {
        code,
        class: classify(code),
        message,
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
    fn reads_the_18_16_error_shape() {
        let r = parse("Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode, e.what() = DB::Exception\n");
        assert_eq!(
            r,
            ClickHouseRefusal {
                code: 164,
                message: "Cannot insert into table in readonly mode".into(),
                class: RefusalClass::Forbidden
            }
        );
    }

    #[test]
    fn reads_the_current_error_shape() {
        let r = parse("Code: 159. DB::Exception: Timeout exceeded: elapsed 3.0 seconds, maximum: 3. (TIMEOUT_EXCEEDED) (version 24.3.1.1 (official build))");
        assert_eq!(r.code, 159);
        assert_eq!(r.class, RefusalClass::Limit);
        assert_eq!(
            r.message,
            "Timeout exceeded: elapsed 3.0 seconds, maximum: 3. (TIMEOUT_EXCEEDED)"
        );
    }

    #[test]
    fn unknown_shapes_keep_the_text() {
        let r = parse("something odd");
        assert_eq!(
            (r.code, r.class, r.message.as_str()),
            (0, RefusalClass::Invalid, "something odd")
        );
    }
}
