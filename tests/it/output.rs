//! What lands in a destination besides the events: no temp file outlives its attempt, test and
//! re-export objects keep the layout's path under their own folder, heartbeats name their
//! window in time, and a re-export that a crash interrupted does not stay pending.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use audit_exporter::export::{Outcome, When};
use audit_exporter::sink;
use audit_exporter::store::Claim;
use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::ProgressBar;
use sqlx::Connection;

use crate::check::{assert_exactly_once, decode};
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::operate::wait_until;
use crate::proxy::{Fault, Proxy, Seen, is_put_object};
use crate::{append, destination, export_now, exporter};

/// The temp files under `dir` (hidden, ending in `.tmp`), at any depth.
fn temp_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_keys()
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or_default();
            name.starts_with('.') && name.ends_with(".tmp")
        })
        .collect()
}

/// Holds every read of audit_events (a COPY of a window waits) until the connection is dropped.
async fn lock_events(db: &TestDb) -> sqlx::PgConnection {
    let mut lock = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}

/// Some backend waits on a lock in a COPY of the window.
async fn copy_blocked(db: &TestDb) -> Option<()> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'COPY%'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    (n > 0).then_some(())
}

#[tokio::test]
async fn no_temporary_file_outlives_an_abandoned_or_killed_attempt() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = file_destination_env("main", dir.path());
    let settings = settings(&db, env.clone());
    let exporter = exporter(&db, &settings);
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    append(&db, 200, None).await;

    // The run is planned, then its upload waits for the window's rows while its temp file is
    // open; then the attempt is abandoned (dropped, as by a lost lease or a shutdown).
    let Claim::Granted(lease) = exporter.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let (run, _) = exporter.plan_or_resume(&lease, dest, None).await.unwrap();
    let lock = lock_events(&db).await;
    tokio::select! {
        delivered = exporter.deliver(&lease, &run, sink.as_ref()) => panic!("delivered under the lock: {delivered:?}"),
        () = wait_until("the attempt's temp file", || async {
            (!temp_files(dir.path()).is_empty() && copy_blocked(&db).await.is_some()).then_some(())
        }) => {}
    }
    assert_eq!(
        temp_files(dir.path()),
        Vec::<String>::new(),
        "the abandoned attempt removed its own"
    );
    // The abandoned COPY's connection is not the point here: end it, so the pool drops it.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'COPY%'",
    )
    .execute(db.pool())
    .await
    .unwrap();
    exporter.store().release(&lease).await.unwrap();

    // A process killed mid-write leaves its temp file; the next attempt of the run removes it.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
        .args(["export", "--destination", "main"])
        .env("AUDIT_EXPORTER__DATABASE__URL", &db.url)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until("the killed attempt's temp file", || async {
        (!temp_files(dir.path()).is_empty() && copy_blocked(&db).await.is_some()).then_some(())
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop(lock);
    let left = temp_files(dir.path());
    assert_eq!(
        left.len(),
        1,
        "the killed process left its temp file: {left:?}"
    );
    sqlx::query("UPDATE export_destinations SET lease_expires_at = now() - interval '1 second'")
        .execute(db.pool())
        .await
        .unwrap();

    let report = export_now(&exporter, &settings, "main").await;
    assert!(report.resumed);
    assert_eq!(report.run.id, run.id, "the same run finished");
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
    assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}

/// `{prefix}/[test/|reexport/]schema=audit_log/version=v1/year=YYYY/month=MM/day=DD/{YYYYMMDDTHHMMSSZ}_{uuid}[_partNNNN].jsonl`
fn hive_shape(key: &str, prefix: &str) -> Option<&'static str> {
    let rest = key.strip_prefix(prefix)?;
    let (folder, rest) = match rest.split_once("/schema=") {
        Some(("test", rest)) => ("test", rest),
        Some(("reexport", rest)) => ("reexport", rest),
        _ => ("scheduled", rest.strip_prefix("schema=")?),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [schema, version, year, month, day, name] = parts.as_slice() else {
        return None;
    };
    let number = |s: &str, prefix: &str, len: usize| {
        s.strip_prefix(prefix)
            .is_some_and(|n| n.len() == len && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let stem = name.strip_suffix(".jsonl")?;
    let stem = match stem.rsplit_once("_part") {
        Some((stem, n)) if n.len() == 4 => stem,
        _ => stem,
    };
    let (time, run_id) = stem.split_once('_')?;
    let ok = *schema == "audit_log"
        && *version == "version=v1"
        && number(year, "year=", 4)
        && number(month, "month=", 2)
        && number(day, "day=", 2)
        && time.len() == 16
        && time.ends_with('Z')
        && time[..8] == format!("{}{}{}", &year[5..], &month[6..], &day[4..])
        && uuid::Uuid::parse_str(run_id).is_ok();
    ok.then_some(folder)
}

#[tokio::test]
async fn test_and_re_export_objects_keep_the_hive_path_under_their_own_folder() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("main", "exports");
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__MAX_OBJECT_BYTES".into(),
        "1048576".into(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    append(&db, 3000, None).await;
    export_now(&exporter, &settings, "main").await;
    exporter.test_delivery(dest, sink.as_ref()).await.unwrap();
    let range = (Utc::now() - chrono::Duration::days(1), Utc::now());
    let report = exporter
        .reexport(dest, sink.as_ref(), range, None, &ProgressBar::hidden())
        .await
        .unwrap();
    assert!(report.locations.len() >= 2, "{report:?}");

    let objects = bucket.objects("exports/").await;
    let mut folders: Vec<&str> = objects
        .keys()
        .map(|key| {
            hive_shape(key, "exports/").unwrap_or_else(|| panic!("{key} is not on the hive path"))
        })
        .collect();
    folders.dedup();
    assert_eq!(folders, ["reexport", "scheduled", "test"]);
}

/// The heartbeat's `metadata` in the run's object, and the run's window end.
async fn heartbeat_of(
    db: &TestDb,
    dir: &Path,
    outcome: Outcome,
) -> (serde_json::Value, DateTime<Utc>) {
    let Outcome::Exported(report) = outcome else {
        panic!("expected an export, got {outcome:?}");
    };
    assert!(report.run.heartbeat_event_id.is_some(), "an empty window");
    let bytes = std::fs::read(dir.join(&report.run.object_key)).unwrap();
    let events = decode(&report.run.object_key, &bytes);
    assert_eq!(events.len(), 1);
    let end: DateTime<Utc> = sqlx::query_scalar("SELECT window_end FROM export_runs WHERE id = $1")
        .bind(report.run.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    (events[0]["metadata"].clone(), end)
}

#[tokio::test]
async fn heartbeats_name_the_window_they_cover_in_time() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, file_destination_env("main", dir.path()));
    let exporter = exporter(&db, &settings);
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);

    let outcome = exporter
        .export(dest, sink.as_ref(), When::Now)
        .await
        .unwrap();
    let (first, first_end) = heartbeat_of(&db, dir.path(), outcome).await;
    assert!(
        first["window_start"].is_null(),
        "the first window starts with the stream: {first}"
    );
    assert_eq!(first["window_end"], rfc3339(first_end));

    let outcome = exporter
        .export(dest, sink.as_ref(), When::Now)
        .await
        .unwrap();
    let (second, second_end) = heartbeat_of(&db, dir.path(), outcome).await;
    assert_eq!(second["window_start"], rfc3339(first_end), "{second}");
    assert_eq!(second["window_end"], rfc3339(second_end));
    assert!(second_end > first_end);
    // Everything in it derives from the persisted run: a retry writes the same bytes.
    assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}

#[tokio::test]
async fn a_re_export_killed_mid_way_is_marked_failed_naming_what_it_wrote() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let mut env = crate::faults::env(&db, &bucket, &proxy);
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__MAX_OBJECT_BYTES".into(),
        "1048576".into(),
    ));
    append(&db, 5000, None).await;
    assert_eq!(crate::faults::export_main(&env).await.0, Some(0));
    let to = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let reexport = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
            .args(["reexport", "--from", "2000-01-01T00:00:00Z", "--to", &to])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    let is_second = |s: &Seen| is_put_object(s) && s.path.contains("_part0002");
    proxy.inject(Fault::stall(is_second, 1, Duration::from_secs(300)));
    let mut child = reexport();
    wait_until("the stalled second object", || async {
        proxy
            .seen()
            .iter()
            .any(|s| s.status == 0 && is_second(s))
            .then_some(())
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let (id, first_key): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT id, object_key FROM export_runs WHERE kind = 'reexport' AND status = 'pending'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(bucket.objects(&first_key).await.contains_key(&first_key));

    // Once it has not renewed itself for exporter.lease_secs, the next re-export settles it.
    wait_until("the killed run's life to run out", || async {
        let over: bool = sqlx::query_scalar(
            "SELECT alive_until < clock_timestamp() FROM export_runs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        over.then_some(())
    })
    .await;
    let output = reexport().wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let (status, error, objects): (String, String, i32) =
        sqlx::query_as("SELECT status, last_error, object_count FROM export_runs WHERE id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((status.as_str(), objects), ("failed", 1));
    assert!(
        error.starts_with("interrupted: its process stopped"),
        "{error}"
    );
    assert!(
        error.contains(&format!("1 complete object(s), which stay: {first_key}")),
        "{error}"
    );
    assert!(
        error.contains(&first_key.replace("_part0001", "_part0002")),
        "{error}"
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM export_runs WHERE status = 'pending'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(pending, 0);
}
