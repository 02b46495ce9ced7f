//! What each command does, testable without a process. Output goes to the writer given.

mod append;
mod destination;
mod export;
mod integrity;
mod prune;
mod reexport;
mod status;
mod status_text;
mod verify;
mod warnings;

use std::io::Write;

use anyhow::Context;

pub use append::{AppendArgs, append};
pub use destination::{DestinationAction, destination, operator};
pub use export::{ExportSummary, export};
pub use integrity::{VerifyChainArgs, public_key, verify_chain};
pub use prune::{
    BATCH_IDS, Cutoff, PruneOutcome, PruneStopped, config_holds, held_line, parse_before, prune,
    prune_store, record_destinations, write_held,
};
pub use reexport::{ReexportSummary, check_range, parse_from_time, parse_time, reexport};
pub use status::status;
pub use verify::{VerifySummary, verify};
pub use warnings::unsigned_chains;

use crate::settings::{Destination, Settings, SettingsError, Target};
use crate::sink::{RemoteError, hint};
use crate::store::{Database, Store};

/// "1 event", "2 events": a count with its noun.
pub fn counted(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

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

/// Destinations exported at once: `run.parallel_exports`, within the pool that exists (not a
/// reloaded setting). Each export holds one connection while it streams its window and needs
/// at most one more at a time (its lease's renewal, a step of the run log), so at most half the
/// pool lets every export have both and a renewal is never starved by the streams.
pub fn parallel_exports(store: &Store, configured: u32) -> usize {
    let most = (store.max_connections() as usize / 2).max(1);
    match configured as usize {
        0 => most,
        n => n.min(most),
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

pub async fn migrate(settings: &Settings, out: &mut dyn Write) -> anyhow::Result<()> {
    let database = Database::connect(&settings.database).await?;
    let mended = database.store.migrate().await;
    database.close().await;
    for note in mended? {
        writeln!(out, "{note}")?;
    }
    writeln!(out, "migrations applied")?;
    Ok(())
}

/// Validates and prints the effective configuration, with warnings about destinations that
/// can never deliver as meant. It reads the database only to check tenant filters, only when a
/// url is set, with a read-only session; an unreachable database never fails the check.
pub async fn config_check(settings: &Settings, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "# configuration is valid; effective values, secrets redacted:"
    )?;
    if let Some(signing) = &settings.exporter.signing {
        writeln!(
            out,
            "# integrity: digests are signed with the Ed25519 key in {}, public key SHA-256 {}",
            signing.file.display(),
            signing.signer.public_key().fingerprint()
        )?;
    }
    for warning in warnings::shared_locations(settings) {
        writeln!(out, "# warning: {warning}")?;
    }
    match database_warnings(settings).await {
        Ok(found) => {
            for warning in found {
                writeln!(out, "# warning: {warning}")?;
            }
        }
        Err(e) => writeln!(out, "# note: {e:#}")?,
    }
    write!(out, "{}", settings.to_redacted_toml())?;
    Ok(())
}

/// Warnings that need the database: tenant filters no event has, and chains whose signing key
/// was removed. Checked only where they may apply, and only with a `database.url`.
async fn database_warnings(settings: &Settings) -> anyhow::Result<Vec<warnings::Warning>> {
    let tenants = settings.destinations.iter().any(|d| d.tenant_id.is_some());
    let unsigned = settings.exporter.signing.is_none() && !settings.destinations.is_empty();
    if !tenants && !unsigned {
        return Ok(Vec::new());
    }
    if settings.database.url.is_none() {
        if !tenants {
            // Whether a chain began is told again by `run` at start.
            return Ok(Vec::new());
        }
        anyhow::bail!(
            "tenant_id values were not checked: no database.url is set (the embedded PostgreSQL is not started for a check)"
        );
    }
    let what = if tenants {
        "tenant_id values were not checked"
    } else {
        "whether a signed digest chain began was not checked"
    };
    let database = Database::connect_read_only(&settings.database)
        .await
        .context(what)?;
    let result = async {
        let missing = database.store.unapplied_migrations().await?;
        if missing.len() == crate::store::migration_count() {
            if !tenants {
                // No chain can have begun.
                return Ok(Vec::new());
            }
            anyhow::bail!("{}", status::not_migrated(&missing));
        }
        let mut found = Vec::new();
        if tenants {
            found.extend(warnings::tenants_without_events(&database.store, settings).await?);
        }
        found.extend(warnings::unsigned_chains(&database.store, settings).await?);
        Ok(found)
    }
    .await
    .context(what);
    database.close().await;
    result
}

/// The hint for the innermost S3 or STS error in the chain: the one that says what went wrong.
pub(crate) fn hint_for(error: &anyhow::Error, destination: &Destination) -> Option<String> {
    let Target::S3(target) = &destination.target else {
        return None;
    };
    let remote = error
        .chain()
        .filter_map(|e| e.downcast_ref::<RemoteError>())
        .last()?;
    hint(remote, target)
}
