//! `run`: a cron job checks which destinations are due and exports them, until SIGTERM or
//! Ctrl-C. Due times come from the database, so restarts and replicas agree on them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::export::{Exporter, Outcome, When};
use crate::settings::{Destination, Settings};
use crate::sink::{self, Sink};

/// The destinations and their sinks, checked together.
struct Worker {
    exporter: Exporter,
    targets: Vec<(Destination, Box<dyn Sink>)>,
    /// Held while a check runs: a check never overlaps the previous one.
    busy: Mutex<()>,
    /// Destinations exported at once.
    parallel: usize,
}

impl Worker {
    /// Exports every due destination once. Failures are logged and retried at the next check.
    async fn check(&self) {
        let Ok(_guard) = self.busy.try_lock() else {
            tracing::debug!("The previous check is still running; skipping this one.");
            return;
        };
        let slots = tokio::sync::Semaphore::new(self.parallel);
        let slots = &slots;
        let exports = self.targets.iter().map(|(destination, sink)| async move {
            let Ok(_slot) = slots.acquire().await else { return };
            match self.exporter.export(destination, sink.as_ref(), When::IfDue).await {
                Ok(Outcome::Exported(_)) => {}
                Ok(Outcome::NotDue { next_due }) => {
                    tracing::debug!(destination = %destination.name, %next_due, "Not due.");
                }
                Ok(Outcome::Busy { owner, .. }) => {
                    tracing::info!(destination = %destination.name, %owner, "Another exporter holds the lease.");
                }
                Err(error) => {
                    tracing::error!(destination = %destination.name, error = format!("{error:#}"), "Export failed; it will be retried.");
                }
            }
        });
        futures::future::join_all(exports).await;
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let database = super::commands::open(&settings).await?;
    let exporter = Exporter::new(database.store.clone(), settings.exporter.clone());
    let mut targets = Vec::new();
    for destination in &settings.destinations {
        targets.push((
            destination.clone(),
            sink::connect(destination, &settings.exporter).await?,
        ));
    }
    let parallel = crate::commands::parallel_exports(&settings);
    let worker = Arc::new(Worker {
        exporter,
        targets,
        busy: Mutex::new(()),
        parallel,
    });
    tracing::info!(
        owner = worker.exporter.owner(),
        destinations = worker.targets.len(),
        check_cron = %settings.run.check_cron,
        "Exporter running."
    );

    let scheduler = JobScheduler::new()
        .await
        .context("Failed to create the scheduler")?;
    let job_worker = worker.clone();
    let job = Job::new_async(settings.run.check_cron.as_str(), move |_, _| {
        let worker = job_worker.clone();
        Box::pin(async move { worker.check().await })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;

    // Catch up at once on anything that fell due while no exporter ran.
    tokio::spawn({
        let worker = worker.clone();
        async move { worker.check().await }
    });
    shutdown_signal().await;
    tracing::info!("Stopping: no new exports will start.");
    let mut scheduler = scheduler;
    scheduler.shutdown().await?;

    let grace = Duration::from_secs(settings.run.shutdown_grace_secs.into());
    if tokio::time::timeout(grace, worker.busy.lock())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "An export was still running; it stays pending and the next exporter resumes it with the same key."
        );
    }
    database.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}
