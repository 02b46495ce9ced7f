//! `append`: one event (or a few copies) into the audit table.

use std::io::Write;

use chrono::{DateTime, Datelike, Utc};

use super::UsageError;
use crate::settings::Settings;
use crate::store::NewEvent;

/// What to append, as the command line gives it: JSON and times still as text.
#[derive(Debug, Clone)]
pub struct AppendArgs {
    pub action: String,
    pub actor: String,
    pub target: Option<String>,
    pub metadata: String,
    pub tenant: Option<String>,
    pub occurred_at: Option<String>,
    pub count: u32,
}

pub async fn append(
    settings: &Settings,
    args: &AppendArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let event = parse(args)?;
    let database = super::open(settings).await?;
    for _ in 0..args.count {
        let id = database.store.append(&event).await?;
        writeln!(out, "{id}")?;
    }
    database.close().await;
    Ok(())
}

fn parse(args: &AppendArgs) -> Result<NewEvent, UsageError> {
    if args.action.trim().is_empty() {
        return Err(UsageError(
            "--action: is empty; give what happened, e.g. user.login".into(),
        ));
    }
    let occurred_at = match &args.occurred_at {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| UsageError(format!("--occurred-at: {text:?} is not an RFC 3339 time ({e}); e.g. 2026-11-21T09:30:00Z")))?
            .with_timezone(&Utc),
    };
    if !(1..=9999).contains(&occurred_at.year()) {
        return Err(UsageError(format!(
            "--occurred-at: {occurred_at} is out of range; allowed: a time in the years 0001 to 9999 (UTC)"
        )));
    }
    Ok(NewEvent {
        event_id: None,
        occurred_at,
        tenant_id: args.tenant.clone(),
        action: args.action.clone(),
        actor: json_object("--actor", &args.actor)?,
        target: args
            .target
            .as_deref()
            .map(|t| json_object("--target", t))
            .transpose()?,
        metadata: json_object("--metadata", &args.metadata)?,
    })
}

fn json_object(flag: &str, text: &str) -> Result<serde_json::Value, UsageError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) if has_nul(&value) => Err(UsageError(format!(
            "{flag}: holds the character U+0000 (\\u0000), which PostgreSQL's jsonb cannot store; allowed: a JSON object without it"
        ))),
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(UsageError(format!(
            "{flag}: must be a JSON object, e.g. '{{\"type\":\"user\",\"id\":\"u1\"}}'"
        ))),
        Err(e) => Err(UsageError(format!(
            "{flag}: not valid JSON ({e}); allowed: a JSON object"
        ))),
    }
}

/// Whether a key or a string anywhere in `value` holds U+0000.
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AppendArgs {
        AppendArgs {
            action: "user.login".into(),
            actor: r#"{"type":"user","id":"u1"}"#.into(),
            target: None,
            metadata: "{}".into(),
            tenant: None,
            occurred_at: None,
            count: 1,
        }
    }

    #[test]
    fn names_the_bad_flag() {
        let mut bad = args();
        bad.actor = "[1]".into();
        assert!(
            parse(&bad)
                .unwrap_err()
                .0
                .starts_with("--actor: must be a JSON object")
        );
        let mut bad = args();
        bad.metadata = "{".into();
        assert!(
            parse(&bad)
                .unwrap_err()
                .0
                .starts_with("--metadata: not valid JSON")
        );
        let mut bad = args();
        bad.occurred_at = Some("yesterday".into());
        assert!(parse(&bad).unwrap_err().0.starts_with("--occurred-at:"));
        for out_of_range in ["0000-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00"] {
            bad.occurred_at = Some(out_of_range.into());
            let error = parse(&bad).unwrap_err().0;
            assert!(
                error.starts_with("--occurred-at:") && error.contains("years 0001 to 9999"),
                "{error}"
            );
        }
        bad.occurred_at = Some("0001-01-01T00:00:00Z".into());
        assert!(parse(&bad).is_ok());
        bad.occurred_at = Some("9999-12-31T23:59:59Z".into());
        assert!(parse(&bad).is_ok());
        assert!(parse(&args()).is_ok());
        // jsonb refuses U+0000: bad input, said before the database is asked.
        for (actor, metadata) in [
            (r#"{"id":"\u0000"}"#, "{}"),
            (r#"{"id":"u1"}"#, r#"{"a":[{"\u0000k":1}]}"#),
        ] {
            let mut bad = args();
            (bad.actor, bad.metadata) = (actor.into(), metadata.into());
            assert!(
                parse(&bad).unwrap_err().0.contains("U+0000"),
                "{actor} {metadata}"
            );
        }
    }
}
