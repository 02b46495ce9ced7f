//! Partitions by event time: a run writes one object per day (UTC) of the events' occurred_at,
//! each under its own day, exactly once, and resumes after a stop with the same keys and bytes;
//! Security Lake's layout, read back by DuckDB.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value;

use crate::analytics::{VALIDATE_OCSF_PARQUET, run_python};
use crate::check::{assert_exactly_once, decode};
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::split::stop_before;
use crate::{destination, export_now, exporter};

/// Appends `n` events that occurred on `day` (at noon, a second apart), in one transaction.
async fn append_on(db: &TestDb, day: &str, n: i64) {
    sqlx::query(
        r#"INSERT INTO audit_events (occurred_at, action, actor, metadata)
           SELECT ($1::date + time '12:00') AT TIME ZONE 'UTC' + make_interval(secs => g),
                  'user.login', jsonb_build_object('id', 'u-' || g), jsonb_build_object('n', g)
           FROM generate_series(1, $2) g"#,
    )
    .bind(day)
    .bind(n)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Three days, written out of order: the transactions' order is not the days'.
async fn append_three_days(db: &TestDb) {
    append_on(db, "2026-03-03", 40).await;
    append_on(db, "2026-03-01", 30).await;
    append_on(db, "2026-03-02", 20).await;
    append_on(db, "2026-03-01", 10).await;
}

fn env_of(name: &str, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                format!("AUDIT_EXPORTER__DESTINATIONS__{}__{k}", name.to_uppercase()),
                (*v).to_owned(),
            )
        })
        .collect()
}

/// The day folders of a hive key: `year=2026/month=03/day=01` as a date.
fn hive_day(key: &str) -> NaiveDate {
    let field = |name: &str| -> u32 {
        let at = key.find(&format!("/{name}=")).unwrap() + name.len() + 2;
        key[at..].split('/').next().unwrap().parse().unwrap()
    };
    NaiveDate::from_ymd_opt(field("year") as i32, field("month"), field("day")).unwrap()
}

#[tokio::test]
async fn events_of_several_days_land_each_in_its_day_and_a_stop_between_days_resumes_with_the_same_bytes()
 {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let dir = tempfile::tempdir().unwrap();
    let mut env = bucket.destination_env("main", "p");
    env.extend(env_of("main", &[("PARTITION_TIME", "event")]));
    // The same window, by a process that never stopped, as the reference.
    env.extend(file_destination_env("reference", dir.path()));
    env.extend(env_of("reference", &[("PARTITION_TIME", "event")]));
    let settings = settings(&db, env);
    append_three_days(&db).await;

    let _dest = destination(&settings, "main");
    stop_before(&db, &settings, "main", "_part0002").await;
    let before = bucket.objects("p/").await;
    assert_eq!(before.len(), 1, "{:?}", before.keys());
    let (first_key, first_bytes) = before.iter().next().unwrap();
    assert_eq!(
        hive_day(first_key),
        NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
    );
    let mut out = Vec::new();
    audit_exporter::commands::status(&settings, false, &mut out)
        .await
        .unwrap();
    let status = String::from_utf8(out).unwrap();
    assert!(status.contains(first_key.as_str()), "{status}");

    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert!(report.resumed);
    assert_eq!(report.events, 100);
    let objects = bucket.objects("p/").await;
    assert_eq!(&objects[first_key], first_bytes, "not written again");
    let days: Vec<(NaiveDate, usize)> = objects
        .iter()
        .map(|(key, bytes)| {
            let day = hive_day(key);
            let events = decode(key, bytes);
            for event in &events {
                let at = event["occurred_at"].as_str().unwrap();
                assert!(
                    at.starts_with(&day.format("%Y-%m-%d").to_string()),
                    "{key} holds an event of {at}"
                );
            }
            (day, events.len())
        })
        .collect();
    let on = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    assert_eq!(days, [(on(1), 40), (on(2), 20), (on(3), 40)]);
    assert!(
        objects
            .keys()
            .zip(1..)
            .all(|(k, n)| k.ends_with(&format!("_part{n:04}.jsonl"))),
        "numbered across the days: {:?}",
        objects.keys()
    );
    let recorded: Vec<Option<NaiveDate>> = report.objects.iter().map(|o| o.partition_day).collect();
    assert_eq!(recorded, [Some(on(1)), Some(on(2)), Some(on(3))]);
    assert_eq!(assert_exactly_once(&db, "main", None, &objects).await, 0);

    // Cut where a process that never stopped cuts: the same bytes, object for object.
    export_now(&exporter(&db, &settings), &settings, "reference").await;
    let reference: Vec<Vec<u8>> = files(dir.path()).into_values().collect();
    let resumed: Vec<Vec<u8>> = objects.into_values().collect();
    assert_eq!(reference, resumed, "the same cut and bytes");

    // An empty window: one heartbeat object, under the window's day.
    export_now(&exporter(&db, &settings), &settings, "main").await;
    let objects = bucket.objects("p/").await;
    assert_eq!(assert_exactly_once(&db, "main", None, &objects).await, 1);

    // A re-export of the three days: one object a day too, under reexport/.
    let day = |d| on(d).and_hms_opt(0, 0, 0).unwrap().and_utc();
    audit_exporter::commands::reexport(
        &settings,
        &["main".to_owned()],
        (day(1), day(4)),
        None,
        &mut Vec::new(),
    )
    .await
    .unwrap();
    let again: Vec<(NaiveDate, usize)> = bucket
        .objects("p/reexport/")
        .await
        .iter()
        .map(|(key, bytes)| (hive_day(key), decode(key, bytes).len()))
        .collect();
    assert_eq!(again, [(on(1), 40), (on(2), 20), (on(3), 40)]);
}

#[tokio::test]
async fn security_lake_keys_hold_one_event_day_each_and_duckdb_reads_them() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("lake", "ext/audit");
    env.extend(env_of(
        "lake",
        &[
            ("KEY_LAYOUT", "security-lake"),
            ("ACCOUNT_ID", "123456789012"),
            ("ENCODING", "parquet"),
            ("SCHEMA", "ocsf"),
            ("COMPRESSION", "zstd"),
        ],
    ));
    let settings = settings(&db, env);
    append_on(&db, "2026-03-02", 25).await;
    append_on(&db, "2026-03-01", 15).await;
    let report = export_now(&exporter(&db, &settings), &settings, "lake").await;
    assert_eq!(report.events, 40);
    let objects = bucket.objects("ext/audit/").await;
    let keys: Vec<&String> = objects.keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut per_day = BTreeMap::new();
    for (key, bytes) in &objects {
        let rest = key
            .strip_prefix("ext/audit/region=us-east-1/accountId=123456789012/eventDay=")
            .unwrap_or_else(|| panic!("{key} is not in Security Lake's layout"));
        let (day, file) = rest.split_once('/').unwrap();
        assert!(file.ends_with(".parquet") && !file.contains('/'), "{key}");
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        let rows: Vec<Value> = run_python(VALIDATE_OCSF_PARQUET, &[path.to_str().unwrap()])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for row in &rows {
            let at = chrono::DateTime::from_timestamp_millis(row[1].as_i64().unwrap()).unwrap();
            assert_eq!(at.format("%Y%m%d").to_string(), day, "{key}: {row}");
        }
        per_day.insert(day.to_owned(), rows.len());
    }
    assert_eq!(
        per_day,
        BTreeMap::from([("20260301".to_owned(), 15), ("20260302".to_owned(), 25)])
    );
}

#[tokio::test]
async fn times_without_a_day_go_with_the_windows_end_and_a_resume_keeps_them_once() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let reference = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.extend(env_of("main", &[("PARTITION_TIME", "event")]));
    env.extend(file_destination_env("reference", reference.path()));
    env.extend(env_of("reference", &[("PARTITION_TIME", "event")]));
    let settings = settings(&db, env);
    // Rows written before the time-range rule: infinite times.
    sqlx::query("ALTER TABLE audit_events DROP CONSTRAINT audit_events_time_range")
        .execute(db.pool())
        .await
        .unwrap();
    append_on(&db, "2026-03-02", 3).await;
    for at in ["-infinity", "infinity"] {
        sqlx::query(
            "INSERT INTO audit_events (occurred_at, action, actor) VALUES ($1::text::timestamptz, 'odd.time', '{}')",
        )
        .bind(at)
        .execute(db.pool())
        .await
        .unwrap();
    }
    append_on(&db, "2026-03-01", 3).await;

    let _dest = destination(&settings, "main");
    stop_before(&db, &settings, "main", "_part0003").await;
    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert_eq!(report.events, 8);
    let objects = files(dir.path());
    assert_eq!(objects.len(), 3, "{:?}", objects.keys());
    assert_eq!(assert_exactly_once(&db, "main", None, &objects).await, 0);
    export_now(&exporter(&db, &settings), &settings, "reference").await;
    let resumed: Vec<Vec<u8>> = objects.into_values().collect();
    let uninterrupted: Vec<Vec<u8>> = files(reference.path()).into_values().collect();
    assert_eq!(resumed, uninterrupted, "the same cut and bytes");
}
