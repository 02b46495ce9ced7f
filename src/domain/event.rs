//! The shape of an exported event, the heartbeat included, and its JSON form.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The action of the event an empty window's object carries.
pub const HEARTBEAT_ACTION: &str = "system.export.heartbeat";
/// The action of the event a test delivery (`verify`) carries.
pub const TEST_ACTION: &str = "system.export.test";

/// One audit event as it is exported. The JSON columns hold their JSON text as PostgreSQL
/// sends it, so exporting never re-parses them.
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
    pub fn heartbeat(
        event_id: Uuid,
        at: DateTime<Utc>,
        destination: &str,
        run_id: Uuid,
        window: (&str, &str),
        tenant_id: Option<&str>,
    ) -> Self {
        let metadata = serde_json::json!({
            "destination": destination,
            "run_id": run_id,
            "window_lo": window.0,
            "window_hi": window.1,
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

    /// Appends the event as one JSON object, without a trailing newline.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"event_id":""#);
        out.extend_from_slice(
            self.event_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(br#"","occurred_at":""#);
        write_timestamp(self.occurred_at, out);
        out.extend_from_slice(br#"","recorded_at":""#);
        write_timestamp(self.recorded_at, out);
        out.extend_from_slice(br#"","tenant_id":"#);
        match &self.tenant_id {
            Some(tenant) => write_string(tenant, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","action":"#);
        write_string(&self.action, out);
        out.extend_from_slice(br#","actor":"#);
        out.extend_from_slice(self.actor.as_bytes());
        out.extend_from_slice(br#","target":"#);
        out.extend_from_slice(self.target.as_deref().unwrap_or("null").as_bytes());
        out.extend_from_slice(br#","metadata":"#);
        out.extend_from_slice(self.metadata.as_bytes());
        out.push(b'}');
    }
}

fn write_timestamp(at: DateTime<Utc>, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
}

fn write_string(value: &str, out: &mut Vec<u8>) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
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
            r#"{"event_id":"0190b9a4-0000-7000-8000-000000000001","occurred_at":"2026-11-21T09:05:01.000000Z","recorded_at":"2026-11-21T09:05:02.000000Z","tenant_id":"acme \"corp\"","action":"user.login","actor":{"id": "u1", "type": "user"},"target":null,"metadata":{}}"#
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
    fn heartbeat_has_the_event_shape_and_names_its_run() {
        let run_id = Uuid::now_v7();
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let hb = Event::heartbeat(Uuid::now_v7(), at, "acme", run_id, ("10", "12"), None);
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
        assert_eq!(parsed.as_object().unwrap().len(), 8);
    }
}
