//! What defines where and how a destination's runs deliver, described without secrets, so a
//! pending run planned under one configuration is never finished under another.

use serde_json::{Map, Value, json};

use super::destination::{Destination, Target};
use crate::domain::{KeyLayout, PartitionTime, Schema};

/// The fields of a delivery, in the order a change is reported.
const FIELDS: [&str; 7] = [
    "tenant_id",
    "url",
    "encoding",
    "compression",
    "schema",
    "key_layout",
    "partition_time",
];

impl Destination {
    /// The tenant filter, the place (bucket, prefix and endpoint, or directory), the encoding,
    /// the compression, the schema (only when not `native`, so runs planned before there was a
    /// choice still match), the key layout and the partition time (only when `event`, likewise).
    /// Credentials and object options (SSE, ACL, tags, storage class) are left out: fixing a
    /// secret finishes the same run, same key, same bytes.
    pub fn delivery(&self) -> Value {
        let url = match &self.target {
            Target::File(dir) => json!({ "directory": dir.display().to_string() }),
            Target::S3(s3) => json!({
                "bucket": s3.bucket,
                "prefix": s3.prefix,
                "endpoint": s3.endpoint,
            }),
        };
        let key_layout = match &self.key_layout {
            KeyLayout::Env0 { log_type } => json!({ "env0": log_type }),
            KeyLayout::SecurityLake { account_id, region } => {
                json!({ "security-lake": { "account_id": account_id, "region": region } })
            }
            other => json!(other.as_config()),
        };
        let mut delivery = json!({
            "tenant_id": self.tenant_id,
            "url": url,
            "encoding": self.format.encoding.as_str(),
            "compression": self.format.compression.as_str(),
            "key_layout": key_layout,
        });
        if self.format.schema != Schema::Native {
            delivery["schema"] = self.format.schema.as_str().into();
        }
        if self.partition_time != PartitionTime::Window {
            delivery["partition_time"] = self.partition_time.as_str().into();
        }
        delivery
    }
}

/// What differs between the delivery a run was planned with and the current one, one phrase
/// per field (`url changed from … to …`); empty when they match.
pub fn delivery_changes(planned: &Value, current: &Value) -> Vec<String> {
    let empty = Map::new();
    let (planned, current) = (
        planned.as_object().unwrap_or(&empty),
        current.as_object().unwrap_or(&empty),
    );
    let others: std::collections::BTreeSet<&str> = planned
        .keys()
        .chain(current.keys())
        .map(String::as_str)
        .filter(|k| !FIELDS.contains(k))
        .collect();
    let mut names: Vec<&str> = FIELDS.to_vec();
    names.extend(others);
    names
        .into_iter()
        .filter_map(|name| {
            // A field left out when it has its default (see `Destination::delivery`).
            let absent = match name {
                "schema" => json!(Schema::Native.as_str()),
                "partition_time" => json!(PartitionTime::Window.as_str()),
                _ => Value::Null,
            };
            let (old, new) = (
                planned.get(name).unwrap_or(&absent),
                current.get(name).unwrap_or(&absent),
            );
            (old != new).then(|| format!("{name} changed from {old} to {new}"))
        })
        .collect()
}

/// Whether two deliveries write to the same place for the same tenant filter: only the format
/// or the key layout differ.
pub fn same_place(planned: &Value, current: &Value) -> bool {
    ["tenant_id", "url"]
        .iter()
        .all(|field| planned.get(field) == current.get(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn destination(extra: &[(&str, &str)]) -> Destination {
        let mut env = vec![
            ("AUDIT_EXPORTER__DESTINATIONS__D__URL", "s3://bucket-a/p"),
            ("AUDIT_EXPORTER__DESTINATIONS__D__ACCESS_KEY_ID", "AKIA"),
            (
                "AUDIT_EXPORTER__DESTINATIONS__D__SECRET_ACCESS_KEY",
                "first-secret",
            ),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| !key.ends_with(&format!("__{k}")));
            env.push((
                Box::leak(format!("AUDIT_EXPORTER__DESTINATIONS__D__{k}").into_boxed_str()),
                v,
            ));
        }
        let env = env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
        Settings::load_with_env(None, env)
            .unwrap()
            .destinations
            .remove(0)
    }

    #[test]
    fn secrets_and_object_options_are_not_part_of_a_delivery() {
        let base = destination(&[]).delivery();
        for change in [
            ("SECRET_ACCESS_KEY", "second-secret"),
            ("ACCESS_KEY_ID", "AKIB"),
            ("STORAGE_CLASS", "STANDARD_IA"),
            ("ACL", "bucket-owner-full-control"),
            ("SERVER_SIDE_ENCRYPTION", "AES256"),
            ("EVERY_HOURS", "6"),
        ] {
            let other = destination(&[change]).delivery();
            assert_eq!(
                delivery_changes(&base, &other),
                Vec::<String>::new(),
                "{change:?}"
            );
        }
        let text = base.to_string();
        assert!(!text.contains("secret") && !text.contains("AKIA"), "{text}");
    }

    #[test]
    fn each_defining_change_is_named_with_old_and_new_values() {
        let base = destination(&[]).delivery();
        let cases = [
            (
                ("TENANT_ID", "acme"),
                r#"tenant_id changed from null to "acme""#,
            ),
            (("URL", "s3://bucket-a/q"), r#""prefix":"p""#),
            (("URL", "s3://bucket-b/p"), r#""bucket":"bucket-b""#),
            (("ENDPOINT", "http://127.0.0.1:9000"), "url changed from"),
            (
                ("ENCODING", "json"),
                r#"encoding changed from "ndjson" to "json""#,
            ),
            (
                ("COMPRESSION", "zstd"),
                r#"compression changed from "none" to "zstd""#,
            ),
            (
                ("SCHEMA", "ocsf"),
                r#"schema changed from "native" to "ocsf""#,
            ),
            (
                ("PARTITION_TIME", "event"),
                r#"partition_time changed from "window" to "event""#,
            ),
            (
                ("KEY_LAYOUT", "env0"),
                r#"key_layout changed from "hive" to {"env0":"audit"}"#,
            ),
        ];
        for (change, expect) in cases {
            let changes = delivery_changes(&base, &destination(&[change]).delivery());
            assert_eq!(changes.len(), 1, "{change:?}: {changes:?}");
            assert!(changes[0].contains(expect), "{change:?}: {changes:?}");
        }
        let env = [(
            "AUDIT_EXPORTER__DESTINATIONS__D__URL".to_owned(),
            "file:///srv/audit".to_owned(),
        )];
        let file = Settings::load_with_env(None, env)
            .unwrap()
            .destinations
            .remove(0);
        let changes = delivery_changes(&base, &file.delivery());
        assert!(
            changes[0].contains(r#"{"directory":"/srv/audit"}"#),
            "{changes:?}"
        );
    }

    #[test]
    fn start_is_read_per_destination_or_from_defaults_naming_the_key() {
        use crate::domain::Start;
        assert_eq!(destination(&[]).start, Start::Beginning);
        assert_eq!(destination(&[("START", "now")]).start, Start::Now);
        let env = |k: &str, v: &str| {
            vec![
                (
                    "AUDIT_EXPORTER__DESTINATIONS__D__URL".to_owned(),
                    "file:///srv/a".to_owned(),
                ),
                (k.to_owned(), v.to_owned()),
            ]
        };
        let error = Settings::load_with_env(None, env("AUDIT_EXPORTER__DEFAULTS__START", "soon"))
            .unwrap_err();
        assert!(
            error
                .0
                .starts_with("defaults.start: \"soon\" is not allowed"),
            "{error}"
        );
        let error =
            Settings::load_with_env(None, env("AUDIT_EXPORTER__DESTINATIONS__D__START", "later"))
                .unwrap_err();
        assert!(error.0.starts_with("destinations.d.start:"), "{error}");
        let time = Settings::load_with_env(
            None,
            env("AUDIT_EXPORTER__DEFAULTS__START", "2026-11-20T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            time.destinations[0].start.to_string(),
            "2026-11-20T00:00:00Z"
        );
    }

    #[test]
    fn a_run_planned_before_descriptions_existed_is_compared_field_by_field() {
        let base = destination(&[]).delivery();
        assert!(delivery_changes(&base, &base.clone()).is_empty());
        assert_eq!(
            delivery_changes(&json!({}), &json!({})),
            Vec::<String>::new()
        );
    }
}
