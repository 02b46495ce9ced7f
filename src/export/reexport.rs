//! Re-export: the events of an occurred_at range that a destination already exported, written
//! again under `{prefix}/reexport/` in the destination's key layout, in `(occurred_at, txid, id)`
//! order, with the destination's format and object options. The watermark never moves and no
//! scheduled object is touched.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::ProgressBar;
use tracing::Instrument;
use uuid::Uuid;

use super::{Encoded, Exporter, Framer, ObjectEncoder};
use crate::domain::{KeyParts, SideFolder, side_key};
use crate::settings::Destination;
use crate::sink::{ObjectWriter, PutOutcome, Sink};
use crate::store::{CopyDecoder, Range, Run, RunStatus};

#[derive(Debug, Clone)]
pub struct ReexportReport {
    pub run: Run,
    pub events: u64,
    pub bytes: u64,
    /// Where each object went, in order.
    pub locations: Vec<String>,
}

/// An object being written, with the encoder that feeds it.
struct OpenObject {
    key: String,
    framer: Framer,
    /// Events framed but not yet handed to the encoder.
    framed: Vec<u8>,
    framed_events: u64,
    encoder: ObjectEncoder,
    writer: Box<dyn ObjectWriter>,
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
        let split = destination.max_object_bytes.is_some();
        let key = |run_id, at, part: u32| {
            let parts = KeyParts {
                prefix: destination.prefix(),
                destination: &destination.name,
                window_end: at,
                run_id,
                extension: destination.format.extension(),
            };
            side_key(
                &destination.key_layout,
                SideFolder::Reexport,
                &parts,
                split.then_some(part),
            )
        };
        let run = store
            .start_reexport_run(
                &destination.name,
                range,
                destination.format,
                self.settings.lease_secs,
                |id, at| key(id, at, 1),
            )
            .await?;
        let span =
            tracing::info_span!("reexport", destination = %destination.name, run_id = %run.id);
        let written = self
            .keep_alive(
                run.id,
                self.write_range(
                    destination,
                    sink,
                    range,
                    (run.id, |part| key(run.id, run.window_end, part)),
                    progress,
                ),
            )
            .instrument(span)
            .await;
        match written {
            Ok((encoded, locations)) => {
                let sha256 = match encoded.as_slice() {
                    [one] => Some(one.sha256.as_str()),
                    _ => None,
                };
                let events = encoded.iter().map(|e| e.events).sum::<u64>();
                let bytes = encoded.iter().map(|e| e.bytes).sum::<u64>();
                store
                    .finish_reexport_run(
                        run.id,
                        events as i64,
                        bytes as i64,
                        sha256,
                        locations.len() as i32,
                    )
                    .await?;
                Ok(ReexportReport {
                    run: Run {
                        status: RunStatus::Done,
                        event_count: Some(events as i64),
                        bytes: Some(bytes as i64),
                        sha256: sha256.map(str::to_owned),
                        object_count: Some(locations.len() as i32),
                        ..run
                    },
                    events,
                    bytes,
                    locations,
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

    /// Streams the range into one object, or into several when the destination sets
    /// max_object_bytes: an object is closed at the first event boundary where its flushed
    /// size plus `FINISH_MARGIN` reaches it, so it passes it by at most one event. Each closed object is noted with the
    /// run (`run_id`), so a crash leaves a record of what was written.
    async fn write_range(
        &self,
        destination: &Destination,
        sink: &dyn Sink,
        range: Range<'_>,
        (run_id, key): (Uuid, impl Fn(u32) -> String),
        progress: &ProgressBar,
    ) -> anyhow::Result<(Vec<Encoded>, Vec<String>)> {
        let mut done = (Vec::new(), Vec::new());
        let mut open: Option<OpenObject> = None;
        let written = self
            .write_objects(
                destination,
                sink,
                range,
                (run_id, &key),
                progress,
                &mut open,
                &mut done,
            )
            .await;
        if let Err(error) = written {
            if let Some(object) = open {
                object.writer.abort().await;
            }
            return Err(error);
        }
        // The first object is written even for an empty range, so a re-export always leaves
        // a trace.
        if open.is_none() && done.0.is_empty() {
            open = Some(self.open_object(destination, sink, key(1)).await?);
        }
        if let Some(object) = open {
            close(object, sink, &mut done).await?;
        }
        Ok(done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_objects(
        &self,
        destination: &Destination,
        sink: &dyn Sink,
        range: Range<'_>,
        (run_id, key): (Uuid, &impl Fn(u32) -> String),
        progress: &ProgressBar,
        open: &mut Option<OpenObject>,
        done: &mut (Vec<Encoded>, Vec<String>),
    ) -> anyhow::Result<()> {
        let mut copy = self.store().copy_range(range).await?;
        let mut messages = std::pin::pin!(copy.rows().await?);
        let mut decoder = CopyDecoder::default();
        while let Some(message) = messages.next().await {
            let message = message?;
            let Some(event) = decoder.decode(&message)? else {
                continue;
            };
            let object = match open {
                Some(object) => object,
                None => {
                    let part = done.0.len() as u32 + 1;
                    open.insert(self.open_object(destination, sink, key(part)).await?)
                }
            };
            object.framer.push(&event, &mut object.framed);
            object.framed_events += 1;
            progress.inc(1);
            let full = match destination.max_object_bytes {
                Some(max) => object.reached(max).await?,
                None => false,
            };
            if !full && object.framed.len() >= FRAMED_BATCH {
                object.flush().await?;
            }
            if full && let Some(object) = open.take() {
                close(object, sink, done).await?;
                self.store()
                    .note_side_objects(run_id, done.0.len() as i32)
                    .await?;
            }
        }
        decoder.finish()?;
        decoder.log_irregular();
        Ok(())
    }

    async fn open_object(
        &self,
        destination: &Destination,
        sink: &dyn Sink,
        key: String,
    ) -> anyhow::Result<OpenObject> {
        let format = destination.format;
        Ok(OpenObject {
            writer: sink.create(&key, format).await?,
            encoder: ObjectEncoder::new(format, self.settings.part_size)?,
            framer: Framer::new(format),
            framed: Vec::with_capacity(FRAMED_BATCH + (FRAMED_BATCH >> 2)),
            framed_events: 0,
            key,
        })
    }
}

/// Bytes of framed JSON handed to the encoder at a time.
const FRAMED_BATCH: usize = 256 << 10;

impl OpenObject {
    /// Hands the framed events to the encoder, and a full part to the writer.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let part = self.encoder.write(&self.framed, self.framed_events)?;
        self.framed.clear();
        self.framed_events = 0;
        if let Some(part) = part {
            self.writer.write(part).await?;
        }
        Ok(())
    }

    /// Whether the object, finished now, would hold `max` bytes or more. The cheap bound is
    /// checked at every event; only when it passes `max` are the events handed on and the
    /// compressor flushed to learn the real size.
    async fn reached(&mut self, max: u64) -> anyhow::Result<bool> {
        if self.encoder.size_bound() + (self.framed.len() as u64) < max {
            return Ok(false);
        }
        self.flush().await?;
        Ok(self.encoder.flushed_size()? >= max)
    }
}

async fn close(
    object: OpenObject,
    sink: &dyn Sink,
    (encoded, locations): &mut (Vec<Encoded>, Vec<String>),
) -> anyhow::Result<()> {
    let mut object = object;
    if let Err(e) = object.flush().await {
        object.writer.abort().await;
        return Err(e);
    }
    let OpenObject {
        key,
        encoder,
        mut writer,
        ..
    } = object;
    let (last, summary) = match encoder.finish() {
        Ok(finished) => finished,
        Err(e) => {
            writer.abort().await;
            return Err(e.into());
        }
    };
    if !last.is_empty()
        && let Err(e) = writer.write(last).await
    {
        writer.abort().await;
        return Err(e);
    }
    if writer.finish().await? == PutOutcome::AlreadyExists {
        anyhow::bail!(
            "{} already holds an object; a re-export never replaces one",
            sink.location(&key)
        );
    }
    tracing::info!(
        key = %sink.location(&key),
        events = summary.events,
        bytes = summary.bytes,
        "Wrote a re-export object."
    );
    locations.push(sink.location(&key));
    encoded.push(summary);
    Ok(())
}
