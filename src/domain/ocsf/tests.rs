use std::borrow::Cow;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::domain::Event;

fn event(action: &str, actor: &str, target: Option<&str>, metadata: &str) -> Event {
    Event {
        event_id: Uuid::parse_str("0190b9a4-0000-7000-8000-000000000001").unwrap(),
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 1).unwrap()
            + chrono::Duration::microseconds(123_456),
        recorded_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 2).unwrap(),
        tenant_id: Some("acme".into()),
        action: action.into(),
        actor: actor.into(),
        target: target.map(str::to_owned),
        metadata: metadata.into(),
    }
}

fn record(event: &EventRef<'_>) -> (String, Value) {
    let mut out = Vec::new();
    write_record(event, &mut out);
    let text = String::from_utf8(out).unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (text, value)
}

#[test]
fn activity_follows_the_verb_of_the_action() {
    let cases = [
        ("user.create", Activity::Create),
        ("api_key.created", Activity::Create),
        ("Project.Invite", Activity::Create),
        ("document.read", Activity::Read),
        ("report.download", Activity::Read),
        ("user.password.reset", Activity::Update),
        ("role.granted", Activity::Update),
        ("settings.update", Activity::Update),
        ("user.delete", Activity::Delete),
        ("member_removed", Activity::Delete),
        // The last verb wins: a deleted user's update is an update.
        ("delete_request.update", Activity::Update),
        // A verb anywhere, read from the end.
        ("create.user.session", Activity::Create),
        ("user.login", Activity::Other),
        ("system.export.heartbeat", Activity::Other),
        ("system.export.test", Activity::Other),
        ("", Activity::Other),
        ("créé.ünïcode", Activity::Other),
    ];
    for (action, activity) in cases {
        assert_eq!(Activity::of(action), activity, "{action}");
    }
}

#[test]
fn millis_round_down_and_hold_the_infinities() {
    let at = Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 1).unwrap();
    let micros = Timestamp::from(at + chrono::Duration::microseconds(1_999));
    assert_eq!(epoch_millis(micros), at.timestamp_millis() + 1);
    let before_1970 = Timestamp::from(Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap());
    assert_eq!(epoch_millis(before_1970), -1000);
    assert_eq!(
        epoch_millis(Timestamp::Micros(-Timestamp::POSTGRES_EPOCH_MICROS - 1)),
        -1
    );
    assert_eq!(epoch_millis(Timestamp::Infinity), i64::MAX);
    assert_eq!(epoch_millis(Timestamp::MinusInfinity), i64::MIN);
    assert_eq!(
        epoch_millis(Timestamp::Micros(i64::MAX)),
        i64::MAX / 1000 + 946_684_800_000
    );
}

#[test]
fn a_full_event_maps_field_by_field() {
    let e = event(
        "project.update",
        r#"{"id": "u-1", "ip": "203.0.113.7", "name": "Zoë", "type": "user", "user_agent": "curl/8"}"#,
        Some(r#"{"id": 42, "name": "Apollo", "type": "project", "big": 12345678901234567890}"#),
        r#"{"n": 1.10, "note": "x"}"#,
    );
    let (text, r) = record(&e.as_ref());
    assert_eq!(r["class_uid"], 6003);
    assert_eq!(r["category_uid"], 6);
    assert_eq!(r["activity_id"], 3);
    assert_eq!(r["type_uid"], 600_303);
    assert_eq!(r["type_name"], "API Activity: Update");
    assert_eq!(r["severity_id"], 1);
    assert_eq!(r["time"], e.occurred_at.timestamp_millis());
    assert_eq!(
        r["metadata"],
        json!({"version": "1.1.0",
               "product": {"name": "audit-exporter", "vendor_name": "audit-exporter"},
               "uid": "0190b9a4-0000-7000-8000-000000000001",
               "logged_time": e.recorded_at.timestamp_millis(),
               "tenant_uid": "acme"})
    );
    assert_eq!(r["api"], json!({"operation": "project.update"}));
    assert_eq!(
        r["actor"],
        json!({"user": {"uid": "u-1", "name": "Zoë", "type": "user", "type_id": 1}})
    );
    assert_eq!(r["src_endpoint"], json!({"ip": "203.0.113.7"}));
    assert_eq!(r["http_request"], json!({"user_agent": "curl/8"}));
    assert_eq!(r["resources"][0]["uid"], "42");
    assert_eq!(r["resources"][0]["name"], "Apollo");
    assert_eq!(r["resources"][0]["type"], "project");
    // Stored JSON is carried verbatim: no number loses a digit, 1.10 stays 1.10.
    assert!(text.contains(r#""big":12345678901234567890"#), "{text}");
    assert!(
        text.contains(r#""unmapped":{"metadata":{"n":1.10,"note":"x"}}}"#),
        "{text}"
    );
    // Every field of the actor has its place: no copy in unmapped.
    assert!(r["unmapped"].get("actor").is_none());
}

#[test]
fn what_has_no_place_stays_in_unmapped() {
    let cases: [(&str, Value, Value); 5] = [
        // Another field of the actor, or an address that is no IP.
        (
            r#"{"id": "u1", "type": "user", "email": "a@b"}"#,
            json!({"user": {"uid": "u1", "type": "user", "type_id": 1}}),
            json!({}),
        ),
        (
            r#"{"id": "u1", "ip": "not-an-ip"}"#,
            json!({"user": {"uid": "u1"}}),
            json!({}),
        ),
        // An actor that is no object.
        (r#""u1""#, json!({}), json!({})),
        // Other user types.
        (
            r#"{"type": "service", "id": "svc"}"#,
            json!({"user": {"uid": "svc", "type": "service", "type_id": 99}}),
            json!({}),
        ),
        (
            r#"{"type": "Admin", "id": "a", "ip": "2001:db8::1"}"#,
            json!({"user": {"uid": "a", "type": "Admin", "type_id": 2}}),
            json!({"ip": "2001:db8::1"}),
        ),
    ];
    for (i, (actor, mapped, endpoint)) in cases.into_iter().enumerate() {
        let (_, r) = record(&event("user.login", actor, None, "{}").as_ref());
        assert_eq!(r["actor"], mapped, "{actor}");
        assert_eq!(r["src_endpoint"], endpoint, "{actor}");
        let kept = r["unmapped"].get("actor").is_some();
        assert_eq!(kept, i < 3, "{actor}: {r}");
        assert!(r.get("resources").is_none() && r.get("http_request").is_none());
    }
}

#[test]
fn a_target_that_is_no_object_is_kept_as_its_value() {
    let (_, r) = record(&event("file.read", "{}", Some(r#"["a", 1]"#), "{}").as_ref());
    assert_eq!(r["resources"], json!([{"data": {"value": ["a", 1]}}]));
    assert_eq!(r["activity_id"], 2);
}

#[test]
fn a_heartbeat_is_an_other_activity_of_the_system() {
    let at = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
    let hb = Event::heartbeat(Uuid::nil(), at, "acme", Uuid::nil(), ("1", "2"), None, None);
    let (_, r) = record(&hb.as_ref());
    assert_eq!(r["activity_id"], 99);
    assert_eq!(r["api"]["operation"], "system.export.heartbeat");
    assert_eq!(
        r["actor"],
        json!({"user": {"uid": "audit-exporter", "type": "system", "type_id": 3}})
    );
    assert_eq!(r["unmapped"]["metadata"]["destination"], "acme");
    assert!(r["metadata"].get("tenant_uid").is_none());
    assert_eq!(r["time"], at.timestamp_millis());
}

#[test]
fn infinite_times_keep_their_text() {
    let mut e = event("user.login", "{}", None, "{}");
    e.tenant_id = None;
    let mut borrowed = e.as_ref();
    borrowed.occurred_at = Timestamp::Infinity;
    borrowed.tenant_id = None::<Cow<'_, str>>;
    let (_, r) = record(&borrowed);
    assert_eq!(r["time"], i64::MAX);
    assert_eq!(r["metadata"]["original_time"], "infinity");
}

#[test]
fn the_same_event_gives_the_same_bytes() {
    let e = event("a.b", r#"{"b": 1, "a": 2}"#, Some("{}"), "{}");
    let (one, _) = record(&e.as_ref());
    let (two, _) = record(&e.as_ref());
    assert_eq!(one, two);
}

#[test]
fn the_example_of_docs_ocsf_md_is_what_is_written() {
    let docs = include_str!("../../../docs/ocsf.md");
    let mut blocks = docs
        .split("```json\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap());
    let (input, output) = (blocks.next().unwrap(), blocks.next().unwrap());
    let e: Value = serde_json::from_str(input).unwrap();
    let text = |v: &Value| v.to_string();
    let event = EventRef {
        event_id: e["event_id"].as_str().unwrap().parse().unwrap(),
        occurred_at: e["occurred_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
            .into(),
        recorded_at: e["recorded_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
            .into(),
        tenant_id: Some(Cow::Borrowed("acme")),
        action: Cow::Borrowed("project.update"),
        actor: Cow::Owned(text(&e["actor"])),
        target: Some(Cow::Owned(text(&e["target"]))),
        // serde_json would write 1.10 as 1.1: the stored text, as PostgreSQL renders it.
        metadata: Cow::Borrowed(r#"{"n": 1.10}"#),
    };
    let mut out = Vec::new();
    write_record(&event, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), output);
}
