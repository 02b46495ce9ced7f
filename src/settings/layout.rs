//! A destination's key layout and the time its partitions follow, checked against what the
//! layout needs: Amazon Security Lake's takes only OCSF in Parquet, by event day, in S3.

use super::SettingsError;
use super::destination::Target;
use super::destination::pick;
use super::raw::{RawDefaults, RawDestination};
use crate::domain::{Encoding, Format, KeyLayout, PartitionTime, Schema};

/// `key_layout`, `env0_log_type`, `account_id` and `partition_time` of destination `name`.
pub(super) fn parse(
    name: &str,
    raw: &RawDestination,
    defaults: &RawDefaults,
    target: &Target,
    format: &Format,
) -> Result<(KeyLayout, PartitionTime), SettingsError> {
    let key = |field: &str| format!("destinations.{name}.{field}");
    let error = |field: &str, msg: String| SettingsError(format!("{}: {msg}", key(field)));
    let (layout_key, layout) = pick(
        &raw.key_layout,
        &defaults.key_layout,
        &key("key_layout"),
        "defaults.key_layout",
    );
    let (time_key, time) = pick(
        &raw.partition_time,
        &defaults.partition_time,
        &key("partition_time"),
        "defaults.partition_time",
    );
    let partition_time = PartitionTime::parse(time).ok_or_else(|| {
        SettingsError(format!(
            "{time_key}: {time:?} is not allowed; allowed: {}",
            PartitionTime::ALLOWED
        ))
    })?;
    if layout != "security-lake" {
        if raw.account_id.is_some() {
            return Err(error(
                "account_id",
                format!(
                    "applies only to key_layout = \"security-lake\" (this destination's is {layout:?})"
                ),
            ));
        }
        let log_type = raw
            .env0_log_type
            .as_deref()
            .unwrap_or(&defaults.env0_log_type);
        let key_layout = KeyLayout::parse(layout, log_type)
            .map_err(|msg| SettingsError(format!("{layout_key}: {msg}")))?;
        if partition_time == PartitionTime::Event {
            check_day_fields(name, target, &key_layout)?;
        }
        return Ok((key_layout, partition_time));
    }
    // Security Lake reads each custom source's objects under its own layout, by event day,
    // and takes only OCSF records in Parquet (one class a source; API Activity here).
    let needs = |what: &str| {
        SettingsError(format!(
            "{layout_key}: \"security-lake\" needs {what}; Amazon Security Lake takes only OCSF records in Parquet files, by event day, in its S3 bucket"
        ))
    };
    if format.encoding != Encoding::Parquet {
        return Err(needs(&format!(
            "encoding = \"parquet\" (this destination's is {:?})",
            format.encoding.as_str()
        )));
    }
    if format.schema != Schema::Ocsf {
        return Err(needs(&format!(
            "schema = \"ocsf\" (this destination's is {:?})",
            format.schema.as_str()
        )));
    }
    if partition_time != PartitionTime::Event && raw.partition_time.is_some() {
        return Err(needs("partition_time = \"event\" (or no partition_time)"));
    }
    let Target::S3(s3) = target else {
        return Err(needs(
            "an s3:// url (the Security Lake bucket and the source's prefix)",
        ));
    };
    let Some(region) = &s3.region else {
        return Err(needs(
            "region (the Security Lake's region, which its keys name), such as region = \"eu-west-1\"",
        ));
    };
    let Some(account_id) = &raw.account_id else {
        return Err(needs(
            "account_id (the AWS account the events come from, 12 digits), such as account_id = \"123456789012\"",
        ));
    };
    let key_layout = KeyLayout::security_lake(account_id, region).map_err(|msg| {
        let field = if msg.starts_with("region") {
            "region"
        } else {
            "account_id"
        };
        error(field, msg)
    })?;
    check_day_fields(name, target, &key_layout)?;
    Ok((key_layout, PartitionTime::Event))
}

/// A key planned by event day holds `{YYYY}`, `{MM}` and `{DD}` until each object's day fills
/// them in: no other text of the key may hold a brace.
fn check_day_fields(name: &str, target: &Target, layout: &KeyLayout) -> Result<(), SettingsError> {
    let braced = |text: &str| text.contains(['{', '}']);
    let or_window = if matches!(layout, KeyLayout::SecurityLake { .. }) {
        ""
    } else {
        ", or partition_time = \"window\""
    };
    if let Target::S3(s3) = target
        && braced(&s3.prefix)
    {
        return Err(SettingsError(format!(
            "destinations.{name}.url: the prefix {:?} holds a brace, which keys by event day cannot carry; allowed: a prefix without '{{' and '}}'{or_window}",
            s3.prefix
        )));
    }
    if let KeyLayout::Env0 { log_type } = layout
        && braced(log_type)
    {
        return Err(SettingsError(format!(
            "destinations.{name}.env0_log_type: {log_type:?} holds a brace, which keys by event day cannot carry; allowed: text without '{{' and '}}', or partition_time = \"window\""
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::domain::{KeyLayout, PartitionTime};
    use crate::settings::Settings;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let mut env = vec![
            ("URL", "s3://lake-bucket/ext/audit"),
            ("REGION", "eu-west-1"),
            ("KEY_LAYOUT", "security-lake"),
            ("ACCOUNT_ID", "123456789012"),
            ("ENCODING", "parquet"),
            ("SCHEMA", "ocsf"),
        ];
        for (key, value) in pairs {
            env.retain(|(k, _)| k != key);
            if !value.is_empty() {
                env.push((key, value));
            }
        }
        let env = env.into_iter().map(|(k, v)| {
            (
                format!("AUDIT_EXPORTER__DESTINATIONS__LAKE__{k}"),
                v.to_owned(),
            )
        });
        Settings::load_with_env(None, env).map_err(|e| e.0)
    }

    #[test]
    fn security_lake_takes_ocsf_parquet_by_event_day_in_s3() {
        let settings = load(&[]).unwrap();
        let lake = &settings.destinations[0];
        assert_eq!(
            lake.key_layout,
            KeyLayout::security_lake("123456789012", "eu-west-1").unwrap()
        );
        assert_eq!(lake.partition_time, PartitionTime::Event);
        let cases: [(&[(&str, &str)], &str); 8] = [
            (&[("ENCODING", "ndjson")], "encoding = \"parquet\""),
            (&[("SCHEMA", "native")], "schema = \"ocsf\""),
            (
                &[("PARTITION_TIME", "window")],
                "partition_time = \"event\"",
            ),
            (
                &[("URL", "file:///tmp/lake"), ("REGION", "")],
                "an s3:// url",
            ),
            (&[("REGION", "")], "needs region"),
            (&[("ACCOUNT_ID", "")], "needs account_id"),
            (&[("ACCOUNT_ID", "1234")], "12 digits"),
            (
                &[("REGION", "eu west")],
                "destinations.lake.region: region \"eu west\"",
            ),
        ];
        for (change, named) in cases {
            let error = load(change).unwrap_err();
            assert!(error.contains(named), "{change:?}: {error}");
            assert!(error.starts_with("destinations.lake."), "{error}");
        }
        let error = load(&[("KEY_LAYOUT", "hive")]).unwrap_err();
        assert!(
            error.contains(
                "destinations.lake.account_id: applies only to key_layout = \"security-lake\""
            ),
            "{error}"
        );
    }

    #[test]
    fn partition_time_is_window_or_event() {
        let hive = [("KEY_LAYOUT", "hive"), ("ACCOUNT_ID", "")];
        let settings = load(&hive).unwrap();
        assert_eq!(
            settings.destinations[0].partition_time,
            PartitionTime::Window
        );
        let error = load(&[hive[0], hive[1], ("PARTITION_TIME", "day")]).unwrap_err();
        assert!(
            error.contains("partition_time: \"day\" is not allowed; allowed: window | event"),
            "{error}"
        );
        let error = load(&[
            hive[0],
            hive[1],
            ("PARTITION_TIME", "event"),
            ("URL", "s3://lake-bucket/a{b}"),
        ])
        .unwrap_err();
        assert!(error.contains("holds a brace"), "{error}");
    }
}
