//! What a write to a customer's bucket carries and survives: object options read back with a
//! separate client, retries of throttling and 5xx, permanent errors that fail at once, and a
//! role that may only PutObject.

use std::io::Write;

use audit_exporter::export::When;
use audit_exporter::settings::Settings;
use audit_exporter::sink::{self, PutOutcome};
use audit_exporter::store::Claim;
use aws_sdk_s3::types::ChecksumMode;

use crate::check::assert_exactly_once;
use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestBucket, TestDb, settings};
use crate::moto::{self, WRITER_EXTERNAL_ID, WRITER_ROLE};
use crate::proxy::{Fault, Proxy, is_assume_role, is_put_object};
use crate::{append, destination, export_now, exporter};

/// Env for a destination that writes through `audit-writer`, which may only s3:PutObject.
fn writer_env(
    moto: &moto::Moto,
    name: &str,
    bucket: &str,
    endpoint: &str,
) -> Vec<(String, String)> {
    moto::destination_env(
        name,
        bucket,
        endpoint,
        &[
            ("ACCESS_KEY_ID", &moto.exporter.id),
            ("SECRET_ACCESS_KEY", &moto.exporter.secret),
            ("ROLE_ARN", WRITER_ROLE),
            ("EXTERNAL_ID", WRITER_EXTERNAL_ID),
            ("STS_ENDPOINT", endpoint),
        ],
    )
}

#[tokio::test]
async fn every_object_option_arrives_on_the_stored_object() {
    let moto = moto::enforced();
    let proxy = Proxy::start(&moto.endpoint);
    let db = TestDb::new().await;
    let bucket = moto.bucket(true).await;
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    writeln!(
        file,
        r#"[destinations.acme]
server_side_encryption = "aws:kms"
kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/audit"
acl = "bucket-owner-full-control"
storage_class = "STANDARD_IA"
object_lock_mode = "GOVERNANCE"
object_lock_retain_days = 30
compression = "none"
[destinations.acme.tags]
team = "audit/compliance team"
"cost center" = "42""#
    )
    .unwrap();
    let mut env = writer_env(moto, "acme", &bucket, &proxy.endpoint);
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    env.push(("AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB".into(), "5".into()));
    let settings = Settings::load_with_env(Some(file.path()), env).unwrap();
    let exporter = exporter(&db, &settings);

    // One PutObject, then a multipart upload (the options go on CreateMultipartUpload).
    let now = chrono::Utc::now();
    for events in [20, 60_000] {
        append(&db, events, None).await;
        let report = export_now(&exporter, &settings, "acme").await;
        let key = report.run.object_key.clone();
        let s3 = moto.admin_s3();
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("application/x-ndjson"));
        assert_eq!(head.content_encoding(), None);
        assert_eq!(
            head.server_side_encryption().map(|s| s.as_str()),
            Some("aws:kms")
        );
        assert_eq!(
            head.ssekms_key_id(),
            Some("arn:aws:kms:us-east-1:123456789012:key/audit")
        );
        assert_eq!(
            head.storage_class().map(|s| s.as_str()),
            Some("STANDARD_IA")
        );
        let expected = (now + chrono::Duration::days(30)).timestamp();
        let retained = |until: i64| (expected..expected + 600).contains(&until);
        if events == 20 {
            assert_eq!(
                head.object_lock_mode().map(|m| m.as_str()),
                Some("GOVERNANCE")
            );
            let until = head.object_lock_retain_until_date().unwrap().secs();
            assert!(retained(until), "{until} vs {expected}");
        } else {
            // moto keeps no Object Lock settings from CreateMultipartUpload: check what was sent.
            let seen = proxy.seen();
            let create = seen
                .iter()
                .find(|s| s.method == "POST" && s.query.contains("uploads"))
                .unwrap();
            assert_eq!(create.header("x-amz-object-lock-mode"), Some("GOVERNANCE"));
            let until = create
                .header("x-amz-object-lock-retain-until-date")
                .unwrap();
            let until = chrono::DateTime::parse_from_rfc3339(until)
                .unwrap()
                .timestamp();
            assert!(retained(until), "{until} vs {expected}");
        }
        if events == 20 {
            let sha256 = report.run.sha256.as_deref().unwrap();
            let sent = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                hex::decode(sha256).unwrap(),
            );
            assert_eq!(head.checksum_sha256(), Some(sent.as_str()));
        } else {
            let parts = proxy
                .seen()
                .iter()
                .filter(|s| s.query.contains("partNumber="))
                .count();
            assert!(parts >= 2, "a multipart upload: {parts} parts");
        }

        let tags = s3
            .get_object_tagging()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let mut tags: Vec<(&str, &str)> = tags
            .tag_set()
            .iter()
            .map(|t| (t.key(), t.value()))
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            [("cost center", "42"), ("team", "audit/compliance team")]
        );
        let acl = s3
            .get_object_acl()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert!(
            acl.grants()
                .iter()
                .any(|g| g.permission().map(|p| p.as_str()) == Some("FULL_CONTROL")),
            "{acl:?}"
        );
    }
    assert_exactly_once(&db, "acme", None, &moto.objects(&bucket, "exports/").await).await;
}

#[tokio::test]
async fn throttling_and_5xx_are_retried_and_permanent_errors_fail_at_once() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let mut env = bucket.destination_env("main", "p");
    env.retain(|(k, _)| !k.ends_with("__ENDPOINT"));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__MAIN__ENDPOINT".into(),
        proxy.endpoint.clone(),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);

    // 503 SlowDown twice, then the write goes through on the third attempt.
    proxy.inject(Fault::answer(is_put_object, 2, 503, "SlowDown"));
    append(&db, 10, None).await;
    export_now(&exporter, &settings, "main").await;
    let puts: Vec<_> = proxy.seen().into_iter().filter(is_put_object).collect();
    assert_eq!(
        puts.iter().map(|s| s.status).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    for put in &puts {
        assert_eq!(put.header("if-none-match"), Some("*"));
        assert_eq!(put.header("x-amz-sdk-checksum-algorithm"), Some("SHA256"));
        assert!(put.header("x-amz-checksum-sha256").is_some());
    }

    // A 500 on a part of a multipart upload is retried too.
    proxy.inject(Fault::answer(
        |s| s.method == "PUT" && s.query.contains("partNumber=2"),
        1,
        500,
        "InternalError",
    ));
    append(&db, 45_000, None).await;
    export_now(&exporter, &settings, "main").await;
    let parts: Vec<u16> = proxy
        .seen()
        .iter()
        .filter(|s| s.query.contains("partNumber=2"))
        .map(|s| s.status)
        .collect();
    assert_eq!(parts, [500, 200]);

    // Permanent errors: one attempt, the run stays pending with the error, the watermark stays.
    let dest = destination(&settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    for (status, code) in [
        (403, "AccessDenied"),
        (404, "NoSuchBucket"),
        (403, "InvalidAccessKeyId"),
    ] {
        append(&db, 5, None).await;
        let watermark = db.watermark().await;
        let before = proxy.seen().len();
        proxy.inject(Fault::answer(is_put_object, 1, status, code));
        let error = exporter
            .export(dest, sink.as_ref(), When::Now)
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains(&format!(
                "{code}: injected by the test proxy (HTTP {status})"
            )),
            "{error:#}"
        );
        let attempts = proxy.seen()[before..]
            .iter()
            .filter(|s| is_put_object(s))
            .count();
        assert_eq!(attempts, 1, "{code} is not retried");
        assert_eq!(db.watermark().await, watermark);
        let (status, last_error): (String, String) = sqlx::query_as(
            "SELECT status, last_error FROM export_runs WHERE kind = 'scheduled' ORDER BY window_end DESC LIMIT 1",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(status, "pending");
        assert!(last_error.contains(code), "{last_error}");
    }
    // Nothing is in the way any more: the pending run is finished, then the events that came
    // after its window.
    export_now(&exporter, &settings, "main").await;
    export_now(&exporter, &settings, "main").await;
    assert_exactly_once(&db, "main", None, &bucket.objects("p/").await).await;
}

#[tokio::test]
async fn sts_throttling_is_retried() {
    let moto = moto::enforced();
    let proxy = Proxy::start(&moto.endpoint);
    let db = TestDb::new().await;
    let bucket = moto.bucket(false).await;
    let settings = settings(&db, writer_env(moto, "acme", &bucket, &proxy.endpoint));
    proxy.inject(Fault::answer(is_assume_role, 2, 503, "ServiceUnavailable"));
    append(&db, 3, None).await;
    export_now(&exporter(&db, &settings), &settings, "acme").await;
    let assumed: Vec<u16> = proxy
        .seen()
        .iter()
        .filter(|s| is_assume_role(s))
        .map(|s| s.status)
        .collect();
    assert_eq!(assumed, [503, 503, 200]);
    assert_exactly_once(&db, "acme", None, &moto.objects(&bucket, "exports/").await).await;
}

#[tokio::test]
async fn a_put_object_only_role_serves_full_exports_and_a_resume_that_meets_its_object_says_what_to_grant()
 {
    let moto = moto::enforced();
    let proxy = Proxy::start(&moto.endpoint);
    let db = TestDb::new().await;
    let bucket = moto.bucket(false).await;
    let settings = settings(&db, writer_env(moto, "acme", &bucket, &proxy.endpoint));
    let exporter = exporter(&db, &settings);
    let dest = destination(&settings, "acme");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();

    // A multipart upload.
    append(&db, 60_000, None).await;
    export_now(&exporter, &settings, "acme").await;

    // A crash after the upload, before the commit.
    append(&db, 7, None).await;
    let Claim::Granted(lease) = exporter.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let (run, _) = exporter.plan_or_resume(&lease, dest, None).await.unwrap();
    let delivered = exporter.deliver(&lease, &run, sink.as_ref()).await.unwrap();
    assert_eq!(delivered.outcome, PutOutcome::Written);
    // It stopped before the object was recorded: the retry uploads it again and meets the 412,
    // and may not read the object back to check that it is the run's own.
    sqlx::query("DELETE FROM export_run_objects WHERE run_id = $1")
        .bind(run.id)
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE export_destinations SET lease_expires_at = now() - interval '1 second'")
        .execute(db.pool())
        .await
        .unwrap();
    let watermark = db.watermark_of("acme").await;
    let error = exporter
        .export(dest, sink.as_ref(), When::Now)
        .await
        .unwrap_err();
    let said = format!("{error:#}");
    assert!(
        said.starts_with(&format!(
            "s3://{bucket}/{} already holds an object, which could not be read back",
            run.object_key
        )) && said.contains("s3:GetObject")
            && said.contains("AccessDenied"),
        "{said}"
    );
    assert_eq!(db.watermark_of("acme").await, watermark, "nothing moved");

    let s3_requests: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action.is_none())
        .collect();
    for seen in &s3_requests {
        let write =
            matches!(seen.method.as_str(), "PUT" | "POST") && seen.path.split('/').count() > 2;
        let checked = seen.method == "GET" && seen.status == 403;
        assert!(
            write || checked,
            "only object writes and the denied check are sent: {} {}?{}",
            seen.method,
            seen.path,
            seen.query
        );
    }
    assert!(s3_requests.iter().any(|s| s.status == 412));

    // The way out the error gives: the bucket's owner moves the object away.
    moto.admin_s3()
        .delete_object()
        .bucket(&bucket)
        .key(&run.object_key)
        .send()
        .await
        .unwrap();
    let report = export_now(&exporter, &settings, "acme").await;
    assert!(report.resumed);
    assert_eq!(report.put, PutOutcome::Written);
    assert_eq!(report.run.object_key, run.object_key);
    assert_exactly_once(&db, "acme", None, &moto.objects(&bucket, "exports/").await).await;
}

#[tokio::test]
async fn a_denied_abort_is_logged_with_the_lifecycle_rule_to_set() {
    let moto = moto::enforced();
    let proxy = Proxy::start(&moto.endpoint);
    let db = TestDb::new().await;
    let bucket = moto.bucket(false).await;
    append(&db, 60_000, None).await;
    // The second part is refused for good, so the upload is abandoned and must be aborted,
    // which the PutObject-only role may not do.
    proxy.inject(Fault::answer(
        |s| s.method == "PUT" && s.query.contains("partNumber=2"),
        1,
        400,
        "InvalidArgument",
    ));
    let mut env = writer_env(moto, "acme", &bucket, &proxy.endpoint);
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    env.push(("AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB".into(), "5".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = audit_exporter(&["export"], &env);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(
        log.contains("s3:AbortMultipartUpload is not granted")
            && log.contains("AbortIncompleteMultipartUpload"),
        "{log}"
    );
    let aborts: Vec<u16> = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.status)
        .collect();
    assert_eq!(aborts, [403]);
    assert_eq!(db.watermark().await, 0);
}
