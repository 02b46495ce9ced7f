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
            "env0" => {
                check_key_path(log_type).map_err(|e| format!("env0_log_type {e}"))?;
                Ok(Self::Env0 {
                    log_type: log_type.to_owned(),
                })
            }
            template if template.contains('{') => {
                check_template_path(template)?;
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

/// Longest key prefix, in bytes: S3 keys end at 1024, and a layout adds up to ~150.
pub const MAX_PREFIX_BYTES: usize = 512;

/// Checks text that becomes part of a key (a prefix, a log type): no `.` or `..` segment, which
/// would climb out of a directory destination or make keys nobody finds, and no control
/// character, which S3's XML listings cannot carry.
pub fn check_key_path(text: &str) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{text:?} holds the control character {c:?}; allowed: printable characters"
        ));
    }
    if text.len() > MAX_PREFIX_BYTES {
        return Err(format!(
            "is {} bytes long; allowed: at most {MAX_PREFIX_BYTES}",
            text.len()
        ));
    }
    if text.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "{text:?} has a `.` or `..` segment; allowed: plain path segments"
        ));
    }
    Ok(())
}

/// A template's fixed text: relative, and no segment that is `.` or `..` (an empty `{prefix}`
/// included).
fn check_template_path(template: &str) -> Result<(), String> {
    if template.starts_with('/') {
        return Err(format!(
            "key template {template:?} is absolute; allowed: a relative path such as \"{{prefix}}/{{YYYY}}/{{run_id}}{{ext}}\""
        ));
    }
    if template
        .split('/')
        .map(|s| s.replace("{prefix}", ""))
        .any(|s| s == "." || s == "..")
    {
        return Err(format!(
            "key template {template:?} has a `.` or `..` segment; allowed: plain path segments"
        ));
    }
    if let Some(c) = template.chars().find(|c| c.is_control()) {
        return Err(format!(
            "key template {template:?} holds the control character {c:?}"
        ));
    }
    Ok(())
}

/// The top folder of objects that are not scheduled exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideFolder {
    /// Test deliveries (`verify`).
    Test,
    /// Re-exports.
    Reexport,
}

impl SideFolder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Reexport => "reexport",
        }
    }
}

/// The key of a test delivery or a re-export's object: the layout's own key, under
/// `{prefix}/test/` or `{prefix}/reexport/`. A reader of the whole prefix then finds the same
/// path shape everywhere (hive partitions included), and these objects never sit among the
/// scheduled ones. `part` numbers the objects of a split re-export, `_partNNNN` before the
/// extension.
pub fn side_key(
    layout: &KeyLayout,
    folder: SideFolder,
    parts: &KeyParts<'_>,
    part: Option<u32>,
) -> String {
    let mut inner = layout.render(&KeyParts {
        prefix: "",
        ..*parts
    });
    if let Some(n) = part {
        inner = with_part(&inner, parts.extension, n);
    }
    [parts.prefix, folder.as_str(), &inner]
        .iter()
        .flat_map(|s| s.split('/'))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// `key` numbered as object `n` of a run: `_partNNNN` before the extension (at the end when the
/// key does not end with it, as a template may not).
pub fn with_part(key: &str, extension: &str, n: u32) -> String {
    let suffix = format!("_part{n:04}");
    match key.strip_suffix(extension) {
        Some(stem) if !extension.is_empty() => format!("{stem}{suffix}{extension}"),
        _ => format!("{key}{suffix}"),
    }
}

/// The key of object `n` of a run whose first object is at `first`: objects of a split run are
/// numbered `_part0001`, `_part0002`, …; a run planned unsplit has only the first.
pub fn part_key(first: &str, n: u32) -> String {
    match first.rfind("_part0001") {
        Some(at) => format!(
            "{}_part{n:04}{}",
            &first[..at],
            &first[at + "_part0001".len()..]
        ),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn templates_and_log_types_that_climb_out_are_refused() {
        for template in [
            "{prefix}/../../escaped/{run_id}{ext}",
            "../{run_id}{ext}",
            "{prefix}/./{run_id}{ext}",
            "{prefix}/a/..{prefix}/{run_id}{ext}",
            "/{prefix}/{run_id}{ext}",
            "/etc/{run_id}",
        ] {
            assert!(KeyLayout::parse(template, "audit").is_err(), "{template}");
        }
        for template in [
            "{prefix}/{YYYY}/..{run_id}{ext}",
            "{prefix}/.hidden/{run_id}{ext}",
            "{prefix}/a..b/{run_id}{ext}",
        ] {
            assert!(KeyLayout::parse(template, "audit").is_ok(), "{template}");
        }
        let error = KeyLayout::parse("env0", "../x").unwrap_err();
        assert!(error.starts_with("env0_log_type "), "{error}");
        assert!(KeyLayout::parse("env0", "audit/logs").is_ok());
    }

    #[test]
    fn key_paths_are_plain_segments() {
        for ok in ["", "exports", "audit logs/données", "a/b.c/..d"] {
            assert_eq!(check_key_path(ok), Ok(()), "{ok}");
        }
        for bad in ["..", "a/../b", "./a", "a/.", "a\nb", "a\u{7f}"] {
            assert!(check_key_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_key_path(&"a".repeat(MAX_PREFIX_BYTES + 1)).is_err());
    }

    #[test]
    fn test_and_reexport_keys_keep_the_layout_under_their_own_folder() {
        let p = parts("exports/eu");
        assert_eq!(
            side_key(&KeyLayout::Hive, SideFolder::Test, &p, None),
            "exports/eu/test/schema=audit_log/version=v1/year=2026/month=03/day=04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666.jsonl.gz"
        );
        assert_eq!(
            side_key(&KeyLayout::Hive, SideFolder::Reexport, &p, Some(2)),
            "exports/eu/reexport/schema=audit_log/version=v1/year=2026/month=03/day=04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666_part0002.jsonl.gz"
        );
        assert!(
            side_key(&KeyLayout::Hive, SideFolder::Reexport, &parts(""), None)
                .starts_with("reexport/schema=audit_log/version=v1/year=2026/")
        );
        let env0 = KeyLayout::parse("env0", "audit").unwrap();
        assert_eq!(
            side_key(&env0, SideFolder::Test, &parts("p"), None),
            "p/test/audit/2026/03/04/05:06:07_56666.jsonl.gz"
        );
        // A template whose {prefix} is not in front, or that has no {ext}: still under the
        // folder, and the parts of a split still differ.
        let template = KeyLayout::parse("{destination}/{prefix}/{run_id}", "audit").unwrap();
        assert_eq!(
            side_key(&template, SideFolder::Reexport, &parts("p"), Some(1)),
            "p/reexport/acme/0190b9a4-1111-7222-8333-444455556666_part0001"
        );
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

    #[test]
    fn part_keys_follow_the_first() {
        assert_eq!(
            part_key("p/reexport/x_0190_part0001.jsonl.gz", 12),
            "p/reexport/x_0190_part0012.jsonl.gz"
        );
        assert_eq!(part_key("p/test/x_0190.jsonl", 1), "p/test/x_0190.jsonl");
        assert_eq!(
            with_part("p/x_0190.jsonl.gz", ".jsonl.gz", 1),
            "p/x_0190_part0001.jsonl.gz"
        );
        assert_eq!(with_part("p/x_0190", ".jsonl", 3), "p/x_0190_part0003");
    }
}
