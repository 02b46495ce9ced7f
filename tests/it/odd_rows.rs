//! Rows the exporter cannot write as RFC 3339 promises: refused by the schema for new rows, and
//! those from before the rule delivered in their documented fallback form, never a stopped
//! destination; so is text that is not UTF-8 in a `SQL_ASCII` database.

use audit_exporter::sink;
use audit_exporter::sink::PutOutcome;

use crate::check::assert_exactly_once;
use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestDb, file_destination_env, files, settings};
use crate::{append, destination, export_now, exporter};

const ODD_TIMES: [(&str, &str); 4] = [
    ("infinity", "infinity"),
    ("-infinity", "-infinity"),
    (
        "294276-12-31 23:59:59.999999+00",
        "+294276-12-31T23:59:59.999999Z",
    ),
    ("12345-06-07 08:09:10+00", "+12345-06-07T08:09:10.000000Z"),
];

async fn insert_at(db: &TestDb, occurred_at: &str) -> sqlx::Result<sqlx::postgres::PgQueryResult> {
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, action, actor) VALUES ($1::text::timestamptz, 'odd.time', '{\"id\":\"u\"}')",
    )
    .bind(occurred_at)
    .execute(db.pool())
    .await
}

#[tokio::test]
async fn new_rows_with_a_time_rfc_3339_cannot_write_are_refused() {
    let db = TestDb::new().await;
    for (time, _) in ODD_TIMES {
        let error = insert_at(&db, time).await.unwrap_err().to_string();
        assert!(error.contains("audit_events_time_range"), "{time}: {error}");
    }
    insert_at(&db, "0001-01-01 00:00:00+00").await.unwrap();
    insert_at(&db, "9999-12-31 23:59:59.999999+00")
        .await
        .unwrap();
}

#[tokio::test]
async fn rows_from_before_the_rule_are_delivered_in_their_fallback_form_the_same_on_retry() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    append(&db, 2, None).await;
    // Rows written before the migration: the rule is lifted to write them, then restored as the
    // migration leaves it (NOT VALID, so they stay).
    let rule: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'audit_events_time_range'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    sqlx::query("ALTER TABLE audit_events DROP CONSTRAINT audit_events_time_range")
        .execute(db.pool())
        .await
        .unwrap();
    for (time, _) in ODD_TIMES {
        insert_at(&db, time).await.unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE audit_events ADD CONSTRAINT audit_events_time_range {rule}"
    )))
    .execute(db.pool())
    .await
    .unwrap();
    assert!(rule.ends_with("NOT VALID"), "{rule}");
    append(&db, 2, None).await;

    let settings = settings(&db, file_destination_env("main", dir.path()));
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let exporter = exporter(&db, &settings);
    let lease = match exporter.claim(dest).await.unwrap() {
        audit_exporter::store::Claim::Granted(lease) => lease,
        other => panic!("{other:?}"),
    };
    let (run, _) = exporter.plan_or_resume(&lease, dest, None).await.unwrap();
    let first = exporter.deliver(&lease, &run, sink.as_ref()).await.unwrap();
    // A crash after the upload and before the object was recorded: the retry writes it again.
    sqlx::query("DELETE FROM export_run_objects WHERE run_id = $1")
        .bind(run.id)
        .execute(db.pool())
        .await
        .unwrap();
    let again = exporter.deliver(&lease, &run, sink.as_ref()).await.unwrap();
    assert_eq!(first.objects, again.objects, "the same bytes on retry");
    assert_eq!(again.outcome, PutOutcome::AlreadyExists);
    exporter.commit(&lease, &run, &first).await.unwrap();

    let objects = files(dir.path());
    assert_exactly_once(&db, "main", None, &objects).await;
    let events = crate::check::decode(
        objects.keys().next().unwrap(),
        objects.values().next().unwrap(),
    );
    assert_eq!(events.len(), 8, "every row delivered, none dropped");
    let odd: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "odd.time")
        .map(|e| e["occurred_at"].as_str().unwrap())
        .collect();
    assert_eq!(odd, ODD_TIMES.map(|(_, form)| form));
}

#[tokio::test]
async fn text_that_is_not_utf8_in_a_sql_ascii_database_is_delivered_mended() {
    let db = TestDb::with_encoding("SQL_ASCII").await;
    let dir = tempfile::tempdir().unwrap();
    append(&db, 2, None).await;
    // A SQL_ASCII database stores any bytes: here 0xff, 0xe9 and 0xe8, none of them UTF-8.
    sqlx::query(
        r#"INSERT INTO audit_events (occurred_at, tenant_id, action, actor, metadata) VALUES
             (now(), E't\xff', 'odd.text', '{"id": "u"}', '{}'),
             (now(), NULL, E'only.act\xe9ion', '{"id": "u"}', '{}'),
             (now(), NULL, 'odd.text', '{"id": "u"}', ('{"note": "caf' || E'\xe8' || '"}')::jsonb)"#,
    )
    .execute(db.pool())
    .await
    .unwrap();
    append(&db, 2, None).await;

    // The command line's export: exit 0, and the warning names the destination and the run.
    let url = format!("file://{}", dir.path().display());
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__MAIN__URL", url.as_str()),
    ];
    let output = audit_exporter(&["export"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run: uuid::Uuid = sqlx::query_scalar("SELECT id FROM export_runs WHERE status = 'done'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let warning = stderr(&output);
    assert!(
        warning.contains("fallback form")
            && warning.contains(&format!("destination=\"main\" run_id={run} events=3")),
        "{warning}"
    );
    let objects = files(dir.path());
    let (key, bytes) = objects.iter().next().unwrap();
    let events = crate::check::decode(key, bytes);
    assert_eq!(events.len(), 7);
    let odd: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| e["actor"]["id"] == "u")
        .map(|e| {
            (
                e["tenant_id"].as_str().unwrap_or("-"),
                e["action"].as_str().unwrap(),
                e["metadata"]["note"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        odd,
        [
            ("t\u{fffd}", "odd.text", "-"),
            ("-", "only.act\u{fffd}ion", "-"),
            ("-", "odd.text", "caf\u{fffd}"),
        ]
    );

    // The destination goes on: the next window exports as usual.
    append(&db, 3, None).await;
    let settings = settings(&db, file_destination_env("main", dir.path()));
    let exporter = exporter(&db, &settings);
    assert_eq!(export_now(&exporter, &settings, "main").await.events, 3);
    let objects = files(dir.path());
    assert_eq!(objects.len(), 2);
    assert_exactly_once(&db, "main", None, &objects).await;
    // The COPY's connection, asked for the bytes as stored, never went back to the pool.
    let mut idle = Vec::new();
    for _ in 0..db.pool().num_idle() {
        let mut conn = db.pool().acquire().await.unwrap();
        let encoding: String = sqlx::query_scalar("SHOW client_encoding")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(encoding, "UTF8");
        idle.push(conn);
    }
    assert!(!idle.is_empty());
    drop(idle);

    // A re-export reads through the same COPY.
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let now = chrono::Utc::now();
    let range = (
        now - chrono::Duration::days(1),
        now + chrono::Duration::days(1),
    );
    let hidden = indicatif::ProgressBar::hidden();
    let report = exporter
        .reexport(dest, sink.as_ref(), range, None, &hidden)
        .await
        .unwrap();
    assert_eq!(report.events, 10);
}

#[tokio::test]
async fn text_of_a_win1252_database_is_converted_to_utf8() {
    // WIN1252 rather than LATIN1: LATIN1 has no `…`, which a migration's comment holds.
    let db = TestDb::with_encoding("WIN1252").await;
    let dir = tempfile::tempdir().unwrap();
    // 0xe9 is é in WIN1252: PostgreSQL converts it, nothing to mend.
    sqlx::query(
        r#"INSERT INTO audit_events (occurred_at, action, actor) VALUES (now(), E'caf\xe9', '{"id": "u"}')"#,
    )
    .execute(db.pool())
    .await
    .unwrap();
    let settings = settings(&db, file_destination_env("main", dir.path()));
    export_now(&exporter(&db, &settings), &settings, "main").await;
    let objects = files(dir.path());
    let (key, bytes) = objects.iter().next().unwrap();
    assert_eq!(crate::check::decode(key, bytes)[0]["action"], "café");
}
