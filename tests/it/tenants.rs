//! Many tenants: a tenant destination reads its own events by the `(tenant_id, txid, id)`
//! index, hundreds of tenant destinations export and show in one go, and an interrupted build
//! of that index is mended by the next `migrate`.

use std::collections::BTreeMap;

use audit_exporter::commands;
use audit_exporter::export::When;
use audit_exporter::store::After;

use crate::append;
use crate::check::assert_exactly_once;
use crate::harness::{TestDb, files, settings};

const TENANT_INDEX: &str = "audit_events_tenant_txid_id";

/// The horizon: every transaction below it has ended.
async fn horizon(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_window_and_its_waiting_count_read_by_the_tenant_index() {
    let db = TestDb::new().await;
    // History, then a window of a few transactions: 400 tenants and events without one,
    // interleaved as an application writes them.
    let insert = "INSERT INTO audit_events (tenant_id, action, actor)
         SELECT CASE WHEN g % 401 = 0 THEN NULL ELSE 'tenant-' || (g % 401) END, 'user.login',
                jsonb_build_object('id', 'u-' || g)
         FROM generate_series(1, $1) g";
    sqlx::query(insert)
        .bind(20_000)
        .execute(db.pool())
        .await
        .unwrap();
    let lo = horizon(&db).await;
    for _ in 0..5 {
        sqlx::query(insert)
            .bind(2_000)
            .execute(db.pool())
            .await
            .unwrap();
    }
    append(&db, 50, Some("tenant-7")).await;
    sqlx::query("ANALYZE audit_events")
        .execute(db.pool())
        .await
        .unwrap();
    let hi = horizon(&db).await;

    let mut copy = db
        .store
        .copy_window(lo, hi, Some("tenant-7"), None, None, None)
        .await
        .unwrap();
    let plan = copy.plan().await.unwrap();
    assert!(plan.contains(TENANT_INDEX), "{plan}");
    drop(copy);
    let mut copy = db
        .store
        .copy_window(
            lo,
            hi,
            Some("tenant-7"),
            Some(5),
            None,
            Some(After {
                day: None,
                txid: lo,
                id: 20_010,
            }),
        )
        .await
        .unwrap();
    let plan = copy.plan().await.unwrap();
    assert!(plan.contains(TENANT_INDEX), "a resumed window too: {plan}");
    drop(copy);
    let mut copy = db
        .store
        .copy_window(lo, hi, None, None, None, None)
        .await
        .unwrap();
    let plan = copy.plan().await.unwrap();
    assert!(!plan.contains(TENANT_INDEX), "all events: {plan}");
    drop(copy);

    let plan = db
        .store
        .waiting_events_plan(&[(lo, Some("tenant-7")), (lo, None)])
        .await
        .unwrap();
    assert!(plan.contains(TENANT_INDEX), "{plan}");
    assert!(plan.contains("audit_events_txid_id"), "{plan}");

    let waiting = db
        .store
        .waiting_events_of(&[
            (lo, Some("tenant-7")),
            (0, None),
            (0, Some("nobody")),
            (hi, Some("tenant-7")),
        ])
        .await
        .unwrap();
    let counts: Vec<i64> = waiting.iter().map(|(n, _)| *n).collect();
    assert_eq!(counts, [25 + 50, 30_050, 0, 0]);
    assert!(waiting[0].1.is_some() && waiting[2].1.is_none());
}

async fn index_definition(db: &TestDb) -> Option<(String, bool)> {
    sqlx::query_as(
        "SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1",
    )
    .bind(TENANT_INDEX)
    .fetch_optional(db.pool())
    .await
    .unwrap()
}

/// Leaves what an interrupted `CREATE INDEX CONCURRENTLY` leaves: an INVALID index of the name.
async fn interrupt_the_build(db: &TestDb) {
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {TENANT_INDEX}")))
        .execute(db.pool())
        .await
        .unwrap();
    let failed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {TENANT_INDEX} ON audit_events (tenant_id)"
    )))
    .execute(db.pool())
    .await;
    assert!(failed.is_err(), "two events of one tenant fail the build");
    assert!(db.store.index_is_invalid(TENANT_INDEX).await.unwrap());
}

#[tokio::test]
async fn an_interrupted_index_build_is_dropped_and_built_again_by_migrate() {
    let db = TestDb::new().await;
    append(&db, 2, Some("acme")).await;
    let built = index_definition(&db).await.expect("built by the migration");
    assert!(
        built.1 && built.0.contains("(tenant_id, txid, id)"),
        "{built:?}"
    );
    let settings = settings(&db, vec![]);

    // Interrupted before the migration was recorded: the next migrate builds it.
    interrupt_the_build(&db).await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 20261129000041")
        .execute(db.pool())
        .await
        .unwrap();
    let mut out = Vec::new();
    commands::migrate(&settings, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(&format!(
            "index {TENANT_INDEX} was left INVALID by an interrupted build: dropped and built again"
        )),
        "{out}"
    );
    assert_eq!(index_definition(&db).await, Some(built.clone()));
    assert!(db.store.unapplied_migrations().await.unwrap().is_empty());

    // Left INVALID after the migration was recorded (a rebuild by hand that failed): mended too.
    interrupt_the_build(&db).await;
    let mended = db.store.migrate().await.unwrap();
    assert_eq!(mended.len(), 1, "{mended:?}");
    assert_eq!(index_definition(&db).await, Some(built));
    assert!(
        db.store.migrate().await.unwrap().is_empty(),
        "nothing left to mend"
    );
}

#[tokio::test]
async fn two_hundred_tenant_destinations_export_their_own_events_and_all_show_in_status() {
    const TENANTS: usize = 200;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let tenant = |n: usize| format!("tenant-{n:03}");
    let mut env = Vec::new();
    for n in 0..TENANTS {
        let key = |k: &str| format!("AUDIT_EXPORTER__DESTINATIONS__T{n:03}__{k}");
        env.push((
            key("URL"),
            format!("file://{}/t{n:03}", dir.path().display()),
        ));
        env.push((key("TENANT_ID"), tenant(n)));
    }
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__ALL__URL".into(),
        format!("file://{}/all", dir.path().display()),
    ));
    let settings = settings(&db, env);
    assert_eq!(settings.destinations.len(), TENANTS + 1);
    // Every tenant a few events (tenant n has n % 4 + 1), and events of no tenant.
    sqlx::query(
        "INSERT INTO audit_events (tenant_id, action, actor)
         SELECT 'tenant-' || lpad(t::text, 3, '0'), 'user.login', jsonb_build_object('id', 'u-' || k)
         FROM generate_series(0, $1 - 1) t, generate_series(0, t % 4) k",
    )
    .bind(TENANTS as i32)
    .execute(db.pool())
    .await
    .unwrap();
    append(&db, 5, None).await;
    append(&db, 3, Some(&tenant(42))).await;

    let mut out = Vec::new();
    let summary = commands::export(&settings, &[], When::Now, &mut out)
        .await
        .unwrap();
    assert_eq!(
        (summary.exported, summary.failed),
        (TENANTS + 1, 0),
        "{}",
        String::from_utf8_lossy(&out)
    );
    for n in 0..TENANTS {
        let objects = files(&dir.path().join(format!("t{n:03}")));
        assert_exactly_once(&db, &format!("t{n:03}"), Some(&tenant(n)), &objects).await;
    }
    let objects = files(&dir.path().join("all"));
    assert_exactly_once(&db, "all", None, &objects).await;

    append(&db, 2, Some(&tenant(7))).await;
    let mut out = Vec::new();
    commands::status(&settings, true, &mut out).await.unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let shown: BTreeMap<&str, i64> = status["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["recent_runs"].as_array().unwrap().len(), 1, "{d}");
            (
                d["name"].as_str().unwrap(),
                d["waiting_events"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown.len(), TENANTS + 1);
    let waiting: Vec<(&str, i64)> = shown.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(waiting, [("all", 2), ("t007", 2)]);
}
