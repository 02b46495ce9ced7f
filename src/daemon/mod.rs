//! `run`: a cron job checks which destinations are due and starts their exports, until
//! SIGTERM or Ctrl-C. Due times come from the database, so restarts and replicas agree on them.
//! The configuration file is reloaded when it changes and on SIGHUP; `/metrics`, `/healthz`
//! and `/readyz` are served on `run.listen` from the start, also while the database is down.

mod backoff;
mod health;
mod http;
mod metrics;
mod outage;
mod refresh;
mod reload;
mod retention;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use crate::export::Exporter;
use crate::settings::Settings;
use crate::store::Store;
use worker::{Plan, Worker};

/// How long an aborted export may take to remove its upload and release its lease.
const ABORT_WAIT: Duration = Duration::from_secs(30);

pub async fn run(config_file: Option<PathBuf>, settings: Settings) -> anyhow::Result<()> {
    let database = crate::store::Database::connect_lazy(&settings.database).await?;
    let store = database.store.clone();
    let shutdown = CancellationToken::new();
    let worker = Arc::new(Worker::new(
        Plan::new(
            Exporter::new(store.clone(), settings.exporter.clone()).with_shutdown(shutdown.clone()),
            &settings,
        )
        .await?,
        crate::commands::parallel_exports(&store, settings.run.parallel_exports),
    ));
    let http = match settings.run.listen {
        Some(address) => Some(
            http::serve(
                address,
                http::Server {
                    worker: worker.clone(),
                    store: store.clone(),
                    unready_after_failing: settings.run.unready_after_failing,
                },
            )
            .await?,
        ),
        None => None,
    };
    let stop = crate::commands::shutdown_signal();
    tokio::pin!(stop);
    tokio::select! {
        () = wait_for_database(&store, &settings, &worker) => {}
        () = &mut stop => {
            tracing::info!("Stopping before the database answered.");
            if let Some(http) = http {
                http.abort();
            }
            database.close().await;
            return Ok(());
        }
    }
    warn_of_unsigned_chains(&store, &settings).await;
    let refresher = tokio::spawn(refresh::watch(
        worker.clone(),
        store.clone(),
        settings.run.metrics_refresh,
    ));
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
    let pruning = CancellationToken::new();
    let pruner = tokio::spawn(retention::watch(
        worker.clone(),
        store.clone(),
        pruning.clone(),
    ));

    // Catch up at once on anything that fell due while no exporter ran.
    worker.check();
    stop.await;
    tracing::info!("Stopping: no new exports will start.");
    worker.stop();
    reloads.abort();
    // A prune in flight stops after its batch and logs what it deleted.
    pruning.cancel();
    if tokio::time::timeout(ABORT_WAIT, pruner).await.is_err() {
        tracing::warn!(
            wait_secs = ABORT_WAIT.as_secs(),
            "The prune did not stop in time; the next prune settles its run once its lease has passed."
        );
    }
    let mut scheduler = scheduler;
    scheduler.shutdown().await?;

    let grace = Duration::from_secs(settings.run.shutdown_grace_secs.into());
    if tokio::time::timeout(grace, worker.idle()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "An export was still running after the grace period: aborting its upload and releasing its lease; it stays pending and the next exporter resumes it with the same key."
        );
        shutdown.cancel();
        if tokio::time::timeout(ABORT_WAIT, worker.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                wait_secs = ABORT_WAIT.as_secs(),
                "The export did not stop in time; its lease expires after exporter.lease_secs."
            );
        }
    }
    refresher.abort();
    if let Some(http) = http {
        http.abort();
    }
    database.close().await;
    Ok(())
}

/// Waits until the database answers (and is migrated, when `migrate_on_start`), retrying with
/// a growing wait; `/readyz` says why meanwhile.
async fn wait_for_database(store: &Store, settings: &Settings, worker: &Worker) {
    let mut failures = 0;
    loop {
        let ready = async {
            store.try_connect(settings.database.connect_timeout).await?;
            if settings.database.migrate_on_start {
                store.migrate().await?;
            }
            anyhow::Ok(())
        };
        let outcome = match tokio::time::timeout(Duration::from_secs(10), ready).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("no answer within 10 s")),
        };
        let error = match outcome {
            Ok(()) => {
                worker.health.waiting(None);
                return;
            }
            Err(error) => format!("{error:#}"),
        };
        failures += 1;
        let wait = backoff::after(failures, backoff::DATABASE_FIRST, backoff::DATABASE_MAX);
        tracing::warn!(
            error,
            retry_in_secs = wait.as_secs(),
            "The database cannot be used yet; serving /healthz and waiting for it."
        );
        worker.health.waiting(Some(error));
        tokio::time::sleep(wait).await;
    }
}

/// With no signing key, warns once for each destination whose signed digest chain has begun.
async fn warn_of_unsigned_chains(store: &Store, settings: &Settings) {
    match crate::commands::unsigned_chains(store, settings).await {
        Ok(found) => {
            for warning in found {
                tracing::warn!(
                    destination = warning.destination,
                    "The destination's signed digest chain has begun, but integrity.signing_key_file is not set: its new runs will not be signed, and verify-chain will report each of their objects as an extra object; set the key again to continue the chain."
                );
            }
        }
        Err(error) => tracing::warn!(
            error = format!("{error:#}"),
            "Whether a destination's signed digest chain began could not be read."
        ),
    }
}

/// The job that starts the checks on the cron schedule.
fn check_job(cron: &str, worker: Arc<Worker>) -> Result<Job, JobSchedulerError> {
    Job::new_async(cron, move |_, _| {
        worker.check();
        Box::pin(async {})
    })
}
