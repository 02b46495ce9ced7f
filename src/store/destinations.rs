//! A destination's stream over its lifetime: where it starts, the tenant filter and the cluster
//! its watermark covers, and the operator's actions on it (cancel, reset, forget), each
//! recorded as an event of the audit log itself.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::Store;
use super::leases::Lease;
use super::runs::{CommitError, RUN_COLUMNS, Run, run_from_row};
use crate::domain::Start;

/// Why a destination's stream cannot go on as configured.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(
        "destination `{destination}`: tenant_id changed from {} to {}, but its watermark covers {} only; \
         exporting on would skip the new filter's earlier events or deliver another tenant's. \
         Refused: to accept the change, run `audit-exporter destination reset {destination} --start beginning|now|TIME`",
        tenant(.old), tenant(.new), tenant_events(.old)
    )]
    TenantChanged {
        destination: String,
        old: Option<String>,
        new: Option<String>,
    },
    #[error(
        "destination `{destination}`: the database is not the cluster its watermark belongs to \
         (system identifier {current}, the watermark's {recorded}); after a dump and restore or a \
         logical-replication move the transaction ids start anew, and new events would never be exported. \
         Refused: to re-base the stream on this cluster, run \
         `audit-exporter destination reset {destination} --start TIME` with TIME when the move happened"
    )]
    ClusterMoved {
        destination: String,
        recorded: String,
        current: String,
    },
    #[error(
        "destination `{destination}`: the database's transaction ids (horizon {horizon}) are below the \
         watermark {watermark}: this is not the cluster the watermark belongs to (a dump and restore or a \
         logical-replication move), and new events would never be exported. Refused: to re-base the stream \
         on this cluster, run `audit-exporter destination reset {destination} --start TIME` with TIME when \
         the move happened"
    )]
    HorizonBehind {
        destination: String,
        horizon: i64,
        watermark: i64,
    },
}

fn tenant(value: &Option<String>) -> String {
    match value {
        Some(t) => format!("{t:?}"),
        None => "none (every tenant)".into(),
    }
}

fn tenant_events(value: &Option<String>) -> String {
    match value {
        Some(t) => format!("the events of tenant {t:?}"),
        None => "the events of every tenant".into(),
    }
}

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

/// The watermark a `start` gives, as an SQL expression over `$start` (beginning | now | time)
/// and `$time`: for a time, the horizon or the oldest transaction that recorded an event from
/// then on, whichever is lower, so nothing recorded from then on is missed.
fn start_watermark(start: &str, time: &str) -> String {
    format!(
        "CASE {start}
            WHEN 'beginning' THEN '0'::xid8
            WHEN 'now' THEN pg_snapshot_xmin(pg_current_snapshot())
            ELSE LEAST(pg_snapshot_xmin(pg_current_snapshot()),
                       (SELECT min(txid) FROM audit_events WHERE recorded_at >= {time}))
         END"
    )
}

fn start_binds(start: Start) -> (&'static str, Option<DateTime<Utc>>) {
    match start {
        Start::Beginning => ("beginning", None),
        Start::Now => ("now", None),
        Start::Time(t) => ("time", Some(t)),
    }
}

impl Store {
    /// The cluster's `system_identifier`, or `None` where the role may not read it (it is
    /// readable by every role on a stock PostgreSQL 15; a provider may revoke it).
    pub async fn cluster_id(&self) -> anyhow::Result<Option<String>> {
        let found = sqlx::query_scalar::<_, String>(
            "SELECT system_identifier::text FROM pg_control_system()",
        )
        .fetch_one(&self.pool)
        .await;
        match found {
            Ok(id) => Ok(Some(id)),
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42501" | "42883")) =>
            {
                tracing::debug!(error = %e, "Cannot read the cluster's system identifier; a cluster move is then noticed by its transaction ids only.");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies `start` to a destination whose stream has not started: one just recorded, or
    /// one re-added after `forget`. Does nothing otherwise. Returns whether it applied it.
    #[tracing::instrument(skip_all, fields(destination = name, %start), err)]
    pub async fn begin_stream(
        &self,
        name: &str,
        tenant: Option<&str>,
        start: Start,
        cluster: Option<&str>,
    ) -> anyhow::Result<bool> {
        let (kind, time) = start_binds(start);
        let sql = format!(
            "UPDATE export_destinations
             SET watermark = {}, tenant_id = $2, cluster_id = $5, stream_started = true,
                 stream_since = clock_timestamp(), forgotten_at = NULL
             WHERE name = $1 AND NOT stream_started",
            start_watermark("$3", "$4")
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(tenant)
            .bind(kind)
            .bind(time)
            .bind(cluster)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Checks that the configured tenant filter and this cluster are those the watermark
    /// covers. A stream without a committed run adopts the configured filter; an unknown
    /// cluster identity is recorded.
    #[tracing::instrument(skip_all, fields(destination = name), err)]
    pub async fn check_stream(
        &self,
        name: &str,
        tenant: Option<&str>,
        cluster: Option<&str>,
    ) -> anyhow::Result<()> {
        let row = sqlx::query(
            "UPDATE export_destinations d
             SET tenant_id = CASE WHEN EXISTS (
                     SELECT 1 FROM export_runs r
                     WHERE r.destination = d.name AND r.kind = 'scheduled' AND r.status = 'done'
                       AND r.finished_at >= d.stream_since)
                   THEN d.tenant_id ELSE $2 END,
                 cluster_id = COALESCE(d.cluster_id, $3)
             WHERE name = $1
             RETURNING tenant_id, cluster_id",
        )
        .bind(name)
        .bind(tenant)
        .bind(cluster)
        .fetch_one(&self.pool)
        .await?;
        let (covered, recorded): (Option<String>, Option<String>) =
            (row.try_get(0)?, row.try_get(1)?);
        if covered.as_deref() != tenant {
            anyhow::bail!(StreamError::TenantChanged {
                destination: name.to_owned(),
                old: covered,
                new: tenant.map(str::to_owned),
            });
        }
        if let (Some(recorded), Some(current)) = (recorded, cluster)
            && recorded != current
        {
            anyhow::bail!(StreamError::ClusterMoved {
                destination: name.to_owned(),
                recorded,
                current: current.to_owned(),
            });
        }
        Ok(())
    }

    /// Abandons the pending run `run_id` (its delivery changed): the watermark stays, and the
    /// run stays in the log with `reason` and the key it may have written.
    #[tracing::instrument(skip_all, fields(destination = %lease.destination, %run_id), err)]
    pub async fn abandon_run(
        &self,
        lease: &Lease,
        run_id: Uuid,
        reason: &str,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        abandon(&mut tx, lease, run_id, reason).await?;
        tx.commit().await?;
        Ok(())
    }

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
                .map(|r| anyhow::Ok((run_from_row(&r)?, r.try_get::<String, _>(25)?)))
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
            let metadata = serde_json::json!({
                "destination": lease.destination,
                "run_id": run.id,
                "abandoned_key": run.object_key,
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
        release(&mut tx, lease).await?;
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
             SET watermark = LEAST({}, pg_current_xact_id()), tenant_id = $2, cluster_id = $5,
                 stream_started = true, stream_since = clock_timestamp(), forgotten_at = NULL,
                 id_floor = CASE WHEN NOT $6 THEN id_floor
                                 WHEN $3 = 'beginning' THEN NULL
                                 ELSE (SELECT max(id) FROM audit_events
                                       WHERE recorded_at < COALESCE($4, clock_timestamp())) END
             WHERE name = $1
             RETURNING watermark::text::bigint, id_floor",
            start_watermark("$3", "$4")
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
        release(&mut tx, lease).await?;
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
    #[tracing::instrument(skip_all, fields(destination = %lease.destination), err)]
    pub async fn forget_destination(
        &self,
        lease: &Lease,
        by: &Operator,
    ) -> anyhow::Result<Option<Run>> {
        let mut tx = self.pool.begin().await?;
        let (watermark, tenant) = fenced_state(&mut tx, lease).await?;
        let pending = self.pending_run(&lease.destination).await?;
        if let Some(run) = &pending {
            let reason = format!("forgotten by {}@{}", by.os_user, by.host);
            abandon(&mut tx, lease, run.id, &reason).await?;
        }
        sqlx::query(
            "UPDATE export_destinations
             SET stream_started = false, forgotten_at = clock_timestamp(), cluster_id = NULL
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
        release(&mut tx, lease).await?;
        tx.commit().await?;
        Ok(pending)
    }
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

async fn abandon(
    tx: &mut Transaction<'_, Postgres>,
    lease: &Lease,
    run_id: Uuid,
    reason: &str,
) -> anyhow::Result<()> {
    let done = sqlx::query(
        "UPDATE export_runs r
         SET status = 'abandoned', abandoned_reason = $2, finished_at = clock_timestamp()
         WHERE id = $1 AND status = 'pending'
           AND EXISTS (SELECT 1 FROM export_destinations d
                       WHERE d.name = r.destination AND d.fencing_token = $3 AND d.lease_owner = $4)",
    )
    .bind(run_id)
    .bind(reason)
    .bind(lease.token)
    .bind(&lease.owner)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        anyhow::bail!(CommitError::LeaseLost(lease.destination.clone()));
    }
    Ok(())
}

async fn release(tx: &mut Transaction<'_, Postgres>, lease: &Lease) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE export_destinations SET lease_owner = NULL, lease_expires_at = NULL
         WHERE name = $1 AND fencing_token = $2 AND lease_owner = $3",
    )
    .bind(&lease.destination)
    .bind(lease.token)
    .bind(&lease.owner)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
