//! The run log: planned runs, their attempts, and the watermark's compare-and-set commit.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use super::leases::Lease;
use super::run_row::{RUN_COLUMNS, run_from_row};
use crate::domain::{Format, day_key, part_key};

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
    /// Its objects are cut by the day (UTC) of their events, each under its own day: its
    /// `object_key` holds `{YYYY}`, `{MM}` and `{DD}` where the day goes ([`Run::key_of`]).
    pub by_day: bool,
}

impl Run {
    /// The key of its object `seq`, which holds events of `day` when the run is cut by day.
    pub fn key_of(&self, seq: u32, day: Option<NaiveDate>) -> String {
        match (self.by_day, day) {
            (true, Some(day)) => part_key(&day_key(&self.object_key, day), seq),
            _ => part_key(&self.object_key, seq),
        }
    }

    /// The day of an object that holds no event (a heartbeat's is the window's end).
    pub fn default_day(&self) -> Option<NaiveDate> {
        self.by_day.then(|| self.window_end.date_naive())
    }
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
    /// Cut by event day (see `Run::by_day`); `key` then leaves the day fields in.
    pub by_day: bool,
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
                                      window_start, delivery, id_floor, max_object_bytes, event_schema,
                                      partition_by_day)
             VALUES ($1, $2, 'scheduled', 'pending', $3::text::xid8, $4::text::xid8, $5, $6, $7, $8, $9, $10, $11, $12,
                     (SELECT max(window_end) FROM export_runs
                      WHERE destination = $2 AND kind = 'scheduled' AND status = 'done'),
                     $13, $14, $15, $16, $17)
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
                .bind(new.by_day)
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
