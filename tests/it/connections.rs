//! Connections that must never go back to the pool half-read: a COPY cut off part way, and
//! `run` with a destination that fails every attempt mid-stream beside healthy ones.

use std::time::Duration;

use audit_exporter::store::Store;
use futures::StreamExt;

use crate::check::assert_exactly_once;
use crate::harness::{TestDb, files};
use crate::operate::{Running, done_runs, due_now, wait_until};

/// Events enough that a COPY of them cannot sit whole in the sockets' buffers, and that an
/// encoder fills a 5 MiB part before it notices its upload is gone.
const MANY: i64 = 30_000;

#[tokio::test]
async fn a_cut_off_copy_never_returns_its_connection_to_the_pool() {
    let db = TestDb::new().await;
    crate::append(&db, MANY, None).await;
    // One connection: whatever runs after the cut-off runs on the COPY's connection if it
    // went back to the pool.
    let store = Store::connect(&db.url, 1).await.unwrap();
    let copy_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    {
        let mut copy = store
            .copy_window(0, i64::MAX, None, None, None, None)
            .await
            .unwrap();
        let mut rows = std::pin::pin!(copy.rows().await.unwrap());
        rows.next().await.unwrap().unwrap();
    }
    for _ in 0..5 {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .expect("a statement after a cut-off COPY gets its own answer");
        assert_ne!(pid, copy_pid, "the COPY's connection went back to the pool");
    }
    wait_until("the cut-off COPY's session to end", || async {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(copy_pid)
                .fetch_one(db.pool())
                .await
                .unwrap();
        (!alive).then_some(())
    })
    .await;

    // A COPY read to its end gives its connection back.
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    {
        let mut copy = store
            .copy_window(0, i64::MAX, None, None, None, None)
            .await
            .unwrap();
        let mut rows = std::pin::pin!(copy.rows().await.unwrap());
        let mut messages = 0;
        while let Some(message) = rows.next().await {
            message.unwrap();
            messages += 1;
        }
        assert_eq!(messages, MANY + 1, "a message per row, and the trailer");
    }
    let again: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(again, pid, "a COPY read to its end keeps its connection");
}

/// Sessions of the exporter idle in a transaction for more than a few seconds: a connection
/// whose answers were left unread holds its transaction (and its row locks) open.
async fn stuck_sessions(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'audit-exporter'
           AND state LIKE 'idle in transaction%' AND now() - state_change > interval '3 seconds'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn run_with_a_destination_failing_mid_stream_keeps_its_pool_and_its_healthy_destinations() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().unwrap();
    // A directory that cannot be created: its parent is a regular file.
    std::fs::write(root.path().join("file"), b"").unwrap();
    let broken = root.path().join("file/exports");
    let (good1, good2) = (root.path().join("good1"), root.path().join("good2"));
    crate::append(&db, MANY, None).await;
    due_now(&db, &["broken", "good1", "good2"]).await;
    let mut env: Vec<(String, String)> = [
        ("DATABASE__URL", db.url.as_str()),
        ("DATABASE__MAX_CONNECTIONS", "2"),
        ("RUN__CHECK_CRON", "* * * * * *"),
        ("RUN__LISTEN", ""),
        ("RUN__SHUTDOWN_GRACE_SECS", "5"),
        ("EXPORTER__PART_SIZE_MIB", "5"),
        // Retried at every check, so its COPY is cut off again and again.
        ("RUN__FAILED_EXPORT_BACKOFF_SECS", "1"),
        ("RUN__FAILED_EXPORT_BACKOFF_MAX_SECS", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("AUDIT_EXPORTER__{k}"), v.to_owned()))
    .collect();
    for (name, dir) in [("BROKEN", &broken), ("GOOD1", &good1), ("GOOD2", &good2)] {
        env.push((
            format!("AUDIT_EXPORTER__DESTINATIONS__{name}__URL"),
            format!("file://{}", dir.display()),
        ));
    }
    let run = Running::start(None, &env);

    // Three rounds: new events, the healthy destinations due again, each exported once more
    // while the broken one fails at every check.
    for round in 1..=3 {
        wait_until("both healthy destinations to export", || async {
            assert_eq!(
                stuck_sessions(&db).await,
                0,
                "a session idle in transaction"
            );
            let done = (done_runs(&db, "good1").await, done_runs(&db, "good2").await);
            (done == (round, round)).then_some(())
        })
        .await;
        if round < 3 {
            crate::append(&db, 10, None).await;
            due_now(&db, &["good1", "good2"]).await;
        }
    }
    // The broken destination is retried (when depends on the machine's pace: wait for it).
    wait_until("the broken destination's second attempt", || async {
        let failures: i32 = sqlx::query_scalar(
            "SELECT attempts FROM export_runs WHERE destination = 'broken' AND status = 'pending'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        (failures >= 2).then_some(())
    })
    .await;
    assert_eq!(stuck_sessions(&db).await, 0);

    let lines = run.lines.clone();
    let (code, took) = run.stop().await;
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(15),
        "stopped within the 5 s grace: {took:?}"
    );
    let log = lines.lock().unwrap().join("\n");
    assert!(!log.contains("protocol error"), "{log}");
    assert!(
        log.contains("Failed to create"),
        "the broken destination's error: {log}"
    );
    for (name, dir) in [("good1", &good1), ("good2", &good2)] {
        assert_exactly_once(&db, name, None, &files(dir)).await;
    }
}

#[tokio::test]
async fn a_transaction_left_idle_is_ended_by_the_server() {
    let db = TestDb::new().await;
    let timeout: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        timeout, "1min",
        "the exporter's sessions end a forgotten transaction"
    );
}
