//! What waits for the next export of many destinations, read in one statement: a tenant
//! destination's count costs its own waiting rows (by the `(tenant_id, txid, id)` index), the
//! all-events destination's the waiting rows (by `(txid, id)`), and 500 destinations cost one
//! round trip, not 500.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Store;

/// For each `(watermark, tenant)`: the events committed at or above the watermark (of the
/// tenant, when given). Each branch of the union is gated by whether the tenant is null, so
/// each row reads by one index only.
const WAITING: &str = "
SELECT w.n, w.oldest
FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS d(watermark, tenant, ord)
CROSS JOIN LATERAL (
    SELECT count(*) AS n, min(recorded_at) AS oldest
    FROM (SELECT recorded_at FROM audit_events
          WHERE d.tenant IS NULL AND txid >= d.watermark::text::xid8
          UNION ALL
          SELECT recorded_at FROM audit_events
          WHERE tenant_id = d.tenant AND txid >= d.watermark::text::xid8) e
) w
ORDER BY d.ord";

/// Events waiting for a destination, and when the oldest of them was recorded.
pub type Waiting = (i64, Option<DateTime<Utc>>);

impl Store {
    /// Events committed at or above `watermark` (of `tenant`, when given), and when the oldest
    /// of them was recorded: what the next export will carry.
    pub async fn waiting_events(
        &self,
        watermark: i64,
        tenant: Option<&str>,
    ) -> anyhow::Result<Waiting> {
        let mut found = self.waiting_events_of(&[(watermark, tenant)]).await?;
        Ok(found.pop().unwrap_or_default())
    }

    /// [`Store::waiting_events`] of every `(watermark, tenant)` given, in one statement, in
    /// the order given.
    pub async fn waiting_events_of(
        &self,
        destinations: &[(i64, Option<&str>)],
    ) -> anyhow::Result<Vec<Waiting>> {
        let (watermarks, tenants): (Vec<i64>, Vec<Option<&str>>) =
            destinations.iter().copied().unzip();
        sqlx::query(WAITING)
            .bind(&watermarks)
            .bind(&tenants)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// PostgreSQL's plan for [`Store::waiting_events_of`] of these destinations (EXPLAIN's
    /// text), to check which index it reads by.
    pub async fn waiting_events_plan(
        &self,
        destinations: &[(i64, Option<&str>)],
    ) -> anyhow::Result<String> {
        let (watermarks, tenants): (Vec<i64>, Vec<Option<&str>>) =
            destinations.iter().copied().unzip();
        let lines: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {WAITING}")))
                .bind(&watermarks)
                .bind(&tenants)
                .fetch_all(&self.pool)
                .await?;
        Ok(lines.join("\n"))
    }
}
