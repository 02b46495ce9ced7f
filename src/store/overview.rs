//! What `run` shows of a destination on /metrics and judges for /readyz, read in one go.

use chrono::{DateTime, Utc};

use super::Store;
use super::leases::DestinationState;

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
        let Some(state) = self.destination_state(name).await? else {
            return Ok(None);
        };
        let (waiting_events, oldest_waiting) = self.waiting_events(state.watermark, tenant).await?;
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM export_runs
                            WHERE destination = $1 AND status = 'pending' AND kind = 'scheduled')",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(Overview {
            state,
            waiting_events,
            oldest_waiting,
            pending,
        }))
    }
}
