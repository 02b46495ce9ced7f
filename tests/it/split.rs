//! A window larger than `max_object_bytes` becomes several objects: exactly once across them, in
//! order, each recorded in the run log, and a run stopped between two objects resumes with the
//! same keys and bytes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use audit_exporter::domain::Format;
use audit_exporter::export::When;
use audit_exporter::settings::Settings;
use audit_exporter::sink::{self, ObjectWriter, PutOutcome, Sink};
use sha2::{Digest, Sha256};

use crate::check::assert_exactly_once;
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::{append, destination, export_now, exporter};

const LIMIT: usize = 1 << 20;

/// Exports destination `name` until it begins the object whose key holds `fail_at`, where the
/// sink fails: a run stopped between objects. Returns the export's error.
pub async fn stop_before(
    db: &TestDb,
    settings: &Settings,
    name: &str,
    fail_at: &'static str,
) -> anyhow::Error {
    let dest = destination(settings, name);
    let stopping = StopsAt {
        inner: sink::connect(dest, &settings.exporter).await.unwrap(),
        fail_at,
    };
    exporter(db, settings)
        .export(dest, &stopping, When::Now)
        .await
        .unwrap_err()
}

/// The real sink, except that the object whose key ends as `fail_at` cannot be created: the
/// process stops there, after the objects before it were delivered.
pub struct StopsAt {
    pub inner: Box<dyn Sink>,
    pub fail_at: &'static str,
}

#[async_trait]
impl Sink for StopsAt {
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }

    fn reader(&self) -> sink::BucketReader {
        self.inner.reader()
    }

    async fn create(&self, key: &str, format: Format) -> anyhow::Result<Box<dyn ObjectWriter>> {
        if key.contains(self.fail_at) {
            anyhow::bail!("injected: stopped before {key}");
        }
        self.inner.create(key, format).await
    }
}

fn limit_env(name: &str) -> (String, String) {
    (
        format!(
            "AUDIT_EXPORTER__DESTINATIONS__{}__MAX_OBJECT_BYTES",
            name.to_uppercase()
        ),
        LIMIT.to_string(),
    )
}

#[tokio::test]
async fn a_big_window_is_several_objects_and_a_stop_between_two_resumes_with_the_same_keys_and_bytes()
 {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let dir = tempfile::tempdir().unwrap();
    let mut env = bucket.destination_env("main", "p");
    env.push(limit_env("main"));
    // The same window, cut by a process that never stopped, as the reference.
    env.extend(file_destination_env("reference", dir.path()));
    env.push(limit_env("reference"));
    let settings = settings(&db, env);
    // About 3.5 MB of NDJSON.
    append(&db, 9_000, None).await;

    let _dest = destination(&settings, "main");
    let error = stop_before(&db, &settings, "main", "_part0003").await;
    assert!(format!("{error:#}").contains("_part0003"), "{error:#}");
    let before = bucket.objects("p/").await;
    let keys: Vec<&String> = before.keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].ends_with("_part0001.jsonl") && keys[1].ends_with("_part0002.jsonl"),
        "{keys:?}"
    );
    // It stopped right after the second upload, before recording it: the retry writes it again
    // and meets the 412.
    sqlx::query("DELETE FROM export_run_objects WHERE seq = 2")
        .execute(db.pool())
        .await
        .unwrap();

    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert!(report.resumed);
    assert_eq!(report.put, PutOutcome::Written);
    assert_eq!(report.events, 9_000);
    let objects = bucket.objects("p/").await;
    assert!(objects.len() >= 4, "{} objects", objects.len());
    for (key, bytes) in &before {
        assert_eq!(&objects[key], bytes, "{key} was not replaced");
    }
    // Every object but the last holds at least the limit (less the few bytes that end it) and
    // passes it by at most one event.
    let sizes: Vec<usize> = objects.values().map(Vec::len).collect();
    for size in &sizes[..sizes.len() - 1] {
        assert!(*size + 32 >= LIMIT && *size < LIMIT + 4096, "{sizes:?}");
    }
    assert_eq!(assert_exactly_once(&db, "main", None, &objects).await, 0);
    let recorded: Vec<(String, String)> = report
        .objects
        .iter()
        .map(|o| (o.key.clone(), o.sha256.clone()))
        .collect();
    let stored: Vec<(String, String)> = objects
        .iter()
        .map(|(k, v)| (k.clone(), hex::encode(Sha256::digest(v))))
        .collect();
    assert_eq!(recorded, stored, "the run log names every object, in order");

    // Cut where a process that never stopped cuts: the same bytes, object for object.
    export_now(&exporter(&db, &settings), &settings, "reference").await;
    let reference: Vec<Vec<u8>> = files(dir.path()).into_values().collect();
    let resumed: Vec<Vec<u8>> = objects.into_values().collect();
    assert_eq!(reference, resumed, "the same cut and bytes");

    // status --json lists the run's objects.
    let mut out = Vec::new();
    audit_exporter::commands::status(&settings, true, &mut out)
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let main = status["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "main")
        .unwrap();
    let listed: BTreeMap<String, i64> = main["recent_runs"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_owned(),
                o["events"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), report.objects.len());
    assert_eq!(listed.values().sum::<i64>(), 9_000);
}

#[tokio::test]
async fn cancelling_a_run_stopped_between_objects_names_the_objects_it_delivered() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.push(limit_env("main"));
    let settings = settings(&db, env);
    append(&db, 6_000, None).await;
    let _dest = destination(&settings, "main");
    stop_before(&db, &settings, "main", "_part0002").await;
    let delivered: Vec<String> = files(dir.path()).into_keys().collect();
    assert_eq!(delivered.len(), 1);

    let mut out = Vec::new();
    audit_exporter::commands::destination(
        &settings,
        &audit_exporter::commands::DestinationAction::Cancel {
            name: "main".into(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let said = String::from_utf8(out).unwrap();
    assert!(
        said.contains("it had delivered 1 object(s), which stay")
            && said.contains(&delivered[0])
            && said.contains(&delivered[0].replace("_part0001", "_part0002")),
        "{said}"
    );
    let metadata: serde_json::Value = sqlx::query_scalar(
        "SELECT metadata FROM audit_events WHERE action = 'system.export.cancelled'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(metadata["delivered_keys"], serde_json::json!(delivered));
}

#[tokio::test]
async fn a_format_change_after_some_objects_finishes_the_run_as_planned_without_duplicates() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.push(limit_env("main"));
    let planned = settings(&db, env.clone());
    append(&db, 6_000, None).await;
    let _dest = destination(&planned, "main");
    stop_before(&db, &planned, "main", "_part0002").await;
    assert_eq!(files(dir.path()).len(), 1);

    // The operator switches to gzip while the run is pending.
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__COMPRESSION".into(),
        "gzip".into(),
    ));
    let changed = settings(&db, env);
    let report = export_now(&exporter(&db, &changed), &changed, "main").await;
    assert!(report.resumed, "finished as planned, not abandoned");
    let objects = files(dir.path());
    assert!(objects.len() >= 2);
    assert!(
        objects.keys().all(|k| k.ends_with(".jsonl")),
        "{:?}",
        objects.keys()
    );
    assert_exactly_once(&db, "main", None, &objects).await;

    // The next run is gzip.
    append(&db, 10, None).await;
    let next = export_now(&exporter(&db, &changed), &changed, "main").await;
    assert!(
        next.objects[0].key.ends_with("_part0001.jsonl.gz"),
        "{}",
        next.objects[0].key
    );
    assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}
