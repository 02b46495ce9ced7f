//! Configuration: layered sources, validation that names the key, secrets that never print.
//!
//! Layers, later ones winning: the embedded `config/default.toml`, then `--config FILE`, then
//! environment variables `AUDIT_EXPORTER__SECTION__KEY` (e.g. `AUDIT_EXPORTER__DATABASE__URL`).

mod delivery;
mod destination;
mod layout;
mod number;
mod overlap;
mod raw;
mod redact;
pub use redact::SQLX_URL_PARAMETERS;
mod s3;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;

use crate::domain::Signer;

pub use delivery::{delivery_changes, same_place};
pub use destination::{Destination, Target};
pub use overlap::{nested_locations, shared_locations};
use raw::RawSettings;
pub use s3::{
    AssumeRole, CannedAcl, CredentialSource, Credentials, ObjectLock, ObjectLockMode,
    ObjectOptions, S3Target, ServerSideEncryption, StaticKeys, StorageClass, WebIdentity,
};

/// The reference configuration, compiled in so the binary runs anywhere.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Environment variables with this prefix override config keys, `__` separating the levels.
pub const ENV_PREFIX: &str = "AUDIT_EXPORTER";

/// Invalid configuration: the message names the key and what it allows.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

#[derive(Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub exporter: ExporterSettings,
    pub run: RunSettings,
    pub log: LogSettings,
    pub retention: RetentionSettings,
    pub destinations: Vec<Destination>,
}

/// What `run` prunes on its own, once a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Prune the events recorded more than this many days ago that every destination has
    /// delivered; `None`: never.
    pub keep_days: Option<u32>,
}

#[derive(Debug)]
pub struct DatabaseSettings {
    /// `None` means: start an embedded PostgreSQL in `embedded_dir`.
    pub url: Option<SecretString>,
    pub embedded_dir: PathBuf,
    pub max_connections: u32,
    /// How long connecting may take before the server counts as unreachable.
    pub connect_timeout: std::time::Duration,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone)]
pub struct ExporterSettings {
    pub instance_id: Option<String>,
    pub lease_secs: u32,
    pub part_size: usize,
    pub uploads_in_flight: usize,
    pub retry: RetrySettings,
    /// `[integrity] signing_key_file`: when set, every scheduled run is chained by a signed
    /// digest, and every re-export gets one.
    pub signing: Option<SigningKey>,
}

/// The signing key and the file it was read from. Debug shows the fingerprint only.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub file: PathBuf,
    pub signer: Signer,
}

/// How S3 and STS requests that fail for a passing reason (throttling, 5xx, a dropped
/// connection) are retried: exponential backoff with full jitter, a bounded number of times.
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub initial_backoff: std::time::Duration,
    /// How long one attempt of a request may take before it is abandoned and retried.
    pub attempt_timeout: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct RunSettings {
    pub check_cron: String,
    pub shutdown_grace_secs: u32,
    /// How often `run` looks for a changed config file; `None`: only on SIGHUP.
    pub reload_check: Option<std::time::Duration>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: nowhere.
    pub listen: Option<std::net::SocketAddr>,
    /// `/readyz` fails once a destination has failed for this long without a success.
    pub unready_after_failing: std::time::Duration,
    /// How often the gauges read from the database (events waiting, due times) are refreshed.
    pub metrics_refresh: std::time::Duration,
    /// The wait before a failed destination's next attempt, doubling with each failure in a
    /// row up to the maximum.
    pub failed_export_backoff: std::time::Duration,
    pub failed_export_backoff_max: std::time::Duration,
    /// Destinations exported at once by `run` and `export`, at most
    /// `database.max_connections / 2`; 0: that many.
    pub parallel_exports: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Settings {
    /// Loads the layers from the real environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_with_env(config_file, std::env::vars())
    }

    /// Loads the layers with `env` standing for the process environment.
    pub fn load_with_env(
        config_file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(SettingsError(format!(
                    "--config {}: no such file",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        let overrides = env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")));
        // Values from the environment stay text: a string key keeps it exactly ("007" stays
        // "007"), and a number key parses it strictly (`number::Int`).
        let builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false)
                .source(Some(
                    overrides.map(|(k, v)| (k.clone(), v.clone())).collect(),
                )),
        );
        let raw: RawSettings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| SettingsError(format!("invalid configuration: {e}")))?;
        let mut settings = Self::validate(raw)?;
        if settings.database.url.is_none() {
            settings.database.url = env
                .get("DATABASE_URL")
                .filter(|u| !u.is_empty())
                .map(|u| u.clone().into());
            if let Some(url) = &settings.database.url {
                check_database_url("DATABASE_URL", url)?;
            }
        } else if let Some(url) = &settings.database.url {
            check_database_url("database.url", url)?;
        }
        Ok(settings)
    }

    /// The destinations named, all of them when `names` is empty; an unknown name is an error.
    pub fn select_destinations(
        &self,
        names: &[String],
    ) -> Result<Vec<&Destination>, SettingsError> {
        if self.destinations.is_empty() {
            return Err(SettingsError(
                "no destination is configured; add a [destinations.NAME] table with a url".into(),
            ));
        }
        if names.is_empty() {
            return Ok(self.destinations.iter().collect());
        }
        names
            .iter()
            .map(|name| {
                self.destinations
                    .iter()
                    .find(|d| &d.name == name)
                    .ok_or_else(|| {
                        let known: Vec<_> =
                            self.destinations.iter().map(|d| d.name.as_str()).collect();
                        SettingsError(format!(
                            "--destination {name}: no such destination; configured: {}",
                            known.join(", ")
                        ))
                    })
            })
            .collect()
    }

    /// The effective configuration as TOML, every secret replaced by `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        redact::to_toml(self)
    }
}

/// A PostgreSQL URL, checked here so a wrong one exits 2 naming the key; the message never
/// repeats the URL, which may hold a password.
fn check_database_url(key: &str, url: &SecretString) -> Result<(), SettingsError> {
    use secrecy::ExposeSecret;
    const ALLOWED: &str = "allowed: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE";
    match url::Url::parse(url.expose_secret()) {
        Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") => Ok(()),
        Ok(url) => Err(SettingsError(format!(
            "{key}: scheme {:?} is not supported; {ALLOWED}",
            url.scheme()
        ))),
        Err(e) => Err(SettingsError(format!("{key}: not a URL ({e}); {ALLOWED}"))),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_database;
#[cfg(test)]
mod tests_s3;
#[cfg(test)]
mod tests_strict;
