//! `verify`: a test delivery to every named destination, with the service's error and a hint
//! naming the likely missing permission when it fails.

use std::io::Write;

use super::UsageError;
use crate::export::Exporter;
use crate::settings::{Destination, Settings};
use crate::sink;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VerifySummary {
    pub written: usize,
    pub failed: usize,
}

pub async fn verify(
    settings: &Settings,
    names: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<VerifySummary> {
    let destinations = settings
        .select_destinations(names)
        .map_err(|e| UsageError(e.0))?;
    let database = super::open(settings).await?;
    let exporter = Exporter::new(database.store.clone(), settings.exporter.clone());
    let mut summary = VerifySummary::default();
    for destination in destinations {
        let name = &destination.name;
        match verify_one(&exporter, settings, destination).await {
            Ok(location) => {
                summary.written += 1;
                writeln!(out, "{name}: ok, wrote a test object to {location}")?;
            }
            Err(error) => {
                let error = database.store.explain(error);
                summary.failed += 1;
                tracing::error!(destination = %name, error = format!("{error:#}"), "Test delivery failed.");
                writeln!(out, "{name}: FAILED: {error:#}")?;
                if let Some(hint) = super::hint_for(&error, destination) {
                    writeln!(out, "{name}: hint: {hint}")?;
                }
            }
        }
    }
    database.close().await;
    Ok(summary)
}

async fn verify_one(
    exporter: &Exporter,
    settings: &Settings,
    destination: &Destination,
) -> anyhow::Result<String> {
    let sink = sink::connect(destination, &settings.exporter).await?;
    let delivery = exporter.test_delivery(destination, sink.as_ref()).await?;
    Ok(delivery.location)
}
