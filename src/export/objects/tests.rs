use super::*;
use crate::domain::{Compression, Encoding};

fn format(encoding: Encoding, compression: Compression) -> Format {
    Format {
        encoding,
        compression,
        ..Format::default()
    }
}

fn event(n: u64) -> Vec<u8> {
    // Varied text, so compression has work to do and sizes are not all alike.
    let mut line = format!(
        r#"{{"n":{n},"text":"{}"}}"#,
        "x".repeat((n % 97) as usize + 20 * (n % 7) as usize)
    )
    .into_bytes();
    line.push(b'\n');
    line
}

fn mark(event: &[u8], n: u64) -> Mark {
    Mark {
        len: event.len() as u32,
        occurred_at: Timestamp::Micros(n as i64 * 1_000_000),
        position: Some((1, n as i64)),
    }
}

/// The objects of `events` events cut at `limit`, from object `first`, with the events after
/// position `skip`: (seq, bytes of the whole object, events, last position).
fn cut(
    format: Format,
    limit: Option<u64>,
    events: u64,
    first: u32,
    skip: u64,
) -> Vec<(u32, Vec<u8>, Cut)> {
    let mut cutter = Cutter::new(format, 64 << 10, limit, first, None);
    let mut objects: Vec<(u32, Vec<u8>, Option<Cut>)> = Vec::new();
    let mut emit = |piece| {
        match piece {
            Piece::Begin(seq, _) => objects.push((seq, Vec::new(), None)),
            Piece::Part(part) => objects.last_mut().unwrap().1.extend_from_slice(&part),
            Piece::End(cut) => objects.last_mut().unwrap().2 = Some(cut),
        }
        Ok(())
    };
    for n in skip + 1..=events {
        let e = event(n);
        cutter.push(&e, &mark(&e, n), &mut emit).unwrap();
    }
    cutter.finish(&mut emit).unwrap();
    objects
        .into_iter()
        .map(|(seq, bytes, cut)| (seq, bytes, cut.unwrap()))
        .collect()
}

#[test]
fn a_window_is_cut_at_the_first_event_past_the_limit() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let format = format(Encoding::Ndjson, compression);
        let limit = if compression == Compression::None {
            20_000
        } else {
            3_000
        };
        let objects = cut(format, Some(limit), 3_000, 1, 0);
        assert!(
            objects.len() > 2,
            "{compression:?}: {} objects",
            objects.len()
        );
        let mut next = 1;
        for (i, (seq, bytes, cut)) in objects.iter().enumerate() {
            assert_eq!(*seq, i as u32 + 1);
            assert_eq!(cut.encoded.bytes, bytes.len() as u64);
            let last = i + 1 == objects.len();
            // Every object but the last reaches the limit (less the few bytes that may end it),
            // and passes it by at most an event.
            if !last {
                assert!(
                    cut.encoded.bytes + 32 >= limit,
                    "{compression:?} object {seq}: {}",
                    cut.encoded.bytes
                );
                assert!(
                    cut.encoded.bytes < limit + 400,
                    "{compression:?} object {seq}: {}",
                    cut.encoded.bytes
                );
            }
            // In order, none lost, none twice.
            assert_eq!(
                cut.oldest,
                DateTime::from_timestamp(next as i64 + 946_684_800, 0)
            );
            next += cut.encoded.events;
            assert_eq!(cut.last, Some((1, next as i64 - 1)));
        }
        assert_eq!(next, 3_001);
    }
}

#[test]
fn a_resumed_run_cuts_its_remaining_objects_as_the_first_attempt_did() {
    for compression in [Compression::None, Compression::Zstd] {
        let format = format(Encoding::Json, compression);
        let whole = cut(format, Some(4_000), 2_000, 1, 0);
        assert!(whole.len() > 3);
        // Resume after the second object, from its last event.
        let (_, _, second) = &whole[1];
        let (_, skip) = second.last.unwrap();
        let resumed = cut(format, Some(4_000), 2_000, 3, skip as u64);
        assert_eq!(resumed.len(), whole.len() - 2);
        for ((seq, bytes, cut), (seq2, bytes2, cut2)) in whole[2..].iter().zip(&resumed) {
            assert_eq!((seq, bytes, &cut.encoded), (seq2, bytes2, &cut2.encoded));
        }
        // Read after the last object: nothing left, no empty object.
        let (_, _, last) = whole.last().unwrap();
        let after_all = cut(
            format,
            Some(4_000),
            2_000,
            whole.len() as u32 + 1,
            last.last.unwrap().1 as u64,
        );
        assert!(after_all.is_empty());
    }
}

#[test]
fn without_a_limit_a_window_is_one_object_and_an_empty_one_still_gets_one() {
    let format = format(Encoding::Json, Compression::None);
    let one = cut(format, None, 500, 1, 0);
    assert_eq!(one.len(), 1);
    assert!(one[0].1.starts_with(b"[\n{") && one[0].1.ends_with(b"\n]\n"));
    let empty = cut(format, Some(10), 0, 1, 0);
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0].1, b"[\n]\n");
    // Each object of a JSON array encoding is an array of its own.
    for (_, bytes, _) in cut(format, Some(5_000), 300, 1, 0) {
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(parsed.as_array().is_some_and(|a| !a.is_empty()));
    }
}

#[test]
fn the_limit_never_lets_an_object_need_more_parts_than_an_upload_may_have() {
    let part = 8 << 20;
    assert_eq!(split_limit(Some(1 << 20), part), 1 << 20);
    assert!(split_limit(None, part) * 10 / 9 <= part as u64 * MAX_PARTS);
    assert_eq!(split_limit(Some(u64::MAX), part), split_limit(None, part));
}

#[test]
fn a_run_cut_by_day_closes_an_object_where_the_day_changes() {
    const DAY: i64 = 86_400_000_000;
    // Days since 2000-01-01 (PostgreSQL's epoch): 0, 0, 0, 1, 3, 3; the day after the
    // third is cut by size too.
    let days = [0, 0, 0, 1, 3, 3, 3, 3];
    let default = NaiveDate::from_ymd_opt(2000, 1, 9).unwrap();
    let format = format(Encoding::Ndjson, Compression::None);
    let mut cutter = Cutter::new(format, 64 << 10, Some(300), 1, Some(default));
    let mut begun = Vec::new();
    let mut cuts = Vec::new();
    let mut emit = |piece| {
        match piece {
            Piece::Begin(seq, day) => begun.push((seq, day)),
            Piece::Part(_) => {}
            Piece::End(cut) => cuts.push(cut),
        }
        Ok(())
    };
    cutter.begin_first(&mut emit).unwrap();
    for (n, day) in days.iter().enumerate() {
        let e = event(n as u64 + 400);
        let mark = Mark {
            len: e.len() as u32,
            occurred_at: Timestamp::Micros(day * DAY + n as i64),
            position: Some((1, n as i64)),
        };
        cutter.push(&e, &mark, &mut emit).unwrap();
    }
    cutter.finish(&mut emit).unwrap();
    let on = |d: u32| NaiveDate::from_ymd_opt(2000, 1, d);
    let per_object: Vec<(u32, Option<NaiveDate>, u64)> = cuts
        .iter()
        .map(|c| (c.seq, c.day, c.encoded.events))
        .collect();
    assert_eq!(per_object.first(), Some(&(1, on(1), 3)), "{per_object:?}");
    assert_eq!(per_object[1], (2, on(2), 1), "{per_object:?}");
    assert!(per_object[2..].iter().all(|(_, day, _)| *day == on(4)));
    assert!(
        per_object.len() > 3,
        "the last day is cut by size too: {per_object:?}"
    );
    assert_eq!(
        per_object.iter().map(|o| o.2).sum::<u64>(),
        days.len() as u64
    );
    assert_eq!(
        begun,
        cuts.iter().map(|c| (c.seq, c.day)).collect::<Vec<_>>(),
        "nothing begins before the first event's day is known"
    );

    // No event at all: one object, of the default day.
    let cutter = Cutter::new(format, 64 << 10, Some(300), 1, Some(default));
    let mut days = Vec::new();
    cutter
        .finish(&mut |piece| {
            if let Piece::Begin(_, day) = piece {
                days.push(day);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(days, [Some(default)]);
}

#[test]
fn an_objects_span_is_of_the_times_that_have_a_date() {
    let mut cutter = Cutter::new(
        format(Encoding::Ndjson, Compression::None),
        64 << 10,
        None,
        1,
        None,
    );
    let mut cuts = Vec::new();
    let mut emit = |piece| {
        if let Piece::End(cut) = piece {
            cuts.push(cut);
        }
        Ok(())
    };
    // Years 270000 and -270000: PostgreSQL has the first, neither has a date.
    let far = 270_000 * 366 * 86_400 * 1_000_000_i64;
    let times = [
        Timestamp::Infinity,
        Timestamp::Micros(far),
        Timestamp::Micros(5_000_000),
        Timestamp::MinusInfinity,
        Timestamp::Micros(-far),
        Timestamp::Micros(9_000_000),
        Timestamp::Micros(7_000_000),
        Timestamp::Micros(2_000_000),
    ];
    for (n, at) in times.into_iter().enumerate() {
        let e = event(n as u64);
        let mark = Mark {
            occurred_at: at,
            ..mark(&e, n as u64)
        };
        cutter.push(&e, &mark, &mut emit).unwrap();
    }
    cutter.finish(&mut emit).unwrap();
    let [cut] = cuts.as_slice() else {
        panic!("{} objects", cuts.len())
    };
    let at = |s: i64| DateTime::from_timestamp(s + 946_684_800, 0);
    assert_eq!((cut.oldest, cut.newest), (at(2), at(9)));
}
