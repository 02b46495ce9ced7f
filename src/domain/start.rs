//! Where a destination's stream starts: `start = "beginning" | "now" | TIME`.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Every event in the table (the watermark at transaction id 0).
    #[default]
    Beginning,
    /// Only events written from now on (the watermark at the current horizon).
    Now,
    /// Every event recorded at or after this time; a few recorded just before may come too.
    Time(DateTime<Utc>),
}

impl Start {
    pub const ALLOWED: &'static str =
        "beginning | now | an RFC 3339 time such as 2026-11-20T00:00:00Z";
    const ALLOWED_PAST: &'static str = "beginning | now | an RFC 3339 time not after now";

    /// Parses a start as of the current time (a future time is refused).
    pub fn parse(value: &str) -> Result<Self, String> {
        Self::parse_at(value, Utc::now())
    }

    /// Parses a start as of `now`: a time after `now` is refused, since no event recorded
    /// later than the stream's start could be told apart from one recorded at it.
    pub fn parse_at(value: &str, now: DateTime<Utc>) -> Result<Self, String> {
        match value {
            "beginning" => Ok(Self::Beginning),
            "now" => Ok(Self::Now),
            time => {
                let time = DateTime::parse_from_rfc3339(time)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        format!("{value:?} is not allowed ({e}); allowed: {}", Self::ALLOWED)
                    })?;
                if time > now {
                    return Err(format!(
                        "{value:?} is in the future; a stream cannot start later than now (use \"now\", or add the destination when its time has come); allowed: {}",
                        Self::ALLOWED_PAST
                    ));
                }
                Ok(Self::Time(time))
            }
        }
    }
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Beginning => f.write_str("beginning"),
            Self::Now => f.write_str("now"),
            Self::Time(t) => f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_names_what_is_allowed() {
        assert_eq!(Start::parse("beginning"), Ok(Start::Beginning));
        assert_eq!(Start::parse("now"), Ok(Start::Now));
        let time = Start::parse("2026-11-20T01:00:00+01:00").unwrap();
        assert_eq!(time.to_string(), "2026-11-20T00:00:00Z");
        for bad in ["", "Now", "yesterday", "2026-11-20"] {
            let error = Start::parse(bad).unwrap_err();
            assert!(
                error.contains("allowed: beginning | now | an RFC 3339 time"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_future_time_is_refused() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(matches!(
            Start::parse_at("2026-11-29T12:00:00Z", now),
            Ok(Start::Time(_))
        ));
        let error = Start::parse_at("2026-11-29T12:00:01Z", now).unwrap_err();
        assert!(error.contains("is in the future"), "{error}");
        assert!(Start::parse("2999-01-01T00:00:00Z").is_err());
    }
}
