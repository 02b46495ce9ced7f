//! Objects for analytics, read back by independent clients: OCSF records checked by an OCSF
//! schema validator (pydantic-ocsf), Parquet objects read by DuckDB.

use std::process::Command;

use audit_exporter::sink;
use chrono::Utc;
use indicatif::ProgressBar;
use serde_json::Value;

use crate::check::{decode, expected_ids};
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::{append, destination, export_now, exporter};

/// Runs `script` with the test tools' Python, `args` after it; returns its stdout.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let output = Command::new(crate::moto::python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs (scripts/test.sh installs the test tools)");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Validates every record of the JSON-lines file argv[1] as an OCSF 1.1.0 API Activity; prints
/// how many it validated.
const VALIDATE_OCSF: &str = r#"
import json, sys
from ocsf.v1_1_0.events import api_activity
n = 0
for line in open(sys.argv[1]):
    record = json.loads(line)
    api_activity.model_validate(record)
    assert record["class_uid"] == 6003 and record["category_uid"] == 6, record
    assert record["metadata"]["version"] == "1.1.0", record
    assert isinstance(record["time"], int) and isinstance(record["metadata"]["logged_time"], int), record
    n += 1
print(n)
"#;

fn ocsf_env(name: &str, dir: &std::path::Path, encoding: &str) -> Vec<(String, String)> {
    let upper = name.to_uppercase();
    let mut env = file_destination_env(name, dir);
    for (key, value) in [("SCHEMA", "ocsf"), ("ENCODING", encoding)] {
        env.push((
            format!("AUDIT_EXPORTER__DESTINATIONS__{upper}__{key}"),
            value.into(),
        ));
    }
    env
}

#[tokio::test]
async fn every_ocsf_record_validates_against_the_ocsf_schema() {
    let db = TestDb::new().await;
    let (lines_dir, array_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut env = ocsf_env("lines", lines_dir.path(), "ndjson");
    env.extend(ocsf_env("array", array_dir.path(), "json"));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__ARRAY__COMPRESSION".into(),
        "zstd".into(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    append(&db, 60, Some("acme")).await;
    // An actor with fields of its own and an address that is no IP.
    sqlx::query(
        r#"INSERT INTO audit_events (action, actor, target, metadata) VALUES
           ('user.delete', '{"type":"admin","id":7,"ip":"not an ip","email":"a@example.com"}', '{"type":"user","id":"u-9"}', '{"big":12345678901234567890}'),
           ('report.read', '{"type":"service","id":"svc","ip":"2001:db8::1"}', NULL, '{"list":[1,2]}')"#,
    )
    .execute(db.pool())
    .await
    .unwrap();
    for name in ["lines", "array"] {
        export_now(&exporter, &settings, name).await;
        // Nothing new: a heartbeat.
        export_now(&exporter, &settings, name).await;
        let dest = destination(&settings, name);
        let sink = sink::connect(dest, &settings.exporter).await.unwrap();
        exporter.test_delivery(dest, sink.as_ref()).await.unwrap();
        let range = (Utc::now() - chrono::Duration::days(1), Utc::now());
        exporter
            .reexport(dest, sink.as_ref(), range, None, &ProgressBar::hidden())
            .await
            .unwrap();
    }

    let mut records = Vec::new();
    for (dir, ext) in [(&lines_dir, ".jsonl"), (&array_dir, ".json.zst")] {
        let objects = files(dir.path());
        assert_eq!(objects.len(), 4, "{:?}", objects.keys());
        let mut scheduled = Vec::new();
        for (key, bytes) in &objects {
            assert!(key.ends_with(ext), "{key}");
            let decoded = decode(key, bytes);
            if !key.starts_with("test/") && !key.starts_with("reexport/") {
                scheduled.extend(decoded.iter().cloned());
            }
            records.extend(decoded);
        }
        // The events once each, in order, then the heartbeat.
        let ids: Vec<String> = scheduled
            .iter()
            .map(|r| r["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect();
        let mut expected: Vec<String> = expected_ids(&db, None)
            .await
            .iter()
            .map(ToString::to_string)
            .collect();
        let heartbeat = scheduled.last().unwrap();
        assert_eq!(heartbeat["api"]["operation"], "system.export.heartbeat");
        expected.push(ids.last().unwrap().clone());
        assert_eq!(ids, expected);
    }
    let operations: Vec<&str> = records
        .iter()
        .map(|r| r["api"]["operation"].as_str().unwrap())
        .collect();
    assert!(operations.contains(&"system.export.test"), "{operations:?}");
    let deleted = records
        .iter()
        .find(|r| r["api"]["operation"] == "user.delete")
        .unwrap();
    assert_eq!(deleted["activity_id"], 4);
    assert_eq!(deleted["unmapped"]["actor"]["email"], "a@example.com");
    assert_eq!(deleted["resources"][0]["uid"], "u-9");
    assert_eq!(deleted["actor"]["user"]["uid"], "7");

    let file = tempfile::NamedTempFile::new().unwrap();
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(file.path(), lines.join("\n") + "\n").unwrap();
    let validated = run_python(VALIDATE_OCSF, &[file.path().to_str().unwrap()]);
    assert_eq!(validated.trim(), records.len().to_string());
    // 62 events, a heartbeat, a test event and 62 re-exported, in each of two destinations.
    assert_eq!(records.len(), 2 * (62 + 1 + 1 + 62));
}

/// Reads the Parquet files argv[1:] with DuckDB; prints one JSON line a row: the event id, the
/// two times in microseconds from the epoch and the types DuckDB gives them, and the rest.
const READ_PARQUET: &str = r#"
import duckdb, json, sys
rows = duckdb.connect().execute(
    """SELECT event_id, epoch_us(occurred_at), epoch_us(recorded_at), typeof(occurred_at),
              typeof(recorded_at), tenant_id, action, actor::varchar, target::varchar,
              metadata::varchar, typeof(actor)
       FROM read_parquet(?)""",
    [sys.argv[1:]],
).fetchall()
for row in rows:
    print(json.dumps(row))
"#;

type TableRow = (
    String,
    i64,
    i64,
    Option<String>,
    String,
    Value,
    Option<Value>,
    Value,
);

/// The table's events in export order: id, times in microseconds, tenant, action, actor,
/// target and metadata (parsed).
async fn table_rows(db: &TestDb) -> Vec<Value> {
    let rows: Vec<TableRow> = sqlx::query_as(
        "SELECT event_id::text, (extract(epoch FROM occurred_at) * 1000000)::bigint,
                    (extract(epoch FROM recorded_at) * 1000000)::bigint, tenant_id, action,
                    actor::json, target::json, metadata::json
             FROM audit_events ORDER BY txid, id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| serde_json::json!([r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7]))
        .collect()
}

/// DuckDB's rows, in the same shape as `table_rows`, with the JSON columns parsed.
fn duckdb_rows(paths: &[String]) -> Vec<Value> {
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    run_python(READ_PARQUET, &args)
        .lines()
        .map(|line| {
            let row: Vec<Value> = serde_json::from_str(line).unwrap();
            assert_eq!(row[3], "TIMESTAMP WITH TIME ZONE", "{line}");
            assert_eq!(row[4], "TIMESTAMP WITH TIME ZONE", "{line}");
            assert_eq!(row[10], "JSON", "{line}");
            let parse = |v: &Value| match v.as_str() {
                Some(text) => serde_json::from_str::<Value>(text).unwrap(),
                None => Value::Null,
            };
            serde_json::json!([
                row[0],
                row[1],
                row[2],
                row[5],
                row[6],
                parse(&row[7]),
                parse(&row[8]),
                parse(&row[9])
            ])
        })
        .collect()
}

#[tokio::test]
async fn duckdb_reads_parquet_objects_as_the_table_holds_them() {
    let db = TestDb::new().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut env = Vec::new();
    for (dir, compression) in dirs.iter().zip(["none", "gzip", "zstd"]) {
        let name = format!("p_{compression}");
        env.extend(file_destination_env(&name, dir.path()));
        let upper = name.to_uppercase();
        env.push((
            format!("AUDIT_EXPORTER__DESTINATIONS__{upper}__ENCODING"),
            "parquet".into(),
        ));
        env.push((
            format!("AUDIT_EXPORTER__DESTINATIONS__{upper}__COMPRESSION"),
            compression.into(),
        ));
    }
    // A re-export is cut into objects of about 1 MiB.
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__P_NONE__MAX_OBJECT_BYTES".into(),
        "1048576".into(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    append(&db, 3000, Some("acme")).await;
    append(&db, 500, None).await;
    let expected = table_rows(&db).await;

    for (dir, compression) in dirs.iter().zip(["none", "gzip", "zstd"]) {
        let name = format!("p_{compression}");
        let report = export_now(&exporter, &settings, &name).await;
        // Nothing new: a heartbeat.
        export_now(&exporter, &settings, &name).await;
        let objects = files(dir.path());
        // The events' objects (p_none's cut at 1 MiB), then the heartbeat's.
        let expected_objects = if compression == "none" { 3 } else { 2 };
        assert_eq!(objects.len(), expected_objects, "{:?}", objects.keys());
        assert!(objects.keys().all(|k| k.ends_with(".parquet")));
        assert!(
            objects
                .values()
                .all(|b| b.starts_with(b"PAR1") && b.ends_with(b"PAR1"))
        );
        let paths: Vec<String> = objects
            .keys()
            .map(|k| dir.path().join(k).display().to_string())
            .collect();
        // Keys sort by time: the events' object, then the heartbeat's.
        let mut read = duckdb_rows(&paths);
        let heartbeat = read.pop().unwrap();
        assert_eq!(heartbeat[4], "system.export.heartbeat");
        assert_eq!(read, expected, "{compression}");
        assert_eq!(report.events, 3500, "{report:?}");
    }

    let dest = destination(&settings, "p_none");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let range = (Utc::now() - chrono::Duration::days(1), Utc::now());
    let report = exporter
        .reexport(dest, sink.as_ref(), range, None, &ProgressBar::hidden())
        .await
        .unwrap();
    assert!(report.locations.len() >= 2, "{report:?}");
    let parts: Vec<String> = files(dirs[0].path())
        .keys()
        .filter(|k| k.starts_with("reexport/"))
        .map(|k| dirs[0].path().join(k).display().to_string())
        .collect();
    assert_eq!(parts.len(), report.locations.len());
    for part in &parts {
        let size = std::fs::metadata(part).unwrap().len();
        assert!(size < (1 << 20) + (64 << 10), "{part}: {size}");
    }
    // The re-export holds the events of the range, each once, in occurred_at order.
    let mut read = duckdb_rows(&parts);
    let mut want = expected.clone();
    read.sort_by_key(|r| r[0].as_str().unwrap().to_owned());
    want.sort_by_key(|r| r[0].as_str().unwrap().to_owned());
    assert_eq!(read, want);
}

/// Reads the OCSF Parquet files argv[1:] with DuckDB, validates every row as an OCSF 1.1.0 API
/// Activity (times back to epoch milliseconds, JSON columns parsed, absent fields dropped), and
/// prints one JSON line a row: its `metadata.uid`, `time` and DuckDB's type of `time`.
pub const VALIDATE_OCSF_PARQUET: &str = r#"
import datetime, duckdb, json, sys
from ocsf.v1_1_0.events import api_activity
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [clean(x) for x in v]
    if isinstance(v, datetime.datetime):
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    return v
cursor = duckdb.connect().execute(
    "SELECT *, typeof(time) AS time_type FROM read_parquet(?)", [sys.argv[1:]])
names = [d[0] for d in cursor.description]
for values in cursor.fetchall():
    row = dict(zip(names, values))
    time_type = row.pop("time_type")
    record = clean(row)
    for resource in record.get("resources", []):
        resource["data"] = json.loads(resource["data"])
    record["unmapped"] = {k: json.loads(v) for k, v in record["unmapped"].items()}
    api_activity.model_validate(record)
    print(json.dumps([record["metadata"]["uid"], record["time"], time_type, record["activity_id"]]))
"#;

#[tokio::test]
async fn ocsf_parquet_rows_are_typed_and_validate_against_the_ocsf_schema() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = ocsf_env("lake", dir.path(), "parquet");
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__LAKE__COMPRESSION".into(),
        "zstd".into(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    append(&db, 300, Some("acme")).await;
    export_now(&exporter, &settings, "lake").await;
    export_now(&exporter, &settings, "lake").await;
    let dest = destination(&settings, "lake");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    exporter.test_delivery(dest, sink.as_ref()).await.unwrap();

    let objects = files(dir.path());
    assert_eq!(objects.len(), 3, "{:?}", objects.keys());
    let scheduled: Vec<String> = objects
        .keys()
        .filter(|k| !k.starts_with("test/"))
        .map(|k| dir.path().join(k).display().to_string())
        .collect();
    let args: Vec<&str> = scheduled.iter().map(String::as_str).collect();
    let rows: Vec<Value> = run_python(VALIDATE_OCSF_PARQUET, &args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_id::text, floor(extract(epoch FROM occurred_at) * 1000)::bigint
         FROM audit_events ORDER BY txid, id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), expected.len() + 1);
    for (row, (id, millis)) in rows.iter().zip(&expected) {
        assert_eq!(row[0], id.as_str());
        assert_eq!(row[1], *millis);
        assert_eq!(row[2], "TIMESTAMP WITH TIME ZONE");
    }
    // The heartbeat, an Other activity.
    assert_eq!(rows.last().unwrap()[3], 99);
    let test_object: Vec<String> = objects
        .keys()
        .filter(|k| k.starts_with("test/"))
        .map(|k| dir.path().join(k).display().to_string())
        .collect();
    let test_rows = run_python(VALIDATE_OCSF_PARQUET, &[test_object[0].as_str()]);
    assert_eq!(test_rows.lines().count(), 1);
}

#[tokio::test]
async fn a_parquet_object_on_s3_is_stored_as_parquet_without_a_content_encoding() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("lake", "exports");
    for (key, value) in [("ENCODING", "parquet"), ("COMPRESSION", "zstd")] {
        env.push((
            format!("AUDIT_EXPORTER__DESTINATIONS__LAKE__{key}"),
            value.into(),
        ));
    }
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    append(&db, 50, None).await;
    let report = export_now(&exporter, &settings, "lake").await;
    let key = &report.run.object_key;
    assert!(key.ends_with(".parquet"), "{key}");
    let head = bucket.head(key).await;
    assert_eq!(head.content_type(), Some("application/vnd.apache.parquet"));
    // The compression is inside the file: a client must not be told to decompress it.
    assert_eq!(head.content_encoding(), None);
    let objects = bucket.objects("exports/").await;
    assert!(objects[key].starts_with(b"PAR1"));
    assert_eq!(objects[key].len() as u64, report.bytes);
}
