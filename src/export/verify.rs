//! A test delivery: one event written through a destination's real write path (its
//! credentials, object options, checksum and conditional write) under `{prefix}/test/` in the
//! destination's key layout, logged
//! as a run of kind `test`. The watermark is never touched.

use super::{Exporter, deliver};
use crate::domain::{KeyParts, SideFolder, side_key};
use crate::settings::Destination;
use crate::sink::{PutOutcome, Sink};
use crate::store::{Run, RunStatus};

#[derive(Debug, Clone)]
pub struct TestDelivery {
    pub run: Run,
    pub location: String,
}

impl Exporter {
    #[tracing::instrument(skip_all, fields(destination = %destination.name), err)]
    pub async fn test_delivery(
        &self,
        destination: &Destination,
        sink: &dyn Sink,
    ) -> anyhow::Result<TestDelivery> {
        let store = self.store();
        store
            .sync_destination(
                &destination.name,
                destination.every_hours,
                destination.schedule_at,
            )
            .await?;
        self.settle_interrupted(&destination.name, sink).await?;
        let format = destination.format;
        let run = store
            .start_test_run(
                &destination.name,
                destination.tenant_id.as_deref(),
                format,
                self.settings.lease_secs,
                |run_id, at| {
                    let parts = KeyParts {
                        prefix: destination.prefix(),
                        destination: &destination.name,
                        window_end: at,
                        run_id,
                        extension: format.extension(),
                        by_day: false,
                    };
                    side_key(&destination.key_layout, SideFolder::Test, &parts, None)
                },
            )
            .await?;
        tracing::info!(run_id = %run.id, key = %run.object_key, "Writing a test object.");
        let delivered = self
            .keep_alive(run.id, async {
                sink.check_access().await?;
                let delivered =
                    deliver(store, sink, &run, self.settings.part_size, &self.shutdown).await?;
                if delivered.outcome == PutOutcome::AlreadyExists {
                    anyhow::bail!(
                        "{} already holds an object; nothing was written",
                        sink.location(&run.object_key)
                    );
                }
                Ok(delivered)
            })
            .await;
        match delivered {
            Ok(delivered) => {
                let bytes = delivered.bytes() as i64;
                let sha256 = delivered.sha256().unwrap_or_default().to_owned();
                store.finish_side_run(run.id, 1, bytes, &sha256).await?;
                Ok(TestDelivery {
                    location: sink.location(&run.object_key),
                    run: Run {
                        status: RunStatus::Done,
                        event_count: Some(1),
                        bytes: Some(bytes),
                        sha256: Some(sha256),
                        ..run
                    },
                })
            }
            Err(error) => {
                if let Err(e) = store.fail_side_run(run.id, &format!("{error:#}")).await {
                    tracing::warn!(run_id = %run.id, error = %e, "Could not record the failed test delivery.");
                }
                Err(error)
            }
        }
    }
}
