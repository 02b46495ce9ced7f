//! `retention.keep_days` under `run`: once a day (by the run log, so replicas and restarts
//! agree), prune what is older and delivered everywhere.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::worker::Worker;
use crate::domain::prune_due;
use crate::store::Store;

/// How often `run` asks whether a prune is due.
const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Checks at once, then every hour, until `stop` fires: a prune running then stops between
/// batches and logs what it deleted.
pub async fn watch(worker: Arc<Worker>, store: Store, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match prune_if_due(&worker, &store, &stop).await {
            Err(error) if error.is::<crate::commands::PruneStopped>() => {
                tracing::warn!(error = format!("{error:#}"), "The daily prune stopped.");
            }
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "The daily prune (retention.keep_days) failed; it is tried again within the hour."
            ),
            Ok(()) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = stop.cancelled() => {}
        }
    }
}

#[tracing::instrument(skip_all, err)]
async fn prune_if_due(
    worker: &Worker,
    store: &Store,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let plan = worker.plan();
    let Some(days) = plan.keep_days else {
        return Ok(());
    };
    // A failed prune is not counted: the next check tries again.
    let last = store.last_done_prune().await?;
    let now = store.now().await?;
    if !prune_due(last, now) {
        return Ok(());
    }
    let destinations: Vec<_> = plan.targets.iter().map(|t| t.destination.clone()).collect();
    let cutoff = now - chrono::Duration::days(days.into());
    let outcome = crate::commands::prune_store(
        store,
        &destinations,
        cutoff,
        false,
        &crate::commands::operator(),
        stop,
    )
    .await?;
    let held: Vec<String> = outcome
        .held
        .iter()
        .map(crate::commands::held_line)
        .collect();
    tracing::info!(
        keep_days = days,
        cutoff = %cutoff.to_rfc3339(),
        deleted = outcome.total.deleted,
        held_back = held.join("; "),
        at = %Utc::now().to_rfc3339(),
        "Pruned the events older than retention.keep_days that every destination has delivered."
    );
    Ok(())
}
