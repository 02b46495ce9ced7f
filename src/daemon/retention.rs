//! `retention.keep_days` under `run`: once a day (by the run log, so replicas and restarts
//! agree), prune what is older and delivered everywhere.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::worker::Worker;
use crate::domain::prune_due;
use crate::store::Store;

/// How often `run` asks whether a prune is due.
const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Checks at once, then every hour, until the task is dropped.
pub async fn watch(worker: Arc<Worker>, store: Store) {
    loop {
        if let Err(error) = prune_if_due(&worker, &store).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "The daily prune (retention.keep_days) failed; it is tried again within the hour."
            );
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[tracing::instrument(skip_all, err)]
async fn prune_if_due(worker: &Worker, store: &Store) -> anyhow::Result<()> {
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
