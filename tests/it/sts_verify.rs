//! `verify` with STS credentials: a test object written, or the STS error named with its likely
//! cause.

use crate::cli::stderr;
use crate::harness::TestDb;
use crate::moto::{self, HOP_ROLE, WRITER_EXTERNAL_ID, WRITER_ROLE};
use crate::sts::*;

/// A session of the exporter's own role, `audit-hop`, which may assume roles but not write.
pub(crate) async fn own_role_session(moto: &moto::Moto) -> aws_sdk_sts::types::Credentials {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            &moto.exporter.id,
            &moto.exporter.secret,
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_sts::Client::from_conf(config)
        .assume_role()
        .role_arn(HOP_ROLE)
        .role_session_name("audit-exporter")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap()
}

#[tokio::test]
async fn verify_writes_a_test_object_or_names_the_sts_error_and_its_likely_cause() {
    let moto = moto::enforced();
    let db = TestDb::new().await;
    let bucket = moto.bucket(false).await;
    let credentials = |role: &'static str, external_id: &'static str| {
        let mut env = vec![("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone())];
        env.extend(moto::destination_env(
            "acme",
            &bucket,
            &moto.endpoint,
            &[
                ("ACCESS_KEY_ID", &moto.exporter.id),
                ("SECRET_ACCESS_KEY", &moto.exporter.secret),
                ("ROLE_ARN", role),
                ("EXTERNAL_ID", external_id),
                ("STS_ENDPOINT", &moto.endpoint),
            ],
        ));
        env
    };

    let output = run_cli(&["verify"], &credentials(WRITER_ROLE, WRITER_EXTERNAL_ID));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", stderr(&output));
    let objects = moto.objects(&bucket, "exports/test/").await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let (key, bytes) = objects.iter().next().unwrap();
    assert!(
        stdout.contains(&format!(
            "acme: ok, wrote a test object to s3://{bucket}/{key}"
        )),
        "{stdout}"
    );
    let events = crate::check::decode(key, bytes);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], "system.export.test");
    let run: (String, String, Option<i64>, String) =
        sqlx::query_as("SELECT kind, status, bytes, object_key FROM export_runs")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        run,
        (
            "test".into(),
            "done".into(),
            Some(bytes.len() as i64),
            key.clone()
        )
    );
    assert_eq!(
        db.watermark().await,
        0,
        "a test delivery never moves the watermark"
    );

    for (role, external_id) in [
        (WRITER_ROLE, "audit-exporter:wrong"),
        // Outside the audit-* roles the exporter may assume. (moto lets a user assume a role
        // that does not exist when its policy allows the name.)
        (
            "arn:aws:iam::123456789012:role/billing-writer",
            WRITER_EXTERNAL_ID,
        ),
    ] {
        let output = run_cli(&["verify"], &credentials(role, external_id));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(&format!("acme: FAILED: an error occurred while loading credentials: STS AssumeRole on {role}: AccessDenied:"))
                && stdout.contains("(HTTP 403) (request id "),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("acme: hint: Check that the role {role} exists and that its trust policy allows sts:AssumeRole"))
                && stdout.contains(&format!("\"sts:ExternalId\": \"{external_id}\"")),
            "{stdout}"
        );
    }
    let failed: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, last_error FROM export_runs WHERE status <> 'done' ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(failed.len(), 2);
    assert!(
        failed.iter().all(|(status, error)| status == "failed"
            && error.as_deref().is_some_and(|e| e.contains("AccessDenied"))),
        "{failed:?}"
    );
    assert_eq!(
        moto.objects(&bucket, "exports/").await.len(),
        1,
        "nothing else was written"
    );
}
