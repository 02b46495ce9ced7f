//! The embedded migrations, applied one process at a time, with the leftover of an interrupted
//! concurrent index build mended first.
//!
//! Some migrations build an index with `CREATE INDEX CONCURRENTLY` (no transaction, so the
//! application's inserts are never blocked). Such a build waits for every transaction of the
//! database that is older than it, and an interrupted one leaves an INVALID index behind that
//! `IF NOT EXISTS` would take for done. Hence:
//! - processes take turns with a polled advisory lock (`pg_try_advisory_lock`): a process
//!   blocked in `pg_advisory_lock` holds a snapshot the build waits for, while the build's
//!   session holds the lock it waits for — a deadlock PostgreSQL resolves by failing one;
//! - an INVALID index of a name a migration builds is dropped and built again, and the caller
//!   is told so.

use std::time::Duration;

use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgConnection, Postgres};

use super::{Store, connect_error};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The indexes built concurrently, and the migration that builds each.
const CONCURRENT_INDEXES: &[(&str, i64)] = &[("audit_events_tenant_txid_id", 20261129000041)];

/// The advisory lock processes take turns with (distinct from sqlx's own, which its migrator
/// takes inside it).
const MIGRATE_LOCK: i64 = 0x6175_6469_745f_6d67; // "audit_mg"
/// How often a process waiting for another's migration asks again.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// How many migrations this version embeds.
pub fn migration_count() -> usize {
    MIGRATOR.iter().count()
}

impl Store {
    /// Applies the embedded migrations; idempotent, and safe from several processes at once.
    /// Returns what was mended on the way (an interrupted index build, dropped and built again),
    /// each said in a sentence; it is also logged.
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        let result = self.migrate_on(&mut conn).await;
        // Whatever happened, the session ends here, its advisory lock and setting with it; and
        // awaited, not left to a task on drop: a caller that then blocks its thread (waiting
        // for a child process that migrates too) would hold the lock until it returns.
        let _ = conn.close().await;
        match result {
            Err(e) => match connect_error::permission_denied(&e) {
                Some(denied) => {
                    let user: String = sqlx::query_scalar("SELECT current_user::text")
                        .fetch_one(&self.pool)
                        .await
                        .unwrap_or_else(|_| "this role".into());
                    Err(connect_error::migration_denied(&user, &denied))
                }
                None => Err(anyhow::Error::new(e).context("Failed to apply the migrations")),
            },
            Ok(mended) => Ok(mended),
        }
    }

    async fn migrate_on(
        &self,
        conn: &mut PoolConnection<Postgres>,
    ) -> Result<Vec<String>, sqlx::migrate::MigrateError> {
        // An index build may take long on a large table: no role's timeout may cut it short.
        conn.execute("SET statement_timeout = 0").await?;
        let mut said = false;
        while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATE_LOCK)
            .fetch_one(&mut **conn)
            .await?
        {
            if !said {
                tracing::info!("Another process is applying the migrations; waiting for it.");
                said = true;
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
        let mended = mend_interrupted_builds(conn).await?;
        MIGRATOR.run(&mut **conn).await?;
        for (index, version) in CONCURRENT_INDEXES {
            if invalid(conn, index).await? {
                // Only a build running in another session, out of our lock, could get here.
                return Err(sqlx::migrate::MigrateError::ExecuteMigration(
                    sqlx::Error::Protocol(format!(
                        "index {index} is still INVALID after its build"
                    )),
                    *version,
                ));
            }
        }
        Ok(mended)
    }

    /// The embedded migrations this database has not applied (all of them when it was never
    /// migrated), as "VERSION DESCRIPTION"; reads only.
    pub async fn unapplied_migrations(&self) -> anyhow::Result<Vec<String>> {
        let applied = applied_versions(&mut *self.pool.acquire().await?).await?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect())
    }

    /// Whether the index `name` exists and is INVALID (a concurrent build that did not finish).
    pub async fn index_is_invalid(&self, name: &str) -> anyhow::Result<bool> {
        let mut conn = self.pool.acquire().await?;
        Ok(invalid(&mut conn, name).await?)
    }
}

async fn applied_versions(conn: &mut PgConnection) -> sqlx::Result<Vec<i64>> {
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !migrated {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(conn)
        .await
}

async fn invalid(conn: &mut PoolConnection<Postgres>, index: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                        WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace
                          AND NOT i.indisvalid)",
    )
    .bind(index)
    .fetch_one(&mut **conn)
    .await
}

/// Drops the INVALID leftover of every interrupted concurrent build and, when its migration
/// was already recorded, builds it again with that migration's statement.
async fn mend_interrupted_builds(
    conn: &mut PoolConnection<Postgres>,
) -> Result<Vec<String>, sqlx::migrate::MigrateError> {
    let mut mended = Vec::new();
    for (index, version) in CONCURRENT_INDEXES {
        if !invalid(conn, index).await? {
            continue;
        }
        let message = format!(
            "index {index} was left INVALID by an interrupted build: dropped and built again"
        );
        tracing::warn!(index, "{message}.");
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {index}");
        conn.execute(sqlx::AssertSqlSafe(drop)).await?;
        if applied_versions(conn).await?.contains(version) {
            let migration = MIGRATOR
                .iter()
                .find(|m| m.version == *version)
                .context("no such migration")
                .map_err(|e| sqlx::migrate::MigrateError::Source(e.into()))?;
            conn.execute(migration.sql.clone()).await?;
        }
        mended.push(message);
    }
    Ok(mended)
}
