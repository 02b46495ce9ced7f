//! Checks the raw configuration key by key and builds the settings, naming the key and what
//! is allowed when a value is wrong.

use std::path::PathBuf;

use super::number::Int;
use super::raw::RawSettings;
use super::*;
use crate::domain::PRIVATE_KEY_ALLOWED;

impl Settings {
    pub(super) fn validate(raw: RawSettings) -> Result<Self, SettingsError> {
        let database = DatabaseSettings {
            url: raw.database.url,
            embedded_dir: PathBuf::from(raw.database.embedded_dir),
            max_connections: in_range(
                "database.max_connections",
                &raw.database.max_connections,
                2,
                100,
            )?,
            connect_timeout: std::time::Duration::from_secs(in_range(
                "database.connect_timeout_secs",
                &raw.database.connect_timeout_secs,
                1,
                300,
            )?),
            migrate_on_start: raw.database.migrate_on_start,
        };
        let exporter = ExporterSettings {
            instance_id: raw.exporter.instance_id.filter(|id| !id.is_empty()),
            lease_secs: in_range("exporter.lease_secs", &raw.exporter.lease_secs, 5, 86_400)?,
            // S3 refuses parts below 5 MiB (the last excepted) and above 5 GiB.
            part_size: in_range::<usize>(
                "exporter.part_size_mib",
                &raw.exporter.part_size_mib,
                5,
                5120,
            )? << 20,
            uploads_in_flight: in_range(
                "exporter.uploads_in_flight",
                &raw.exporter.uploads_in_flight,
                1,
                16,
            )?,
            retry: RetrySettings {
                max_attempts: in_range(
                    "exporter.retry_max_attempts",
                    &raw.exporter.retry_max_attempts,
                    1,
                    20,
                )?,
                initial_backoff: std::time::Duration::from_millis(in_range(
                    "exporter.retry_initial_backoff_ms",
                    &raw.exporter.retry_initial_backoff_ms,
                    1,
                    60_000,
                )?),
                attempt_timeout: std::time::Duration::from_secs(in_range(
                    "exporter.request_timeout_secs",
                    &raw.exporter.request_timeout_secs,
                    1,
                    3600,
                )?),
            },
            signing: signing_key(raw.integrity.signing_key_file.as_deref())?,
        };
        if tokio_cron_scheduler::Job::new_async(raw.run.check_cron.as_str(), |_, _| {
            Box::pin(async {})
        })
        .is_err()
        {
            return Err(SettingsError(format!(
                "run.check_cron: {:?} is not a cron expression; allowed: six fields, seconds first, e.g. \"0 * * * * *\"",
                raw.run.check_cron
            )));
        }
        let listen = match raw.run.listen.as_str() {
            "" => None,
            address => Some(address.parse().map_err(|_| {
                SettingsError(format!(
                    "run.listen: {address:?} is not an address; allowed: IP:PORT such as \"127.0.0.1:9187\", or \"\" to serve nothing"
                ))
            })?),
        };
        let reload_check_secs: u64 =
            in_range("run.reload_check_secs", &raw.run.reload_check_secs, 0, 3600)?;
        let backoff_secs: u64 = in_range(
            "run.failed_export_backoff_secs",
            &raw.run.failed_export_backoff_secs,
            1,
            86_400,
        )?;
        let backoff_max_secs: u64 = in_range(
            "run.failed_export_backoff_max_secs",
            &raw.run.failed_export_backoff_max_secs,
            1,
            86_400,
        )?;
        if backoff_max_secs < backoff_secs {
            return Err(SettingsError(format!(
                "run.failed_export_backoff_max_secs: {backoff_max_secs} is below run.failed_export_backoff_secs ({backoff_secs}); allowed: {backoff_secs}..=86400"
            )));
        }
        let parallel_exports = in_range("run.parallel_exports", &raw.run.parallel_exports, 0, 50)?;
        if parallel_exports > database.max_connections / 2 {
            return Err(SettingsError(format!(
                "run.parallel_exports: {parallel_exports} exports at once need database.max_connections of at least {} (each export holds up to two connections), not {}; allowed: 0 (max_connections / 2) or 1..={}",
                parallel_exports * 2,
                database.max_connections,
                database.max_connections / 2
            )));
        }
        let run = RunSettings {
            check_cron: raw.run.check_cron,
            shutdown_grace_secs: in_range(
                "run.shutdown_grace_secs",
                &raw.run.shutdown_grace_secs,
                0,
                3600,
            )?,
            reload_check: (reload_check_secs > 0)
                .then(|| std::time::Duration::from_secs(reload_check_secs)),
            listen,
            unready_after_failing: std::time::Duration::from_secs(in_range(
                "run.unready_after_failing_secs",
                &raw.run.unready_after_failing_secs,
                1,
                604_800,
            )?),
            metrics_refresh: std::time::Duration::from_secs(in_range(
                "run.metrics_refresh_secs",
                &raw.run.metrics_refresh_secs,
                1,
                3600,
            )?),
            failed_export_backoff: std::time::Duration::from_secs(backoff_secs),
            failed_export_backoff_max: std::time::Duration::from_secs(backoff_max_secs),
            parallel_exports,
        };
        let log = LogSettings {
            format: match raw.log.format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(SettingsError(format!(
                        "log.format: {other:?} is not allowed; allowed: text | json"
                    )));
                }
            },
            level: raw.log.level,
        };
        let retention = RetentionSettings {
            keep_days: raw
                .retention
                .keep_days
                .as_ref()
                .map(|days| in_range("retention.keep_days", days, 1, 36_500))
                .transpose()?,
        };
        let destinations = raw
            .destinations
            .into_iter()
            .map(|(name, dest)| Destination::parse(name, dest, &raw.defaults))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            database,
            exporter,
            run,
            log,
            retention,
            destinations,
        })
    }
}

/// Reads `integrity.signing_key_file` (unset or empty: no signing). The message names the key
/// and the file, never the key's text.
fn signing_key(file: Option<&str>) -> Result<Option<SigningKey>, SettingsError> {
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    if file.contains("-----BEGIN") || file.contains('\n') {
        // A key's text given where its file's path belongs: never repeat it.
        return Err(SettingsError(format!(
            "integrity.signing_key_file: the value is a key's text (not shown), not the path of a file holding it; {PRIVATE_KEY_ALLOWED}"
        )));
    }
    let error = |msg: String| {
        SettingsError(format!(
            "integrity.signing_key_file: {file}: {msg}; {PRIVATE_KEY_ALLOWED}"
        ))
    };
    let pem = std::fs::read(file).map_err(|e| error(format!("cannot be read ({e})")))?;
    let pem = String::from_utf8(pem).map_err(|_| error("is not a PEM text file".into()))?;
    let signer = Signer::from_pem(&pem).map_err(error)?;
    Ok(Some(SigningKey {
        file: PathBuf::from(file),
        signer,
    }))
}

/// Reads an integer key, naming it and its range when it is not a whole number or out of bounds.
pub(super) fn in_range<T: TryFrom<i64>>(
    key: &str,
    value: &Int,
    min: i64,
    max: i64,
) -> Result<T, SettingsError> {
    let value = value
        .whole(key, &format!("{min}..={max}"))
        .map_err(SettingsError)?;
    if (min..=max).contains(&value)
        && let Ok(v) = T::try_from(value)
    {
        return Ok(v);
    }
    Err(SettingsError(format!(
        "{key}: {value} is out of range; allowed: {min}..={max}"
    )))
}
