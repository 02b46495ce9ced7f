use super::*;
use crate::store::Store;

/// A worker for one directory destination, `acme`, over a database never reached.
async fn worker(dir: &std::path::Path) -> Worker {
    let url = "postgres://exporter@127.0.0.1:1/audit";
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", url.to_owned()),
        (
            "AUDIT_EXPORTER__DESTINATIONS__ACME__URL",
            format!("file://{}", dir.display()),
        ),
    ];
    let settings = Settings::load_with_env(None, env.map(|(k, v)| (k.to_owned(), v))).unwrap();
    let exporter = Exporter::new(
        Store::connect_lazy(url, 2).unwrap(),
        settings.exporter.clone(),
    );
    Worker::new(Plan::new(exporter, &settings).await.unwrap(), 1)
}

fn fail(worker: &Worker) -> Track {
    worker.tracks().entry("acme".into()).or_default().exporting = true;
    worker.finish("acme", Some(Err(anyhow::anyhow!("down"))), Instant::now());
    worker.tracks()["acme"]
}

fn failing(worker: &Worker) -> usize {
    worker
        .health
        .failing_longer_than(Duration::ZERO, Utc::now())
        .len()
}

#[tokio::test]
async fn failures_back_off_until_the_database_shows_nothing_left_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(dir.path()).await;
    let before = Utc::now();
    let first = fail(&worker);
    let wait = |track: Track| (track.retry_at.unwrap() - before).num_seconds();
    assert_eq!((first.failures, first.exporting), (1, false));
    assert!((60..=61).contains(&wait(first)), "{first:?}");
    let second = fail(&worker);
    assert_eq!(second.failures, 2);
    assert!((120..=121).contains(&wait(second)), "doubled: {second:?}");
    assert_eq!(failing(&worker), 1);

    // Another replica exported it, or the failure was the database's: nothing left to do.
    worker.nothing_to_do("acme");
    assert_eq!(worker.tracks()["acme"].failures, 0);
    assert_eq!(failing(&worker), 0);

    // A reload resets the backoff, and keeps the failing mark of a destination it keeps.
    fail(&worker);
    worker.reset_backoff();
    assert!(worker.tracks()["acme"].retry_at.is_none());
    assert_eq!(failing(&worker), 1);
    // ... but not the failures in a row, in the track or the metric: only a success does.
    assert_eq!(worker.tracks()["acme"].failures, 1);
    let text = worker.metrics.encode(Utc::now());
    assert!(
        text.contains("audit_exporter_failures_in_a_row{destination=\"acme\"} 1"),
        "{text}"
    );
    // Not while it exports: its outcome decides.
    worker.tracks().get_mut("acme").unwrap().exporting = true;
    worker.nothing_to_do("acme");
    assert_eq!(failing(&worker), 1);

    // A database outage is not the destination's failure: no count, no backoff.
    worker.tracks().get_mut("acme").unwrap().exporting = true;
    let down = anyhow::Error::new(outage::DatabaseDown("connection refused".into()));
    worker.finish("acme", Some(Err(down)), Instant::now());
    let track = worker.tracks()["acme"];
    assert_eq!((track.failures, track.exporting), (1, false));
    assert!(track.retry_at.is_none());

    // Removed from the configuration: not failing any more, and its late outcome is ignored.
    let url = "postgres://exporter@127.0.0.1:1/audit".to_owned();
    let none =
        Settings::load_with_env(None, [("AUDIT_EXPORTER__DATABASE__URL".to_owned(), url)]).unwrap();
    worker.apply(&none).await.unwrap();
    assert_eq!(failing(&worker), 0);
    worker.finish("acme", Some(Err(anyhow::anyhow!("late"))), Instant::now());
    assert_eq!(failing(&worker), 0);
    assert!(!worker.tracks().contains_key("acme"));
}
