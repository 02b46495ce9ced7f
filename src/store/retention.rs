//! Retention: what the prune's rule reads of the destinations, and what holds events back.
//! The deleting itself goes through the one path the append-only trigger lets through
//! (`audit_prune_batch`, a SECURITY DEFINER function of the schema's owner): `prune_run.rs`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::Store;
use crate::domain::{Hold, StreamKnown};

/// A destination as retention sees it.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub name: String,
    pub known: StreamKnown,
    pub forgotten: bool,
    pub watermark: i64,
    pub id_floor: Option<i64>,
}

/// What one batch deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneBatch {
    pub deleted: i64,
    /// The transaction ids of the events deleted: `[lo, hi]`.
    pub txids: Option<(i64, i64)>,
    /// When the events deleted occurred: `[from, to]`.
    pub occurred: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl PruneBatch {
    /// Both batches' events together.
    pub fn and(self, other: Self) -> Self {
        fn span<T: Ord + Copy>(a: Option<(T, T)>, b: Option<(T, T)>) -> Option<(T, T)> {
            match (a, b) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                (a, b) => a.or(b),
            }
        }
        Self {
            deleted: self.deleted + other.deleted,
            txids: span(self.txids, other.txids),
            occurred: span(self.occurred, other.occurred),
        }
    }
}

/// Why a destination holds events back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// Not exported yet: at or above its watermark.
    NotExported { watermark: i64 },
    /// Known to the database, absent from the configuration, not forgotten.
    NotConfigured { watermark: i64 },
    /// Its stream has not started, or its tenant filter changed and awaits a reset.
    NotStarted,
}

/// How many events recorded before the cutoff a destination holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldBack {
    pub destination: String,
    pub reason: HoldReason,
    pub events: i64,
}

impl Store {
    /// Every destination the database knows, with what retention needs of it.
    pub async fn stream_states(&self) -> anyhow::Result<Vec<StreamState>> {
        let rows = sqlx::query(
            "SELECT name, stream_started, forgotten_at IS NOT NULL, tenant_id,
                    watermark::text::bigint, id_floor
             FROM export_destinations ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let started: bool = row.try_get(1)?;
                Ok(StreamState {
                    name: row.try_get(0)?,
                    known: if started {
                        StreamKnown::Started {
                            tenant_id: row.try_get(3)?,
                        }
                    } else {
                        StreamKnown::NotStarted
                    },
                    forgotten: row.try_get(2)?,
                    watermark: row.try_get(4)?,
                    id_floor: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// The lowest and highest event id, if there is an event.
    pub async fn event_id_bounds(&self) -> anyhow::Result<Option<(i64, i64)>> {
        let row: (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT min(id), max(id) FROM audit_events")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.0.zip(row.1))
    }

    /// When the first event from id `id` on was recorded (by the primary key).
    pub async fn recorded_at_from(&self, id: i64) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT recorded_at FROM audit_events WHERE id >= $1 ORDER BY id LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records the tenant filter the configuration names for a destination whose stream has
    /// started, as an export would: a stream without a committed run adopts it; one whose
    /// watermark covers another filter (refused until `destination reset`) notes it as
    /// `tenant_change`, so `audit_prune_batch` holds back everything the new filter selects.
    #[tracing::instrument(skip_all, fields(destination = name), err)]
    pub async fn note_configured_tenant(
        &self,
        name: &str,
        tenant: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_destinations d
             SET tenant_id = CASE WHEN c.committed THEN d.tenant_id ELSE $2 END,
                 tenant_change = CASE WHEN c.committed AND d.tenant_id IS DISTINCT FROM $2
                                      THEN jsonb_build_object('tenant_id', $2::text) END
             FROM (SELECT EXISTS (
                       SELECT 1 FROM export_destinations s JOIN export_runs r ON r.destination = s.name
                       WHERE s.name = $1 AND r.kind = 'scheduled' AND r.status = 'done'
                         AND r.finished_at >= s.stream_since) AS committed) c
             WHERE d.name = $1 AND d.stream_started",
        )
        .bind(name)
        .bind(tenant)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Per destination (not forgotten) and per configured hold, how many events recorded before
    /// `cutoff` it holds back; those holding none are left out. An event may be held by several.
    pub async fn held_back(
        &self,
        cutoff: DateTime<Utc>,
        configured: &[&str],
        holds: &[Hold],
    ) -> anyhow::Result<Vec<HeldBack>> {
        let mut held = Vec::new();
        for state in self.stream_states().await? {
            if state.forgotten {
                continue;
            }
            let watermark = state.watermark;
            let (tenant, reason, lo) = match &state.known {
                StreamKnown::NotStarted => (None, HoldReason::NotStarted, 0),
                StreamKnown::Started { tenant_id } if configured.contains(&state.name.as_str()) => {
                    (
                        tenant_id.clone(),
                        HoldReason::NotExported { watermark },
                        watermark,
                    )
                }
                StreamKnown::Started { tenant_id } => (
                    tenant_id.clone(),
                    HoldReason::NotConfigured { watermark },
                    watermark,
                ),
            };
            let tenant = if matches!(reason, HoldReason::NotStarted) {
                self.tenant_of(&state.name).await?
            } else {
                tenant
            };
            let floor = match state.known {
                StreamKnown::Started { .. } => state.id_floor,
                StreamKnown::NotStarted => None,
            };
            let events = self
                .count_held(cutoff, tenant.as_deref(), lo, floor, None)
                .await?;
            if events > 0 {
                held.push(HeldBack {
                    destination: state.name,
                    reason,
                    events,
                });
            }
        }
        for hold in holds {
            let events = self
                .count_held(cutoff, hold.tenant_id.as_deref(), 0, None, hold.since)
                .await?;
            if events > 0 && !held.iter().any(|h| h.destination == hold.destination) {
                held.push(HeldBack {
                    destination: hold.destination.clone(),
                    reason: HoldReason::NotStarted,
                    events,
                });
            }
        }
        Ok(held)
    }

    async fn tenant_of(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT tenant_id FROM export_destinations WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Events recorded in `[since, cutoff)` of `tenant`, at or above transaction id `lo` and
    /// above id `floor`.
    async fn count_held(
        &self,
        cutoff: DateTime<Utc>,
        tenant: Option<&str>,
        lo: i64,
        floor: Option<i64>,
        since: Option<DateTime<Utc>>,
    ) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM audit_events
             WHERE txid >= $1::text::xid8 AND recorded_at < $2
               AND ($3::text IS NULL OR tenant_id = $3)
               AND ($4::bigint IS NULL OR id > $4)
               AND ($5::timestamptz IS NULL OR recorded_at >= $5)",
        )
        .bind(lo)
        .bind(cutoff)
        .bind(tenant)
        .bind(floor)
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::PruneBatch;
    use chrono::{TimeZone, Utc};

    #[test]
    fn batches_add_up_to_the_span_of_both() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        let a = PruneBatch {
            deleted: 2,
            txids: Some((10, 20)),
            occurred: Some((t(5), t(9))),
        };
        let b = PruneBatch {
            deleted: 3,
            txids: Some((4, 12)),
            occurred: Some((t(7), t(11))),
        };
        let sum = a.and(b).and(PruneBatch::default());
        assert_eq!(sum.deleted, 5);
        assert_eq!(sum.txids, Some((4, 20)));
        assert_eq!(sum.occurred, Some((t(5), t(11))));
    }
}
