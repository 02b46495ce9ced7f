//! Configuration reload: the `--config` file is looked at every `run.reload_check_secs`, and
//! SIGHUP asks at once. A valid new configuration replaces the destinations, the exporter
//! settings and the check schedule between checks; an invalid one is refused with an error in
//! the log, and the running configuration stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio_cron_scheduler::JobScheduler;
use uuid::Uuid;

use super::worker::Worker;
use crate::settings::Settings;

pub struct Reloader {
    pub path: Option<PathBuf>,
    pub worker: Arc<Worker>,
    pub scheduler: JobScheduler,
    /// The job that runs the checks, replaced when `run.check_cron` changes.
    pub job: Uuid,
    pub check_cron: String,
    /// What only a restart applies, to say so when it changed.
    pub restart_only: String,
    /// The file's content when last read.
    seen: Option<Vec<u8>>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        settings: &Settings,
        worker: Arc<Worker>,
        scheduler: JobScheduler,
        job: Uuid,
    ) -> Self {
        let seen = path.as_ref().and_then(|p| std::fs::read(p).ok());
        Self {
            path,
            worker,
            scheduler,
            job,
            check_cron: settings.run.check_cron.clone(),
            restart_only: restart_only(settings),
            seen,
        }
    }

    /// Reloads on SIGHUP, and when the file's content changes, until the task is dropped.
    pub async fn watch(mut self, every: Option<Duration>) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let poll = every.filter(|_| self.path.is_some());
        loop {
            tokio::select! {
                () = async {
                    match hangup.as_mut() {
                        Some(signal) => { signal.recv().await; }
                        None => std::future::pending().await,
                    }
                } => {
                    self.seen = self.path.as_ref().and_then(|p| std::fs::read(p).ok());
                    self.reload("SIGHUP").await;
                }
                () = async {
                    match poll {
                        Some(every) => tokio::time::sleep(every).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.path.as_ref().and_then(|p| std::fs::read(p).ok());
                    if now != self.seen {
                        self.seen = now;
                        self.reload("the file changed").await;
                    }
                }
            }
        }
    }

    async fn reload(&mut self, reason: &str) {
        let Some(path) = self.path.clone() else {
            tracing::warn!(
                reason,
                "No --config file to reload; the configuration stays."
            );
            return;
        };
        let config = path.display().to_string();
        let settings = match Settings::load(Some(&path)) {
            Ok(settings) => settings,
            Err(error) => {
                tracing::error!(%config, reason, %error, "Refused the new configuration; the running one stays in effect.");
                return;
            }
        };
        if let Err(error) = self.worker.apply(&settings).await {
            tracing::error!(%config, reason, error = format!("{error:#}"), "Could not apply the new configuration; the running one stays in effect.");
            return;
        }
        if settings.run.check_cron != self.check_cron {
            match self.replace_job(&settings.run.check_cron).await {
                Ok(()) => {
                    tracing::info!(check_cron = %settings.run.check_cron, "Checks follow the new schedule.");
                }
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "Could not change the check schedule; the old one stays."
                    );
                }
            }
        }
        if restart_only(&settings) != self.restart_only {
            tracing::warn!(
                %config,
                "[database], [log], run.listen, run.shutdown_grace_secs, run.unready_after_failing_secs, run.metrics_refresh_secs and exporter.instance_id changed; they take effect at the next start."
            );
        }
        tracing::info!(%config, reason, "Reloaded the configuration.");
    }

    async fn replace_job(&mut self, cron: &str) -> anyhow::Result<()> {
        let job = super::check_job(cron, self.worker.clone())?;
        let id = self.scheduler.add(job).await?;
        self.scheduler.remove(&self.job).await?;
        self.job = id;
        self.check_cron = cron.to_owned();
        Ok(())
    }
}

/// The settings `run` reads only at start, as one comparable string (held, never printed).
fn restart_only(settings: &Settings) -> String {
    let database = &settings.database;
    format!(
        "{:?} {:?} {} {} {} {:?} {:?} {} {:?} {:?} {:?}",
        database.url.as_ref().map(|u| u.expose_secret().to_owned()),
        database.embedded_dir,
        database.max_connections,
        settings.run.parallel_exports,
        database.migrate_on_start,
        (settings.log.format, &settings.log.level),
        settings.run.listen,
        settings.run.shutdown_grace_secs,
        settings.run.unready_after_failing,
        settings.run.metrics_refresh,
        settings.exporter.instance_id,
    )
}
