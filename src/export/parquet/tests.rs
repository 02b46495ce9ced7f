use bytes::Bytes;
use chrono::{TimeZone, Utc};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use uuid::Uuid;

use super::*;
use crate::domain::Event;

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            event_id: Uuid::from_u128(i as u128 + 1),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 1).unwrap()
                + chrono::Duration::microseconds(i as i64 * 1_000_003),
            recorded_at: Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap(),
            tenant_id: (i % 3 != 0).then(|| format!("tenant-{}", i % 7)),
            action: ["user.login", "project.deleted"][i % 2].into(),
            actor: format!(r#"{{"id": "u-{i}", "type": "user"}}"#),
            target: (i % 2 == 0).then(|| format!(r#"{{"id": "p-{i}", "note": "a \"q\" \\ b"}}"#)),
            metadata: format!(r#"{{"n": {i}, "pad": "{}"}}"#, "x".repeat(i % 300)),
        })
        .collect()
}

/// The file of `events`, framed in batches of `per_batch` rows.
fn file(compression: Compression, events: &[Event], per_batch: usize) -> Vec<u8> {
    let mut file = ParquetFile::new(&NATIVE, compression, usize::MAX).unwrap();
    let mut out = Vec::new();
    for chunk in events.chunks(per_batch) {
        let mut framed = Vec::new();
        for e in chunk {
            frame_native(&e.as_ref(), &mut framed);
        }
        file.write(&framed, &mut out).unwrap();
    }
    file.finish(&mut out).unwrap();
    out
}

#[test]
fn rows_read_back_with_their_types() {
    let events = events(50);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let bytes = file(compression, &events, 7);
        let reader = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
        let rows: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 50);
        for (row, e) in rows.iter().zip(&events) {
            let fields: Vec<(&String, &Field)> = row.get_column_iter().collect();
            let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "event_id",
                    "occurred_at",
                    "recorded_at",
                    "tenant_id",
                    "action",
                    "actor",
                    "target",
                    "metadata"
                ]
            );
            assert_eq!(fields[0].1, &Field::Str(e.event_id.to_string()));
            assert_eq!(
                fields[1].1,
                &Field::TimestampMicros(e.occurred_at.timestamp_micros())
            );
            assert_eq!(
                fields[2].1,
                &Field::TimestampMicros(e.recorded_at.timestamp_micros())
            );
            match &e.tenant_id {
                Some(t) => assert_eq!(fields[3].1, &Field::Str(t.clone())),
                None => assert_eq!(fields[3].1, &Field::Null),
            }
            assert_eq!(fields[4].1, &Field::Str(e.action.clone()));
            let json = |text: &str| {
                let mut out = Vec::new();
                crate::domain::json::write_compact(text, &mut out);
                Field::Str(String::from_utf8(out).unwrap())
            };
            assert_eq!(fields[5].1, &json(&e.actor));
            match &e.target {
                Some(t) => assert_eq!(fields[6].1, &json(t)),
                None => assert_eq!(fields[6].1, &Field::Null),
            }
            assert_eq!(fields[7].1, &json(&e.metadata));
        }
        let created_by = reader.metadata().file_metadata().created_by();
        assert_eq!(created_by, Some("audit-exporter"));
        // Ids and JSON are not dictionary-encoded (their pages would wait in memory for the
        // dictionary); actions are.
        let dictionary = |column: usize| {
            let chunk = reader.metadata().row_group(0).column(column);
            chunk.dictionary_page_offset().is_some()
        };
        assert!(!dictionary(0) && !dictionary(5) && !dictionary(7));
        assert!(dictionary(4));
    }
}

#[test]
fn the_bytes_depend_on_the_rows_alone() {
    let events = events(3000);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let one = file(compression, &events, 1);
        assert_eq!(one, file(compression, &events, 1000), "{compression:?}");
        assert_eq!(one, file(compression, &events, 3000), "{compression:?}");
    }
}

#[test]
fn row_groups_are_bounded_and_their_bytes_leave_as_they_close() {
    // About 40 MB of rows: ten row groups or so.
    let many: Vec<Event> = events(300)
        .into_iter()
        .cycle()
        .take(60_000)
        .enumerate()
        .map(|(i, mut e)| {
            e.event_id = Uuid::from_u128(i as u128);
            e.metadata = format!(r#"{{"pad": "{}"}}"#, "y".repeat(600));
            e
        })
        .collect();
    let mut file = ParquetFile::new(&NATIVE, Compression::None, usize::MAX).unwrap();
    let mut out = Vec::new();
    let mut framed = Vec::new();
    let (mut largest_held, mut reclaimed) = (0, 0);
    for e in &many {
        framed.clear();
        frame_native(&e.as_ref(), &mut framed);
        file.write(&framed, &mut out).unwrap();
        largest_held = largest_held.max(file.group.bytes);
        if file.group.rows == 0 {
            // A row group was written: its text buffers came back from the column writers (no
            // value of it is kept), to be filled again.
            let columns = NATIVE.columns.iter().zip(&file.group.columns);
            for (column, values) in columns.filter(|(c, _)| c.kind == Kind::Text) {
                assert!(values.data.capacity() > 0 || column.max_def > 0);
            }
            reclaimed += 1;
        }
    }
    assert!(largest_held < ROW_GROUP_BYTES, "{largest_held}");
    assert!(reclaimed >= 8, "{reclaimed}");
    // The finished file never outgrows the bound.
    let bound = out.len() as u64 + file.size_bound();
    file.finish(&mut out).unwrap();
    assert!(out.len() as u64 <= bound, "{} > {bound}", out.len());
    let reader = SerializedFileReader::new(Bytes::from(out)).unwrap();
    let groups = reader.metadata().row_groups();
    assert!(groups.len() >= 8, "{}", groups.len());
    let rows: i64 = groups.iter().map(|g| g.num_rows()).sum();
    assert_eq!(rows, 60_000);
}

/// `events` written in parts of `part_size` (a part taken once full, as the encoder does), a
/// row group closed early now and then (as a flush does): the parts, and the most bytes that
/// waited for a part.
fn parts_of(events: &[Event], part_size: usize) -> (Vec<Vec<u8>>, usize) {
    let mut file = ParquetFile::new(&NATIVE, Compression::None, part_size).unwrap();
    let (mut parts, mut out) = (Vec::new(), Vec::new());
    let mut largest_spill = 0;
    for (n, chunk) in events.chunks(100).enumerate() {
        let mut framed = Vec::new();
        for e in chunk {
            frame_native(&e.as_ref(), &mut framed);
        }
        file.write(&framed, &mut out).unwrap();
        if n % 7 == 6 {
            file.close_row_group(&mut out).unwrap();
        }
        assert!(out.len() <= part_size, "{}", out.len());
        largest_spill = largest_spill.max(file.written.spilled());
        if out.len() == part_size {
            parts.push(std::mem::take(&mut out));
        }
    }
    file.finish(&mut out).unwrap();
    parts.push(out);
    (parts, largest_spill)
}

#[test]
fn a_part_never_holds_more_than_a_part_and_the_bytes_stay_the_same() {
    // About 6 MB of rows: several row groups, cut into parts smaller than one.
    let events = padded(9000, 500);
    let (whole, _) = parts_of(&events, usize::MAX);
    let (parts, largest_spill) = parts_of(&events, 300 << 10);
    assert!(parts.len() >= 10, "{}", parts.len());
    assert!(largest_spill > 0 && largest_spill < ROW_GROUP_BYTES + (64 << 10));
    assert!(
        parts.concat() == whole.concat(),
        "the parts changed the bytes"
    );
}

#[test]
fn infinities_and_far_times_are_held_at_the_ends() {
    assert_eq!(unix_micros(Timestamp::Infinity), i64::MAX);
    assert_eq!(unix_micros(Timestamp::MinusInfinity), i64::MIN);
    assert_eq!(unix_micros(Timestamp::Micros(i64::MAX)), i64::MAX);
    assert_eq!(unix_micros(Timestamp::Micros(0)), 946_684_800_000_000);
}

#[test]
fn ocsf_rows_hold_the_values_of_the_json_records() {
    let mut events = events(40);
    events[3].actor = r#"{"id": 7, "ip": "nope", "email": "a@b"}"#.into();
    events[4].actor = r#"{"ip": "2001:db8::1", "user_agent": "curl"}"#.into();
    events[5].target = Some(r#"{"name": "only a name"}"#.into());
    let mut file = ParquetFile::new(&OCSF, Compression::Zstd, usize::MAX).unwrap();
    let mut out = Vec::new();
    let mut framed = Vec::new();
    for e in &events {
        frame_ocsf(&e.as_ref(), &mut framed);
    }
    file.write(&framed, &mut out).unwrap();
    file.finish(&mut out).unwrap();
    let reader = SerializedFileReader::new(Bytes::from(out)).unwrap();
    let rows: Vec<_> = reader
        .get_row_iter(None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), events.len());
    for (row, e) in rows.iter().zip(&events) {
        let mut json = Vec::new();
        crate::domain::ocsf::write_record(&e.as_ref(), &mut json);
        let mut want: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let mut got = row_json(row);
        for path in ["/resources/0/data", "/unmapped/actor", "/unmapped/metadata"] {
            if let Some(v) = got.pointer_mut(path)
                && let Some(text) = v.as_str()
            {
                *v = serde_json::from_str(text).unwrap();
            }
        }
        strip_nulls(&mut got);
        // The list is read back as a list of elements.
        if let Some(list) = got.get("resources") {
            assert_eq!(list.as_array().unwrap().len(), 1, "{got}");
        }
        strip_nulls(&mut want);
        assert_eq!(got, want);
    }
}

/// The row as JSON: timestamps as their milliseconds, JSON columns as their text.
fn row_json(row: &parquet::record::Row) -> serde_json::Value {
    fn field(f: &Field) -> serde_json::Value {
        match f {
            Field::Null => serde_json::Value::Null,
            Field::Int(v) => (*v).into(),
            Field::Long(v) | Field::TimestampMillis(v) => (*v).into(),
            Field::Str(s) => s.clone().into(),
            Field::Group(row) => row_json(row),
            Field::ListInternal(list) => list.elements().iter().map(field).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }
    row.get_column_iter()
        .map(|(name, f)| (name.clone(), field(f)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Drops null members (a reader shows an absent optional field as null).
fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `n` events with a padded metadata of about `pad` bytes, each its own id.
fn padded(n: usize, pad: usize) -> Vec<Event> {
    events(300)
        .into_iter()
        .cycle()
        .take(n)
        .enumerate()
        .map(|(i, mut e)| {
            e.event_id = Uuid::from_u128(i as u128);
            e.metadata = format!(r#"{{"pad": "{}"}}"#, "z".repeat(pad + i % 100));
            e
        })
        .collect()
}

/// The native Parquet objects a run of `events` is cut into at `limit`.
fn cut_parquet(events: &[Event], compression: Compression, limit: Option<u64>) -> Vec<Vec<u8>> {
    use crate::domain::{Encoding, Format, Schema};
    use crate::export::objects::{Cutter, Mark, Piece};

    let format = Format {
        encoding: Encoding::Parquet,
        compression,
        schema: Schema::Native,
    };
    let mut cutter = Cutter::new(format, 64 << 10, limit, 1, None);
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let mut emit = |piece| {
        match piece {
            Piece::Begin(..) => objects.push(Vec::new()),
            Piece::Part(part) => objects.last_mut().unwrap().extend_from_slice(&part),
            Piece::End(_) => {}
        }
        anyhow::Ok(())
    };
    for e in events {
        let mut framed = Vec::new();
        frame_native(&e.as_ref(), &mut framed);
        let mark = Mark {
            len: framed.len() as u32,
            occurred_at: e.as_ref().occurred_at,
            position: None,
        };
        cutter.push(&framed, &mark, &mut emit).unwrap();
    }
    cutter.finish(&mut emit).unwrap();
    objects
}

#[test]
fn a_run_cut_into_parquet_objects_gives_whole_files_of_few_row_groups() {
    let limit = 256 << 10;
    let objects = cut_parquet(&padded(5000, 500), Compression::None, Some(limit));
    assert!(objects.len() >= 5, "{}", objects.len());
    let mut rows = 0;
    for (n, object) in objects.iter().enumerate() {
        let size = object.len() as u64;
        assert!(size <= limit + 2048, "object {n}: {size} bytes");
        let reader = SerializedFileReader::new(Bytes::from(object.clone())).unwrap();
        let groups = reader.metadata().row_groups();
        assert!(groups.len() <= 6, "object {n}: {} row groups", groups.len());
        rows += groups.iter().map(|g| g.num_rows()).sum::<i64>();
        if n + 1 < objects.len() {
            assert!(size >= limit - 64 * 1024, "object {n}: {size} bytes");
        }
    }
    assert_eq!(rows, 5000);
}

#[test]
fn a_file_holds_at_most_max_row_groups_and_the_next_object_takes_the_rest() {
    // No size limit: only the row groups cut.
    let events = padded(12_000, 800);
    let objects = cut_parquet(&events, Compression::Zstd, None);
    assert!(objects.len() >= 2, "{} objects", objects.len());
    let mut rows = 0;
    for (n, object) in objects.iter().enumerate() {
        let reader = SerializedFileReader::new(Bytes::from(object.clone())).unwrap();
        let groups = reader.metadata().row_groups();
        assert!(
            groups.len() <= MAX_ROW_GROUPS,
            "object {n}: {} groups",
            groups.len()
        );
        if n + 1 < objects.len() {
            assert_eq!(groups.len(), MAX_ROW_GROUPS, "object {n} is full");
        }
        // Statistics per chunk, no page index.
        for chunk in groups.iter().flat_map(|g| g.columns()) {
            assert!(chunk.statistics().is_some());
            assert_eq!(chunk.column_index_offset(), None);
            assert_eq!(chunk.offset_index_offset(), None);
        }
        rows += groups.iter().map(|g| g.num_rows()).sum::<i64>();
    }
    assert_eq!(rows, events.len() as i64);
}
