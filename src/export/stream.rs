//! The checks before a destination's run: its stream started where the config says, the
//! tenant filter and cluster are those its watermark covers, and a pending run still delivers
//! where and how the config says.

use std::path::PathBuf;

use super::Exporter;
use crate::domain::part_key;
use crate::settings::{Destination, delivery_changes, same_place};
use crate::sink::{FileSink, Sink};
use crate::store::{Lease, Run};

impl Exporter {
    /// Applies the destination's `start` if its stream has not started yet (a new destination,
    /// or one re-added after `forget`). Returns the cluster's identity, when readable.
    pub(super) async fn begin_stream(
        &self,
        destination: &Destination,
    ) -> anyhow::Result<Option<String>> {
        let cluster = self.store.cluster_id().await?;
        let started = self
            .store
            .begin_stream(
                &destination.name,
                destination.tenant_id.as_deref(),
                destination.start,
                cluster.as_deref(),
            )
            .await?;
        if started {
            tracing::debug!(destination = %destination.name, start = %destination.start, "Started the destination's stream.");
        }
        Ok(cluster)
    }

    /// Whether the pending `run` may be resumed: what defines its delivery is unchanged, or it
    /// already delivered objects to the same place (tenant filter and URL unchanged), where it is
    /// finished in the format it was planned with. If not, it is abandoned (the watermark stays)
    /// and the caller plans a new run.
    pub(super) async fn resumable(
        &self,
        lease: &Lease,
        run: &Run,
        current: &serde_json::Value,
    ) -> anyhow::Result<bool> {
        // Runs planned before deliveries were recorded resume as before.
        let Some(planned) = &run.delivery else {
            return Ok(true);
        };
        let changes = delivery_changes(planned, current);
        if changes.is_empty() {
            return Ok(true);
        }
        let delivered = self.store.run_objects(run.id).await?;
        if !delivered.is_empty() && same_place(planned, current) {
            // Abandoning it would deliver its first objects' events twice in this place.
            tracing::warn!(
                run_id = %run.id,
                objects = delivered.len(),
                changes = %changes.join("; "),
                "A pending run that already delivered objects here is finished as it was planned, so no event is delivered twice; the change applies from the next run."
            );
            return Ok(true);
        }
        let reason = format!(
            "the configuration changed while the run was pending: {}",
            changes.join("; ")
        );
        let keys: Vec<&str> = delivered.iter().map(|o| o.key.as_str()).collect();
        tracing::warn!(
            run_id = %run.id,
            key = %run.object_key,
            reason = %reason,
            delivered = %keys.join(","),
            "Abandoned a pending run: its delivery changed. The objects it delivered (if any) stay at the old place, and an object may be at the key it was writing; the watermark stays and a new run is planned."
        );
        self.store.abandon_run(lease, run.id, &reason).await?;
        discard_leftovers(run, delivered.len()).await;
        Ok(false)
    }
}

/// Removes what a killed attempt of an abandoned or cancelled run left in a directory
/// destination (the temp file of the object after the `delivered` ones), at the place the run was planned for, which may no longer be
/// the configured one. No later attempt of that run would ever remove it. A failure is logged:
/// the run is abandoned all the same.
pub async fn discard_leftovers(run: &Run, delivered: usize) {
    let directory = run
        .delivery
        .as_ref()
        .and_then(|d| d.pointer("/url/directory"))
        .and_then(|d| d.as_str());
    let Some(directory) = directory else { return };
    let sink = FileSink::new(PathBuf::from(directory));
    let writing = part_key(&run.object_key, delivered as u32 + 1);
    if let Err(error) = sink.discard_partial(&writing).await {
        tracing::warn!(run_id = %run.id, directory, error = format!("{error:#}"), "Could not remove the temporary file of an abandoned run.");
    }
}
