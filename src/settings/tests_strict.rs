//! Values keep their type: string keys the exact text of the environment, number keys only a
//! whole number.

use std::io::Write;

use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    Settings::load_with_env(
        Some(file.path()),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

const T007: &str = "AUDIT_EXPORTER__DESTINATIONS__T007__";

#[test]
fn string_keys_keep_the_exact_text_of_the_environment() {
    for text in ["007", "1e3", "+5", "TRUE", "6.0", "0x1F", " 42"] {
        let key = |k: &str| format!("{T007}{k}");
        let env = [
            (key("URL"), "s3://bucket-a/p".to_owned()),
            (key("TENANT_ID"), text.to_owned()),
            (key("ROLE_ARN"), "arn:aws:iam::123456789012:role/r".into()),
            (key("EXTERNAL_ID"), format!("x{}", text.trim())),
            (key("TAGS__TEAM"), text.to_owned()),
            ("AUDIT_EXPORTER__EXPORTER__INSTANCE_ID".into(), text.into()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let settings = load("", &env).unwrap();
        let dest = &settings.destinations[0];
        assert_eq!(dest.tenant_id.as_deref(), Some(text));
        assert_eq!(settings.exporter.instance_id.as_deref(), Some(text));
        let Target::S3(s3) = &dest.target else {
            panic!("S3")
        };
        assert_eq!(s3.object.tags.get("team").map(String::as_str), Some(text));
        let role = s3.credentials.assume_role.as_ref().unwrap();
        assert_eq!(
            role.external_id.as_deref(),
            Some(format!("x{}", text.trim()).as_str())
        );
    }
}

#[test]
fn static_keys_keep_the_exact_text_of_the_environment() {
    use secrecy::ExposeSecret;
    let settings = load(
        "",
        &[
            ("AUDIT_EXPORTER__DESTINATIONS__K__URL", "s3://bucket-a"),
            ("AUDIT_EXPORTER__DESTINATIONS__K__ACCESS_KEY_ID", "0012"),
            ("AUDIT_EXPORTER__DESTINATIONS__K__SECRET_ACCESS_KEY", "1e3"),
        ],
    )
    .unwrap();
    let Target::S3(s3) = &settings.destinations[0].target else {
        panic!("S3")
    };
    let CredentialSource::Static(keys) = &s3.credentials.source else {
        panic!("static keys")
    };
    assert_eq!(keys.access_key_id.expose_secret(), "0012");
    assert_eq!(keys.secret_access_key.expose_secret(), "1e3");
}

#[test]
fn number_keys_in_a_file_take_only_whole_numbers() {
    let dest = "[destinations.acme]\nurl = \"s3://bucket-a\"\n";
    for (value, written) in [
        ("0.5", "0.5"),
        ("2.7", "2.7"),
        ("true", "true"),
        ("6.0", "6.0"),
    ] {
        let msg = load(&format!("{dest}every_hours = {value}\n"), &[])
            .unwrap_err()
            .0;
        assert_eq!(
            msg,
            format!(
                "destinations.acme.every_hours: {written} is not a whole number; allowed: 1..=24"
            )
        );
        let msg = load(&format!("[defaults]\nevery_hours = {value}\n{dest}"), &[])
            .unwrap_err()
            .0;
        assert!(msg.starts_with("defaults.every_hours: "), "{msg}");
    }
    let msg = load("[database]\nmax_connections = 2.5\n", &[])
        .unwrap_err()
        .0;
    assert_eq!(
        msg,
        "database.max_connections: 2.5 is not a whole number; allowed: 2..=100"
    );
    let msg = load(&format!("{dest}max_object_bytes = 1e7\n"), &[])
        .unwrap_err()
        .0;
    assert!(
        msg.starts_with("destinations.acme.max_object_bytes: 10000000.0 is not a whole number"),
        "{msg}"
    );
    let msg = load(
        &format!(
            "{dest}role_arn = \"arn:aws:iam::123456789012:role/r\"\nsession_duration_secs = 900.5\n"
        ),
        &[],
    )
    .unwrap_err()
    .0;
    assert!(
        msg.contains("session_duration_secs: 900.5 is not a whole number; allowed: 900..=43200"),
        "{msg}"
    );
}

#[test]
fn number_keys_from_the_environment_take_plain_decimal_text() {
    let env = |hours: &'static str| {
        [
            ("AUDIT_EXPORTER__DESTINATIONS__ACME__URL", "s3://bucket-a"),
            ("AUDIT_EXPORTER__DEFAULTS__EVERY_HOURS", hours),
        ]
    };
    let settings = load("", &env("6")).unwrap();
    assert_eq!(settings.destinations[0].every_hours, 6);
    for text in ["1e3", "+5", "6.0", "true", " 6", ""] {
        let msg = load("", &env(text)).unwrap_err().0;
        assert_eq!(
            msg,
            format!("defaults.every_hours: {text:?} is not a whole number; allowed: 1..=24")
        );
    }
    let settings = load(
        "",
        &[
            ("AUDIT_EXPORTER__DATABASE__MAX_CONNECTIONS", "12"),
            ("AUDIT_EXPORTER__DATABASE__MIGRATE_ON_START", "false"),
        ],
    )
    .unwrap();
    assert_eq!(settings.database.max_connections, 12);
    assert!(!settings.database.migrate_on_start);
}

#[test]
fn parallel_exports_defaults_to_half_the_pool_and_never_exceeds_it() {
    let settings = load("", &[]).unwrap();
    assert_eq!(settings.run.parallel_exports, 0);
    let settings = load(
        "[database]\nmax_connections = 20\n[run]\nparallel_exports = 10\n",
        &[],
    )
    .unwrap();
    assert_eq!(settings.run.parallel_exports, 10);
    let msg = load("[run]\nparallel_exports = 5\n", &[]).unwrap_err().0;
    assert_eq!(
        msg,
        "run.parallel_exports: 5 exports at once need database.max_connections of at least 10 \
         (each export holds up to two connections), not 8; allowed: 0 (max_connections / 2) or 1..=4"
    );
    let msg = load("[run]\nparallel_exports = 51\n", &[]).unwrap_err().0;
    assert!(msg.starts_with("run.parallel_exports: 51 "), "{msg}");
}

#[test]
fn retention_keep_days_is_unset_by_default_and_checked_by_name() {
    assert_eq!(
        Settings::load_with_env(None, [])
            .unwrap()
            .retention
            .keep_days,
        None
    );
    let days = load("[retention]\nkeep_days = 30\n", &[]).unwrap();
    assert_eq!(days.retention.keep_days, Some(30));
    let env = load("", &[("AUDIT_EXPORTER__RETENTION__KEEP_DAYS", "7")]).unwrap();
    assert_eq!(env.retention.keep_days, Some(7));
    assert!(
        days.to_redacted_toml()
            .contains("[retention]\nkeep_days = 30")
    );
    for (toml, said) in [
        (
            "[retention]\nkeep_days = 0\n",
            "retention.keep_days: 0 is out of range; allowed: 1..=36500",
        ),
        ("[retention]\nkeep_days = 1.5\n", "retention.keep_days"),
        ("[retention]\nkeep = 3\n", "keep"),
    ] {
        let e = load(toml, &[]).unwrap_err().0;
        assert!(e.contains(said), "{toml}: {e}");
    }
}
