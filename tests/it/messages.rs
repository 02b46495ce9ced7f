//! What a user reads when something is wrong: one line naming what failed and why, plain text
//! when nobody is at a terminal.

use crate::cli::{audit_exporter, stderr};
use crate::harness::TestDb;

#[tokio::test]
async fn logs_carry_no_colour_when_stderr_is_not_a_terminal() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL", url.as_str()),
        ("AUDIT_EXPORTER__LOG__LEVEL", "debug"),
    ];
    let output = audit_exporter(&["export"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.lines().count() > 3, "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escapes in a piped log: {log:?}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_named_at_once_without_the_password() {
    let db = TestDb::new().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let mut missing = url::Url::parse(&db.url).unwrap();
    missing.set_path("no_such_database");
    missing.set_password(Some("pa55word")).unwrap();
    let cases = [
        (
            format!("postgres://app:pa55word@127.0.0.1:{closed}/audit"),
            format!(
                "error: cannot connect to PostgreSQL at 127.0.0.1:{closed} (database audit, user app): connection refused"
            ),
        ),
        (
            format!("postgres://app:pa55word@127.0.0.1:{silent_port}/audit"),
            format!(
                "error: cannot connect to PostgreSQL at 127.0.0.1:{silent_port} (database audit, user app): no answer within 1 s (database.connect_timeout_secs)"
            ),
        ),
        (
            "postgres://app:pa55word@no-such-host.invalid:5432/audit".to_owned(),
            "no-such-host.invalid:5432 (database audit, user app): the host name no-such-host.invalid does not resolve".to_owned(),
        ),
        (
            missing.to_string(),
            ": database \"no_such_database\" does not exist\n".to_owned(),
        ),
    ];
    for (url, expected) in cases {
        let started = std::time::Instant::now();
        let output = audit_exporter(
            &["export"],
            &[
                ("AUDIT_EXPORTER__DATABASE__URL", url.as_str()),
                ("AUDIT_EXPORTER__DATABASE__CONNECT_TIMEOUT_SECS", "1"),
                (
                    "AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL",
                    "file:///tmp/unused",
                ),
            ],
        );
        let error = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{error}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{url}: {:?}",
            started.elapsed()
        );
        assert!(error.contains(&expected), "{url}: {error}");
        assert!(!error.contains("pa55word"), "{error}");
        assert!(!error.contains("at line"), "{error}");
        assert!(
            error.matches("does not exist").count() <= 1,
            "said once: {error}"
        );
    }
    drop(silent);
}

fn export_output(env: &[(String, String)], args: &[&str]) -> (Option<i32>, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = audit_exporter(args, &env);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn an_s3_or_sts_endpoint_that_is_down_is_one_line_naming_it_and_the_cause() {
    let db = TestDb::new().await;
    crate::append(&db, 1, None).await;
    let closed = |_| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (s3_down, sts_down) = (closed(1), closed(2));
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let bucket = crate::harness::TestBucket::new();
    let base = |endpoint: &str| {
        let mut env = bucket.destination_env("s", "p");
        env.retain(|(k, _)| !k.ends_with("__ENDPOINT"));
        env.extend([
            ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone()),
            (
                "AUDIT_EXPORTER__DESTINATIONS__S__ENDPOINT".to_owned(),
                endpoint.to_owned(),
            ),
            (
                "AUDIT_EXPORTER__EXPORTER__RETRY_MAX_ATTEMPTS".to_owned(),
                "1".to_owned(),
            ),
            (
                "AUDIT_EXPORTER__EXPORTER__REQUEST_TIMEOUT_SECS".to_owned(),
                "1".to_owned(),
            ),
        ]);
        env
    };
    let mut via_sts = base(&bucket.endpoint);
    via_sts.extend([
        (
            "AUDIT_EXPORTER__DESTINATIONS__S__ROLE_ARN".to_owned(),
            "arn:aws:iam::123456789012:role/writer".to_owned(),
        ),
        (
            "AUDIT_EXPORTER__DESTINATIONS__S__STS_ENDPOINT".to_owned(),
            sts_down.clone(),
        ),
    ]);
    let cases = [
        (
            base(&s3_down),
            format!("s: export failed: S3 PutObject on s3://{}/p/", bucket.name),
            format!(": no answer from {s3_down}: connection refused\n"),
        ),
        (
            base(&silent_url),
            format!("s: export failed: S3 PutObject on s3://{}/p/", bucket.name),
            format!(": no answer from {silent_url}: timed out"),
        ),
        (
            via_sts,
            "s: export failed: STS AssumeRole on arn:aws:iam::123456789012:role/writer".to_owned(),
            format!(": no answer from {sts_down}: connection refused\n"),
        ),
    ];
    for (env, starts, ends) in cases {
        let (code, out) = export_output(&env, &["export"]);
        assert_eq!(code, Some(1), "{out}");
        let line = out.lines().next().unwrap_or_default();
        assert!(line.starts_with(&starts), "{out}");
        assert!(out.contains(&ends), "{out}");
        assert!(
            !out.contains("DispatchFailure") && !out.contains(" { "),
            "a debug dump: {out}"
        );
        assert!(out.contains("s: hint: No answer from "), "{out}");
    }
    drop(silent);
}

#[tokio::test]
async fn export_prints_the_hint_that_verify_gives() {
    let db = TestDb::new().await;
    crate::append(&db, 1, None).await;
    let bucket = crate::harness::TestBucket::new();
    let mut env = bucket.destination_env("s", "p");
    env.retain(|(k, _)| !k.ends_with("__SECRET_ACCESS_KEY"));
    env.extend([
        ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone()),
        (
            "AUDIT_EXPORTER__DESTINATIONS__S__SECRET_ACCESS_KEY".to_owned(),
            "not-the-secret".to_owned(),
        ),
    ]);
    let (code, verify) = export_output(&env, &["verify"]);
    assert_eq!(code, Some(1), "{verify}");
    let (code, export) = export_output(&env, &["export"]);
    assert_eq!(code, Some(1), "{export}");
    let hint = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("s: hint: "))
            .map(str::to_owned)
    };
    assert_eq!(
        hint(&export).as_deref(),
        Some(
            "s: hint: The secret key does not belong to the access key ID: check secret_access_key."
        ),
        "{export}"
    );
    assert_eq!(hint(&export), hint(&verify));
}
