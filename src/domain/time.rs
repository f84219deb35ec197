//! Time as the plan counts it: Asia/Shanghai's calendar, and RFC 3339 as answers show it.

use time::{format_description::well_known::Rfc3339, Date, Month, OffsetDateTime, UtcOffset};

/// Asia/Shanghai has been UTC+8 without daylight saving since 1991.
pub const SHANGHAI: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("valid offset"),
};

/// The calendar date in Shenzhen at `now`.
pub fn local_date(now: OffsetDateTime) -> Date {
    now.to_offset(SHANGHAI).date()
}

/// The calendar date in Shenzhen at a Unix time.
pub fn local_date_of(unix: u32) -> Date {
    local_date(
        OffsetDateTime::from_unix_timestamp(unix as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

/// The calendar year (Asia/Shanghai) of a Unix time.
pub fn year_of(unix: u32) -> i32 {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .map(|t| t.to_offset(SHANGHAI).year())
        .unwrap_or(1970)
}

/// RFC 3339 in Shenzhen time, to the millisecond.
/// The days the store can hold: ClickHouse's `DateTime` runs from 1970-01-01 to 2106-02-07, and
/// a day's end must fit too.
pub const FIRST_DAY: Date = match Date::from_calendar_date(1970, time::Month::January, 1) {
    Ok(d) => d,
    Err(_) => panic!("a valid date"),
};
pub const LAST_DAY: Date = match Date::from_calendar_date(2106, time::Month::February, 6) {
    Ok(d) => d,
    Err(_) => panic!("a valid date"),
};

/// A day a client names (`YYYY-MM-DD`), within the range the store can hold; the reason if not.
pub fn parse_day(text: &str) -> Result<Date, String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let day = Date::parse(text, &fmt).map_err(|_| format!("'{text}' is not a date YYYY-MM-DD"))?;
    if day < FIRST_DAY || day > LAST_DAY {
        return Err(format!("'{text}' is outside {FIRST_DAY} to {LAST_DAY}"));
    }
    Ok(day)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    rfc3339_truncated(t, t.millisecond() as u32 * 1_000_000)
}

/// Unix seconds as RFC 3339 in Shenzhen time (an invalid instant as the epoch).
pub fn rfc3339_shanghai(unix: i64) -> String {
    rfc3339(OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

/// As [`rfc3339`], to the microsecond: for instants a client times against.
pub fn rfc3339_micros(t: OffsetDateTime) -> String {
    rfc3339_truncated(t, t.microsecond() * 1_000)
}

fn rfc3339_truncated(t: OffsetDateTime, nanosecond: u32) -> String {
    t.to_offset(SHANGHAI)
        .replace_nanosecond(nanosecond)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_year_is_the_shanghai_calendar_year() {
        // 2020-12-31T17:00:00Z is already 2021-01-01 01:00 in Shenzhen.
        let t = OffsetDateTime::parse("2020-12-31T17:00:00Z", &Rfc3339).unwrap();
        assert_eq!(year_of(t.unix_timestamp() as u32), 2021);
        assert_eq!(rfc3339(t), "2021-01-01T01:00:00+08:00");
    }
}

/// A calendar period of Asia/Shanghai.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    All,
    Year,
    Quarter,
    Month,
}

impl Period {
    pub(crate) fn parse(s: &str) -> Option<Period> {
        Some(match s {
            "all" => Period::All,
            "year" => Period::Year,
            "quarter" => Period::Quarter,
            "month" => Period::Month,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::All => "all",
            Period::Year => "year",
            Period::Quarter => "quarter",
            Period::Month => "month",
        }
    }

    /// The period holding `date`, as a number that orders periods (0 for `All`).
    pub fn key(self, date: Date) -> u32 {
        let (y, m) = (date.year() as u32, date.month() as u32);
        match self {
            Period::All => 0,
            Period::Year => y,
            Period::Quarter => y * 4 + (m - 1) / 3,
            Period::Month => y * 12 + (m - 1),
        }
    }

    /// The first and last day of the period holding `date`.
    pub fn bounds(self, date: Date) -> (Date, Date) {
        let y = date.year();
        let month = |m: u8| Month::try_from(m).unwrap_or(Month::January);
        let first = |m: u8| Date::from_calendar_date(y, month(m), 1).unwrap_or(date);
        let last =
            |m: u8| Date::from_calendar_date(y, month(m), month(m).length(y)).unwrap_or(date);
        let m = date.month() as u8;
        match self {
            Period::All => (
                Date::from_calendar_date(1970, Month::January, 1).unwrap_or(date),
                date,
            ),
            Period::Year => (first(1), last(12)),
            Period::Quarter => {
                let q0 = (m - 1) / 3 * 3 + 1;
                (first(q0), last(q0 + 2))
            }
            Period::Month => (first(m), last(m)),
        }
    }
}

#[cfg(test)]
mod day_tests {
    use super::*;

    #[test]
    fn a_day_a_client_names_must_fit_the_store() {
        assert!(parse_day("2024-02-29").is_ok());
        for bad in [
            "0000-01-01",
            "-0001-01-01",
            "1969-12-31",
            "2106-02-07",
            "9999-12-31",
            "2024-13-01",
            "yesterday",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_day("1970-01-01"), Ok(FIRST_DAY));
    }
}
