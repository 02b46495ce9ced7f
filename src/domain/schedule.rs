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
mod tests;
