//! `destination cancel | forget | list` and where a new stream starts (`start`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::check::{HEARTBEAT, assert_exactly_once, decode, expected_ids};
use crate::harness::{TestDb, file_destination_env, files, settings};
use crate::lifecycle::{cli, expire_leases, now, operator_event, var};
use crate::{append, destination, export_now, exporter};

#[tokio::test]
async fn cancel_abandons_a_pending_run_and_the_next_export_loses_and_doubles_nothing() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let settings = settings(&db, env.clone());
    append(&db, 12, None).await;
    let crashed = exporter(&db, &settings);
    let dest = destination(&settings, "main");
    let Ok(audit_exporter::store::Claim::Granted(lease)) = crashed.claim(dest).await else {
        panic!("lease")
    };
    let (run, _) = crashed.plan_or_resume(&lease, dest, None).await.unwrap();
    // What a SIGKILLed attempt leaves: the object's temp file beside where it would be linked.
    let target = dir.path().join(&run.object_key);
    let leftover = target.parent().unwrap().join(format!(
        ".{}.{}.tmp",
        target.file_name().unwrap().to_string_lossy(),
        "0123456789abcdef0123456789abcdef"
    ));
    std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    std::fs::write(&leftover, b"half an object").unwrap();

    // Not while a live exporter holds the lease.
    let (code, _, err) = cli(&["destination", "cancel", "main"], &env);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(crashed.owner()) && err.contains("refused"),
        "{err}"
    );
    expire_leases(&db).await;
    // reset is refused while the run is pending.
    let (code, _, err) = cli(&["destination", "reset", "main", "--start", "now"], &env);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cancel it first with `audit-exporter destination cancel main`"),
        "{err}"
    );

    let (code, out, err) = cli(&["destination", "cancel", "main"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&run.object_key) && out.contains("cancelled"),
        "{out}"
    );
    assert!(
        !leftover.exists(),
        "the cancelled run's temp file is removed"
    );
    let (_, out, _) = cli(&["destination", "list"], &env);
    assert!(out.contains(&format!("abandoned run {}", run.id)), "{out}");
    let (tenant, actor, metadata) = operator_event(&db, "system.export.cancelled").await;
    assert_eq!(tenant, None);
    assert_eq!(actor["id"], "audit-exporter");
    assert_eq!(metadata["abandoned_key"], run.object_key.as_str());
    assert_eq!(metadata["destination"], "main");

    append(&db, 5, None).await;
    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert_eq!(
        report.events,
        12 + 1 + 5,
        "the window again, the cancel event, the new ones"
    );
    assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}

#[tokio::test]
async fn a_new_stream_starts_now_or_at_a_time() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    append(&db, 4, None).await;
    let at = now(&db).await;
    append(&db, 6, None).await;
    let since: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM audit_events WHERE recorded_at >= $1 ORDER BY txid, id",
    )
    .bind(at)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(since.len(), 6);
    let mut env = file_destination_env("from-time", &dir.path().join("t"));
    env.extend(file_destination_env("from-now", &dir.path().join("n")));
    env.push(var("from-time", "START", &at.to_rfc3339()));
    env.push(var("from-now", "START", "now"));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);

    let report = export_now(&exporter, &settings, "from-time").await;
    assert_eq!(report.events, 6);
    let first = export_now(&exporter, &settings, "from-now").await;
    assert!(first.run.heartbeat_event_id.is_some(), "nothing before now");
    append(&db, 2, None).await;
    let later: Vec<Uuid> = expected_ids(&db, None).await.split_off(10);
    assert_eq!(export_now(&exporter, &settings, "from-now").await.events, 2);

    let ids = |dir: std::path::PathBuf| {
        files(&dir)
            .iter()
            .flat_map(|(k, v)| decode(k, v))
            .filter(|e| e["action"] != HEARTBEAT)
            .map(|e| Uuid::parse_str(e["event_id"].as_str().unwrap()).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(dir.path().join("t")), since);
    assert_eq!(ids(dir.path().join("n")), later);
}

#[tokio::test]
async fn forget_drops_a_removed_destination_and_a_re_added_one_starts_anew() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (keep, gone) = (dir.path().join("keep"), dir.path().join("gone"));
    let url = ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone());
    let mut both = file_destination_env("keep", &keep);
    both.extend(file_destination_env("gone", &gone));
    both.push(url.clone());
    let mut only_keep = file_destination_env("keep", &keep);
    only_keep.push(url);
    append(&db, 3, Some("t1")).await;
    assert_eq!(cli(&["export"], &both).0, Some(0));

    let (code, _, err) = cli(&["destination", "forget", "gone"], &both);
    assert_eq!(code, Some(2));
    assert!(err.contains("`gone` is in the configuration"), "{err}");
    let (_, out, _) = cli(&["destination", "list"], &only_keep);
    let line = out.lines().find(|l| l.starts_with("gone:")).unwrap();
    assert!(line.contains("not in the configuration"), "{out}");
    let (code, out, err) = cli(&["destination", "forget", "gone"], &only_keep);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("gone: forgotten"), "{out}");
    let (_, out, _) = cli(&["destination", "list"], &only_keep);
    assert!(
        out.lines()
            .any(|l| l.starts_with("gone:") && l.contains("forgotten at")),
        "{out}"
    );
    let (_, _, metadata) = operator_event(&db, "system.export.forgotten").await;
    assert_eq!(metadata["destination"], "gone");
    // Forgetting it again changes and records nothing.
    let (code, out, err) = cli(&["destination", "forget", "gone"], &only_keep);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("gone: already forgotten at"), "{out}");
    let records: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'system.export.forgotten'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(records, 1);

    // Re-added with start = "now": a new stream, from now on.
    append(&db, 2, None).await;
    let mut again = both.clone();
    again.push(var("gone", "START", "now"));
    let (code, out, _) = cli(&["export", "--destination", "gone"], &again);
    assert_eq!(code, Some(0));
    assert!(out.contains("gone: exported a heartbeat"), "{out}");
    append(&db, 1, Some("t2")).await;
    let (_, out, _) = cli(&["export", "--destination", "gone"], &again);
    assert!(out.contains("gone: exported 1 event,"), "{out}");
    let forgotten: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT forgotten_at FROM export_destinations WHERE name = 'gone'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(forgotten, None);
}
