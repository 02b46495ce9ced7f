//! The Parquet encoding: events as the rows of typed columns, written with the `parquet`
//! crate's column writers (no Arrow), behind the same seam as JSON: the reader frames each
//! event as a row (`frame_row`), and the encoder thread turns the rows into the file's bytes.
//!
//! Memory stays flat whatever the window: a row group is closed once its rows hold
//! `ROW_GROUP_BYTES`, and its bytes leave the writer as soon as it is closed. The bytes depend
//! only on the rows: row groups close at fixed points of the row sequence, the compression
//! level is fixed, and `created_by` names no version, so a retry writes the same file.

use std::sync::Arc;

use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::domain::{Compression, EventRef, Timestamp, json};

/// The columns. Timestamps are microseconds from the Unix epoch in UTC; `actor`, `target`
/// and `metadata` are JSON text. `event_id` is a string, as Athena reads no UUID column.
pub const SCHEMA: &str = "message audit_event {
    required binary event_id (STRING);
    required int64 occurred_at (TIMESTAMP(MICROS,true));
    required int64 recorded_at (TIMESTAMP(MICROS,true));
    optional binary tenant_id (STRING);
    required binary action (STRING);
    required binary actor (JSON);
    optional binary target (JSON);
    required binary metadata (JSON);
}";

/// A row group is closed once its rows hold this many bytes, before compression.
pub const ROW_GROUP_BYTES: usize = 4 << 20;
/// The columns of `SCHEMA`.
const COLUMNS: u64 = 8;
/// What a column chunk adds to the footer at most: its metadata, statistics truncated to
/// `STATISTICS_BYTES`, and its entries of the column and offset indexes.
const FOOTER_PER_CHUNK: u64 = 1024;
/// The longest min or max value kept in statistics.
const STATISTICS_BYTES: usize = 64;
/// Values handed to a column writer at a time.
const WRITE_BATCH: usize = 4096;
/// The length that stands for null in a framed row.
const NULL: u32 = u32::MAX;

/// Microseconds from the Unix epoch; PostgreSQL's infinities (and times past i64's
/// microseconds) are held at i64's ends.
pub fn unix_micros(at: Timestamp) -> i64 {
    match at {
        Timestamp::Micros(m) => m
            .checked_add(Timestamp::POSTGRES_EPOCH_MICROS)
            .unwrap_or(if m < 0 { i64::MIN } else { i64::MAX }),
        Timestamp::Infinity => i64::MAX,
        Timestamp::MinusInfinity => i64::MIN,
    }
}

/// Appends `event` as one framed row: the event id's text, the two timestamps (i64, little
/// endian), then the text columns, each its length (u32, little endian; `u32::MAX` for null)
/// and its bytes, JSON made compact.
pub fn frame_row(event: &EventRef<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        event
            .event_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(&unix_micros(event.occurred_at).to_le_bytes());
    out.extend_from_slice(&unix_micros(event.recorded_at).to_le_bytes());
    field(out, event.tenant_id.as_deref(), |t, out| {
        out.extend_from_slice(t.as_bytes())
    });
    field(out, Some(&event.action), |a, out| {
        out.extend_from_slice(a.as_bytes())
    });
    field(out, Some(&event.actor), json::write_compact);
    field(out, event.target.as_deref(), json::write_compact);
    field(out, Some(&event.metadata), json::write_compact);
}

fn field(out: &mut Vec<u8>, value: Option<&str>, write: impl FnOnce(&str, &mut Vec<u8>)) {
    let Some(value) = value else {
        return out.extend_from_slice(&NULL.to_le_bytes());
    };
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(value, out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// One text column of a row group: the values end to end, where each ends, and which are null.
#[derive(Default)]
struct Texts {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// Definition levels (1 set, 0 null), for an optional column.
    defs: Vec<i16>,
}

impl Texts {
    fn push(&mut self, value: Option<&[u8]>) {
        self.defs.push(i16::from(value.is_some()));
        if let Some(value) = value {
            self.data.extend_from_slice(value);
            self.ends.push(self.data.len());
        }
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.defs.clear();
    }
}

/// The rows of the row group being filled.
#[derive(Default)]
struct RowGroup {
    rows: usize,
    bytes: usize,
    times: [Vec<i64>; 2],
    /// event_id, tenant_id, action, actor, target, metadata.
    texts: [Texts; 6],
}

/// Reads framed rows.
struct Rows<'a>(&'a [u8]);

impl<'a> Rows<'a> {
    fn take(&mut self, n: usize) -> std::io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(std::io::Error::other("a framed row is cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i64(&mut self) -> std::io::Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn text(&mut self) -> std::io::Result<Option<&'a [u8]>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default());
        if len == NULL {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }
}

/// A Parquet file being written; its bytes come out a row group at a time.
pub struct ParquetFile {
    writer: SerializedFileWriter<Vec<u8>>,
    group: RowGroup,
}

impl ParquetFile {
    pub fn new(compression: Compression) -> parquet::errors::Result<Self> {
        let codec = match compression {
            Compression::None => Codec::UNCOMPRESSED,
            Compression::Gzip => Codec::GZIP(GzipLevel::try_new(1)?),
            Compression::Zstd => Codec::ZSTD(ZstdLevel::try_new(1)?),
        };
        let properties = WriterProperties::builder()
            .set_created_by("audit-exporter".to_owned())
            .set_compression(codec)
            .set_statistics_truncate_length(Some(STATISTICS_BYTES))
            .set_column_index_truncate_length(Some(STATISTICS_BYTES))
            .build();
        let schema = Arc::new(parse_message_type(SCHEMA)?);
        Ok(Self {
            writer: SerializedFileWriter::new(Vec::new(), schema, Arc::new(properties))?,
            group: RowGroup::default(),
        })
    }

    /// Adds the rows `framed` holds, as [`frame_row`] wrote them; appends to `out` the bytes
    /// of each row group this closes.
    pub fn write(&mut self, framed: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut rows = Rows(framed);
        while !rows.0.is_empty() {
            let start = rows.0.len();
            let group = &mut self.group;
            group.texts[0].push(Some(rows.take(36)?));
            group.times[0].push(rows.i64()?);
            group.times[1].push(rows.i64()?);
            for column in &mut group.texts[1..] {
                column.push(rows.text()?);
            }
            group.rows += 1;
            group.bytes += start - rows.0.len();
            if group.bytes >= ROW_GROUP_BYTES {
                self.close_row_group(out)?;
            }
        }
        Ok(())
    }

    /// At least what the file would still add if it were finished now: the open row group
    /// (its rows, with room for page headers and levels, as if nothing compressed) and the
    /// footer (a generous size per column chunk, its statistics truncated).
    pub fn size_bound(&self) -> u64 {
        let rows = self.group.bytes as u64;
        let groups = self.writer.flushed_row_groups().len() as u64 + 1;
        rows + rows / 8 + 4096 + groups * COLUMNS * FOOTER_PER_CHUNK
    }

    /// Closes the open row group, if it has rows, and appends its bytes to `out`.
    pub fn close_row_group(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        if self.group.rows > 0 {
            write_group(&mut self.writer, &self.group).map_err(std::io::Error::other)?;
            self.group.rows = 0;
            self.group.bytes = 0;
            self.group.times.iter_mut().for_each(Vec::clear);
            self.group.texts.iter_mut().for_each(Texts::clear);
        }
        self.writer.flush()?;
        let written = self.writer.inner_mut();
        out.extend_from_slice(written);
        written.clear();
        Ok(())
    }

    /// Closes the last row group and writes the footer into `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.close_row_group(out)?;
        let rest = self.writer.into_inner().map_err(std::io::Error::other)?;
        out.extend_from_slice(&rest);
        Ok(())
    }
}

/// Writes the row group's columns in the schema's order.
fn write_group(
    writer: &mut SerializedFileWriter<Vec<u8>>,
    group: &RowGroup,
) -> parquet::errors::Result<()> {
    let mut row_group = writer.next_row_group()?;
    let mut index = 0;
    while let Some(mut column) = row_group.next_column()? {
        match index {
            1 | 2 => {
                let values = &group.times[index - 1];
                column
                    .typed::<Int64Type>()
                    .write_batch(values, None, None)?;
            }
            _ => {
                let (texts, optional) = match index {
                    0 => (&group.texts[0], false),
                    n => (&group.texts[n - 2], n == 3 || n == 6),
                };
                write_texts(column.typed::<ByteArrayType>(), texts, optional)?;
            }
        }
        column.close()?;
        index += 1;
    }
    row_group.close()?;
    Ok(())
}

fn write_texts(
    writer: &mut parquet::column::writer::ColumnWriterImpl<'_, ByteArrayType>,
    texts: &Texts,
    optional: bool,
) -> parquet::errors::Result<()> {
    let mut start = 0;
    let mut value = 0;
    let mut values = Vec::with_capacity(WRITE_BATCH);
    for defs in texts.defs.chunks(WRITE_BATCH) {
        values.clear();
        for _ in defs.iter().filter(|d| **d == 1) {
            let end = texts.ends[value];
            values.push(ByteArray::from(&texts.data[start..end]));
            start = end;
            value += 1;
        }
        writer.write_batch(&values, optional.then_some(defs), None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
