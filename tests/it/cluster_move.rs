//! The database moved to a new cluster by a dump and restore: its transaction ids start anew
//! below the watermark. The exporter refuses to go on, says why and how, and `destination
//! reset --start TIME` re-bases the stream on the new cluster without loss.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use audit_exporter::store::{EmbeddedPostgres, Store, create_database};
use uuid::Uuid;

use crate::check::{HEARTBEAT, decode};
use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestDb, file_destination_env, files, settings};
use crate::{append, export_now, exporter};

const PG_DIR: &str = "audit-exporter-moved-pg-";
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// `pg_dump` of `from` into `to` with `psql`. Triggers are off while restoring (as in a
/// logical-replication apply), since the append-only guard refuses rows that carry a txid.
fn dump_and_restore(from: &str, to: &str) {
    let mut dump = Command::new(format!("{BIN}/pg_dump"))
        .args(["--no-owner", "--no-privileges", "-d", from])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let restore = Command::new(format!("{BIN}/psql"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", to])
        .env("PGOPTIONS", "-c session_replication_role=replica")
        .stdin(dump.stdout.take().unwrap())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(dump.wait().unwrap().success(), "pg_dump failed");
    assert!(restore.status.success(), "{}", stderr(&restore));
}

/// Uses up `n` transaction ids.
async fn burn(pool: &sqlx::PgPool, n: i32) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN FOR i IN 1..{n} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
    )))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_database_moved_to_a_new_cluster_is_refused_until_reset_and_then_loses_nothing() {
    // Cluster A: 5,000 transaction ids burned, 20 events exported.
    let a = TestDb::new().await;
    burn(a.pool(), 5000).await;
    append(&a, 20, None).await;
    let dir = tempfile::tempdir().unwrap();
    let on_a = settings(&a, file_destination_env("main", dir.path()));
    export_now(&exporter(&a, &on_a), &on_a, "main").await;
    let watermark = a.watermark().await;
    assert!(watermark > 5000);

    // Cluster B: a dump of A restored, then an event appended there.
    crate::harness::remove_stale_dirs(PG_DIR);
    let data = std::env::temp_dir().join(format!("{PG_DIR}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let server = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&data, &["fsync=off"]).unwrap()
    })
    .await
    .unwrap();
    create_database(&server.url("postgres"), "moved")
        .await
        .unwrap();
    let b_url = server.url("moved");
    let moved_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(a.pool())
        .await
        .unwrap();
    dump_and_restore(&a.url, &b_url);
    let b = Store::connect(&b_url, 4).await.unwrap();
    let new_event: (Uuid, i64) = sqlx::query_as(
        "INSERT INTO audit_events (occurred_at, action, actor) VALUES (now(), 'user.login', '{\"type\":\"user\",\"id\":\"u-b\"}')
         RETURNING event_id, txid::text::bigint",
    )
    .fetch_one(b.pool())
    .await
    .unwrap();
    assert!(new_event.1 < watermark, "B's ids start below A's watermark");

    let env_b = |extra: &[(&str, &str)]| {
        let dir = dir.path().display().to_string();
        let mut env = vec![
            ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), b_url.clone()),
            (
                "AUDIT_EXPORTER__DESTINATIONS__MAIN__URL".to_owned(),
                format!("file://{dir}"),
            ),
        ];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    };
    let run = |args: &[&str]| {
        let env = env_b(&[]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let output = audit_exporter(args, &env);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output),
        )
    };

    // Refused, by the cluster's identity: what happened, and the way on.
    let (code, out) = run(&["export"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the database is not the cluster its watermark belongs to")
            && out.contains("dump and restore or a logical-replication move")
            && out.contains("audit-exporter destination reset main --start TIME"),
        "{out}"
    );
    // status and destination list say so too, with the same message.
    let (code, out) = run(&["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("  refused: destination `main`: the database is not the cluster"),
        "{out}"
    );
    let (_, out) = run(&["destination", "list"]);
    assert!(
        out.contains("; refused: destination `main`: the database is not the cluster"),
        "{out}"
    );
    // Where the identity cannot be read, by the transaction ids: a horizon below the watermark.
    sqlx::query("UPDATE export_destinations SET cluster_id = NULL")
        .execute(b.pool())
        .await
        .unwrap();
    let (code, out) = run(&["export"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("are below the watermark {watermark}"))
            && out.contains("destination reset main --start TIME"),
        "{out}"
    );
    let (_, out) = run(&["status"]);
    assert!(
        out.contains("  refused: destination `main`: the database's transaction ids (horizon"),
        "{out}"
    );

    // Re-based at the time of the move: B's event is exported, nothing twice, nothing lost.
    let (code, out) = run(&[
        "destination",
        "reset",
        "main",
        "--start",
        &moved_at.to_rfc3339(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("re-based on this database cluster"), "{out}");
    let (code, out) = run(&["export"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("main: exported 2 events"),
        "B's event and the reset's: {out}"
    );
    // Once B's ids pass those the copied rows carry, the copies are still not exported again.
    burn(b.pool(), 6000).await;
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, action, actor) VALUES (now(), 'user.logout', '{}')",
    )
    .execute(b.pool())
    .await
    .unwrap();
    let (code, out) = run(&["export"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("main: exported 1 event,"),
        "only B's new event: {out}"
    );
    let mut exported = Vec::new();
    for (key, bytes) in files(dir.path()) {
        for event in decode(&key, &bytes) {
            if event["action"] != HEARTBEAT {
                exported.push(Uuid::parse_str(event["event_id"].as_str().unwrap()).unwrap());
            }
        }
    }
    let unique: BTreeSet<Uuid> = exported.iter().copied().collect();
    assert_eq!(unique.len(), exported.len(), "nothing twice");
    let on_b: BTreeSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM audit_events")
        .fetch_all(b.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(unique, on_b, "every event of B, A's included, exactly once");
    assert!(unique.contains(&new_event.0));
    b.pool().close().await;
    drop(server);
}
