//! Times as the console shows them (UTC, to the second) and the dates its filters take.

use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// `2026-12-06 23:17:32 UTC` for Unix ms (`—` for a time out of range).
pub(crate) fn utc(ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "—".to_owned())
}

/// The start of a `YYYY-MM-DD` day (UTC), in Unix ms.
pub(crate) fn day_start_ms(date: &str) -> Option<i64> {
    let day = Date::parse(date, format_description!("[year]-[month]-[day]")).ok()?;
    let seconds = day.midnight().assume_utc().unix_timestamp();
    seconds.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_and_dates_are_days() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_599_052_000), "2026-12-06 23:17:32 UTC");
        assert_eq!(day_start_ms("2026-12-06"), Some(1_796_515_200_000));
        assert_eq!(day_start_ms("2026-13-01"), None);
        assert_eq!(day_start_ms("yesterday"), None);
    }
}
