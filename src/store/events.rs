//! The audit events: appending one, and streaming a window of them in commit order.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use super::copy_out::CopyOut;

/// An event to append. The database assigns `txid` and `recorded_at`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub action: String,
    pub actor: serde_json::Value,
    pub target: Option<serde_json::Value>,
    pub metadata: serde_json::Value,
}

impl Store {
    #[tracing::instrument(skip_all, err)]
    pub async fn append(&self, event: &NewEvent) -> anyhow::Result<Uuid> {
        let id = sqlx::query_scalar(
            "INSERT INTO audit_events (event_id, occurred_at, tenant_id, action, actor, target, metadata)
             VALUES (COALESCE($1, audit_uuid_v7()), $2, $3, $4, $5, $6, $7)
             RETURNING event_id",
        )
        .bind(event.event_id)
        .bind(event.occurred_at)
        .bind(&event.tenant_id)
        .bind(&event.action)
        .bind(&event.actor)
        .bind(&event.target)
        .bind(&event.metadata)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The events of `[lo, hi)` in `(txid, id)` order, as a binary COPY on a connection of its
    /// own ([`CopyOut`]), one message a row, for a [`CopyDecoder`](super::CopyDecoder): typed
    /// columns are PostgreSQL's cheapest output, and memory stays flat however large the window.
    /// Every transaction of the window has ended, so the result never changes. With `after`
    /// (the last event a resumed run already delivered), only the events past it.
    pub async fn copy_window(
        &self,
        lo: i64,
        hi: i64,
        tenant: Option<&str>,
        id_floor: Option<i64>,
        after: Option<(i64, i64)>,
    ) -> anyhow::Result<CopyOut> {
        let above = id_floor.map_or(String::new(), |floor| format!(" AND id > {floor}"));
        let after = after.map_or(String::new(), |(txid, id)| {
            format!(" AND (txid, id) > ('{txid}'::xid8, {id})")
        });
        self.copy_events(
            format!(
                "txid >= '{lo}'::xid8 AND txid < '{hi}'::xid8 AND {}{above}{after}",
                tenant_filter(tenant)
            ),
            "txid, id",
        )
        .await
    }

    /// Whether any event of `tenant` was ever recorded (by the `(tenant_id, occurred_at)` index).
    pub async fn tenant_has_events(&self, tenant: &str) -> anyhow::Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = $1)")
                .bind(tenant)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Events committed at or above `watermark` (of `tenant`, when given), and when the oldest
    /// of them was recorded: what the next export will carry.
    pub async fn waiting_events(
        &self,
        watermark: i64,
        tenant: Option<&str>,
    ) -> anyhow::Result<(i64, Option<DateTime<Utc>>)> {
        let row = sqlx::query(
            "SELECT count(*), min(recorded_at) FROM audit_events
             WHERE txid >= $1::text::xid8 AND ($2::text IS NULL OR tenant_id = $2)",
        )
        .bind(watermark)
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

/// Whether the window `[lo, hi)` holds an event (of `tenant`, when given), asked on the
/// connection given, so a step that holds a transaction never waits for a second connection.
pub(super) async fn window_has_events(
    conn: &mut sqlx::PgConnection,
    lo: i64,
    hi: i64,
    tenant: Option<&str>,
    id_floor: Option<i64>,
) -> anyhow::Result<bool> {
    let found = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM audit_events
                        WHERE txid >= $1::text::xid8 AND txid < $2::text::xid8
                          AND ($3::text IS NULL OR tenant_id = $3)
                          AND ($4::bigint IS NULL OR id > $4))",
    )
    .bind(lo)
    .bind(hi)
    .bind(tenant)
    .bind(id_floor)
    .fetch_one(conn)
    .await?;
    Ok(found)
}

/// The tenant condition of a COPY statement: the tenant goes in as hex, so no value can change
/// the statement.
pub(super) fn tenant_filter(tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) => format!(
            "tenant_id = convert_from(decode('{}', 'hex'), 'UTF8')",
            hex::encode(tenant)
        ),
        None => "true".to_owned(),
    }
}
