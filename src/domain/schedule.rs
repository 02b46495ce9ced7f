//! Due times: the first at the anchor, then every `every_hours` hours, all in UTC.

use chrono::{DateTime, Duration, DurationRound, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    anchor: DateTime<Utc>,
    every_hours: u8,
}

impl Schedule {
    pub const MIN_HOURS: u8 = 1;
    pub const MAX_HOURS: u8 = 24;

    pub fn new(anchor: DateTime<Utc>, every_hours: u8) -> Self {
        debug_assert!((Self::MIN_HOURS..=Self::MAX_HOURS).contains(&every_hours));
        Self {
            anchor,
            every_hours,
        }
    }

    /// The anchor of a frequency set or changed at `at`: the next full UTC hour after it.
    pub fn anchor_after(at: DateTime<Utc>) -> DateTime<Utc> {
        let hour = Duration::hours(1);
        // Truncating to the hour cannot overflow for any time a database holds.
        at.duration_trunc(hour)
            .expect("a timestamp truncates to its hour")
            + hour
    }

    pub fn anchor(&self) -> DateTime<Utc> {
        self.anchor
    }

    pub fn every_hours(&self) -> u8 {
        self.every_hours
    }

    fn period(&self) -> Duration {
        Duration::hours(i64::from(self.every_hours))
    }

    /// The latest due time at or before `now`, or `None` before the anchor.
    pub fn latest_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if now < self.anchor {
            return None;
        }
        let periods = (now - self.anchor).num_seconds() / self.period().num_seconds();
        Some(self.anchor + self.period() * periods as i32)
    }

    /// The first due time strictly after `now`.
    pub fn next_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.latest_due(now) {
            None => self.anchor,
            Some(latest) => latest + self.period(),
        }
    }

    /// The due time an export at `now` should serve, if one has come since `last_served`. After
    /// downtime this is the latest missed due time alone: one run catches up on all of them.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        last_served: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let latest = self.latest_due(now)?;
        match last_served {
            Some(served) if served >= latest => None,
            _ => Some(latest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap()
    }

    #[test]
    fn anchor_is_the_next_full_hour() {
        assert_eq!(Schedule::anchor_after(at(9, 30, 0)), at(10, 0, 0));
        assert_eq!(Schedule::anchor_after(at(9, 59, 59)), at(10, 0, 0));
        assert_eq!(Schedule::anchor_after(at(9, 0, 0)), at(10, 0, 0));
        assert_eq!(
            Schedule::anchor_after(at(23, 10, 0)),
            Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn nothing_is_due_before_the_anchor() {
        let s = Schedule::new(at(10, 0, 0), 1);
        assert_eq!(s.latest_due(at(9, 59, 59)), None);
        assert_eq!(s.due(at(9, 59, 59), None), None);
        assert_eq!(s.next_due(at(9, 30, 0)), at(10, 0, 0));
    }

    #[test]
    fn due_times_step_by_every_hours_for_each_allowed_value() {
        for every in 1..=24u8 {
            let s = Schedule::new(at(0, 0, 0), every);
            let period = Duration::hours(every.into());
            assert_eq!(s.latest_due(at(0, 0, 0)), Some(at(0, 0, 0)));
            assert_eq!(s.next_due(at(0, 0, 0)), at(0, 0, 0) + period);
            assert_eq!(
                s.latest_due(at(0, 0, 0) + period - Duration::seconds(1)),
                Some(at(0, 0, 0))
            );
            assert_eq!(
                s.latest_due(at(0, 0, 0) + period * 3),
                Some(at(0, 0, 0) + period * 3)
            );
        }
    }

    #[test]
    fn a_due_time_is_served_once() {
        let s = Schedule::new(at(10, 0, 0), 6);
        assert_eq!(s.due(at(10, 0, 0), None), Some(at(10, 0, 0)));
        assert_eq!(s.due(at(15, 59, 0), Some(at(10, 0, 0))), None);
        assert_eq!(s.due(at(16, 0, 0), Some(at(10, 0, 0))), Some(at(16, 0, 0)));
    }

    #[test]
    fn catch_up_after_downtime_is_one_run_for_the_latest_missed_time() {
        let s = Schedule::new(at(1, 0, 0), 2);
        // Down from 03:10 to 10:30: 05:00, 07:00 and 09:00 were missed.
        assert_eq!(s.due(at(10, 30, 0), Some(at(3, 0, 0))), Some(at(9, 0, 0)));
        assert_eq!(s.due(at(10, 31, 0), Some(at(9, 0, 0))), None);
        assert_eq!(s.next_due(at(10, 30, 0)), at(11, 0, 0));
    }

    #[test]
    fn a_served_time_later_than_the_schedule_still_counts() {
        // After a frequency change the anchor moves; a time served under the old one stays served.
        let s = Schedule::new(at(12, 0, 0), 3);
        assert_eq!(s.due(at(12, 30, 0), Some(at(12, 0, 0))), None);
        assert_eq!(s.due(at(15, 0, 0), Some(at(12, 0, 0))), Some(at(15, 0, 0)));
    }
}
