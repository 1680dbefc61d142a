//! When reconciliation looks at a pending request again: a backoff from the request's last
//! activity (its filing, or the last event about it), so a request events keep current is
//! rarely looked at, and one whose events were lost is found within a bounded time.
//!
//! Events come first; reconciliation is the safety net for the ones that never arrive, and
//! every look costs calls from the DingTalk app's monthly quota. The default schedule looks
//! 5 minutes, 30 minutes, 2 hours and 8 hours after the last activity, then once a day.
//!
//! ```
//! use sase_approval::recheck::RecheckSchedule;
//!
//! let schedule = RecheckSchedule::default();
//! let filed = 0;
//! let minute = 60_000;
//! assert_eq!(schedule.latest_point(filed, 4 * minute), None, "too early");
//! assert_eq!(schedule.latest_point(filed, 6 * minute), Some(5 * minute));
//! // Looked at after 6 minutes: not due again until the 30-minute point.
//! assert!(!schedule.is_due(filed, Some(6 * minute), 29 * minute));
//! assert!(schedule.is_due(filed, Some(6 * minute), 30 * minute));
//! // Never looked at (e.g. after a restart): due once its first point has passed.
//! assert!(schedule.is_due(filed, None, 3 * 24 * 60 * minute));
//! ```

use crate::clock::millis;
use std::time::Duration;

/// The points after a request's last activity at which it is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecheckSchedule {
    /// The first looks, as offsets from the last activity, increasing.
    pub first: Vec<Duration>,
    /// After the last of `first`, one look every this long.
    pub then_every: Duration,
}

impl Default for RecheckSchedule {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        Self {
            first: vec![
                Duration::from_secs(5 * MINUTE),
                Duration::from_secs(30 * MINUTE),
                Duration::from_secs(2 * 60 * MINUTE),
                Duration::from_secs(8 * 60 * MINUTE),
            ],
            then_every: Duration::from_secs(24 * 60 * MINUTE),
        }
    }
}

impl RecheckSchedule {
    /// A schedule of `first` looks, then one every `then_every` (at least a second).
    pub fn new(first: Vec<Duration>, then_every: Duration) -> Self {
        Self {
            first,
            then_every: then_every.max(Duration::from_secs(1)),
        }
    }

    /// The latest point at or before `now_ms` for a request last active at `since_ms`
    /// (Unix ms), if one has passed.
    pub fn latest_point(&self, since_ms: i64, now_ms: i64) -> Option<i64> {
        let mut latest = None;
        for offset in &self.first {
            let point = since_ms.saturating_add(millis(*offset));
            if point > now_ms {
                return latest;
            }
            latest = Some(point);
        }
        let last = since_ms.saturating_add(self.first.last().map_or(0, |d| millis(*d)));
        let every = millis(self.then_every).max(1);
        let periods = now_ms.saturating_sub(last) / every;
        if periods > 0 {
            latest = Some(last.saturating_add(periods.saturating_mul(every)));
        }
        latest
    }

    /// Whether a request last active at `since_ms` and last looked at `checked_ms` (never,
    /// if `None`) is due at `now_ms`: a point has passed since the last look.
    pub fn is_due(&self, since_ms: i64, checked_ms: Option<i64>, now_ms: i64) -> bool {
        self.latest_point(since_ms, now_ms)
            .is_some_and(|point| checked_ms.is_none_or(|checked| checked < point))
    }

    /// How many looks a request gets within `window` of its last activity, if no event comes:
    /// what a pending request costs reconciliation.
    pub fn looks_within(&self, window: Duration) -> u64 {
        let window = millis(window);
        let first =
            u64::try_from(self.first.iter().filter(|d| millis(**d) <= window).count()).unwrap_or(u64::MAX);
        let last = self.first.last().map_or(0, |d| millis(*d));
        let every = millis(self.then_every).max(1);
        first + u64::try_from(window.saturating_sub(last).max(0) / every).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MINUTE;

    #[test]
    fn points_follow_the_first_looks_then_one_a_day() {
        let s = RecheckSchedule::default();
        let since = 1_000;
        let at = |t: i64| s.latest_point(since, since + t).map(|p| p - since);
        assert_eq!(at(5 * MINUTE - 1), None);
        assert_eq!(at(5 * MINUTE), Some(5 * MINUTE));
        assert_eq!(at(29 * MINUTE), Some(5 * MINUTE));
        assert_eq!(at(2 * 60 * MINUTE + 1), Some(2 * 60 * MINUTE));
        assert_eq!(at(8 * 60 * MINUTE + DAY - 1), Some(8 * 60 * MINUTE));
        assert_eq!(at(8 * 60 * MINUTE + DAY), Some(8 * 60 * MINUTE + DAY));
        assert_eq!(at(8 * 60 * MINUTE + 3 * DAY + 5), Some(8 * 60 * MINUTE + 3 * DAY));
    }

    #[test]
    fn a_request_is_due_once_per_point() {
        let s = RecheckSchedule::default();
        let mut checked = None;
        let mut looks = 0;
        // A pass every minute for 30 days: a look at each point, no more.
        for minute in 0..30 * 24 * 60 {
            let now = minute * MINUTE;
            if s.is_due(0, checked, now) {
                looks += 1;
                checked = Some(now);
            }
        }
        assert_eq!(looks, 4 + 29, "four first looks, then one a day");
        assert_eq!(s.looks_within(Duration::from_secs(30 * 24 * 3600)), 33);
        assert_eq!(s.looks_within(Duration::from_secs(24 * 3600)), 4);
    }

    #[test]
    fn activity_moves_the_schedule() {
        let s = RecheckSchedule::default();
        // Looked at on day 3; an event on day 3 moves the next look to 5 minutes after it.
        let checked = Some(3 * DAY);
        assert!(!s.is_due(0, checked, 3 * DAY + 10 * MINUTE));
        assert!(!s.is_due(3 * DAY + MINUTE, checked, 3 * DAY + 5 * MINUTE));
        assert!(s.is_due(3 * DAY + MINUTE, checked, 3 * DAY + 6 * MINUTE));
    }
}
