//! `destination list | cancel | reset | forget`: an operator's hold on a destination's stream.
//! cancel, reset and forget take the destination's lease like an export, so they never race a
//! live exporter, and each appends a `system.export.*` event to the audit log.

use std::io::Write;

use super::UsageError;
use crate::domain::Start;
use crate::domain::part_key;
use crate::export::{Exporter, discard_leftovers};
use crate::settings::{Destination, Settings};
use crate::store::{Claim, Forgotten, KnownDestination, Lease, Operator, Run, RunObject, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationAction {
    List,
    Cancel { name: String },
    Reset { name: String, start: Start },
    Forget { name: String },
}

pub async fn destination(
    settings: &Settings,
    action: &DestinationAction,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let DestinationAction::Reset { name, .. } = action {
        configured(settings, name)?;
    }
    if let DestinationAction::Forget { name } = action
        && settings.destinations.iter().any(|d| &d.name == name)
    {
        return Err(UsageError(format!(
            "destination forget {name}: `{name}` is in the configuration; remove its [destinations.{name}] table first (forget drops the state of a destination no longer exported)"
        ))
        .into());
    }
    let database = super::open(settings).await?;
    let store = &database.store;
    let result = match action {
        DestinationAction::List => list(store, settings, out).await,
        DestinationAction::Cancel { name } => cancel(store, settings, name, out).await,
        DestinationAction::Reset { name, start } => {
            reset(store, settings, configured(settings, name)?, *start, out).await
        }
        DestinationAction::Forget { name } => forget(store, settings, name, out).await,
    };
    database.close().await;
    result
}

fn configured<'a>(settings: &'a Settings, name: &str) -> Result<&'a Destination, UsageError> {
    settings
        .destinations
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| {
            let known: Vec<_> = settings.destinations.iter().map(|d| d.name.as_str()).collect();
            UsageError(format!(
                "destination reset {name}: no such destination in the configuration (reset adopts its tenant_id); configured: {}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })
}

async fn list(store: &Store, settings: &Settings, out: &mut dyn Write) -> anyhow::Result<()> {
    let known = store.known_destinations().await?;
    let cluster = store.cluster_id().await?;
    for destination in &known {
        let mut line = describe(destination, settings);
        if let Some((run, reason)) = &destination.abandoned {
            let delivered = store.run_objects(run.id).await?;
            line.push_str(&format!(
                "; abandoned run {} ({}): {reason}",
                run.id,
                left_behind(run, &delivered)
            ));
        }
        let current = settings
            .destinations
            .iter()
            .find(|d| d.name == destination.name);
        if let Some(current) = current
            && destination.forgotten_at.is_none()
            && let Some(refused) = store
                .stream_refusal(
                    &current.name,
                    current.tenant_id.as_deref(),
                    cluster.as_deref(),
                )
                .await?
        {
            line.push_str(&format!("; refused: {refused}"));
        }
        writeln!(out, "{line}")?;
    }
    for configured in &settings.destinations {
        if !known.iter().any(|k| k.name == configured.name) {
            writeln!(
                out,
                "{}: not recorded yet (starts at {} on its first export)",
                configured.name, configured.start
            )?;
        }
    }
    if known.is_empty() && settings.destinations.is_empty() {
        writeln!(out, "no destination is configured or recorded")?;
    }
    Ok(())
}

/// One line per destination: its watermark and filter, then what needs an operator's eye.
fn describe(destination: &KnownDestination, settings: &Settings) -> String {
    let mut line = format!(
        "{}: watermark {}, tenant_id {}",
        destination.name,
        destination.watermark,
        destination.tenant_id.as_deref().unwrap_or("(every tenant)")
    );
    if let Some(at) = destination.forgotten_at {
        line.push_str(&format!("; forgotten at {}", at.to_rfc3339()));
    } else if !settings
        .destinations
        .iter()
        .any(|d| d.name == destination.name)
    {
        line.push_str("; not in the configuration (`destination forget` drops its state)");
    }
    if let Some(run) = &destination.pending {
        line.push_str(&format!(
            "; pending run {} to {} ({} attempts{})",
            run.id,
            run.object_key,
            run.attempts,
            run.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ));
    }
    if let Some(owner) = &destination.lease_owner {
        line.push_str(&format!("; lease held by {owner}"));
    }
    line
}

async fn cancel(
    store: &Store,
    settings: &Settings,
    name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let lease = lease(store, settings, name, "cancel").await?;
    match store.cancel_run(&lease, &operator()).await? {
        Some(run) => {
            let delivered = store.run_objects(run.id).await?;
            discard_leftovers(&run, delivered.len()).await;
            writeln!(
                out,
                "{name}: cancelled the pending run {}; {}{}; the watermark stays at {}",
                run.id,
                left_behind(&run, &delivered),
                place(&run),
                lease.watermark
            )?
        }
        None => writeln!(out, "{name}: no pending run; nothing to cancel")?,
    }
    Ok(())
}

async fn reset(
    store: &Store,
    settings: &Settings,
    destination: &Destination,
    start: Start,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let name = &destination.name;
    store
        .sync_destination(name, destination.every_hours, destination.schedule_at)
        .await?;
    let lease = lease(store, settings, name, "reset").await?;
    if let Some(run) = store.pending_run(name).await? {
        store.release(&lease).await?;
        anyhow::bail!(
            "destination reset {name}: refused: run {} is pending (key {}); cancel it first with `audit-exporter destination cancel {name}`",
            run.id,
            run.object_key
        );
    }
    let cluster = store.cluster_id().await?;
    let tenant = destination.tenant_id.as_deref();
    let reset = store
        .reset_stream(&lease, tenant, start, cluster.as_deref(), &operator())
        .await?;
    writeln!(
        out,
        "{name}: reset; the stream starts at {start}: watermark {} -> {}, tenant_id {} -> {}",
        reset.old_watermark,
        reset.new_watermark,
        reset.old_tenant_id.as_deref().unwrap_or("(every tenant)"),
        tenant.unwrap_or("(every tenant)")
    )?;
    if reset.cluster_moved {
        writeln!(
            out,
            "{name}: re-based on this database cluster; events up to id {} were copied from the old cluster and are left out",
            reset
                .id_floor
                .map_or("(none)".to_owned(), |f| f.to_string())
        )?;
    }
    Ok(())
}

async fn forget(
    store: &Store,
    settings: &Settings,
    name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let lease = lease(store, settings, name, "forget").await?;
    let abandoned = match store.forget_destination(&lease, &operator()).await? {
        Forgotten::Now(abandoned) => abandoned,
        Forgotten::Already(at) => {
            writeln!(
                out,
                "{name}: already forgotten at {}; nothing changed",
                at.to_rfc3339()
            )?;
            return Ok(());
        }
    };
    write!(
        out,
        "{name}: forgotten; its runs stay in the log, and it starts anew per its `start` if configured again"
    )?;
    if let Some(run) = abandoned {
        let delivered = store.run_objects(run.id).await?;
        discard_leftovers(&run, delivered.len()).await;
        write!(
            out,
            "; abandoned the pending run {} ({}{})",
            run.id,
            left_behind(&run, &delivered),
            place(&run)
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// The destination's lease, as an export would take it; refused while another holds it.
async fn lease(
    store: &Store,
    settings: &Settings,
    name: &str,
    command: &str,
) -> anyhow::Result<Lease> {
    if store.destination_state(name).await?.is_none() {
        let known: Vec<String> = store
            .known_destinations()
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect();
        return Err(UsageError(format!(
            "destination {command} {name}: the database knows no destination `{name}`; known: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
        .into());
    }
    let owner = Exporter::new(store.clone(), settings.exporter.clone())
        .owner()
        .to_owned();
    match store
        .claim(name, &owner, settings.exporter.lease_secs)
        .await?
    {
        Claim::Granted(lease) => Ok(lease),
        Claim::Busy { owner, expires_at } => anyhow::bail!(
            "destination {command} {name}: refused: {owner} is exporting it (lease until {}); try again once it is done",
            expires_at.to_rfc3339()
        ),
    }
}

/// Where the run was to deliver, from what it was planned with.
/// What an abandoned run leaves in its destination: the objects it delivered, which stay (the
/// next run exports their events again), and the one it may have been writing.
fn left_behind(run: &Run, delivered: &[RunObject]) -> String {
    let next = part_key(&run.object_key, delivered.len() as u32 + 1);
    match delivered {
        [] => format!("an object may already have been written at {next}"),
        objects => format!(
            "it had delivered {} object(s), which stay, and whose events the next run exports again: {}; the next one may also have been written, at {next}",
            objects.len(),
            objects
                .iter()
                .map(|o| o.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn place(run: &Run) -> String {
    run.delivery
        .as_ref()
        .and_then(|d| d.get("url"))
        .map(|url| format!(" (place {url})"))
        .unwrap_or_default()
}

/// The OS user and host running this command.
fn operator() -> Operator {
    let os_user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    Operator { os_user, host }
}
