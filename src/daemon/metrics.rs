//! What `run` counts for `/metrics`, and what `/readyz` judges: per destination, the events,
//! bytes and runs exported, when it last succeeded and since when it has been failing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::export::{Outcome, Report};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabel {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabel {
    destination: String,
    outcome: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    // 0.1 s to about 27 minutes.
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    events: Family<DestinationLabel, Counter>,
    bytes: Family<DestinationLabel, Counter>,
    runs: Family<RunLabel, Counter>,
    last_success: Family<DestinationLabel, FloatGauge>,
    lag: Family<DestinationLabel, FloatGauge>,
    waiting: Family<DestinationLabel, Gauge>,
    duration: Family<DestinationLabel, Histogram, fn() -> Histogram>,
    failing_since: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("audit_exporter"),
            events: Family::default(),
            bytes: Family::default(),
            runs: Family::default(),
            last_success: Family::default(),
            lag: Family::default(),
            waiting: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            failing_since: Mutex::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "events_exported",
            "Audit events delivered by committed scheduled runs",
            metrics.events.clone(),
        );
        registry.register(
            "bytes_exported",
            "Bytes of objects delivered by committed scheduled runs",
            metrics.bytes.clone(),
        );
        registry.register(
            "runs",
            "Scheduled exports by outcome: exported, heartbeat, failed, busy (another exporter held the lease)",
            metrics.runs.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the destination's last export was committed, in Unix seconds",
            metrics.last_success.clone(),
        );
        registry.register(
            "lag_seconds",
            "Age of the oldest event the destination has not received yet (0 when none waits)",
            metrics.lag.clone(),
        );
        registry.register(
            "events_waiting",
            "Events the destination's next export will carry",
            metrics.waiting.clone(),
        );
        registry.register(
            "export_duration_seconds",
            "Wall time of committed scheduled exports",
            metrics.duration.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// Counts one scheduled export's outcome.
    pub fn record(
        &self,
        destination: &str,
        outcome: &anyhow::Result<Outcome>,
        took: Duration,
        now: DateTime<Utc>,
    ) {
        let label = DestinationLabel {
            destination: destination.to_owned(),
        };
        let outcome_label = match outcome {
            Ok(Outcome::Exported(report)) => {
                self.exported(&label, report, took, now);
                if report.run.heartbeat_event_id.is_some() {
                    "heartbeat"
                } else {
                    "exported"
                }
            }
            Ok(Outcome::Busy { .. }) => "busy",
            Ok(Outcome::NotDue { .. }) => return,
            Err(_) => {
                self.failing_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(destination.to_owned())
                    .or_insert(now);
                "failed"
            }
        };
        self.runs
            .get_or_create(&RunLabel {
                destination: destination.to_owned(),
                outcome: outcome_label,
            })
            .inc();
    }

    fn exported(
        &self,
        label: &DestinationLabel,
        report: &Report,
        took: Duration,
        now: DateTime<Utc>,
    ) {
        self.events.get_or_create(label).inc_by(report.events);
        self.bytes.get_or_create(label).inc_by(report.bytes);
        self.last_success
            .get_or_create(label)
            .set(now.timestamp_millis() as f64 / 1000.0);
        self.duration
            .get_or_create(label)
            .observe(took.as_secs_f64());
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&label.destination);
    }

    /// Sets what the database says a destination is waiting for.
    pub fn set_waiting(&self, destination: &str, events: i64, lag: Duration) {
        let label = DestinationLabel {
            destination: destination.to_owned(),
        };
        self.waiting.get_or_create(&label).set(events);
        self.lag.get_or_create(&label).set(lag.as_secs_f64());
    }

    /// The destinations failing for at least `limit`, with since when.
    pub fn failing_longer_than(
        &self,
        limit: Duration,
        now: DateTime<Utc>,
    ) -> Vec<(String, DateTime<Utc>)> {
        let failing = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        let mut long: Vec<_> = failing
            .iter()
            .filter(|(_, since)| (now - **since).to_std().is_ok_and(|d| d >= limit))
            .map(|(name, since)| (name.clone(), *since))
            .collect();
        long.sort();
        long
    }

    /// Forgets a destination that is no longer configured.
    pub fn forget(&self, destination: &str) {
        let label = DestinationLabel {
            destination: destination.to_owned(),
        };
        self.lag.remove(&label);
        self.waiting.remove(&label);
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(destination);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_make_a_destination_unready_until_it_succeeds() {
        let metrics = Metrics::default();
        let start = Utc::now();
        metrics.record("acme", &Err(anyhow::anyhow!("down")), Duration::ZERO, start);
        let later = start + chrono::Duration::seconds(30);
        metrics.record("acme", &Err(anyhow::anyhow!("down")), Duration::ZERO, later);
        let limit = Duration::from_secs(20);
        assert_eq!(
            metrics.failing_longer_than(limit, later),
            [("acme".to_owned(), start)]
        );
        assert!(
            metrics
                .failing_longer_than(Duration::from_secs(60), later)
                .is_empty()
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"audit_exporter_runs_total{destination="acme",outcome="failed"} 2"#),
            "{text}"
        );
        metrics.forget("acme");
        assert!(metrics.failing_longer_than(limit, later).is_empty());
    }
}
