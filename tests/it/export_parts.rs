//! A window's bytes in parts: a multipart upload, one small part at a time, a sink that fails
//! while the window still streams, a wrong secret.

use audit_exporter::export::When;
use audit_exporter::sink;

use crate::check::{assert_exactly_once, decode};
use crate::harness::{TestBucket, TestDb, file_destination_env, settings};
use crate::{append, destination, export_now, exporter};

#[tokio::test]
async fn a_window_larger_than_a_part_is_a_multipart_upload_with_the_same_bytes() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let dir = tempfile::tempdir().unwrap();
    let mut env = bucket.destination_env("s3", "big");
    env.extend(file_destination_env("disk", dir.path()));
    let settings = settings(&db, env);
    // About 15 MB: three 5 MiB parts.
    append(&db, 22_000, None).await;
    let exporter = exporter(&db, &settings);
    let s3 = export_now(&exporter, &settings, "s3").await;
    let disk = export_now(&exporter, &settings, "disk").await;
    assert!(s3.bytes > 2 * (5 << 20), "{} bytes", s3.bytes);
    assert_eq!(s3.events, 22_000);

    let objects = bucket.objects("big/").await;
    assert_eq!(assert_exactly_once(&db, "s3", None, &objects).await, 0);
    assert_eq!(
        s3.objects[0].sha256, disk.objects[0].sha256,
        "the same window is the same bytes in any sink"
    );
    let head = bucket.head(&s3.run.object_key).await;
    assert!(
        head.e_tag().unwrap().contains('-'),
        "a multipart ETag: {:?}",
        head.e_tag()
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_the_run_and_the_watermark_stays() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("main", "x");
    env.retain(|(k, _)| !k.ends_with("SECRET_ACCESS_KEY"));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__SECRET_ACCESS_KEY".into(),
        "wrong-secret".into(),
    ));
    let settings = settings(&db, env);
    append(&db, 3, None).await;
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let error = exporter(&db, &settings)
        .export(dest, sink.as_ref(), When::Now)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("S3 PutObject on s3://") && message.contains("SignatureDoesNotMatch"),
        "{message}"
    );
    assert!(!message.contains("wrong-secret"));
    let (watermark, pending): (i64, i64) = sqlx::query_as(
        "SELECT watermark::text::bigint, (SELECT count(*) FROM export_runs WHERE status = 'pending') FROM export_destinations",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (watermark, pending),
        (0, 1),
        "nothing moved; the run waits to be resumed"
    );
    assert!(bucket.objects("").await.is_empty());
    let error: Option<String> = sqlx::query_scalar("SELECT last_error FROM export_runs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(error.unwrap().contains("SignatureDoesNotMatch"));
}

#[tokio::test]
async fn a_sink_that_fails_while_the_window_is_still_streaming_stops_the_whole_pipeline() {
    let db = TestDb::new().await;
    // A directory that cannot be created: the upload stage fails at once while the window,
    // several parts long, is still being read and encoded.
    let settings = settings(
        &db,
        vec![(
            "AUDIT_EXPORTER__DESTINATIONS__MAIN__URL".into(),
            "file:///proc/no-such-dir".into(),
        )],
    );
    append(&db, 40_000, None).await;
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let exporter = exporter(&db, &settings);
    let attempt = exporter.export(dest, sink.as_ref(), When::Now);
    let error = tokio::time::timeout(std::time::Duration::from_secs(60), attempt)
        .await
        .expect("a failed upload must not leave the reader and encoder waiting")
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("Failed to create /proc/no-such-dir"),
        "{error:#}"
    );
    let watermark = db.watermark().await;
    assert_eq!(watermark, 0);
}

#[tokio::test]
async fn one_small_part_at_a_time_yields_the_same_bytes_as_large_parts_in_parallel() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    // About 15 MB uncompressed: three parts of 5 MiB one at a time, or one of 64 MiB.
    append(&db, 22_000, Some("acme")).await;
    append(&db, 300, None).await;
    let mut objects = Vec::new();
    for (name, part_mib, in_flight) in [("slow", "5", "1"), ("fast", "64", "4")] {
        for compression in ["none", "gzip", "zstd"] {
            let destination = format!("{name}-{compression}");
            // A short prefix: see TestBucket::new.
            let prefix = format!("{}{}", &name[..1], &compression[..1]);
            let mut env = bucket.destination_env(&destination.replace('-', "_"), &prefix);
            env.extend([
                (
                    "AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB".into(),
                    part_mib.into(),
                ),
                (
                    "AUDIT_EXPORTER__EXPORTER__UPLOADS_IN_FLIGHT".into(),
                    in_flight.into(),
                ),
                (
                    format!(
                        "AUDIT_EXPORTER__DESTINATIONS__{}__COMPRESSION",
                        destination.replace('-', "_").to_uppercase()
                    ),
                    compression.into(),
                ),
            ]);
            let settings = settings(&db, env);
            let report = export_now(
                &exporter(&db, &settings),
                &settings,
                &destination.replace('-', "_"),
            )
            .await;
            assert_eq!(report.events, 22_300);
            let stored = bucket.objects(&format!("{prefix}/")).await;
            objects.push((
                destination,
                report.objects[0].sha256.clone(),
                stored[&report.run.object_key].clone(),
            ));
        }
    }
    let (slow, fast) = objects.split_at(3);
    for (slow, fast) in slow.iter().zip(fast) {
        assert_eq!(
            slow.1, fast.1,
            "{} and {}: the same SHA-256",
            slow.0, fast.0
        );
        assert!(
            slow.2 == fast.2,
            "{} and {}: the same bytes",
            slow.0,
            fast.0
        );
    }
    assert!(
        objects[0].2.len() > 10 << 20,
        "the uncompressed object spans parts"
    );
    let events = decode(".jsonl", &objects[0].2);
    assert_eq!(events.len(), 22_300);
    assert!(
        String::from_utf8_lossy(&objects[0].2)
            .lines()
            .all(|line| !line.contains("\": ") && !line.contains(", \"")),
        "stored JSON is exported compact"
    );
}
