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
