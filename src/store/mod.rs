//! PostgreSQL: the event store and the coordination engine (leases, run log, watermarks).

mod chain;
mod connect_error;
mod copy;
mod copy_out;
mod destinations;
mod embedded;
mod events;
mod horizon;
mod leases;
mod migrate;
mod overview;
mod prune_log;
mod prune_run;
mod ranges;
mod retention;
mod run_objects;
mod run_row;
mod runs;
mod side_runs;
mod stream;
mod waiting;

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub use chain::{ChainHead, ChainRecord, KeptDigest, RunFate, Written};
pub use connect_error::unreachable;
pub use copy::{CopyDecoder, Irregular};
pub use copy_out::CopyOut;
pub use destinations::{Forgotten, KnownDestination, Operator, Reset};
pub use embedded::EmbeddedPostgres;
pub use events::{After, NewEvent};
pub use horizon::{Horizon, OpenTransaction, PreparedTransaction};
pub use leases::{Claim, DestinationState, Lease};
pub use migrate::migration_count;
pub use overview::Overview;
pub use prune_log::{PruneRecord, PrunedDeliveries};
pub use prune_run::{PRUNE_LEASE_SECS, PruneEnd, PruneUnder};
pub use ranges::Range;
pub use retention::{HeldBack, HoldReason, PruneBatch, StreamState};
pub use run_objects::RunObject;
pub use runs::{CommitError, NewRun, Run, RunKind, RunStatus};
pub use stream::StreamError;
pub use waiting::Waiting;

use crate::settings::{DatabaseSettings, SQLX_URL_PARAMETERS};

/// How long a session of the exporter may sit idle inside a transaction before PostgreSQL ends
/// it: a second line of defence against a transaction left open by a connection whose answers
/// were not read, which would hold row locks and the horizon of the whole server. No step of an
/// export waits this long inside a transaction (the longest, planning, waits at most the pool's
/// 30 s acquire timeout for a second connection).
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";

/// The database the embedded server holds the events in.
pub const EMBEDDED_DATABASE: &str = "audit";

/// The event store and export state, over a connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

/// A connected store, and the embedded server behind it if there is one (stopped on drop).
#[derive(Debug)]
pub struct Database {
    pub store: Store,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects to `database.url`, or starts the embedded server when none is set.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::connect_as(settings, Access::ReadWrite).await
    }

    /// Connects with every transaction read-only, for the commands that only look
    /// (`status`, `config check`): they can never write, whatever they run.
    pub async fn connect_read_only(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::connect_as(settings, Access::ReadOnly).await
    }

    async fn connect_as(settings: &DatabaseSettings, access: Access) -> anyhow::Result<Self> {
        let (url, embedded) = locate(settings).await?;
        let store = Store::connect_with(&url, &pool_settings(settings, access)).await?;
        Ok(Self { store, embedded })
    }

    /// Like [`Database::connect`], but opens no connection yet: the first query does, so a
    /// service can start while the database is down and wait for it.
    pub async fn connect_lazy(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let (url, embedded) = locate(settings).await?;
        let store = Store::connect_lazy_with(&url, &pool_settings(settings, Access::ReadWrite))?;
        Ok(Self { store, embedded })
    }
}

fn pool_settings(settings: &DatabaseSettings, access: Access) -> PoolSettings {
    PoolSettings {
        max_connections: settings.max_connections,
        connect_timeout: settings.connect_timeout,
        access,
    }
}

/// The URL to connect to: `database.url`, or that of the embedded server, started for it.
async fn locate(settings: &DatabaseSettings) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    Ok(match &settings.url {
        Some(url) => (url.expose_secret().to_owned(), None),
        None => {
            tracing::warn!(
                data_dir = %settings.embedded_dir.display(),
                "No database.url is set: using an embedded PostgreSQL, meant for trying audit-exporter out."
            );
            let dir = settings.embedded_dir.clone();
            let server = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, &[]))
                .await?
                .context("Failed to start the embedded PostgreSQL")?;
            create_database(&server.url("postgres"), EMBEDDED_DATABASE).await?;
            (server.url(EMBEDDED_DATABASE), Some(server))
        }
    })
}

/// Whether a pool's sessions may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

/// How a pool is opened.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long the first connection may take before the server counts as unreachable.
    pub connect_timeout: Duration,
    pub access: Access,
}

impl Database {
    /// Closes the pool, then stops the embedded server if there is one.
    pub async fn close(self) {
        self.store.pool.close().await;
        drop(self.embedded);
    }
}

fn connect_options(url: &str, access: Access) -> anyhow::Result<PgConnectOptions> {
    let (url, ignored) = known_parameters_only(url);
    if !ignored.is_empty() {
        tracing::warn!(
            parameters = %ignored.join(", "),
            "database.url: connection parameters that audit-exporter does not support are ignored."
        );
    }
    let options = url
        .parse::<PgConnectOptions>()
        .context("database.url is not a PostgreSQL URL; allowed: postgres://user[:password]@host[:port]/database")?
        .application_name("audit-exporter")
        .options([(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        )])
        .log_statements(tracing::log::LevelFilter::Debug);
    let options = connect_error::unbracket(options);
    Ok(match access {
        Access::ReadOnly => options.options([("default_transaction_read_only", "on")]),
        Access::ReadWrite => options,
    })
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
}

/// Creates `name` on the server at `admin_url` unless it exists.
pub async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = admin_url
        .parse::<PgConnectOptions>()?
        .log_statements(tracing::log::LevelFilter::Debug)
        .connect()
        .await
        .context("Failed to connect to the PostgreSQL server")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .with_context(|| format!("Failed to create database {name}"))?;
    }
    Ok(())
}

/// The URL without the parameters sqlx does not read, and their names.
fn known_parameters_only(url: &str) -> (String, Vec<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), Vec::new());
    };
    let (known, unknown): (Vec<_>, Vec<_>) = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .partition(|(k, _)| SQLX_URL_PARAMETERS.contains(&k.as_str()) || k.starts_with("options["));
    if unknown.is_empty() {
        return (url.to_owned(), Vec::new());
    }
    if known.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(known);
    }
    (parsed.into(), unknown.into_iter().map(|(k, _)| k).collect())
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PoolSettings {
            max_connections,
            connect_timeout: Duration::from_secs(30),
            access: Access::ReadWrite,
        };
        Self::connect_with(url, &pool).await
    }

    /// Opens a pool once a first connection has answered within the connect timeout; an error
    /// names the server and the cause, never the password.
    pub async fn connect_with(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        let options = connect_options(url, settings.access)?;
        connect_error::probe(&options, settings.connect_timeout).await?;
        let pool = pool_options(settings.max_connections)
            .connect_with(options.clone())
            .await
            .map_err(|e| connect_error::describe(&options, &e, settings.connect_timeout))?;
        Ok(Self { pool })
    }

    /// A store whose pool connects at its first query.
    pub fn connect_lazy(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PoolSettings {
            max_connections,
            connect_timeout: Duration::from_secs(30),
            access: Access::ReadWrite,
        };
        Self::connect_lazy_with(url, &pool)
    }

    pub fn connect_lazy_with(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        let options = connect_options(url, settings.access)?;
        let pool = pool_options(settings.max_connections).connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// The most connections the pool opens (`database.max_connections` at start).
    pub fn max_connections(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    /// Opens one connection of its own, outside the pool, so the error says at once why the
    /// database cannot be reached (a pool keeps retrying until its acquire timeout).
    pub async fn try_connect(&self, timeout: Duration) -> anyhow::Result<()> {
        connect_error::probe(&self.pool.connect_options(), timeout).await
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `error` said once if the server returned it, naming this pool's role and the grant it
    /// lacks when a privilege was refused (see [`connect_error::explain`]).
    pub fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        connect_error::explain(error, self.pool.connect_options().get_username())
    }
}

#[cfg(test)]
mod tests {
    use super::known_parameters_only;

    #[test]
    fn parameters_sqlx_does_not_read_are_dropped_by_name() {
        let (url, ignored) = known_parameters_only(
            "postgres://u:pw@h/db?sslmode=require&sslpassword=secret&options[x]=1",
        );
        assert_eq!(url, "postgres://u:pw@h/db?sslmode=require&options%5Bx%5D=1");
        assert_eq!(ignored, ["sslpassword"]);
        let (url, ignored) = known_parameters_only("postgres://u@h/db?sslpassword=secret");
        assert_eq!((url.as_str(), ignored.len()), ("postgres://u@h/db", 1));
        let plain = "postgres://u@h/db?sslmode=disable";
        assert_eq!(known_parameters_only(plain), (plain.to_owned(), vec![]));
    }
}
