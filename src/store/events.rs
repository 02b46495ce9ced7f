//! The audit events: appending one, and streaming a window of them in commit order.

use chrono::{DateTime, NaiveDate, Utc};
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
    /// Every transaction of the window has ended, so the result never changes. `by_day` puts the
    /// day (UTC) of occurred_at first in the order (`by_day`'s own day for a time without one).
    /// With `after` (where the last object a resumed run delivered ends), only the events past it.
    pub async fn copy_window(
        &self,
        lo: i64,
        hi: i64,
        tenant: Option<&str>,
        id_floor: Option<i64>,
        by_day: Option<NaiveDate>,
        after: Option<After>,
    ) -> anyhow::Result<CopyOut> {
        let above = id_floor.map_or(String::new(), |floor| format!(" AND id > {floor}"));
        let day = by_day.map(event_day);
        let after = match (after, &day) {
            (None, _) => String::new(),
            (
                Some(After {
                    day: Some(after),
                    txid,
                    id,
                }),
                Some(day),
            ) => {
                format!(" AND ({day}, txid, id) > ('{after}'::date, '{txid}'::xid8, {id})")
            }
            (Some(After { txid, id, .. }), _) => {
                format!(" AND (txid, id) > ('{txid}'::xid8, {id})")
            }
        };
        let order = match &day {
            Some(day) => format!("{day}, txid, id"),
            None => "txid, id".to_owned(),
        };
        self.copy_events(
            format!(
                "txid >= '{lo}'::xid8 AND txid < '{hi}'::xid8 AND {}{above}{after}",
                tenant_filter(tenant)
            ),
            &order,
        )
        .await
    }

    /// Those of `tenants` of which no event was ever recorded, in one statement: none is in
    /// the table (by the `(tenant_id, occurred_at)` index), no committed run of that tenant
    /// delivered any, and no prune deleted any (both by their tables' indexes).
    pub async fn tenants_without_events(
        &self,
        tenants: &[&str],
    ) -> anyhow::Result<std::collections::BTreeSet<String>> {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT t FROM unnest($1::text[]) t
             WHERE NOT EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = t)
               AND NOT EXISTS (SELECT 1 FROM export_runs
                               WHERE tenant_id = t AND status = 'done' AND event_count > 0)
               AND NOT EXISTS (SELECT 1 FROM export_pruned_tenants p WHERE p.tenant_id = t)",
        )
        .bind(tenants)
        .fetch_all(&self.pool)
        .await?;
        Ok(found.into_iter().collect())
    }
}

/// The day (UTC) of an event's occurred_at, as a run cut by day orders and partitions them: the
/// day the cutter gives it (`Timestamp::to_datetime`), so a resumed run reads on exactly where its
/// last object ended. A time with no such day (`infinity`, `-infinity`, or past the years the
/// cutter's clock reaches: rows from before `audit_events_time_range`) counts as `default`, the
/// window's end.
fn event_day(default: NaiveDate) -> String {
    format!(
        "CASE WHEN isfinite(occurred_at) AND occurred_at < '262143-01-01T00:00:00Z'::timestamptz
              THEN (occurred_at AT TIME ZONE 'UTC')::date ELSE '{default}'::date END"
    )
}

/// Where the last delivered object of a run ends: its last event's `(txid, id)`, and its day
/// when the run is cut by day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub day: Option<NaiveDate>,
    pub txid: i64,
    pub id: i64,
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
    // Two statements, not `($3 IS NULL OR tenant_id = $3)`: a prepared statement's generic
    // plan could not use the tenant's index for that.
    let found = match tenant {
        Some(tenant) => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit_events
                            WHERE tenant_id = $3 AND txid >= $1::text::xid8 AND txid < $2::text::xid8
                              AND ($4::bigint IS NULL OR id > $4))",
        )
        .bind(lo)
        .bind(hi)
        .bind(tenant),
        None => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit_events
                            WHERE txid >= $1::text::xid8 AND txid < $2::text::xid8
                              AND ($3::bigint IS NULL OR id > $3))",
        )
        .bind(lo)
        .bind(hi),
    }
    .bind(id_floor)
    .fetch_one(conn)
    .await?;
    Ok(found)
}

/// The tenant condition of a COPY statement (COPY takes no parameters). The tenant goes in as
/// an escape string literal with `\` and `'` doubled, the only characters special in one, so no
/// value can change the statement; and a literal, not an expression such as `convert_from(..)`,
/// which is only stable: the planner proves the `(tenant_id, txid, id)` index's `tenant_id IS
/// NOT NULL` from a literal alone, and estimates the tenant's rows from its statistics. A NUL,
/// which would end the statement early, is in no `text` value: such a tenant has no event.
pub(super) fn tenant_filter(tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) if tenant.contains('\0') => "false".to_owned(),
        Some(tenant) => format!(
            "tenant_id = E'{}'",
            tenant.replace('\\', "\\\\").replace('\'', "''")
        ),
        None => "true".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::tenant_filter;

    #[test]
    fn a_tenant_is_one_literal_whatever_it_holds() {
        assert_eq!(tenant_filter(None), "true");
        assert_eq!(tenant_filter(Some("acme")), "tenant_id = E'acme'");
        assert_eq!(
            tenant_filter(Some(r"a'b\'); DROP TABLE x; --")),
            r"tenant_id = E'a''b\\''); DROP TABLE x; --'"
        );
        assert_eq!(tenant_filter(Some("ünï ✓")), "tenant_id = E'ünï ✓'");
        assert_eq!(tenant_filter(Some("a\0b")), "false");
    }
}
