//! Schedules kept in the database: placed in the day with `schedule_at`, and never postponed by
//! a change of frequency, not even by two configs that keep disagreeing.

use audit_exporter::export::{Exporter, Outcome, When};
use audit_exporter::settings::Settings;
use audit_exporter::sink;
use chrono::{DateTime, Utc};

use crate::harness::{TestDb, file_destination_env, files, settings};
use crate::{append, exporter};

fn every(db: &TestDb, dir: &std::path::Path, hours: &str, at: Option<&str>) -> Settings {
    let mut env = file_destination_env("main", dir);
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__EVERY_HOURS".into(),
        hours.into(),
    ));
    if let Some(at) = at {
        env.push(("AUDIT_EXPORTER__DEFAULTS__SCHEDULE_AT".into(), at.into()));
    }
    settings(db, env)
}

async fn export_if_due(exporter: &Exporter, settings: &Settings) -> Outcome {
    let dest = &settings.destinations[0];
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    exporter
        .export(dest, sink.as_ref(), When::IfDue)
        .await
        .unwrap()
}

async fn anchor(db: &TestDb) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT anchor FROM export_destinations WHERE name = 'main'")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_configs_that_disagree_on_every_hours_never_postpone_a_due_export() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let two = every(&db, dir.path(), "2", None);
    let one = every(&db, dir.path(), "1", None);
    let exporter = exporter(&db, &two);
    append(&db, 5, None).await;
    assert!(matches!(
        export_if_due(&exporter, &two).await,
        Outcome::NotDue { .. }
    ));

    for round in 0..3 {
        // Overdue: the anchor passed (as after downtime) and nothing served it.
        sqlx::query(
            "UPDATE export_destinations SET anchor = anchor - interval '3 hours', last_slot = NULL",
        )
        .execute(db.pool())
        .await
        .unwrap();
        let due = Utc::now();
        // Each config in turn re-anchors; the due time stays due whichever comes first.
        let (first, second) = if round % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let Outcome::Exported(report) = export_if_due(&exporter, first).await else {
            panic!("round {round}: a due export was postponed by the change");
        };
        assert!(
            report.run.slot.is_some_and(|slot| slot <= due),
            "{:?}",
            report.run.slot
        );
        // Served: neither config exports again before the next due time.
        for settings in [second, first, second] {
            assert!(
                matches!(
                    export_if_due(&exporter, settings).await,
                    Outcome::NotDue { .. }
                ),
                "round {round}: exported twice for one due time"
            );
        }
    }
    crate::check::assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}

#[tokio::test]
async fn schedule_at_places_the_due_times_in_the_day() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let midnight = every(&db, dir.path(), "24", Some("00:00"));
    let exporter = exporter(&db, &midnight);
    let Outcome::NotDue { next_due } = export_if_due(&exporter, &midnight).await else {
        panic!("a new destination waits for its first due time");
    };
    let expected: DateTime<Utc> = sqlx::query_scalar(
        "SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((next_due, anchor(&db).await), (expected, expected));

    // Another time of day re-anchors on its grid: every 6 hours from 03:30.
    let six = every(&db, dir.path(), "6", Some("03:30"));
    let Outcome::NotDue { next_due } = export_if_due(&exporter, &six).await else {
        panic!("not due right after the change");
    };
    let now = Utc::now();
    assert!(
        next_due > now - chrono::Duration::minutes(1)
            && next_due <= now + chrono::Duration::hours(6)
    );
    let since = next_due - (expected - chrono::Duration::days(1) + chrono::Duration::minutes(210));
    assert_eq!(since.num_seconds() % (6 * 3600), 0, "{next_due}");

    // Without it, the next full hour, as before.
    let hourly = every(&db, dir.path(), "6", None);
    let Outcome::NotDue { next_due } = export_if_due(&exporter, &hourly).await else {
        panic!("not due right after the change");
    };
    assert_eq!(next_due.timestamp() % 3600, 0);
}
