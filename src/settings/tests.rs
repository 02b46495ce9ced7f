use std::io::Write;

use secrecy::ExposeSecret;

use super::*;
use crate::domain::{Compression, Encoding, Format, Schema};

pub(super) fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    Settings::load_with_env(
        Some(file.path()),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn error(toml: &str) -> String {
    load(toml, &[]).unwrap_err().0
}

#[test]
fn the_defaults_load_and_have_no_destination() {
    let settings = Settings::load_with_env(None, []).unwrap();
    assert!(settings.destinations.is_empty());
    assert!(settings.database.url.is_none());
    assert_eq!(settings.exporter.part_size, 8 << 20);
    assert!(
        settings
            .select_destinations(&[])
            .unwrap_err()
            .0
            .contains("no destination is configured")
    );
}

#[test]
fn a_destination_inherits_defaults_and_overrides_them() {
    let settings = load(
        r#"
        [defaults]
        compression = "zstd"
        [destinations.acme]
        url = "s3://acme-audit/exports/eu/"
        tenant_id = "acme"
        every_hours = 6
        encoding = "json"
        endpoint = "http://127.0.0.1:9000"
        force_path_style = true
        [destinations.archive]
        url = "file:///var/lib/audit"
        "#,
        &[],
    )
    .unwrap();
    let acme = &settings.destinations[0];
    assert_eq!(
        (
            acme.name.as_str(),
            acme.every_hours,
            acme.tenant_id.as_deref()
        ),
        ("acme", 6, Some("acme"))
    );
    assert_eq!(
        acme.format,
        Format {
            encoding: Encoding::Json,
            compression: Compression::Zstd,
            schema: Schema::Native,
        }
    );
    let Target::S3(s3) = &acme.target else {
        panic!("acme is S3")
    };
    assert_eq!(
        (s3.bucket.as_str(), s3.prefix.as_str(), s3.force_path_style),
        ("acme-audit", "exports/eu", true)
    );
    let archive = &settings.destinations[1];
    assert!(matches!(&archive.target, Target::File(p) if p == Path::new("/var/lib/audit")));
    assert_eq!(archive.every_hours, 1);
}

#[test]
fn frequency_out_of_range_is_refused_naming_the_key() {
    for hours in ["0", "25", "-1"] {
        let msg = error(&format!(
            "[destinations.acme]\nurl = \"s3://bucket-a\"\nevery_hours = {hours}\n"
        ));
        assert_eq!(
            msg,
            format!("destinations.acme.every_hours: {hours} is out of range; allowed: 1..=24")
        );
    }
    let msg = error("[defaults]\nevery_hours = 25\n[destinations.acme]\nurl = \"s3://bucket-a\"\n");
    assert_eq!(
        msg,
        "defaults.every_hours: 25 is out of range; allowed: 1..=24"
    );
    for ok in [1, 24] {
        assert!(
            load(
                &format!("[destinations.a]\nurl = \"s3://bucket-a\"\nevery_hours = {ok}\n"),
                &[]
            )
            .is_ok()
        );
    }
}

#[test]
fn unknown_keys_are_refused_naming_them() {
    let msg = error("[destinations.acme]\nurl = \"s3://bucket-a\"\nevery_hour = 2\n");
    assert!(msg.contains("unknown field `every_hour`"), "{msg}");
    assert!(
        msg.contains("every_hours"),
        "the message lists what is allowed: {msg}"
    );
    let msg = error("[exporter]\npart_size = 8\n");
    assert!(msg.contains("unknown field `part_size`"), "{msg}");
    let msg = error("[sinks]\nx = 1\n");
    assert!(msg.contains("unknown field `sinks`"), "{msg}");
}

#[test]
fn malformed_urls_are_refused_naming_the_key() {
    for (url, expect) in [
        ("not a url", "is not a URL"),
        ("http://bucket/prefix", "scheme \"http\" is not supported"),
        ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
        ("s3://ab", "is not an S3 bucket name"),
        ("file://relative/dir", "is not a local directory"),
    ] {
        let msg = error(&format!("[destinations.acme]\nurl = \"{url}\"\n"));
        assert!(msg.starts_with("destinations.acme.url: "), "{msg}");
        assert!(msg.contains(expect), "{url}: {msg}");
        assert!(
            msg.contains("allowed: s3://bucket[/prefix] or file:///absolute/path"),
            "{msg}"
        );
    }
}

#[test]
fn a_file_url_with_a_dot_dot_segment_is_refused_before_it_is_resolved() {
    for url in [
        "file:///tmp/r/../etc",
        "file:///tmp/r/..",
        "file:///tmp/r/%2E%2E/x",
        "file:///tmp/r/%2e./x",
        "file:///tmp/r/.%2E/x",
        r"file:///tmp/r\..\x",
        "file:///tmp/r/a%2F..%2Fx",
        "FILE:///tmp/r/../x",
    ] {
        let msg = error(&format!("[destinations.acme]\nurl = '{url}'\n"));
        assert!(
            msg.starts_with("destinations.acme.url: ")
                && msg.contains("has a `..` segment; allowed: file:///absolute/path without"),
            "{url}: {msg}"
        );
    }
    let msg = error("[destinations.acme]\nurl = \"file:///tmp/r/.\t./x\"\n");
    assert!(msg.starts_with("destinations.acme.url: "), "{msg}");
    for (url, path) in [
        ("file:///tmp/r/..x/y.", "/tmp/r/..x/y."),
        ("file:///tmp/a%20b/", "/tmp/a b/"),
        ("file:///tmp/./x", "/tmp/x"),
    ] {
        let settings = load(&format!("[destinations.acme]\nurl = '{url}'\n"), &[]).unwrap();
        let target = &settings.destinations[0].target;
        assert!(
            matches!(target, Target::File(p) if p.as_os_str() == path),
            "{url}: {target:?}"
        );
    }
}

#[test]
fn a_destination_without_url_is_refused() {
    let msg = error("[destinations.acme]\ntenant_id = \"acme\"\n");
    assert!(msg.starts_with("destinations.acme.url: missing"), "{msg}");
}

#[test]
fn other_invalid_values_name_their_key() {
    let cases = [
        (
            "[destinations.a]\nurl = \"s3://bucket-a\"\ncompression = \"brotli\"\n",
            "destinations.a.compression: \"brotli\" is not allowed; allowed: none | gzip | zstd",
        ),
        (
            "[destinations.a]\nurl = \"s3://bucket-a\"\nencoding = \"csv\"\n",
            "destinations.a.encoding: \"csv\" is not allowed; allowed: ndjson | json | parquet",
        ),
        (
            "[defaults]\nschema = \"cef\"\n[destinations.a]\nurl = \"s3://bucket-a\"\n",
            "defaults.schema: \"cef\" is not allowed; allowed: native | ocsf",
        ),
        (
            "[destinations.a]\nurl = \"s3://bucket-a\"\nschema = \"OCSF\"\n",
            "destinations.a.schema: \"OCSF\" is not allowed; allowed: native | ocsf",
        ),
        (
            "[destinations.a]\nurl = \"s3://bucket-a\"\nkey_layout = \"{prefix}/{YYYY}\"\n",
            "destinations.a.key_layout: a key template must contain {run_id} or {rand5}",
        ),
        (
            "[destinations.a]\nurl = \"file:///tmp/x\"\nregion = \"eu-west-1\"\n",
            "destinations.a.region: applies only to s3:// destinations",
        ),
        (
            "[destinations.a]\nurl = \"s3://bucket-a\"\naccess_key_id = \"AKIA\"\n",
            "destinations.a.secret_access_key: missing",
        ),
        (
            "[destinations.a]\nurl = \"s3://bucket-a\"\nendpoint = \"localhost:9000\"\n",
            "destinations.a.endpoint:",
        ),
        (
            "[destinations.Acme]\nurl = \"s3://bucket-a\"\n",
            "is not a destination name",
        ),
        (
            "[exporter]\npart_size_mib = 4\n",
            "exporter.part_size_mib: 4 is out of range; allowed: 5..=5120",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "log.format: \"xml\" is not allowed; allowed: text | json",
        ),
        ("[run]\ncheck_cron = \"every minute\"\n", "run.check_cron:"),
        (
            "[defaults]\nstart = \"2999-01-01T00:00:00Z\"\n[destinations.a]\nurl = \"s3://bucket-a\"\n",
            "defaults.start: \"2999-01-01T00:00:00Z\" is in the future",
        ),
    ];
    for (toml, expect) in cases {
        let msg = error(toml);
        assert!(
            msg.starts_with(expect) || msg.contains(expect),
            "{toml}\n=> {msg}"
        );
    }
}

#[test]
fn environment_variables_override_and_add_destinations() {
    let settings = load(
        "[destinations.acme]\nurl = \"s3://bucket-a\"\n",
        &[
            (
                "AUDIT_EXPORTER__DATABASE__URL",
                "postgres://u:hunter2@db:5432/audit",
            ),
            ("AUDIT_EXPORTER__DESTINATIONS__ACME__EVERY_HOURS", "12"),
            ("AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID", "42"),
            (
                "AUDIT_EXPORTER__DESTINATIONS__MINIO__URL",
                "s3://audit/exports",
            ),
            (
                "AUDIT_EXPORTER__DESTINATIONS__MINIO__FORCE_PATH_STYLE",
                "true",
            ),
            (
                "AUDIT_EXPORTER__DESTINATIONS__MINIO__SECRET_ACCESS_KEY",
                "s3cr3t-value",
            ),
            (
                "AUDIT_EXPORTER__DESTINATIONS__MINIO__ACCESS_KEY_ID",
                "AKIAEXAMPLE",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        settings.database.url.as_ref().unwrap().expose_secret(),
        "postgres://u:hunter2@db:5432/audit"
    );
    let acme = settings.select_destinations(&["acme".into()]).unwrap()[0];
    assert_eq!(
        (acme.every_hours, acme.tenant_id.as_deref()),
        (12, Some("42"))
    );
    let minio = settings.select_destinations(&["minio".into()]).unwrap()[0];
    assert!(
        matches!(&minio.target, Target::S3(s3) if s3.force_path_style && matches!(s3.credentials.source, crate::settings::CredentialSource::Static(_)))
    );

    let msg = load(
        "",
        &[
            ("AUDIT_EXPORTER__DESTINATIONS__X__EVERY_HOURS", "25"),
            ("AUDIT_EXPORTER__DESTINATIONS__X__URL", "s3://bucket-a"),
        ],
    )
    .unwrap_err()
    .0;
    assert_eq!(
        msg,
        "destinations.x.every_hours: 25 is out of range; allowed: 1..=24"
    );
}

#[test]
fn an_unknown_destination_name_lists_the_configured_ones() {
    let settings = load("[destinations.acme]\nurl = \"s3://bucket-a\"\n", &[]).unwrap();
    let msg = settings.select_destinations(&["acm".into()]).unwrap_err().0;
    assert_eq!(
        msg,
        "--destination acm: no such destination; configured: acme"
    );
}

#[test]
fn schedule_at_is_a_time_of_day_by_default_or_per_destination() {
    let settings = load(
        r#"
        [defaults]
        schedule_at = "00:00"
        [destinations.daily]
        url = "file:///tmp/daily"
        every_hours = 24
        [destinations.morning]
        url = "file:///tmp/morning"
        schedule_at = "06:30"
        [destinations.hourly]
        url = "file:///tmp/hourly"
        schedule_at = ""
        "#,
        &[],
    )
    .unwrap();
    let at = |name: &str| {
        let d = settings
            .destinations
            .iter()
            .find(|d| d.name == name)
            .unwrap();
        d.schedule_at.map(|t| t.to_string())
    };
    assert_eq!(at("daily").as_deref(), Some("00:00"));
    assert_eq!(at("morning").as_deref(), Some("06:30"));
    assert_eq!(at("hourly"), None, "\"\" drops the default");
    assert!(
        settings
            .to_redacted_toml()
            .contains("schedule_at = \"06:30\"")
    );

    let refused = error("[destinations.a]\nurl = \"file:///tmp/a\"\nschedule_at = \"24:00\"\n");
    assert!(
        refused.starts_with(
            "destinations.a.schedule_at: \"24:00\" is not a time of day; allowed: \"HH:MM\""
        ),
        "{refused}"
    );
    let refused =
        error("[defaults]\nschedule_at = \"7:00\"\n[destinations.a]\nurl = \"file:///tmp/a\"\n");
    assert!(
        refused.starts_with("defaults.schedule_at: \"7:00\""),
        "{refused}"
    );
    let env = [
        ("AUDIT_EXPORTER__DEFAULTS__SCHEDULE_AT", "23:15"),
        ("AUDIT_EXPORTER__DESTINATIONS__A__URL", "file:///tmp/a"),
    ];
    let settings = load("", &env).unwrap();
    assert_eq!(
        settings.destinations[0].schedule_at.unwrap().to_string(),
        "23:15"
    );
}
