//! Prunes as the run log holds them (kind `prune`, of no destination): the latest, and those
//! that deleted a re-export's range. How a prune's run is written: `prune_run.rs`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use super::destinations::Operator;

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
             WHERE kind = 'prune' AND event_count > 0
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
