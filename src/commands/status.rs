//! `status`: per destination, what has been exported, what waits, and what holds it back.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::settings::{Settings, Target};
use crate::store::{Horizon, Run, RunKind, Store};

#[derive(Debug, Serialize)]
pub struct DestinationStatus {
    pub name: String,
    pub url: String,
    pub tenant_id: Option<String>,
    pub every_hours: u8,
    /// False until the destination's first export or `run` check records it.
    pub registered: bool,
    pub watermark: Option<i64>,
    pub next_due: Option<DateTime<Utc>>,
    pub last_served: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub waiting_events: i64,
    pub oldest_waiting_recorded_at: Option<DateTime<Utc>>,
    pub oldest_waiting_age_secs: Option<i64>,
    pub recent_runs: Vec<RunStatusView>,
}

#[derive(Debug, Serialize)]
pub struct RunStatusView {
    pub id: uuid::Uuid,
    pub kind: &'static str,
    pub status: &'static str,
    pub object_key: String,
    pub window_end: DateTime<Utc>,
    pub heartbeat: bool,
    pub events: Option<i64>,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub attempts: i32,
    pub duration_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub destinations: Vec<DestinationStatus>,
    pub horizon: Horizon,
}

const RECENT_RUNS: i64 = 5;

pub async fn status(settings: &Settings, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let database = super::open(settings).await?;
    let status = collect(&database.store, settings).await?;
    database.close().await;
    if json {
        serde_json::to_writer_pretty(&mut *out, &status)?;
        writeln!(out)?;
    } else {
        write_text(&status, out)?;
    }
    Ok(())
}

pub async fn collect(store: &Store, settings: &Settings) -> anyhow::Result<Status> {
    let now = Utc::now();
    let mut destinations = Vec::new();
    for destination in &settings.destinations {
        let state = store.destination_state(&destination.name).await?;
        let watermark = state.as_ref().map_or(0, |s| s.watermark);
        let (waiting, oldest) = store
            .waiting_events(watermark, destination.tenant_id.as_deref())
            .await?;
        let runs = store.recent_runs(&destination.name, RECENT_RUNS).await?;
        destinations.push(DestinationStatus {
            name: destination.name.clone(),
            url: match &destination.target {
                Target::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix)
                    .trim_end_matches('/')
                    .to_owned(),
                Target::File(path) => format!("file://{}", path.display()),
            },
            tenant_id: destination.tenant_id.clone(),
            every_hours: destination.every_hours,
            registered: state.is_some(),
            watermark: state.as_ref().map(|s| s.watermark),
            next_due: state.as_ref().map(|s| {
                let due = s.schedule.due(now, s.last_slot);
                due.unwrap_or_else(|| s.schedule.next_due(now))
            }),
            last_served: state.as_ref().and_then(|s| s.last_slot),
            lease_owner: state.as_ref().and_then(|s| s.lease_owner.clone()),
            lease_expires_at: state.as_ref().and_then(|s| s.lease_expires_at),
            waiting_events: waiting,
            oldest_waiting_recorded_at: oldest,
            oldest_waiting_age_secs: oldest.map(|at| (now - at).num_seconds()),
            recent_runs: runs.iter().map(view).collect(),
        });
    }
    Ok(Status {
        destinations,
        horizon: store.horizon().await?,
    })
}

fn view(run: &Run) -> RunStatusView {
    RunStatusView {
        id: run.id,
        kind: run.kind.as_str(),
        status: run.status.as_str(),
        object_key: run.object_key.clone(),
        window_end: run.window_end,
        heartbeat: run.heartbeat_event_id.is_some() && run.kind == RunKind::Scheduled,
        events: run.event_count,
        bytes: run.bytes,
        sha256: run.sha256.clone(),
        attempts: run.attempts,
        duration_ms: run
            .started_at
            .zip(run.finished_at)
            .map(|(s, f)| (f - s).num_milliseconds()),
        last_error: run.last_error.clone(),
    }
}

fn write_text(status: &Status, out: &mut dyn Write) -> std::io::Result<()> {
    for d in &status.destinations {
        writeln!(
            out,
            "{} -> {}{}",
            d.name,
            d.url,
            d.tenant_id
                .as_ref()
                .map(|t| format!(" (tenant {t})"))
                .unwrap_or_default()
        )?;
        if !d.registered {
            writeln!(out, "  not exported yet; every {} h", d.every_hours)?;
        }
        if let Some(watermark) = d.watermark {
            writeln!(
                out,
                "  watermark: txid {watermark}; every {} h",
                d.every_hours
            )?;
        }
        if let Some(next) = d.next_due {
            writeln!(out, "  next due: {}", next.to_rfc3339())?;
        }
        let age = d
            .oldest_waiting_age_secs
            .map(|s| format!(", oldest recorded {s} s ago"))
            .unwrap_or_default();
        writeln!(out, "  waiting: {} events{age}", d.waiting_events)?;
        if let (Some(owner), Some(until)) = (&d.lease_owner, d.lease_expires_at) {
            writeln!(out, "  lease: {owner} until {}", until.to_rfc3339())?;
        }
        for run in &d.recent_runs {
            let what = if run.kind == "test" {
                "test object".to_owned()
            } else if run.heartbeat {
                "heartbeat".to_owned()
            } else {
                format!("{} events", run.events.unwrap_or(0))
            };
            let error = run
                .last_error
                .as_ref()
                .map(|e| format!(" — last error: {e}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {} {} {} {what}, {} bytes, {}{error}",
                run.window_end.format("%Y-%m-%d %H:%M:%S"),
                run.kind,
                run.status,
                run.bytes.unwrap_or(0),
                run.object_key
            )?;
        }
    }
    match &status.horizon.oldest_transaction {
        Some(t) => writeln!(
            out,
            "horizon held by: pid {} in {} since {} ({} s, {})",
            t.pid,
            t.database.as_deref().unwrap_or("?"),
            t.started_at.map(|s| s.to_rfc3339()).unwrap_or_default(),
            t.age_secs.unwrap_or_default(),
            t.state.as_deref().unwrap_or("?")
        )?,
        None => writeln!(out, "horizon: no open transaction holds it back")?,
    }
    if let Some(p) = &status.horizon.oldest_prepared {
        writeln!(
            out,
            "prepared transaction {:?} in {} since {} ({} s) holds the horizon back",
            p.gid,
            p.database,
            p.prepared_at.to_rfc3339(),
            p.age_secs
        )?;
    }
    Ok(())
}
