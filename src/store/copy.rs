//! The rows of a window as PostgreSQL's binary COPY sends them, decoded in place into events
//! that borrow from the message: no row object, no allocation per row.
//!
//! The columns, in this order: `event_id uuid, occurred_at timestamptz, recorded_at timestamptz,
//! tenant_id text, action text, actor jsonb, target jsonb, metadata jsonb`.

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::EventRef;

/// The columns `decode` expects, as a select list.
pub const COLUMNS: &str =
    "event_id, occurred_at, recorded_at, tenant_id, action, actor, target, metadata";

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const FIELDS: i16 = 8;
/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// The version byte that starts a `jsonb` value in binary form.
const JSONB_VERSION: u8 = 1;

/// Decodes the CopyData messages of one binary COPY, in order. PostgreSQL sends every row in a
/// message of its own, the header in front of the first.
#[derive(Debug, Default)]
pub struct CopyDecoder {
    header_seen: bool,
    trailer_seen: bool,
}

impl CopyDecoder {
    /// The event in `message`, or `None` for the trailer that ends the data.
    pub fn decode<'a>(&mut self, message: &'a [u8]) -> anyhow::Result<Option<EventRef<'a>>> {
        let mut input = Input(message);
        if !self.header_seen {
            ensure!(
                input.take(SIGNATURE.len())? == SIGNATURE,
                "not a binary COPY stream"
            );
            let flags = input.i32()?;
            ensure!(flags & !0xffff == 0, "unknown binary COPY flags {flags:#x}");
            let extension = input.i32()?;
            input.take(usize::try_from(extension).context("bad COPY header extension")?)?;
            self.header_seen = true;
        }
        ensure!(!self.trailer_seen, "data after the end of the COPY");
        match input.i16()? {
            -1 => {
                self.trailer_seen = true;
                return Ok(None);
            }
            FIELDS => {}
            n => bail!("expected {FIELDS} columns in a COPY row, got {n}"),
        }
        let event = EventRef {
            event_id: Uuid::from_bytes(
                input
                    .field()?
                    .context("event_id is null")?
                    .try_into()
                    .context("event_id is not 16 bytes")?,
            ),
            occurred_at: timestamp(input.field()?.context("occurred_at is null")?)?,
            recorded_at: timestamp(input.field()?.context("recorded_at is null")?)?,
            tenant_id: input.field()?.map(text).transpose()?,
            action: text(input.field()?.context("action is null")?)?,
            actor: jsonb(input.field()?.context("actor is null")?)?,
            target: input.field()?.map(jsonb).transpose()?,
            metadata: jsonb(input.field()?.context("metadata is null")?)?,
        };
        ensure!(input.0.is_empty(), "trailing bytes in a COPY row");
        Ok(Some(event))
    }

    /// Checks that the data ended with its trailer, not cut short.
    pub fn finish(&self) -> anyhow::Result<()> {
        ensure!(self.trailer_seen, "the COPY data ended without its trailer");
        Ok(())
    }
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        ensure!(self.0.len() >= n, "a COPY row is cut short");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> anyhow::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }

    /// A field's bytes, or `None` for NULL.
    fn field(&mut self) -> anyhow::Result<Option<&'a [u8]>> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).context("bad COPY field length")?;
        self.take(len).map(Some)
    }
}

fn timestamp(bytes: &[u8]) -> anyhow::Result<DateTime<Utc>> {
    let micros = i64::from_be_bytes(bytes.try_into().context("timestamptz is not 8 bytes")?);
    micros
        .checked_add(POSTGRES_EPOCH_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .with_context(|| format!("timestamp out of range ({micros} µs from 2000-01-01)"))
}

fn text(bytes: &[u8]) -> anyhow::Result<&str> {
    std::str::from_utf8(bytes).context("text is not UTF-8")
}

fn jsonb(bytes: &[u8]) -> anyhow::Result<&str> {
    match bytes.split_first() {
        Some((&JSONB_VERSION, json)) => text(json),
        _ => bail!("unknown jsonb binary format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    fn header() -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out
    }

    fn row(out: &mut Vec<u8>, target: Option<&[u8]>) {
        out.extend_from_slice(&FIELDS.to_be_bytes());
        field(out, Some(&[7; 16]));
        field(out, Some(&0i64.to_be_bytes()));
        field(out, Some(&1_000_001i64.to_be_bytes()));
        field(out, None);
        field(out, Some(b"user.login"));
        field(out, Some(b"\x01{\"id\": \"u1\"}"));
        field(out, target);
        field(out, Some(b"\x01{}"));
    }

    #[test]
    fn decodes_the_header_rows_and_trailer() {
        let mut first = header();
        row(&mut first, None);
        let mut second = Vec::new();
        row(&mut second, Some(b"\x01{\"id\": \"p1\"}"));
        let trailer = (-1i16).to_be_bytes();

        let mut decoder = CopyDecoder::default();
        let event = decoder.decode(&first).unwrap().unwrap();
        assert_eq!(event.event_id, Uuid::from_bytes([7; 16]));
        assert_eq!(event.occurred_at.to_rfc3339(), "2000-01-01T00:00:00+00:00");
        assert_eq!(event.recorded_at.timestamp_subsec_micros(), 1);
        assert_eq!(event.recorded_at.timestamp(), 946_684_801);
        assert_eq!(event.tenant_id, None);
        assert_eq!(event.action, "user.login");
        assert_eq!(event.actor, r#"{"id": "u1"}"#);
        assert_eq!(event.target, None);
        assert_eq!(event.metadata, "{}");
        let event = decoder.decode(&second).unwrap().unwrap();
        assert_eq!(event.target, Some(r#"{"id": "p1"}"#));
        assert!(decoder.finish().is_err(), "no trailer yet");
        assert!(decoder.decode(&trailer).unwrap().is_none());
        decoder.finish().unwrap();
        assert!(
            decoder.decode(&second).is_err(),
            "nothing after the trailer"
        );
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let mut decoder = CopyDecoder::default();
        assert!(decoder.decode(b"PGCOPY\n\xff\r\n\x01").is_err());

        let mut cut = header();
        row(&mut cut, None);
        cut.truncate(cut.len() - 3);
        assert!(CopyDecoder::default().decode(&cut).is_err());

        let mut infinity = header();
        infinity.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut infinity, Some(&[7; 16]));
        field(&mut infinity, Some(&i64::MAX.to_be_bytes()));
        let error = CopyDecoder::default().decode(&infinity).unwrap_err();
        assert!(error.to_string().contains("out of range"), "{error}");

        let mut not_utf8 = header();
        not_utf8.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut not_utf8, Some(&[7; 16]));
        field(&mut not_utf8, Some(&0i64.to_be_bytes()));
        field(&mut not_utf8, Some(&0i64.to_be_bytes()));
        field(&mut not_utf8, Some(b"\xff"));
        assert!(CopyDecoder::default().decode(&not_utf8).is_err());
    }
}
