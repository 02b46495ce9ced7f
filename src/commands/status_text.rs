//! `status` as text: per destination its state, its scheduled runs, then its test deliveries
//! and re-exports under their own heading; then what holds the horizon back.

use std::io::Write;

use super::counted;
use super::status::{DestinationStatus, RetentionStatus, RunStatusView, Status};
use crate::store::OpenTransaction;

pub fn write_text(status: &Status, out: &mut dyn Write) -> std::io::Result<()> {
    for d in &status.destinations {
        write_destination(d, out)?;
    }
    match &status.horizon.oldest_transaction {
        Some(t) => writeln!(out, "{}", holder_line(t))?,
        None => writeln!(out, "horizon: no open transaction holds it back")?,
    }
    if let Some(p) = &status.horizon.oldest_prepared {
        writeln!(
            out,
            "prepared transaction {:?} in {} since {} ({} s) holds the horizon back",
            p.gid,
            p.database,
            p.prepared_at.to_rfc3339(),
            p.age_secs
        )?;
    }
    write_retention(&status.retention, out)
}

fn write_retention(r: &RetentionStatus, out: &mut dyn Write) -> std::io::Result<()> {
    let keep = match r.keep_days {
        Some(days) => format!("keep_days {days}, pruned daily by `run`"),
        None => "retention.keep_days unset, `run` never prunes".to_owned(),
    };
    let last = match &r.last_prune {
        Some(p) => format!(
            "; last prune {} {}, {} recorded before {}{}",
            p.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            p.status,
            counted(p.events.unwrap_or(0), "event"),
            p.cutoff.to_rfc3339(),
            p.last_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => "; never pruned".to_owned(),
    };
    writeln!(out, "retention: {keep}{last}")?;
    if let Some(cutoff) = r.cutoff {
        if r.held_back.is_empty() {
            writeln!(out, "  held back before {}: nothing", cutoff.to_rfc3339())?;
        }
        for h in &r.held_back {
            writeln!(
                out,
                "  held back before {}: {}",
                cutoff.to_rfc3339(),
                super::held_line(h)
            )?;
        }
    }
    Ok(())
}

/// The transaction that holds the horizon back. Without pg_read_all_stats, PostgreSQL hides
/// another role's session details (start, state, application): say so, and which grant shows them.
fn holder_line(t: &OpenTransaction) -> String {
    let known = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    let head = format!(
        "horizon held by: pid {}, user {}, database {}",
        t.pid,
        known(&t.user),
        known(&t.database)
    );
    match (t.started_at, t.age_secs) {
        (Some(since), Some(age)) => format!(
            "{head}, application {}, open {age} s (since {}), {}",
            t.application.as_deref().unwrap_or(""),
            since.to_rfc3339(),
            known(&t.state)
        ),
        _ => format!(
            "{head}; its start, state and application are hidden from this role: \
             GRANT pg_read_all_stats (or pg_monitor) TO it shows them"
        ),
    }
}

fn write_destination(d: &DestinationStatus, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} -> {}{}",
        d.name,
        d.url,
        d.tenant_id
            .as_ref()
            .map(|t| format!(" (tenant {t})"))
            .unwrap_or_default()
    )?;
    if let Some(refused) = &d.refused {
        writeln!(out, "  refused: {refused}")?;
    }
    for warning in &d.warnings {
        writeln!(out, "  warning: {warning}")?;
    }
    if !d.registered {
        writeln!(out, "  not exported yet; every {} h", d.every_hours)?;
    }
    if let Some(watermark) = d.watermark {
        writeln!(
            out,
            "  watermark: txid {watermark}; every {} h",
            d.every_hours
        )?;
    }
    if let Some(next) = d.next_due {
        writeln!(out, "  next due: {}", next.to_rfc3339())?;
    }
    let age = d
        .oldest_waiting_age_secs
        .map(|s| format!(", oldest recorded {s} s ago"))
        .unwrap_or_default();
    writeln!(
        out,
        "  waiting: {}{age}",
        counted(d.waiting_events, "event")
    )?;
    if let (Some(owner), Some(until)) = (&d.lease_owner, d.lease_expires_at) {
        writeln!(out, "  lease: {owner} until {}", until.to_rfc3339())?;
    }
    write_runs("scheduled runs", &d.recent_runs, out)?;
    write_runs(
        "test deliveries and re-exports",
        &d.recent_test_and_reexport_runs,
        out,
    )
}

fn write_runs(heading: &str, runs: &[RunStatusView], out: &mut dyn Write) -> std::io::Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    writeln!(out, "  {heading}:")?;
    for run in runs {
        writeln!(out, "    {}", run_line(run))?;
    }
    Ok(())
}

/// One run: when, what kind (for other than scheduled), status, what it carried, where.
pub fn run_line(run: &RunStatusView) -> String {
    let what = if run.kind == "test" {
        "test object".to_owned()
    } else if run.heartbeat {
        "heartbeat".to_owned()
    } else {
        counted(run.events.unwrap_or(0), "event")
    };
    let error = run
        .last_error
        .as_ref()
        .map(|e| format!(" — last error: {e}"))
        .unwrap_or_default();
    let kind = if run.kind == "scheduled" {
        String::new()
    } else {
        format!("{} ", run.kind)
    };
    let place = match run.objects.as_slice() {
        [first, .., last] => format!(
            "{} objects, {} … {}",
            run.objects.len(),
            first.key,
            last.key
        ),
        [only] => only.key.clone(),
        [] => run.object_key.clone(),
    };
    format!(
        "{} {kind}{} {what}, {}, {place}{error}",
        run.window_end.format("%Y-%m-%d %H:%M:%S"),
        run.status,
        counted(run.bytes.unwrap_or(0), "byte"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(kind: &'static str, events: i64, heartbeat: bool) -> RunStatusView {
        RunStatusView {
            id: uuid::Uuid::nil(),
            kind,
            status: "done",
            object_key: "k.jsonl".into(),
            window_end: chrono::Utc
                .with_ymd_and_hms(2026, 11, 29, 10, 0, 0)
                .unwrap(),
            heartbeat,
            events: Some(events),
            bytes: Some(1),
            sha256: None,
            attempts: 1,
            duration_ms: None,
            last_error: None,
            objects: Vec::new(),
        }
    }

    #[test]
    fn a_hidden_horizon_holder_says_what_is_unknown_and_the_grant() {
        let mut t = OpenTransaction {
            pid: 42,
            user: Some("app".into()),
            application: None,
            database: Some("audit".into()),
            started_at: None,
            state: None,
            age_secs: None,
        };
        assert_eq!(
            holder_line(&t),
            "horizon held by: pid 42, user app, database audit; its start, state and \
             application are hidden from this role: GRANT pg_read_all_stats (or pg_monitor) TO \
             it shows them"
        );
        t.started_at = Some(
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 29, 10, 0, 0)
                .unwrap(),
        );
        (t.age_secs, t.state, t.application) = (
            Some(7),
            Some("idle in transaction".into()),
            Some("psql".into()),
        );
        assert_eq!(
            holder_line(&t),
            "horizon held by: pid 42, user app, database audit, application psql, open 7 s \
             (since 2026-11-29T10:00:00+00:00), idle in transaction"
        );
    }

    #[test]
    fn a_run_says_one_event_and_its_kind_unless_scheduled() {
        assert_eq!(
            run_line(&run("scheduled", 1, false)),
            "2026-11-29 10:00:00 done 1 event, 1 byte, k.jsonl"
        );
        assert_eq!(
            run_line(&run("reexport", 2, false)),
            "2026-11-29 10:00:00 reexport done 2 events, 1 byte, k.jsonl"
        );
        assert_eq!(
            run_line(&run("scheduled", 0, true)),
            "2026-11-29 10:00:00 done heartbeat, 1 byte, k.jsonl"
        );
        assert_eq!(
            run_line(&run("test", 0, false)),
            "2026-11-29 10:00:00 test done test object, 1 byte, k.jsonl"
        );
    }
}
