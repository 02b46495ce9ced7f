//! What `run` shows of a destination on /metrics and judges for /readyz, read in one go.

use chrono::{DateTime, Utc};

use std::collections::{HashMap, HashSet};

use super::Store;
use super::leases::{DestinationState, STATE_COLUMNS, state_of};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub state: DestinationState,
    /// Events the next export will carry, and when the oldest of them was recorded.
    pub waiting_events: i64,
    pub oldest_waiting: Option<DateTime<Utc>>,
    /// A scheduled run is planned and not committed.
    pub pending: bool,
}

impl Store {
    /// The destination's state and what waits for it; `None` before it was first seen.
    pub async fn overview(
        &self,
        name: &str,
        tenant: Option<&str>,
    ) -> anyhow::Result<Option<Overview>> {
        Ok(self.overviews(&[(name, tenant)]).await?.pop().flatten())
    }

    /// [`Store::overview`] of every `(name, tenant)` given, in the order given, in three
    /// statements whatever their number.
    pub async fn overviews(
        &self,
        destinations: &[(&str, Option<&str>)],
    ) -> anyhow::Result<Vec<Option<Overview>>> {
        let names: Vec<&str> = destinations.iter().map(|(name, _)| *name).collect();
        let select =
            format!("SELECT {STATE_COLUMNS} FROM export_destinations WHERE name = ANY($1)");
        let mut states: HashMap<String, DestinationState> =
            sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(&names)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| state_of(row).map(|state| (state.name.clone(), state)))
                .collect::<anyhow::Result<_>>()?;
        let pending: HashSet<String> = sqlx::query_scalar(
            "SELECT DISTINCT destination FROM export_runs
             WHERE destination = ANY($1) AND status = 'pending' AND kind = 'scheduled'",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let known: Vec<(DestinationState, Option<&str>)> = destinations
            .iter()
            .filter_map(|(name, tenant)| Some((states.remove(*name)?, *tenant)))
            .collect();
        let asked: Vec<(i64, Option<&str>)> = known
            .iter()
            .map(|(state, tenant)| (state.watermark, *tenant))
            .collect();
        let waiting = self.waiting_events_of(&asked).await?;
        let mut found: HashMap<String, Overview> = known
            .into_iter()
            .zip(waiting)
            .map(|((state, _), (waiting_events, oldest_waiting))| {
                let overview = Overview {
                    pending: pending.contains(&state.name),
                    state,
                    waiting_events,
                    oldest_waiting,
                };
                (overview.state.name.clone(), overview)
            })
            .collect();
        Ok(names.iter().map(|name| found.remove(*name)).collect())
    }
}
