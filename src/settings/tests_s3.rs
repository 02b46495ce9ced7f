//! The S3 credential modes and object options: what is accepted, and what is refused by name.

use std::io::Write;

use super::*;

fn load(destination: &str) -> Result<Settings, SettingsError> {
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    write!(
        file,
        "[destinations.acme]\nurl = \"s3://acme-audit/exports\"\n{destination}"
    )
    .unwrap();
    Settings::load_with_env(Some(file.path()), [])
}

fn s3(destination: &str) -> S3Target {
    match load(destination).unwrap().destinations.remove(0).target {
        Target::S3(s3) => *s3,
        Target::File(_) => unreachable!("an s3:// url"),
    }
}

fn error(destination: &str) -> String {
    load(destination).unwrap_err().0
}

const ROLE: &str = "arn:aws:iam::123456789012:role/audit-writer";

#[test]
fn assume_role_from_the_default_chain_with_defaults() {
    let credentials = s3(&format!(
        "role_arn = \"{ROLE}\"\nexternal_id = \"audit-exporter:acme\"\n"
    ))
    .credentials;
    assert!(matches!(credentials.source, CredentialSource::DefaultChain));
    let role = credentials.assume_role.unwrap();
    assert_eq!(role.role_arn, ROLE);
    assert_eq!(role.external_id.as_deref(), Some("audit-exporter:acme"));
    assert_eq!(role.session_name, "audit-exporter");
    assert_eq!(role.duration_secs, 3600);
    assert!(credentials.sts_endpoint.is_none());
}

#[test]
fn web_identity_alone_and_with_a_chained_role() {
    let direct = s3(&format!(
        "role_arn = \"{ROLE}\"\nweb_identity_token_file = \"/var/run/token\"\nsession_duration_secs = 900\n"
    ))
    .credentials;
    assert!(direct.assume_role.is_none());
    let CredentialSource::WebIdentity(web) = direct.source else {
        panic!("web identity expected");
    };
    assert_eq!((web.role_arn.as_str(), web.duration_secs), (ROLE, 900));

    let chained = s3(&format!(
        "role_arn = \"{ROLE}\"\nexternal_id = \"ext-1\"\nweb_identity_token_file = \"/t\"\n\
         web_identity_role_arn = \"arn:aws:iam::210987654321:role/exporter\"\n\
         sts_endpoint = \"https://sts.eu-west-1.amazonaws.com\"\n"
    ))
    .credentials;
    let CredentialSource::WebIdentity(web) = chained.source else {
        panic!("web identity expected");
    };
    assert_eq!(web.role_arn, "arn:aws:iam::210987654321:role/exporter");
    assert_eq!(chained.assume_role.unwrap().role_arn, ROLE);
    assert_eq!(
        chained.sts_endpoint.as_deref(),
        Some("https://sts.eu-west-1.amazonaws.com")
    );
}

#[test]
fn bad_credential_settings_name_the_key() {
    let cases = [
        (
            "role_arn = \"arn:aws:iam::123456789012:user/bob\"\n".to_owned(),
            "destinations.acme.role_arn: \"arn:aws:iam::123456789012:user/bob\" is not an IAM role ARN",
        ),
        (
            "role_arn = \"arn:aws:iam::1234:role/x\"\n".into(),
            "destinations.acme.role_arn: \"arn:aws:iam::1234:role/x\" is not an IAM role ARN",
        ),
        (
            format!("role_arn = \"{ROLE}\"\nexternal_id = \"acme-*\"\n"),
            "destinations.acme.external_id: contains '*'",
        ),
        (
            format!("role_arn = \"{ROLE}\"\nexternal_id = \"has space\"\n"),
            "destinations.acme.external_id: \"has space\" is not an external ID",
        ),
        (
            format!("role_arn = \"{ROLE}\"\nsession_duration_secs = 899\n"),
            "destinations.acme.session_duration_secs: 899 is out of range; allowed: 900..=43200",
        ),
        (
            format!("role_arn = \"{ROLE}\"\nsession_duration_secs = 43201\n"),
            "destinations.acme.session_duration_secs: 43201 is out of range; allowed: 900..=43200",
        ),
        (
            format!("role_arn = \"{ROLE}\"\nsession_name = \"a b\"\n"),
            "destinations.acme.session_name: \"a b\" is not a session name",
        ),
        (
            "external_id = \"ext-1\"\n".into(),
            "destinations.acme.external_id: applies only with role_arn",
        ),
        (
            "web_identity_token_file = \"/t\"\n".into(),
            "destinations.acme.role_arn: missing; web_identity_token_file needs",
        ),
        (
            format!(
                "role_arn = \"{ROLE}\"\nweb_identity_token_file = \"/t\"\naccess_key_id = \"a\"\nsecret_access_key = \"b\"\n"
            ),
            "destinations.acme.web_identity_token_file: cannot be combined with access_key_id",
        ),
        (
            format!("role_arn = \"{ROLE}\"\nsts_endpoint = \"sts.amazonaws.com\"\n"),
            "destinations.acme.sts_endpoint: \"sts.amazonaws.com\" is not an endpoint",
        ),
        (
            format!("role_arn = \"{ROLE}\"\nweb_identity_role_arn = \"{ROLE}\"\n"),
            "destinations.acme.web_identity_role_arn: applies only with web_identity_token_file",
        ),
    ];
    for (destination, expected) in cases {
        let message = error(&destination);
        assert!(message.starts_with(expected), "{destination}: {message}");
    }
}

#[test]
fn every_object_option() {
    let options = s3(r#"
        server_side_encryption = "aws:kms"
        kms_key_id = "alias/audit"
        acl = "bucket-owner-full-control"
        storage_class = "STANDARD_IA"
        tags = { team = "audit", "cost center" = "42" }
        object_lock_mode = "COMPLIANCE"
        object_lock_retain_days = 2555
        "#)
    .object;
    assert_eq!(
        options.server_side_encryption,
        Some(ServerSideEncryption::Kms {
            key_id: Some("alias/audit".into())
        })
    );
    assert_eq!(options.acl, Some(CannedAcl::BucketOwnerFullControl));
    assert_eq!(options.storage_class, Some(StorageClass::StandardIa));
    assert_eq!(options.tags.len(), 2);
    assert_eq!(options.tags["cost center"], "42");
    assert_eq!(
        options.object_lock,
        Some(ObjectLock {
            mode: ObjectLockMode::Compliance,
            retain_days: 2555
        })
    );
    assert_eq!(s3("").object, ObjectOptions::default());
}

#[test]
fn bad_object_options_name_the_key_and_what_is_allowed() {
    let too_many_tags: String = (0..11).map(|i| format!("t{i} = \"v\"\n")).collect();
    let cases = [
        (
            "server_side_encryption = \"AES256\"\nkms_key_id = \"k\"\n".to_owned(),
            "destinations.acme.kms_key_id: cannot be used with server_side_encryption = \"AES256\"",
        ),
        (
            "kms_key_id = \"k\"\n".into(),
            "destinations.acme.kms_key_id: applies only with server_side_encryption",
        ),
        (
            "server_side_encryption = \"aws:kms:dsse:x\"\n".into(),
            "destinations.acme.server_side_encryption: \"aws:kms:dsse:x\" is not allowed; allowed: AES256 | aws:kms | aws:kms:dsse",
        ),
        (
            "acl = \"everyone\"\n".into(),
            "destinations.acme.acl: \"everyone\" is not allowed; allowed: private | public-read",
        ),
        (
            "storage_class = \"standard\"\n".into(),
            "destinations.acme.storage_class: \"standard\" is not allowed; allowed: STANDARD |",
        ),
        (
            "object_lock_mode = \"GOVERNANCE\"\n".into(),
            "destinations.acme.object_lock_retain_days: missing",
        ),
        (
            "object_lock_retain_days = 30\n".into(),
            "destinations.acme.object_lock_mode: missing; object_lock_retain_days needs a mode; allowed: GOVERNANCE | COMPLIANCE",
        ),
        (
            "object_lock_mode = \"LEGAL\"\nobject_lock_retain_days = 30\n".into(),
            "destinations.acme.object_lock_mode: \"LEGAL\" is not allowed; allowed: GOVERNANCE | COMPLIANCE",
        ),
        (
            "object_lock_mode = \"COMPLIANCE\"\nobject_lock_retain_days = 0\n".into(),
            "destinations.acme.object_lock_retain_days: 0 is out of range; allowed: 1..=36500",
        ),
        (
            "[destinations.acme.tags]\nteam = \"audit & compliance\"\n".into(),
            "destinations.acme.tags: tag \"team\" = \"audit & compliance\" has characters S3 refuses",
        ),
        (
            format!("[destinations.acme.tags]\n{too_many_tags}"),
            "destinations.acme.tags: 11 tags; allowed: at most 10 per object",
        ),
    ];
    for (destination, expected) in cases {
        let message = error(&destination);
        assert!(message.starts_with(expected), "{destination}: {message}");
    }
}

#[test]
fn s3_options_are_refused_on_a_file_destination() {
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    write!(
        file,
        "[destinations.archive]\nurl = \"file:///var/lib/audit\"\nrole_arn = \"{ROLE}\"\n"
    )
    .unwrap();
    let message = Settings::load_with_env(Some(file.path()), [])
        .unwrap_err()
        .0;
    assert_eq!(
        message,
        "destinations.archive.role_arn: applies only to s3:// destinations"
    );
}

#[test]
fn config_check_shows_the_credential_mode_and_hides_keys() {
    let settings = load(&format!(
        "role_arn = \"{ROLE}\"\nexternal_id = \"ext-1\"\naccess_key_id = \"AKIASECRETID\"\n\
         secret_access_key = \"very-secret\"\nsession_token = \"token-secret\"\n\
         server_side_encryption = \"AES256\"\n[destinations.acme.tags]\nteam = \"audit\"\n"
    ))
    .unwrap();
    let printed = settings.to_redacted_toml();
    assert!(
        printed.contains("credentials = \"AssumeRole from static keys\""),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("role_arn = \"{ROLE}\"")),
        "{printed}"
    );
    assert!(
        printed.contains("server_side_encryption = \"AES256\""),
        "{printed}"
    );
    assert!(printed.contains("team = \"audit\""), "{printed}");
    for secret in ["AKIASECRETID", "very-secret", "token-secret"] {
        assert!(!printed.contains(secret), "{printed}");
    }
}
