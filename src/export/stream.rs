//! The checks before a destination's run: its stream started where the config says, the
//! tenant filter and cluster are those its watermark covers, and a pending run still delivers
//! where and how the config says.

use super::Exporter;
use crate::settings::{Destination, delivery_changes};
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

    /// Whether the pending `run` may be resumed: what defines its delivery is unchanged. If
    /// not, it is abandoned (the watermark stays) and the caller plans a new run.
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
        let reason = format!(
            "the configuration changed while the run was pending: {}",
            changes.join("; ")
        );
        tracing::warn!(
            run_id = %run.id,
            key = %run.object_key,
            reason = %reason,
            "Abandoned a pending run: its delivery changed. An object may be at its key, at the old place; the watermark stays and a new run is planned."
        );
        self.store.abandon_run(lease, run.id, &reason).await?;
        Ok(false)
    }
}
