use super::*;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[test]
fn overdue_counts_from_the_unserved_due_time_for_any_frequency() {
    let schedule = Schedule::new(at("2026-11-29T00:00:00Z"), 6);
    let now = at("2026-11-29T13:30:00Z");
    // 12:00 served: nothing overdue, next at 18:00.
    assert_eq!(
        due_gauges(schedule, Some(at("2026-11-29T12:00:00Z")), now),
        (at("2026-11-29T18:00:00Z"), Duration::ZERO)
    );
    // Only 06:00 served: 12:00 has been due for 90 minutes.
    assert_eq!(
        due_gauges(schedule, Some(at("2026-11-29T06:00:00Z")), now),
        (at("2026-11-29T18:00:00Z"), Duration::from_secs(5400))
    );
    // Before the anchor nothing is due.
    let later = Schedule::new(at("2026-11-30T00:00:00Z"), 24);
    assert_eq!(
        due_gauges(later, None, now),
        (at("2026-11-30T00:00:00Z"), Duration::ZERO)
    );
}

#[test]
fn every_series_of_a_destination_exists_from_the_start() {
    let metrics = Metrics::default();
    metrics.declare("acme", 6);
    let text = metrics.encode(Utc::now());
    for series in [
        r#"audit_exporter_events_exported_total{destination="acme"} 0"#,
        r#"audit_exporter_bytes_exported_total{destination="acme"} 0"#,
        r#"audit_exporter_runs_total{destination="acme",outcome="failed"} 0"#,
        r#"audit_exporter_runs_total{destination="acme",outcome="exported"} 0"#,
        r#"audit_exporter_every_hours{destination="acme"} 6"#,
        r#"audit_exporter_failures_in_a_row{destination="acme"} 0"#,
        "audit_exporter_database_up 0",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    metrics.record(
        "acme",
        &Err(anyhow::anyhow!("down")),
        Duration::ZERO,
        Utc::now(),
    );
    let text = metrics.encode(Utc::now());
    assert!(
        text.contains(r#"audit_exporter_runs_total{destination="acme",outcome="failed"} 1"#),
        "{text}"
    );
}
