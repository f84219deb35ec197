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

/// Whether `sql` has a character outside ASCII that is not inside quotes or backticks: a
/// Chinese alias written bare (`AS 记录数`), which ClickHouse refuses as a syntax error.
fn has_bare_non_ascii(sql: &str) -> bool {
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '"' | '`') => quote = Some(c),
            None if !c.is_ascii() && !c.is_whitespace() => return true,
            None => {}
        }
    }
    false
}

/// The refusal with a hint where ClickHouse's own words would not help an analyst: a syntax
/// error (62) in SQL with a bare Chinese name.
pub fn with_hint(mut refusal: ClickHouseRefusal, sql: &str) -> ClickHouseRefusal {
    if refusal.code == 62 && has_bare_non_ascii(sql) {
        refusal.message = format!(
            "{}（提示：中文别名或列名须用反引号括起来，例如 count() AS `记录数`）",
            refusal.message
        );
    }
    refusal
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
    fn a_bare_chinese_alias_gets_a_hint_and_a_quoted_one_does_not() {
        let syntax = || {
            parse("Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 18")
        };
        let hinted = with_hint(syntax(), "SELECT count() AS 记录数 FROM events");
        assert!(hinted.message.contains("反引号"), "{}", hinted.message);
        let quoted = with_hint(
            syntax(),
            "SELECT count() AS `记录数` FROM events WHERE kind = '走访'",
        );
        assert!(!quoted.message.contains("反引号"), "{}", quoted.message);
        // Another error is left as ClickHouse said it.
        let other = parse("Code: 47, e.displayText() = DB::Exception: Unknown identifier: x");
        assert_eq!(
            with_hint(other.clone(), "SELECT 记录数").message,
            other.message
        );
    }

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
