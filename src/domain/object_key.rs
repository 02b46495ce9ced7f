//! Object key layouts. A key derives only from the persisted run, so a retry writes the same key.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The placeholders a key template may use.
pub const TEMPLATE_PLACEHOLDERS: [&str; 12] = [
    "prefix",
    "destination",
    "YYYY",
    "MM",
    "DD",
    "HH",
    "mm",
    "ss",
    "run_id",
    "rand5",
    "ext",
    "log_type",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLayout {
    /// `{prefix}/schema=audit_log/version=v1/year=YYYY/month=MM/day=DD/{YYYYMMDDTHHMMSSZ}_{run_id}{ext}`
    Hive,
    /// `{prefix}/{log_type}/YYYY/MM/DD/{HH:mm:ss}_{rand5}{ext}`, the layout env0 writes.
    Env0 { log_type: String },
    /// A template of the placeholders in [`TEMPLATE_PLACEHOLDERS`].
    Template(String),
}

/// What a key is made of, all of it stored with the run.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub prefix: &'a str,
    pub destination: &'a str,
    pub window_end: DateTime<Utc>,
    pub run_id: Uuid,
    pub extension: &'a str,
}

impl KeyLayout {
    /// Parses `hive`, `env0` or a template. A template must name `{run_id}` or `{rand5}` so that
    /// two runs never share a key, and may use only the known placeholders.
    pub fn parse(value: &str, log_type: &str) -> Result<Self, String> {
        match value {
            "hive" => Ok(Self::Hive),
            "env0" => Ok(Self::Env0 {
                log_type: log_type.to_owned(),
            }),
            template if template.contains('{') => {
                let mut rest = template;
                while let Some(start) = rest.find('{') {
                    let Some(len) = rest[start..].find('}') else {
                        return Err(format!("unclosed `{{` in key template {template:?}"));
                    };
                    let name = &rest[start + 1..start + len];
                    if !TEMPLATE_PLACEHOLDERS.contains(&name) {
                        return Err(format!(
                            "unknown placeholder {{{name}}} in key template; allowed: {}",
                            TEMPLATE_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                        ));
                    }
                    rest = &rest[start + len + 1..];
                }
                if !template.contains("{run_id}") && !template.contains("{rand5}") {
                    return Err("a key template must contain {run_id} or {rand5} so that runs never share a key".into());
                }
                Ok(Self::Template(template.to_owned()))
            }
            other => Err(format!(
                "{other:?} is not a key layout; allowed: hive | env0 | a template such as \"{{prefix}}/{{YYYY}}/{{MM}}/{{run_id}}{{ext}}\""
            )),
        }
    }

    /// The text a user writes for this layout.
    pub fn as_config(&self) -> &str {
        match self {
            Self::Hive => "hive",
            Self::Env0 { .. } => "env0",
            Self::Template(template) => template,
        }
    }

    pub fn render(&self, parts: &KeyParts<'_>) -> String {
        let template = match self {
            Self::Hive => {
                "{prefix}/schema=audit_log/version=v1/year={YYYY}/month={MM}/day={DD}/{YYYY}{MM}{DD}T{HH}{mm}{ss}Z_{run_id}{ext}"
            }
            Self::Env0 { .. } => "{prefix}/{log_type}/{YYYY}/{MM}/{DD}/{HH}:{mm}:{ss}_{rand5}{ext}",
            Self::Template(template) => template,
        };
        let log_type = match self {
            Self::Env0 { log_type } => log_type.as_str(),
            _ => "audit",
        };
        let at = parts.window_end;
        let run_id = parts.run_id.simple().to_string();
        let rendered = template
            .replace("{prefix}", parts.prefix)
            .replace("{destination}", parts.destination)
            .replace("{log_type}", log_type)
            .replace("{YYYY}", &at.format("%Y").to_string())
            .replace("{MM}", &at.format("%m").to_string())
            .replace("{DD}", &at.format("%d").to_string())
            .replace("{HH}", &at.format("%H").to_string())
            .replace("{mm}", &at.format("%M").to_string())
            .replace("{ss}", &at.format("%S").to_string())
            .replace("{rand5}", &run_id[run_id.len() - 5..])
            .replace("{run_id}", &parts.run_id.to_string())
            .replace("{ext}", parts.extension);
        // An empty prefix or a template's doubled slash must not leave empty path segments.
        rendered
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The key of a test delivery: `{prefix}/test/{YYYYMMDDTHHMMSSZ}_{run_id}{ext}`, apart from
/// every scheduled object whatever the layout.
pub fn test_key(prefix: &str, at: DateTime<Utc>, run_id: Uuid, extension: &str) -> String {
    let name = format!("{}_{run_id}{extension}", at.format("%Y%m%dT%H%M%SZ"));
    if prefix.is_empty() {
        format!("test/{name}")
    } else {
        format!("{prefix}/test/{name}")
    }
}

/// The key of a re-export's object: `{prefix}/reexport/{from}-{to}_{run_id}[_partNNNN]{ext}`,
/// apart from every scheduled object. `part` is set when the range is split into several.
pub fn reexport_key(
    prefix: &str,
    range: (DateTime<Utc>, DateTime<Utc>),
    run_id: Uuid,
    part: Option<u32>,
    extension: &str,
) -> String {
    let format = "%Y%m%dT%H%M%SZ";
    let part = part.map(|n| format!("_part{n:04}")).unwrap_or_default();
    let name = format!(
        "{}-{}_{run_id}{part}{extension}",
        range.0.format(format),
        range.1.format(format)
    );
    if prefix.is_empty() {
        format!("reexport/{name}")
    } else {
        format!("{prefix}/reexport/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn reexport_keys_name_the_range_and_the_part() {
        let p = parts("exports");
        let to = Utc.with_ymd_and_hms(2026, 3, 5, 0, 0, 0).unwrap();
        assert_eq!(
            reexport_key(p.prefix, (p.window_end, to), p.run_id, None, ".jsonl"),
            "exports/reexport/20260304T050607Z-20260305T000000Z_0190b9a4-1111-7222-8333-444455556666.jsonl"
        );
        assert!(
            reexport_key("", (p.window_end, to), p.run_id, Some(2), ".json")
                .starts_with("reexport/20260304T050607Z-")
        );
        assert!(
            reexport_key("", (p.window_end, to), p.run_id, Some(2), ".json")
                .ends_with("_part0002.json")
        );
    }

    #[test]
    fn test_keys_live_under_test() {
        let p = parts("exports");
        assert_eq!(
            test_key(p.prefix, p.window_end, p.run_id, ".jsonl"),
            "exports/test/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666.jsonl"
        );
        assert!(test_key("", p.window_end, p.run_id, ".json").starts_with("test/2026"));
    }

    fn parts(prefix: &str) -> KeyParts<'_> {
        KeyParts {
            prefix,
            destination: "acme",
            window_end: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
            run_id: Uuid::parse_str("0190b9a4-1111-7222-8333-444455556666").unwrap(),
            extension: ".jsonl.gz",
        }
    }

    #[test]
    fn hive_layout() {
        assert_eq!(
            KeyLayout::Hive.render(&parts("exports/eu")),
            "exports/eu/schema=audit_log/version=v1/year=2026/month=03/day=04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666.jsonl.gz"
        );
    }

    #[test]
    fn empty_prefix_leaves_no_leading_slash() {
        assert!(
            KeyLayout::Hive
                .render(&parts(""))
                .starts_with("schema=audit_log/")
        );
    }

    #[test]
    fn env0_layout_uses_log_type_and_five_chars_of_the_run() {
        let layout = KeyLayout::parse("env0", "deployment-logs").unwrap();
        assert_eq!(
            layout.render(&parts("p")),
            "p/deployment-logs/2026/03/04/05:06:07_56666.jsonl.gz"
        );
    }

    #[test]
    fn template_layout() {
        let layout = KeyLayout::parse(
            "{prefix}/{destination}/{YYYY}-{MM}-{DD}/{HH}{mm}{ss}-{run_id}{ext}",
            "audit",
        )
        .unwrap();
        assert_eq!(
            layout.render(&parts("")),
            "acme/2026-03-04/050607-0190b9a4-1111-7222-8333-444455556666.jsonl.gz"
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(
            KeyLayout::parse("{prefix}/{year}/{run_id}", "audit")
                .unwrap_err()
                .contains("unknown placeholder {year}")
        );
        assert!(
            KeyLayout::parse("{prefix}/{YYYY}{ext}", "audit")
                .unwrap_err()
                .contains("{run_id} or {rand5}")
        );
        assert!(KeyLayout::parse("{prefix/{run_id}", "audit").is_err());
        assert!(
            KeyLayout::parse("flat", "audit")
                .unwrap_err()
                .contains("hive | env0")
        );
    }
}
