//! `prune` from the command line and under `run`: bad cutoffs exit 2, `retention.keep_days`
//! prunes on its own.

use crate::harness::{TestDb, settings};
use crate::lifecycle::{cli, now};
use crate::retention::actions;
use crate::{append, export_now, exporter};

#[tokio::test]
async fn run_prunes_what_is_older_than_keep_days() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = crate::harness::file_destination_env("main", dir.path());
    env.extend([
        ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone()),
        ("AUDIT_EXPORTER__RUN__LISTEN".to_owned(), String::new()),
        (
            "AUDIT_EXPORTER__RETENTION__KEEP_DAYS".to_owned(),
            "2".to_owned(),
        ),
    ]);
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, recorded_at, action, actor)
         SELECT now() - interval '3 days', now() - interval '3 days', 'user.login', '{\"type\":\"user\"}'
         FROM generate_series(1, 3)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    append(&db, 2, None).await;
    let settings = settings(&db, env.clone());
    export_now(&exporter(&db, &settings), &settings, "main").await;

    let running = crate::operate::Running::start(None, &env);
    let pruned = running
        .wait_for_log("the daily prune", |l| {
            l["message"]
                == "Pruned the events older than retention.keep_days that every destination has delivered."
        })
        .await;
    running.stop().await;
    assert_eq!(pruned["deleted"], 3, "{pruned}");
    assert_eq!(pruned["keep_days"], 2, "{pruned}");
    let left: Vec<String> = actions(&db).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left[2], "system.retention.pruned");
}

#[tokio::test]
async fn bad_cutoffs_exit_2_naming_the_flag() {
    let db = TestDb::new().await;
    let env = vec![("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone())];
    let future = (now(&db).await + chrono::Duration::hours(1)).to_rfc3339();
    for (args, said) in [
        (vec!["prune"], "--before <TIME>"),
        (
            vec!["prune", "--before", "2026-01-01", "--older-than", "1d"],
            "cannot be used with",
        ),
        (
            vec!["prune", "--older-than", "3w"],
            "unit \"w\" is not allowed; allowed: a whole number and a unit",
        ),
        (
            vec!["prune", "--older-than", "0d"],
            "'--older-than <DURATION>': \"0d\" is out of range; allowed: a whole number and a unit",
        ),
        (
            vec!["prune", "--before", "garbage"],
            "'--before <TIME>': \"garbage\": is not a time; allowed for --before: an RFC 3339 time",
        ),
        (
            vec!["prune", "--before", "now"],
            "\"now\" is not a cutoff (to prune what every destination delivered up to now, use --older-than 1s); allowed for --before",
        ),
        (vec!["prune", "--before", &future], "prune --before "),
        (
            vec!["prune", "--before", &future],
            " is in the future; allowed for --before: a time up to now (",
        ),
    ] {
        let (code, _, err) = cli(&args, &env);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
        // Its own flags, not `reexport`'s.
        for borrowed in ["--to", "--from", ", or now"] {
            assert!(!err.contains(borrowed), "{args:?}: {err}");
        }
    }
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM export_runs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(runs, 0, "a refused prune logs nothing");
}
