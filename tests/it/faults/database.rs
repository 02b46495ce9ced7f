//! Database faults under a running `run`: PostgreSQL restarted while an export uploads, and the
//! exporter's connection cut while it commits. The run is resumed with the same key, and `run`
//! keeps going.

use std::time::Duration;

use audit_exporter::store::EmbeddedPostgres;
use sqlx::Connection;
use uuid::Uuid;

use super::{Tally, assert_no_secret, drained, env};
use crate::harness::{TestBucket, TestDb};
use crate::operate::{Running, wait_until};
use crate::proxy::{Fault, Proxy, is_put_object};

/// The data of this test's own cluster, named after the test process.
const PG_DIR: &str = "audit-exporter-faults-pg-";

#[tokio::test]
async fn a_database_restart_and_a_cut_connection_lose_and_duplicate_nothing() {
    crate::harness::remove_stale_dirs(PG_DIR);
    let dir = std::env::temp_dir().join(format!("{PG_DIR}{}", std::process::id()));
    let mut server = EmbeddedPostgres::start(&dir, &["fsync=off", "max_connections=100"]).unwrap();
    let db = TestDb::on_server(&server.url("postgres")).await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let env = env(&db, &bucket, &proxy);
    let mut tally = Tally::new("database-faults");
    let run = Running::start(None, &env);
    let due = || async {
        sqlx::query(
            "UPDATE export_destinations
             SET last_slot = NULL, anchor = date_trunc('hour', now()) - interval '1 hour'
             WHERE name = 'main'",
        )
        .execute(db.pool())
        .await
        .unwrap();
    };
    wait_until("the destination's state row", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM export_destinations")
            .fetch_one(db.pool())
            .await
            .ok()
            .filter(|n| *n == 1)
    })
    .await;

    // PostgreSQL restarts while the object is on its way.
    crate::append(&db, 500, None).await;
    tally.written += 500;
    proxy.inject(Fault::stall(is_put_object, 1, Duration::from_secs(4)));
    due().await;
    wait_until("the stalled upload", || async {
        proxy.seen().iter().any(|s| s.status == 0).then_some(())
    })
    .await;
    server.restart().unwrap();
    tally.fault("pg-restart", 1);
    wait_until("the window, after the restart", || drained(&db)).await;

    // The connection is cut while the commit waits on the run's row.
    crate::append(&db, 500, None).await;
    tally.written += 500;
    let before = proxy.seen().len();
    proxy.inject(Fault::stall_answer(
        is_put_object,
        1,
        Duration::from_secs(5),
    ));
    due().await;
    wait_until("the delivered object", || async {
        proxy.seen()[before..]
            .iter()
            .any(|s| is_put_object(s) && s.status == 200)
            .then_some(())
    })
    .await;
    let mut lock = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    let (run_id, key): (Uuid, String) = sqlx::query_as(
        // Not FOR UPDATE: recording the object, before the commit, checks its run's key.
        "SELECT id, object_key FROM export_runs WHERE status = 'pending' FOR NO KEY UPDATE",
    )
    .fetch_one(&mut lock)
    .await
    .unwrap();
    let committing = "%SET status = 'done'%";
    wait_until("the blocked commit", || async {
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(committing)
        .fetch_all(db.pool())
        .await
        .unwrap();
        (!cut.is_empty()).then_some(())
    })
    .await;
    tally.fault("connection-cut", 1);
    drop(lock);
    wait_until("the window, after the cut", || drained(&db)).await;
    let finished: (String, String) =
        sqlx::query_as("SELECT status, object_key FROM export_runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        finished,
        ("done".to_owned(), key),
        "resumed with the same key"
    );

    // And `run` goes on exporting.
    crate::append(&db, 10, None).await;
    tally.written += 10;
    due().await;
    wait_until("the next window", || drained(&db)).await;
    let lines = run.lines.clone();
    let (code, _) = run.stop().await;
    assert_eq!(code, Some(0));
    for line in lines.lock().unwrap().iter() {
        assert_no_secret("run", line);
    }
    tally.finish(&db, "main", &bucket.objects("p/").await).await;
    drop(db);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
