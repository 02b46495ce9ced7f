//! Destinations that can never deliver what their owner expects: a tenant filter that matches
//! no event ever recorded (a typo, another casing), or two destinations writing to one place.
//! Warnings only: they never fail a command.

use crate::settings::{self, Settings};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub destination: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "destination {}: {}", self.destination, self.message)
    }
}

/// One warning for each destination that shares its bucket and prefix (or directory), or
/// writes inside another's.
pub fn shared_locations(settings: &Settings) -> Vec<Warning> {
    settings::shared_locations(&settings.destinations)
        .into_iter()
        .flat_map(|(location, names)| {
            names.clone().into_iter().map(move |name| {
                let others: Vec<&str> = names
                    .iter()
                    .filter(|n| **n != name)
                    .map(String::as_str)
                    .collect();
                Warning {
                    message: format!(
                        "writes to {location}, as {} does: their objects mix there; give each \
                         its own prefix or directory",
                        others.join(", ")
                    ),
                    destination: name,
                }
            })
        })
        .chain(
            settings::nested_locations(&settings.destinations)
                .into_iter()
                .map(|(inner, inner_at, outer, outer_at)| Warning {
                    message: format!(
                        "writes to {inner_at}, inside {outer_at} where {outer} writes: its \
                         objects are among {outer}'s for whoever reads that; give each its own \
                         prefix or directory, side by side"
                    ),
                    destination: inner,
                }),
        )
        .collect()
}

/// A warning for each destination whose `tenant_id` no recorded event has; reads only.
pub async fn tenants_without_events(
    store: &Store,
    settings: &Settings,
) -> anyhow::Result<Vec<Warning>> {
    let tenants: Vec<&str> = settings
        .destinations
        .iter()
        .filter_map(|d| d.tenant_id.as_deref())
        .collect();
    let without = store.tenants_without_events(&tenants).await?;
    Ok(settings
        .destinations
        .iter()
        .filter_map(|d| Some((d, d.tenant_id.as_ref()?)))
        .filter(|(_, tenant)| without.contains(*tenant))
        .map(|(destination, tenant)| Warning {
            destination: destination.name.clone(),
            message: format!(
                "no event of tenant_id {tenant:?} has ever been recorded; tenant ids match \
                 exactly, case included: check the value"
            ),
        })
        .collect())
}

/// With no signing key configured, a warning for each destination whose chain has begun: its
/// new runs are not signed, and `verify-chain` reports their objects. Reads only.
pub async fn unsigned_chains(store: &Store, settings: &Settings) -> anyhow::Result<Vec<Warning>> {
    if settings.exporter.signing.is_some() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = settings
        .destinations
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    Ok(store
        .chained_destinations(&names)
        .await?
        .into_iter()
        .map(|destination| Warning {
            destination,
            message: UNSIGNED_CHAIN.into(),
        })
        .collect())
}

const UNSIGNED_CHAIN: &str = "its signed digest chain has begun, but integrity.signing_key_file \
     is not set: its new runs will not be signed, and verify-chain will report each of their \
     objects as an extra object; set integrity.signing_key_file again to continue the chain";

/// The messages of the warnings about `destination`.
pub fn of(warnings: &[Warning], destination: &str) -> Vec<String> {
    warnings
        .iter()
        .filter(|w| w.destination == destination)
        .map(|w| w.message.clone())
        .collect()
}
