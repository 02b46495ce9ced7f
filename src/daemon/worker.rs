//! The destinations `run` exports, each on its own schedule: a check starts the export of
//! every destination that is not already exporting and not backing off, and does not wait for
//! them. Exports run at once up to the pool's share (see `commands::parallel_exports`). A
//! destination whose exports keep failing waits longer before each new attempt (see
//! `backoff`); a success, a reload, or the database coming back resets the wait.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, watch};

use super::health::Health;
use super::metrics::Metrics;
use super::{backoff, outage};
use crate::export::{Exporter, Outcome, When};
use crate::settings::{Destination, Settings};
use crate::sink::{self, Sink};

pub struct Target {
    pub destination: Destination,
    pub sink: Box<dyn Sink>,
}

/// What exports start with; swapped whole when the configuration changes.
pub struct Plan {
    pub exporter: Exporter,
    pub targets: Vec<Target>,
    /// The first wait after a failed export, and the longest.
    pub backoff: (Duration, Duration),
    /// `database.connect_timeout_secs`: how long naming a database outage's cause may take.
    pub connect_timeout: Duration,
}

impl Plan {
    pub async fn new(exporter: Exporter, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            exporter,
            targets: connect(settings).await?,
            backoff: (
                settings.run.failed_export_backoff,
                settings.run.failed_export_backoff_max,
            ),
            connect_timeout: settings.database.connect_timeout,
        })
    }
}

/// Where a destination stands in this process.
#[derive(Debug, Default, Clone, Copy)]
struct Track {
    exporting: bool,
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
}

pub struct Worker {
    plan: RwLock<Arc<Plan>>,
    /// Exports at once, sized once from the pool.
    slots: Semaphore,
    tracks: Mutex<HashMap<String, Track>>,
    stopping: AtomicBool,
    in_flight: watch::Sender<usize>,
    pub metrics: Metrics,
    pub health: Health,
}

impl Worker {
    pub fn new(plan: Plan, parallel: usize) -> Self {
        let worker = Self {
            plan: RwLock::new(Arc::new(plan)),
            slots: Semaphore::new(parallel),
            tracks: Mutex::default(),
            stopping: AtomicBool::new(false),
            in_flight: watch::Sender::new(0),
            metrics: Metrics::default(),
            health: Health::starting(),
        };
        for target in &worker.plan().targets {
            worker.declare(&target.destination);
        }
        worker
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.plan.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts the export of every destination that is neither exporting nor backing off; each
    /// one decides from the database whether it is due. Returns without waiting for them.
    pub fn check(self: &Arc<Self>) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let plan = self.plan();
        let now = Utc::now();
        for (index, target) in plan.targets.iter().enumerate() {
            let name = &target.destination.name;
            {
                let mut tracks = self.tracks();
                let track = tracks.entry(name.clone()).or_default();
                if track.exporting {
                    tracing::debug!(destination = %name, "Still exporting; not started again.");
                    continue;
                }
                if let Some(retry_at) = track.retry_at.filter(|at| *at > now) {
                    tracing::debug!(destination = %name, %retry_at, "Backing off after failures.");
                    continue;
                }
                track.exporting = true;
            }
            self.in_flight.send_modify(|n| *n += 1);
            let (worker, plan) = (self.clone(), plan.clone());
            tokio::spawn(async move {
                let target = &plan.targets[index];
                let started = Instant::now();
                let outcome = worker.export(&plan.exporter, target).await;
                worker.finish(&target.destination.name, outcome, started);
                worker.in_flight.send_modify(|n| *n -= 1);
            });
        }
    }

    /// One export of one destination, when a slot is free: the one place an export starts.
    /// `None` when `run` began stopping while it waited for the slot.
    async fn export(
        &self,
        exporter: &Exporter,
        target: &Target,
    ) -> Option<anyhow::Result<Outcome>> {
        let _slot = self.slots.acquire().await.ok()?;
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let outcome = exporter
            .export(&target.destination, target.sink.as_ref(), When::IfDue)
            .await;
        Some(match outcome {
            Err(error) if outage::is_outage(&error) => {
                // Said as one-shot commands say it: the server and the cause, at once.
                let timeout = self.plan().connect_timeout;
                let cause = match exporter.store().try_connect(timeout).await {
                    Err(cause) => format!("{cause:#}"),
                    Ok(()) => format!("{error:#}"),
                };
                Err(outage::DatabaseDown(cause).into())
            }
            outcome => outcome,
        })
    }

    fn finish(&self, name: &str, outcome: Option<anyhow::Result<Outcome>>, started: Instant) {
        let now = Utc::now();
        let mut tracks = self.tracks();
        let Some(outcome) = outcome else {
            if let Some(track) = tracks.get_mut(name) {
                track.exporting = false;
            }
            return;
        };
        let configured = self
            .plan()
            .targets
            .iter()
            .any(|t| t.destination.name == name);
        let Some(track) = tracks.get_mut(name).filter(|_| configured) else {
            // Removed from the configuration while it exported: nothing to judge any more.
            tracks.remove(name);
            return;
        };
        track.exporting = false;
        if let Err(error) = &outcome
            && let Some(down) = error.downcast_ref::<outage::DatabaseDown>()
        {
            // The process's outage, shown by /readyz: not this destination's failure.
            tracing::warn!(destination = %name, error = %down, "Export not done; it is tried again at the next check.");
            return;
        }
        if let Err(error) = &outcome
            && error.is::<crate::export::Stopped>()
        {
            // A shutdown, not a failure: the run stays pending for the next process.
            tracing::info!(destination = %name, "Export stopped by the shutdown; its run stays pending.");
            return;
        }
        self.metrics.record(name, &outcome, started.elapsed(), now);
        match outcome {
            Ok(Outcome::Exported(_)) | Ok(Outcome::NotDue { .. }) => {
                if let Ok(Outcome::NotDue { next_due }) = outcome {
                    tracing::debug!(destination = %name, %next_due, "Not due.");
                }
                *track = Track::default();
                self.health.cleared(name);
            }
            Ok(Outcome::Busy { owner, .. }) => {
                tracing::info!(destination = %name, %owner, "Another exporter holds the lease.");
            }
            Err(error) => {
                let error = self.plan().exporter.store().explain(error);
                track.failures += 1;
                let (first, max) = self.plan().backoff;
                let wait = backoff::after(track.failures, first, max);
                let retry_at = now + wait;
                track.retry_at = Some(retry_at);
                self.health.failed(name, now);
                tracing::error!(
                    destination = %name,
                    error = format!("{error:#}"),
                    failures_in_a_row = track.failures,
                    %retry_at,
                    "Export failed; it will be retried after backing off."
                );
            }
        }
        self.metrics
            .set_backoff(name, track.failures, track.retry_at);
    }

    /// The database shows the destination has nothing left to do (no pending run, its latest
    /// due time served): whatever failed is gone, so it is not failing and need not wait.
    pub fn nothing_to_do(&self, name: &str) {
        let mut tracks = self.tracks();
        let Some(track) = tracks.get_mut(name).filter(|t| !t.exporting) else {
            return;
        };
        if track.failures > 0 {
            *track = Track::default();
            self.metrics.set_backoff(name, 0, None);
        }
        self.health.cleared(name);
    }

    /// Every destination may be tried again at once (a reload, the database back). Only the
    /// wait is reset: the failures in a row count on until a success (or the destination's
    /// removal), so `audit_exporter_failures_in_a_row` keeps meaning what README says.
    pub fn reset_backoff(&self) {
        for (name, track) in self.tracks().iter_mut() {
            track.retry_at = None;
            self.metrics.set_backoff(name, track.failures, None);
        }
    }

    /// Starts no new export from now on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Waits until no export is in flight.
    pub async fn idle(&self) {
        let mut in_flight = self.in_flight.subscribe();
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    /// Switches to a new configuration's destinations and exporter settings; exports in
    /// progress finish with the old ones. Every destination may be tried again at once.
    pub async fn apply(&self, settings: &Settings) -> anyhow::Result<()> {
        let old = self.plan();
        let new = Plan::new(
            old.exporter.with_settings(settings.exporter.clone()),
            settings,
        )
        .await?;
        let names = |plan: &Plan| -> BTreeMap<String, Destination> {
            plan.targets
                .iter()
                .map(|t| (t.destination.name.clone(), t.destination.clone()))
                .collect()
        };
        let (before, after) = (names(&old), names(&new));
        let added: Vec<&str> = after
            .keys()
            .filter(|n| !before.contains_key(*n))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = before
            .keys()
            .filter(|n| !after.contains_key(*n))
            .map(String::as_str)
            .collect();
        let changed: Vec<&str> = after
            .iter()
            .filter(|(name, d)| before.get(*name).is_some_and(|b| !same(b, d)))
            .map(|(name, _)| name.as_str())
            .collect();
        *self.plan.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        for name in &removed {
            self.metrics.forget(name);
            self.health.cleared(name);
            self.tracks().retain(|n, t| n != name || t.exporting);
        }
        for destination in after.values() {
            self.declare(destination);
        }
        self.reset_backoff();
        tracing::info!(
            added = ?added,
            removed = ?removed,
            changed = ?changed,
            "Applied the new configuration."
        );
        Ok(())
    }

    fn declare(&self, destination: &Destination) {
        self.metrics
            .declare(&destination.name, destination.every_hours);
    }

    fn tracks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Track>> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sink of every configured destination.
pub async fn connect(settings: &Settings) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    for destination in &settings.destinations {
        targets.push(Target {
            destination: destination.clone(),
            sink: sink::connect(destination, &settings.exporter).await?,
        });
    }
    Ok(targets)
}

/// Whether two versions of a destination are the same, as far as a log line tells.
fn same(a: &Destination, b: &Destination) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[cfg(test)]
mod tests;
