//! The database roles README's "Database roles" section sets up, run for real: the owner
//! migrates, the exporter exports without migrating, the application may only INSERT.

use crate::cli::{audit_exporter, stderr};
use crate::harness::TestDb;

/// The SQL blocks of README's "Database roles" section, with the roles renamed for this test.
fn readme_sql(suffix: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Database roles\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Database roles section");
    section
        .split("```sql\n")
        .skip(1)
        .map(|block| {
            block
                .split("```")
                .next()
                .unwrap()
                .replace("PASSWORD '...'", "PASSWORD 'x'")
                .replace("audit_owner", &format!("audit_owner_{suffix}"))
                .replace("audit_exporter", &format!("audit_exporter_{suffix}"))
                .replace("audit_app", &format!("audit_app_{suffix}"))
        })
        .collect()
}

async fn run_sql(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `text` says "permission denied" once, with no "at line N", naming `role` and `grant`.
fn assert_denied_once(text: &str, role: &str, grant: &str) {
    assert_eq!(text.matches("permission denied").count(), 1, "{text}");
    assert!(!text.contains(" at line "), "{text}");
    assert!(
        text.contains(&format!("(role {role})")) && text.contains(grant),
        "{text}"
    );
}

#[tokio::test]
async fn the_readme_roles_migrate_export_and_only_append() {
    let db = TestDb::unmigrated().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let [as_superuser, as_owner] = <[String; 2]>::try_from(readme_sql(&suffix)).unwrap();
    let (owner, exporter, app) = (
        format!("audit_owner_{suffix}"),
        format!("audit_exporter_{suffix}"),
        format!("audit_app_{suffix}"),
    );
    run_sql(&db.url, &as_superuser).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let env_as = |url: &str, migrate: bool| {
        vec![
            ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), url.to_owned()),
            (
                "AUDIT_EXPORTER__DATABASE__MIGRATE_ON_START".to_owned(),
                migrate.to_string(),
            ),
            (
                "AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL".to_owned(),
                dest.clone(),
            ),
        ]
    };
    let run = |args: &[&str], env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        audit_exporter(args, &env)
    };

    // The exporter's role may not create the schema: the error says which grant is missing.
    let output = run(&["export"], &env_as(&db.url_as(&exporter), true));
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.contains(&format!("cannot apply the migrations as role {exporter}"))
            && error.contains("permission denied for schema public")
            && error.contains(&format!("GRANT CREATE ON SCHEMA public TO {exporter}"))
            && error.contains("database.migrate_on_start = false"),
        "{error}"
    );

    let output = run(&["migrate"], &env_as(&db.url_as(&owner), true));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Before the owner's grants: each refused privilege is said once, without PostgreSQL's
    // source line, naming the role and the grant README gives for it.
    let exporter_env = env_as(&db.url_as(&exporter), false);
    let output = run(&["export"], &exporter_env);
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_denied_once(
        &said,
        &exporter,
        "GRANT SELECT, INSERT, UPDATE ON export_destinations",
    );
    let output = run(&["status"], &exporter_env);
    assert_eq!(output.status.code(), Some(1));
    assert_denied_once(
        &stderr(&output),
        &exporter,
        &format!("GRANT SELECT ON _sqlx_migrations TO {exporter}"),
    );

    run_sql(&db.url_as(&owner), &as_owner).await;

    // The application appends with a plain INSERT and can change nothing.
    let app_url = db.url_as(&app);
    run_sql(
        &app_url,
        "INSERT INTO audit_events (tenant_id, action, actor) VALUES ('acme', 'user.login', '{\"type\":\"user\",\"id\":\"u1\"}')",
    )
    .await;
    // README's grant for `INSERT ... RETURNING event_id`.
    run_sql(
        &db.url_as(&owner),
        &format!("GRANT SELECT (event_id) ON audit_events TO {app}"),
    )
    .await;
    run_sql(
        &app_url,
        "INSERT INTO audit_events (tenant_id, action, actor) VALUES ('acme', 'user.login', '{\"type\":\"user\",\"id\":\"u2\"}') RETURNING event_id",
    )
    .await;
    for sql in [
        "SELECT actor FROM audit_events",
        "UPDATE audit_events SET action = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE export_destinations SET watermark = '0'",
        "SELECT * FROM audit_prune_batch(gen_random_uuid(), 0, 1000)",
    ] {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&app_url).await.unwrap();
        let error = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect_err(sql)
            .to_string();
        assert!(error.contains("permission denied"), "{sql}: {error}");
    }

    // The exporter exports and reports without migrating, and cannot rewrite the log.
    let output = run(&["export"], &exporter_env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("archive: exported 2 events,"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // Pruning is the exporter's one way to delete: what every destination delivered goes.
    let before: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let output = run(&["prune", "--before", &before.to_rfc3339()], &exporter_env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("pruned 2 events recorded before"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let left: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_events")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(left, ["system.retention.pruned"]);
    let output = run(&["status"], &exporter_env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // An operator's action is itself recorded in the audit log, by the exporter's role.
    let output = run(
        &["destination", "reset", "archive", "--start", "now"],
        &exporter_env,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let resets: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'system.export.reset'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(resets, 1);
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url_as(&exporter))
            .await
            .unwrap();
        let error = sqlx::raw_sql("DELETE FROM audit_events")
            .execute(&mut conn)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("permission denied"), "{error}");
        // The record of what prunes deleted: readable, never changed by the exporter's role.
        sqlx::raw_sql("SELECT count(*) FROM export_prune_batches")
            .execute(&mut conn)
            .await
            .unwrap();
        for sql in [
            "DELETE FROM export_prune_batches",
            "UPDATE export_prune_batches SET deleted = 0",
        ] {
            let error = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap_err()
                .to_string();
            assert!(error.contains("permission denied"), "{sql}: {error}");
        }
    }

    run_sql(
        &db.url,
        &format!("DROP OWNED BY {owner}, {exporter}, {app} CASCADE; DROP ROLE {exporter}; DROP ROLE {app};"),
    )
    .await;
    // The owner's objects went with DROP OWNED; it owns nothing else now.
    run_sql(&db.url, &format!("DROP ROLE {owner}")).await;
}
