//! What holds events back from a prune comes from the tables alone: `prune` records every
//! configured destination first, and `audit_prune_batch` takes no holds from its caller. A
//! pending run's window holds only what it selects, and a tenant whose events were all pruned
//! stays known.

use sqlx::Row;
use uuid::Uuid;

use crate::harness::{TestDb, file_destination_env, settings};
use crate::lifecycle::{cli, now, var};
use crate::{append, destination, export_now, exporter};

/// File destinations, each in its own directory under `root`, with their tenant filters.
fn destinations(root: &std::path::Path, all: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (name, tenant) in all {
        env.extend(file_destination_env(name, &root.join(name)));
        if let Some(tenant) = tenant {
            env.push(var(name, "TENANT_ID", tenant));
        }
    }
    env
}

async fn tenants_left(db: &TestDb) -> Vec<Option<String>> {
    sqlx::query_scalar(
        "SELECT tenant_id FROM audit_events WHERE action NOT LIKE 'system.%' ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn every_hold_the_configuration_needs_is_in_the_tables_before_a_prune() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().unwrap();
    let first = destinations(
        root.path(),
        &[
            ("all", None),
            ("g", Some("globex")),
            ("old", Some("umbrella")),
        ],
    );
    let config = settings(&db, first.clone());
    let ex = exporter(&db, &config);
    for tenant in ["acme", "globex", "umbrella", "initech"] {
        append(&db, 2, Some(tenant)).await;
    }
    for name in ["all", "g", "old"] {
        export_now(&ex, &config, name).await;
    }
    // `old` leaves the configuration and is forgotten.
    let mut env: Vec<_> = first
        .into_iter()
        .filter(|(k, _)| !k.contains("__OLD__"))
        .collect();
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let (code, _, err) = cli(&["destination", "forget", "old"], &env);
    assert_eq!(code, Some(0), "{err}");

    // Then: `g` is meant for acme now (refused until a reset), `old` is back (from the
    // beginning), and `fresh` joins for initech; none has exported since.
    env.retain(|(k, _)| !k.contains("__G__TENANT_ID"));
    env.push(var("g", "TENANT_ID", "acme"));
    env.extend(destinations(
        root.path(),
        &[("old", Some("umbrella")), ("fresh", Some("initech"))],
    ));
    let (code, out, err) = cli(&["prune", "--before", &now(&db).await.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pruned 2 events"), "globex's only: {out}");
    let mut left = tenants_left(&db).await;
    left.sort();
    let want: Vec<Option<String>> = ["acme", "acme", "initech", "initech", "umbrella", "umbrella"]
        .map(|t| Some(t.to_owned()))
        .into();
    assert_eq!(left, want);
    let (change, fresh_started): (Option<serde_json::Value>, bool) = sqlx::query_as(
        "SELECT (SELECT tenant_change FROM export_destinations WHERE name = 'g'),
                (SELECT stream_started FROM export_destinations WHERE name = 'fresh')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(change, Some(serde_json::json!({"tenant_id": "acme"})));
    assert!(fresh_started);

    // Called as the exporter's role could call it, the function alone holds all that back.
    let run = db
        .store
        .start_prune_run(now(&db).await, &audit_exporter::commands::operator())
        .await
        .unwrap();
    let row = sqlx::query("SELECT deleted FROM audit_prune_batch($1, 0, 1000000)")
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>(0), 0);
    assert_eq!(tenants_left(&db).await.len(), 6);
}

#[tokio::test]
async fn a_pending_run_holds_only_what_its_window_selects() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().unwrap();
    let mut env = destinations(root.path(), &[("all", None), ("acme", Some("acme"))]);
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let config = settings(&db, env.clone());
    let ex = exporter(&db, &config);
    append(&db, 2, Some("acme")).await;
    append(&db, 3, Some("globex")).await;
    export_now(&ex, &config, "all").await;
    // acme's next run is planned over a window that spans globex's events too.
    let crashed = exporter(&db, &config);
    let Ok(audit_exporter::store::Claim::Granted(lease)) =
        crashed.claim(destination(&config, "acme")).await
    else {
        panic!("lease")
    };
    crashed
        .plan_or_resume(&lease, destination(&config, "acme"), None)
        .await
        .unwrap();
    let (code, out, err) = cli(&["prune", "--before", &now(&db).await.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pruned 3 events"), "{out}");
    assert_eq!(
        tenants_left(&db).await,
        [Some("acme".to_owned()), Some("acme".to_owned())]
    );
}

#[tokio::test]
async fn a_tenant_whose_events_were_all_pruned_is_still_known() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().unwrap();
    let mut env = destinations(root.path(), &[("all", None), ("globex", Some("globex"))]);
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let config = settings(&db, env.clone());
    let ex = exporter(&db, &config);
    append(&db, 2, Some("acme")).await;
    append(&db, 2, Some("globex")).await;
    for name in ["all", "globex"] {
        export_now(&ex, &config, name).await;
    }
    let (code, out, err) = cli(&["prune", "--before", &now(&db).await.to_rfc3339()], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pruned 4 events"), "{out}");

    // globex is known by its committed runs, acme by the prune that deleted its events (no
    // destination of its own had delivered them); a typo is still a typo.
    env.extend(destinations(
        root.path(),
        &[("acme", Some("acme")), ("typo", Some("Acme"))],
    ));
    let run_id: Uuid =
        sqlx::query_scalar("SELECT run_id FROM export_pruned_tenants WHERE tenant_id = 'acme'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_ne!(run_id, Uuid::nil());
    for args in [&["config", "check"][..], &["status"][..]] {
        let (code, out, err) = cli(args, &env);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        let warned: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("has ever been recorded"))
            .collect();
        assert_eq!(warned.len(), 1, "{args:?}: {out}");
        assert!(warned[0].contains("\"Acme\""), "{out}");
    }
}

#[tokio::test]
async fn a_watermark_of_another_cluster_refuses_the_prune() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().unwrap();
    let mut env = destinations(root.path(), &[("all", None)]);
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let config = settings(&db, env.clone());
    append(&db, 2, None).await;
    export_now(&exporter(&db, &config), &config, "all").await;
    // As after a dump and restore into a new cluster: the watermark is the old cluster's,
    // above every transaction id here, and the new events lie below it.
    sqlx::query("UPDATE export_destinations SET watermark = '100000000', cluster_id = NULL")
        .execute(db.pool())
        .await
        .unwrap();
    append(&db, 3, None).await;
    let (code, _, err) = cli(&["prune", "--before", &now(&db).await.to_rfc3339()], &env);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "destination all has its watermark 100000000 above this cluster's transaction ids"
        ),
        "{err}"
    );
    assert!(
        err.contains("audit-exporter destination reset all --start TIME"),
        "{err}"
    );
    assert_eq!(tenants_left(&db).await.len(), 5, "nothing deleted");
}
