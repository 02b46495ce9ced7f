//! Per-destination state and leases: the right to export a destination, with a fencing token
//! that stops a process which lost it from committing.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Store;
use crate::domain::Schedule;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationState {
    pub name: String,
    pub watermark: i64,
    pub schedule: Schedule,
    pub last_slot: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub fencing_token: i64,
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
    /// Records the destination (its frequency included) and returns its state. A new or changed
    /// `every_hours` re-anchors the schedule at the next full hour after `now`.
    pub async fn sync_destination(
        &self,
        name: &str,
        every_hours: u8,
        now: DateTime<Utc>,
    ) -> anyhow::Result<DestinationState> {
        sqlx::query(
            "INSERT INTO export_destinations (name, every_hours, anchor) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET every_hours = EXCLUDED.every_hours, anchor = EXCLUDED.anchor
             WHERE export_destinations.every_hours <> EXCLUDED.every_hours",
        )
        .bind(name)
        .bind(i32::from(every_hours))
        .bind(Schedule::anchor_after(now))
        .execute(&self.pool)
        .await?;
        self.destination_state(name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("destination `{name}` vanished"))
    }

    pub async fn destination_state(&self, name: &str) -> anyhow::Result<Option<DestinationState>> {
        let row = sqlx::query(
            "SELECT name, watermark::text::bigint, anchor, every_hours, last_slot, lease_owner, lease_expires_at,
                    fencing_token
             FROM export_destinations WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let every_hours: i32 = row.try_get(3)?;
        Ok(Some(DestinationState {
            name: row.try_get(0)?,
            watermark: row.try_get(1)?,
            schedule: Schedule::new(row.try_get(2)?, u8::try_from(every_hours)?),
            last_slot: row.try_get(4)?,
            lease_owner: row.try_get(5)?,
            lease_expires_at: row.try_get(6)?,
            fencing_token: row.try_get(7)?,
        }))
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
        sqlx::query(
            "UPDATE export_destinations SET lease_owner = NULL, lease_expires_at = NULL
             WHERE name = $1 AND fencing_token = $2 AND lease_owner = $3",
        )
        .bind(&lease.destination)
        .bind(lease.token)
        .bind(&lease.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
