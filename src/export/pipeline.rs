//! Delivers a run's object in three stages joined by bounded queues, so reading, encoding and
//! uploading overlap and memory stays flat: the database stream, an encoder on a blocking
//! thread, and the sink's writer.

use anyhow::anyhow;
use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use tokio::sync::mpsc;

use super::encode::{Encoded, ObjectEncoder};
use crate::domain::{Event, TEST_ACTION};
use crate::sink::{PutOutcome, Sink};
use crate::store::{Run, RunKind, Store};

/// Events handed to the encoder at a time.
const BATCH: usize = 512;
/// Batches and parts waiting between stages.
const QUEUE: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub outcome: PutOutcome,
    pub encoded: Encoded,
}

/// Writes the run's object: the window's events in `(txid, id)` order, or its heartbeat.
pub async fn deliver(
    store: &Store,
    sink: &dyn Sink,
    run: &Run,
    part_size: usize,
) -> anyhow::Result<Delivered> {
    let events: std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<Event>> + Send + '_>> = match run
        .heartbeat_event_id
    {
        Some(id) => Box::pin(stream::once(async move { Ok(heartbeat(run, id)) })),
        None => {
            Box::pin(store.stream_window(run.window_lo, run.window_hi, run.tenant_id.as_deref()))
        }
    };
    let (events_tx, mut events_rx) = mpsc::channel::<Vec<Event>>(QUEUE);
    let (parts_tx, mut parts_rx) = mpsc::channel::<Bytes>(QUEUE);

    let format = run.format;
    let encoder = tokio::task::spawn_blocking(move || -> anyhow::Result<Encoded> {
        let mut encoder = ObjectEncoder::new(format, part_size)?;
        let stopped = |_| anyhow!("the upload stopped");
        while let Some(batch) = events_rx.blocking_recv() {
            for event in &batch {
                if let Some(part) = encoder.push(event)? {
                    parts_tx.blocking_send(part).map_err(stopped)?;
                }
            }
        }
        let (last, encoded) = encoder.finish()?;
        parts_tx.blocking_send(last).map_err(stopped)?;
        Ok(encoded)
    });

    let read = async move {
        let mut events = events.chunks(BATCH);
        while let Some(batch) = events.next().await {
            let batch = batch.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
            events_tx
                .send(batch)
                .await
                .map_err(|_| anyhow!("the encoder stopped"))?;
        }
        anyhow::Ok(())
    };
    // It owns the parts queue: if it fails, the queue closes and the encoder and reader stop.
    let upload = async move {
        let mut writer = sink.create(&run.object_key, run.format).await?;
        while let Some(part) = parts_rx.recv().await {
            if part.is_empty() {
                continue;
            }
            if let Err(e) = writer.write(part).await {
                writer.abort().await;
                return Err(e);
            }
        }
        anyhow::Ok(writer)
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

/// The heartbeat of an empty window (or the event of a test delivery), rebuilt from the run
/// alone so every attempt writes the same bytes.
pub fn heartbeat(run: &Run, event_id: uuid::Uuid) -> Event {
    let mut event = Event::heartbeat(
        event_id,
        run.window_end,
        &run.destination,
        run.id,
        (&run.window_lo.to_string(), &run.window_hi.to_string()),
        run.tenant_id.as_deref(),
    );
    if run.kind == RunKind::Test {
        event.action = TEST_ACTION.to_owned();
    }
    event
}
