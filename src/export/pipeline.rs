//! Delivers a run's object in three stages joined by bounded queues, so reading, encoding and
//! uploading overlap and memory stays flat: the database stream decoded and written as JSON
//! into batches, a compressor on a blocking thread, and the sink's writer.

use anyhow::anyhow;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encode::{Encoded, Framer, ObjectEncoder};
use crate::domain::{Event, EventRef, TEST_ACTION};
use crate::sink::{ObjectWriter, PutOutcome, Sink};
use crate::store::{CopyDecoder, Run, RunKind, Store};

/// Bytes of JSON handed to the encoder at a time.
const BATCH_BYTES: usize = 256 << 10;
/// Batches waiting for the encoder.
const QUEUE: usize = 2;
/// Parts waiting for the upload, besides the one the encoder fills and those in flight: what
/// bounds memory (README, `part_size_mib`).
const PARTS_QUEUE: usize = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub outcome: PutOutcome,
    pub encoded: Encoded,
}

/// Framed events on their way to the encoder.
struct Batch {
    framed: Vec<u8>,
    events: u64,
}

/// The error of a delivery stopped by a shutdown.
#[derive(Debug, thiserror::Error)]
#[error(
    "stopped by a shutdown before the object was complete; the upload was aborted and the run stays pending"
)]
pub struct Stopped;

/// Writes the run's object: the window's events in `(txid, id)` order, or its heartbeat.
/// When `shutdown` fires first, the unfinished upload is aborted (nothing appears at the key).
pub async fn deliver(
    store: &Store,
    sink: &dyn Sink,
    run: &Run,
    part_size: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<Delivered> {
    let (batches_tx, mut batches_rx) = mpsc::channel::<Batch>(QUEUE);
    let (parts_tx, mut parts_rx) = mpsc::channel::<Bytes>(PARTS_QUEUE);
    // Batch buffers go back to the reader once encoded, so a window is read into a few
    // buffers, whatever its size.
    let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE + 2);

    let format = run.format;
    let encoder = tokio::task::spawn_blocking(move || -> anyhow::Result<Encoded> {
        let mut encoder = ObjectEncoder::new(format, part_size)?;
        let stopped = |_| anyhow!("the upload stopped");
        while let Some(batch) = batches_rx.blocking_recv() {
            if let Some(part) = encoder.write(&batch.framed, batch.events)? {
                parts_tx.blocking_send(part).map_err(stopped)?;
            }
            let _ = spare_tx.try_send(batch.framed);
        }
        let (last, encoded) = encoder.finish()?;
        parts_tx.blocking_send(last).map_err(stopped)?;
        Ok(encoded)
    });

    // A task of its own, so the socket's readiness wakes it on the worker that polls the
    // socket rather than on another thread: a wake-up for every few rows otherwise.
    let (store, run_owned) = (store.clone(), run.clone());
    let read = tokio::spawn(async move {
        let run = &run_owned;
        let mut batches = Batcher {
            framer: Framer::new(format),
            batch: Batcher::empty(&spare_rx),
            spare: spare_rx,
            queue: batches_tx,
        };
        match run.heartbeat_event_id {
            Some(id) => batches.push(&heartbeat(run, id).as_ref()),
            None => {
                let mut copy = store
                    .copy_window(
                        run.window_lo,
                        run.window_hi,
                        run.tenant_id.as_deref(),
                        run.id_floor,
                    )
                    .await?;
                let mut rows = std::pin::pin!(copy.rows().await?);
                let mut decoder = CopyDecoder::default();
                while let Some(message) = rows.next().await {
                    if let Some(event) = decoder.decode(&message?)? {
                        batches.push(&event);
                        if batches.full() {
                            batches.send().await?;
                        }
                    }
                }
                decoder.finish()?;
                decoder.log_irregular();
            }
        }
        batches.send().await
    });
    let _stop_reading = AbortOnDrop(read.abort_handle());
    let read = async move {
        read.await
            .map_err(|e| anyhow!("the reader panicked: {e}"))?
    };
    // It owns the parts queue: if it fails, the queue closes and the encoder and reader stop.
    let upload = async move {
        let mut writer = sink.create(&run.object_key, run.format).await?;
        let pumped = tokio::select! {
            pumped = pump(writer.as_mut(), &mut parts_rx) => pumped,
            () = shutdown.cancelled() => Err(Stopped.into()),
        };
        match pumped {
            Ok(()) => anyhow::Ok(writer),
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    };
    let (read, upload) = tokio::join!(read, upload);
    let encoded = encoder
        .await
        .map_err(|e| anyhow!("the encoder panicked: {e}"));

    // The writer finishes only when every stage ended well: a window cut short by a database
    // error must never become an object.
    let writer = upload?;
    let failure = match (read, encoded) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) | (Ok(()), Ok(Err(e))) => Err(e),
        (Ok(()), Ok(Ok(encoded))) => Ok(encoded),
    };
    match failure {
        Ok(encoded) => Ok(Delivered {
            outcome: writer.finish().await?,
            encoded,
        }),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

/// Hands the parts to the writer as they come.
async fn pump(
    writer: &mut dyn ObjectWriter,
    parts: &mut mpsc::Receiver<Bytes>,
) -> anyhow::Result<()> {
    loop {
        // A part is taken from the queue only when it can go out at once.
        writer.ready().await?;
        let Some(part) = parts.recv().await else {
            return Ok(());
        };
        if !part.is_empty() {
            writer.write(part).await?;
        }
    }
}

/// The heartbeat of an empty window (or the event of a test delivery), rebuilt from the run
/// alone so every attempt writes the same bytes.
pub fn heartbeat(run: &Run, event_id: uuid::Uuid) -> Event {
    let mut event = Event::heartbeat(
        event_id,
        run.window_end,
        &run.destination,
        run.id,
        (&run.window_lo.to_string(), &run.window_hi.to_string()),
        run.window_start,
        run.tenant_id.as_deref(),
    );
    if run.kind == RunKind::Test {
        event.action = TEST_ACTION.to_owned();
    }
    event
}

/// Frames events into batches and queues each batch for the encoder when it is full.
struct Batcher {
    framer: Framer,
    batch: Batch,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    queue: mpsc::Sender<Batch>,
}

impl Batcher {
    fn empty(spare: &std::sync::mpsc::Receiver<Vec<u8>>) -> Batch {
        let mut framed = spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES + (BATCH_BYTES >> 2)));
        framed.clear();
        Batch { framed, events: 0 }
    }

    fn push(&mut self, event: &EventRef<'_>) {
        self.framer.push(event, &mut self.batch.framed);
        self.batch.events += 1;
    }

    fn full(&self) -> bool {
        self.batch.framed.len() >= BATCH_BYTES
    }

    async fn send(&mut self) -> anyhow::Result<()> {
        if self.batch.framed.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Self::empty(&self.spare));
        self.queue
            .send(batch)
            .await
            .map_err(|_| anyhow!("the encoder stopped"))
    }
}

/// Stops the reader if the delivery is dropped half-way (a shutdown, a lost lease).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
