//! The shape of an exported event, the heartbeat included, and its JSON form.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::json;

/// The action of the event an empty window's object carries.
pub const HEARTBEAT_ACTION: &str = "system.export.heartbeat";
/// The action of the event a test delivery (`verify`) carries.
pub const TEST_ACTION: &str = "system.export.test";

/// A timestamp as the database holds it: microseconds from 2000-01-01 (PostgreSQL's epoch; its
/// range passes both i64 microseconds from 1970 and chrono's), or one of PostgreSQL's infinities. Every value has a JSON form (README, "Rows that cannot be written as
/// promised"), so no row can stop an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    Micros(i64),
    Infinity,
    MinusInfinity,
}

impl Timestamp {
    /// Microseconds from the Unix epoch to PostgreSQL's.
    pub const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
    /// Microseconds of 0001-01-01 and of 10000-01-01 from 2000-01-01: RFC 3339's years.
    const RFC3339_RANGE: std::ops::Range<i64> = -63_082_281_600_000_000..252_455_616_000_000_000;

    /// Whether it is written as RFC 3339 promises, with a four-digit year (0001 to 9999).
    pub fn is_rfc3339(self) -> bool {
        matches!(self, Self::Micros(m) if Self::RFC3339_RANGE.contains(&m))
    }

    /// The time, unless it is an infinity or past what a `DateTime` holds.
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        match self {
            Self::Micros(m) => {
                DateTime::from_timestamp_micros(m.checked_add(Self::POSTGRES_EPOCH_MICROS)?)
            }
            _ => None,
        }
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self::Micros(at.timestamp_micros() - Self::POSTGRES_EPOCH_MICROS)
    }
}

/// One audit event as it is exported. The JSON columns hold JSON text (as PostgreSQL renders
/// it, say), written compact on export without being parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub action: String,
    pub actor: String,
    pub target: Option<String>,
    pub metadata: String,
}

impl Event {
    /// The event that stands in an empty window, so a silent bucket always means a broken
    /// exporter. Everything in it derives from the persisted run, so a retry writes it again
    /// byte for byte.
    ///
    /// `window` is in transaction ids; `window_start` is the end of the previous window, when
    /// there was one, and `at` this window's end: the period covered in time, RFC 3339.
    pub fn heartbeat(
        event_id: Uuid,
        at: DateTime<Utc>,
        destination: &str,
        run_id: Uuid,
        window: (&str, &str),
        window_start: Option<DateTime<Utc>>,
        tenant_id: Option<&str>,
    ) -> Self {
        let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let metadata = serde_json::json!({
            "destination": destination,
            "run_id": run_id,
            "window_lo": window.0,
            "window_hi": window.1,
            "window_start": window_start.map(rfc3339),
            "window_end": rfc3339(at),
        });
        Self {
            event_id,
            occurred_at: at,
            recorded_at: at,
            tenant_id: tenant_id.map(str::to_owned),
            action: HEARTBEAT_ACTION.to_owned(),
            actor: r#"{"type":"system","id":"audit-exporter"}"#.to_owned(),
            target: None,
            metadata: metadata.to_string(),
        }
    }

    /// The event, borrowed.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            event_id: self.event_id,
            occurred_at: self.occurred_at.into(),
            recorded_at: self.recorded_at.into(),
            tenant_id: self.tenant_id.as_deref().map(Cow::Borrowed),
            action: Cow::Borrowed(&self.action),
            actor: Cow::Borrowed(&self.actor),
            target: self.target.as_deref().map(Cow::Borrowed),
            metadata: Cow::Borrowed(&self.metadata),
        }
    }

    /// Appends the event as one compact JSON object, without a trailing newline.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.as_ref().write_json(out);
    }
}

/// An event whose text borrows from where it was read (a database row, most often), so a
/// window is exported without an allocation per event. Text is owned only when it had to be
/// mended (bytes that are not UTF-8, replaced by U+FFFD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub event_id: Uuid,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub tenant_id: Option<Cow<'a, str>>,
    pub action: Cow<'a, str>,
    /// JSON text, in any spacing: it is written compact.
    pub actor: Cow<'a, str>,
    pub target: Option<Cow<'a, str>>,
    pub metadata: Cow<'a, str>,
}

impl EventRef<'_> {
    /// Appends the event as one compact JSON object, without a trailing newline. The same event
    /// always yields the same bytes, so a retried run writes its object again byte for byte.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"event_id":""#);
        out.extend_from_slice(
            self.event_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(br#"","occurred_at":""#);
        json::write_timestamp(self.occurred_at, out);
        out.extend_from_slice(br#"","recorded_at":""#);
        json::write_timestamp(self.recorded_at, out);
        out.extend_from_slice(br#"","tenant_id":"#);
        match &self.tenant_id {
            Some(tenant) => json::write_string(tenant, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","action":"#);
        json::write_string(&self.action, out);
        out.extend_from_slice(br#","actor":"#);
        json::write_compact(&self.actor, out);
        out.extend_from_slice(br#","target":"#);
        match &self.target {
            Some(target) => json::write_compact(target, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","metadata":"#);
        json::write_compact(&self.metadata, out);
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Event {
        Event {
            event_id: Uuid::parse_str("0190b9a4-0000-7000-8000-000000000001").unwrap(),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 1).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 2).unwrap(),
            tenant_id: Some("acme \"corp\"".into()),
            action: "user.login".into(),
            actor: r#"{"id": "u1", "type": "user"}"#.into(),
            target: None,
            metadata: "{}".into(),
        }
    }

    #[test]
    fn writes_every_field_in_order_with_utc_micros() {
        let mut out = Vec::new();
        sample().write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"event_id":"0190b9a4-0000-7000-8000-000000000001","occurred_at":"2026-11-21T09:05:01.000000Z","recorded_at":"2026-11-21T09:05:02.000000Z","tenant_id":"acme \"corp\"","action":"user.login","actor":{"id":"u1","type":"user"},"target":null,"metadata":{}}"#
        );
    }

    #[test]
    fn output_is_valid_json_with_escapes() {
        let mut event = sample();
        event.action = "a\\b\nc".into();
        event.tenant_id = None;
        let mut out = Vec::new();
        event.write_json(&mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["action"], "a\\b\nc");
        assert!(parsed["tenant_id"].is_null());
    }

    #[test]
    fn stored_json_is_written_compact_with_its_strings_unchanged() {
        let mut event = sample();
        event.actor =
            r#"{"id": "u 1", "ip": "203.0.113.7", "name": "Zoë \"Z\" \\ O'Neil", "type": "user"}"#
                .into();
        event.target =
            Some(r#"{"id": "p1", "tags": ["a b", {"deep": {"er": [1, 2.5, null]}}]}"#.into());
        event.metadata = r#"{"n": 15, "note": "line\nbreak\t✓ 😀 日本"}"#.into();
        let mut out = Vec::new();
        event.write_json(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            r#""actor":{"id":"u 1","ip":"203.0.113.7","name":"Zoë \"Z\" \\ O'Neil","type":"user"},"target":{"id":"p1","tags":["a b",{"deep":{"er":[1,2.5,null]}}]},"metadata":{"n":15,"note":"line\nbreak\t✓ 😀 日本"}}"#
        ), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["actor"]["name"], "Zoë \"Z\" \\ O'Neil");
        assert_eq!(parsed["metadata"]["note"], "line\nbreak\t✓ 😀 日本");
        let positions: Vec<usize> = [
            "event_id",
            "occurred_at",
            "recorded_at",
            "tenant_id",
            "action",
            "actor",
            "target",
            "metadata",
        ]
        .iter()
        .map(|k| text.find(&format!(r#""{k}":"#)).unwrap())
        .collect();
        assert!(positions.is_sorted(), "fields in order: {text}");
    }

    #[test]
    fn a_null_target_and_tenant_are_null() {
        let mut event = sample();
        event.tenant_id = None;
        event.target = None;
        let mut out = Vec::new();
        event.write_json(&mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(parsed["target"].is_null() && parsed["tenant_id"].is_null());
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains(r#""tenant_id":null,"#)
        );
    }

    #[test]
    fn heartbeat_has_the_event_shape_and_names_its_run() {
        let run_id = Uuid::now_v7();
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
        let hb = Event::heartbeat(
            Uuid::now_v7(),
            at,
            "acme",
            run_id,
            ("10", "12"),
            Some(start),
            None,
        );
        let mut out = Vec::new();
        hb.write_json(&mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["action"], HEARTBEAT_ACTION);
        assert_eq!(
            parsed["actor"],
            serde_json::json!({"type": "system", "id": "audit-exporter"})
        );
        assert_eq!(parsed["metadata"]["run_id"], run_id.to_string());
        assert_eq!(parsed["metadata"]["window_hi"], "12");
        assert_eq!(
            parsed["metadata"]["window_start"],
            "2026-11-21T09:00:00.000000Z"
        );
        assert_eq!(
            parsed["metadata"]["window_end"],
            "2026-11-21T10:00:00.000000Z"
        );
        assert_eq!(parsed.as_object().unwrap().len(), 8);
        // The first window has no start: it begins with the stream.
        let first = Event::heartbeat(Uuid::now_v7(), at, "acme", run_id, ("0", "12"), None, None);
        let metadata: serde_json::Value = serde_json::from_str(&first.metadata).unwrap();
        assert!(metadata["window_start"].is_null());
        assert_eq!(metadata["window_end"], "2026-11-21T10:00:00.000000Z");
    }
}
