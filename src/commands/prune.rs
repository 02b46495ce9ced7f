//! `prune`: delete from PostgreSQL the events recorded before a cutoff that every destination
//! has delivered, in short batches, and log it; `--dry-run` counts what would go. `run` calls
//! [`prune_store`] once a day when `retention.keep_days` is set.

use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use super::UsageError;
use super::destination::operator;
use crate::domain::{Hold, StreamKnown, hold_of};
use crate::settings::{Destination, Settings};
use crate::store::{HeldBack, HoldReason, Operator, PruneBatch, PruneEnd, PruneUnder, Store};

/// Event ids deleted per transaction: short enough that no lock is held for more than a
/// moment (see docs/retention.md for the measurement).
pub const BATCH_IDS: i64 = 5_000;

/// Where the cutoff comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// `--before TIME`.
    Before(DateTime<Utc>),
    /// `--older-than DURATION`, or `retention.keep_days`.
    OlderThan(Duration),
}

impl Cutoff {
    /// The time itself, as of `now`; a time after `now` is refused.
    pub fn at(self, now: DateTime<Utc>) -> Result<DateTime<Utc>, UsageError> {
        match self {
            Self::OlderThan(age) => Ok(now - age),
            Self::Before(t) if t > now => Err(UsageError(format!(
                "prune --before {} is in the future; allowed for --before: a time up to now ({}), or --older-than DURATION",
                t.to_rfc3339(),
                now.to_rfc3339()
            ))),
            Self::Before(t) => Ok(t),
        }
    }
}

const BEFORE_ALLOWED: &str = "allowed for --before: an RFC 3339 time such as \
     2026-11-20T00:00:00Z or a date such as 2026-11-20 (midnight UTC), not in the future";

/// Parses `prune --before`: an RFC 3339 time or a date (midnight UTC). `now` is not one: the
/// database's clock decides what is in the future, and `--older-than 1s` says it.
pub fn parse_before(text: &str) -> Result<DateTime<Utc>, String> {
    if text.trim().eq_ignore_ascii_case("now") {
        return Err(format!(
            "\"now\" is not a cutoff (to prune what every destination delivered up to now, use \
             --older-than 1s); {BEFORE_ALLOWED}"
        ));
    }
    super::reexport::parse_instant(text).map_err(|e| format!("{e}; {BEFORE_ALLOWED}"))
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct PruneOutcome {
    pub cutoff: DateTime<Utc>,
    pub dry_run: bool,
    pub run_id: Option<uuid::Uuid>,
    pub total: PruneBatch,
    /// What the destinations hold back of the events recorded before the cutoff, after it.
    pub held: Vec<HeldBack>,
}

pub async fn prune(
    settings: &Settings,
    cutoff: Cutoff,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let database = super::open(settings).await?;
    let store = database.store.clone();
    // SIGTERM or Ctrl-C stops the prune between batches; what went is logged.
    let stop = CancellationToken::new();
    let on_signal = tokio::spawn({
        let stop = stop.clone();
        async move {
            super::shutdown_signal().await;
            stop.cancel();
            tracing::warn!(
                "Stopping: the prune stops after the batch in flight and logs what it deleted."
            );
        }
    });
    let result = async {
        let cutoff = cutoff.at(store.now().await?)?;
        prune_store(
            &store,
            &settings.destinations,
            cutoff,
            dry_run,
            &operator(),
            &stop,
        )
        .await
    }
    .await
    .map_err(|e| store.explain(e));
    on_signal.abort();
    database.close().await;
    write_outcome(&result?, out)?;
    Ok(())
}

/// The holds of the configured destinations whose stream the database has not started as
/// configured (see [`hold_of`]), for what `status` and the output say is held back; the prune
/// itself reads them from the tables.
pub async fn config_holds(
    store: &Store,
    destinations: &[Destination],
) -> anyhow::Result<Vec<Hold>> {
    let states = store.stream_states().await?;
    Ok(destinations
        .iter()
        .filter_map(|d| {
            let known = states
                .iter()
                .find(|s| s.name == d.name && !s.forgotten)
                .map_or(StreamKnown::NotStarted, |s| s.known.clone());
            hold_of(&d.name, d.tenant_id.as_deref(), d.start, &known)
        })
        .collect())
}

/// Records every configured destination as an export first seeing it would (its row, its
/// stream started per its `start`, its tenant filter), so that `audit_prune_batch` finds every
/// hold in the tables: nothing the configuration needs is left to the caller to say.
pub async fn record_destinations(
    store: &Store,
    destinations: &[Destination],
) -> anyhow::Result<()> {
    let cluster = store.cluster_id().await?;
    for d in destinations {
        let tenant = d.tenant_id.as_deref();
        store
            .sync_destination(&d.name, d.every_hours, d.schedule_at)
            .await?;
        store
            .begin_stream(&d.name, tenant, d.start, cluster.as_deref())
            .await?;
        store.note_configured_tenant(&d.name, tenant).await?;
    }
    Ok(())
}

/// A prune stopped between batches by `stop`; what it deleted is logged.
#[derive(Debug, thiserror::Error)]
#[error(
    "prune stopped (SIGTERM, Ctrl-C or `run` stopping) after deleting {deleted}; they are on record: run {run_id} and its system.retention.pruned event (\"complete\": false)"
)]
pub struct PruneStopped {
    pub run_id: uuid::Uuid,
    pub deleted: String,
}

/// Prunes (or counts, dry) batch by batch over the event ids recorded before `cutoff`, after
/// recording the configured destinations. Each batch records what it deleted on the prune's
/// run; the run ends with its `system.retention.pruned` event, also when `stop` fires (between
/// batches) or a batch fails.
#[tracing::instrument(skip_all, fields(%cutoff, dry_run), err)]
pub async fn prune_store(
    store: &Store,
    destinations: &[Destination],
    cutoff: DateTime<Utc>,
    dry_run: bool,
    by: &Operator,
    stop: &CancellationToken,
) -> anyhow::Result<PruneOutcome> {
    record_destinations(store, destinations).await?;
    let holds = config_holds(store, destinations).await?;
    let run_id = match dry_run {
        // A dead prune's deletions are logged even by a dry run, which else would be refused.
        true => {
            store.settle_dead_prunes(by).await?;
            None
        }
        false => Some(store.start_prune_run(cutoff, by).await?),
    };
    let under = run_id.map_or(PruneUnder::DryRun { cutoff }, PruneUnder::Run);
    let mut total = PruneBatch::default();
    let configured: Vec<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
    let swept = async {
        if let Some((first, last)) = store.event_id_bounds().await? {
            let end = end_of_cutoff(store, cutoff, first, last).await?;
            // One batch more than the search found: ids and recording times can be out of
            // order by a moment between concurrent writers.
            let mut from = first;
            while from < end.saturating_add(BATCH_IDS).min(last + 1) {
                if stop.is_cancelled() {
                    return Ok(false);
                }
                let to = from + BATCH_IDS;
                total = total.and(store.prune_batch(under, (from, to), by).await?);
                if let Some(id) = run_id {
                    store.renew_prune_run(id).await?;
                }
                from = to;
            }
        }
        Ok::<_, anyhow::Error>(true)
    }
    .await;
    // The held-back counts once every batch went; Err(None) when stopped between batches.
    let end = match swept {
        Ok(true) => store
            .held_back(cutoff, &configured, &holds)
            .await
            .map_err(Some),
        Ok(false) => Err(None),
        Err(e) => Err(Some(e)),
    };
    let Some(id) = run_id else {
        return match end {
            Ok(held) => Ok(PruneOutcome {
                cutoff,
                dry_run,
                run_id,
                total,
                held,
            }),
            Err(None) => Err(anyhow::anyhow!(
                "dry run stopped (SIGTERM, Ctrl-C or `run` stopping); nothing was deleted"
            )),
            Err(Some(e)) => Err(e),
        };
    };
    match end {
        Ok(held) => {
            total = store.close_prune_run(id, PruneEnd::Done(&held), by).await?;
            tracing::info!(deleted = total.deleted, "Prune finished.");
            Ok(PruneOutcome {
                cutoff,
                dry_run,
                run_id,
                total,
                held,
            })
        }
        Err(None) => {
            total = store.close_prune_run(id, PruneEnd::Stopped, by).await?;
            Err(PruneStopped {
                run_id: id,
                deleted: super::counted(total.deleted, "event"),
            }
            .into())
        }
        Err(Some(e)) => {
            // If even this fails (the database gone), the run stays pending with what its
            // batches recorded, and the next prune settles it once its lease has passed.
            if let Err(closing) = store
                .close_prune_run(id, PruneEnd::Failed(&format!("{e:#}")), by)
                .await
            {
                tracing::warn!(run_id = %id, error = format!("{closing:#}"), "Could not log the failed prune's end; the next prune settles it.");
            }
            Err(e.context(format!(
                "prune stopped after deleting {} (logged on run {id})",
                super::counted(total.deleted, "event")
            )))
        }
    }
}

/// The first event id recorded at or after `cutoff`, by a binary search over the primary key
/// (ids are handed out in the order events are recorded), so finding it never scans the table.
async fn end_of_cutoff(
    store: &Store,
    cutoff: DateTime<Utc>,
    first: i64,
    last: i64,
) -> anyhow::Result<i64> {
    let (mut lo, mut hi) = (first, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match store.recorded_at_from(mid).await? {
            Some(at) if at < cutoff => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

pub fn write_outcome(outcome: &PruneOutcome, out: &mut dyn Write) -> std::io::Result<()> {
    let cutoff = outcome.cutoff.to_rfc3339();
    let events = super::counted(outcome.total.deleted, "event");
    if outcome.dry_run {
        writeln!(
            out,
            "dry run: would prune {events} recorded before {cutoff}; nothing was deleted"
        )?;
    } else {
        let txids = outcome
            .total
            .txids
            .map(|(lo, hi)| format!(", transaction ids {lo}..={hi}"))
            .unwrap_or_default();
        writeln!(out, "pruned {events} recorded before {cutoff}{txids}")?;
    }
    write_held(&outcome.held, out)
}

/// Which destination holds how much back, one line each.
pub fn write_held(held: &[HeldBack], out: &mut dyn Write) -> std::io::Result<()> {
    if held.is_empty() {
        return writeln!(out, "held back: nothing");
    }
    writeln!(out, "held back (an event may be held by several):")?;
    for h in held {
        writeln!(out, "  {}", held_line(h))?;
    }
    Ok(())
}

pub fn held_line(h: &HeldBack) -> String {
    let events = super::counted(h.events, "event");
    let name = &h.destination;
    match &h.reason {
        HoldReason::NotExported { watermark } => {
            format!("{name}: {events} not exported yet (watermark txid {watermark})")
        }
        HoldReason::NotConfigured { watermark } => format!(
            "{name}: {events} (watermark txid {watermark}); not in the configuration: \
             `audit-exporter destination forget {name}` releases them"
        ),
        HoldReason::NotStarted => format!(
            "{name}: {events}; its stream has not started as configured (it delivers them once it does)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cutoff_is_never_in_the_future() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        assert_eq!(
            Cutoff::OlderThan(Duration::days(1)).at(now).unwrap(),
            now - Duration::days(1)
        );
        assert_eq!(Cutoff::Before(now).at(now).unwrap(), now);
        let e = Cutoff::Before(now + Duration::seconds(1))
            .at(now)
            .unwrap_err();
        assert!(
            e.0.contains("in the future; allowed for --before: a time up to now"),
            "{e}"
        );
    }

    #[test]
    fn before_takes_a_time_or_a_date_and_names_its_own_flag() {
        assert_eq!(
            parse_before("2026-11-20").unwrap(),
            "2026-11-20T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_before("2026-11-20T01:02:03+01:00").is_ok());
        for bad in ["now", "NOW", "garbage", "", "2026-13-01"] {
            let e = parse_before(bad).unwrap_err();
            assert!(e.contains("allowed for --before:"), "{bad}: {e}");
            assert!(!e.contains("--to") && !e.contains("or now"), "{bad}: {e}");
        }
        assert!(parse_before("now").unwrap_err().contains("--older-than 1s"));
    }

    #[test]
    fn each_holder_says_why_and_what_releases_it() {
        let line = |reason| {
            held_line(&HeldBack {
                destination: "old".into(),
                reason,
                events: 3,
            })
        };
        assert_eq!(
            line(HoldReason::NotExported { watermark: 7 }),
            "old: 3 events not exported yet (watermark txid 7)"
        );
        assert!(
            line(HoldReason::NotConfigured { watermark: 7 })
                .contains("`audit-exporter destination forget old` releases them")
        );
        assert!(line(HoldReason::NotStarted).contains("has not started"));
    }
}
