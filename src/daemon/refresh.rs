//! The background reader behind `/metrics` and `/readyz`: every `run.metrics_refresh_secs` it
//! reads each destination's state from the database, so a scrape never waits on it. It also
//! clears what the database shows is over: a failing destination with nothing left to do, and
//! the backoff of every destination once the database answers again after it did not.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::worker::Worker;
use crate::store::Store;

/// Reads every `every` until the task is dropped.
pub async fn watch(worker: Arc<Worker>, store: Store, every: Duration) {
    // A read that hangs (a blocked database) is given up, so the next one can tell.
    let limit = every.max(Duration::from_secs(10));
    let mut was_up = true;
    loop {
        let outcome = match tokio::time::timeout(limit, read(&worker, &store)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("no answer within {} s", limit.as_secs())),
        };
        let up = outcome.is_ok();
        worker.metrics.set_database_read(up, Utc::now());
        match outcome {
            Ok(()) if !was_up => {
                tracing::info!(
                    "The database answers again; failing destinations are tried again at once."
                );
                worker.reset_backoff();
            }
            Ok(()) => {}
            Err(error) if was_up => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "Could not read the destinations' state for /metrics."
                );
            }
            Err(_) => {}
        }
        was_up = up;
        tokio::time::sleep(every).await;
    }
}

#[tracing::instrument(skip_all, err)]
async fn read(worker: &Worker, store: &Store) -> anyhow::Result<()> {
    let plan = worker.plan();
    let asked: Vec<(&str, Option<&str>)> = plan
        .targets
        .iter()
        .map(|t| {
            (
                t.destination.name.as_str(),
                t.destination.tenant_id.as_deref(),
            )
        })
        .collect();
    let overviews = store.overviews(&asked).await?;
    for (target, overview) in plan.targets.iter().zip(overviews) {
        let destination = &target.destination;
        let Some(overview) = overview else {
            continue;
        };
        let now = Utc::now();
        let lag = overview
            .oldest_waiting
            .and_then(|at| (now - at).to_std().ok())
            .unwrap_or_default();
        let state = &overview.state;
        worker.metrics.set_read(
            &destination.name,
            overview.waiting_events,
            lag,
            state.schedule,
            state.last_slot,
        );
        if !overview.pending && state.schedule.due(now, state.last_slot).is_none() {
            worker.nothing_to_do(&destination.name);
        }
    }
    Ok(())
}
