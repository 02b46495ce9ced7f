//! The database URL: where it comes from, what is refused, and that no secret is printed.

use secrecy::ExposeSecret;

use super::tests::load;

#[test]
fn database_url_falls_back_to_the_standard_variable() {
    let settings = load("", &[("DATABASE_URL", "postgres://localhost/x")]).unwrap();
    assert_eq!(
        settings.database.url.unwrap().expose_secret(),
        "postgres://localhost/x"
    );
}

#[test]
fn redacted_output_holds_no_secret() {
    let settings = load(
        "[database]\nurl = \"postgres://app:hunter2@db/audit?password=hunter3\"\n[destinations.m]\nurl = \"s3://bucket-a/p\"\naccess_key_id = \"AKIAEXAMPLEKEY\"\nsecret_access_key = \"wJalrXUtnFEMI\"\nsession_token = \"FwoGZXIvYXdzEJr\"\n",
        &[],
    )
    .unwrap();
    let text = settings.to_redacted_toml();
    for secret in [
        "hunter2",
        "hunter3",
        "AKIAEXAMPLEKEY",
        "wJalrXUtnFEMI",
        "FwoGZXIvYXdzEJr",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(
        text.contains("s3://bucket-a/p") && text.contains("[redacted]"),
        "{text}"
    );
    assert!(
        text.contains("postgres://app:[redacted]@db/audit?password=[redacted]"),
        "readable: {text}"
    );
    assert!(!format!("{settings:?}").contains("wJalrXUtnFEMI"));
}

#[test]
fn a_database_url_that_is_not_postgres_is_refused_without_repeating_it() {
    let toml = "[destinations.a]\nurl = \"s3://bucket-a\"\n";
    for (key, env, expect) in [
        (
            "database.url",
            "AUDIT_EXPORTER__DATABASE__URL",
            "database.url: scheme \"mysql\" is not supported",
        ),
        (
            "DATABASE_URL",
            "DATABASE_URL",
            "DATABASE_URL: scheme \"mysql\" is not supported",
        ),
    ] {
        let msg = load(toml, &[(env, "mysql://app:pa55word@db/audit")])
            .unwrap_err()
            .0;
        assert!(msg.starts_with(expect), "{key}: {msg}");
        assert!(!msg.contains("pa55word"), "{msg}");
    }
    let msg = load(toml, &[("AUDIT_EXPORTER__DATABASE__URL", "pa55word")])
        .unwrap_err()
        .0;
    assert!(msg.starts_with("database.url: not a URL"), "{msg}");
    assert!(!msg.contains("pa55word"), "{msg}");
    for url in [
        "postgres://app:pw@db/audit",
        "postgresql:///audit?host=/run/pg",
    ] {
        load(toml, &[("AUDIT_EXPORTER__DATABASE__URL", url)]).unwrap();
    }
}
