//! `reexport`: an occurred_at range of already-exported events, again, to every named
//! destination; a progress bar on a terminal, log lines otherwise.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use super::UsageError;
use crate::export::Exporter;
use crate::settings::{Destination, Settings};
use crate::sink;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReexportSummary {
    pub done: usize,
    pub failed: usize,
}

/// Parses `--to`: an RFC 3339 time, a date (midnight UTC), or `now`.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time_at(text, Utc::now())
}

/// Parses `--from`: an RFC 3339 time or a date (midnight UTC); `now` would leave an empty range.
pub fn parse_from_time(text: &str) -> Result<DateTime<Utc>, String> {
    if text.trim().eq_ignore_ascii_case("now") {
        return Err(format!(
            "\"now\" is allowed for --to only (the range [from, to) would be empty); {}",
            allowed(false)
        ));
    }
    parse_time(text)
}

fn allowed(now: bool) -> String {
    format!(
        "allowed: an RFC 3339 time such as 2026-11-20T00:00:00Z, a date such as 2026-11-20 (midnight UTC){}",
        if now { ", or now" } else { "" }
    )
}

/// [`parse_time`] with `now` given, so it can be tested.
pub fn parse_time_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?}: {}; {}", time_error(text, &e), allowed(true)))
}

/// An RFC 3339 time or a date (midnight UTC), `now` excluded; the error says why `text` is not
/// one, and the caller says what is allowed.
pub(super) fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?}: {}", time_error(text, &e)))
}

/// Why `text` is not a time, in words: chrono says "premature end of input" for most.
fn time_error(text: &str, error: &chrono::ParseError) -> String {
    let date_part = text.get(..10).unwrap_or("");
    let shaped = date_part.len() == 10
        && date_part.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    if text.is_empty() {
        "is empty".to_owned()
    } else if !text.starts_with(|c: char| c.is_ascii_digit()) {
        "is not a time".to_owned()
    } else if shaped && chrono::NaiveDate::parse_from_str(date_part, "%Y-%m-%d").is_err() {
        format!("{date_part} is no date of the calendar (month 01-12, a day the month has)")
    } else if shaped && text.len() > 10 {
        format!(
            "the time after the date is incomplete or wrong ({error}): it needs T, hh:mm:ss and a zone (Z or +hh:mm)"
        )
    } else {
        format!("is not a date YYYY-MM-DD nor an RFC 3339 time ({error})")
    }
}

/// Checks a range: `from` before `to`, and `to` not in the future.
pub fn check_range(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), UsageError> {
    if from >= to {
        return Err(UsageError(format!(
            "--from {} is not before --to {}; allowed: a range [from, to) with from < to",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    if to > now {
        return Err(UsageError(format!(
            "--to {} is in the future; allowed: a time up to now ({}), since a re-export carries only events already exported",
            to.to_rfc3339(),
            now.to_rfc3339()
        )));
    }
    Ok(())
}

/// The tenant a destination re-exports: `--tenant` narrows a destination of every tenant, and
/// must match a destination's own tenant filter.
fn tenant_of<'a>(
    destination: &'a Destination,
    tenant: Option<&'a str>,
) -> Result<Option<&'a str>, UsageError> {
    match (destination.tenant_id.as_deref(), tenant) {
        (_, Some("")) => Err(UsageError(
            "--tenant: is empty; allowed: a tenant id, or no --tenant for every tenant".into(),
        )),
        (Some(own), Some(asked)) if own != asked => Err(UsageError(format!(
            "--tenant {asked}: destination {} exports only tenant {own}; allowed: {own} or no --tenant",
            destination.name
        ))),
        (own, asked) => Ok(asked.or(own)),
    }
}

pub async fn reexport(
    settings: &Settings,
    names: &[String],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    tenant: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<ReexportSummary> {
    check_range(from, to, Utc::now())?;
    let destinations = settings
        .select_destinations(names)
        .map_err(|e| UsageError(e.0))?;
    let tenants = destinations
        .iter()
        .map(|d| tenant_of(d, tenant))
        .collect::<Result<Vec<_>, _>>()?;
    let database = super::open(settings).await?;
    let exporter = Exporter::new(database.store.clone(), settings.exporter.clone());
    let mut summary = ReexportSummary::default();
    for (destination, tenant) in destinations.into_iter().zip(tenants) {
        let name = &destination.name;
        let progress = progress_bar(name);
        let result = async {
            let sink = sink::connect(destination, &settings.exporter).await?;
            exporter
                .reexport(destination, sink.as_ref(), (from, to), tenant, &progress)
                .await
        }
        .await;
        progress.finish_and_clear();
        match result {
            Ok(report) => {
                summary.done += 1;
                writeln!(
                    out,
                    "{name}: re-exported {} of [{}, {}), {}, in {}:",
                    super::counted(report.events as i64, "event"),
                    from.to_rfc3339(),
                    to.to_rfc3339(),
                    super::counted(report.bytes as i64, "byte"),
                    super::counted(report.locations.len() as i64, "object")
                )?;
                for location in &report.locations {
                    writeln!(out, "  {location}")?;
                }
            }
            Err(error) => {
                let error = database.store.explain(error);
                summary.failed += 1;
                tracing::error!(destination = %name, error = format!("{error:#}"), "Re-export failed.");
                writeln!(out, "{name}: re-export failed: {error:#}")?;
            }
        }
        match database
            .store
            .pruned_deliveries(name, (from, to), tenant)
            .await
        {
            Ok(pruned) if !pruned.prunes.is_empty() => {
                write!(out, "{}", pruned_note(name, &pruned))?
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                destination = %name,
                error = format!("{error:#}"),
                "Could not tell whether events of the range were pruned."
            ),
        }
    }
    database.close().await;
    Ok(summary)
}

/// Says that events of the range were pruned (so the re-export lacks them) and which of the
/// destination's scheduled objects carry them.
fn pruned_note(name: &str, pruned: &crate::store::PrunedDeliveries) -> String {
    let prunes: Vec<String> = pruned
        .prunes
        .iter()
        .map(|(at, n)| {
            format!(
                "{} ({} in all)",
                at.to_rfc3339(),
                super::counted(*n, "event")
            )
        })
        .collect();
    let mut note = format!(
        "{name}: events of this range were pruned from the database by the prune of {}, so the \
         re-export does not carry them; ",
        prunes.join(", ")
    );
    if pruned.keys.is_empty() {
        note.push_str(&format!(
            "no scheduled object of {name} carries them (other destinations delivered them)\n"
        ));
    } else {
        note.push_str(&format!(
            "the scheduled runs of {name} that delivered them wrote:\n"
        ));
        for key in &pruned.keys {
            note.push_str(&format!("  {key}\n"));
        }
    }
    note
}

/// A bar on a terminal; elsewhere a hidden one, and the log says what was written.
fn progress_bar(name: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(name.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ranges_are_checked() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let day = |d| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
        assert!(check_range(day(20), day(21), now).is_ok());
        assert!(
            check_range(day(21), day(21), now)
                .unwrap_err()
                .0
                .starts_with("--from 2026-11-21T00:00:00+00:00 is not before --to")
        );
        assert!(
            check_range(day(20), day(22), now)
                .unwrap_err()
                .0
                .contains("is in the future")
        );
        assert!(parse_time("2026-11-20T00:00:00+01:00").is_ok());
        let settings = crate::settings::Settings::load_with_env(
            None,
            [(
                "AUDIT_EXPORTER__DESTINATIONS__A__URL".to_owned(),
                "file:///tmp/a".to_owned(),
            )],
        )
        .unwrap();
        let all = &settings.destinations[0];
        assert!(
            tenant_of(all, Some(""))
                .unwrap_err()
                .0
                .starts_with("--tenant: is empty")
        );
        assert_eq!(tenant_of(all, Some("acme")).unwrap(), Some("acme"));
        assert!(
            parse_time("2026-11-20T10")
                .unwrap_err()
                .contains("allowed: an RFC 3339 time")
        );
    }

    #[test]
    fn from_and_to_take_a_date_or_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 13, 14, 15).unwrap();
        assert_eq!(
            parse_time_at("2026-11-20", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
        );
        assert_eq!(parse_time_at("now", now).unwrap(), now);
        assert_eq!(parse_time_at("NOW", now).unwrap(), now);
        assert_eq!(
            parse_time_at("2026-11-20T01:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
        );
        let cause = |bad: &str| parse_time_at(bad, now).unwrap_err();
        assert!(cause("2026-13-01").contains("2026-13-01 is no date of the calendar"));
        assert!(cause("2026-02-30").contains("2026-02-30 is no date of the calendar"));
        assert!(cause("today").contains("\"today\": is not a time;"));
        assert!(cause("2026-11-20T10").contains("the time after the date is incomplete"));
        for bad in ["2026-13-01", "2026-02-30", "today", "2026-11-20T10"] {
            assert!(!cause(bad).starts_with("premature"), "{bad}");
        }
        assert!(
            parse_from_time("now")
                .unwrap_err()
                .contains("for --to only")
        );
        assert!(parse_from_time("2026-11-20").is_ok());
        for bad in ["2026-11-31", "yesterday", "2026-11-20 10:00", ""] {
            let error = parse_time_at(bad, now).unwrap_err();
            assert!(
                error.contains("a date such as 2026-11-20"),
                "{bad}: {error}"
            );
        }
    }
}
