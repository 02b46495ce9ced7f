//! Where keys land: an S3 prefix as written in the URL, and templates that would climb out of
//! a directory destination refused.

use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestBucket, TestDb, settings};
use crate::{append, export_now, exporter};

#[tokio::test]
async fn an_s3_prefix_is_written_decoded() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("main", "audit logs/données");
    let url = env.iter_mut().find(|(k, _)| k.ends_with("__URL")).unwrap();
    assert_eq!(url.1, format!("s3://{}/audit logs/données", bucket.name));
    let settings = settings(&db, env);
    append(&db, 3, None).await;
    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert!(
        report
            .run
            .object_key
            .starts_with("audit logs/données/schema=audit_log/"),
        "{}",
        report.run.object_key
    );
    let objects = bucket.objects("").await;
    let keys: Vec<&String> = objects.keys().collect();
    assert_eq!(
        keys,
        [&report.run.object_key],
        "one object, under the decoded prefix"
    );
    let events = crate::check::decode(keys[0], &objects[keys[0]]);
    assert_eq!(events.len(), 3);

    // The encoded form means the same prefix.
    let mut env = bucket.destination_env("other", "x");
    env[0].1 = format!("s3://{}/audit%20logs/donn%C3%A9es", bucket.name);
    let other = crate::harness::settings(&db, env);
    assert_eq!(other.destinations[0].prefix(), "audit logs/données");
}

#[test]
fn keys_that_would_climb_out_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let cases = [
        (
            (
                "AUDIT_EXPORTER__DESTINATIONS__D__KEY_LAYOUT",
                "{prefix}/../../escaped/{run_id}{ext}",
            ),
            "destinations.d.key_layout: key template \"{prefix}/../../escaped/{run_id}{ext}\" has a `.` or `..` segment",
        ),
        (
            ("AUDIT_EXPORTER__DEFAULTS__KEY_LAYOUT", "/etc/{run_id}{ext}"),
            "defaults.key_layout: key template \"/etc/{run_id}{ext}\" is absolute",
        ),
        (
            (
                "AUDIT_EXPORTER__DESTINATIONS__D__URL",
                "s3://bucket-a/exports/../other",
            ),
            "destinations.d.url: the prefix \"exports/../other\" has a `.` or `..` segment",
        ),
    ];
    for ((key, value), expect) in cases {
        let mut env = vec![("AUDIT_EXPORTER__DESTINATIONS__D__URL", url.as_str())];
        env.retain(|(k, _)| *k != key);
        env.push((key, value));
        let output = audit_exporter(&["config", "check"], &env);
        assert_eq!(output.status.code(), Some(2), "{key}={value}");
        assert!(stderr(&output).contains(expect), "{}", stderr(&output));
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
