//! Re-export: the events of an occurred_at range that a destination already exported, written
//! again under `{prefix}/reexport/` in the destination's key layout, in `(occurred_at, txid, id)`
//! order, with the destination's format and object options. The watermark never moves and no
//! scheduled object is touched.

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use tracing::Instrument;

use super::Exporter;
use super::objects::split_limit;
use super::pipeline::{Objects, Source, write_objects};
use crate::domain::{KeyParts, PartitionTime, SideFolder, side_key};
use crate::settings::Destination;
use crate::sink::Sink;
use crate::store::{Range, Run, RunObject, RunStatus};

#[derive(Debug, Clone)]
pub struct ReexportReport {
    pub run: Run,
    pub events: u64,
    pub bytes: u64,
    /// Where each object went, in order.
    pub locations: Vec<String>,
    pub objects: Vec<RunObject>,
    /// Where its signed digest went, when digests are signed.
    pub digest: Option<String>,
}

impl Exporter {
    /// Re-exports `[from, to)` of occurred_at, of `tenant` when given (within the destination's
    /// own tenant filter). `progress` counts events; it may be hidden.
    pub async fn reexport(
        &self,
        destination: &Destination,
        sink: &dyn Sink,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        tenant: Option<&str>,
        progress: &ProgressBar,
    ) -> anyhow::Result<ReexportReport> {
        let store = self.store();
        let state = store
            .sync_destination(
                &destination.name,
                destination.every_hours,
                destination.schedule_at,
            )
            .await?;
        self.settle_interrupted(&destination.name, sink).await?;
        // Everything below this watermark was exported and can no longer change.
        let range = Range {
            from,
            to,
            watermark: state.watermark,
            tenant_id: tenant.or(destination.tenant_id.as_deref()),
        };
        progress.set_length(store.count_range(range).await?.max(0) as u64);
        let by_day = destination.partition_time == PartitionTime::Event;
        let key = |run_id, at| {
            let parts = KeyParts {
                prefix: destination.prefix(),
                destination: &destination.name,
                window_end: at,
                run_id,
                extension: destination.format.extension(),
                by_day,
            };
            side_key(
                &destination.key_layout,
                SideFolder::Reexport,
                &parts,
                Some(1),
            )
        };
        let run = store
            .start_reexport_run(
                &destination.name,
                range,
                destination.format,
                by_day,
                self.settings.lease_secs,
                key,
            )
            .await?;
        let span =
            tracing::info_span!("reexport", destination = %destination.name, run_id = %run.id);
        let part_size = self.settings.part_size;
        let written = self
            .keep_alive(run.id, async {
                let objects = Objects {
                    run: &run,
                    source: Source::Copy(store.copy_range(range).await?),
                    limit: Some(split_limit(destination.max_object_bytes, part_size)),
                    earlier: Vec::new(),
                    progress: Some(progress.clone()),
                };
                write_objects(store, sink, objects, part_size, &self.shutdown).await
            })
            .instrument(span)
            .await;
        let written = match written {
            Ok(delivered) => self
                .seal_reexport(destination, &run, (from, to), &delivered.objects, sink)
                .await
                .map(|digest| (delivered, digest)),
            Err(e) => Err(e),
        };
        match written {
            Ok((delivered, digest)) => {
                let events = delivered.events();
                let bytes = delivered.bytes();
                let sha256 = delivered.sha256();
                let count = delivered.objects.len() as i32;
                store
                    .finish_reexport_run(run.id, events as i64, bytes as i64, sha256, count)
                    .await?;
                Ok(ReexportReport {
                    run: Run {
                        status: RunStatus::Done,
                        event_count: Some(events as i64),
                        bytes: Some(bytes as i64),
                        sha256: sha256.map(str::to_owned),
                        object_count: Some(count),
                        ..run
                    },
                    events,
                    bytes,
                    locations: delivered
                        .objects
                        .iter()
                        .map(|o| sink.location(&o.key))
                        .collect(),
                    objects: delivered.objects,
                    digest: digest.map(|key| sink.location(&key)),
                })
            }
            Err(error) => {
                if let Err(e) = store.fail_side_run(run.id, &format!("{error:#}")).await {
                    tracing::warn!(run_id = %run.id, error = %e, "Could not record the failed re-export.");
                }
                Err(error)
            }
        }
    }
}
