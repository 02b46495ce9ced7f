//! Side runs (re-exports, test deliveries) never hold the destination's lease; instead each
//! keeps itself alive in the run log while it writes. One whose process died is found by the
//! next export, re-export or test delivery of its destination and marked failed, with the
//! objects it completed named in its error and what it left half-written removed where that
//! can be done without listing (a directory's temp file).

use std::future::Future;
use std::time::Duration;

use uuid::Uuid;

use super::Exporter;
use crate::domain::part_key;
use crate::sink::Sink;

impl Exporter {
    /// Runs `work`, renewing the side run's life every third of `exporter.lease_secs`.
    pub(super) async fn keep_alive<T>(
        &self,
        run_id: Uuid,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let secs = self.settings.lease_secs;
        let every = Duration::from_secs(u64::from(secs / 3).max(1));
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                () = tokio::time::sleep(every) => {
                    match self.store().renew_side_run(run_id, secs).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(%run_id, "The run was marked interrupted while it was still writing."),
                        Err(e) => tracing::warn!(%run_id, error = format!("{e:#}"), "Could not renew the run."),
                    }
                }
            }
        }
    }

    /// Marks failed the destination's side runs that a crash interrupted, and removes their
    /// half-written object where the sink can.
    pub async fn settle_interrupted(
        &self,
        destination: &str,
        sink: &dyn Sink,
    ) -> anyhow::Result<()> {
        for run in self.store().fail_interrupted_side_runs(destination).await? {
            let next = part_key(
                &run.object_key,
                run.object_count.unwrap_or(0).max(0) as u32 + 1,
            );
            if let Err(e) = sink.discard_partial(&next).await {
                tracing::warn!(run_id = %run.id, error = format!("{e:#}"), "Could not remove what the interrupted run left.");
            }
            tracing::warn!(
                destination,
                run_id = %run.id,
                kind = run.kind.as_str(),
                error = run.last_error.as_deref().unwrap_or_default(),
                "Marked a run that a crash interrupted as failed."
            );
        }
        Ok(())
    }
}
