//! The Parquet encoding: events as the rows of typed columns, written with the `parquet`
//! crate's column writers (no Arrow), behind the same seam as JSON: the reader frames each
//! event as a row of cells (`layouts`), and the encoder thread turns the rows into the file's
//! bytes.
//!
//! Memory stays flat whatever the window: a row group is closed once its rows hold
//! `ROW_GROUP_BYTES`, and its pages go into the object's part as they are written, up to a
//! part (`output`: the rest waits for the next part, so a part buffer never needs room for a
//! row group on top of a part). The bytes depend
//! only on the rows: row groups close at fixed points of the row sequence, the compression
//! level is fixed, and `created_by` names no version, so a retry writes the same file.

use std::sync::Arc;

use bytes::Bytes;

use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use crate::domain::{Compression, Timestamp};

mod layouts;
mod output;
pub use layouts::{NATIVE, OCSF, frame_native, frame_ocsf};
use output::Output;

/// A row group is closed once its rows hold this many bytes, before compression.
pub const ROW_GROUP_BYTES: usize = 2 << 20;
/// What a column chunk adds to the footer at most: its metadata, statistics truncated to
/// `STATISTICS_BYTES`, and its entries of the column and offset indexes.
const FOOTER_PER_CHUNK: u64 = 1024;
/// The longest min or max value kept in statistics.
const STATISTICS_BYTES: usize = 64;
/// Values handed to a column writer at a time.
const WRITE_BATCH: usize = 4096;
/// Row groups a file holds at most: each one's metadata stays in memory until the footer is
/// written, so a file of highly compressed rows (hundreds of groups under `max_object_bytes`)
/// would grow the encoder's memory with the object. 256 MiB of rows a file (four groups in unit
/// tests, so they can reach it).
#[cfg(not(test))]
pub const MAX_ROW_GROUPS: usize = 128;
#[cfg(test)]
pub const MAX_ROW_GROUPS: usize = 4;

/// A column's physical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int32,
    Int64,
}

/// A leaf column: its type, its maximum definition level (how many optional or repeated
/// fields lead to it, itself included), and whether a repeated field (a list, here of at most
/// one element) leads to it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub kind: Kind,
    pub max_def: i16,
    pub repeated: bool,
}

/// A file's schema and its leaf columns, in the schema's order.
pub struct Layout {
    pub schema: &'static str,
    pub columns: &'static [Column],
    /// The columns (dotted paths) with few distinct values, dictionary-encoded. The others
    /// (ids, JSON) are not: a dictionary would hold their pages in memory until the column
    /// chunk ends, for nothing.
    pub dictionary: &'static [&'static str],
}

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

/// Writes one row's cells, one a leaf column in the layout's order: each its definition level
/// (a byte), then, when the value is there (the level is the column's maximum), the value: an
/// integer as 8 bytes little endian, text as its length (u32, little endian) and its bytes.
pub struct Cells<'a>(pub &'a mut Vec<u8>);

impl Cells<'_> {
    pub fn int(&mut self, def: u8, value: Option<i64>) {
        self.0.push(def);
        if let Some(value) = value {
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }

    pub fn text(&mut self, def: u8, value: Option<&[u8]>) {
        self.0.push(def);
        if let Some(value) = value {
            self.0
                .extend_from_slice(&(value.len() as u32).to_le_bytes());
            self.0.extend_from_slice(value);
        }
    }

    /// Text written by `write` (compact JSON, say).
    pub fn text_with(&mut self, def: u8, write: impl FnOnce(&mut Vec<u8>)) {
        self.0.push(def);
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        write(self.0);
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// One leaf column of a row group.
#[derive(Default)]
struct Values {
    defs: Vec<i16>,
    ints: Vec<i64>,
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Values {
    fn clear(&mut self) {
        self.defs.clear();
        self.ints.clear();
        self.data.clear();
        self.ends.clear();
    }
}

/// The rows of the row group being filled.
struct RowGroup {
    rows: usize,
    bytes: usize,
    columns: Vec<Values>,
}

/// Reads framed cells.
struct Framed<'a>(&'a [u8]);

impl<'a> Framed<'a> {
    fn take(&mut self, n: usize) -> std::io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(std::io::Error::other("a framed row is cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn i64(&mut self) -> std::io::Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// A Parquet file being written; its bytes come out a row group at a time, into parts.
pub struct ParquetFile {
    layout: &'static Layout,
    writer: SerializedFileWriter<Output>,
    /// Where the writer's bytes go.
    written: Output,
    group: RowGroup,
}

impl ParquetFile {
    /// A file whose bytes go out in parts of `part_size` bytes (the last may be larger).
    pub fn new(
        layout: &'static Layout,
        compression: Compression,
        part_size: usize,
    ) -> parquet::errors::Result<Self> {
        let codec = match compression {
            Compression::None => Codec::UNCOMPRESSED,
            Compression::Gzip => Codec::GZIP(GzipLevel::try_new(1)?),
            Compression::Zstd => Codec::ZSTD(ZstdLevel::try_new(1)?),
        };
        let mut properties = WriterProperties::builder()
            .set_created_by("audit-exporter".to_owned())
            .set_compression(codec)
            .set_dictionary_enabled(false)
            // Statistics per column chunk, none per page: a page index would be kept in memory
            // for every row group until the footer, and 2 MiB row groups are fine-grained enough
            // for readers to skip by.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .set_statistics_truncate_length(Some(STATISTICS_BYTES));
        for path in layout.dictionary {
            let path = ColumnPath::new(path.split('.').map(str::to_owned).collect());
            properties = properties.set_column_dictionary_enabled(path, true);
        }
        let properties = properties.build();
        let schema = Arc::new(parse_message_type(layout.schema)?);
        let written = Output::new(part_size);
        Ok(Self {
            layout,
            writer: SerializedFileWriter::new(written.clone(), schema, Arc::new(properties))?,
            written,
            group: RowGroup {
                rows: 0,
                bytes: 0,
                columns: layout.columns.iter().map(|_| Values::default()).collect(),
            },
        })
    }

    /// Adds the rows `framed` holds, as [`Cells`] wrote them; appends to the part `out` the
    /// bytes of each row group this closes, as long as it holds less than a part (the rest
    /// waits for the next part).
    pub fn write(&mut self, framed: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let written = self.written.clone();
        written.lend(out, || self.add_rows(framed))
    }

    fn add_rows(&mut self, framed: &[u8]) -> std::io::Result<()> {
        let mut cells = Framed(framed);
        while !cells.0.is_empty() {
            let start = cells.0.len();
            for (column, values) in self.layout.columns.iter().zip(&mut self.group.columns) {
                let def = i16::from(cells.take(1)?[0]);
                values.defs.push(def);
                if def != column.max_def {
                    continue;
                }
                match column.kind {
                    Kind::Text => {
                        let len = cells.u32()? as usize;
                        values.data.extend_from_slice(cells.take(len)?);
                        values.ends.push(values.data.len());
                    }
                    Kind::Int32 | Kind::Int64 => values.ints.push(cells.i64()?),
                }
            }
            self.group.rows += 1;
            self.group.bytes += start - cells.0.len();
            if self.group.bytes >= ROW_GROUP_BYTES {
                self.close_group()?;
            }
        }
        Ok(())
    }

    /// At least what the file would still add if it were finished now: the open row group
    /// (its rows, with room for page headers and levels, as if nothing compressed) and the
    /// footer (a generous size per column chunk, its statistics truncated), and the bytes that
    /// wait for the next part.
    pub fn size_bound(&self) -> u64 {
        let rows = self.group.bytes as u64;
        let groups = self.writer.flushed_row_groups().len() as u64 + 1;
        let columns = self.layout.columns.len() as u64;
        // Page headers and levels of the open row group; nothing once it is closed.
        let open = if rows == 0 { 0 } else { rows + rows / 8 + 4096 };
        let spilled = self.written.spilled() as u64;
        spilled + open + 4096 + groups * columns * FOOTER_PER_CHUNK
    }

    /// Whether the file holds [`MAX_ROW_GROUPS`] row groups: it takes no more rows.
    pub fn full(&self) -> bool {
        self.writer.flushed_row_groups().len() >= MAX_ROW_GROUPS
    }

    /// Closes the open row group, if it has rows, and appends its bytes to the part `out` as
    /// [`write`](Self::write) does.
    pub fn close_row_group(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let written = self.written.clone();
        written.lend(out, || self.close_group())
    }

    fn close_group(&mut self) -> std::io::Result<()> {
        if self.group.rows > 0 {
            write_group(&mut self.writer, self.layout, &mut self.group)
                .map_err(std::io::Error::other)?;
            self.group.rows = 0;
            self.group.bytes = 0;
            self.group.columns.iter_mut().for_each(Values::clear);
        }
        self.writer.flush()
    }

    /// Closes the last row group and writes the footer; appends to `out` every byte not yet
    /// out, whatever the part's size.
    pub fn finish(mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let written = self.written.clone();
        written.lend(out, move || {
            self.close_group()?;
            self.writer.into_inner().map_err(std::io::Error::other)
        })?;
        written.drain_into(out);
        Ok(())
    }
}

/// Writes the row group's columns in the schema's order. The pages go out as they are written
/// (through the writer's buffer of 8 KiB).
fn write_group(
    writer: &mut SerializedFileWriter<Output>,
    layout: &Layout,
    group: &mut RowGroup,
) -> parquet::errors::Result<()> {
    let mut row_group = writer.next_row_group()?;
    let mut leaves = layout.columns.iter().zip(&mut group.columns);
    while let Some(mut leaf) = row_group.next_column()? {
        let Some((column, values)) = leaves.next() else {
            return Err(parquet::errors::ParquetError::General(
                "the schema has more columns than its layout".into(),
            ));
        };
        let reps = vec![0; if column.repeated { WRITE_BATCH } else { 0 }];
        let mut value = 0;
        let mut start = 0;
        let mut texts = Vec::new();
        let mut ints32 = Vec::new();
        // The values share the column's text rather than each copying its own.
        let data = Bytes::from(std::mem::take(&mut values.data));
        for defs in values.defs.chunks(WRITE_BATCH) {
            let present = defs.iter().filter(|d| **d == column.max_def).count();
            let defs_arg = (column.max_def > 0).then_some(defs);
            let reps_arg = column.repeated.then(|| &reps[..defs.len()]);
            let range = value..value + present;
            value += present;
            match column.kind {
                Kind::Text => {
                    texts.clear();
                    for end in &values.ends[range] {
                        texts.push(ByteArray::from(data.slice(start..*end)));
                        start = *end;
                    }
                    leaf.typed::<ByteArrayType>()
                        .write_batch(&texts, defs_arg, reps_arg)?;
                }
                Kind::Int64 => {
                    leaf.typed::<Int64Type>().write_batch(
                        &values.ints[range],
                        defs_arg,
                        reps_arg,
                    )?;
                }
                Kind::Int32 => {
                    ints32.clear();
                    ints32.extend(values.ints[range].iter().map(|v| *v as i32));
                    leaf.typed::<Int32Type>()
                        .write_batch(&ints32, defs_arg, reps_arg)?;
                }
            }
        }
        leaf.close()?;
        texts.clear();
        values.data = reclaim(data);
    }
    row_group.close()?;
    Ok(())
}

/// The column's text buffer back for the next row group, once the column writer let go of
/// every value (statistics keep copies); a new one otherwise.
fn reclaim(data: Bytes) -> Vec<u8> {
    data.try_into_mut().map(Vec::from).unwrap_or_default()
}

#[cfg(test)]
mod tests;
