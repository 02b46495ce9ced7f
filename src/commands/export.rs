//! `export`: every named destination now, or when due; one line of outcome each.

use std::io::Write;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::UsageError;
use crate::export::{Exporter, Outcome, When};
use crate::settings::{Destination, Settings};
use crate::sink::{self, PutOutcome};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub exported: usize,
    pub skipped: usize,
    pub failed: usize,
}

pub async fn export(
    settings: &Settings,
    names: &[String],
    when: When,
    out: &mut dyn Write,
) -> anyhow::Result<ExportSummary> {
    let destinations = settings
        .select_destinations(names)
        .map_err(|e| UsageError(e.0))?;
    let database = super::open(settings).await?;
    // SIGTERM or Ctrl-C aborts the uploads in flight and releases their leases before exit.
    let shutdown = CancellationToken::new();
    let on_signal = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            super::shutdown_signal().await;
            tracing::warn!("Stopping: aborting the uploads in flight; their runs stay pending.");
            shutdown.cancel();
        }
    });
    let exporter =
        Exporter::new(database.store.clone(), settings.exporter.clone()).with_shutdown(shutdown);
    let exports = destinations
        .iter()
        .map(|d| export_one(&exporter, settings, d, when));
    let results: Vec<_> = futures::stream::iter(exports)
        .buffered(super::parallel_exports(&database.store))
        .collect()
        .await;

    let mut summary = ExportSummary::default();
    for (destination, result) in destinations.iter().zip(results) {
        let name = &destination.name;
        match result {
            Ok(Outcome::Exported(report)) => {
                summary.exported += 1;
                let what = if report.run.heartbeat_event_id.is_some() {
                    "a heartbeat (empty window)".to_owned()
                } else {
                    super::counted(report.events as i64, "event")
                };
                let note = match (report.resumed, report.put) {
                    (true, PutOutcome::AlreadyExists) => {
                        " (resumed; its objects were already delivered)"
                    }
                    (true, PutOutcome::Written) => " (resumed)",
                    (false, _) => "",
                };
                let place = match report.locations.as_slice() {
                    [one] => format!("to {one}"),
                    [first, .., last] => {
                        format!("in {} objects, {first} to {last}", report.locations.len())
                    }
                    [] => "nowhere".to_owned(),
                };
                writeln!(
                    out,
                    "{name}: exported {what}, {} bytes, {place}{note}",
                    report.bytes
                )?;
            }
            Ok(Outcome::NotDue { next_due }) => {
                summary.skipped += 1;
                writeln!(
                    out,
                    "{name}: not due; next export at {}",
                    next_due.to_rfc3339()
                )?;
            }
            Ok(Outcome::Busy { owner, expires_at }) => {
                summary.skipped += 1;
                writeln!(
                    out,
                    "{name}: skipped; {owner} is exporting it (lease until {})",
                    expires_at.to_rfc3339()
                )?;
            }
            Err(error) => {
                let error = database.store.explain(error);
                summary.failed += 1;
                tracing::error!(destination = %name, error = format!("{error:#}"), "Export failed.");
                writeln!(out, "{name}: export failed: {error:#}")?;
                if let Some(hint) = super::hint_for(&error, destination) {
                    writeln!(out, "{name}: hint: {hint}")?;
                }
            }
        }
    }
    on_signal.abort();
    database.close().await;
    Ok(summary)
}

async fn export_one(
    exporter: &Exporter,
    settings: &Settings,
    destination: &Destination,
    when: When,
) -> anyhow::Result<Outcome> {
    let sink = sink::connect(destination, &settings.exporter).await?;
    exporter.export(destination, sink.as_ref(), when).await
}
