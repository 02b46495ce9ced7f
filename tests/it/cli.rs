//! The binary as a user runs it: exit codes, messages, and a whole export.

use std::process::{Command, Output};

use crate::check::assert_exactly_once;
use crate::harness::{TestDb, files};

pub fn audit_exporter(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_audit-exporter"));
    command.args(args).env("AUDIT_EXPORTER__LOG__LEVEL", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", "s3://bucket-a"),
                ("AUDIT_EXPORTER__DESTINATIONS__ACME__EVERY_HOURS", "0"),
            ],
            "destinations.acme.every_hours: 0 is out of range; allowed: 1..=24",
        ),
        (
            &[
                ("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", "s3://bucket-a"),
                ("AUDIT_EXPORTER__DEFAULTS__EVERY_HOURS", "25"),
            ],
            "defaults.every_hours: 25 is out of range; allowed: 1..=24",
        ),
        (
            &[("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", "ftp://host/x")],
            "destinations.acme.url: scheme \"ftp\" is not supported",
        ),
        (
            &[("AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID", "acme")],
            "destinations.acme.url: missing",
        ),
    ];
    for (env, expect) in cases {
        let output = audit_exporter(&["config", "check"], env);
        assert_eq!(output.status.code(), Some(2), "{expect}");
        assert!(stderr(&output).contains(expect), "{}", stderr(&output));
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[destinations.acme]\nurl = \"s3://bucket-a\"\nfrequency = 3\n",
    )
    .unwrap();
    let output = audit_exporter(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown field `frequency`"),
        "{}",
        stderr(&output)
    );

    let output = audit_exporter(&["--config", "/nonexistent.toml", "config", "check"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--config /nonexistent.toml: no such file"));

    let output = audit_exporter(&["export", "--frequency", "2"], &[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap refuses unknown flags with 2"
    );
}

#[test]
fn an_empty_config_variable_counts_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[exporter]\nlease_secs = 77\n").unwrap();
    let file = file.to_str().unwrap();
    let empty = [("AUDIT_EXPORTER_CONFIG", "")];
    for (args, lease) in [
        (&["config", "check"][..], "lease_secs = 120"),
        (&["--config", file, "config", "check"], "lease_secs = 77"),
        (&["config", "check", "--config", file], "lease_secs = 77"),
    ] {
        let output = audit_exporter(args, &empty);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(lease), "{args:?}: {stdout}");
    }
}

#[test]
fn config_check_prints_the_effective_config_without_secrets() {
    let output = audit_exporter(
        &["config", "check"],
        &[
            (
                "AUDIT_EXPORTER__DATABASE__URL",
                "postgres://app:pa55word@db/audit",
            ),
            ("AUDIT_EXPORTER__DESTINATIONS__M__URL", "s3://bucket-a/p"),
            (
                "AUDIT_EXPORTER__DESTINATIONS__M__ACCESS_KEY_ID",
                "AKIASECRETID",
            ),
            (
                "AUDIT_EXPORTER__DESTINATIONS__M__SECRET_ACCESS_KEY",
                "very-secret-key",
            ),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(
        stdout.contains("[destinations.m]") && stdout.contains("every_hours = 1"),
        "{stdout}"
    );
    for secret in ["pa55word", "AKIASECRETID", "very-secret-key"] {
        assert!(
            !stdout.contains(secret) && !stderr(&output).contains(secret),
            "{secret} leaked"
        );
    }
}

#[tokio::test]
async fn append_export_and_status_from_the_command_line() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        ("AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL", url.as_str()),
    ];

    let output = audit_exporter(&["append", "--action", "user.login", "--actor", "[]"], &env);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--actor: must be a JSON object"));

    let output = audit_exporter(
        &[
            "append",
            "--action",
            "user.login",
            "--actor",
            r#"{"type":"user","id":"u1"}"#,
            "--tenant",
            "acme",
            "--count",
            "3",
        ],
        &env,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 3);

    let output = audit_exporter(&["export", "--destination", "nope"], &env);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--destination nope: no such destination; configured: archive")
    );

    let output = audit_exporter(&["export", "--if-due"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("archive: not due; next export at")
    );
    assert!(files(dir.path()).is_empty());

    let output = audit_exporter(&["export"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .starts_with("archive: exported 3 events")
    );
    assert_eq!(files(dir.path()).len(), 1);

    let output = audit_exporter(&["status", "--json"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let archive = &status["destinations"][0];
    let watermark = db.watermark().await;
    assert_eq!(archive["watermark"], watermark);
    assert_eq!(archive["waiting_events"], 0);
    assert_eq!(archive["recent_runs"][0]["events"], 3);
    assert_eq!(archive["recent_runs"][0]["status"], "done");

    // A failed export exits 1: the directory cannot be created.
    let env = [
        ("AUDIT_EXPORTER__DATABASE__URL", db.url.as_str()),
        (
            "AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL",
            "file:///proc/no-such-dir",
        ),
    ];
    audit_exporter(&["append", "--action", "a", "--actor", "{}"], &env);
    let output = audit_exporter(&["export"], &env);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("archive: export failed: Failed to create /proc/no-such-dir")
    );
}

#[tokio::test]
async fn run_exports_what_is_due_on_its_cron_schedule_and_stops_on_sigterm() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    // Due since an hour ago, as after downtime; `run` must catch up without waiting for the hour.
    sqlx::query("INSERT INTO export_destinations (name, every_hours, anchor) VALUES ('archive', 1, date_trunc('hour', now()) - interval '1 hour')")
        .execute(db.pool())
        .await
        .unwrap();
    crate::append(&db, 30, None).await;
    let url = format!("file://{}", dir.path().display());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
        .arg("run")
        .env("AUDIT_EXPORTER__DATABASE__URL", &db.url)
        .env("AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL", &url)
        .env("AUDIT_EXPORTER__RUN__CHECK_CRON", "* * * * * *")
        .env("AUDIT_EXPORTER__RUN__LISTEN", "")
        .env("AUDIT_EXPORTER__LOG__LEVEL", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Wait for the committed run: a condition in the database, bounded in time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM export_runs WHERE status = 'done'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        if done > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run exported nothing in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Served once: the due time is recorded, so later checks do nothing until the next hour.
    let served: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_slot FROM export_destinations")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(served.is_some());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM export_runs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(runs, 1, "one due time, one run");
    assert_exactly_once(&db, "archive", None, &files(dir.path())).await;
}
