//! Retention: the cutoff of a prune, and what a configured destination whose stream has not
//! started yet holds back. Pure; the database applies the rest of the rule (see
//! `audit_prune_batch` in the migrations).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::Start;

/// Parses `--older-than`: a whole number of days, hours, minutes or seconds (`30d`, `12h`,
/// `90m`, `3600s`), more than zero.
pub fn parse_older_than(text: &str) -> Result<Duration, String> {
    const ALLOWED: &str = "allowed: a whole number and a unit, d (days), h, m or s, such as 30d";
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!(
            "{text:?} is negative: a prune takes what was recorded before a time in the past; {ALLOWED}"
        ));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} has no number; {ALLOWED}"))?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        "" => return Err(format!("{text:?} has no unit; {ALLOWED}")),
        other => {
            return Err(format!(
                "{text:?}: unit {other:?} is not allowed; {ALLOWED}"
            ));
        }
    };
    match n
        .checked_mul(seconds)
        .filter(|s| *s > 0 && *s <= 100 * 366 * 86_400)
    {
        Some(s) => Ok(Duration::seconds(s)),
        None => Err(format!(
            "{text:?} is out of range; {ALLOWED}, more than 0 and at most 100 years"
        )),
    }
}

/// What a configured destination holds back while the database has not started its stream as
/// configured: events of `tenant_id` (every tenant when `None`) recorded at or after `since`
/// (since ever when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub destination: String,
    pub tenant_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// How the database knows a configured destination's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKnown {
    /// No row yet, or its stream has not started (new, or configured again after `forget`).
    NotStarted,
    /// Started, its watermark covering this tenant filter.
    Started { tenant_id: Option<String> },
}

/// The hold of a configured destination, given how the database knows its stream. A started
/// stream of the same tenant filter is judged by its watermark in the database (no hold here).
/// One not started will deliver from its `start` on; `now` holds nothing back, since its start
/// will be later than any cutoff. A tenant filter changed in the config and not yet accepted by
/// `destination reset` holds back everything of the new filter: where the reset will start it
/// is not known yet.
pub fn hold_of(
    name: &str,
    tenant_id: Option<&str>,
    start: Start,
    known: &StreamKnown,
) -> Option<Hold> {
    let hold = |since| Hold {
        destination: name.to_owned(),
        tenant_id: tenant_id.map(str::to_owned),
        since,
    };
    match known {
        StreamKnown::Started { tenant_id: covered } if covered.as_deref() == tenant_id => None,
        StreamKnown::Started { .. } => Some(hold(None)),
        StreamKnown::NotStarted => match start {
            Start::Beginning => Some(hold(None)),
            Start::Time(t) => Some(hold(Some(t))),
            Start::Now => None,
        },
    }
}

/// Whether a daily prune is due: the last one that finished started a day ago or more.
pub fn prune_due(last_started: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_started.is_none_or(|at| now - at >= Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_than_takes_a_number_and_a_unit() {
        assert_eq!(parse_older_than("30d"), Ok(Duration::days(30)));
        assert_eq!(parse_older_than(" 12h "), Ok(Duration::hours(12)));
        assert_eq!(parse_older_than("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_older_than("1s"), Ok(Duration::seconds(1)));
        assert!(parse_older_than("-1d").unwrap_err().contains("is negative"));
        for bad in [
            "",
            "d",
            "30",
            "30 d",
            "30w",
            "-3d",
            "0d",
            "99999999999999999d",
        ] {
            let e = parse_older_than(bad).unwrap_err();
            assert!(
                e.contains("allowed: a whole number and a unit"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_started_stream_of_the_same_filter_holds_nothing_here() {
        let started = StreamKnown::Started {
            tenant_id: Some("acme".into()),
        };
        assert_eq!(hold_of("a", Some("acme"), Start::Beginning, &started), None);
    }

    #[test]
    fn a_changed_filter_holds_back_all_of_the_new_one() {
        let started = StreamKnown::Started { tenant_id: None };
        let hold = hold_of("a", Some("acme"), Start::Now, &started).unwrap();
        assert_eq!(
            (hold.tenant_id.as_deref(), hold.since),
            (Some("acme"), None)
        );
    }

    #[test]
    fn a_stream_not_started_holds_back_from_its_start() {
        let t = "2026-11-01T00:00:00Z".parse().unwrap();
        let none = StreamKnown::NotStarted;
        assert_eq!(
            hold_of("a", None, Start::Beginning, &none).map(|h| h.since),
            Some(None)
        );
        assert_eq!(
            hold_of("a", None, Start::Time(t), &none).map(|h| h.since),
            Some(Some(t))
        );
        assert_eq!(hold_of("a", None, Start::Now, &none), None);
    }

    #[test]
    fn a_prune_is_due_a_day_after_the_last() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        assert!(prune_due(None, now));
        assert!(!prune_due(Some(now - Duration::hours(23)), now));
        assert!(prune_due(Some(now - Duration::hours(24)), now));
    }
}
