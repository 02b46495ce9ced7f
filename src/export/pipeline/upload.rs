//! The upload stage of a delivery: a writer for each object the cutter begins, finished and
//! recorded in the run log when it ends.

use anyhow::anyhow;
use tokio::sync::mpsc;

use super::super::objects::Piece;
use crate::sink::{ObjectWriter, PutOutcome, Sink, check_found};
use crate::store::{Run, RunKind, RunObject, Store};

/// The upload's side: a writer for each object the cutter begins, finished when it ends.
pub(super) struct Upload<'a> {
    pub(super) store: &'a Store,
    pub(super) sink: &'a dyn Sink,
    pub(super) run: &'a Run,
    pub(super) writer: Option<Box<dyn ObjectWriter>>,
    /// Objects written by this attempt, and found already delivered.
    pub(super) written: u32,
    pub(super) found: u32,
}

impl Upload<'_> {
    pub(super) async fn pump(
        &mut self,
        pieces: &mut mpsc::Receiver<Piece>,
        objects: &mut Vec<RunObject>,
    ) -> anyhow::Result<()> {
        loop {
            // A part is taken from the queue only when it can go out at once.
            if let Some(writer) = self.writer.as_mut() {
                writer.ready().await?;
            }
            let Some(piece) = pieces.recv().await else {
                return Ok(());
            };
            match piece {
                Piece::Begin(seq, day) => {
                    let key = self.run.key_of(seq, day);
                    self.writer = Some(self.sink.create(&key, self.run.format).await?);
                }
                Piece::Part(part) => {
                    let writer = self
                        .writer
                        .as_mut()
                        .ok_or_else(|| anyhow!("a part outside an object"))?;
                    if !part.is_empty() {
                        writer.write(part).await?;
                    }
                }
                Piece::End(cut) => {
                    let writer = self
                        .writer
                        .take()
                        .ok_or_else(|| anyhow!("an end outside an object"))?;
                    let key = self.run.key_of(cut.seq, cut.day);
                    match writer.finish().await? {
                        PutOutcome::Written => self.written += 1,
                        PutOutcome::AlreadyExists if self.run.kind == RunKind::Reexport => {
                            anyhow::bail!(
                                "{} already holds an object; a re-export never replaces one",
                                self.sink.location(&key)
                            );
                        }
                        PutOutcome::AlreadyExists => {
                            check_found(self.sink, &key, cut.encoded.bytes, &cut.encoded.sha256)
                                .await?;
                            self.found += 1;
                        }
                    }
                    let object = RunObject {
                        seq: cut.seq as i32,
                        key,
                        bytes: cut.encoded.bytes as i64,
                        sha256: cut.encoded.sha256,
                        events: if self.run.heartbeat_event_id.is_some() {
                            0
                        } else {
                            cut.encoded.events as i64
                        },
                        oldest_at: cut.oldest,
                        newest_at: cut.newest,
                        partition_day: cut.day,
                        last: cut.last,
                    };
                    self.store.record_object(self.run.id, &object).await?;
                    if self.run.kind != RunKind::Scheduled {
                        self.store
                            .note_side_objects(self.run.id, object.seq)
                            .await?;
                    }
                    if self.run.kind == RunKind::Scheduled {
                        tracing::debug!(key = %object.key, seq = object.seq, events = object.events, bytes = object.bytes, "Delivered an object of the run.");
                    } else {
                        tracing::info!(key = %self.sink.location(&object.key), seq = object.seq, events = object.events, bytes = object.bytes, "Delivered an object of the run.");
                    }
                    objects.push(object);
                }
            }
        }
    }
}
