//! What `status --json` reports of the database, and the destination and run id on a run's
//! log lines.

use crate::harness::TestDb;

#[tokio::test]
async fn status_json_reports_what_the_database_holds() {
    use sqlx::Connection;

    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL", url.as_str()),
    ];
    crate::append(&db, 5, None).await;
    assert_eq!(
        crate::cli::audit_exporter(&["export"], &env).status.code(),
        Some(0)
    );
    crate::append(&db, 7, None).await;
    // What holds the horizon: a transaction with an id, and a prepared one.
    // Its last statement holds a secret, which status must never show.
    let mut open = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SET application_name = 'billing-app'")
        .execute(&mut open)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut open).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id(), 'PASSWORD hunter2-secret'")
        .execute(&mut open)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut open)
        .await
        .unwrap();
    let mut prepared = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut prepared).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut prepared)
        .await
        .unwrap();
    let gid = format!("held-{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE TRANSACTION '{gid}'")))
        .execute(&mut prepared)
        .await
        .unwrap();

    let output = crate::cli::audit_exporter(&["status", "--json"], &env);
    let text = crate::cli::audit_exporter(&["status"], &env);
    sqlx::query(sqlx::AssertSqlSafe(format!("ROLLBACK PREPARED '{gid}'")))
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut open).await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::cli::stderr(&output)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let archive = &status["destinations"][0];
    let (watermark, anchor, waiting, oldest): (
        i64,
        chrono::DateTime<chrono::Utc>,
        i64,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT d.watermark::text::bigint, d.anchor, count(e.*), min(e.recorded_at)
             FROM export_destinations d LEFT JOIN audit_events e ON e.txid >= d.watermark
             GROUP BY d.watermark, d.anchor",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(archive["watermark"], watermark);
    assert_eq!(archive["waiting_events"], waiting);
    assert_eq!(waiting, 7);
    let oldest_json: chrono::DateTime<chrono::Utc> = archive["oldest_waiting_recorded_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(oldest_json, oldest);
    assert!(archive["oldest_waiting_age_secs"].as_i64().unwrap() >= 0);
    let next_due: chrono::DateTime<chrono::Utc> =
        archive["next_due"].as_str().unwrap().parse().unwrap();
    assert_eq!(next_due, anchor, "a new destination is due at its anchor");
    let (events, bytes, duration_ms): (i64, i64, i64) = sqlx::query_as(
        "SELECT event_count, bytes, (extract(epoch FROM finished_at - started_at) * 1000)::bigint
         FROM export_runs",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let run = &archive["recent_runs"][0];
    assert_eq!(
        (run["events"].as_i64(), run["bytes"].as_i64()),
        (Some(events), Some(bytes))
    );
    assert!(
        (run["duration_ms"].as_i64().unwrap() - duration_ms).abs() <= 1,
        "{run}"
    );
    assert_eq!(run["status"], "done");

    let horizon = &status["horizon"];
    assert_eq!(horizon["oldest_transaction"]["pid"], pid, "{horizon}");
    let holder = &horizon["oldest_transaction"];
    assert_eq!(holder["application"], "billing-app", "{holder}");
    assert_eq!(holder["state"], "idle in transaction", "{holder}");
    assert!(holder["user"].is_string() && holder["database"].is_string());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("horizon held by: pid {pid}, user "))
            && text.contains("billing-app"),
        "{text}"
    );
    for shown in [String::from_utf8_lossy(&output.stdout).into_owned(), text] {
        assert!(
            !shown.contains("hunter2"),
            "another session's SQL shown: {shown}"
        );
    }
    assert!(horizon["oldest_transaction"]["age_secs"].as_i64().unwrap() >= 0);
    assert_eq!(horizon["oldest_prepared"]["gid"], gid.as_str());
    assert!(horizon["oldest_prepared"]["age_secs"].as_i64().unwrap() >= 0);
}

#[tokio::test]
async fn the_log_lines_of_a_run_carry_its_destination_and_run_id() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    crate::append(&db, 3, None).await;
    let output = crate::cli::audit_exporter(
        &["export"],
        &[
            ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
            ("AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL", url.as_str()),
            ("AUDIT_EXPORTER__LOG__FORMAT", "json"),
            ("AUDIT_EXPORTER__LOG__LEVEL", "info"),
        ],
    );
    assert_eq!(output.status.code(), Some(0));
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM export_runs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = crate::cli::stderr(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of_the_run: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "export")
        .collect();
    assert!(
        of_the_run
            .iter()
            .any(|l| l["message"] == "Exported a window."),
        "{lines:?}"
    );
    for line in of_the_run {
        assert_eq!(line["span"]["destination"], "archive", "{line}");
        assert_eq!(line["span"]["run_id"], run_id.to_string(), "{line}");
    }
}
