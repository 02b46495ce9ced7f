//! A destination's stream: where it starts, and the tenant filter and cluster its watermark
//! covers. A stream that no longer matches its configuration is refused, never exported on.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::Store;
use super::leases::Lease;
use super::runs::CommitError;
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

/// The watermark a `start` gives, as an SQL expression over `$start` (beginning | now | time)
/// and `$time`: for a time, the horizon or the oldest transaction that recorded an event from
/// then on, whichever is lower, so nothing recorded from then on is missed.
pub(super) fn start_watermark(start: &str, time: &str) -> String {
    format!(
        "CASE {start}
            WHEN 'beginning' THEN '0'::xid8
            WHEN 'now' THEN pg_snapshot_xmin(pg_current_snapshot())
            ELSE LEAST(pg_snapshot_xmin(pg_current_snapshot()),
                       (SELECT min(txid) FROM audit_events WHERE recorded_at >= {time}))
         END"
    )
}

pub(super) fn start_binds(start: Start) -> (&'static str, Option<DateTime<Utc>>) {
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
        // Asked first, so the usual case never plans a statement over audit_events.
        let started: Option<bool> =
            sqlx::query_scalar("SELECT stream_started FROM export_destinations WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        if started != Some(false) {
            return Ok(false);
        }
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
        match refusal(name, covered, recorded, tenant, cluster) {
            Some(refused) => Err(refused.into()),
            None => Ok(()),
        }
    }

    /// What an export would refuse for this destination (`check_stream`, or a horizon below
    /// the watermark), reading only, for `status` and `destination list`. None for a
    /// destination not recorded yet.
    #[tracing::instrument(skip_all, fields(destination = name), err)]
    pub async fn stream_refusal(
        &self,
        name: &str,
        tenant: Option<&str>,
        cluster: Option<&str>,
    ) -> anyhow::Result<Option<StreamError>> {
        let row = sqlx::query(
            "SELECT CASE WHEN EXISTS (
                     SELECT 1 FROM export_runs r
                     WHERE r.destination = d.name AND r.kind = 'scheduled' AND r.status = 'done'
                       AND r.finished_at >= d.stream_since)
                   THEN d.tenant_id ELSE $2 END,
                 COALESCE(d.cluster_id, $3),
                 d.watermark::text::bigint,
                 pg_snapshot_xmin(pg_current_snapshot())::text::bigint
             FROM export_destinations d WHERE name = $1",
        )
        .bind(name)
        .bind(tenant)
        .bind(cluster)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (watermark, horizon): (i64, i64) = (row.try_get(2)?, row.try_get(3)?);
        Ok(
            refusal(name, row.try_get(0)?, row.try_get(1)?, tenant, cluster).or((horizon
                < watermark)
                .then(|| StreamError::HorizonBehind {
                    destination: name.to_owned(),
                    horizon,
                    watermark,
                })),
        )
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
}

pub(super) async fn abandon(
    tx: &mut Transaction<'_, Postgres>,
    lease: &Lease,
    run_id: Uuid,
    reason: &str,
) -> anyhow::Result<()> {
    let done = sqlx::query(
        "UPDATE export_runs r
         SET status = 'abandoned', abandoned_reason = $2, last_error = $2, finished_at = clock_timestamp()
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

/// Why a destination's stream may not go on: the tenant filter its watermark covers is not the
/// configured one, or the recorded cluster is not the current one.
fn refusal(
    name: &str,
    covered: Option<String>,
    recorded: Option<String>,
    tenant: Option<&str>,
    cluster: Option<&str>,
) -> Option<StreamError> {
    if covered.as_deref() != tenant {
        return Some(StreamError::TenantChanged {
            destination: name.to_owned(),
            old: covered,
            new: tenant.map(str::to_owned),
        });
    }
    match (recorded, cluster) {
        (Some(recorded), Some(current)) if recorded != current => Some(StreamError::ClusterMoved {
            destination: name.to_owned(),
            recorded,
            current: current.to_owned(),
        }),
        _ => None,
    }
}
