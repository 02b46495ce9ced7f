//! Per-destination state and leases: the right to export a destination, with a fencing token
//! that stops a process which lost it from committing.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Store;
use crate::domain::{Schedule, TimeOfDay};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationState {
    pub name: String,
    pub watermark: i64,
    pub schedule: Schedule,
    pub last_slot: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub fencing_token: i64,
    /// The database's clock when the state was read.
    pub read_at: DateTime<Utc>,
}

/// The right to export a destination, until `expires_at` unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub destination: String,
    pub owner: String,
    pub token: i64,
    pub watermark: i64,
}

#[derive(Debug)]
pub enum Claim {
    Granted(Lease),
    /// Another process holds the lease.
    Busy {
        owner: String,
        expires_at: DateTime<Utc>,
    },
}

impl Store {
    /// Records the destination (its schedule included) and returns its state, read on the
    /// database's clock. A new destination, or a changed `every_hours` or `schedule_at`, is
    /// anchored anew after the database's `now`; a due time the old schedule had not served
    /// stays due (so two configs that disagree never postpone an export).
    #[tracing::instrument(skip_all, fields(destination = name), err)]
    pub async fn sync_destination(
        &self,
        name: &str,
        every_hours: u8,
        schedule_at: Option<TimeOfDay>,
    ) -> anyhow::Result<DestinationState> {
        let state = match self.destination_state(name).await? {
            Some(state) => state,
            None => {
                let now = self.now().await?;
                sqlx::query(
                    "INSERT INTO export_destinations (name, every_hours, schedule_at, anchor)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(i32::from(every_hours))
                .bind(schedule_at.map(TimeOfDay::as_naive))
                .bind(Schedule::anchor_after(now, every_hours, schedule_at))
                .execute(&self.pool)
                .await?;
                read_state(&self.pool, name, false).await?
            }
        };
        if state.schedule.is_set_as(every_hours, schedule_at) {
            return Ok(state);
        }
        // Changed: re-anchor under the row's lock, so concurrent syncs agree on what was due.
        let mut tx = self.pool.begin().await?;
        let mut state = read_state(&mut *tx, name, true).await?;
        if !state.schedule.is_set_as(every_hours, schedule_at) {
            let changed =
                state
                    .schedule
                    .changed(state.read_at, state.last_slot, every_hours, schedule_at);
            sqlx::query(
                "UPDATE export_destinations
                 SET every_hours = $2, schedule_at = $3, anchor = $4, carried_due = $5
                 WHERE name = $1",
            )
            .bind(name)
            .bind(i32::from(every_hours))
            .bind(schedule_at.map(TimeOfDay::as_naive))
            .bind(changed.anchor())
            .bind(changed.carried())
            .execute(&mut *tx)
            .await?;
            state.schedule = changed;
        }
        tx.commit().await?;
        Ok(state)
    }

    /// The database's clock, which leases and schedules go by.
    pub async fn now(&self) -> anyhow::Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn destination_state(&self, name: &str) -> anyhow::Result<Option<DestinationState>> {
        match read_state(&self.pool, name, false).await {
            Ok(state) => Ok(Some(state)),
            Err(e) if matches!(e.downcast_ref(), Some(sqlx::Error::RowNotFound)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the lease unless another live holder has it. Every grant bumps the fencing token.
    #[tracing::instrument(skip_all, fields(destination = name), err)]
    pub async fn claim(&self, name: &str, owner: &str, lease_secs: u32) -> anyhow::Result<Claim> {
        let granted = sqlx::query(
            "UPDATE export_destinations
             SET lease_owner = $2, lease_expires_at = clock_timestamp() + make_interval(secs => $3),
                 fencing_token = fencing_token + 1
             WHERE name = $1
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < clock_timestamp())
             RETURNING fencing_token, watermark::text::bigint",
        )
        .bind(name)
        .bind(owner)
        .bind(f64::from(lease_secs))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = granted {
            return Ok(Claim::Granted(Lease {
                destination: name.to_owned(),
                owner: owner.to_owned(),
                token: row.try_get(0)?,
                watermark: row.try_get(1)?,
            }));
        }
        let row = sqlx::query(
            "SELECT lease_owner, lease_expires_at FROM export_destinations WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(Claim::Busy {
            owner: row.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
            expires_at: row
                .try_get::<Option<DateTime<Utc>>, _>(1)?
                .unwrap_or_else(Utc::now),
        })
    }

    /// Extends the lease; `false` when it was lost.
    pub async fn renew(&self, lease: &Lease, lease_secs: u32) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE export_destinations SET lease_expires_at = clock_timestamp() + make_interval(secs => $4)
             WHERE name = $1 AND fencing_token = $2 AND lease_owner = $3",
        )
        .bind(&lease.destination)
        .bind(lease.token)
        .bind(&lease.owner)
        .bind(f64::from(lease_secs))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release(&self, lease: &Lease) -> anyhow::Result<()> {
        release(&self.pool, lease).await
    }
}

/// The destination's state, its row locked when `lock`; `RowNotFound` when it is not recorded.
async fn read_state<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    name: &str,
    lock: bool,
) -> anyhow::Result<DestinationState> {
    let select = format!("SELECT {STATE_COLUMNS} FROM export_destinations WHERE name = $1");
    let sql = if lock {
        format!("{select} FOR UPDATE")
    } else {
        select
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_one(executor)
        .await?;
    state_of(&row)
}

/// The columns a state is read from, in [`state_of`]'s order.
pub(super) const STATE_COLUMNS: &str =
    "name, watermark::text::bigint, anchor, every_hours, last_slot, lease_owner,
     lease_expires_at, fencing_token, schedule_at, carried_due, clock_timestamp()";

/// A destination's state from a row of [`STATE_COLUMNS`].
pub(super) fn state_of(row: &sqlx::postgres::PgRow) -> anyhow::Result<DestinationState> {
    let every_hours: i32 = row.try_get(3)?;
    let at: Option<chrono::NaiveTime> = row.try_get(8)?;
    Ok(DestinationState {
        name: row.try_get(0)?,
        watermark: row.try_get(1)?,
        schedule: Schedule::new(row.try_get(2)?, u8::try_from(every_hours)?)
            .with_stored(at.map(TimeOfDay::from_naive), row.try_get(9)?),
        last_slot: row.try_get(4)?,
        lease_owner: row.try_get(5)?,
        lease_expires_at: row.try_get(6)?,
        fencing_token: row.try_get(7)?,
        read_at: row.try_get(10)?,
    })
}

/// Frees the lease if it is still this holder's, on the pool or inside a caller's transaction.
pub(super) async fn release(
    executor: impl sqlx::PgExecutor<'_>,
    lease: &Lease,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE export_destinations SET lease_owner = NULL, lease_expires_at = NULL
         WHERE name = $1 AND fencing_token = $2 AND lease_owner = $3",
    )
    .bind(&lease.destination)
    .bind(lease.token)
    .bind(&lease.owner)
    .execute(executor)
    .await?;
    Ok(())
}
