//! Bad input: configs, command-line arguments, time ranges and environment values, each refused
//! with exit 2 and a message naming the input, with every secret of the configuration in play
//! and none of them printed. (Malformed rows are refused by the schema: see `crate::schema`.)

use super::{DB_PASSWORD, SESSION_TOKEN, SSL_PASSWORD, assert_no_secret};
use crate::cli::{audit_exporter, stderr};
use crate::harness::S3_SECRET_KEY;

/// Arguments, environment overrides, and what the message must say.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

const FROM: &str = "2026-01-01T00:00:00Z";
const TO: &str = "2026-01-02T00:00:00Z";

#[test]
fn bad_input_exits_2_naming_the_input_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let bad_range = file(
        "range.toml",
        "[destinations.m]\nurl = \"s3://bucket-a/p\"\nevery_hours = 0\n",
    );
    let fraction = file(
        "fraction.toml",
        "[destinations.m]\nurl = \"s3://bucket-a/p\"\nevery_hours = 0.5\n",
    );
    let boolean = file("boolean.toml", "[defaults]\nevery_hours = true\n");
    let bad_toml = file("syntax.toml", "[destinations.m\nurl = 1\n");
    let unknown = file(
        "unknown.toml",
        "[destinations.m]\nurl = \"s3://bucket-a/p\"\nfrequency = 3\n",
    );
    let db_url =
        format!("postgres://app:{DB_PASSWORD}@127.0.0.1:1/audit?sslpassword={SSL_PASSWORD}");
    let secrets: [(&str, &str); 5] = [
        ("AUDIT_EXPORTER__DATABASE__URL", &db_url),
        ("AUDIT_EXPORTER__DESTINATIONS__M__URL", "s3://bucket-a/p"),
        (
            "AUDIT_EXPORTER__DESTINATIONS__M__ACCESS_KEY_ID",
            "AKIAAUDITTEST",
        ),
        (
            "AUDIT_EXPORTER__DESTINATIONS__M__SECRET_ACCESS_KEY",
            S3_SECRET_KEY,
        ),
        (
            "AUDIT_EXPORTER__DESTINATIONS__M__SESSION_TOKEN",
            SESSION_TOKEN,
        ),
    ];
    let check = ["config", "check"];
    let actor = r#"{"type":"user","id":"u1"}"#;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // Configs.
        (vec!["--config", &bad_range, "config", "check"], vec![], "destinations.m.every_hours: 0 is out of range; allowed: 1..=24"),
        (vec!["--config", &fraction, "config", "check"], vec![], "destinations.m.every_hours: 0.5 is not a whole number; allowed: 1..=24"),
        (vec!["--config", &boolean, "config", "check"], vec![], "defaults.every_hours: true is not a whole number; allowed: 1..=24"),
        (vec!["--config", &bad_toml, "config", "check"], vec![], "TOML parse error at line 1"),
        (vec!["--config", &unknown, "config", "check"], vec![], "unknown field `frequency`"),
        (vec!["--config", "/nonexistent.toml", "config", "check"], vec![], "--config /nonexistent.toml: no such file"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__EXPORTER__LEASE_SECS", "4")], "exporter.lease_secs: 4 is out of range; allowed: 5..=86400"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB", "4")], "exporter.part_size_mib: 4 is out of range; allowed: 5..=5120"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__EXPORTER__REQUEST_TIMEOUT_SECS", "0")], "exporter.request_timeout_secs: 0 is out of range; allowed: 1..=3600"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__EXPORTER__RETRY_MAX_ATTEMPTS", "21")], "exporter.retry_max_attempts: 21 is out of range; allowed: 1..=20"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DATABASE__MAX_CONNECTIONS", "1")], "database.max_connections: 1 is out of range; allowed: 2..=100"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__RUN__CHECK_CRON", "0 * * * *")], "run.check_cron: \"0 * * * *\" is not a cron expression"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__RUN__LISTEN", "nowhere")], "run.listen: \"nowhere\" is not an address"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DEFAULTS__ENCODING", "xml")], "defaults.encoding: \"xml\" is not allowed; allowed: ndjson | json"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DEFAULTS__COMPRESSION", "lz4")], "defaults.compression: \"lz4\" is not allowed; allowed: none | gzip | zstd"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DEFAULTS__KEY_LAYOUT", "{nope}")], "defaults.key_layout: unknown placeholder {nope}"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DESTINATIONS__M__SERVER_SIDE_ENCRYPTION", "rot13")], "destinations.m.server_side_encryption: \"rot13\" is not allowed"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DESTINATIONS__M__STORAGE_CLASS", "GLACIERX")], "destinations.m.storage_class: \"GLACIERX\" is not allowed"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DESTINATIONS__M__OBJECT_LOCK_MODE", "GOVERNANCE")], "destinations.m.object_lock_retain_days: missing"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DESTINATIONS__M__URL", "ftp://host/x")], "destinations.m.url: scheme \"ftp\" is not supported"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__LOG__FORMAT", "xml")], "log.format: \"xml\" is not allowed; allowed: text | json"),
        // Environment values of the wrong type or shape.
        (check.to_vec(), vec![("AUDIT_EXPORTER__EXPORTER__LEASE_SECS", "abc")], "exporter.lease_secs: \"abc\" is not a whole number; allowed: 5..=86400"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DEFAULTS__EVERY_HOURS", "1e3")], "defaults.every_hours: \"1e3\" is not a whole number; allowed: 1..=24"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DEFAULTS__EVERY_HOURS", "+5")], "defaults.every_hours: \"+5\" is not a whole number; allowed: 1..=24"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__EXPORTER__LEASE_SECS", "60.0")], "exporter.lease_secs: \"60.0\" is not a whole number; allowed: 5..=86400"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DESTINATIONS__M__FORCE_PATH_STYLE", "maybe")], "expected a boolean for key `destinations.m.force_path_style`"),
        (check.to_vec(), vec![("AUDIT_EXPORTER__DATABASE__URL", "mysql://app:pw@db/audit")], "database.url: scheme \"mysql\" is not supported"),
        (check.to_vec(), vec![("AUDIT_EXPORTER_CONFIG", "/nonexistent.toml")], "--config /nonexistent.toml: no such file"),
        // Command-line arguments.
        (vec!["frobnicate"], vec![], "unrecognized subcommand 'frobnicate'"),
        (vec!["status", "--jsn"], vec![], "unexpected argument '--jsn'"),
        (vec!["export", "--frequency", "2"], vec![], "unexpected argument '--frequency'"),
        (vec!["append", "--action", "a", "--actor", "[]"], vec![], "--actor: must be a JSON object"),
        (vec!["append", "--action", "", "--actor", actor], vec![], "--action: is empty"),
        (vec!["append", "--action", "a", "--actor", actor, "--metadata", "nope"], vec![], "--metadata: not valid JSON"),
        (vec!["append", "--action", "a", "--actor", actor, "--count", "0"], vec![], "'--count <COUNT>': 0 is not in 1..=1000000"),
        (vec!["append", "--action", "a", "--actor", actor, "--occurred-at", "nope"], vec![], "--occurred-at: \"nope\" is not an RFC 3339 time"),
        // Time ranges.
        (vec!["reexport", "--from", TO, "--to", FROM], vec![], "is not before --to"),
        (vec!["reexport", "--from", FROM, "--to", FROM], vec![], "is not before --to"),
        (vec!["reexport", "--from", "yesterday", "--to", TO], vec![], "'--from <TIME>'"),
        (vec!["reexport", "--from", FROM, "--to", "2026-13-01T00:00:00Z"], vec![], "'--to <TIME>'"),
        (vec!["reexport", "--from", FROM], vec![], "--to <TIME>"),
    ];
    for (args, overrides, expect) in cases {
        let mut env: Vec<(&str, &str)> = secrets.to_vec();
        env.retain(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
        env.extend(overrides);
        let output = audit_exporter(&args, &env);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in {err}"
        );
        assert_no_secret(&format!("{args:?}"), &err);
        assert_no_secret(
            &format!("{args:?}"),
            &String::from_utf8_lossy(&output.stdout),
        );
    }

    // What is valid is printed with every secret redacted.
    let output = audit_exporter(&check, &secrets);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("[destinations.m]"), "{stdout}");
    assert_no_secret("config check", &stdout);
    assert_no_secret("config check", &stderr(&output));
}
