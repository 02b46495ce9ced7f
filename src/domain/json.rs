//! The JSON pieces of an exported event, written straight into a reused buffer: strings,
//! timestamps, and stored JSON made compact. Each is pure and byte-deterministic.

use super::Timestamp;

/// Appends `value` as a JSON string.
pub fn write_string(value: &str, out: &mut Vec<u8>) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// Appends `at` as RFC 3339 in UTC with microseconds, `2026-11-21T09:05:01.021377Z`. A year
/// outside 0000..=9999 is written signed, as ISO 8601's expanded form and chrono do
/// (`+12345-06-07T…Z`, `-0001-…`), and PostgreSQL's infinities as `infinity` and `-infinity`.
pub fn write_timestamp(at: Timestamp, out: &mut Vec<u8>) {
    let micros = match at {
        Timestamp::Micros(micros) => micros,
        Timestamp::Infinity => return out.extend_from_slice(b"infinity"),
        Timestamp::MinusInfinity => return out.extend_from_slice(b"-infinity"),
    };
    let secs = micros.div_euclid(1_000_000);
    let micros = micros.rem_euclid(1_000_000) as u32;
    // Days from 1970-01-01 to 2000-01-01.
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400) + 10_957);
    let second_of_day = secs.rem_euclid(86_400) as u32;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], second_of_day / 3600);
    put_digits(&mut text[14..16], second_of_day / 60 % 60);
    put_digits(&mut text[17..19], second_of_day % 60);
    put_digits(&mut text[20..26], micros);
    if (0..=9999).contains(&year) {
        put_digits(&mut text[0..4], year as u32);
        out.extend_from_slice(&text);
    } else {
        use std::io::Write;
        let sign = if year < 0 { '-' } else { '+' };
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{sign}{:04}", year.unsigned_abs());
        out.extend_from_slice(&text[4..]);
    }
}

/// Writes `value` in decimal, zero-padded to the width of `into`.
fn put_digits(into: &mut [u8], mut value: u32) {
    for digit in into.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends the JSON text `json` without the whitespace between its tokens: PostgreSQL renders
/// `jsonb` as `{"id": "u1", "ip": "…"}`, exported as `{"id":"u1","ip":"…"}`. Strings, their
/// escapes and every other byte are copied unchanged, so valid JSON stays valid.
pub fn write_compact(json: &str, out: &mut Vec<u8>) {
    let bytes = json.as_bytes();
    out.reserve(bytes.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i + 1),
            b' ' | b'\n' | b'\r' | b'\t' => {
                out.extend_from_slice(&bytes[copied..i]);
                i += 1;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// The index just past the closing quote of the string whose contents start at `from`.
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    loop {
        match memchr::memchr2(b'"', b'\\', &bytes[from..]) {
            None => return bytes.len(),
            Some(at) if bytes[from + at] == b'\\' => from += at + 2,
            Some(at) => return from + at + 1,
        }
        if from >= bytes.len() {
            return bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    fn compact(json: &str) -> String {
        let mut out = Vec::new();
        write_compact(json, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn compact_drops_whitespace_between_tokens_only() {
        assert_eq!(
            compact(
                r#"{"id": "u 1", "ip": "203.0.113.7", "n": [1, 2.5, -3e2, true, false, null]}"#
            ),
            r#"{"id":"u 1","ip":"203.0.113.7","n":[1,2.5,-3e2,true,false,null]}"#
        );
        assert_eq!(compact("{}"), "{}");
        assert_eq!(compact(" {\n\t\"a\" :\r\n {} } "), r#"{"a":{}}"#);
    }

    #[test]
    fn compact_keeps_strings_escapes_and_unicode_byte_for_byte() {
        let cases = [
            r#"{"q": "say \"hi\", then: {go}"}"#,
            r#"{"b": "a \\ b", "c": "ends with backslash \\"}"#,
            r#"{"k \" y": 1, "nl": "line\nbreak\ttab \u0000"}"#,
            r#"{"e": "", "u": "ünïcödé ✓ 日本語 😀"}"#,
            r#"{"nested": {"deeper": {"list": [{"a": "b c"}, [], {}]}}}"#,
        ];
        for case in cases {
            let out = compact(case);
            let (ours, theirs): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(&out).unwrap(),
                serde_json::from_str(case).unwrap(),
            );
            assert_eq!(ours, theirs, "{case}");
            assert_eq!(
                out,
                serde_json::to_string(&theirs).unwrap(),
                "compact as serde_json writes it: {case}"
            );
        }
    }

    #[test]
    fn compact_of_compact_is_unchanged() {
        let json = r#"{"a":"x y","b":[1,{"c":null}]}"#;
        assert_eq!(compact(json), json);
    }

    #[test]
    fn timestamps_match_chrono_everywhere() {
        let reference = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let mut samples = vec![
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2000, 2, 29, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 1).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(0, 3, 1, 12, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 12, 31, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1900, 3, 1, 0, 0, 0).unwrap(),
        ];
        // A spread of instants over four centuries, with microseconds.
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let micros =
                x.rem_euclid(400 * 366 * 86_400 * 1_000_000) - 200 * 366 * 86_400 * 1_000_000;
            samples.push(DateTime::from_timestamp_micros(micros).unwrap());
        }
        for at in samples {
            let mut out = Vec::new();
            write_timestamp(at.into(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), reference(at));
        }
    }

    #[test]
    fn what_chrono_cannot_hold_has_a_form_too() {
        let text = |at: Timestamp| {
            let mut out = Vec::new();
            write_timestamp(at, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(Timestamp::Infinity), "infinity");
        assert_eq!(text(Timestamp::MinusInfinity), "-infinity");
        // PostgreSQL's last instant, past chrono's range.
        let last = 9_223_371_331_199_999_999;
        assert_eq!(
            text(Timestamp::Micros(last)),
            "+294276-12-31T23:59:59.999999Z"
        );
        // and its first: 4714-11-24 BC, the year -4713.
        assert_eq!(
            text(Timestamp::Micros(-211_813_488_000_000_000)),
            "-4713-11-24T00:00:00.000000Z"
        );
        assert!(!Timestamp::Micros(last).is_rfc3339());
        assert!(!Timestamp::Infinity.is_rfc3339());
        let y10k = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
        assert!(!Timestamp::from(y10k).is_rfc3339());
        let y9999 = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
        assert!(Timestamp::from(y9999).is_rfc3339());
        let y1 = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap();
        assert!(Timestamp::from(y1).is_rfc3339());
        assert!(!Timestamp::from(y1 - chrono::Duration::microseconds(1)).is_rfc3339());
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_string("a \"b\" \\ \n ü \u{1}", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a \"b\" \\ \n ü \u0001""#
        );
    }
}
