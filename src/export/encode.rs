//! Turns events into the bytes of an object: JSON framing, then compression, cut into parts.
//!
//! The reader writes each event where it is read (`frame`: JSON in the object's schema, or a
//! Parquet row); the `ObjectEncoder` frames the events (a JSON array's separators) or builds
//! the Parquet file, compresses, hashes the result and cuts it into parts, on a thread of its
//! own.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::parquet::{self, ParquetFile};
use crate::domain::{Compression, Encoding, EventRef, Format, Schema, ocsf};

/// Appends `event` as [`ObjectEncoder::write_event`] takes it: in the format's schema, as JSON
/// with a newline for ndjson, as JSON for json (the encoder writes the array's separators), or
/// as a row of the Parquet layout.
pub fn frame(format: Format, event: &EventRef<'_>, out: &mut Vec<u8>) {
    match (format.encoding, format.schema) {
        (Encoding::Parquet, Schema::Native) => parquet::frame_native(event, out),
        (Encoding::Parquet, Schema::Ocsf) => parquet::frame_ocsf(event, out),
        (_, Schema::Native) => event.write_json(out),
        (_, Schema::Ocsf) => ocsf::write_record(event, out),
    }
    if format.encoding == Encoding::Ndjson {
        out.push(b'\n');
    }
}

/// Writes events into compressed parts of at least `part_size` bytes (the last may be
/// smaller), and keeps the object's length and SHA-256.
pub struct ObjectEncoder {
    encoding: Encoding,
    part_size: usize,
    out: Compressor,
    /// For Parquet: the file, whose bytes (compressed inside) go out uncompressed.
    parquet: Option<Box<ParquetFile>>,
    /// Of each part buffer.
    capacity: usize,
    pool: PartPool,
    /// Input waiting to make up a whole chunk for the compressor.
    pending: Vec<u8>,
    events: u64,
    bytes: u64,
    /// Input the compressor took since it last emitted everything (none without compression).
    unflushed: u64,
    sha256: Sha256,
}

/// What an encoder produced, once finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub events: u64,
    pub bytes: u64,
    pub sha256: String,
}

enum Compressor {
    None(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// A part buffer's capacity: a part and what may come on top before it is taken (the rest of an
/// event, a compressed chunk), so the buffer never grows (growing copies it into one twice its
/// size). A Parquet file's bytes stop at a part, what follows waits in the file.
fn buffer_capacity(part_size: usize) -> usize {
    part_size + (part_size >> 3)
}

impl Compressor {
    /// The output buffer, for bytes that are not to be compressed (a Parquet file's, which
    /// are compressed inside): a Parquet object has no compressor of its own.
    fn plain(&mut self) -> std::io::Result<&mut Vec<u8>> {
        match self {
            Self::None(buffer) => Ok(buffer),
            _ => Err(std::io::Error::other(
                "a Parquet object is compressed inside",
            )),
        }
    }
}

/// The compression levels: fast, as the data volume calls for, and fixed so the same window
/// always yields the same bytes.
const GZIP_LEVEL: u32 = 1;
const ZSTD_LEVEL: i32 = 1;
/// The compressor's input comes in pieces of this size, whatever the batches.
const CHUNK: usize = 128 << 10;
/// What finishing an object may still add to what was emitted: the JSON array's end, gzip's
/// last block and trailer, zstd's last block.
const FINISH_MARGIN: u64 = 32;

impl ObjectEncoder {
    pub fn new(format: Format, part_size: usize) -> std::io::Result<Self> {
        Self::with_pool(format, part_size, PartPool::default())
    }

    /// An encoder whose part buffers come from, and go back to, `pool`: the objects of a run
    /// share one, so an object's first part reuses a buffer of the one before.
    pub fn with_pool(format: Format, part_size: usize, pool: PartPool) -> std::io::Result<Self> {
        let buffer = pool.take(buffer_capacity(part_size));
        let parquet = match format.encoding {
            Encoding::Parquet => {
                let layout = match format.schema {
                    Schema::Native => &parquet::NATIVE,
                    Schema::Ocsf => &parquet::OCSF,
                };
                let file = ParquetFile::new(layout, format.compression, part_size);
                Some(Box::new(file.map_err(std::io::Error::other)?))
            }
            _ => None,
        };
        let out = match format.compression {
            _ if parquet.is_some() => Compressor::None(buffer),
            Compression::None => Compressor::None(buffer),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                buffer,
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Compression::Zstd => {
                Compressor::Zstd(zstd::stream::write::Encoder::new(buffer, ZSTD_LEVEL)?)
            }
        };
        let mut encoder = Self {
            encoding: format.encoding,
            part_size,
            out,
            parquet,
            capacity: buffer_capacity(part_size),
            pool,
            pending: Vec::new(),
            events: 0,
            bytes: 0,
            unflushed: 0,
            sha256: Sha256::new(),
        };
        if encoder.encoding == Encoding::Json {
            encoder.write_raw(b"[")?;
        }
        Ok(encoder)
    }

    /// Adds one event, as [`frame`] wrote it: the encoder writes a JSON array's separators
    /// itself, so an object may start at any event.
    pub fn write_event(&mut self, event: &[u8]) -> std::io::Result<()> {
        if self.parquet.is_some() {
            self.refill();
            if let Some(file) = self.parquet.as_mut() {
                file.write(event, self.out.plain()?)?;
            }
            self.events += 1;
            return Ok(());
        }
        if self.encoding == Encoding::Json {
            self.write_raw(if self.events == 0 { b"\n" } else { b",\n" })?;
        }
        self.write_raw(event)?;
        self.events += 1;
        Ok(())
    }

    /// A part, once the output holds `part_size` bytes.
    pub fn take_full_part(&mut self) -> Option<Bytes> {
        self.take_part(self.part_size)
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Ends the object; returns the last part (possibly empty) and the totals.
    pub fn finish(mut self) -> std::io::Result<(Bytes, Encoded)> {
        if self.encoding == Encoding::Json {
            self.write_raw(b"\n]\n")?;
        }
        if let Some(file) = self.parquet.take() {
            self.refill();
            file.finish(self.out.plain()?)?;
        }
        self.flush_pending()?;
        self.refill();
        let rest = match self.out {
            Compressor::None(buffer) => buffer,
            Compressor::Gzip(encoder) => encoder.finish()?,
            Compressor::Zstd(encoder) => encoder.finish()?,
        };
        self.sha256.update(&rest);
        self.bytes += rest.len() as u64;
        let encoded = Encoded {
            events: self.events,
            bytes: self.bytes,
            sha256: hex::encode(self.sha256.finalize()),
        };
        Ok((Bytes::from(rest), encoded))
    }

    /// Feeds `bytes` to the compressor in chunks of exactly `CHUNK` bytes: a deflate
    /// compressor's output depends on how its input is split, and the split must depend on the
    /// object's bytes alone, never on how events were batched.
    fn write_raw(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        self.refill();
        if let Compressor::None(buffer) = &mut self.out {
            buffer.extend_from_slice(bytes);
            return Ok(());
        }
        while !bytes.is_empty() {
            if self.pending.is_empty() && bytes.len() >= CHUNK {
                let (chunk, rest) = bytes.split_at(CHUNK);
                self.compress(chunk)?;
                bytes = rest;
                continue;
            }
            let take = bytes.len().min(CHUNK - self.pending.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == CHUNK {
                self.flush_pending()?;
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.compress(&pending)?;
        self.pending = pending;
        self.pending.clear();
        Ok(())
    }

    fn compress(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match &mut self.out {
            Compressor::None(buffer) => buffer.extend_from_slice(chunk),
            Compressor::Gzip(encoder) => encoder.write_all(chunk)?,
            Compressor::Zstd(encoder) => encoder.write_all(chunk)?,
        }
        if !matches!(self.out, Compressor::None(_)) {
            self.unflushed += chunk.len() as u64;
        }
        Ok(())
    }

    /// Whether the object takes no more events whatever its size (a Parquet file at its
    /// largest number of row groups).
    pub fn full(&self) -> bool {
        self.parquet.as_ref().is_some_and(|file| file.full())
    }

    /// At least the size the object would have if it were finished now: exact without
    /// compression; with it, what was emitted plus every byte the compressor still holds, as
    /// if it did not compress them. Cheap, for every event.
    pub fn size_bound(&self) -> u64 {
        let emitted = match &self.out {
            Compressor::None(buffer) => buffer.len(),
            Compressor::Gzip(encoder) => encoder.get_ref().len(),
            Compressor::Zstd(encoder) => encoder.get_ref().len(),
        };
        let held = self.pending.len() as u64 + self.unflushed;
        // Stored blocks may grow incompressible input a little; that is in the margin.
        let bound = self.bytes + emitted as u64 + held + held / 64 + FINISH_MARGIN;
        match &self.parquet {
            Some(file) => bound + file.size_bound(),
            None => bound,
        }
    }

    /// The size the object would have if it were finished now, give or take the few bytes
    /// that end it: the compressor is made to emit all it holds (a sync flush, which costs a
    /// few bytes and depends only on the object's bytes, so a retry writes the same bytes).
    ///
    /// For Parquet, the open row group is closed (at a point the rows alone decide), and the
    /// size counts the footer as `size_bound` does, generously: an object closes somewhat
    /// below the limit rather than after a run of tiny row groups.
    pub fn flushed_size(&mut self) -> std::io::Result<u64> {
        if self.parquet.is_some() {
            self.refill();
            if let Some(file) = self.parquet.as_mut() {
                file.close_row_group(self.out.plain()?)?;
            }
        }
        if !matches!(self.out, Compressor::None(_)) {
            self.refill();
            self.flush_pending()?;
            match &mut self.out {
                Compressor::None(_) => {}
                Compressor::Gzip(encoder) => encoder.flush()?,
                Compressor::Zstd(encoder) => encoder.flush()?,
            }
            self.unflushed = 0;
        }
        Ok(self.size_bound())
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        match &mut self.out {
            Compressor::None(buffer) => buffer,
            Compressor::Gzip(encoder) => encoder.get_mut(),
            Compressor::Zstd(encoder) => encoder.get_mut(),
        }
    }

    /// Takes the compressed output so far as a part, once it holds at least `min` bytes. The
    /// compressors only ever append to their buffer, so taking it mid-stream is safe. The
    /// buffer is left empty, without capacity, until the next write: by then the part has gone
    /// to the upload, and one of the parts uploaded before may have come back to be reused.
    fn take_part(&mut self, min: usize) -> Option<Bytes> {
        if self.buffer().len() < min {
            return None;
        }
        let part = std::mem::take(self.buffer());
        self.sha256.update(&part);
        self.bytes += part.len() as u64;
        Some(self.pool.share(part))
    }

    /// Gives the compressor a buffer again after `take_part`.
    fn refill(&mut self) {
        if self.buffer().capacity() == 0 {
            let fresh = self.pool.take(self.capacity);
            *self.buffer() = fresh;
        }
    }
}

/// Part buffers come back here when the upload drops their last `Bytes`, so an export keeps
/// reusing the few buffers it has in flight, however many parts it writes: no page is zeroed
/// twice, and no freed buffer lingers in the allocator beside a new one (which made a long
/// export's peak creep up by a part). One pool serves every object of a run.
#[derive(Debug, Clone, Default)]
pub struct PartPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// More than the parts alive at once (README: `uploads_in_flight` + 2).
const POOLED: usize = 8;

impl PartPool {
    fn take(&self, capacity: usize) -> Vec<u8> {
        let pooled = self.0.lock().ok().and_then(|mut pool| pool.pop());
        let mut buffer = pooled.unwrap_or_else(|| Vec::with_capacity(capacity));
        buffer.clear();
        buffer
    }

    /// The part as `Bytes` that give its buffer back here once the last of them is dropped.
    fn share(&self, part: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer: part,
            pool: self.clone(),
        })
    }
}

struct Pooled {
    buffer: Vec<u8>,
    pool: PartPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        if let Ok(mut pool) = self.pool.0.lock()
            && pool.len() < POOLED
        {
            pool.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests;
