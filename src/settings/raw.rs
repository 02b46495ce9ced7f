//! The config file's shape, field by field, before validation. `config/default.toml` documents
//! every key; unknown keys are refused so a typo never goes unnoticed.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

use super::number::Int;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub database: RawDatabase,
    pub exporter: RawExporter,
    pub run: RawRun,
    pub log: RawLog,
    #[serde(default)]
    pub retention: RawRetention,
    pub defaults: RawDefaults,
    #[serde(default)]
    pub integrity: RawIntegrity,
    #[serde(default)]
    pub destinations: BTreeMap<String, RawDestination>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub url: Option<SecretString>,
    pub embedded_dir: String,
    pub max_connections: Int,
    pub connect_timeout_secs: Int,
    pub migrate_on_start: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExporter {
    pub instance_id: Option<String>,
    pub lease_secs: Int,
    pub part_size_mib: Int,
    pub uploads_in_flight: Int,
    pub retry_max_attempts: Int,
    pub retry_initial_backoff_ms: Int,
    pub request_timeout_secs: Int,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub check_cron: String,
    pub shutdown_grace_secs: Int,
    pub reload_check_secs: Int,
    pub listen: String,
    pub unready_after_failing_secs: Int,
    pub metrics_refresh_secs: Int,
    pub parallel_exports: Int,
    pub failed_export_backoff_secs: Int,
    pub failed_export_backoff_max_secs: Int,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub keep_days: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: String,
    pub level: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegrity {
    pub signing_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub every_hours: Int,
    pub schedule_at: Option<String>,
    pub encoding: String,
    pub compression: String,
    pub schema: String,
    pub key_layout: String,
    pub partition_time: String,
    pub env0_log_type: String,
    pub max_object_bytes: Int,
    pub start: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub url: Option<String>,
    pub tenant_id: Option<String>,
    pub every_hours: Option<Int>,
    pub schedule_at: Option<String>,
    pub encoding: Option<String>,
    pub compression: Option<String>,
    pub schema: Option<String>,
    pub key_layout: Option<String>,
    pub partition_time: Option<String>,
    pub account_id: Option<String>,
    pub env0_log_type: Option<String>,
    pub max_object_bytes: Option<Int>,
    pub start: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub access_key_id: Option<SecretString>,
    pub secret_access_key: Option<SecretString>,
    pub session_token: Option<SecretString>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub session_duration_secs: Option<Int>,
    pub sts_endpoint: Option<String>,
    pub web_identity_token_file: Option<String>,
    pub web_identity_role_arn: Option<String>,
    pub server_side_encryption: Option<String>,
    pub kms_key_id: Option<String>,
    pub acl: Option<String>,
    pub storage_class: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub object_lock_mode: Option<String>,
    pub object_lock_retain_days: Option<Int>,
}
