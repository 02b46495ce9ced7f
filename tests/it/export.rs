//! The exactly-once export: windows, destinations, tenants, formats, late commits, heartbeats.

use audit_exporter::export::{Outcome, When};
use audit_exporter::sink;

use crate::check::{HEARTBEAT, assert_exactly_once, decode};
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::{append, destination, export_now, exporter};

#[tokio::test]
async fn every_event_lands_once_in_order_across_windows_destinations_and_tenants() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let dir = tempfile::tempdir().unwrap();
    let mut env = bucket.destination_env("all", "exports/all");
    env.extend(bucket.destination_env("acme", "exports/acme"));
    env.extend([
        (
            "AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID".into(),
            "acme".into(),
        ),
        (
            "AUDIT_EXPORTER__DESTINATIONS__ACME__COMPRESSION".into(),
            "gzip".into(),
        ),
        (
            "AUDIT_EXPORTER__DESTINATIONS__ACME__ENCODING".into(),
            "json".into(),
        ),
        (
            "AUDIT_EXPORTER__DESTINATIONS__ACME__KEY_LAYOUT".into(),
            "env0".into(),
        ),
    ]);
    env.extend(file_destination_env("archive", dir.path()));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__COMPRESSION".into(),
        "zstd".into(),
    ));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__TENANT_ID".into(),
        "globex".into(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);

    for round in 0..5 {
        if round != 2 {
            append(&db, 40, Some("acme")).await;
            append(&db, 25, Some("globex")).await;
            append(&db, 10, None).await;
        }
        for name in ["all", "acme", "archive"] {
            export_now(&exporter, &settings, name).await;
        }
    }

    let objects = bucket.objects("exports/all/").await;
    assert_eq!(
        assert_exactly_once(&db, "all", None, &objects).await,
        1,
        "round 2 was empty"
    );
    assert!(objects.keys().all(
        |k| k.starts_with("exports/all/schema=audit_log/version=v1/year=") && k.ends_with(".jsonl")
    ));

    let objects = bucket.objects("exports/acme/").await;
    assert_eq!(
        assert_exactly_once(&db, "acme", Some("acme"), &objects).await,
        1
    );
    assert!(
        objects
            .keys()
            .all(|k| k.starts_with("exports/acme/audit/") && k.ends_with(".json.gz")),
        "{objects:?}"
    );
    for (key, bytes) in &objects {
        assert!(
            decode(key, bytes).iter().all(|e| e["tenant_id"] == "acme"),
            "only acme's events in {key}"
        );
    }

    let objects = files(dir.path());
    assert_eq!(
        assert_exactly_once(&db, "archive", Some("globex"), &objects).await,
        1
    );
    assert!(
        objects.keys().all(|k| k.ends_with(".jsonl.zst")),
        "no temp file is left: {objects:?}"
    );
}

#[tokio::test]
async fn objects_carry_the_event_shape_and_content_headers() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("main", "");
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__COMPRESSION".into(),
        "zstd".into(),
    ));
    let settings = settings(&db, env);
    append(&db, 3, Some("acme")).await;
    let report = export_now(&exporter(&db, &settings), &settings, "main").await;

    let head = bucket.head(&report.run.object_key).await;
    assert_eq!(head.content_type(), Some("application/x-ndjson"));
    assert_eq!(head.content_encoding(), Some("zstd"));
    let objects = bucket.objects("").await;
    let events = decode(&report.run.object_key, &objects[&report.run.object_key]);
    assert_eq!(events.len(), 3);
    let first = &events[0];
    let row: (String, serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT action, actor, metadata FROM audit_events ORDER BY txid, id LIMIT 1",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(first["action"], row.0.as_str());
    assert_eq!(first["actor"], row.1);
    assert_eq!(
        first["metadata"], row.2,
        "metadata with quotes, backslashes and newlines survives"
    );
    assert_eq!(first["tenant_id"], "acme");
    let occurred = first["occurred_at"].as_str().unwrap();
    assert!(
        occurred.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(occurred).is_ok(),
        "{occurred}"
    );
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_still_exported_and_rollbacks_never_are() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, file_destination_env("main", dir.path()));
    let exporter = exporter(&db, &settings);

    // `early` takes its txid first, then `later` takes one and commits before `early` does.
    let mut early = db.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO audit_events (occurred_at, action, actor) VALUES (now(), 'early.txid', '{\"id\":\"a\"}')")
        .execute(&mut *early)
        .await
        .unwrap();
    append(&db, 5, None).await;
    let mut rolled_back = db.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO audit_events (occurred_at, action, actor) VALUES (now(), 'rolled.back', '{\"id\":\"r\"}')")
        .execute(&mut *rolled_back)
        .await
        .unwrap();

    let first = export_now(&exporter, &settings, "main").await;
    assert!(
        first.run.heartbeat_event_id.is_some(),
        "the open transaction holds the horizon: nothing can be exported yet"
    );

    rolled_back.rollback().await.unwrap();
    early.commit().await.unwrap();
    let second = export_now(&exporter, &settings, "main").await;
    assert_eq!(second.events, 6, "the late commit and the events behind it");

    let objects = files(dir.path());
    let events = decode(&second.run.object_key, &objects[&second.run.object_key]);
    assert_eq!(events[0]["action"], "early.txid", "exported in txid order");
    assert!(
        objects
            .values()
            .flat_map(|b| String::from_utf8_lossy(b)
                .into_owned()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>())
            .all(|l| !l.contains("rolled.back"))
    );
    assert_exactly_once(&db, "main", None, &objects).await;
}

#[tokio::test]
async fn an_empty_window_yields_one_heartbeat_and_the_next_window_none() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let settings = settings(&db, bucket.destination_env("main", "hb"));
    let exporter = exporter(&db, &settings);

    let empty = export_now(&exporter, &settings, "main").await;
    assert_eq!(
        (empty.events, empty.run.heartbeat_event_id.is_some()),
        (0, true)
    );
    append(&db, 4, None).await;
    let full = export_now(&exporter, &settings, "main").await;
    assert_eq!(
        (full.events, full.run.heartbeat_event_id.is_some()),
        (4, false)
    );

    let objects = bucket.objects("hb/").await;
    assert_eq!(objects.len(), 2);
    let heartbeat = decode(&empty.run.object_key, &objects[&empty.run.object_key]);
    assert_eq!(heartbeat.len(), 1);
    assert_eq!(heartbeat[0]["action"], HEARTBEAT);
    assert_eq!(
        heartbeat[0]["actor"],
        serde_json::json!({"type": "system", "id": "audit-exporter"})
    );
    assert_eq!(heartbeat[0]["metadata"]["destination"], "main");
    assert_eq!(heartbeat[0]["metadata"]["run_id"], empty.run.id.to_string());
    // The heartbeat is recorded with its run, not in the audit table, so it is never exported again.
    let in_table: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = $1")
        .bind(HEARTBEAT)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(in_table, 0);
    assert_eq!(assert_exactly_once(&db, "main", None, &objects).await, 1);
}

#[tokio::test]
async fn if_due_follows_the_stored_schedule() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__EVERY_HOURS".into(),
        "6".into(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();

    let Outcome::NotDue { next_due } = exporter
        .export(dest, sink.as_ref(), When::IfDue)
        .await
        .unwrap()
    else {
        panic!("a new destination waits for the next full hour");
    };
    let anchor: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT anchor FROM export_destinations WHERE name = 'main'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(next_due, anchor);
    assert_eq!(anchor.timestamp() % 3600, 0);
    assert!(
        anchor > chrono::Utc::now() && anchor <= chrono::Utc::now() + chrono::Duration::hours(1)
    );

    // Thirteen hours later (the anchor moved back): the 12 h due time is served by one run.
    sqlx::query("UPDATE export_destinations SET anchor = anchor - interval '13 hours'")
        .execute(db.pool())
        .await
        .unwrap();
    append(&db, 3, None).await;
    let Outcome::Exported(report) = exporter
        .export(dest, sink.as_ref(), When::IfDue)
        .await
        .unwrap()
    else {
        panic!("due after downtime");
    };
    assert_eq!(
        report.run.slot,
        Some(anchor - chrono::Duration::hours(13) + chrono::Duration::hours(12))
    );
    assert!(matches!(
        exporter
            .export(dest, sink.as_ref(), When::IfDue)
            .await
            .unwrap(),
        Outcome::NotDue { .. }
    ));

    // A new frequency re-anchors at the next full hour.
    let mut env = file_destination_env("main", dir.path());
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__EVERY_HOURS".into(),
        "2".into(),
    ));
    let changed = crate::harness::settings(&db, env);
    let Outcome::NotDue { next_due } = exporter
        .export(&changed.destinations[0], sink.as_ref(), When::IfDue)
        .await
        .unwrap()
    else {
        panic!("not due right after a change");
    };
    assert!(next_due > chrono::Utc::now() && next_due.timestamp() % 3600 == 0);
    assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}
