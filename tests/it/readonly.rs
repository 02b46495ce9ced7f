//! `status` and `config check` only look: they never write to the database, never migrate, and
//! say what they see plainly, warnings included.

use crate::cli::{audit_exporter, stderr};
use crate::harness::TestDb;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn tables(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn status_and_config_check_never_write_to_the_database() {
    let db = TestDb::unmigrated().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID", "acme"),
    ];

    let output = audit_exporter(&["status"], &env);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output)
            .contains("error: the database has never been migrated: run `audit-exporter migrate`"),
        "{}",
        stderr(&output)
    );
    let output = audit_exporter(&["config", "check"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "# note: tenant_id values were not checked: the database has never been migrated"
        ),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        tables(&db).await,
        0,
        "status and config check created tables"
    );

    let output = audit_exporter(&["migrate"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for args in [&["status"][..], &["status", "--json"], &["config", "check"]] {
        let output = audit_exporter(args, &env);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let destinations: i64 = sqlx::query_scalar("SELECT count(*) FROM export_destinations")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(destinations, 0, "status registered a destination");

    // A database that cannot be reached never fails the check.
    let output = audit_exporter(
        &["config", "check"],
        &[
            (
                "AUDIT_EXPORTER__DATABASE__URL",
                "postgres://app:pa55word@127.0.0.1:1/audit",
            ),
            ("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", url.as_str()),
            ("AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID", "acme"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "# note: tenant_id values were not checked: cannot connect to PostgreSQL at 127.0.0.1:1"
        ),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("pa55word"));
}

#[tokio::test]
async fn status_lists_scheduled_runs_apart_from_test_deliveries_and_reexports() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL", url.as_str()),
    ];
    crate::append(&db, 1, None).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    for args in [
        &["export"][..],
        &["verify"],
        &["reexport", "--from", &yesterday, "--to", "now"],
    ] {
        let output = audit_exporter(args, &env);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = audit_exporter(&["reexport", "--from", &today, "--to", &yesterday], &env);
    assert_eq!(output.status.code(), Some(2), "a date range backwards");

    let output = audit_exporter(&["status"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let scheduled = text.find("  scheduled runs:\n").expect(&text);
    let others = text
        .find("  test deliveries and re-exports:\n")
        .expect(&text);
    assert!(scheduled < others, "{text}");
    let (scheduled, others) = (&text[scheduled..others], &text[others..]);
    assert!(scheduled.contains(" done 1 event, "), "{text}");
    assert!(
        !scheduled.contains("test") && !scheduled.contains("reexport"),
        "{text}"
    );
    assert!(others.contains(" test done test object, "), "{text}");
    assert!(others.contains(" reexport done 1 event, "), "{text}");
    assert!(text.contains("  waiting: 0 events\n"), "{text}");

    let output = audit_exporter(&["status", "--json"], &env);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let archive = &status["destinations"][0];
    let kinds = |key: &str| -> Vec<String> {
        archive[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds("recent_runs"), ["scheduled"]);
    let mut others = kinds("recent_test_and_reexport_runs");
    others.sort();
    assert_eq!(others, ["reexport", "test"]);
}

#[tokio::test]
async fn config_check_and_status_warn_about_destinations_that_never_match() {
    let db = TestDb::new().await;
    crate::append(&db, 2, Some("acme")).await;
    let (one, two, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let url = |dir: &tempfile::TempDir| format!("file://{}", dir.path().display());
    let (one_url, two_url, shared_url) = (url(&one), url(&two), url(&shared));
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", one_url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID", "acme"),
        ("AUDIT_EXPORTER__DESTINATIONS__TYPO__URL", two_url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__TYPO__TENANT_ID", "Acme"),
        (
            "AUDIT_EXPORTER__DESTINATIONS__TWIN1__URL",
            shared_url.as_str(),
        ),
        (
            "AUDIT_EXPORTER__DESTINATIONS__TWIN2__URL",
            shared_url.as_str(),
        ),
    ];
    let output = audit_exporter(&["config", "check"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# warning:"))
        .collect();
    assert_eq!(
        warnings,
        [
            format!(
                "# warning: destination twin1: writes to {shared_url}, as twin2 does: their objects mix there; give each its own prefix or directory"
            ),
            format!(
                "# warning: destination twin2: writes to {shared_url}, as twin1 does: their objects mix there; give each its own prefix or directory"
            ),
            "# warning: destination typo: no event of tenant_id \"Acme\" has ever been recorded; tenant ids match exactly, case included: check the value".to_owned(),
        ],
        "{text}"
    );
    text.parse::<toml::Table>().expect("still TOML");

    let output = audit_exporter(&["status", "--json"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let warnings_of = |name: &str| {
        status["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["warnings"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        ["acme", "typo", "twin1", "twin2"].map(warnings_of),
        [0, 1, 1, 1]
    );
    let output = audit_exporter(&["status"], &env);
    assert!(
        stdout(&output).contains("typo -> file://")
            && stdout(&output).contains("  warning: no event of tenant_id \"Acme\""),
        "{}",
        stdout(&output)
    );
}
