use std::io::Read;

use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::domain::Event;

fn event(i: u32) -> Event {
    Event {
        event_id: Uuid::from_u128(u128::from(i)),
        occurred_at: Utc::now(),
        recorded_at: Utc::now(),
        tenant_id: None,
        action: "user.login".into(),
        actor: format!(r#"{{"id":"u{i}","type":"user"}}"#),
        target: None,
        // Hashes, so that compression leaves enough bytes to fill several parts.
        metadata: format!(
            r#"{{"padding":"{}"}}"#,
            hex::encode(Sha256::digest(i.to_le_bytes()))
        ),
    }
}

fn encode(format: Format, part_size: usize, events: &[Event]) -> (Vec<Bytes>, Encoded) {
    encode_batched(format, part_size, events, 1)
}

/// Writes `events` as the pipeline's encoder thread does, taking parts every `per_batch` events
/// (where a batch of the reader would end).
fn encode_batched(
    format: Format,
    part_size: usize,
    events: &[Event],
    per_batch: usize,
) -> (Vec<Bytes>, Encoded) {
    let mut encoder = ObjectEncoder::new(format, part_size).unwrap();
    let mut parts = Vec::new();
    for chunk in events.chunks(per_batch) {
        for event in chunk {
            encoder.write_event(&framed(format, event)).unwrap();
        }
        parts.extend(encoder.take_full_part());
    }
    assert_eq!(encoder.events(), events.len() as u64);
    let (last, totals) = encoder.finish().unwrap();
    parts.push(last);
    (parts, totals)
}

/// An event as the reader frames it: its JSON, and a newline for ndjson.
fn framed(format: Format, event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    frame(format, &event.as_ref(), &mut out);
    out
}

fn decompress(compression: Compression, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(bytes),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Zstd => out = zstd::decode_all(bytes).unwrap(),
    }
    out
}

#[test]
fn part_size_never_changes_the_bytes() {
    let events: Vec<Event> = (0..2000).map(event).collect();
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        for (encoding, schema) in [
            (Encoding::Ndjson, Schema::Native),
            (Encoding::Json, Schema::Native),
            (Encoding::Ndjson, Schema::Ocsf),
            (Encoding::Parquet, Schema::Native),
            (Encoding::Parquet, Schema::Ocsf),
        ] {
            let format = Format {
                encoding,
                compression,
                schema,
            };
            let (big, big_totals) = encode_batched(format, 64 << 20, &events, 500);
            let (small, small_totals) = encode(format, 1024, &events);
            assert_eq!(big.concat(), small.concat(), "{format:?}");
            assert_eq!(big_totals, small_totals);
            // A Parquet file this small is one row group, out when the file is finished.
            assert!(
                small.len() > 2 || encoding == Encoding::Parquet,
                "{format:?} was cut into {} parts",
                small.len()
            );
            assert!(small[..small.len() - 1].iter().all(|p| p.len() >= 1024));
            let sha = hex::encode(Sha256::digest(big.concat()));
            assert_eq!(big_totals.sha256, sha);
            assert_eq!(big_totals.bytes, big.concat().len() as u64);
            assert_eq!(big_totals.events, 2000);
        }
    }
}

#[test]
fn parquet_parts_are_a_part_each_whatever_the_row_groups() {
    // About 6 MB of rows: three row groups, cut into parts smaller than one.
    let events: Vec<Event> = (0..24_000).map(event).collect();
    for schema in [Schema::Native, Schema::Ocsf] {
        let format = Format {
            encoding: Encoding::Parquet,
            compression: Compression::None,
            schema,
        };
        let part_size = 300 << 10;
        let (parts, totals) = encode_batched(format, part_size, &events, 700);
        assert!(parts.len() >= 10, "{format:?}: {} parts", parts.len());
        for part in &parts[..parts.len() - 1] {
            assert_eq!(part.len(), part_size, "{format:?}");
        }
        let (whole, _) = encode_batched(format, 64 << 20, &events, 700);
        assert!(parts.concat() == whole.concat(), "{format:?}: other bytes");
        assert_eq!(totals.bytes, whole.concat().len() as u64);
    }
}

#[test]
fn ndjson_is_one_event_a_line_and_json_one_array() {
    let events: Vec<Event> = (0..3).map(event).collect();
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (parts, _) = encode(
            Format {
                encoding: Encoding::Ndjson,
                compression,
                ..Format::default()
            },
            1 << 20,
            &events,
        );
        let text = String::from_utf8(decompress(compression, &parts.concat())).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(text.ends_with('\n'));

        let (parts, _) = encode(
            Format {
                encoding: Encoding::Json,
                compression,
                ..Format::default()
            },
            1 << 20,
            &events,
        );
        let array: Vec<serde_json::Value> =
            serde_json::from_slice(&decompress(compression, &parts.concat())).unwrap();
        assert_eq!(array.len(), 3);
        assert_eq!(array[2]["actor"]["id"], "u2");
    }
}

#[test]
fn an_empty_json_object_is_an_empty_array() {
    let (parts, totals) = encode(
        Format {
            encoding: Encoding::Json,
            compression: Compression::None,
            ..Format::default()
        },
        1024,
        &[],
    );
    assert_eq!(parts.concat(), b"[\n]\n".to_vec());
    assert_eq!(totals.events, 0);
}

#[test]
fn the_size_is_known_within_one_event_whatever_the_compression() {
    let events: Vec<Event> = (0..3000).map(event).collect();
    let limit = 64 << 10;
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        for encoding in [Encoding::Ndjson, Encoding::Json] {
            let format = Format {
                encoding,
                compression,
                ..Format::default()
            };
            // As a re-export cuts objects: write event by event, check the cheap bound,
            // flush when it passes the limit, and close once the flushed size does.
            let mut encoder = ObjectEncoder::new(format, 5 << 20).unwrap();
            let mut largest_event = 0;
            let mut before = 0;
            let mut closed_at = None;
            for (n, e) in events.iter().enumerate() {
                let framed = framed(format, e);
                largest_event = largest_event.max(framed.len() as u64 + 2);
                encoder.write_event(&framed).unwrap();
                assert!(encoder.size_bound() >= before, "{format:?}");
                if encoder.size_bound() >= limit && encoder.flushed_size().unwrap() >= limit {
                    closed_at = Some(n);
                    break;
                }
                before = encoder.size_bound();
            }
            assert!(closed_at.is_some(), "{format:?} never reached the limit");
            let (_, totals) = encoder.finish().unwrap();
            assert!(
                totals.bytes >= limit - largest_event - FINISH_MARGIN
                    && totals.bytes <= limit + largest_event + FINISH_MARGIN,
                "{format:?}: {} bytes for a limit of {limit}",
                totals.bytes
            );
        }
    }
}
