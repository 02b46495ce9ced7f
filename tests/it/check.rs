//! Reads what a destination holds and compares it with the audit table, independently of the
//! exporter's own code: every event exactly once, in (txid, id) order, heartbeats only in empty
//! windows, each object's SHA-256 as the run log recorded it.

use std::collections::BTreeMap;
use std::io::Read;

use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::harness::TestDb;

pub const HEARTBEAT: &str = "system.export.heartbeat";

/// The events of an object, decoded by its extension.
pub fn decode(key: &str, bytes: &[u8]) -> Vec<serde_json::Value> {
    let mut plain = Vec::new();
    if key.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .unwrap();
    } else if key.ends_with(".zst") {
        plain = zstd::decode_all(bytes).unwrap();
    } else {
        plain = bytes.to_vec();
    }
    let text = String::from_utf8(plain).unwrap();
    if key.contains(".jsonl") {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// The ids of the destination's events in the order they must be exported.
pub async fn expected_ids(db: &TestDb, tenant: Option<&str>) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM audit_events WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY txid, id")
        .bind(tenant)
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// Checks a destination's objects against the table; returns the number of heartbeat objects.
pub async fn assert_exactly_once(
    db: &TestDb,
    destination: &str,
    tenant: Option<&str>,
    objects: &BTreeMap<String, Vec<u8>>,
) -> usize {
    let runs = sqlx::query(
        "SELECT object_key, heartbeat_event_id, sha256, event_count, bytes FROM export_runs
         WHERE destination = $1 AND kind = 'scheduled' AND status = 'done' ORDER BY window_lo, window_end",
    )
    .bind(destination)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut exported = Vec::new();
    let mut heartbeats = 0;
    for run in &runs {
        let key: String = run.get(0);
        let heartbeat: Option<Uuid> = run.get(1);
        let bytes = objects
            .get(&key)
            .unwrap_or_else(|| panic!("no object at {key}; objects: {:?}", objects.keys()));
        assert_eq!(
            Some(hex::encode(Sha256::digest(bytes))),
            run.get::<Option<String>, _>(2),
            "sha256 of {key}"
        );
        assert_eq!(
            Some(bytes.len() as i64),
            run.get::<Option<i64>, _>(4),
            "bytes of {key}"
        );
        let events = decode(&key, bytes);
        for event in &events {
            assert_eq!(event.as_object().unwrap().len(), 8, "event shape: {event}");
        }
        match heartbeat {
            Some(id) => {
                heartbeats += 1;
                assert_eq!(events.len(), 1, "a heartbeat object holds one event");
                assert_eq!(events[0]["action"], HEARTBEAT);
                assert_eq!(events[0]["event_id"], id.to_string());
                assert_eq!(run.get::<Option<i64>, _>(3), Some(0));
            }
            None => {
                assert!(
                    !events.is_empty(),
                    "a window with events has no heartbeat: {key}"
                );
                assert!(
                    events.iter().all(|e| e["action"] != HEARTBEAT),
                    "heartbeat in a non-empty window: {key}"
                );
                assert_eq!(run.get::<Option<i64>, _>(3), Some(events.len() as i64));
                exported.extend(
                    events
                        .iter()
                        .map(|e| Uuid::parse_str(e["event_id"].as_str().unwrap()).unwrap()),
                );
            }
        }
    }
    let keys: Vec<&String> = objects.keys().collect();
    assert_eq!(
        keys.len(),
        runs.len(),
        "one object per committed run, nothing else: {keys:?}"
    );
    assert_eq!(
        exported,
        expected_ids(db, tenant).await,
        "every event exactly once, in (txid, id) order"
    );
    heartbeats
}

/// What a destination's objects hold against the table, counted rather than asserted, for the
/// fault suite's summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    /// Events in the objects (heartbeats not included).
    pub exported: usize,
    /// Events of the table that are in no object.
    pub lost: usize,
    /// Copies beyond the first of an event in the objects.
    pub duplicated: usize,
}

/// Counts the events of every object against the table; no object of the run log is assumed.
pub async fn count(
    db: &TestDb,
    tenant: Option<&str>,
    objects: &BTreeMap<String, Vec<u8>>,
) -> Count {
    let mut seen = std::collections::HashMap::<Uuid, usize>::new();
    let mut exported = 0;
    for (key, bytes) in objects {
        for event in decode(key, bytes) {
            if event["action"] != HEARTBEAT {
                exported += 1;
                *seen
                    .entry(Uuid::parse_str(event["event_id"].as_str().unwrap()).unwrap())
                    .or_default() += 1;
            }
        }
    }
    let expected = expected_ids(db, tenant).await;
    Count {
        exported,
        lost: expected.iter().filter(|id| !seen.contains_key(id)).count(),
        duplicated: seen.values().map(|n| n - 1).sum(),
    }
}
