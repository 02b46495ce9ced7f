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
