//! A prune's deletions are always on record: batch by batch on its run, and in one
//! `system.retention.pruned` event however it ends (done, stopped by a signal, or killed and
//! settled by the next prune, exactly once); a dead prune holds others off for a minute at most.

use nix::sys::signal::{Signal, kill};
use sqlx::Row;
use uuid::Uuid;

use audit_exporter::commands::{BATCH_IDS, operator};

use crate::harness::{TestDb, file_destination_env, settings};
use crate::lifecycle::{cli, now};
use crate::operate::{Running, wait_until};
use crate::{append, export_now, exporter};

/// Three batches of delivered events; returns the environment of their one destination.
async fn three_batches_delivered(db: &TestDb, dir: &std::path::Path) -> Vec<(String, String)> {
    let mut env = file_destination_env("main", dir);
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    append(db, 3 * BATCH_IDS, None).await;
    let settings = settings(db, env.clone());
    export_now(&exporter(db, &settings), &settings, "main").await;
    env
}

/// Locks an event of the prune's second batch, so the prune stops in it until released.
async fn hold_second_batch(db: &TestDb) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = db.pool().begin().await.unwrap();
    sqlx::query(
        "SELECT id FROM audit_events WHERE id = (SELECT min(id) FROM audit_events) + $1 FOR UPDATE",
    )
    .bind(BATCH_IDS + 10)
    .fetch_one(&mut *lock)
    .await
    .unwrap();
    lock
}

/// The pending prune's recorded count, once its first batch committed.
async fn first_batch_recorded(db: &TestDb) -> i64 {
    wait_until("the prune's first batch", || async {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT event_count FROM export_runs WHERE kind = 'prune' AND status = 'pending'",
        )
        .fetch_optional(db.pool())
        .await
        .unwrap()
        .flatten()
        .filter(|n| *n > 0)
    })
    .await
}

async fn events_left(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action <> 'system.retention.pruned'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap()
}

/// The metadata of every `system.retention.pruned` event, in order.
async fn pruned_events(db: &TestDb) -> Vec<serde_json::Value> {
    sqlx::query_scalar(
        "SELECT metadata FROM audit_events WHERE action = 'system.retention.pruned' ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

async fn prune_run(db: &TestDb, id: &serde_json::Value) -> (String, i64, Option<String>) {
    sqlx::query_as("SELECT status, event_count, last_error FROM export_runs WHERE id = $1")
        .bind(Uuid::parse_str(id.as_str().unwrap()).unwrap())
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_killed_prune_is_on_record_and_the_next_prune_settles_it_a_minute_later_at_most() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = three_batches_delivered(&db, dir.path()).await;
    let lock = hold_second_batch(&db).await;
    let cutoff = now(&db).await.to_rfc3339();
    let running = Running::spawn(&["prune", "--before", &cutoff], &env);
    let recorded = first_batch_recorded(&db).await;
    running.kill().await;
    lock.rollback().await.unwrap();
    assert_eq!(recorded, BATCH_IDS);
    assert_eq!(
        events_left(&db).await,
        3 * BATCH_IDS - recorded,
        "what went is exactly what the run records"
    );
    assert!(pruned_events(&db).await.is_empty());

    // Another prune is held off until the dead one's short lease has passed, and says until when.
    let (code, _, err) = cli(&["prune", "--before", &cutoff], &env);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another prune is running"), "{err}");
    let until = err
        .split("Refused until ")
        .nth(1)
        .and_then(|rest| rest.split(" at the latest").next())
        .unwrap_or_else(|| panic!("{err}"));
    let until: chrono::DateTime<chrono::Utc> = until.parse().unwrap();
    let left = until - now(&db).await;
    assert!(
        left > chrono::Duration::zero() && left <= chrono::Duration::seconds(60),
        "{left}: {err}"
    );

    // The minute passes: the next prune settles the dead one, then prunes the rest.
    sqlx::query(
        "UPDATE export_runs SET alive_until = now() - interval '1 second' WHERE status = 'pending'",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let (code, out, err) = cli(&["prune", "--before", &cutoff], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("pruned {} events", 3 * BATCH_IDS - recorded)),
        "{out}"
    );
    let events = pruned_events(&db).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let (dead, this) = (&events[0], &events[1]);
    assert_eq!(
        (&dead["count"], &dead["complete"]),
        (&recorded.into(), &false.into()),
        "{dead}"
    );
    assert!(dead["settled_by"].as_str().unwrap().contains('@'), "{dead}");
    assert!(
        dead["stopped"].as_str().unwrap().starts_with("interrupted"),
        "{dead}"
    );
    let (status, count, error) = prune_run(&db, &dead["run_id"]).await;
    assert_eq!((status.as_str(), count), ("failed", recorded));
    assert!(error.unwrap().starts_with("interrupted"));
    assert_eq!(
        (&this["count"], &this["complete"]),
        (&(3 * BATCH_IDS - recorded).into(), &true.into())
    );
    assert_eq!(events_left(&db).await, 0);
}

#[tokio::test]
async fn a_prune_stopped_by_sigterm_stops_between_batches_and_logs_what_went() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = three_batches_delivered(&db, dir.path()).await;
    let lock = hold_second_batch(&db).await;
    let cutoff = now(&db).await.to_rfc3339();
    let running = Running::spawn(&["prune", "--before", &cutoff], &env);
    first_batch_recorded(&db).await;
    kill(running.pid(), Signal::SIGTERM).unwrap();
    running
        .wait_for_log("the prune's stop", |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Stopping: the prune stops after the batch"))
        })
        .await;
    lock.rollback().await.unwrap();
    let lines = running.lines.clone();
    assert_eq!(running.exit().await, Some(1));
    let stderr = lines.lock().unwrap().join("\n");
    assert!(stderr.contains("prune stopped (SIGTERM"), "{stderr}");

    let gone = 3 * BATCH_IDS - events_left(&db).await;
    assert!((BATCH_IDS..3 * BATCH_IDS).contains(&gone), "{gone}");
    let events = pruned_events(&db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (&events[0]["count"], &events[0]["complete"]),
        (&gone.into(), &false.into())
    );
    let (status, count, error) = prune_run(&db, &events[0]["run_id"]).await;
    assert_eq!((status.as_str(), count), ("failed", gone));
    assert!(error.unwrap().starts_with("stopped between batches"));
}

#[tokio::test]
async fn two_settlers_of_a_dead_prune_append_its_event_once() {
    let db = TestDb::new().await;
    let by = operator();
    let id = db.store.start_prune_run(now(&db).await, &by).await.unwrap();
    sqlx::query("UPDATE export_runs SET alive_until = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await
        .unwrap();
    // Both settlers reach the row while it is locked, so they race for it once it is free.
    let mut lock = db.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM export_runs WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *lock)
        .await
        .unwrap();
    let settlers: Vec<_> = (0..2)
        .map(|_| {
            let store = db.store.clone();
            let by = by.clone();
            tokio::spawn(async move { store.settle_dead_prunes(&by).await.unwrap() })
        })
        .collect();
    wait_until("both settlers waiting on the row", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE 'UPDATE export_runs%'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        (waiting == 2).then_some(())
    })
    .await;
    lock.commit().await.unwrap();
    let mut settled = Vec::new();
    for settler in settlers {
        settled.extend(settler.await.unwrap());
    }
    assert_eq!(settled, [id]);
    let events = pruned_events(&db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (&events[0]["count"], &events[0]["complete"]),
        (&0.into(), &false.into())
    );
}

#[tokio::test]
async fn the_prune_function_refuses_unless_under_a_pending_prune_run() {
    let db = TestDb::new().await;
    append(&db, 2, None).await;
    let by = operator();
    let done = db.store.start_prune_run(now(&db).await, &by).await.unwrap();
    db.store
        .close_prune_run(done, audit_exporter::store::PruneEnd::Done(&[]), &by)
        .await
        .unwrap();
    for run in [Uuid::now_v7(), done] {
        let error = sqlx::query("SELECT * FROM audit_prune_batch($1, 0, 1000)")
            .bind(run)
            .fetch_one(db.pool())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("run {run} is not a pending prune run")),
            "{error}"
        );
    }
    let row = sqlx::query("SELECT count(*) FROM audit_events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>(0), 3, "two events and the prune's record");

    // A run row made by hand with a cutoff in the future is refused too.
    let forged = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO export_runs (id, kind, status, window_lo, window_hi, window_end, started_at, alive_until)
         VALUES ($1, 'prune', 'pending', '0', '0', now() + interval '10 years', now(), now() + interval '1 hour')",
    )
    .bind(forged)
    .execute(db.pool())
    .await
    .unwrap();
    let error = sqlx::query("SELECT * FROM audit_prune_batch($1, 0, 1000)")
        .bind(forged)
        .fetch_one(db.pool())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("is in the future"), "{error}");
}

#[tokio::test]
async fn what_a_batch_deleted_stays_on_record_whatever_becomes_of_its_run() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, file_destination_env("all", dir.path()));
    append(&db, 5, None).await;
    export_now(&exporter(&db, &settings), &settings, "all").await;
    let by = operator();
    let run = db.store.start_prune_run(now(&db).await, &by).await.unwrap();
    let deleted: i64 = sqlx::query_scalar("SELECT deleted FROM audit_prune_batch($1, 0, 1000000)")
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(deleted, 5);
    // Whoever may write the run log rewrites the run afterwards: the batch record stays.
    sqlx::query("UPDATE export_runs SET event_count = 0, status = 'done' WHERE id = $1")
        .bind(run)
        .execute(db.pool())
        .await
        .unwrap();
    let recorded: i64 = sqlx::query_scalar(
        "SELECT sum(deleted)::bigint FROM export_prune_batches WHERE run_id = $1",
    )
    .bind(run)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(recorded, 5);
}
