//! An operator's actions on a destination (list, cancel, reset, forget), each recorded as an
//! event of the audit log itself, in the action's own transaction.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};

use super::Store;
use super::leases::{Lease, release};
use super::run_row::{RUN_COLUMNS, run_from_row};
use super::runs::{CommitError, Run};
use super::stream::{abandon, start_binds, start_watermark};
use crate::domain::Start;

/// Who runs an operator's command, for the event that records it.
#[derive(Debug, Clone)]
pub struct Operator {
    pub os_user: String,
    pub host: String,
}

/// A destination as the database knows it, for `destination list`.
#[derive(Debug, Clone)]
pub struct KnownDestination {
    pub name: String,
    pub watermark: i64,
    pub tenant_id: Option<String>,
    pub forgotten_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub pending: Option<Run>,
    /// The latest run of the current stream that was abandoned, and why.
    pub abandoned: Option<(Run, String)>,
}

/// What `reset` changed.
#[derive(Debug, Clone)]
pub struct Reset {
    pub old_watermark: i64,
    pub new_watermark: i64,
    pub old_tenant_id: Option<String>,
    /// The stream moved to this cluster.
    pub cluster_moved: bool,
    /// Events up to this id (copied from the old cluster) are left out of the stream.
    pub id_floor: Option<i64>,
}

impl Store {
    /// Every destination the database knows, by name.
    pub async fn known_destinations(&self) -> anyhow::Result<Vec<KnownDestination>> {
        let rows = sqlx::query(
            "SELECT name, watermark::text::bigint, tenant_id, forgotten_at, lease_owner, stream_since
             FROM export_destinations ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut known = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let since: DateTime<Utc> = row.try_get(5)?;
            let sql = format!(
                "SELECT {RUN_COLUMNS}, abandoned_reason FROM export_runs
                 WHERE destination = $1 AND kind = 'scheduled' AND status = 'abandoned' AND finished_at >= $2
                 ORDER BY finished_at DESC LIMIT 1"
            );
            let abandoned = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&name)
                .bind(since)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| {
                    anyhow::Ok((
                        run_from_row(&r)?,
                        r.try_get::<String, _>(super::run_row::RUN_COLUMN_COUNT)?,
                    ))
                })
                .transpose()?;
            known.push(KnownDestination {
                pending: self.pending_run(&name).await?,
                watermark: row.try_get(1)?,
                tenant_id: row.try_get(2)?,
                forgotten_at: row.try_get(3)?,
                lease_owner: row.try_get(4)?,
                abandoned,
                name,
            });
        }
        Ok(known)
    }

    /// `destination cancel`: abandons the pending run, if any, and releases the lease; the
    /// watermark stays. Returns the run abandoned.
    #[tracing::instrument(skip_all, fields(destination = %lease.destination), err)]
    pub async fn cancel_run(&self, lease: &Lease, by: &Operator) -> anyhow::Result<Option<Run>> {
        let mut tx = self.pool.begin().await?;
        let (watermark, tenant) = fenced_state(&mut tx, lease).await?;
        let pending = self.pending_run(&lease.destination).await?;
        if let Some(run) = &pending {
            let reason = format!("cancelled by {}@{}", by.os_user, by.host);
            abandon(&mut tx, lease, run.id, &reason).await?;
            let delivered: Vec<String> = self
                .run_objects(run.id)
                .await?
                .into_iter()
                .map(|o| o.key)
                .collect();
            let metadata = serde_json::json!({
                "destination": lease.destination,
                "run_id": run.id,
                "abandoned_key": run.object_key,
                "delivered_keys": delivered,
                "window": { "lo": run.window_lo.to_string(), "hi": run.window_hi.to_string() },
                "watermark": watermark.to_string(),
            });
            record(
                &mut tx,
                "system.export.cancelled",
                &lease.destination,
                tenant.as_deref(),
                by,
                metadata,
            )
            .await?;
        }
        release(&mut *tx, lease).await?;
        tx.commit().await?;
        Ok(pending)
    }

    /// `destination reset`: moves where the stream starts, adopts `tenant` as the filter the
    /// watermark covers and this cluster as its own, and releases the lease. Refused (by the
    /// caller) while a run is pending.
    #[tracing::instrument(skip_all, fields(destination = %lease.destination, %start), err)]
    pub async fn reset_stream(
        &self,
        lease: &Lease,
        tenant: Option<&str>,
        start: Start,
        cluster: Option<&str>,
        by: &Operator,
    ) -> anyhow::Result<Reset> {
        let mut tx = self.pool.begin().await?;
        let (old_watermark, old_tenant_id) = fenced_state(&mut tx, lease).await?;
        let (kind, time) = start_binds(start);
        // The stream moves to this cluster if its identity differs from the recorded one, or
        // if its transaction ids are below the watermark.
        let cluster_moved: bool = sqlx::query_scalar(
            "SELECT (cluster_id IS NOT NULL AND $2::text IS NOT NULL AND cluster_id <> $2)
                    OR pg_snapshot_xmin(pg_current_snapshot()) < watermark
             FROM export_destinations WHERE name = $1",
        )
        .bind(&lease.destination)
        .bind(cluster)
        .fetch_one(&mut *tx)
        .await?;
        // Never above this transaction's own id: the event recording the reset belongs to
        // the new stream. After a move, the rows copied from the old cluster (recorded before
        // the start) stay out: their transaction ids are the old cluster's.
        let sql = format!(
            "UPDATE export_destinations
             SET watermark = LEAST({start}, pg_current_xact_id()),
                 stream_lo = LEAST({start}, pg_current_xact_id()), tenant_id = $2, cluster_id = $5,
                 stream_started = true, stream_since = clock_timestamp(), forgotten_at = NULL,
                 tenant_change = NULL,
                 id_floor = CASE WHEN NOT $6 THEN id_floor
                                 WHEN $3 = 'beginning' THEN NULL
                                 ELSE (SELECT max(id) FROM audit_events
                                       WHERE recorded_at < COALESCE($4, clock_timestamp())) END
             WHERE name = $1
             RETURNING watermark::text::bigint, id_floor",
            start = start_watermark("$3", "$4")
        );
        let (new_watermark, id_floor): (i64, Option<i64>) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&lease.destination)
                .bind(tenant)
                .bind(kind)
                .bind(time)
                .bind(cluster)
                .bind(cluster_moved)
                .fetch_one(&mut *tx)
                .await?;
        let metadata = serde_json::json!({
            "destination": lease.destination,
            "start": start.to_string(),
            "old_watermark": old_watermark.to_string(),
            "new_watermark": new_watermark.to_string(),
            "old_tenant_id": old_tenant_id,
            "new_tenant_id": tenant,
            "cluster_id": cluster,
            "cluster_moved": cluster_moved,
            "id_floor": id_floor,
        });
        record(
            &mut tx,
            "system.export.reset",
            &lease.destination,
            tenant,
            by,
            metadata,
        )
        .await?;
        release(&mut *tx, lease).await?;
        tx.commit().await?;
        Ok(Reset {
            old_watermark,
            new_watermark,
            old_tenant_id,
            cluster_moved,
            id_floor,
        })
    }

    /// `destination forget`: abandons a pending run and marks the stream forgotten, keeping its
    /// runs for the record. If the name is configured again, it starts anew per its `start`.
    /// On a stream already forgotten it changes and records nothing but frees the lease.
    #[tracing::instrument(skip_all, fields(destination = %lease.destination), err)]
    pub async fn forget_destination(
        &self,
        lease: &Lease,
        by: &Operator,
    ) -> anyhow::Result<Forgotten> {
        let mut tx = self.pool.begin().await?;
        let (watermark, tenant) = fenced_state(&mut tx, lease).await?;
        let already: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT forgotten_at FROM export_destinations WHERE name = $1")
                .bind(&lease.destination)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(at) = already {
            release(&mut *tx, lease).await?;
            tx.commit().await?;
            return Ok(Forgotten::Already(at));
        }
        let pending = self.pending_run(&lease.destination).await?;
        if let Some(run) = &pending {
            let reason = format!("forgotten by {}@{}", by.os_user, by.host);
            abandon(&mut tx, lease, run.id, &reason).await?;
        }
        sqlx::query(
            "UPDATE export_destinations
             SET stream_started = false, forgotten_at = clock_timestamp(), cluster_id = NULL,
                 tenant_change = NULL
             WHERE name = $1",
        )
        .bind(&lease.destination)
        .execute(&mut *tx)
        .await?;
        let metadata = serde_json::json!({
            "destination": lease.destination,
            "watermark": watermark.to_string(),
            "tenant_id": tenant,
            "abandoned_key": pending.as_ref().map(|r| &r.object_key),
        });
        record(
            &mut tx,
            "system.export.forgotten",
            &lease.destination,
            tenant.as_deref(),
            by,
            metadata,
        )
        .await?;
        release(&mut *tx, lease).await?;
        tx.commit().await?;
        Ok(Forgotten::Now(pending.map(Box::new)))
    }
}

/// What `destination forget` did.
#[derive(Debug)]
pub enum Forgotten {
    /// The stream was forgotten before, at this time: nothing changed, nothing recorded.
    Already(DateTime<Utc>),
    /// Forgotten now; the pending run it abandoned, if any.
    Now(Option<Box<Run>>),
}

/// The watermark and tenant filter, locked, while the lease is still ours.
async fn fenced_state(
    tx: &mut Transaction<'_, Postgres>,
    lease: &Lease,
) -> anyhow::Result<(i64, Option<String>)> {
    let row = sqlx::query(
        "SELECT watermark::text::bigint, tenant_id FROM export_destinations
         WHERE name = $1 AND fencing_token = $2 AND lease_owner = $3 FOR UPDATE",
    )
    .bind(&lease.destination)
    .bind(lease.token)
    .bind(&lease.owner)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| CommitError::LeaseLost(lease.destination.clone()))?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Appends the event that records an operator's action, in the action's own transaction. Its
/// tenant is the destination's filter, so a tenant's own destination receives it.
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    action: &str,
    destination: &str,
    tenant: Option<&str>,
    by: &Operator,
    metadata: serde_json::Value,
) -> anyhow::Result<()> {
    let actor = serde_json::json!({
        "type": "system",
        "id": "audit-exporter",
        "name": format!("{}@{}", by.os_user, by.host),
        "os_user": by.os_user,
        "host": by.host,
    });
    let target = serde_json::json!({ "type": "export_destination", "id": destination });
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, tenant_id, action, actor, target, metadata)
         VALUES (clock_timestamp(), $1, $2, $3, $4, $5)",
    )
    .bind(tenant)
    .bind(action)
    .bind(actor)
    .bind(target)
    .bind(metadata)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
