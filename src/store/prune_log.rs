//! A prune in the run log (kind `prune`, of no destination) and in the audit log itself (one
//! `system.retention.pruned` event, in the transaction that marks the run done).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use super::destinations::Operator;
use super::retention::{HeldBack, PruneBatch};

/// How long a prune stays alive in the log without renewing; one whose process died is marked
/// failed by the next.
const PRUNE_ALIVE_SECS: f64 = 600.0;

/// A finished prune, as the run log holds it.
#[derive(Debug, Clone, Serialize)]
pub struct PruneRecord {
    pub id: Uuid,
    pub status: String,
    pub cutoff: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub events: Option<i64>,
    pub last_error: Option<String>,
}

/// Pruned events of a re-export's range, and the scheduled runs that had delivered them.
#[derive(Debug, Clone, Default)]
pub struct PrunedDeliveries {
    /// Each prune whose events occurred in the range: when it ran, and how many it deleted
    /// (in all, not only of the range).
    pub prunes: Vec<(DateTime<Utc>, i64)>,
    /// The keys of the destination's scheduled objects (`export_run_objects`) that carry them.
    pub keys: Vec<String>,
}

impl Store {
    /// Logs a prune about to start. Refused while another is running; one whose process died
    /// (not renewed in time) is marked failed first.
    pub async fn start_prune_run(
        &self,
        cutoff: DateTime<Utc>,
        by: &Operator,
    ) -> anyhow::Result<Uuid> {
        sqlx::query(
            "UPDATE export_runs SET status = 'failed', finished_at = clock_timestamp(),
                    last_error = 'interrupted: its process stopped before it finished'
             WHERE kind = 'prune' AND status = 'pending' AND alive_until < clock_timestamp()",
        )
        .execute(&self.pool)
        .await?;
        let id = Uuid::now_v7();
        let inserted = sqlx::query(
            "INSERT INTO export_runs (id, kind, status, window_lo, window_hi, window_end, attempts,
                                      started_at, alive_until, detail)
             VALUES ($1, 'prune', 'pending', '0', '0', $2, 1, clock_timestamp(),
                     clock_timestamp() + make_interval(secs => $3), $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(cutoff)
        .bind(PRUNE_ALIVE_SECS)
        .bind(serde_json::json!({ "by": by.name() }))
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            let (other, since, who, alive): (Uuid, DateTime<Utc>, Option<String>, DateTime<Utc>) =
                sqlx::query_as(
                    "SELECT id, started_at, detail->>'by', alive_until FROM export_runs
                     WHERE kind = 'prune' AND status = 'pending'",
                )
                .fetch_one(&self.pool)
                .await?;
            anyhow::bail!(
                "another prune is running (run {other}, started {} by {}); one at a time. If its process stopped, it counts as interrupted once it shows no sign of life past {} (it renews itself while it runs), and a prune then goes ahead",
                since.to_rfc3339(),
                who.unwrap_or_default(),
                alive.to_rfc3339()
            );
        }
        Ok(id)
    }

    /// Keeps a running prune alive in the log.
    pub async fn renew_prune_run(&self, id: Uuid) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_runs SET alive_until = clock_timestamp() + make_interval(secs => $2)
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(PRUNE_ALIVE_SECS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the prune done and appends its `system.retention.pruned` event, in one transaction.
    #[tracing::instrument(skip_all, fields(run_id = %id, deleted = total.deleted), err)]
    pub async fn finish_prune_run(
        &self,
        id: Uuid,
        cutoff: DateTime<Utc>,
        total: &PruneBatch,
        held: &[HeldBack],
        by: &Operator,
    ) -> anyhow::Result<()> {
        let (lo, hi) = total.txids.map_or((0, 0), |(lo, hi)| (lo, hi + 1));
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE export_runs
             SET status = 'done', finished_at = clock_timestamp(), event_count = $2,
                 window_lo = $3::text::xid8, window_hi = $4::text::xid8,
                 range_from = $5, range_to = $6 + interval '1 microsecond',
                 detail = detail || jsonb_build_object('held_back', $7::jsonb)
             WHERE id = $1 AND kind = 'prune'",
        )
        .bind(id)
        .bind(total.deleted)
        .bind(lo)
        .bind(hi)
        .bind(total.occurred.map(|o| o.0))
        .bind(total.occurred.map(|o| o.1))
        .bind(serde_json::to_value(held)?)
        .execute(&mut *tx)
        .await?;
        let actor = serde_json::json!({
            "type": "system",
            "id": "audit-exporter",
            "name": by.name(),
            "os_user": by.os_user,
            "host": by.host,
        });
        let metadata = serde_json::json!({
            "run_id": id,
            "cutoff": cutoff.to_rfc3339(),
            "count": total.deleted,
            // Every event deleted has a transaction id in [txid_from, txid_below).
            "txid_from": lo.to_string(),
            "txid_below": hi.to_string(),
            "occurred_from": total.occurred.map(|o| o.0.to_rfc3339()),
            "occurred_to": total.occurred.map(|o| o.1.to_rfc3339()),
            "held_back": held,
        });
        sqlx::query(
            "INSERT INTO audit_events (occurred_at, action, actor, target, metadata)
             VALUES (clock_timestamp(), 'system.retention.pruned', $1, $2, $3)",
        )
        .bind(actor)
        .bind(serde_json::json!({ "type": "table", "id": "audit_events" }))
        .bind(metadata)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks the prune failed with its error; what it deleted stays deleted.
    pub async fn fail_prune_run(
        &self,
        id: Uuid,
        total: &PruneBatch,
        error: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_runs SET status = 'failed', finished_at = clock_timestamp(),
                    event_count = $2, last_error = $3
             WHERE id = $1 AND kind = 'prune'",
        )
        .bind(id)
        .bind(total.deleted)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the latest prune that finished started.
    pub async fn last_done_prune(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT max(started_at) FROM export_runs WHERE kind = 'prune' AND status = 'done'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The latest prunes, newest first.
    pub async fn recent_prunes(&self, limit: i64) -> anyhow::Result<Vec<PruneRecord>> {
        let rows = sqlx::query(
            "SELECT id, status, window_end, started_at, finished_at, event_count, last_error
             FROM export_runs WHERE kind = 'prune' ORDER BY started_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PruneRecord {
                    id: r.try_get(0)?,
                    status: r.try_get(1)?,
                    cutoff: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    finished_at: r.try_get(4)?,
                    events: r.try_get(5)?,
                    last_error: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// The prunes that deleted events which occurred in `[from, to)`, and the keys of the
    /// destination's scheduled runs that had delivered events of those prunes' transaction ids
    /// (of `tenant`, when given).
    pub async fn pruned_deliveries(
        &self,
        destination: &str,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        tenant: Option<&str>,
    ) -> anyhow::Result<PrunedDeliveries> {
        let prunes = sqlx::query(
            "SELECT finished_at, event_count, window_lo::text::bigint, window_hi::text::bigint,
                    window_end
             FROM export_runs
             WHERE kind = 'prune' AND status = 'done' AND event_count > 0
               AND range_from < $2 AND range_to > $1
             ORDER BY finished_at",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut found = PrunedDeliveries::default();
        for prune in &prunes {
            found.prunes.push((prune.try_get(0)?, prune.try_get(1)?));
            let (lo, hi, cutoff): (i64, i64, DateTime<Utc>) =
                (prune.try_get(2)?, prune.try_get(3)?, prune.try_get(4)?);
            // The objects of the destination's scheduled runs whose window overlaps what the
            // prune deleted, and whose events occurred in the range.
            let keys: Vec<String> = sqlx::query_scalar(
                "SELECT o.key FROM export_runs r JOIN export_run_objects o ON o.run_id = r.id
                 WHERE r.destination = $1 AND r.kind = 'scheduled' AND r.status = 'done'
                   AND r.window_lo < $3::text::xid8 AND r.window_hi > $2::text::xid8
                   AND (r.window_start IS NULL OR r.window_start < $4)
                   AND ($5::text IS NULL OR r.tenant_id IS NULL OR r.tenant_id = $5)
                   AND o.events > 0
                   AND (o.oldest_at IS NULL OR o.oldest_at < $7)
                   AND (o.newest_at IS NULL OR o.newest_at >= $6)
                 ORDER BY r.window_lo, o.seq",
            )
            .bind(destination)
            .bind(lo)
            .bind(hi)
            .bind(cutoff)
            .bind(tenant)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
            for key in keys {
                if !found.keys.contains(&key) {
                    found.keys.push(key);
                }
            }
        }
        Ok(found)
    }
}

impl Operator {
    /// `user@host`.
    pub fn name(&self) -> String {
        format!("{}@{}", self.os_user, self.host)
    }
}
