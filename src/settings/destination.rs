//! One `[destinations.NAME]` table, validated into what the exporter needs.

use std::path::PathBuf;

use super::SettingsError;
use super::raw::{RawDefaults, RawDestination};
use super::s3::{self, S3Target};
use super::validate::in_range;
use crate::domain::{
    Compression, Encoding, Format, KeyLayout, PartitionTime, Schedule, Schema, Start, TimeOfDay,
    check_key_path,
};

#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub target: Target,
    /// Only this tenant's events, when set.
    pub tenant_id: Option<String>,
    pub every_hours: u8,
    /// Due times on the grid of this time of day (UTC); otherwise from the next full hour.
    pub schedule_at: Option<TimeOfDay>,
    pub format: Format,
    pub key_layout: KeyLayout,
    /// Whether a run's objects follow the window's end or the events' day (`KeyParts::by_day`).
    pub partition_time: PartitionTime,
    /// A re-export closes an object and starts the next once it holds this many bytes.
    pub max_object_bytes: Option<u64>,
    /// Where the stream starts when the destination is first recorded (and on `reset`).
    pub start: Start,
}

#[derive(Debug, Clone)]
pub enum Target {
    S3(Box<S3Target>),
    /// A local directory, written atomically.
    File(PathBuf),
}

/// 1 MiB: smaller objects would each be a single small part.
const MIN_OBJECT_BYTES: i64 = 1 << 20;
/// 5 TiB, S3's largest object.
const MAX_OBJECT_BYTES: i64 = 5 << 40;

const URL_ALLOWED: &str = "allowed: s3://bucket[/prefix] or file:///absolute/path";

impl Destination {
    pub(super) fn parse(
        name: String,
        raw: RawDestination,
        defaults: &RawDefaults,
    ) -> Result<Self, SettingsError> {
        let key = |field: &str| format!("destinations.{name}.{field}");
        let error = |field: &str, msg: String| SettingsError(format!("{}: {msg}", key(field)));

        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(SettingsError(format!(
                "destinations.{name}: {name:?} is not a destination name; allowed: lowercase letters, digits, '_' and '-'"
            )));
        }
        let Some(url) = raw.url.as_deref() else {
            return Err(error(
                "url",
                format!("missing; every destination needs a url ({URL_ALLOWED})"),
            ));
        };
        let parsed = url::Url::parse(url)
            .map_err(|e| error("url", format!("{url:?} is not a URL ({e}); {URL_ALLOWED}")))?;
        let target = match parsed.scheme() {
            "s3" => Target::S3(Box::new(
                parse_s3(url, &parsed, &raw).map_err(|(field, msg)| error(field, msg))?,
            )),
            "file" => {
                let s3_only = [
                    ("region", raw.region.is_some()),
                    ("endpoint", raw.endpoint.is_some()),
                    ("force_path_style", raw.force_path_style.is_some()),
                    ("access_key_id", raw.access_key_id.is_some()),
                    ("secret_access_key", raw.secret_access_key.is_some()),
                    ("session_token", raw.session_token.is_some()),
                    ("role_arn", raw.role_arn.is_some()),
                    ("external_id", raw.external_id.is_some()),
                    ("session_name", raw.session_name.is_some()),
                    ("session_duration_secs", raw.session_duration_secs.is_some()),
                    ("sts_endpoint", raw.sts_endpoint.is_some()),
                    (
                        "web_identity_token_file",
                        raw.web_identity_token_file.is_some(),
                    ),
                    ("web_identity_role_arn", raw.web_identity_role_arn.is_some()),
                    (
                        "server_side_encryption",
                        raw.server_side_encryption.is_some(),
                    ),
                    ("kms_key_id", raw.kms_key_id.is_some()),
                    ("acl", raw.acl.is_some()),
                    ("storage_class", raw.storage_class.is_some()),
                    ("tags", raw.tags.is_some()),
                    ("object_lock_mode", raw.object_lock_mode.is_some()),
                    (
                        "object_lock_retain_days",
                        raw.object_lock_retain_days.is_some(),
                    ),
                ];
                if let Some((field, _)) = s3_only.iter().find(|(_, set)| *set) {
                    return Err(error(field, "applies only to s3:// destinations".into()));
                }
                if parsed.host_str().is_some_and(|h| !h.is_empty()) || parsed.path().len() < 2 {
                    return Err(error(
                        "url",
                        format!("{url:?} is not a local directory; {URL_ALLOWED}"),
                    ));
                }
                file_path_text(url).map_err(|msg| error("url", msg))?;
                let path = parsed.to_file_path().map_err(|()| {
                    error(
                        "url",
                        format!("{url:?} is not a local directory; {URL_ALLOWED}"),
                    )
                })?;
                Target::File(path)
            }
            scheme => {
                return Err(error(
                    "url",
                    format!("scheme {scheme:?} is not supported; {URL_ALLOWED}"),
                ));
            }
        };

        let every_hours = raw.every_hours.as_ref().unwrap_or(&defaults.every_hours);
        let every_hours_key = if raw.every_hours.is_some() {
            key("every_hours")
        } else {
            "defaults.every_hours".into()
        };
        let every_hours = in_range(
            &every_hours_key,
            every_hours,
            Schedule::MIN_HOURS.into(),
            Schedule::MAX_HOURS.into(),
        )?;

        let (schedule_at_key, schedule_at) = match (&raw.schedule_at, &defaults.schedule_at) {
            (Some(own), _) => (key("schedule_at"), Some(own.as_str())),
            (None, default) => ("defaults.schedule_at".into(), default.as_deref()),
        };
        // "" stands for "not set", so a destination can drop a default time of day.
        let schedule_at = schedule_at
            .filter(|at| !at.is_empty())
            .map(TimeOfDay::parse)
            .transpose()
            .map_err(|msg| SettingsError(format!("{schedule_at_key}: {msg}")))?;

        let (encoding_key, encoding) = pick(
            &raw.encoding,
            &defaults.encoding,
            &key("encoding"),
            "defaults.encoding",
        );
        let encoding = Encoding::parse(encoding).ok_or_else(|| {
            SettingsError(format!(
                "{encoding_key}: {encoding:?} is not allowed; allowed: {}",
                Encoding::ALLOWED
            ))
        })?;
        let (compression_key, compression) = pick(
            &raw.compression,
            &defaults.compression,
            &key("compression"),
            "defaults.compression",
        );
        let compression = Compression::parse(compression).ok_or_else(|| {
            SettingsError(format!(
                "{compression_key}: {compression:?} is not allowed; allowed: {}",
                Compression::ALLOWED
            ))
        })?;
        let (schema_key, schema) = pick(
            &raw.schema,
            &defaults.schema,
            &key("schema"),
            "defaults.schema",
        );
        let schema = Schema::parse(schema).ok_or_else(|| {
            SettingsError(format!(
                "{schema_key}: {schema:?} is not allowed; allowed: {}",
                Schema::ALLOWED
            ))
        })?;
        let format = Format {
            encoding,
            compression,
            schema,
        };
        let (key_layout, partition_time) =
            super::layout::parse(&name, &raw, defaults, &target, &format)?;
        let tenant_id = match raw.tenant_id {
            Some(t) if t.is_empty() => {
                return Err(error(
                    "tenant_id",
                    "is empty; remove it to export every tenant".into(),
                ));
            }
            other => other,
        };
        let (max_key, max_bytes) = match &raw.max_object_bytes {
            Some(bytes) => (key("max_object_bytes"), bytes),
            None => (
                "defaults.max_object_bytes".into(),
                &defaults.max_object_bytes,
            ),
        };
        let max_bytes = max_bytes
            .whole(
                &max_key,
                &format!("0 (no limit) or {MIN_OBJECT_BYTES}..={MAX_OBJECT_BYTES}"),
            )
            .map_err(SettingsError)?;
        let max_object_bytes = match max_bytes {
            0 => None,
            bytes if (MIN_OBJECT_BYTES..=MAX_OBJECT_BYTES).contains(&bytes) => Some(bytes as u64),
            bytes => {
                return Err(SettingsError(format!(
                    "{max_key}: {bytes} is out of range; allowed: 0 (no limit) or {MIN_OBJECT_BYTES}..={MAX_OBJECT_BYTES}"
                )));
            }
        };
        let (start_key, start) = pick(&raw.start, &defaults.start, &key("start"), "defaults.start");
        let start =
            Start::parse(start).map_err(|msg| SettingsError(format!("{start_key}: {msg}")))?;
        Ok(Self {
            name,
            target,
            tenant_id,
            every_hours,
            schedule_at,
            format,
            key_layout,
            partition_time,
            max_object_bytes,
            start,
        })
    }

    /// The key prefix inside the destination (empty for the root).
    pub fn prefix(&self) -> &str {
        match &self.target {
            Target::S3(s3) => &s3.prefix,
            Target::File(_) => "",
        }
    }
}

/// The destination's own value or the default, with the key to name in an error.
pub(super) fn pick<'a>(
    own: &'a Option<String>,
    default: &'a str,
    own_key: &str,
    default_key: &str,
) -> (String, &'a str) {
    match own {
        Some(value) => (own_key.to_owned(), value),
        None => (default_key.to_owned(), default),
    }
}

fn parse_s3(
    text: &str,
    url: &url::Url,
    raw: &RawDestination,
) -> Result<S3Target, (&'static str, String)> {
    let bucket = url.host_str().unwrap_or_default();
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_bucket {
        return Err((
            "url",
            format!(
                "{bucket:?} is not an S3 bucket name; allowed: 3-63 lowercase letters, digits, '.' and '-' ({URL_ALLOWED})"
            ),
        ));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.port().is_some()
    {
        return Err((
            "url",
            format!("{url} has parts an S3 URL cannot have; {URL_ALLOWED}"),
        ));
    }
    if let Some(endpoint) = &raw.endpoint {
        s3::check_endpoint(endpoint).map_err(|msg| ("endpoint", msg))?;
    }
    let prefix = s3_prefix(text).map_err(|msg| ("url", msg))?;
    Ok(S3Target {
        bucket: bucket.to_owned(),
        prefix,
        region: raw.region.clone(),
        endpoint: raw.endpoint.clone(),
        force_path_style: raw.force_path_style.unwrap_or(false),
        credentials: s3::parse_credentials(raw)?,
        object: s3::parse_object_options(raw)?,
    })
}

/// The key prefix of an `s3://bucket/prefix` URL as the keys will hold it: percent-decoded
/// (`audit%20logs` is `audit logs`), without leading or trailing slash. Read from the text
/// rather than the parsed URL, which would silently resolve `..` segments.
fn s3_prefix(url: &str) -> Result<String, String> {
    let after_scheme = url.trim().split_once("://").map_or("", |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |slash| &after_scheme[slash..]);
    let prefix = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| {
            format!("the prefix {path:?} is not UTF-8 once decoded; allowed: UTF-8 text")
        })?;
    let prefix = prefix.trim_matches('/');
    check_key_path(prefix).map_err(|e| format!("the prefix {e}; it cannot be an S3 key"))?;
    Ok(prefix.to_owned())
}

/// Checks a `file://` URL's text as written, percent-decoded: no `..` segment (also
/// between backslashes, which the URL parser reads as slashes) and no control character (which
/// it drops). The parsed URL would have resolved them silently: `file:///r/../etc` is `/etc`.
fn file_path_text(url: &str) -> Result<(), String> {
    let after_scheme = url.trim().split_once(':').map_or("", |(_, rest)| rest);
    let text = percent_encoding::percent_decode_str(after_scheme).decode_utf8_lossy();
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{url:?} holds the control character {c:?}; allowed: printable characters"
        ));
    }
    if text.split(['/', '\\']).any(|s| s == "..") {
        return Err(format!(
            "{url:?} has a `..` segment; allowed: file:///absolute/path without `..` segments"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::s3_prefix;

    #[test]
    fn an_s3_prefix_is_percent_decoded() {
        for (url, prefix) in [
            ("s3://bucket", ""),
            ("s3://bucket/", ""),
            ("s3://bucket/exports/eu/", "exports/eu"),
            ("s3://bucket/audit logs/données", "audit logs/données"),
            (
                "s3://bucket/audit%20logs/donn%C3%A9es",
                "audit logs/données",
            ),
            ("s3://bucket/a%2Fb", "a/b"),
            ("s3://bucket/100%25", "100%"),
        ] {
            assert_eq!(s3_prefix(url).as_deref(), Ok(prefix), "{url}");
        }
    }

    #[test]
    fn a_prefix_that_cannot_be_a_key_is_refused() {
        for url in [
            "s3://bucket/a/../b",
            "s3://bucket/..",
            "s3://bucket/./a",
            "s3://bucket/%2e%2e/a",
            "s3://bucket/a%00b",
            "s3://bucket/a%0Ab",
            "s3://bucket/%FF",
        ] {
            assert!(s3_prefix(url).is_err(), "{url}");
        }
    }
}
