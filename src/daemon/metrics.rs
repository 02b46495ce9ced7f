//! What `run` serves on `/metrics`. Counters exist at zero for every configured destination
//! from the start. Gauges read from the database are refreshed in the background
//! (`run.metrics_refresh_secs`) and served with their age, so a scrape never waits on the
//! database; due times and how long a destination is overdue are computed at the scrape from
//! the schedule last read.

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

use crate::domain::Schedule;
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

/// The outcomes `audit_exporter_runs_total` counts.
const OUTCOMES: [&str; 4] = ["exported", "heartbeat", "failed", "busy"];

type FloatGauge = Gauge<f64, AtomicU64>;
type PerDestination<M> = Family<DestinationLabel, M>;

fn duration_histogram() -> Histogram {
    // 0.1 s to about 27 minutes.
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
}

/// A destination's schedule as last read from the database, and the due time last served.
#[derive(Debug, Clone, Copy)]
struct Served {
    schedule: Schedule,
    last_slot: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Families {
    events: PerDestination<Counter>,
    bytes: PerDestination<Counter>,
    runs: Family<RunLabel, Counter>,
    last_success: PerDestination<FloatGauge>,
    lag: PerDestination<FloatGauge>,
    waiting: PerDestination<Gauge>,
    every_hours: PerDestination<Gauge>,
    next_due: PerDestination<FloatGauge>,
    overdue: PerDestination<FloatGauge>,
    failures_in_a_row: PerDestination<Gauge>,
    retry_at: PerDestination<FloatGauge>,
    database_up: Gauge,
    read_age: FloatGauge,
}

pub struct Metrics {
    registry: Registry,
    f: Families,
    duration: Family<DestinationLabel, Histogram, fn() -> Histogram>,
    served: Mutex<HashMap<String, Served>>,
    /// When the database was last read successfully.
    read_at: Mutex<Option<DateTime<Utc>>>,
    started_at: DateTime<Utc>,
}

impl Default for Metrics {
    fn default() -> Self {
        let f = Families::default();
        let duration: Family<DestinationLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let mut registry = Registry::with_prefix("audit_exporter");
        let r = &mut registry;
        r.register(
            "events_exported",
            "Audit events delivered by committed scheduled runs",
            f.events.clone(),
        );
        r.register(
            "bytes_exported",
            "Bytes of objects delivered by committed scheduled runs",
            f.bytes.clone(),
        );
        r.register(
            "runs",
            "Scheduled exports by outcome: exported, heartbeat, failed, busy (another exporter held the lease)",
            f.runs.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When this process last committed an export of the destination, in Unix seconds",
            f.last_success.clone(),
        );
        r.register(
            "export_duration_seconds",
            "Wall time of committed scheduled exports",
            duration.clone(),
        );
        r.register(
            "every_hours",
            "The destination's configured hours between exports",
            f.every_hours.clone(),
        );
        r.register(
            "next_due_timestamp_seconds",
            "The destination's next due time, in Unix seconds (from the schedule last read)",
            f.next_due.clone(),
        );
        r.register(
            "overdue_seconds",
            "How long ago the destination's latest due time passed without a committed export (0 when it is served)",
            f.overdue.clone(),
        );
        r.register("lag_seconds", "Age of the oldest event the destination has not received yet (0 when none waits), as last read", f.lag.clone());
        r.register(
            "events_waiting",
            "Events the destination's next export will carry, as last read",
            f.waiting.clone(),
        );
        r.register(
            "failures_in_a_row",
            "The destination's failed exports since its last success",
            f.failures_in_a_row.clone(),
        );
        r.register(
            "retry_at_timestamp_seconds",
            "When this process tries a failing destination again after backing off, in Unix seconds (0 when not backing off)",
            f.retry_at.clone(),
        );
        r.register(
            "database_up",
            "1 when the last background read of the database succeeded, else 0",
            f.database_up.clone(),
        );
        r.register(
            "database_read_age_seconds",
            "Age of the values read from the database (lag, waiting events, due times)",
            f.read_age.clone(),
        );
        Self {
            registry,
            f,
            duration,
            served: Mutex::default(),
            read_at: Mutex::default(),
            started_at: Utc::now(),
        }
    }
}

fn label(destination: &str) -> DestinationLabel {
    DestinationLabel {
        destination: destination.to_owned(),
    }
}

impl Metrics {
    /// Makes every series of a configured destination exist, counters at zero.
    pub fn declare(&self, destination: &str, every_hours: u8) {
        let l = label(destination);
        let _ = self.f.events.get_or_create(&l);
        let _ = self.f.bytes.get_or_create(&l);
        for outcome in OUTCOMES {
            let _ = self.f.runs.get_or_create(&RunLabel {
                destination: destination.to_owned(),
                outcome,
            });
        }
        let _ = self.duration.get_or_create(&l);
        let _ = self.f.last_success.get_or_create(&l);
        let _ = self.f.lag.get_or_create(&l);
        let _ = self.f.waiting.get_or_create(&l);
        let _ = self.f.next_due.get_or_create(&l);
        let _ = self.f.overdue.get_or_create(&l);
        let _ = self.f.failures_in_a_row.get_or_create(&l);
        let _ = self.f.retry_at.get_or_create(&l);
        self.f
            .every_hours
            .get_or_create(&l)
            .set(i64::from(every_hours));
    }

    /// Counts one scheduled export's outcome.
    pub fn record(
        &self,
        destination: &str,
        outcome: &anyhow::Result<Outcome>,
        took: Duration,
        now: DateTime<Utc>,
    ) {
        let outcome = match outcome {
            Ok(Outcome::Exported(report)) => {
                self.exported(destination, report, took, now);
                if report.run.heartbeat_event_id.is_some() {
                    "heartbeat"
                } else {
                    "exported"
                }
            }
            Ok(Outcome::Busy { .. }) => "busy",
            Ok(Outcome::NotDue { .. }) => return,
            Err(_) => "failed",
        };
        self.f
            .runs
            .get_or_create(&RunLabel {
                destination: destination.to_owned(),
                outcome,
            })
            .inc();
    }

    fn exported(&self, destination: &str, report: &Report, took: Duration, now: DateTime<Utc>) {
        let l = label(destination);
        self.f.events.get_or_create(&l).inc_by(report.events);
        self.f.bytes.get_or_create(&l).inc_by(report.bytes);
        self.f.last_success.get_or_create(&l).set(seconds(now));
        self.duration.get_or_create(&l).observe(took.as_secs_f64());
        // The due time it served counts at once, not only at the next read.
        if let Some(served) = self.served().get_mut(destination) {
            served.last_slot = served.last_slot.max(report.run.slot);
        }
    }

    /// Failures in a row and when the next attempt may start.
    pub fn set_backoff(&self, destination: &str, failures: u32, retry_at: Option<DateTime<Utc>>) {
        let l = label(destination);
        self.f
            .failures_in_a_row
            .get_or_create(&l)
            .set(i64::from(failures));
        self.f
            .retry_at
            .get_or_create(&l)
            .set(retry_at.map_or(0.0, seconds));
    }

    /// What a background read of the database says about a destination.
    pub fn set_read(
        &self,
        destination: &str,
        waiting: i64,
        lag: Duration,
        schedule: Schedule,
        last_slot: Option<DateTime<Utc>>,
    ) {
        let l = label(destination);
        self.f.waiting.get_or_create(&l).set(waiting);
        self.f.lag.get_or_create(&l).set(lag.as_secs_f64());
        self.served().insert(
            destination.to_owned(),
            Served {
                schedule,
                last_slot,
            },
        );
    }

    /// The outcome of a background read of the database.
    pub fn set_database_read(&self, ok: bool, now: DateTime<Utc>) {
        self.f.database_up.set(i64::from(ok));
        if ok {
            *self.read_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
    }

    /// Forgets the gauges of a destination that is no longer configured; its counters stay.
    pub fn forget(&self, destination: &str) {
        let l = label(destination);
        for family in [
            &self.f.lag,
            &self.f.next_due,
            &self.f.overdue,
            &self.f.retry_at,
        ] {
            family.remove(&l);
        }
        for family in [
            &self.f.waiting,
            &self.f.every_hours,
            &self.f.failures_in_a_row,
        ] {
            family.remove(&l);
        }
        self.served().remove(destination);
    }

    /// The Prometheus text exposition at `now`.
    pub fn encode(&self, now: DateTime<Utc>) -> String {
        for (name, served) in self.served().iter() {
            let (next_due, overdue) = due_gauges(served.schedule, served.last_slot, now);
            let l = label(name);
            self.f.next_due.get_or_create(&l).set(seconds(next_due));
            self.f.overdue.get_or_create(&l).set(overdue.as_secs_f64());
        }
        // Never read yet: the values are as old as the process.
        let read_at = self
            .read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(self.started_at);
        let age = (now - read_at).to_std().unwrap_or_default().as_secs_f64();
        self.f.read_age.set(age);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn served(&self) -> std::sync::MutexGuard<'_, HashMap<String, Served>> {
        self.served.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The next due time, and how long the latest due time has gone unserved at `now`.
fn due_gauges(
    schedule: Schedule,
    last_slot: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Duration) {
    let overdue = schedule
        .due(now, last_slot)
        .and_then(|slot| (now - slot).to_std().ok())
        .unwrap_or_default();
    (schedule.next_due(now), overdue)
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests;
