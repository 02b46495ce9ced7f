//! The rows of a window as PostgreSQL's binary COPY sends them, decoded in place into events
//! that borrow from the message: no row object, no allocation per row.
//!
//! The columns, in this order: `event_id uuid, occurred_at timestamptz, recorded_at timestamptz,
//! tenant_id text, action text, actor jsonb, target jsonb, metadata jsonb`.

use anyhow::{Context, bail, ensure};
use std::borrow::Cow;

use uuid::Uuid;

use crate::domain::{EventRef, Timestamp};

/// The columns `decode` expects, as a select list.
pub const COLUMNS: &str =
    "txid, id, event_id, occurred_at, recorded_at, tenant_id, action, actor, target, metadata";

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const FIELDS: i16 = 10;
/// The version byte that starts a `jsonb` value in binary form.
const JSONB_VERSION: u8 = 1;

/// Decodes the CopyData messages of one binary COPY, in order. PostgreSQL sends every row in a
/// message of its own, the header in front of the first.
#[derive(Debug, Default)]
pub struct CopyDecoder {
    header_seen: bool,
    trailer_seen: bool,
    irregular: Irregular,
    /// The `(txid, id)` of the last event decoded.
    position: (i64, i64),
}

/// Events with a value that is not written as promised (a time outside RFC 3339's years), each
/// delivered in the fallback form README documents.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Irregular {
    pub count: u64,
    /// The first few of them, to find them in the table.
    pub event_ids: Vec<Uuid>,
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
        let mut mended = false;
        // The standard check first: it is much faster on valid text than the lossy one.
        let mut text = |bytes: &'a [u8]| -> Cow<'a, str> {
            match std::str::from_utf8(bytes) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => {
                    mended = true;
                    String::from_utf8_lossy(bytes)
                }
            }
        };
        // xid8 is sent as an unsigned 64-bit integer; the exporter's transaction ids, like
        // PostgreSQL's in practice, stay below 2^63.
        let txid = i64::from_be_bytes(
            input
                .field()?
                .context("txid is null")?
                .try_into()
                .context("txid is not 8 bytes")?,
        );
        let id = i64::from_be_bytes(
            input
                .field()?
                .context("id is null")?
                .try_into()
                .context("id is not 8 bytes")?,
        );
        self.position = (txid, id);
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
            tenant_id: input.field()?.map(&mut text),
            action: text(input.field()?.context("action is null")?),
            actor: text(jsonb(input.field()?.context("actor is null")?)?),
            target: input.field()?.map(jsonb).transpose()?.map(&mut text),
            metadata: text(jsonb(input.field()?.context("metadata is null")?)?),
        };
        ensure!(input.0.is_empty(), "trailing bytes in a COPY row");
        if mended || !(event.occurred_at.is_rfc3339() && event.recorded_at.is_rfc3339()) {
            self.irregular.count += 1;
            if self.irregular.event_ids.len() < 10 {
                self.irregular.event_ids.push(event.event_id);
            }
        }
        Ok(Some(event))
    }

    /// The `(txid, id)` of the last event decoded: where a reader resumes after it.
    pub fn position(&self) -> (i64, i64) {
        self.position
    }

    /// The events so far that carry a value in its fallback form.
    pub fn irregular(&self) -> &Irregular {
        &self.irregular
    }

    /// Logs the events that carry a value in its fallback form, if any: they are delivered,
    /// never dropped, and someone should look at them.
    pub fn log_irregular(&self, destination: &str, run_id: Uuid) {
        let Irregular { count, event_ids } = &self.irregular;
        if *count > 0 {
            let ids: Vec<String> = event_ids.iter().map(Uuid::to_string).collect();
            tracing::warn!(
                destination,
                %run_id,
                events = count,
                event_ids = %ids.join(","),
                "Events with a time outside RFC 3339's years (0001 to 9999, or infinity) or text that is not UTF-8 were delivered in their fallback form."
            );
        }
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

/// Every value of a `timestamptz` has a form, the infinities and the years past RFC 3339's
/// included: a row is never refused for its time.
fn timestamp(bytes: &[u8]) -> anyhow::Result<Timestamp> {
    let micros = i64::from_be_bytes(bytes.try_into().context("timestamptz is not 8 bytes")?);
    Ok(match micros {
        i64::MAX => Timestamp::Infinity,
        i64::MIN => Timestamp::MinusInfinity,
        micros => Timestamp::Micros(micros),
    })
}

/// The JSON text of a binary `jsonb`, as bytes: the decoder mends what is not UTF-8.
fn jsonb(bytes: &[u8]) -> anyhow::Result<&[u8]> {
    match bytes.split_first() {
        Some((&JSONB_VERSION, json)) => Ok(json),
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
        field(out, Some(&5i64.to_be_bytes()));
        field(out, Some(&9i64.to_be_bytes()));
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
        assert_eq!(event.occurred_at, Timestamp::Micros(0));
        assert_eq!(event.recorded_at, Timestamp::Micros(1_000_001));
        assert_eq!(event.tenant_id, None);
        assert_eq!(event.action, "user.login");
        assert_eq!(event.actor, r#"{"id": "u1"}"#);
        assert_eq!(event.target, None);
        assert_eq!(event.metadata, "{}");
        assert_eq!(decoder.position(), (5, 9));
        let event = decoder.decode(&second).unwrap().unwrap();
        assert_eq!(event.target.as_deref(), Some(r#"{"id": "p1"}"#));
        assert!(decoder.finish().is_err(), "no trailer yet");
        assert_eq!(decoder.irregular().count, 0);
        assert!(decoder.decode(&trailer).unwrap().is_none());
        decoder.finish().unwrap();
        assert!(
            decoder.decode(&second).is_err(),
            "nothing after the trailer"
        );
    }

    #[test]
    fn a_time_of_any_value_is_decoded_and_counted_when_irregular() {
        let mut decoder = CopyDecoder::default();
        let mut first = header();
        row_at(&mut first, i64::MAX, 1);
        let event = decoder.decode(&first).unwrap().unwrap();
        assert_eq!(event.occurred_at, Timestamp::Infinity);
        let mut second = Vec::new();
        row_at(&mut second, i64::MIN, 2);
        assert_eq!(
            decoder.decode(&second).unwrap().unwrap().occurred_at,
            Timestamp::MinusInfinity
        );
        let mut third = Vec::new();
        row_at(&mut third, 9_223_371_331_199_999_999, 3);
        decoder.decode(&third).unwrap().unwrap();
        let mut regular = Vec::new();
        row_at(&mut regular, 0, 4);
        decoder.decode(&regular).unwrap().unwrap();
        assert_eq!(
            decoder.irregular(),
            &Irregular {
                count: 3,
                event_ids: (1..=3).map(|n| Uuid::from_bytes([n; 16])).collect()
            }
        );
    }

    fn row_at(out: &mut Vec<u8>, occurred_at: i64, id: u8) {
        out.extend_from_slice(&FIELDS.to_be_bytes());
        field(out, Some(&5i64.to_be_bytes()));
        field(out, Some(&i64::from(id).to_be_bytes()));
        field(out, Some(&[id; 16]));
        field(out, Some(&occurred_at.to_be_bytes()));
        field(out, Some(&0i64.to_be_bytes()));
        field(out, None);
        field(out, Some(b"a"));
        field(out, Some(b"\x01{}"));
        field(out, None);
        field(out, Some(b"\x01{}"));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let mut decoder = CopyDecoder::default();
        assert!(decoder.decode(b"PGCOPY\n\xff\r\n\x01").is_err());

        let mut cut = header();
        row(&mut cut, None);
        cut.truncate(cut.len() - 3);
        assert!(CopyDecoder::default().decode(&cut).is_err());
    }

    #[test]
    fn text_that_is_not_utf8_is_mended_and_counted() {
        let mut not_utf8 = header();
        not_utf8.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut not_utf8, Some(&5i64.to_be_bytes()));
        field(&mut not_utf8, Some(&9i64.to_be_bytes()));
        field(&mut not_utf8, Some(&[7; 16]));
        field(&mut not_utf8, Some(&0i64.to_be_bytes()));
        field(&mut not_utf8, Some(&0i64.to_be_bytes()));
        field(&mut not_utf8, Some(b"t\xff"));
        field(&mut not_utf8, Some(b"a"));
        field(&mut not_utf8, Some(b"\x01{\"n\": \"\xfe\"}"));
        field(&mut not_utf8, None);
        field(&mut not_utf8, Some(b"\x01{}"));
        let mut decoder = CopyDecoder::default();
        let event = decoder.decode(&not_utf8).unwrap().unwrap();
        assert_eq!(event.tenant_id.as_deref(), Some("t\u{fffd}"));
        assert_eq!(event.actor, "{\"n\": \"\u{fffd}\"}");
        assert_eq!(decoder.irregular().count, 1);
    }
}
