//! Object key layouts. A key derives only from the persisted run, so a retry writes the same key.

use chrono::{DateTime, NaiveDate, Utc};
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
    /// `{prefix}/region={region}/accountId={account_id}/eventDay={YYYYMMDD}/{YYYYMMDDTHHMMSSZ}_{run_id}{ext}`,
    /// the layout Amazon Security Lake reads a custom source's objects from; always by event day.
    SecurityLake { account_id: String, region: String },
}

/// Which time a key's day follows: the window's end, or the day (UTC) of the events the
/// object holds, so a backfill lands in the days it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionTime {
    #[default]
    Window,
    Event,
}

impl PartitionTime {
    pub const ALLOWED: &str = "window | event";

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "window" => Some(Self::Window),
            "event" => Some(Self::Event),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::Event => "event",
        }
    }
}

/// The day fields of a key planned by event day, as the run's key holds them until an object's
/// day is known: [`day_key`] fills them in.
const DAY_FIELDS: [&str; 3] = ["{YYYY}", "{MM}", "{DD}"];

/// What a key is made of, all of it stored with the run.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub prefix: &'a str,
    pub destination: &'a str,
    pub window_end: DateTime<Utc>,
    pub run_id: Uuid,
    pub extension: &'a str,
    /// The day fields stay `{YYYY}`, `{MM}`, `{DD}`, to be filled per object by [`day_key`].
    pub by_day: bool,
}

impl KeyLayout {
    /// Parses `hive`, `env0` or a template. A template must name `{run_id}` or `{rand5}` so that
    /// two runs never share a key, and may use only the known placeholders.
    pub fn parse(value: &str, log_type: &str) -> Result<Self, String> {
        match value {
            "hive" => Ok(Self::Hive),
            "security-lake" => Err(
                "security-lake is set up with the destination's account_id and region (see README, \"Amazon Security Lake\")".into(),
            ),
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
                "{other:?} is not a key layout; allowed: hive | env0 | security-lake | a template such as \"{{prefix}}/{{YYYY}}/{{MM}}/{{run_id}}{{ext}}\""
            )),
        }
    }

    /// The text a user writes for this layout.
    pub fn as_config(&self) -> &str {
        match self {
            Self::Hive => "hive",
            Self::Env0 { .. } => "env0",
            Self::Template(template) => template,
            Self::SecurityLake { .. } => "security-lake",
        }
    }

    /// Amazon Security Lake's layout for `account_id` (12 digits) in `region`.
    pub fn security_lake(account_id: &str, region: &str) -> Result<Self, String> {
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "account_id {account_id:?} is not an AWS account id; allowed: 12 digits"
            ));
        }
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "region {region:?} is not an AWS region; allowed: lowercase letters, digits and '-', such as \"eu-west-1\""
            ));
        }
        Ok(Self::SecurityLake {
            account_id: account_id.to_owned(),
            region: region.to_owned(),
        })
    }

    /// The key. Its day fields (the layout's date folders; in a template, `{YYYY}`, `{MM}` and
    /// `{DD}`) name the window's end, or stay to be filled per object when `parts.by_day`; the
    /// other time fields always name the window's end.
    pub fn render(&self, parts: &KeyParts<'_>) -> String {
        // `d…` are the day fields; `{prefix}` goes in last, so its text is never read as a field.
        let template = match self {
            Self::Hive => {
                "{prefix}/schema=audit_log/version=v1/year={dYYYY}/month={dMM}/day={dDD}/{YYYY}{MM}{DD}T{HH}{mm}{ss}Z_{run_id}{ext}".to_owned()
            }
            Self::Env0 { .. } => {
                "{prefix}/{log_type}/{dYYYY}/{dMM}/{dDD}/{HH}:{mm}:{ss}_{rand5}{ext}".to_owned()
            }
            Self::Template(template) => template
                .replace("{YYYY}", "{dYYYY}")
                .replace("{MM}", "{dMM}")
                .replace("{DD}", "{dDD}"),
            Self::SecurityLake { .. } => {
                "{prefix}/region={region}/accountId={account_id}/eventDay={dYYYY}{dMM}{dDD}/{YYYY}{MM}{DD}T{HH}{mm}{ss}Z_{run_id}{ext}".to_owned()
            }
        };
        let (log_type, region, account_id) = match self {
            Self::Env0 { log_type } => (log_type.as_str(), "", ""),
            Self::SecurityLake { account_id, region } => {
                ("audit", region.as_str(), account_id.as_str())
            }
            _ => ("audit", "", ""),
        };
        let at = parts.window_end;
        let year = at.format("%Y").to_string();
        let month = at.format("%m").to_string();
        let day = at.format("%d").to_string();
        let day_fields: [&str; 3] = if parts.by_day {
            DAY_FIELDS
        } else {
            [&year, &month, &day]
        };
        let run_id = parts.run_id.simple().to_string();
        let rendered = template
            .replace("{destination}", parts.destination)
            .replace("{log_type}", log_type)
            .replace("{region}", region)
            .replace("{account_id}", account_id)
            .replace("{YYYY}", &year)
            .replace("{MM}", &month)
            .replace("{DD}", &day)
            .replace("{HH}", &at.format("%H").to_string())
            .replace("{mm}", &at.format("%M").to_string())
            .replace("{ss}", &at.format("%S").to_string())
            .replace("{rand5}", &run_id[run_id.len() - 5..])
            .replace("{run_id}", &parts.run_id.to_string())
            .replace("{ext}", parts.extension)
            .replace("{dYYYY}", day_fields[0])
            .replace("{dMM}", day_fields[1])
            .replace("{dDD}", day_fields[2])
            .replace("{prefix}", parts.prefix);
        // An empty prefix or a template's doubled slash must not leave empty path segments.
        rendered
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The key planned by event day (`KeyParts::by_day`) for the objects of `day`.
pub fn day_key(planned: &str, day: NaiveDate) -> String {
    let [year, month, dd] = DAY_FIELDS;
    planned
        .replace(year, &day.format("%Y").to_string())
        .replace(month, &day.format("%m").to_string())
        .replace(dd, &day.format("%d").to_string())
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
mod tests;
