//! What holds the export horizon back: the oldest transaction still open, in any database of
//! the server, and the oldest prepared transaction. Exports wait for them; they lose nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::Store;

/// Who holds the horizon back, never what it runs: another session's SQL text may hold secrets
/// (`ALTER ROLE … PASSWORD '…'`), so it is not read at all.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OpenTransaction {
    pub pid: i32,
    pub user: Option<String>,
    pub application: Option<String>,
    pub database: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub state: Option<String>,
    /// How long the transaction has been open.
    pub age_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PreparedTransaction {
    pub gid: String,
    pub database: String,
    pub prepared_at: DateTime<Utc>,
    pub age_secs: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Horizon {
    pub oldest_transaction: Option<OpenTransaction>,
    pub oldest_prepared: Option<PreparedTransaction>,
}

impl Store {
    pub async fn horizon(&self) -> anyhow::Result<Horizon> {
        let open = sqlx::query(
            "SELECT pid, usename::text, application_name, datname::text, xact_start, state,
                    extract(epoch FROM clock_timestamp() - xact_start)::bigint
             FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
             ORDER BY age(backend_xid) DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let prepared = sqlx::query(
            "SELECT gid, database::text, prepared, extract(epoch FROM clock_timestamp() - prepared)::bigint
             FROM pg_prepared_xacts ORDER BY age(transaction) DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(Horizon {
            oldest_transaction: open
                .map(|r| -> anyhow::Result<_> {
                    Ok(OpenTransaction {
                        pid: r.try_get(0)?,
                        user: r.try_get(1)?,
                        application: r.try_get::<Option<String>, _>(2)?.filter(|a| !a.is_empty()),
                        database: r.try_get(3)?,
                        started_at: r.try_get(4)?,
                        state: r.try_get(5)?,
                        age_secs: r.try_get(6)?,
                    })
                })
                .transpose()?,
            oldest_prepared: prepared
                .map(|r| -> anyhow::Result<_> {
                    Ok(PreparedTransaction {
                        gid: r.try_get(0)?,
                        database: r.try_get(1)?,
                        prepared_at: r.try_get(2)?,
                        age_secs: r.try_get(3)?,
                    })
                })
                .transpose()?,
        })
    }
}
