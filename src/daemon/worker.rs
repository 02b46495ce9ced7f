//! The destinations `run` exports and their sinks, checked together; a new configuration
//! replaces them between checks.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use chrono::Utc;
use tokio::sync::Mutex;

use super::metrics::Metrics;
use crate::export::{Exporter, Outcome, When};
use crate::settings::{Destination, Settings};
use crate::sink::{self, Sink};

pub struct Target {
    pub destination: Destination,
    pub sink: Box<dyn Sink>,
}

/// What a check works with; swapped whole when the configuration changes.
pub struct Plan {
    pub exporter: Exporter,
    pub targets: Vec<Target>,
    /// Destinations exported at once.
    pub parallel: usize,
}

pub struct Worker {
    plan: RwLock<Arc<Plan>>,
    /// Held while a check runs: a check never overlaps the previous one.
    pub busy: Mutex<()>,
    pub metrics: Metrics,
}

impl Worker {
    pub fn new(plan: Plan) -> Self {
        Self {
            plan: RwLock::new(Arc::new(plan)),
            busy: Mutex::new(()),
            metrics: Metrics::default(),
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.plan.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Exports every due destination once. Failures are logged and retried at the next check.
    pub async fn check(&self) {
        let Ok(_guard) = self.busy.try_lock() else {
            tracing::debug!("The previous check is still running; skipping this one.");
            return;
        };
        let plan = self.plan();
        let slots = tokio::sync::Semaphore::new(plan.parallel);
        let (slots, plan) = (&slots, &plan);
        let exports = plan.targets.iter().map(|target| async move {
            let Ok(_slot) = slots.acquire().await else { return };
            let name = &target.destination.name;
            let started = Instant::now();
            let outcome = plan
                .exporter
                .export(&target.destination, target.sink.as_ref(), When::IfDue)
                .await;
            self.metrics
                .record(name, &outcome, started.elapsed(), Utc::now());
            match outcome {
                Ok(Outcome::Exported(_)) => {}
                Ok(Outcome::NotDue { next_due }) => {
                    tracing::debug!(destination = %name, %next_due, "Not due.");
                }
                Ok(Outcome::Busy { owner, .. }) => {
                    tracing::info!(destination = %name, %owner, "Another exporter holds the lease.");
                }
                Err(error) => {
                    tracing::error!(destination = %name, error = format!("{error:#}"), "Export failed; it will be retried.");
                }
            }
        });
        futures::future::join_all(exports).await;
    }

    /// Switches to a new configuration's destinations and exporter settings; a check in
    /// progress finishes with the old ones.
    pub async fn apply(&self, settings: &Settings) -> anyhow::Result<()> {
        let old = self.plan();
        let new = Plan {
            exporter: old.exporter.with_settings(settings.exporter.clone()),
            targets: connect(settings).await?,
            parallel: crate::commands::parallel_exports(settings),
        };
        let before: BTreeMap<&str, &Destination> = old
            .targets
            .iter()
            .map(|t| (t.destination.name.as_str(), &t.destination))
            .collect();
        let after: BTreeMap<&str, &Destination> = new
            .targets
            .iter()
            .map(|t| (t.destination.name.as_str(), &t.destination))
            .collect();
        let added: Vec<&str> = after
            .keys()
            .filter(|n| !before.contains_key(*n))
            .copied()
            .collect();
        let removed: Vec<&str> = before
            .keys()
            .filter(|n| !after.contains_key(*n))
            .copied()
            .collect();
        let changed: Vec<&str> = after
            .iter()
            .filter(|(name, d)| before.get(*name).is_some_and(|b| !same(b, d)))
            .map(|(name, _)| *name)
            .collect();
        for name in &removed {
            self.metrics.forget(name);
        }
        tracing::info!(
            added = ?added,
            removed = ?removed,
            changed = ?changed,
            "Applied the new configuration."
        );
        *self.plan.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(())
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
