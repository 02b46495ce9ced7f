//! The effective configuration as `config check` prints it: complete, with no secret in it.

use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

use super::{CredentialSource, Credentials, LogFormat, ObjectOptions, Settings, Target};
use crate::domain::KeyLayout;

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
        "connect_timeout_secs".into(),
        (settings.database.connect_timeout.as_secs() as i64).into(),
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
    table.insert(
        "retry_max_attempts".into(),
        i64::from(exporter.retry.max_attempts).into(),
    );
    table.insert(
        "retry_initial_backoff_ms".into(),
        (exporter.retry.initial_backoff.as_millis() as i64).into(),
    );
    table.insert(
        "request_timeout_secs".into(),
        (exporter.retry.attempt_timeout.as_secs() as i64).into(),
    );
    root.insert("exporter".into(), table.into());

    let mut run = Table::new();
    run.insert("check_cron".into(), settings.run.check_cron.clone().into());
    run.insert(
        "shutdown_grace_secs".into(),
        i64::from(settings.run.shutdown_grace_secs).into(),
    );
    run.insert(
        "reload_check_secs".into(),
        (settings.run.reload_check.map_or(0, |d| d.as_secs()) as i64).into(),
    );
    run.insert(
        "listen".into(),
        settings
            .run
            .listen
            .map(|a| a.to_string())
            .unwrap_or_default()
            .into(),
    );
    run.insert(
        "unready_after_failing_secs".into(),
        (settings.run.unready_after_failing.as_secs() as i64).into(),
    );
    run.insert(
        "metrics_refresh_secs".into(),
        (settings.run.metrics_refresh.as_secs() as i64).into(),
    );
    run.insert(
        "failed_export_backoff_secs".into(),
        (settings.run.failed_export_backoff.as_secs() as i64).into(),
    );
    run.insert(
        "failed_export_backoff_max_secs".into(),
        (settings.run.failed_export_backoff_max.as_secs() as i64).into(),
    );
    run.insert(
        "parallel_exports".into(),
        i64::from(settings.run.parallel_exports).into(),
    );
    root.insert("run".into(), run.into());

    if let Some(signing) = &settings.exporter.signing {
        let mut integrity = Table::new();
        integrity.insert(
            "signing_key_file".into(),
            signing.file.display().to_string().into(),
        );
        root.insert("integrity".into(), integrity.into());
    }

    let mut log = Table::new();
    let format = match settings.log.format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    log.insert("format".into(), format.into());
    log.insert("level".into(), settings.log.level.clone().into());
    root.insert("log".into(), log.into());
    let mut retention = Table::new();
    if let Some(days) = settings.retention.keep_days {
        retention.insert("keep_days".into(), i64::from(days).into());
    }
    root.insert("retention".into(), retention.into());

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
                s3_credentials(&s3.credentials, &mut table);
                s3_object_options(&s3.object, &mut table);
            }
        }
        if let Some(tenant) = &dest.tenant_id {
            table.insert("tenant_id".into(), tenant.clone().into());
        }
        table.insert("every_hours".into(), i64::from(dest.every_hours).into());
        if let Some(at) = dest.schedule_at {
            table.insert("schedule_at".into(), at.to_string().into());
        }
        table.insert("encoding".into(), dest.format.encoding.as_str().into());
        table.insert(
            "compression".into(),
            dest.format.compression.as_str().into(),
        );
        table.insert("schema".into(), dest.format.schema.as_str().into());
        table.insert("key_layout".into(), dest.key_layout.as_config().into());
        if let KeyLayout::SecurityLake { account_id, .. } = &dest.key_layout {
            table.insert("account_id".into(), account_id.clone().into());
        }
        table.insert("partition_time".into(), dest.partition_time.as_str().into());
        table.insert(
            "max_object_bytes".into(),
            (dest.max_object_bytes.unwrap_or(0) as i64).into(),
        );
        table.insert("start".into(), dest.start.to_string().into());
        destinations.insert(dest.name.clone(), Value::Table(table));
    }
    root.insert("destinations".into(), destinations.into());

    toml::to_string_pretty(&root)
        .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
}

fn s3_credentials(credentials: &Credentials, table: &mut Table) {
    let source = match &credentials.source {
        CredentialSource::DefaultChain => "default chain",
        CredentialSource::Static(keys) => {
            table.insert("access_key_id".into(), REDACTED.into());
            table.insert("secret_access_key".into(), REDACTED.into());
            if keys.session_token.is_some() {
                table.insert("session_token".into(), REDACTED.into());
            }
            "static keys"
        }
        CredentialSource::WebIdentity(web) => {
            table.insert(
                "web_identity_token_file".into(),
                web.token_file.display().to_string().into(),
            );
            if credentials.assume_role.is_some() {
                table.insert("web_identity_role_arn".into(), web.role_arn.clone().into());
            } else {
                table.insert("role_arn".into(), web.role_arn.clone().into());
            }
            table.insert("session_name".into(), web.session_name.clone().into());
            table.insert(
                "session_duration_secs".into(),
                i64::from(web.duration_secs).into(),
            );
            "web identity"
        }
    };
    let mode = match &credentials.assume_role {
        Some(role) => {
            table.insert("role_arn".into(), role.role_arn.clone().into());
            if let Some(id) = &role.external_id {
                table.insert("external_id".into(), id.clone().into());
            }
            table.insert("session_name".into(), role.session_name.clone().into());
            table.insert(
                "session_duration_secs".into(),
                i64::from(role.duration_secs).into(),
            );
            format!("AssumeRole from {source}")
        }
        None => source.to_owned(),
    };
    table.insert("credentials".into(), mode.into());
    if let Some(endpoint) = &credentials.sts_endpoint {
        table.insert("sts_endpoint".into(), endpoint.clone().into());
    }
}

fn s3_object_options(options: &ObjectOptions, table: &mut Table) {
    if let Some(sse) = &options.server_side_encryption {
        table.insert("server_side_encryption".into(), sse.as_str().into());
        if let Some(key) = sse.kms_key_id() {
            table.insert("kms_key_id".into(), key.into());
        }
    }
    if let Some(acl) = options.acl {
        table.insert("acl".into(), acl.as_str().into());
    }
    if let Some(class) = options.storage_class {
        table.insert("storage_class".into(), class.as_str().into());
    }
    if !options.tags.is_empty() {
        let tags: Table = options
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        table.insert("tags".into(), tags.into());
    }
    if let Some(lock) = options.object_lock {
        table.insert("object_lock_mode".into(), lock.mode.as_str().into());
        table.insert(
            "object_lock_retain_days".into(),
            i64::from(lock.retain_days).into(),
        );
    }
}

/// The connection parameters sqlx reads from a URL; the store drops any other before connecting
/// (sqlx would log it with its value).
pub const SQLX_URL_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Whether a connection parameter's value is safe to show: places, names and modes. The value of
/// any other (`password`, `sslpassword`, `options`, one this does not know) is redacted.
fn shown(parameter: &str) -> bool {
    let secret = matches!(parameter, "password" | "options");
    (SQLX_URL_PARAMETERS.contains(&parameter) && !secret)
        || matches!(parameter, "connect_timeout" | "target_session_attrs")
}

/// The database URL with its password and every parameter value that may be secret replaced,
/// so it can be shown.
pub fn redact_url(url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(REDACTED));
            }
            let query: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if shown(k.as_ref()) {
                        v.into_owned()
                    } else {
                        REDACTED.to_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !query.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(query);
            }
            // The URL encodes the brackets; print the mark as it reads.
            parsed.to_string().replace("%5Bredacted%5D", REDACTED)
        }
        Err(_) => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_that_may_be_secret_is_redacted() {
        let url = "postgres://app:pw1@db:5432/audit?sslmode=verify-full&sslpassword=pw2&password=pw3\
                   &options=-c%20x%3Dpw4&sslkey=/k.pem&unknown_thing=pw5&application_name=a";
        let shown = redact_url(&SecretString::from(url));
        for secret in ["pw1", "pw2", "pw3", "pw4", "pw5"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        for kept in [
            "sslmode=verify-full",
            "sslkey=%2Fk.pem",
            "application_name=a",
            "app:",
        ] {
            assert!(shown.contains(kept), "{kept} in {shown}");
        }
        assert!(
            shown.contains("sslpassword=%5Bredacted%5D")
                || shown.contains("sslpassword=[redacted]"),
            "{shown}"
        );
    }
}
