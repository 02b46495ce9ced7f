//! Crashes between the steps, stale lease holders and concurrent exporters.

use audit_exporter::export::{Exporter, Outcome, When};
use audit_exporter::sink::{self, PutOutcome};
use audit_exporter::store::{Claim, CommitError};
use sha2::{Digest, Sha256};

use crate::check::assert_exactly_once;
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::{append, destination, export_now, exporter};

async fn expire_leases(db: &TestDb) {
    sqlx::query("UPDATE export_destinations SET lease_expires_at = now() - interval '1 second'")
        .execute(db.pool())
        .await
        .unwrap();
}

fn granted(claim: Claim) -> audit_exporter::store::Lease {
    match claim {
        Claim::Granted(lease) => lease,
        Claim::Busy { owner, .. } => panic!("lease held by {owner}"),
    }
}

#[tokio::test]
async fn a_crash_after_upload_is_resumed_with_the_same_key_and_bytes() {
    // A single PutObject, and a multipart upload whose CompleteMultipartUpload meets the 412.
    for (events, compression) in [(50, "gzip"), (22_000, "none")] {
        let db = TestDb::new().await;
        let bucket = TestBucket::new();
        let mut env = bucket.destination_env("main", "p");
        env.push((
            "AUDIT_EXPORTER__DESTINATIONS__MAIN__COMPRESSION".into(),
            compression.into(),
        ));
        let settings = settings(&db, env);
        let dest = destination(&settings, "main");
        let sink = sink::connect(dest, &settings.exporter).await.unwrap();
        append(&db, events, None).await;

        // The first exporter stops after the upload, before the commit.
        let crashed = exporter(&db, &settings);
        let lease = granted(crashed.claim(dest).await.unwrap());
        let (run, resumed) = crashed.plan_or_resume(&lease, dest, None).await.unwrap();
        assert!(!resumed);
        let delivered = crashed.deliver(&lease, &run, sink.as_ref()).await.unwrap();
        assert_eq!(delivered.outcome, PutOutcome::Written);
        // It stopped before the object was recorded, too: the retry uploads it again.
        sqlx::query("DELETE FROM export_run_objects WHERE run_id = $1")
            .bind(run.id)
            .execute(db.pool())
            .await
            .unwrap();
        let written = bucket.objects("p/").await;
        assert_eq!(written.keys().collect::<Vec<_>>(), vec![&run.object_key]);
        let head = bucket.head(&run.object_key).await;
        assert_eq!(
            head.e_tag().unwrap().contains('-'),
            events > 50,
            "multipart only for the large window"
        );

        // Events appended after the crash belong to the next window, not the resumed one.
        append(&db, 7, None).await;
        expire_leases(&db).await;
        let report = export_now(&exporter(&db, &settings), &settings, "main").await;
        assert!(report.resumed);
        assert_eq!(
            report.put,
            PutOutcome::AlreadyExists,
            "the 412 tells that the object is there"
        );
        assert_eq!(report.run.id, run.id);
        assert_eq!(report.run.object_key, run.object_key);
        assert_eq!(
            report.objects[0].sha256,
            hex::encode(Sha256::digest(&written[&run.object_key])),
            "identical bytes"
        );
        assert_eq!(
            bucket.objects("p/").await,
            written,
            "the object was not replaced"
        );

        let next = export_now(&exporter(&db, &settings), &settings, "main").await;
        assert_eq!(next.events, 7);
        assert_exactly_once(&db, "main", None, &bucket.objects("p/").await).await;
    }
}

#[tokio::test]
async fn a_crash_after_planning_is_resumed_with_the_same_window_and_key() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, file_destination_env("main", dir.path()));
    let dest = destination(&settings, "main");
    append(&db, 12, None).await;

    let crashed = exporter(&db, &settings);
    let lease = granted(crashed.claim(dest).await.unwrap());
    let (run, _) = crashed.plan_or_resume(&lease, dest, None).await.unwrap();
    append(&db, 5, None).await;
    expire_leases(&db).await;

    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert!(report.resumed);
    assert_eq!(report.put, PutOutcome::Written);
    assert_eq!(
        (report.run.id, report.run.window_hi, &report.run.object_key),
        (run.id, run.window_hi, &run.object_key)
    );
    assert_eq!(
        report.events, 12,
        "the planned window, not the events after it"
    );
    assert_eq!(export_now(&crashed, &settings, "main").await.events, 5);
    assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}

#[tokio::test]
async fn a_stale_lease_holder_cannot_commit() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, file_destination_env("main", dir.path()));
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    append(&db, 9, None).await;

    let stale = exporter(&db, &settings);
    let lease = granted(stale.claim(dest).await.unwrap());
    let (run, _) = stale.plan_or_resume(&lease, dest, None).await.unwrap();
    let delivered = stale.deliver(&lease, &run, sink.as_ref()).await.unwrap();

    // Its lease expires while it is paused; another exporter takes the destination over.
    expire_leases(&db).await;
    let other = exporter(&db, &settings);
    assert!(matches!(
        other.claim(dest).await.unwrap(),
        Claim::Granted(_)
    ));
    let error = stale.commit(&lease, &run, &delivered).await.unwrap_err();
    assert!(
        matches!(
            error.downcast_ref::<CommitError>(),
            Some(CommitError::LeaseLost(_))
        ),
        "{error:#}"
    );
    let watermark = db.watermark().await;
    assert_eq!(watermark, 0, "the stale holder moved nothing");

    // A holder that is alive blocks everyone else.
    assert!(matches!(
        stale.claim(dest).await.unwrap(),
        Claim::Busy { .. }
    ));
    expire_leases(&db).await;
    let report = export_now(&other, &settings, "main").await;
    assert_eq!(
        (report.run.id, report.put),
        (run.id, PutOutcome::AlreadyExists)
    );
    assert_exactly_once(&db, "main", None, &files(dir.path())).await;
}

#[tokio::test]
async fn two_exporters_started_at_once_produce_one_run_per_window() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let settings = settings(&db, bucket.destination_env("main", "race"));
    let dest = destination(&settings, "main");
    let (a, b) = (exporter(&db, &settings), exporter(&db, &settings));
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();

    let mut busy = 0;
    for round in 0..8 {
        append(&db, 20 + round, None).await;
        let (x, y) = tokio::join!(
            a.export(dest, sink.as_ref(), When::Now),
            b.export(dest, sink.as_ref(), When::Now)
        );
        for outcome in [x.unwrap(), y.unwrap()] {
            if let Outcome::Busy { .. } = outcome {
                busy += 1;
            }
        }
    }
    let windows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT window_lo::text::bigint, window_hi::text::bigint FROM export_runs WHERE status = 'done' ORDER BY window_lo, window_end",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    for pair in windows.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "windows follow each other without overlap: {windows:?}"
        );
    }
    assert!(
        busy > 0 || windows.len() == 16,
        "either one waited or both ran one after the other"
    );
    assert_exactly_once(&db, "main", None, &bucket.objects("race/").await).await;
}

#[tokio::test]
async fn concurrent_writers_and_exports_lose_and_duplicate_nothing() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.extend(file_destination_env("acme", &dir.path().join("acme")));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID".into(),
        "acme".into(),
    ));
    let settings = settings(&db, env);
    let exporters: Vec<Exporter> = (0..2).map(|_| exporter(&db, &settings)).collect();

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let pool = db.pool().clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let mut tx = pool.begin().await.unwrap();
                    for _ in 0..(i % 3 + 1) {
                        sqlx::query("INSERT INTO audit_events (occurred_at, tenant_id, action, actor) VALUES (now(), $1, 'w', '{}')")
                            .bind(if w % 2 == 0 { Some("acme") } else { None })
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                    }
                    if i % 7 == 3 { tx.rollback().await.unwrap() } else { tx.commit().await.unwrap() }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let exports = async {
        for _ in 0..6 {
            for name in ["main", "acme"] {
                let dest = destination(&settings, name);
                let sink = sink::connect(dest, &settings.exporter).await.unwrap();
                let both = futures::future::join_all(
                    exporters
                        .iter()
                        .map(|e| e.export(dest, sink.as_ref(), When::Now)),
                )
                .await;
                both.into_iter().for_each(|r| drop(r.unwrap()));
            }
        }
    };
    let (_, written) = tokio::join!(exports, futures::future::join_all(writers));
    written.into_iter().for_each(Result::unwrap);
    // A last export after the writers are done takes what is left.
    export_now(&exporters[0], &settings, "main").await;
    export_now(&exporters[0], &settings, "acme").await;

    let all = files(dir.path());
    let (acme, main): (
        std::collections::BTreeMap<_, _>,
        std::collections::BTreeMap<_, _>,
    ) = all.into_iter().partition(|(k, _)| k.starts_with("acme/"));
    let acme = acme
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("acme/").to_owned(), v))
        .collect();
    assert_exactly_once(&db, "main", None, &main).await;
    assert_exactly_once(&db, "acme", Some("acme"), &acme).await;
}

#[tokio::test]
async fn a_repeated_object_key_gets_a_new_run_id_instead_of_a_false_412() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("a", dir.path());
    env.extend(file_destination_env("b", dir.path()));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    let plan = |name: &'static str| {
        let db = &db;
        let exporter = &exporter;
        let settings = &settings;
        async move {
            let lease = granted(exporter.claim(destination(settings, name)).await.unwrap());
            let new = audit_exporter::store::NewRun {
                tenant_id: None,
                format: Default::default(),
                slot: None,
                delivery: None,
                max_object_bytes: i64::MAX,
                by_day: false,
            };
            let calls = std::sync::atomic::AtomicUsize::new(0);
            // The first key offered is always the same, as a five-character layout may repeat.
            db.store
                .plan_run(&lease, &new, |id, _| {
                    match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                        0 => "same-key.jsonl".to_owned(),
                        _ => format!("{id}.jsonl"),
                    }
                })
                .await
                .unwrap()
        }
    };
    let first = plan("a").await;
    let second = plan("b").await;
    assert_eq!(first.object_key, "same-key.jsonl");
    assert_eq!(second.object_key, format!("{}.jsonl", second.id));
}

#[tokio::test]
async fn a_stale_lease_holder_cannot_start_an_attempt_or_overwrite_the_runs_error() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, file_destination_env("main", dir.path()));
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    append(&db, 3, None).await;

    let stale = exporter(&db, &settings);
    let stale_lease = granted(stale.claim(dest).await.unwrap());
    let (run, _) = stale
        .plan_or_resume(&stale_lease, dest, None)
        .await
        .unwrap();
    expire_leases(&db).await;
    let current = exporter(&db, &settings);
    let lease = granted(current.claim(dest).await.unwrap());
    let store = current.store();
    store.start_attempt(&lease, run.id).await.unwrap();
    assert!(
        store
            .record_failure(&lease, run.id, "current")
            .await
            .unwrap()
    );

    assert!(
        !store
            .record_failure(&stale_lease, run.id, "stale")
            .await
            .unwrap()
    );
    let error = stale
        .deliver(&stale_lease, &run, sink.as_ref())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.downcast_ref::<CommitError>(),
            Some(CommitError::LeaseLost(_))
        ),
        "{error:#}"
    );
    let (last_error, attempts): (Option<String>, i32) =
        sqlx::query_as("SELECT last_error, attempts FROM export_runs WHERE id = $1")
            .bind(run.id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        (last_error.as_deref(), attempts),
        (Some("current"), 1),
        "the stale holder wrote nothing to the run"
    );
    assert!(
        files(dir.path()).is_empty(),
        "the stale holder uploaded nothing"
    );
}
