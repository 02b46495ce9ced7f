//! A prune's run (kind `prune`, of no destination) from start to close. Every batch adds what
//! it deleted to the run's row in its own transaction (`audit_prune_batch`), so the row is the
//! record of what went; closing the run appends its one `system.retention.pruned` event from
//! that row, in the transaction that ends the run: done, stopped, failed, or, for a prune whose
//! process died, settled by the next prune.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::Store;
use super::destinations::Operator;
use super::retention::{HeldBack, PruneBatch};

/// How long a prune stays alive in the log without renewing it (it renews after every batch,
/// which takes well under a second): a prune whose process died holds others off this long at
/// most, then the next one settles it.
pub const PRUNE_LEASE_SECS: u32 = 60;

/// What a batch runs under: the prune's own pending run, or, for a dry run, a run logged in the
/// batch's transaction and rolled back with it.
#[derive(Debug, Clone, Copy)]
pub enum PruneUnder {
    Run(Uuid),
    DryRun { cutoff: DateTime<Utc> },
}

/// How a prune's run ends.
#[derive(Debug, Clone)]
pub enum PruneEnd<'a> {
    /// It went through every batch; what the destinations still hold back.
    Done(&'a [HeldBack]),
    /// Stopped between batches (SIGTERM, Ctrl-C, `run` stopping).
    Stopped,
    /// A batch or a step around it failed.
    Failed(&'a str),
}

/// A prune's run as its row records it.
#[derive(Debug, Clone)]
struct Recorded {
    id: Uuid,
    cutoff: DateTime<Utc>,
    total: PruneBatch,
    by: Option<String>,
}

const RECORDED: &str = "id, window_end, COALESCE(event_count, 0), window_lo::text::bigint,
     window_hi::text::bigint, range_from, range_to, detail->>'by'";

fn recorded(row: &PgRow) -> anyhow::Result<Recorded> {
    let deleted: i64 = row.try_get(2)?;
    let (lo, hi): (i64, i64) = (row.try_get(3)?, row.try_get(4)?);
    let (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        (row.try_get(5)?, row.try_get(6)?);
    Ok(Recorded {
        id: row.try_get(0)?,
        cutoff: row.try_get(1)?,
        total: PruneBatch {
            deleted,
            txids: (deleted > 0).then_some((lo, hi - 1)),
            // range_to is one microsecond past the newest event's occurred_at.
            occurred: from
                .zip(to)
                .map(|(from, to)| (from, to - chrono::Duration::microseconds(1))),
        },
        by: row.try_get(7)?,
    })
}

impl Store {
    /// Logs a prune about to start. Prunes whose process died (no sign of life past their
    /// lease) are settled first; refused while another is running.
    pub async fn start_prune_run(
        &self,
        cutoff: DateTime<Utc>,
        by: &Operator,
    ) -> anyhow::Result<Uuid> {
        self.settle_dead_prunes(by).await?;
        let mut tx = self.pool.begin().await?;
        let id = insert_pending(&mut tx, cutoff, by).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Keeps a running prune alive in the log; fails if it is no longer pending (another prune
    /// settled it as interrupted), so it deletes no further.
    pub async fn renew_prune_run(&self, id: Uuid) -> anyhow::Result<()> {
        let renewed = sqlx::query(
            "UPDATE export_runs SET alive_until = clock_timestamp() + make_interval(secs => $2)
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(f64::from(PRUNE_LEASE_SECS))
        .execute(&self.pool)
        .await?;
        if renewed.rows_affected() == 0 {
            anyhow::bail!(
                "prune run {id} is no longer pending: another prune settled it as interrupted (it showed no sign of life for {PRUNE_LEASE_SECS} s)"
            );
        }
        Ok(())
    }

    /// One batch: deletes the events of `[from_id, to_id)` that `audit_prune_batch` finds
    /// delivered everywhere, and records them on the run, in one transaction. A dry run logs a
    /// pending run in the same transaction and rolls both back, so it counts exactly what would
    /// go and deletes nothing.
    #[tracing::instrument(skip_all, fields(from_id, to_id), err)]
    pub async fn prune_batch(
        &self,
        under: PruneUnder,
        (from_id, to_id): (i64, i64),
        by: &Operator,
    ) -> anyhow::Result<PruneBatch> {
        let mut tx = self.pool.begin().await?;
        let run = match under {
            PruneUnder::Run(id) => id,
            PruneUnder::DryRun { cutoff } => insert_pending(&mut tx, cutoff, by).await?,
        };
        let row = sqlx::query(
            "SELECT deleted, txid_min::text::bigint, txid_max::text::bigint, occurred_min, occurred_max
             FROM audit_prune_batch($1, $2, $3)",
        )
        .bind(run)
        .bind(from_id)
        .bind(to_id)
        .fetch_one(&mut *tx)
        .await?;
        match under {
            PruneUnder::Run(_) => tx.commit().await?,
            PruneUnder::DryRun { .. } => tx.rollback().await?,
        }
        let (lo, hi): (Option<i64>, Option<i64>) = (row.try_get(1)?, row.try_get(2)?);
        let (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
            (row.try_get(3)?, row.try_get(4)?);
        Ok(PruneBatch {
            deleted: row.try_get(0)?,
            txids: lo.zip(hi),
            occurred: from.zip(to),
        })
    }

    /// Ends the prune's run and appends its `system.retention.pruned` event, in one
    /// transaction, from what its batches recorded. Returns that record.
    #[tracing::instrument(skip_all, fields(run_id = %id), err)]
    pub async fn close_prune_run(
        &self,
        id: Uuid,
        end: PruneEnd<'_>,
        by: &Operator,
    ) -> anyhow::Result<PruneBatch> {
        let (status, error, held) = match end {
            PruneEnd::Done(held) => ("done", None, Some(held)),
            PruneEnd::Stopped => (
                "failed",
                Some("stopped between batches (SIGTERM, Ctrl-C or `run` stopping)".to_owned()),
                None,
            ),
            PruneEnd::Failed(error) => ("failed", Some(error.to_owned()), None),
        };
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE export_runs
             SET status = $2, finished_at = clock_timestamp(), last_error = $3,
                 event_count = COALESCE(event_count, 0),
                 detail = detail || jsonb_strip_nulls(jsonb_build_object('held_back', $4::jsonb))
             WHERE id = $1 AND kind = 'prune' AND status = 'pending'
             RETURNING {RECORDED}"
        )))
        .bind(id)
        .bind(status)
        .bind(&error)
        .bind(held.map(serde_json::to_value).transpose()?)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            anyhow::bail!(
                "prune run {id} is no longer pending: another prune settled it as interrupted, and logged what it deleted"
            );
        };
        let run = recorded(&row)?;
        let actor = serde_json::json!({
            "type": "system",
            "id": "audit-exporter",
            "name": by.name(),
            "os_user": by.os_user,
            "host": by.host,
        });
        let mut metadata = metadata(&run, held.is_some());
        if let Some(held) = held {
            metadata["held_back"] = serde_json::to_value(held)?;
        }
        if let Some(error) = error {
            metadata["stopped"] = error.into();
        }
        append_pruned(&mut tx, actor, metadata).await?;
        tx.commit().await?;
        Ok(run.total)
    }

    /// Settles every prune whose process died (pending, no sign of life past its lease): marks
    /// it failed and appends its `system.retention.pruned` event with what its batches recorded.
    /// The row's update decides who settles it, so two settlers never both append the event.
    /// Returns the runs settled.
    #[tracing::instrument(skip_all, err)]
    pub async fn settle_dead_prunes(&self, by: &Operator) -> anyhow::Result<Vec<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE export_runs
             SET status = 'failed', finished_at = clock_timestamp(),
                 event_count = COALESCE(event_count, 0),
                 last_error = 'interrupted: its process stopped before it finished (no sign of life past '
                              || alive_until || '); what its batches deleted is on record'
             WHERE kind = 'prune' AND status = 'pending' AND alive_until < clock_timestamp()
             RETURNING {RECORDED}"
        )))
        .fetch_all(&mut *tx)
        .await?;
        let mut settled = Vec::new();
        for row in &rows {
            let run = recorded(row)?;
            let actor = serde_json::json!({
                "type": "system",
                "id": "audit-exporter",
                "name": run.by,
            });
            let mut metadata = metadata(&run, false);
            metadata["stopped"] = "interrupted: its process stopped before it finished".into();
            metadata["settled_by"] = by.name().into();
            append_pruned(&mut tx, actor, metadata).await?;
            tracing::warn!(run_id = %run.id, deleted = run.total.deleted, "Settled a prune whose process stopped before it finished: logged what its batches deleted.");
            settled.push(run.id);
        }
        tx.commit().await?;
        Ok(settled)
    }
}

/// Logs a pending prune run, refused while another is pending.
async fn insert_pending(
    tx: &mut Transaction<'_, Postgres>,
    cutoff: DateTime<Utc>,
    by: &Operator,
) -> anyhow::Result<Uuid> {
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
    .bind(f64::from(PRUNE_LEASE_SECS))
    .bind(serde_json::json!({ "by": by.name() }))
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(id);
    }
    let (other, since, who, alive): (Uuid, DateTime<Utc>, Option<String>, DateTime<Utc>) =
        sqlx::query_as(
            "SELECT id, started_at, detail->>'by', alive_until FROM export_runs
             WHERE kind = 'prune' AND status = 'pending'",
        )
        .fetch_one(&mut **tx)
        .await?;
    anyhow::bail!(
        "another prune is running (run {other}, started {} by {}); one at a time. Refused until {} at the latest: a running prune renews that every batch, and once it has passed with no renewal its process counts as stopped and the next prune settles it",
        since.to_rfc3339(),
        who.unwrap_or_default(),
        alive.to_rfc3339()
    )
}

/// The event's metadata common to every end: what the run's batches recorded.
fn metadata(run: &Recorded, complete: bool) -> serde_json::Value {
    let (lo, below) = run.total.txids.map_or((0, 0), |(lo, hi)| (lo, hi + 1));
    serde_json::json!({
        "run_id": run.id,
        "cutoff": run.cutoff.to_rfc3339(),
        "count": run.total.deleted,
        "complete": complete,
        // Every event deleted has a transaction id in [txid_from, txid_below).
        "txid_from": lo.to_string(),
        "txid_below": below.to_string(),
        "occurred_from": run.total.occurred.map(|o| o.0.to_rfc3339()),
        "occurred_to": run.total.occurred.map(|o| o.1.to_rfc3339()),
    })
}

async fn append_pruned(
    tx: &mut Transaction<'_, Postgres>,
    actor: serde_json::Value,
    metadata: serde_json::Value,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, action, actor, target, metadata)
         VALUES (clock_timestamp(), 'system.retention.pruned', $1, $2, $3)",
    )
    .bind(actor)
    .bind(serde_json::json!({ "type": "table", "id": "audit_events" }))
    .bind(metadata)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
