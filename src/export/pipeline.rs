//! Delivers a run's objects in three stages joined by bounded queues, so reading, encoding and
//! uploading overlap and memory stays flat: the database stream decoded and written as JSON
//! into batches, the cutter and compressor on a blocking thread, and the sink's writer.

use anyhow::anyhow;
use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encode::frame;
use super::objects::{Cutter, Mark, Piece};
use crate::domain::{Event, EventRef, Format, TEST_ACTION};
use crate::sink::{PutOutcome, Sink};
use crate::store::{After, CopyDecoder, CopyOut, Run, RunKind, RunObject, Store};
use upload::Upload;

mod upload;

/// Bytes of JSON handed to the encoder at a time.
const BATCH_BYTES: usize = 256 << 10;
/// Batches waiting for the encoder.
const QUEUE: usize = 2;
/// Pieces (mostly parts) waiting for the upload, besides the part the encoder fills and those in
/// flight: what bounds memory (README, `part_size_mib`).
const PARTS_QUEUE: usize = 1;

/// Every object of a run, those an earlier attempt delivered included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// `AlreadyExists` when every object this attempt wrote was already there (an earlier
    /// attempt had delivered it), or there was none left to write.
    pub outcome: PutOutcome,
    pub objects: Vec<RunObject>,
}

impl Delivered {
    pub fn events(&self) -> u64 {
        self.objects.iter().map(|o| o.events as u64).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.bytes as u64).sum()
    }

    /// The SHA-256 of the run's object, when it wrote one (the run log keeps each object's).
    pub fn sha256(&self) -> Option<&str> {
        match self.objects.as_slice() {
            [one] => Some(&one.sha256),
            _ => None,
        }
    }
}

/// Events as the reader frames them, on their way to the encoder.
struct Batch {
    framed: Vec<u8>,
    marks: Vec<Mark>,
    /// The last batch: the window was read to its end.
    done: bool,
}

/// The error of a delivery stopped by a shutdown.
#[derive(Debug, thiserror::Error)]
#[error(
    "stopped by a shutdown before the object was complete; the upload was aborted and the run stays pending"
)]
pub struct Stopped;

/// The encoder's error when the reader stopped half-way: the reader's error says why.
#[derive(Debug, thiserror::Error)]
#[error("the reader stopped before the end of the window")]
struct ReaderStopped;

/// Where a run's events come from.
pub(super) enum Source {
    /// The rows of a COPY, already started on its own connection.
    Copy(CopyOut),
    /// One event rebuilt from the run (a heartbeat, a test event).
    Event(Event),
}

/// What [`write_objects`] writes: the run's objects from `first_seq` on, cut at `limit`.
pub(super) struct Objects<'a> {
    pub run: &'a Run,
    pub source: Source,
    pub limit: Option<u64>,
    /// Objects an earlier attempt delivered, kept as they are.
    pub earlier: Vec<RunObject>,
    /// Counts the events read, when someone watches.
    pub progress: Option<ProgressBar>,
}

/// Writes the run's objects: the window's events in `(txid, id)` order (by day first when the
/// run is cut by day), cut into objects at the run's `max_object_bytes` (and where the day
/// changes), or its heartbeat. Objects an earlier attempt delivered are kept,
/// and the window is read on after the last of them. Each object is recorded in the run log as
/// soon as it is complete. When `shutdown` fires first, the unfinished upload is aborted
/// (nothing appears at its key).
pub async fn deliver(
    store: &Store,
    sink: &dyn Sink,
    run: &Run,
    part_size: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<Delivered> {
    let earlier = store.run_objects(run.id).await?;
    let source = match (run.heartbeat_event_id, earlier.last()) {
        // A heartbeat's object, or one recorded before positions were: the run is complete.
        (Some(_), Some(_)) | (None, Some(RunObject { last: None, .. })) => {
            return Ok(Delivered {
                outcome: PutOutcome::AlreadyExists,
                objects: earlier,
            });
        }
        (Some(id), None) => Source::Event(heartbeat(run, id)),
        (None, last) => Source::Copy(
            store
                .copy_window(
                    run.window_lo,
                    run.window_hi,
                    run.tenant_id.as_deref(),
                    run.id_floor,
                    run.default_day(),
                    last.and_then(|o| {
                        o.last.map(|(txid, id)| After {
                            day: o.partition_day,
                            txid,
                            id,
                        })
                    }),
                )
                .await?,
        ),
    };
    let objects = Objects {
        run,
        source,
        limit: run.max_object_bytes.map(|max| max.max(1) as u64),
        earlier,
        progress: None,
    };
    write_objects(store, sink, objects, part_size, shutdown).await
}

/// Writes `objects` through the three stages.
pub(super) async fn write_objects(
    store: &Store,
    sink: &dyn Sink,
    objects: Objects<'_>,
    part_size: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<Delivered> {
    let Objects {
        run,
        source,
        limit,
        earlier: mut objects,
        progress,
    } = objects;
    let first_seq = objects.len() as u32 + 1;
    let (batches_tx, mut batches_rx) = mpsc::channel::<Batch>(QUEUE);
    let (pieces_tx, mut pieces_rx) = mpsc::channel::<Piece>(PARTS_QUEUE);
    // Batch buffers go back to the reader once encoded, so a window is read into a few
    // buffers, whatever its size.
    let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUE + 2);

    let format = run.format;
    let default_day = run.default_day();
    let (destination, run_id) = (run.destination.clone(), run.id);
    let encoder = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut cutter = Cutter::new(format, part_size, limit, first_seq, default_day);
        let mut emit = |piece| {
            pieces_tx
                .blocking_send(piece)
                .map_err(|_| anyhow!("the upload stopped"))
        };
        cutter.begin_first(&mut emit)?;
        while let Some(batch) = batches_rx.blocking_recv() {
            let mut at = 0;
            for mark in &batch.marks {
                let end = at + mark.len as usize;
                cutter.push(&batch.framed[at..end], mark, &mut emit)?;
                at = end;
            }
            if batch.done {
                return cutter.finish(&mut emit);
            }
            let _ = spare_tx.try_send(batch);
        }
        // The reader stopped before the end: the open object must never be completed.
        Err(ReaderStopped.into())
    });

    // A task of its own, so the socket's readiness wakes it on the worker that polls the
    // socket rather than on another thread: a wake-up for every few rows otherwise.
    let read = tokio::spawn(async move {
        let mut batches = Batcher {
            format,
            batch: Batcher::empty(&spare_rx),
            spare: spare_rx,
            queue: batches_tx,
        };
        match source {
            Source::Event(event) => batches.push(&event.as_ref(), None),
            Source::Copy(mut copy) => {
                let mut rows = std::pin::pin!(copy.rows().await?);
                let mut decoder = CopyDecoder::default();
                while let Some(message) = rows.next().await {
                    if let Some(event) = decoder.decode(&message?)? {
                        batches.push(&event, Some(decoder.position()));
                        if let Some(progress) = &progress {
                            progress.inc(1);
                        }
                        if batches.full() {
                            batches.send(false).await?;
                        }
                    }
                }
                decoder.finish()?;
                decoder.log_irregular(&destination, run_id);
            }
        }
        batches.send(true).await
    });
    let _stop_reading = AbortOnDrop(read.abort_handle());
    let read = async move {
        read.await
            .map_err(|e| anyhow!("the reader panicked: {e}"))?
    };
    // It owns the pieces queue: when it stops, early or not, the queue closes and the encoder
    // and reader stop too.
    let upload = async move {
        let mut upload = Upload {
            store,
            sink,
            run,
            writer: None,
            written: 0,
            found: 0,
        };
        let pumped = tokio::select! {
            pumped = upload.pump(&mut pieces_rx, &mut objects) => pumped,
            () = shutdown.cancelled() => Err(Stopped.into()),
        };
        drop(pieces_rx);
        if let Some(writer) = upload.writer.take() {
            writer.abort().await;
        }
        pumped.map(|()| (upload.written, upload.found, objects))
    };
    let (read, upload) = tokio::join!(read, upload);
    let encoded = encoder
        .await
        .map_err(|e| anyhow!("the encoder panicked: {e}"));
    // The first failure is the cause; the others follow from it.
    let (written, found, objects) = upload?;
    match (encoded?, read) {
        (Ok(()), Ok(())) => {}
        (Err(e), Err(cause)) if e.is::<ReaderStopped>() => return Err(cause),
        (Err(e), _) | (Ok(()), Err(e)) => return Err(e),
    }
    Ok(Delivered {
        outcome: if written == 0 && (found > 0 || first_seq > 1) {
            PutOutcome::AlreadyExists
        } else {
            PutOutcome::Written
        },
        objects,
    })
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
    format: Format,
    batch: Batch,
    spare: std::sync::mpsc::Receiver<Batch>,
    queue: mpsc::Sender<Batch>,
}

impl Batcher {
    fn empty(spare: &std::sync::mpsc::Receiver<Batch>) -> Batch {
        let mut batch = spare.try_recv().unwrap_or_else(|_| Batch {
            framed: Vec::with_capacity(BATCH_BYTES + (BATCH_BYTES >> 2)),
            marks: Vec::new(),
            done: false,
        });
        batch.framed.clear();
        batch.marks.clear();
        batch
    }

    fn push(&mut self, event: &EventRef<'_>, position: Option<(i64, i64)>) {
        let start = self.batch.framed.len();
        frame(self.format, event, &mut self.batch.framed);
        self.batch.marks.push(Mark {
            len: (self.batch.framed.len() - start) as u32,
            occurred_at: event.occurred_at,
            position,
        });
    }

    fn full(&self) -> bool {
        self.batch.framed.len() >= BATCH_BYTES
    }

    /// Queues the batch; `done` marks the last, after which the encoder completes the object.
    async fn send(&mut self, done: bool) -> anyhow::Result<()> {
        if self.batch.marks.is_empty() && !done {
            return Ok(());
        }
        let mut batch = std::mem::replace(&mut self.batch, Self::empty(&self.spare));
        batch.done = done;
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
