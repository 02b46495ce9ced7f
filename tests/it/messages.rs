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
    assert!(!log.contains('\x1b'), "ANSI escapes in a piped log: {log:?}");
}
