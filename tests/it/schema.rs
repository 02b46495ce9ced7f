//! The audit table keeps what was written: append-only, txid assigned by the database.

use crate::append;
use crate::harness::TestDb;

async fn refused(db: &TestDb, sql: &str) -> String {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await
        .expect_err(sql)
        .to_string()
}

#[tokio::test]
async fn the_audit_table_is_append_only_and_txid_cannot_be_set() {
    let db = TestDb::new().await;
    append(&db, 3, Some("acme")).await;

    assert!(
        refused(&db, "UPDATE audit_events SET action = 'x'")
            .await
            .contains("append-only: UPDATE is not allowed")
    );
    assert!(
        refused(&db, "DELETE FROM audit_events")
            .await
            .contains("append-only: DELETE is not allowed")
    );
    assert!(
        refused(&db, "TRUNCATE audit_events")
            .await
            .contains("append-only: TRUNCATE is not allowed")
    );
    let msg = refused(&db, "INSERT INTO audit_events (occurred_at, action, actor, txid) VALUES (now(), 'a', '{}', '1')").await;
    assert!(msg.contains("txid is assigned by the database"), "{msg}");
    let msg = refused(
        &db,
        "INSERT INTO audit_events (id, occurred_at, action, actor) VALUES (1, now(), 'a', '{}')",
    )
    .await;
    assert!(
        msg.contains("non-DEFAULT value into column \"id\""),
        "{msg}"
    );
    assert!(
        refused(
            &db,
            "INSERT INTO audit_events (occurred_at, action, actor) VALUES (now(), 'a', '[1]')"
        )
        .await
        .contains("check constraint")
    );
    assert!(
        refused(
            &db,
            "INSERT INTO audit_events (occurred_at, action, actor) VALUES (now(), '', '{}')"
        )
        .await
        .contains("check constraint")
    );
    assert!(
        refused(
            &db,
            "INSERT INTO audit_events (occurred_at, actor) VALUES (now(), '{}')"
        )
        .await
        .contains("null value")
    );

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 3, "every refused statement left the table as it was");
}

#[tokio::test]
async fn writers_get_a_uuidv7_event_id_and_their_own_txid() {
    let db = TestDb::new().await;
    append(&db, 2, None).await;
    let rows: Vec<(uuid::Uuid, i64, i64)> = sqlx::query_as(
        "SELECT event_id, txid::text::bigint, pg_current_xact_id()::text::bigint FROM audit_events ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert!(
        rows.iter().all(|(id, _, _)| id.get_version_num() == 7),
        "{rows:?}"
    );
    assert_eq!(rows[0].1, rows[1].1, "one transaction, one txid");
    assert!(rows[0].1 < rows[0].2);
}

#[tokio::test]
async fn occurred_at_defaults_to_the_time_of_the_insert() {
    let db = TestDb::new().await;
    let mut tx = db.pool().begin().await.unwrap();
    let (occurred_at, now): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "INSERT INTO audit_events (action, actor) VALUES ('user.login', '{\"type\":\"user\",\"id\":\"u1\"}')
             RETURNING occurred_at, now()",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(occurred_at, now, "the inserting transaction's time");
}
