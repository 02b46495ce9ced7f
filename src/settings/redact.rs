//! The effective configuration as `config check` prints it: complete, with no secret in it.

use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

use super::{LogFormat, Settings, Target};

const REDACTED: &str = "[redacted]";

pub(super) fn to_toml(settings: &Settings) -> String {
    let mut root = Table::new();

    let mut database = Table::new();
    match &settings.database.url {
        Some(url) => database.insert("url".into(), redact_url(url).into()),
        None => database.insert(
            "embedded_dir".into(),
            settings.database.embedded_dir.display().to_string().into(),
        ),
    };
    database.insert(
        "max_connections".into(),
        i64::from(settings.database.max_connections).into(),
    );
    database.insert(
        "migrate_on_start".into(),
        settings.database.migrate_on_start.into(),
    );
    root.insert("database".into(), database.into());

    let exporter = &settings.exporter;
    let mut table = Table::new();
    if let Some(id) = &exporter.instance_id {
        table.insert("instance_id".into(), id.clone().into());
    }
    table.insert("lease_secs".into(), i64::from(exporter.lease_secs).into());
    table.insert(
        "part_size_mib".into(),
        ((exporter.part_size >> 20) as i64).into(),
    );
    table.insert(
        "uploads_in_flight".into(),
        (exporter.uploads_in_flight as i64).into(),
    );
    root.insert("exporter".into(), table.into());

    let mut run = Table::new();
    run.insert("check_cron".into(), settings.run.check_cron.clone().into());
    run.insert(
        "shutdown_grace_secs".into(),
        i64::from(settings.run.shutdown_grace_secs).into(),
    );
    root.insert("run".into(), run.into());

    let mut log = Table::new();
    let format = match settings.log.format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    log.insert("format".into(), format.into());
    log.insert("level".into(), settings.log.level.clone().into());
    root.insert("log".into(), log.into());

    let mut destinations = Table::new();
    for dest in &settings.destinations {
        let mut table = Table::new();
        match &dest.target {
            Target::File(path) => {
                table.insert("url".into(), format!("file://{}", path.display()).into());
            }
            Target::S3(s3) => {
                let url = if s3.prefix.is_empty() {
                    format!("s3://{}", s3.bucket)
                } else {
                    format!("s3://{}/{}", s3.bucket, s3.prefix)
                };
                table.insert("url".into(), url.into());
                if let Some(region) = &s3.region {
                    table.insert("region".into(), region.clone().into());
                }
                if let Some(endpoint) = &s3.endpoint {
                    table.insert("endpoint".into(), endpoint.clone().into());
                }
                table.insert("force_path_style".into(), s3.force_path_style.into());
                let credentials = match &s3.credentials {
                    Some(c) if c.session_token.is_some() => "static keys with session token",
                    Some(_) => "static keys",
                    None => "default chain",
                };
                table.insert("credentials".into(), credentials.into());
                if s3.credentials.is_some() {
                    table.insert("access_key_id".into(), REDACTED.into());
                    table.insert("secret_access_key".into(), REDACTED.into());
                }
            }
        }
        if let Some(tenant) = &dest.tenant_id {
            table.insert("tenant_id".into(), tenant.clone().into());
        }
        table.insert("every_hours".into(), i64::from(dest.every_hours).into());
        table.insert("encoding".into(), dest.format.encoding.as_str().into());
        table.insert(
            "compression".into(),
            dest.format.compression.as_str().into(),
        );
        table.insert("key_layout".into(), dest.key_layout.as_config().into());
        destinations.insert(dest.name.clone(), Value::Table(table));
    }
    root.insert("destinations".into(), destinations.into());

    toml::to_string_pretty(&root)
        .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
}

/// The database URL with its password replaced, so it can be shown.
pub fn redact_url(url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(REDACTED));
            }
            let query: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        REDACTED.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !query.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(query);
            }
            parsed.to_string()
        }
        Err(_) => REDACTED.to_owned(),
    }
}
