//! `export` SIGKILLed at each step of a run, held there from outside (a lock in the database, a
//! stall at the proxy), then run again: the window is finished under the same key, and nothing
//! is lost or duplicated.

use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;
use uuid::Uuid;

use super::{Tally, assert_no_secret, env, export_until_drained};
use crate::harness::{TestBucket, TestDb};
use crate::operate::wait_until;
use crate::proxy::{Fault, Proxy, Seen, is_put_object};

#[derive(Debug, Clone, Copy)]
enum Step {
    AfterLease,
    AfterPendingRun,
    MidMultipart,
    AfterUpload,
    DuringCommit,
}

const HOLD: Duration = Duration::from_secs(300);

#[tokio::test]
async fn a_run_killed_at_each_step_is_finished_with_the_same_key() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let env = env(&db, &bucket, &proxy);
    let mut tally = Tally::new("crashes");
    let is_part_2 = |s: &Seen| s.query.contains("partNumber=2");

    for step in [
        Step::AfterLease,
        Step::AfterPendingRun,
        Step::MidMultipart,
        Step::AfterUpload,
        Step::DuringCommit,
    ] {
        // Over 5 MiB for the multipart step: three parts of 5 MiB.
        let events = if matches!(step, Step::MidMultipart) {
            30_000
        } else {
            25
        };
        crate::append(&db, events, None).await;
        tally.written += events as usize;
        let mut lock = sqlx::PgConnection::connect(&db.url).await.unwrap();
        match step {
            Step::AfterLease => {
                sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
                // Planning inserts the pending run; reading is still allowed.
                sqlx::query("LOCK TABLE export_runs IN EXCLUSIVE MODE")
                    .execute(&mut lock)
                    .await
                    .unwrap();
            }
            Step::AfterPendingRun => proxy.inject(Fault::stall(is_put_object, 1, HOLD)),
            Step::MidMultipart => proxy.inject(Fault::stall(is_part_2, 1, HOLD)),
            Step::AfterUpload => proxy.inject(Fault::stall_answer(is_put_object, 1, HOLD)),
            // Time enough to lock the run's row before the answer comes.
            Step::DuringCommit => proxy.inject(Fault::stall_answer(
                is_put_object,
                1,
                Duration::from_secs(5),
            )),
        }
        let requests_before = proxy.seen().len();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
            .args(["export", "--destination", "main"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let new_request = |matches: fn(&Seen) -> bool| {
            let proxy = &proxy;
            move || async move {
                proxy.seen()[requests_before..]
                    .iter()
                    .any(matches)
                    .then_some(())
            }
        };
        match step {
            Step::AfterLease => {
                wait_until("planning blocked on the run log", || {
                    blocked(&db, "INSERT INTO export_runs%")
                })
                .await
            }
            Step::AfterPendingRun => {
                wait_until("the stalled upload", new_request(|s| s.status == 0)).await
            }
            Step::MidMultipart => {
                wait_until(
                    "the stalled second part",
                    new_request(|s| s.status == 0 && s.query.contains("partNumber=2")),
                )
                .await
            }
            Step::AfterUpload => {
                wait_until(
                    "the delivered object",
                    new_request(|s| is_put_object(s) && s.status == 200),
                )
                .await
            }
            Step::DuringCommit => {
                wait_until(
                    "the delivered object",
                    new_request(|s| is_put_object(s) && s.status == 200),
                )
                .await;
                // The commit moves the watermark, then blocks on marking the run done. (Not
                // FOR UPDATE: recording the object, before the commit, checks its run's key.)
                sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
                sqlx::query("SELECT 1 FROM export_runs WHERE status = 'pending' FOR NO KEY UPDATE")
                    .execute(&mut lock)
                    .await
                    .unwrap();
                wait_until("the commit, blocked after moving the watermark", || {
                    blocked(&db, "%SET status = 'done'%")
                })
                .await
            }
        }
        child.start_kill().unwrap();
        let output = child.wait_with_output().await.unwrap();
        tally.kills += 1;
        assert_no_secret(
            "export",
            &format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        );
        drop(lock);

        let pending: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT id, object_key FROM export_runs WHERE destination = 'main' AND status = 'pending'",
        )
        .fetch_optional(db.pool())
        .await
        .unwrap();
        assert_eq!(
            pending.is_some(),
            !matches!(step, Step::AfterLease),
            "{step:?}: a pending run exactly when planning had committed"
        );
        export_until_drained(&db, &env).await;
        if let Some((id, key)) = pending {
            let (status, finished_key): (String, String) =
                sqlx::query_as("SELECT status, object_key FROM export_runs WHERE id = $1")
                    .bind(id)
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            assert_eq!((status.as_str(), finished_key), ("done", key), "{step:?}");
        }
        let objects = bucket.objects("p/").await;
        crate::check::assert_exactly_once(&db, "main", None, &objects).await;
    }

    super::assert_status_prints_no_secret(&env).await;
    let seen = proxy.seen();
    tally.fault("stall", seen.iter().filter(|s| s.status == 0).count() + 2);
    tally.fault(
        "412-exists",
        seen.iter().filter(|s| s.status == 412).count(),
    );
    assert!(
        seen.iter().any(|s| s.status == 412),
        "the run resumed after its upload learned from a 412 that the object was there"
    );
    tally.finish(&db, "main", &bucket.objects("p/").await).await;
}

/// Some backend of the exporter waits on a lock in a statement like `query`.
async fn blocked(db: &TestDb, query: &str) -> Option<()> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1",
    )
    .bind(query)
    .fetch_one(db.pool())
    .await
    .unwrap();
    (n > 0).then_some(())
}
