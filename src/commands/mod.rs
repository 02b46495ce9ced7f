//! What each command does, testable without a process. Output goes to the writer given.

mod append;
mod export;
mod reexport;
mod status;
mod verify;

use std::io::Write;

pub use append::{AppendArgs, append};
pub use export::{ExportSummary, export};
pub use reexport::{ReexportSummary, check_range, parse_time, reexport};
pub use status::status;
pub use verify::{VerifySummary, verify};

use crate::settings::{Settings, SettingsError};
use crate::store::{Database, Store};

/// Bad usage: a command-line value that is not allowed. Exit code 2, like bad configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error: 2 for bad usage or configuration, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    let usage = error
        .chain()
        .any(|e| e.is::<SettingsError>() || e.is::<UsageError>());
    if usage { 2 } else { 1 }
}

/// Connects (starting the embedded server if no URL is set) and migrates when configured to.
pub async fn open(settings: &Settings) -> anyhow::Result<Database> {
    let database = Database::connect(&settings.database).await?;
    if settings.database.migrate_on_start {
        database.store.migrate().await?;
    }
    Ok(database)
}

/// Destinations exported at once, from the pool that exists (not a reloaded setting): each
/// export holds one connection while it streams its window and needs at most one more at a
/// time (its lease's renewal, a step of the run log), so half the pool lets every export have
/// both and a renewal is never starved by the streams.
pub fn parallel_exports(store: &Store) -> usize {
    (store.max_connections() as usize / 2).max(1)
}

pub async fn migrate(settings: &Settings, out: &mut dyn Write) -> anyhow::Result<()> {
    let database = Database::connect(&settings.database).await?;
    database.store.migrate().await?;
    database.close().await;
    writeln!(out, "migrations applied")?;
    Ok(())
}

pub fn config_check(settings: &Settings, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "# configuration is valid; effective values, secrets redacted:"
    )?;
    write!(out, "{}", settings.to_redacted_toml())?;
    Ok(())
}
