//! `status`: per destination, what has been exported, what waits, and what holds it back.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::warnings;
use futures::{StreamExt, TryStreamExt};

use crate::settings::{Destination, Settings};
use crate::store::{Database, HeldBack, Horizon, PruneRecord, Run, RunKind, RunObject, Store};

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
    /// The latest scheduled runs, newest first.
    pub recent_runs: Vec<RunStatusView>,
    /// The latest test deliveries (`verify`) and re-exports, newest first.
    pub recent_test_and_reexport_runs: Vec<RunStatusView>,
    /// Why its exports are refused (the message an export gives), if they are.
    pub refused: Option<String>,
    /// What makes the destination suspicious: a tenant with no event ever, a shared location.
    pub warnings: Vec<String>,
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
    /// The objects it delivered so far, in order (several when max_object_bytes cut it).
    pub objects: Vec<RunObject>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub destinations: Vec<DestinationStatus>,
    pub horizon: Horizon,
    pub retention: RetentionStatus,
}

/// Pruning: the daily cutoff, the last prune, and which destination holds how much back.
#[derive(Debug, Serialize)]
pub struct RetentionStatus {
    pub keep_days: Option<u32>,
    /// `now - keep_days`, or else the last prune's cutoff: what `held_back` is counted against.
    pub cutoff: Option<DateTime<Utc>>,
    pub last_prune: Option<PruneRecord>,
    /// Events recorded before the cutoff that each destination holds back (an event may be
    /// held by several).
    pub held_back: Vec<HeldBack>,
}

const RECENT_RUNS: i64 = 5;

/// Reads only: its sessions are read-only and it never migrates. A database that lacks this
/// version's migrations is reported, with how to apply them.
pub async fn status(settings: &Settings, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let database = Database::connect_read_only(&settings.database).await?;
    let result = collect_migrated(&database.store, settings)
        .await
        .map_err(|e| database.store.explain(e));
    database.close().await;
    let status = result?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &status)?;
        writeln!(out)?;
    } else {
        super::status_text::write_text(&status, out)?;
    }
    Ok(())
}

async fn collect_migrated(store: &Store, settings: &Settings) -> anyhow::Result<Status> {
    let missing = store.unapplied_migrations().await?;
    if !missing.is_empty() {
        anyhow::bail!("{}", not_migrated(&missing));
    }
    collect(store, settings).await
}

/// Says that (and how far) the database is behind this version's schema, and how to migrate.
pub fn not_migrated(missing: &[String]) -> String {
    let how = "run `audit-exporter migrate`, or any of run, export, reexport, verify or append \
               with database.migrate_on_start = true";
    if missing.len() == crate::store::migration_count() {
        format!("the database has never been migrated: {how}")
    } else {
        format!(
            "the database lacks {} of this version's migrations ({}): {how}",
            missing.len(),
            missing.join(", ")
        )
    }
}

pub async fn collect(store: &Store, settings: &Settings) -> anyhow::Result<Status> {
    let now = Utc::now();
    let mut warnings = warnings::shared_locations(settings);
    warnings.extend(warnings::tenants_without_events(store, settings).await?);
    warnings.extend(warnings::unsigned_chains(store, settings).await?);
    let cluster = store.cluster_id().await?;
    // Each destination's reads are independent: hundreds of destinations are read a pool's
    // worth at a time, in the configured order.
    let mut destinations: Vec<DestinationStatus> = futures::stream::iter(&settings.destinations)
        .map(|destination| collect_one(store, destination, cluster.as_deref(), &warnings, now))
        .buffered(store.max_connections() as usize)
        .try_collect()
        .await?;
    attach_objects(store, &mut destinations).await?;
    Ok(Status {
        destinations,
        horizon: store.horizon().await?,
        retention: retention(store, settings, now).await?,
    })
}

async fn retention(
    store: &Store,
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<RetentionStatus> {
    let keep_days = settings.retention.keep_days;
    let last_prune = store.recent_prunes(1).await?.into_iter().next();
    let cutoff = keep_days
        .map(|days| now - chrono::Duration::days(days.into()))
        .or(last_prune.as_ref().map(|p| p.cutoff));
    let held_back = match cutoff {
        Some(cutoff) => {
            let holds = super::config_holds(store, &settings.destinations).await?;
            let configured: Vec<&str> = settings
                .destinations
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            store.held_back(cutoff, &configured, &holds).await?
        }
        None => Vec::new(),
    };
    Ok(RetentionStatus {
        keep_days,
        cutoff,
        last_prune,
        held_back,
    })
}

/// One destination's status.
async fn collect_one(
    store: &Store,
    destination: &Destination,
    cluster: Option<&str>,
    warnings: &[warnings::Warning],
    now: DateTime<Utc>,
) -> anyhow::Result<DestinationStatus> {
    let refused = store
        .stream_refusal(&destination.name, destination.tenant_id.as_deref(), cluster)
        .await?
        .map(|refusal| refusal.to_string());
    let state = store.destination_state(&destination.name).await?;
    let watermark = state.as_ref().map_or(0, |s| s.watermark);
    let (waiting, oldest) = store
        .waiting_events(watermark, destination.tenant_id.as_deref())
        .await?;
    let name = &destination.name;
    let scheduled = store
        .recent_runs(name, &[RunKind::Scheduled], RECENT_RUNS)
        .await?;
    let others = store
        .recent_runs(name, &[RunKind::Test, RunKind::Reexport], RECENT_RUNS)
        .await?;
    Ok(DestinationStatus {
        name: destination.name.clone(),
        url: destination.target.location(),
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
        recent_runs: scheduled.iter().map(view).collect(),
        recent_test_and_reexport_runs: others.iter().map(view).collect(),
        refused,
        warnings: warnings::of(warnings, name),
    })
}

/// Every listed run's objects, in one query.
async fn attach_objects(
    store: &Store,
    destinations: &mut [DestinationStatus],
) -> anyhow::Result<()> {
    let ids: Vec<uuid::Uuid> = destinations
        .iter()
        .flat_map(|d| d.recent_runs.iter().chain(&d.recent_test_and_reexport_runs))
        .map(|v| v.id)
        .collect();
    let mut objects = store.objects_of_runs(&ids).await?;
    for destination in destinations.iter_mut() {
        let runs = destination
            .recent_runs
            .iter_mut()
            .chain(&mut destination.recent_test_and_reexport_runs);
        for view in runs {
            view.objects = objects.remove(&view.id).unwrap_or_default();
            // A run not committed says what it delivered so far.
            if view.status != "done" && !view.objects.is_empty() {
                view.events = Some(view.objects.iter().map(|o| o.events).sum());
                view.bytes = Some(view.objects.iter().map(|o| o.bytes).sum());
            }
        }
    }
    Ok(())
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
        objects: Vec::new(),
    }
}
