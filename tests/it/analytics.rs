//! Objects for analytics, read back by independent clients: OCSF records checked by an OCSF
//! schema validator (pydantic-ocsf), Parquet objects read by DuckDB.

use std::process::Command;

use audit_exporter::sink;
use chrono::Utc;
use indicatif::ProgressBar;
use serde_json::Value;

use crate::check::{decode, expected_ids};
use crate::harness::{TestDb, file_destination_env, files, settings};
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
