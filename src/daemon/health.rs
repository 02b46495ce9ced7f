//! What `/readyz` judges: whether this process can do its work now. It is not ready while it
//! waits for the database at start, when the database does not answer now, or when a
//! destination has been failing for longer than `run.unready_after_failing_secs`. A failing
//! mark is cleared as soon as the problem is gone: this process exports the destination, the
//! database shows it has nothing left to do (another replica exported it, or the failure was
//! the database's and it is back), or the destination leaves the configuration.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct Health {
    /// Since when each destination has been failing.
    failing: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Why the database could not be used at start; `None` once it could.
    waiting_for_database: Mutex<Option<String>>,
}

impl Health {
    /// At start, before the database answered.
    pub fn starting() -> Self {
        Self {
            waiting_for_database: Mutex::new(Some("not tried yet".into())),
            ..Self::default()
        }
    }

    pub fn waiting(&self, reason: Option<String>) {
        *self
            .waiting_for_database
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// Why the process is still waiting for the database at start, if it is.
    pub fn waiting_for_database(&self) -> Option<String> {
        self.waiting_for_database
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A failed export: the destination is failing from now, unless it already was.
    pub fn failed(&self, destination: &str, now: DateTime<Utc>) {
        self.marks().entry(destination.to_owned()).or_insert(now);
    }

    /// The problem is gone: exported, nothing left to do, or no longer configured.
    pub fn cleared(&self, destination: &str) {
        self.marks().remove(destination);
    }

    /// The destinations failing for at least `limit`, with since when, by name.
    pub fn failing_longer_than(
        &self,
        limit: Duration,
        now: DateTime<Utc>,
    ) -> Vec<(String, DateTime<Utc>)> {
        let mut long: Vec<_> = self
            .marks()
            .iter()
            .filter(|(_, since)| (now - **since).to_std().is_ok_and(|d| d >= limit))
            .map(|(name, since)| (name.clone(), *since))
            .collect();
        long.sort();
        long
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The answer of `/readyz`: `None` when ready, else one line per reason.
pub fn unready_reasons(
    waiting_for_database: Option<&str>,
    database_error: Option<&str>,
    failing: &[(String, DateTime<Utc>)],
) -> Option<String> {
    if let Some(reason) = waiting_for_database {
        return Some(format!(
            "not ready: waiting for the database at start: {reason}\n"
        ));
    }
    if let Some(error) = database_error {
        return Some(format!(
            "not ready: the database does not answer: {error}\n"
        ));
    }
    if failing.is_empty() {
        return None;
    }
    Some(
        failing
            .iter()
            .map(|(name, since)| {
                format!("not ready: {name} failing since {}\n", since.to_rfc3339())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_mark_counts_after_the_limit_and_goes_when_cleared() {
        let health = Health::default();
        let start = Utc::now();
        health.failed("acme", start);
        let later = start + chrono::Duration::seconds(30);
        health.failed("acme", later);
        let limit = Duration::from_secs(20);
        assert_eq!(
            health.failing_longer_than(limit, later),
            [("acme".to_owned(), start)],
            "failing since the first failure"
        );
        assert!(
            health
                .failing_longer_than(Duration::from_secs(60), later)
                .is_empty()
        );
        health.cleared("acme");
        assert!(health.failing_longer_than(limit, later).is_empty());
    }

    #[test]
    fn readiness_says_why_it_is_not_ready() {
        let since = "2026-11-29T10:00:00Z".parse().unwrap();
        assert_eq!(unready_reasons(None, None, &[]), None);
        assert_eq!(
            unready_reasons(Some("connection refused"), None, &[]).unwrap(),
            "not ready: waiting for the database at start: connection refused\n"
        );
        assert_eq!(
            unready_reasons(None, Some("no answer within 1 s"), &[]).unwrap(),
            "not ready: the database does not answer: no answer within 1 s\n"
        );
        assert_eq!(
            unready_reasons(None, None, &[("acme".into(), since)]).unwrap(),
            "not ready: acme failing since 2026-11-29T10:00:00+00:00\n"
        );
        assert!(Health::starting().waiting_for_database().is_some());
    }
}
