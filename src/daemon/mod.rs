//! `run`: a cron job checks which destinations are due and exports them, until SIGTERM or
//! Ctrl-C. Due times come from the database, so restarts and replicas agree on them. The
//! configuration file is reloaded when it changes and on SIGHUP; `/metrics`, `/healthz` and
//! `/readyz` are served on `run.listen`.

mod http;
mod metrics;
mod reload;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use crate::export::Exporter;
use crate::settings::Settings;
use worker::{Plan, Worker};

/// How long an aborted export may take to remove its upload and release its lease.
const ABORT_WAIT: Duration = Duration::from_secs(30);

pub async fn run(config_file: Option<PathBuf>, settings: Settings) -> anyhow::Result<()> {
    let database = super::commands::open(&settings).await?;
    let shutdown = CancellationToken::new();
    let worker = Arc::new(Worker::new(Plan {
        exporter: Exporter::new(database.store.clone(), settings.exporter.clone())
            .with_shutdown(shutdown.clone()),
        targets: worker::connect(&settings).await?,
        parallel: crate::commands::parallel_exports(&settings),
    }));
    let http = match settings.run.listen {
        Some(address) => Some(
            http::serve(
                address,
                http::Server {
                    worker: worker.clone(),
                    store: database.store.clone(),
                    unready_after_failing: settings.run.unready_after_failing,
                },
            )
            .await?,
        ),
        None => None,
    };
    tracing::info!(
        owner = worker.plan().exporter.owner(),
        destinations = worker.plan().targets.len(),
        check_cron = %settings.run.check_cron,
        "Exporter running."
    );

    let scheduler = JobScheduler::new()
        .await
        .context("Failed to create the scheduler")?;
    let job = scheduler
        .add(check_job(&settings.run.check_cron, worker.clone())?)
        .await?;
    scheduler.start().await?;
    let reloader = reload::Reloader::new(
        config_file,
        &settings,
        worker.clone(),
        scheduler.clone(),
        job,
    );
    let reloads = tokio::spawn(reloader.watch(settings.run.reload_check));

    // Catch up at once on anything that fell due while no exporter ran.
    tokio::spawn({
        let worker = worker.clone();
        async move { worker.check().await }
    });
    crate::commands::shutdown_signal().await;
    tracing::info!("Stopping: no new exports will start.");
    reloads.abort();
    let mut scheduler = scheduler;
    scheduler.shutdown().await?;

    let grace = Duration::from_secs(settings.run.shutdown_grace_secs.into());
    if tokio::time::timeout(grace, worker.busy.lock())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "An export was still running after the grace period: aborting its upload and releasing its lease; it stays pending and the next exporter resumes it with the same key."
        );
        shutdown.cancel();
        if tokio::time::timeout(ABORT_WAIT, worker.busy.lock())
            .await
            .is_err()
        {
            tracing::warn!(
                wait_secs = ABORT_WAIT.as_secs(),
                "The export did not stop in time; its lease expires after exporter.lease_secs."
            );
        }
    }
    if let Some(http) = http {
        http.abort();
    }
    database.close().await;
    Ok(())
}

/// The job that checks every destination on the cron schedule.
fn check_job(cron: &str, worker: Arc<Worker>) -> Result<Job, JobSchedulerError> {
    Job::new_async(cron, move |_, _| {
        let worker = worker.clone();
        Box::pin(async move { worker.check().await })
    })
}
