//! `prune`: exactly what every destination delivered goes, everything else stays, the prune
//! logs itself, and exports go on exactly once with the pruned events still in their objects.

use std::collections::BTreeMap;

use sqlx::Row;
use uuid::Uuid;

use crate::check::{HEARTBEAT, decode};
use crate::harness::{TestBucket, TestDb, settings};
use crate::lifecycle::{cli, expire_leases, now, var};
use crate::{append, destination, export_now, exporter};

/// Every event ever seen in the table: (txid, id) → (event id, tenant).
type Seen = BTreeMap<(i64, i64), (Uuid, Option<String>)>;

async fn snapshot(db: &TestDb, seen: &mut Seen) {
    let rows = sqlx::query("SELECT txid::text::bigint, id, event_id, tenant_id FROM audit_events")
        .fetch_all(db.pool())
        .await
        .unwrap();
    for row in rows {
        seen.insert((row.get(0), row.get(1)), (row.get(2), row.get(3)));
    }
}

pub(crate) async fn actions(db: &TestDb) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT action, tenant_id FROM audit_events ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// The events (heartbeats left out) in the objects of the destination's committed scheduled
/// runs, in window order.
async fn delivered(db: &TestDb, bucket: &TestBucket, name: &str) -> Vec<Uuid> {
    let objects = bucket.objects(name).await;
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT o.key FROM export_runs r JOIN export_run_objects o ON o.run_id = r.id
         WHERE r.destination = $1 AND r.kind = 'scheduled' AND r.status = 'done'
         ORDER BY r.window_lo, r.window_end, o.seq",
    )
    .bind(name)
    .fetch_all(db.pool())
    .await
    .unwrap();
    keys.iter()
        .flat_map(|k| decode(k, &objects[k]))
        .filter(|e| e["action"] != HEARTBEAT)
        .map(|e| Uuid::parse_str(e["event_id"].as_str().unwrap()).unwrap())
        .collect()
}

/// What a destination of `tenant` whose stream began at transaction id `from` must hold.
fn expected(seen: &Seen, tenant: Option<&str>, from: i64) -> Vec<Uuid> {
    seen.iter()
        .filter(|((txid, _), (_, t))| *txid >= from && (tenant.is_none() || t.as_deref() == tenant))
        .map(|(_, (id, _))| *id)
        .collect()
}

fn destinations_env(bucket: &TestBucket, all: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (name, tenant) in all {
        env.extend(bucket.destination_env(name, name));
        if let Some(tenant) = tenant {
            env.push(var(name, "TENANT_ID", tenant));
        }
    }
    env
}

#[tokio::test]
async fn prune_removes_exactly_what_every_destination_delivered_and_exports_go_on_exactly_once() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let env = destinations_env(
        &bucket,
        &[
            ("all", None),
            ("acme", Some("acme")),
            ("globex", Some("globex")),
            ("gone", Some("globex")),
        ],
    );
    let first = settings(&db, env.clone());
    let ex = exporter(&db, &first);
    append(&db, 10, Some("acme")).await;
    append(&db, 10, Some("globex")).await;
    append(&db, 5, None).await;
    for name in ["all", "acme", "globex", "gone"] {
        export_now(&ex, &first, name).await;
    }
    append(&db, 6, Some("acme")).await;
    append(&db, 6, Some("globex")).await;
    for name in ["all", "acme", "globex"] {
        export_now(&ex, &first, name).await;
    }
    append(&db, 4, Some("acme")).await;
    // acme's next run is planned and not delivered: its window holds the last 4.
    let crashed = exporter(&db, &first);
    let Ok(audit_exporter::store::Claim::Granted(lease)) =
        crashed.claim(destination(&first, "acme")).await
    else {
        panic!("lease")
    };
    let (pending, _) = crashed
        .plan_or_resume(&lease, destination(&first, "acme"), None)
        .await
        .unwrap();

    // `gone` leaves the configuration (the database still knows it); `late` joins, of acme,
    // starting now: what came before was never its to deliver.
    let mut env: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| !k.contains("__GONE__"))
        .collect();
    env.extend(destinations_env(&bucket, &[("late", Some("acme"))]));
    env.push(var("late", "START", "now"));
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let mut seen = Seen::new();
    snapshot(&db, &mut seen).await;
    let cutoff = now(&db).await.to_rfc3339();

    let (code, out, err) = cli(&["prune", "--before", &cutoff, "--dry-run"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("dry run: would prune 31 events recorded before"),
        "{out}"
    );
    for line in [
        "gone: 6 events (watermark txid",
        "not in the configuration: `audit-exporter destination forget gone` releases them",
        "all: 4 events not exported yet",
        "acme: 4 events not exported yet",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!out.contains("late") && !out.contains("globex:"), "{out}");
    assert_eq!(actions(&db).await.len(), 41, "a dry run deletes nothing");

    let (code, out, err) = cli(&["prune", "--before", &cutoff], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pruned 31 events recorded before"), "{out}");
    // Left: globex's 6 that `gone` never delivered, acme's 4 of the pending window, the record.
    let left = actions(&db).await;
    let tenants: Vec<Option<&str>> = left.iter().map(|(_, t)| t.as_deref()).collect();
    let mut want = vec![Some("globex"); 6];
    want.extend([Some("acme"); 4]);
    want.push(None);
    assert_eq!(tenants, want, "{left:?}");
    let (actor, metadata): (serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT actor, metadata FROM audit_events WHERE action = 'system.retention.pruned'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(metadata["count"], 31);
    assert!(actor["name"].as_str().unwrap().contains('@'), "{actor}");
    let (kind, status, count, who): (String, String, i64, Option<String>) = sqlx::query_as(
        "SELECT kind, status, event_count, destination FROM export_runs WHERE id = $1",
    )
    .bind(Uuid::parse_str(metadata["run_id"].as_str().unwrap()).unwrap())
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), status.as_str(), count, who),
        ("prune", "done", 31, None)
    );
    let (_, status, _) = cli(&["status"], &env);
    assert!(
        status.contains("retention: retention.keep_days unset"),
        "{status}"
    );
    assert!(
        status.contains("last prune") && status.contains("done, 31 events"),
        "{status}"
    );
    assert!(status.contains("destination forget gone"), "{status}");

    // A re-export of the pruned range says so and names the objects that carry the events.
    let acme_keys: Vec<String> = sqlx::query_scalar(
        "SELECT o.key FROM export_runs r JOIN export_run_objects o ON o.run_id = r.id
         WHERE r.destination = 'acme' AND r.status = 'done' AND r.kind = 'scheduled'
         ORDER BY r.window_lo, o.seq",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(acme_keys.len(), 2);
    let hour_ago = (now(&db).await - chrono::Duration::hours(1)).to_rfc3339();
    let (code, out, err) = cli(
        &[
            "reexport",
            "--from",
            &hour_ago,
            "--to",
            &cutoff,
            "--destination",
            "acme",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("acme: events of this range were pruned from the database"),
        "{out}"
    );
    for key in &acme_keys {
        assert!(out.contains(&format!("  {key}\n")), "{key}: {out}");
    }

    // Once `gone` is forgotten and every destination has caught up, everything delivered goes.
    let (code, _, err) = cli(&["destination", "forget", "gone"], &env);
    assert_eq!(code, Some(0), "{err}");
    expire_leases(&db).await;
    let second = settings(&db, env.clone());
    let ex = exporter(&db, &second);
    let resumed = export_now(&ex, &second, "acme").await;
    assert_eq!((resumed.run.id, resumed.events), (pending.id, 4));
    for name in ["all", "globex", "late"] {
        export_now(&ex, &second, name).await;
    }
    snapshot(&db, &mut seen).await;
    let (code, out, err) = cli(&["prune", "--before", &now(&db).await.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pruned 12 events"), "{out}");
    assert!(out.contains("held back: nothing"), "{out}");
    let left = actions(&db).await;
    assert_eq!(left, [("system.retention.pruned".to_owned(), None)]);

    // Exports go on exactly once; the pruned events are still in the objects that carried them.
    append(&db, 3, Some("acme")).await;
    append(&db, 2, Some("globex")).await;
    for name in ["all", "acme", "globex", "late"] {
        export_now(&ex, &second, name).await;
    }
    snapshot(&db, &mut seen).await;
    let late_from: i64 = sqlx::query_scalar(
        "SELECT stream_lo::text::bigint FROM export_destinations WHERE name = 'late'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    for (name, tenant, from) in [
        ("all", None, 0),
        ("acme", Some("acme"), 0),
        ("globex", Some("globex"), 0),
        ("late", Some("acme"), late_from),
    ] {
        assert_eq!(
            delivered(&db, &bucket, name).await,
            expected(&seen, tenant, from),
            "{name}: every event exactly once, in order, pruned ones included"
        );
    }
    assert_eq!(delivered(&db, &bucket, "late").await.len(), 3);
}

#[tokio::test]
async fn what_no_destination_delivered_stays_and_rows_below_the_id_floor_count_as_delivered() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = destinations_env(&bucket, &[("fresh", None)]);
    env.push(var("fresh", "START", "now"));
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let settings = settings(&db, env.clone());
    let ex = exporter(&db, &settings);
    append(&db, 5, None).await;
    export_now(&ex, &settings, "fresh").await;
    append(&db, 3, None).await;
    export_now(&ex, &settings, "fresh").await;

    // The 5 came before `fresh` started: no destination delivered them, so they stay.
    let (code, out, err) = cli(&["prune", "--before", &now(&db).await.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pruned 3 events"), "{out}");
    assert_eq!(actions(&db).await.len(), 5 + 1);

    // As after a move to a new cluster: the 5 rows came with the old cluster's transaction
    // ids (here: above the re-based watermark), up to the id floor; they were delivered there.
    sqlx::query(
        "UPDATE export_destinations
         SET watermark = '1', stream_lo = '1',
             id_floor = (SELECT max(id) FROM audit_events WHERE action <> 'system.retention.pruned')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let (code, out, err) = cli(&["prune", "--before", &now(&db).await.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pruned 5 events"), "{out}");
    assert!(out.contains("fresh: 1 event not exported yet"), "{out}");
    let left: Vec<String> = actions(&db).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(left, ["system.retention.pruned"; 2]);
}

#[tokio::test]
async fn a_running_reexport_holds_its_range_and_an_interrupted_one_does_not() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = destinations_env(&bucket, &[("all", None)]);
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let settings = settings(&db, env.clone());
    append(&db, 4, None).await;
    export_now(&exporter(&db, &settings), &settings, "all").await;
    let at = now(&db).await;
    let run = db
        .store
        .start_reexport_run(
            "all",
            audit_exporter::store::Range {
                from: at - chrono::Duration::hours(1),
                to: at,
                watermark: db.watermark_of("all").await,
                tenant_id: None,
            },
            destination(&settings, "all").format,
            false,
            600,
            |id, _| format!("all/reexport/{id}.jsonl"),
        )
        .await
        .unwrap();

    let (code, out, err) = cli(&["prune", "--before", &at.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("pruned 0 events"),
        "a re-export is reading them: {out}"
    );
    sqlx::query("UPDATE export_runs SET alive_until = now() - interval '1 second' WHERE id = $1")
        .bind(run.id)
        .execute(db.pool())
        .await
        .unwrap();
    let (code, out, err) = cli(&["prune", "--before", &at.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("pruned 4 events"),
        "its process died: {out}"
    );
}
