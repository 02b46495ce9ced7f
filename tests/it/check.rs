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
        "SELECT r.id, r.heartbeat_event_id, r.event_count, r.object_count,
                o.key, o.sha256, o.bytes, o.events, o.seq
         FROM export_runs r JOIN export_run_objects o ON o.run_id = r.id
         WHERE r.destination = $1 AND r.kind = 'scheduled' AND r.status = 'done'
         ORDER BY r.window_lo, r.window_end, o.seq",
    )
    .bind(destination)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut exported = Vec::new();
    let mut heartbeats = 0;
    let mut per_run: Vec<RunTally> = Vec::new();
    for run in &runs {
        let run_id: Uuid = run.get(0);
        let heartbeat: Option<Uuid> = run.get(1);
        let key: String = run.get(4);
        let seq: i32 = run.get(8);
        let bytes = objects
            .get(&key)
            .unwrap_or_else(|| panic!("no object at {key}; objects: {:?}", objects.keys()));
        assert_eq!(
            hex::encode(Sha256::digest(bytes)),
            run.get::<String, _>(5),
            "sha256 of {key}"
        );
        assert_eq!(bytes.len() as i64, run.get::<i64, _>(6), "bytes of {key}");
        let events = decode(&key, bytes);
        for event in &events {
            assert_eq!(event.as_object().unwrap().len(), 8, "event shape: {event}");
        }
        if per_run.last().is_none_or(|r| r.0 != run_id) {
            assert_eq!(seq, 1, "{key}: a run's objects are numbered from 1");
            per_run.push((run_id, run.get(2), run.get(3), 0, 0));
        }
        let this = per_run.last_mut().unwrap();
        this.3 += 1;
        assert_eq!(
            seq as usize, this.3,
            "{key}: a run's objects are numbered without a gap"
        );
        match heartbeat {
            Some(id) => {
                heartbeats += 1;
                assert_eq!(seq, 1, "a heartbeat run has one object");
                assert_eq!(events.len(), 1, "a heartbeat object holds one event");
                assert_eq!(events[0]["action"], HEARTBEAT);
                assert_eq!(events[0]["event_id"], id.to_string());
                assert_eq!(run.get::<Option<i64>, _>(2), Some(0));
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
                assert_eq!(run.get::<i64, _>(7), events.len() as i64, "events of {key}");
                this.4 += events.len() as i64;
                exported.extend(
                    events
                        .iter()
                        .map(|e| Uuid::parse_str(e["event_id"].as_str().unwrap()).unwrap()),
                );
            }
        }
    }
    for (run_id, event_count, object_count, objects, events) in &per_run {
        assert_eq!(
            *object_count,
            Some(*objects as i32),
            "object count of run {run_id}"
        );
        if *events > 0 {
            assert_eq!(*event_count, Some(*events), "event count of run {run_id}");
        }
    }
    let keys: Vec<&String> = objects.keys().collect();
    assert_eq!(
        keys.len(),
        runs.len(),
        "the objects the committed runs recorded, nothing else: {keys:?}"
    );
    assert_eq!(
        exported,
        expected_order(db, destination, tenant).await,
        "every event exactly once, in (txid, id) order (by day first in a run cut by day)"
    );
    heartbeats
}

/// The ids of the events `destination` selects, in the order its runs deliver them: run by
/// run, `(txid, id)` within a run, by day first in a run cut by event day.
async fn expected_order(db: &TestDb, destination: &str, tenant: Option<&str>) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT e.event_id FROM audit_events e
         LEFT JOIN export_runs r
           ON r.destination = $2 AND r.kind = 'scheduled' AND r.status = 'done'
          AND e.txid >= r.window_lo AND e.txid < r.window_hi
         WHERE $1::text IS NULL OR e.tenant_id = $1
         ORDER BY r.window_lo NULLS LAST,
                  CASE WHEN NOT r.partition_by_day THEN NULL
                       WHEN isfinite(e.occurred_at) AND e.occurred_at < '262143-01-01T00:00:00Z'::timestamptz
                       THEN (e.occurred_at AT TIME ZONE 'UTC')::date
                       ELSE (r.window_end AT TIME ZONE 'UTC')::date END,
                  e.txid, e.id",
    )
    .bind(tenant)
    .bind(destination)
    .fetch_all(db.pool())
    .await
    .unwrap()
}

/// A run as the log says and as its objects hold: id, event count, object count, then the
/// objects found and the events in them.
type RunTally = (Uuid, Option<i64>, Option<i32>, usize, i64);

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
