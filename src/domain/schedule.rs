//! Due times: the first at the anchor, then every `every_hours` hours, all in UTC.
//!
//! The anchor is the next full hour after the frequency was set or changed, or, with
//! `schedule_at = "HH:MM"`, the next time on the grid HH:MM + k × every_hours. A change never
//! postpones a due time the old schedule had not served: it is carried over and served first.

use std::fmt;

use chrono::{DateTime, Duration, DurationRound, NaiveTime, Timelike, Utc};

/// A time of day in UTC, to the minute: `schedule_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    minutes: u16,
}

impl TimeOfDay {
    pub const ALLOWED: &'static str = "\"HH:MM\", a time of day in UTC from 00:00 to 23:59";

    /// Parses `HH:MM` (two digits each).
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not a time of day; allowed: {}", Self::ALLOWED);
        let bytes = text.as_bytes();
        if bytes.len() != 5 || bytes[2] != b':' {
            return Err(invalid());
        }
        let number = |s: &str| -> Option<u16> {
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse().ok())
                .flatten()
        };
        match (number(&text[..2]), number(&text[3..])) {
            (Some(h), Some(m)) if h < 24 && m < 60 => Ok(Self {
                minutes: h * 60 + m,
            }),
            _ => Err(invalid()),
        }
    }

    pub fn as_naive(self) -> NaiveTime {
        NaiveTime::from_hms_opt(
            u32::from(self.minutes / 60),
            u32::from(self.minutes % 60),
            0,
        )
        .expect("minutes of a day make a time")
    }

    /// The time of day of `time`, to the minute.
    pub fn from_naive(time: NaiveTime) -> Self {
        Self {
            minutes: (time.hour() * 60 + time.minute()) as u16,
        }
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    anchor: DateTime<Utc>,
    every_hours: u8,
    at: Option<TimeOfDay>,
    /// A due time of an earlier frequency that had not been served when it changed.
    carried: Option<DateTime<Utc>>,
}

impl Schedule {
    pub const MIN_HOURS: u8 = 1;
    pub const MAX_HOURS: u8 = 24;

    pub fn new(anchor: DateTime<Utc>, every_hours: u8) -> Self {
        debug_assert!((Self::MIN_HOURS..=Self::MAX_HOURS).contains(&every_hours));
        Self {
            anchor,
            every_hours,
            at: None,
            carried: None,
        }
    }

    /// The schedule as stored: its `schedule_at`, and a due time carried over from a change.
    pub fn with_stored(mut self, at: Option<TimeOfDay>, carried: Option<DateTime<Utc>>) -> Self {
        self.at = at;
        self.carried = carried;
        self
    }

    /// A schedule set (or changed) at `now`, anchored by [`Schedule::anchor_after`].
    pub fn starting(now: DateTime<Utc>, every_hours: u8, at: Option<TimeOfDay>) -> Self {
        Self::new(Self::anchor_after(now, every_hours, at), every_hours).with_stored(at, None)
    }

    /// The anchor of a frequency set or changed at `at`: the next full UTC hour after it, or
    /// with a time of day, the first time after it of the grid `time of day + k × every_hours`
    /// counted from the latest such time of day (so with 24 hours, the next one).
    pub fn anchor_after(
        now: DateTime<Utc>,
        every_hours: u8,
        time_of_day: Option<TimeOfDay>,
    ) -> DateTime<Utc> {
        let hour = Duration::hours(1);
        let Some(time_of_day) = time_of_day else {
            // Truncating to the hour cannot overflow for any time a database holds.
            return now
                .duration_trunc(hour)
                .expect("a timestamp truncates to its hour")
                + hour;
        };
        let mut start = now.date_naive().and_time(time_of_day.as_naive()).and_utc();
        if start > now {
            start -= Duration::days(1);
        }
        let period = Duration::hours(i64::from(every_hours));
        let periods = (now - start).num_seconds() / period.num_seconds() + 1;
        start + period * periods as i32
    }

    /// The schedule after `every_hours` or `schedule_at` changed at `now`: anchored anew, with a
    /// due time the old one had not served yet (since `last_served`) still due.
    pub fn changed(
        &self,
        now: DateTime<Utc>,
        last_served: Option<DateTime<Utc>>,
        every_hours: u8,
        at: Option<TimeOfDay>,
    ) -> Self {
        let mut new = Self::starting(now, every_hours, at);
        new.carried = self.due(now, last_served);
        new
    }

    /// Whether this schedule was set with these settings.
    pub fn is_set_as(&self, every_hours: u8, at: Option<TimeOfDay>) -> bool {
        self.every_hours == every_hours && self.at == at
    }

    pub fn anchor(&self) -> DateTime<Utc> {
        self.anchor
    }

    pub fn every_hours(&self) -> u8 {
        self.every_hours
    }

    pub fn at(&self) -> Option<TimeOfDay> {
        self.at
    }

    pub fn carried(&self) -> Option<DateTime<Utc>> {
        self.carried
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
    /// A due time carried over from an earlier frequency counts until it is served.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        last_served: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let carried = self.carried.filter(|c| *c <= now);
        let latest = self.latest_due(now).max(carried)?;
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
        let anchor = |now| Schedule::anchor_after(now, 6, None);
        assert_eq!(anchor(at(9, 30, 0)), at(10, 0, 0));
        assert_eq!(anchor(at(9, 59, 59)), at(10, 0, 0));
        assert_eq!(anchor(at(9, 0, 0)), at(10, 0, 0));
        assert_eq!(
            anchor(at(23, 10, 0)),
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

    fn hhmm(text: &str) -> Option<TimeOfDay> {
        Some(TimeOfDay::parse(text).unwrap())
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(TimeOfDay::parse("00:00").unwrap().to_string(), "00:00");
        assert_eq!(TimeOfDay::parse("23:59").unwrap().to_string(), "23:59");
        assert_eq!(TimeOfDay::parse("07:05").unwrap().as_naive().minute(), 5);
        for bad in [
            "24:00", "12:60", "7:05", "07:5", "0700", "07:05:00", "+7:05", "aa:bb", "",
        ] {
            let error = TimeOfDay::parse(bad).unwrap_err();
            assert!(error.contains("allowed: \"HH:MM\""), "{bad}: {error}");
        }
    }

    #[test]
    fn a_time_of_day_places_the_anchor_on_its_grid() {
        let tomorrow = |h, m| Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap();
        // Daily at midnight: the next midnight, whenever the change is made.
        assert_eq!(
            Schedule::anchor_after(at(9, 20, 0), 24, hhmm("00:00")),
            tomorrow(0, 0)
        );
        assert_eq!(
            Schedule::anchor_after(at(0, 0, 0), 24, hhmm("00:00")),
            tomorrow(0, 0)
        );
        assert_eq!(
            Schedule::anchor_after(at(23, 59, 59), 24, hhmm("00:00")),
            tomorrow(0, 0)
        );
        // Daily at 02:30: later today when it has not passed yet.
        assert_eq!(
            Schedule::anchor_after(at(1, 0, 0), 24, hhmm("02:30")),
            at(2, 30, 0)
        );
        assert_eq!(
            Schedule::anchor_after(at(3, 0, 0), 24, hhmm("02:30")),
            tomorrow(2, 30)
        );
        // Every 6 hours from 00:15: 00:15, 06:15, 12:15, 18:15.
        assert_eq!(
            Schedule::anchor_after(at(9, 20, 0), 6, hhmm("00:15")),
            at(12, 15, 0)
        );
        assert_eq!(
            Schedule::anchor_after(at(0, 10, 0), 6, hhmm("00:15")),
            at(0, 15, 0)
        );
        assert_eq!(
            Schedule::anchor_after(at(18, 15, 0), 6, hhmm("00:15")),
            tomorrow(0, 15)
        );
        // Every hour at minute 30.
        assert_eq!(
            Schedule::anchor_after(at(9, 31, 0), 1, hhmm("07:30")),
            at(10, 30, 0)
        );
        // Every allowed frequency: the anchor is after the change, within one period, on the
        // grid counted from the latest 05:10 (today's).
        for every in 1..=24u8 {
            let now = at(13, 47, 12);
            let anchor = Schedule::anchor_after(now, every, hhmm("05:10"));
            assert!(
                anchor > now && anchor <= now + Duration::hours(every.into()),
                "{every}"
            );
            assert_eq!(anchor.minute(), 10);
            let since = anchor - at(5, 10, 0);
            assert_eq!(
                since.num_seconds() % (i64::from(every) * 3600),
                0,
                "{every}"
            );
        }
        let s = Schedule::starting(at(9, 20, 0), 24, hhmm("00:00"));
        assert_eq!(s.due(at(23, 59, 0), None), None);
        assert_eq!(s.due(tomorrow(0, 0), None), Some(tomorrow(0, 0)));
        assert_eq!(
            s.next_due(tomorrow(0, 1)),
            tomorrow(0, 0) + Duration::days(1)
        );
    }

    #[test]
    fn a_change_never_postpones_a_due_time() {
        // Set to 2 hours at 07:20; 08:00 came and was not served; at 08:30 the frequency
        // becomes 1 hour: 08:00 is still due.
        let two = Schedule::starting(at(7, 20, 0), 2, None);
        assert_eq!(two.due(at(8, 30, 0), None), Some(at(8, 0, 0)));
        let one = two.changed(at(8, 30, 0), None, 1, None);
        assert_eq!(one.anchor(), at(9, 0, 0));
        assert_eq!(one.due(at(8, 30, 0), None), Some(at(8, 0, 0)));
        // Served once, it is not due again until the new anchor.
        assert_eq!(one.due(at(8, 31, 0), Some(at(8, 0, 0))), None);
        assert_eq!(one.due(at(9, 0, 0), Some(at(8, 0, 0))), Some(at(9, 0, 0)));
        // Nothing due: nothing carried.
        let served = two.changed(at(8, 30, 0), Some(at(8, 0, 0)), 1, None);
        assert_eq!(served.carried(), None);
        assert_eq!(served.due(at(8, 45, 0), Some(at(8, 0, 0))), None);
    }

    #[test]
    fn two_configs_alternating_frequencies_still_export_each_due_time() {
        // Two processes disagree (1 h and 2 h) and each re-anchors at every check, a minute
        // apart; an export happens whenever a check finds a due time.
        let mut schedule = Schedule::starting(at(6, 10, 0), 2, None);
        let mut served = None;
        let mut exports = Vec::new();
        let mut now = at(6, 11, 0);
        while now < at(12, 0, 0) {
            let every = if now.minute().is_multiple_of(2) { 1 } else { 2 };
            if !schedule.is_set_as(every, None) {
                schedule = schedule.changed(now, served, every, None);
            }
            if let Some(slot) = schedule.due(now, served) {
                served = Some(slot);
                exports.push(slot);
            }
            now += Duration::minutes(1);
        }
        assert_eq!(
            exports,
            (7..12).map(|h| at(h, 0, 0)).collect::<Vec<_>>(),
            "one export an hour, none postponed"
        );
    }

    #[test]
    fn a_carried_due_time_counts_alongside_the_new_schedule() {
        let daily = Schedule::starting(at(0, 30, 0), 24, hhmm("00:00"))
            .with_stored(hhmm("00:00"), Some(at(0, 0, 0)));
        assert_eq!(daily.due(at(5, 0, 0), None), Some(at(0, 0, 0)));
        assert_eq!(daily.due(at(5, 0, 0), Some(at(0, 0, 0))), None);
        // A carried time in the future (a clock that went back) is not due yet.
        let ahead = Schedule::new(at(10, 0, 0), 1).with_stored(None, Some(at(9, 0, 0)));
        assert_eq!(ahead.due(at(8, 0, 0), None), None);
    }
}
