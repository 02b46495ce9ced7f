//! README's alert rules against a real scrape: every metric they name exists from the start,
//! and the per-destination schedule gauges they rest on say what the database holds.

use crate::daemon::try_get;
use crate::harness::TestDb;
use crate::operate::{Running, config, free_port, metric, wait_until};

/// The `expr:` lines of README's alert rules.
fn readme_alert_expressions() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split_once("### Metrics and health")
        .expect("README has a Metrics and health section")
        .1;
    let rules = section
        .split_once("```yaml")
        .expect("the section holds the alert rules")
        .1
        .split_once("```")
        .unwrap()
        .0;
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_owned())
        .collect()
}

/// The metric names an expression uses: its identifiers of audit-exporter's own.
fn metric_names(expression: &str) -> Vec<String> {
    expression
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("audit_exporter_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_metric_of_readme_alert_rules_exists_in_a_scrape_from_the_start() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("audit-exporter.toml");
    // No check but the one at start, so the test decides what is due.
    let text = config(
        port,
        &[("acme", &dir.path().join("acme"), "every_hours = 6")],
    )
    .replace(
        "check_cron = \"* * * * * *\"",
        "check_cron = \"0 0 0 1 1 *\"",
    );
    std::fs::write(&file, text).unwrap();
    let env = vec![("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone())];
    let run = Running::start(Some(&file), &env);
    let text = wait_until("the schedule, read", || async {
        let (_, text, _) = try_get(port, "/metrics").await?;
        metric(
            &text,
            r#"audit_exporter_next_due_timestamp_seconds{destination="acme"}"#,
        )
        .filter(|t| *t > 0.0)
        .map(|_| text.clone())
    })
    .await;

    let expressions = readme_alert_expressions();
    assert!(expressions.len() >= 4, "{expressions:?}");
    for expression in &expressions {
        let names = metric_names(expression);
        assert!(
            !names.is_empty() || expression.starts_with("up{"),
            "a rule on no metric of audit-exporter: {expression}"
        );
        for name in names {
            let exists = text.lines().any(|l| {
                l.strip_prefix(&name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            });
            assert!(
                exists,
                "{name} (in {expression}) is not in the scrape:\n{text}"
            );
        }
    }
    // Before any export: counters at zero, the frequency, the next due time, nothing overdue.
    let series = |name: &str| {
        metric(
            &text,
            &format!("audit_exporter_{name}{{destination=\"acme\"}}"),
        )
    };
    assert_eq!(series("events_exported_total"), Some(0.0));
    assert_eq!(series("every_hours"), Some(6.0));
    assert_eq!(series("overdue_seconds"), Some(0.0));
    let anchor: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT anchor FROM export_destinations")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        series("next_due_timestamp_seconds"),
        Some(anchor.timestamp() as f64)
    );

    // A due time passed an hour ago and was not served: overdue by an hour, whatever the
    // frequency.
    sqlx::query("UPDATE export_destinations SET anchor = date_trunc('hour', now()) - interval '1 hour', every_hours = 6")
        .execute(db.pool())
        .await
        .unwrap();
    let overdue = wait_until("the overdue time", || async {
        let (_, text, _) = try_get(port, "/metrics").await?;
        metric(
            &text,
            r#"audit_exporter_overdue_seconds{destination="acme"}"#,
        )
        .filter(|s| *s > 0.0)
    })
    .await;
    let expected: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - (date_trunc('hour', now()) - interval '1 hour'))::float8",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(
        (overdue - expected).abs() < 5.0,
        "{overdue} against {expected}"
    );
    let (code, _) = run.stop().await;
    assert_eq!(code, Some(0));
}
