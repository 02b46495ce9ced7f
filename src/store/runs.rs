//! The run log: planned runs, their attempts, and the watermark's compare-and-set commit.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::Store;
use super::leases::Lease;
use crate::domain::{Compression, Encoding, Format, Schema};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Scheduled,
    Reexport,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Pending,
    Done,
    Failed,
    /// Never delivered: its delivery changed in the config, or an operator cancelled it.
    Abandoned,
}

/// A run as the log holds it. Everything its object's key and bytes derive from is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: Uuid,
    pub destination: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub window_lo: i64,
    pub window_hi: i64,
    pub window_end: DateTime<Utc>,
    pub slot: Option<DateTime<Utc>>,
    pub tenant_id: Option<String>,
    pub object_key: String,
    pub format: Format,
    pub heartbeat_event_id: Option<Uuid>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub event_count: Option<i64>,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A re-export's `[from, to)` of occurred_at.
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Objects the run wrote (more than one when split by max_object_bytes).
    pub object_count: Option<i32>,
    /// A scheduled run's window in time: from the end of the destination's previous scheduled
    /// window (`None` for the first) to `window_end`.
    pub window_start: Option<DateTime<Utc>>,
    /// What defined its delivery when planned (see `Destination::delivery`); `None` for runs
    /// planned before it was recorded.
    pub delivery: Option<serde_json::Value>,
    /// Only events above this id are in its window (set after a move to a new cluster).
    pub id_floor: Option<i64>,
    /// A scheduled run closes an object at the first event past this size and starts the next
    /// (`_partNNNN`); `None` for runs planned before splitting existed: one object.
    pub max_object_bytes: Option<i64>,
}

/// What a new run is planned with; the window and the key come from the database's horizon.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub tenant_id: Option<&'a str>,
    pub format: Format,
    pub slot: Option<DateTime<Utc>>,
    /// What defines its delivery, recorded so a changed config abandons it rather than resume.
    pub delivery: Option<serde_json::Value>,
    /// Where its objects are cut (see `Run::max_object_bytes`).
    pub max_object_bytes: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(
        "the lease on destination `{0}` was lost to another process; its run stays pending for the holder"
    )]
    LeaseLost(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub(super) const RUN_COLUMNS: &str = "id, destination, kind, status, window_lo::text::bigint, window_hi::text::bigint,
    window_end, slot, tenant_id, object_key, encoding, compression, heartbeat_event_id, attempts, last_error,
    event_count, bytes, sha256, started_at, finished_at, range_from, range_to, object_count, window_start,
    delivery, id_floor, max_object_bytes, event_schema";
/// How many columns `RUN_COLUMNS` names: a query's own columns come after them.
pub(super) const RUN_COLUMN_COUNT: usize = 28;

impl Store {
    /// The scheduled run of the destination that was planned and not committed, if any.
    pub async fn pending_run(&self, destination: &str) -> anyhow::Result<Option<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM export_runs WHERE destination = $1 AND status = 'pending' AND kind = 'scheduled'"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(destination)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    /// The destination's latest runs of the given kinds, newest first.
    pub async fn recent_runs(
        &self,
        destination: &str,
        kinds: &[RunKind],
        limit: i64,
    ) -> anyhow::Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM export_runs WHERE destination = $1 AND kind = ANY($2)
             ORDER BY window_end DESC, id DESC LIMIT $3"
        );
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(destination)
            .bind(kinds)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Plans the next scheduled run: the window `[watermark, horizon)`, where the horizon is the
    /// oldest transaction still running, so every transaction in the window has ended. The run
    /// is committed before any byte is uploaded. `key` builds the object key from the run id and
    /// the window's end.
    #[tracing::instrument(skip_all, fields(destination = %lease.destination), err)]
    pub async fn plan_run(
        &self,
        lease: &Lease,
        new: &NewRun<'_>,
        key: impl Fn(Uuid, DateTime<Utc>) -> String,
    ) -> anyhow::Result<Run> {
        let mut tx = self.pool.begin().await?;
        // The first statement, so this transaction has no id of its own below the horizon.
        let row = sqlx::query(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, clock_timestamp()",
        )
        .fetch_one(&mut *tx)
        .await?;
        let (horizon, window_end): (i64, DateTime<Utc>) = (row.try_get(0)?, row.try_get(1)?);
        let watermark: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT watermark::text::bigint, id_floor FROM export_destinations
             WHERE name = $1 AND fencing_token = $2 AND lease_owner = $3 FOR UPDATE",
        )
        .bind(&lease.destination)
        .bind(lease.token)
        .bind(&lease.owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((lo, id_floor)) = watermark else {
            anyhow::bail!(CommitError::LeaseLost(lease.destination.clone()));
        };
        if horizon < lo {
            anyhow::bail!(super::StreamError::HorizonBehind {
                destination: lease.destination.clone(),
                horizon,
                watermark: lo,
            });
        }
        let hi = horizon;
        // On this transaction's connection: a step never holds one connection while it waits
        // for a second, which a full pool would never give.
        let has_events =
            super::events::window_has_events(&mut tx, lo, hi, new.tenant_id, id_floor).await?;
        let heartbeat_event_id = (!has_events).then(Uuid::now_v7);
        let sql = format!(
            "INSERT INTO export_runs (id, destination, kind, status, window_lo, window_hi, window_end, slot, tenant_id,
                                      object_key, encoding, compression, heartbeat_event_id, fencing_token,
                                      window_start, delivery, id_floor, max_object_bytes, event_schema)
             VALUES ($1, $2, 'scheduled', 'pending', $3::text::xid8, $4::text::xid8, $5, $6, $7, $8, $9, $10, $11, $12,
                     (SELECT max(window_end) FROM export_runs
                      WHERE destination = $2 AND kind = 'scheduled' AND status = 'done'),
                     $13, $14, $15, $16)
             ON CONFLICT (object_key) DO NOTHING
             RETURNING {RUN_COLUMNS}"
        );
        // A layout with few random characters ({rand5}) can repeat a key; a new run id gives a new one.
        let mut inserted = None;
        for _ in 0..8 {
            let id = Uuid::now_v7();
            inserted = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .bind(&lease.destination)
                .bind(lo)
                .bind(hi)
                .bind(window_end)
                .bind(new.slot)
                .bind(new.tenant_id)
                .bind(key(id, window_end))
                .bind(new.format.encoding.as_str())
                .bind(new.format.compression.as_str())
                .bind(heartbeat_event_id)
                .bind(lease.token)
                .bind(&new.delivery)
                .bind(id_floor)
                .bind(new.max_object_bytes)
                .bind(new.format.schema.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if inserted.is_some() {
                break;
            }
        }
        let row = inserted.ok_or_else(|| {
            anyhow::anyhow!("the key layout keeps producing keys that earlier runs used")
        })?;
        let run = run_from_row(&row)?;
        tx.commit().await?;
        Ok(run)
    }

    /// Notes that an upload of the run is starting, if the lease is still ours: a holder that
    /// lost it gets [`CommitError::LeaseLost`] and must not upload.
    pub async fn start_attempt(&self, lease: &Lease, run_id: Uuid) -> anyhow::Result<()> {
        let started = sqlx::query(
            "UPDATE export_runs r
             SET attempts = r.attempts + 1, started_at = COALESCE(r.started_at, clock_timestamp())
             FROM export_destinations d
             WHERE r.id = $1 AND d.name = r.destination AND d.fencing_token = $2 AND d.lease_owner = $3",
        )
        .bind(run_id)
        .bind(lease.token)
        .bind(&lease.owner)
        .execute(&self.pool)
        .await?;
        if started.rows_affected() != 1 {
            anyhow::bail!(CommitError::LeaseLost(lease.destination.clone()));
        }
        Ok(())
    }

    /// Records why an attempt failed, if the lease is still ours (a stale holder never
    /// overwrites the error of the current one); the run stays pending and is resumed unchanged.
    /// Whether it was recorded.
    pub async fn record_failure(
        &self,
        lease: &Lease,
        run_id: Uuid,
        error: &str,
    ) -> anyhow::Result<bool> {
        let recorded = sqlx::query(
            "UPDATE export_runs r SET last_error = $4
             FROM export_destinations d
             WHERE r.id = $1 AND d.name = r.destination AND d.fencing_token = $2 AND d.lease_owner = $3",
        )
        .bind(run_id)
        .bind(lease.token)
        .bind(&lease.owner)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(recorded.rows_affected() == 1)
    }

    /// In one transaction: moves the watermark from the run's start to its end, only if it is
    /// still there and the lease is still ours, marks the run done, and releases the lease.
    #[tracing::instrument(skip_all, fields(destination = %lease.destination, run_id = %run.id), err)]
    pub async fn commit_run(
        &self,
        lease: &Lease,
        run: &Run,
        event_count: i64,
        bytes: i64,
        sha256: Option<&str>,
        objects: i32,
    ) -> Result<(), CommitError> {
        let mut tx = self.pool.begin().await?;
        // The chain's head moves to the run's digest, if one was kept with it: in this
        // transaction, fenced like the watermark, so two holders never fork the chain.
        let moved = sqlx::query(
            "UPDATE export_destinations d
             SET watermark = $5::text::xid8, last_slot = GREATEST(d.last_slot, $6),
                 lease_owner = NULL, lease_expires_at = NULL,
                 chain_head_key = COALESCE(r.digest_key, d.chain_head_key),
                 chain_head_sha256 = COALESCE(encode(sha256(r.digest), 'hex'), d.chain_head_sha256),
                 chain_head_signature = COALESCE(encode(r.digest_signature, 'hex'), d.chain_head_signature),
                 chain_head_hi = CASE WHEN r.digest IS NULL THEN d.chain_head_hi ELSE r.window_hi END
             FROM export_runs r
             WHERE d.name = $1 AND d.fencing_token = $2 AND d.lease_owner = $3
               AND d.watermark = $4::text::xid8 AND r.id = $7",
        )
        .bind(&lease.destination)
        .bind(lease.token)
        .bind(&lease.owner)
        .bind(run.window_lo)
        .bind(run.window_hi)
        .bind(run.slot)
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE export_runs
             SET status = 'done', event_count = $2, bytes = $3, sha256 = $4, object_count = $5,
                 finished_at = clock_timestamp(), last_error = NULL
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(run.id)
        .bind(event_count)
        .bind(bytes)
        .bind(sha256)
        .bind(objects)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 || done.rows_affected() != 1 {
            return Err(CommitError::LeaseLost(lease.destination.clone()));
        }
        tx.commit().await?;
        Ok(())
    }
}

pub(super) fn run_from_row(row: &PgRow) -> anyhow::Result<Run> {
    let kind: String = row.try_get(2)?;
    let status: String = row.try_get(3)?;
    let encoding: String = row.try_get(10)?;
    let compression: String = row.try_get(11)?;
    let schema: String = row.try_get(27)?;
    Ok(Run {
        id: row.try_get(0)?,
        destination: row.try_get(1)?,
        kind: match kind.as_str() {
            "scheduled" => RunKind::Scheduled,
            "reexport" => RunKind::Reexport,
            _ => RunKind::Test,
        },
        status: match status.as_str() {
            "pending" => RunStatus::Pending,
            "done" => RunStatus::Done,
            "abandoned" => RunStatus::Abandoned,
            _ => RunStatus::Failed,
        },
        window_lo: row.try_get(4)?,
        window_hi: row.try_get(5)?,
        window_end: row.try_get(6)?,
        slot: row.try_get(7)?,
        tenant_id: row.try_get(8)?,
        object_key: row.try_get(9)?,
        format: Format {
            encoding: Encoding::parse(&encoding)
                .ok_or_else(|| anyhow::anyhow!("unknown encoding {encoding:?} in the run log"))?,
            compression: Compression::parse(&compression).ok_or_else(|| {
                anyhow::anyhow!("unknown compression {compression:?} in the run log")
            })?,
            schema: Schema::parse(&schema)
                .ok_or_else(|| anyhow::anyhow!("unknown schema {schema:?} in the run log"))?,
        },
        heartbeat_event_id: row.try_get(12)?,
        attempts: row.try_get(13)?,
        last_error: row.try_get(14)?,
        event_count: row.try_get(15)?,
        bytes: row.try_get(16)?,
        sha256: row.try_get(17)?,
        started_at: row.try_get(18)?,
        finished_at: row.try_get(19)?,
        range: match (row.try_get(20)?, row.try_get(21)?) {
            (Some(from), Some(to)) => Some((from, to)),
            _ => None,
        },
        object_count: row.try_get(22)?,
        window_start: row.try_get(23)?,
        delivery: row.try_get(24)?,
        id_floor: row.try_get(25)?,
        max_object_bytes: row.try_get(26)?,
    })
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Reexport => "reexport",
            Self::Test => "test",
        }
    }
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }
}
