//! Re-export by time range: exactly the already-exported events of the range, in
//! (occurred_at, txid, id) order, beside the scheduled objects and never instead of them.

use std::collections::BTreeMap;

use audit_exporter::sink;
use audit_exporter::store::Claim;
use chrono::{DateTime, TimeZone, Utc};
use indicatif::ProgressBar;

use crate::check::{assert_exactly_once, decode};
use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestBucket, TestDb, settings};
use crate::{destination, export_now, exporter};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, hour, minute, 0).unwrap()
}

/// `n` events of `tenant`, one a second from `start`, in one transaction; in reverse order
/// of occurrence, so commit order and occurrence order differ.
async fn append_at(db: &TestDb, n: i64, start: DateTime<Utc>, tenant: &str) {
    sqlx::query(
        r#"INSERT INTO audit_events (occurred_at, tenant_id, action, actor, metadata)
           SELECT $1 + make_interval(secs => g::int), $2, 'user.login',
                  jsonb_build_object('type', 'user', 'id', 'u-' || g),
                  jsonb_build_object('padding', repeat(md5(g::text), 8))
           FROM generate_series($3 - 1, 0, -1) g"#,
    )
    .bind(start)
    .bind(tenant)
    .bind(n)
    .execute(db.pool())
    .await
    .unwrap();
}

/// The scheduled objects' events of `[from, to)` (of `tenant`), in the order a re-export must
/// give them: by occurred_at, ties in the exported (txid, id) order.
fn expected(
    scheduled: &BTreeMap<String, Vec<u8>>,
    keys_in_order: &[String],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    tenant: Option<&str>,
) -> Vec<String> {
    let mut events: Vec<(DateTime<Utc>, String)> = keys_in_order
        .iter()
        .flat_map(|key| decode(key, &scheduled[key]))
        .filter(|e| tenant.is_none_or(|t| e["tenant_id"] == t))
        .map(|e| {
            let occurred = e["occurred_at"].as_str().unwrap().parse().unwrap();
            (occurred, e["event_id"].as_str().unwrap().to_owned())
        })
        .filter(|(occurred, _)| (from..to).contains(occurred))
        .collect();
    events.sort_by_key(|(occurred, _)| *occurred);
    events.into_iter().map(|(_, id)| id).collect()
}

fn ids(objects: &[(String, Vec<u8>)]) -> Vec<String> {
    objects
        .iter()
        .flat_map(|(key, bytes)| decode(key, bytes))
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn scheduled_keys(db: &TestDb, destination: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT o.key FROM export_runs r JOIN export_run_objects o ON o.run_id = r.id
         WHERE r.destination = $1 AND r.kind = 'scheduled' AND r.status = 'done'
         ORDER BY r.window_lo, o.seq",
    )
    .bind(destination)
    .fetch_all(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_range_is_re_exported_exactly_in_order_beside_the_scheduled_objects() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("main", "p");
    env.extend(bucket.destination_env("split", "s"));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__SPLIT__MAX_OBJECT_BYTES".into(),
        "1048576".into(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);

    // Two exported windows whose occurrences interleave, across two tenants.
    append_at(&db, 300, at(0, 0), "acme").await;
    append_at(&db, 200, at(1, 30), "globex").await;
    export_now(&exporter, &settings, "main").await;
    append_at(&db, 100, at(2, 0), "acme").await;
    export_now(&exporter, &settings, "main").await;
    // Not exported yet: a re-export must not carry it.
    append_at(&db, 50, at(2, 30), "acme").await;

    let watermark = db.watermark_of("main").await;
    let scheduled = bucket.objects("p/schema=").await;
    let keys = scheduled_keys(&db, "main").await;
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();

    let range = (at(1, 0), at(3, 0));
    for tenant in [None, Some("acme")] {
        let report = exporter
            .reexport(dest, sink.as_ref(), range, tenant, &ProgressBar::hidden())
            .await
            .unwrap();
        assert_eq!(report.locations.len(), 1);
        let key = report.locations[0]
            .strip_prefix(&format!("s3://{}/", bucket.name))
            .unwrap();
        assert!(
            key.starts_with("p/reexport/schema=audit_log/version=v1/year=")
                && key.ends_with(&format!("_{}_part0001.jsonl", report.run.id)),
            "{key}"
        );
        let object = bucket.objects(key).await.into_iter().collect::<Vec<_>>();
        let got = ids(&object);
        assert_eq!(got, expected(&scheduled, &keys, range, tenant));
        assert_eq!(report.events as usize, got.len());
        assert!(!got.is_empty());
        let (kind, from, to, count): (String, DateTime<Utc>, DateTime<Utc>, i64) = sqlx::query_as(
            "SELECT kind, range_from, range_to, event_count FROM export_runs WHERE id = $1",
        )
        .bind(report.run.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(
            (kind.as_str(), from, to, count),
            ("reexport", range.0, range.1, got.len() as i64)
        );
    }
    assert_eq!(
        db.watermark_of("main").await,
        watermark,
        "the watermark never moves"
    );
    assert_eq!(
        bucket.objects("p/schema=").await,
        scheduled,
        "scheduled objects untouched"
    );

    // Split by max_object_bytes: consecutive objects that together hold the range.
    append_at(&db, 16_000, at(4, 0), "acme").await;
    export_now(&exporter, &settings, "split").await;
    let scheduled = bucket.objects("s/schema=").await;
    let keys = scheduled_keys(&db, "split").await;
    let dest = destination(&settings, "split");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let range = (
        at(0, 0),
        Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
    );
    let report = exporter
        .reexport(dest, sink.as_ref(), range, None, &ProgressBar::hidden())
        .await
        .unwrap();
    assert!(report.locations.len() >= 2, "{report:?}");
    let mut objects = Vec::new();
    for (n, location) in report.locations.iter().enumerate() {
        assert!(
            location.ends_with(&format!("_part{:04}.jsonl", n + 1)),
            "{location}"
        );
        let key = location
            .strip_prefix(&format!("s3://{}/", bucket.name))
            .unwrap();
        objects.extend(bucket.objects(key).await);
    }
    assert_eq!(ids(&objects), expected(&scheduled, &keys, range, None));
    assert_exactly_once(&db, "split", None, &scheduled).await;
}

#[tokio::test]
async fn a_re_export_runs_beside_a_scheduled_run_of_the_same_destination() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let settings = settings(&db, bucket.destination_env("main", "p"));
    let exporter = exporter(&db, &settings);
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    append_at(&db, 400, at(0, 0), "acme").await;
    export_now(&exporter, &settings, "main").await;
    let exported = bucket.objects("p/schema=").await;
    let keys = scheduled_keys(&db, "main").await;
    append_at(&db, 30_000, at(1, 0), "acme").await;

    // A scheduled run holds the lease and is uploading while the re-export reads and writes.
    let Claim::Granted(lease) = exporter.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let (run, _) = exporter.plan_or_resume(&lease, dest, None).await.unwrap();
    let range = (at(0, 0), at(23, 0));
    let progress = ProgressBar::hidden();
    let (delivered, reexported) = tokio::join!(
        exporter.deliver(&lease, &run, sink.as_ref()),
        exporter.reexport(dest, sink.as_ref(), range, None, &progress)
    );
    exporter
        .commit(&lease, &run, &delivered.unwrap())
        .await
        .unwrap();
    let reexported = reexported.unwrap();
    let key = reexported.locations[0]
        .strip_prefix(&format!("s3://{}/", bucket.name))
        .unwrap();
    let object: Vec<_> = bucket.objects(key).await.into_iter().collect();
    // Only what was exported before the re-export began: the window in flight is not below
    // the watermark yet.
    assert_eq!(ids(&object), expected(&exported, &keys, range, None));
    assert_exactly_once(&db, "main", None, &bucket.objects("p/schema=").await).await;
}

#[tokio::test]
async fn invalid_ranges_exit_2_naming_what_is_wrong() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL", url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID", "acme"),
    ];
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "--from",
                "2026-11-20T00:00:00Z",
                "--to",
                "2026-11-20T00:00:00Z",
            ],
            "--from 2026-11-20T00:00:00+00:00 is not before --to 2026-11-20T00:00:00+00:00",
        ),
        (
            &["--from", "2026-11-20T10", "--to", "2026-11-21T00:00:00Z"],
            "invalid value '2026-11-20T10' for '--from <TIME>'",
        ),
        (
            &[
                "--from",
                "2026-11-20T00:00:00Z",
                "--to",
                "2099-01-01T00:00:00Z",
            ],
            "--to 2099-01-01T00:00:00+00:00 is in the future",
        ),
        (
            &[
                "--from",
                "2026-11-20T00:00:00Z",
                "--to",
                "2026-11-21T00:00:00Z",
                "--destination",
                "nope",
            ],
            "--destination nope: no such destination; configured: acme, archive",
        ),
        (
            &[
                "--from",
                "2026-11-20T00:00:00Z",
                "--to",
                "2026-11-21T00:00:00Z",
                "--destination",
                "acme",
                "--tenant",
                "globex",
            ],
            "--tenant globex: destination acme exports only tenant acme",
        ),
        (&["--to", "2026-11-21T00:00:00Z"], "--from <TIME>"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["reexport"];
        all.extend(args);
        let output = audit_exporter(&all, &env);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM export_runs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(runs, 0, "nothing was started");
    assert!(crate::harness::files(dir.path()).is_empty());
}

/// `n` events with incompressible padding, so compressed objects are large too.
async fn append_random(db: &TestDb, n: i64, start: DateTime<Utc>) {
    sqlx::query(
        r#"INSERT INTO audit_events (occurred_at, tenant_id, action, actor, metadata)
           SELECT $1 + make_interval(secs => g::int), 'acme', 'user.login',
                  jsonb_build_object('type', 'user', 'id', 'u-' || g),
                  jsonb_build_object('padding', md5(random()::text) || md5(random()::text)
                                                || md5(random()::text) || md5(random()::text))
           FROM generate_series(1, $2) g"#,
    )
    .bind(start)
    .bind(n)
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn re_export_objects_pass_max_object_bytes_by_at_most_one_event() {
    const MAX: usize = 1 << 20;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = Vec::new();
    for (name, compression) in [("plain", "none"), ("gzip", "gzip")] {
        let key = |k: &str| format!("AUDIT_EXPORTER__DESTINATIONS__{}__{k}", name.to_uppercase());
        env.extend([
            (
                key("URL"),
                format!("file://{}/{name}", dir.path().display()),
            ),
            (key("COMPRESSION"), compression.to_owned()),
            (key("MAX_OBJECT_BYTES"), MAX.to_string()),
        ]);
    }
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    // About 2.6 MB of JSON, 1.4 MB gzipped: objects many times smaller than a part (5 MiB).
    // (The encoder's unit tests hold every compression to the same bound.)
    append_random(&db, 8_000, at(0, 0)).await;
    let range = (
        at(0, 0),
        Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
    );
    for name in ["plain", "gzip"] {
        export_now(&exporter, &settings, name).await;
        let dest = destination(&settings, name);
        let sink = sink::connect(dest, &settings.exporter).await.unwrap();
        let report = exporter
            .reexport(dest, sink.as_ref(), range, None, &ProgressBar::hidden())
            .await
            .unwrap();
        let objects: Vec<(String, Vec<u8>)> = report
            .locations
            .iter()
            .map(|path| (path.clone(), std::fs::read(path).unwrap()))
            .collect();
        let sizes: Vec<usize> = objects.iter().map(|(_, bytes)| bytes.len()).collect();
        assert!(sizes.len() >= 2, "{name}: {sizes:?}");
        // The largest event as written, compressed or not, is below 400 bytes.
        let largest_event = 400;
        for (n, (path, bytes)) in objects.iter().enumerate() {
            assert!(
                bytes.len() <= MAX + largest_event,
                "{name}: {path} holds {} bytes, over {MAX} by more than one event: {sizes:?}",
                bytes.len()
            );
            if n + 1 < objects.len() {
                assert!(
                    bytes.len() >= MAX - largest_event,
                    "{name}: {path} closed early"
                );
            }
        }
        let scheduled = crate::harness::files(&dir.path().join(name));
        let scheduled: BTreeMap<String, Vec<u8>> = scheduled
            .into_iter()
            .filter(|(key, _)| key.starts_with("schema="))
            .collect();
        let keys: Vec<String> = scheduled.keys().cloned().collect();
        assert_eq!(
            ids(&objects),
            expected(&scheduled, &keys, range, None),
            "{name}"
        );
    }
}
