//! Re-exports: the events of an occurred_at range that a destination has already exported,
//! and the runs that log them. Only events below the watermark are read, and those never
//! change, so a re-export can run beside the scheduled exports of the same destination.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use super::copy_out::CopyOut;
use super::events::tenant_filter;
use super::run_row::{RUN_COLUMNS, run_from_row};
use crate::domain::Format;
use crate::store::Run;

/// What a re-export reads: `[from, to)` of occurred_at, below `watermark`, of one tenant or all.
#[derive(Debug, Clone, Copy)]
pub struct Range<'a> {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub watermark: i64,
    pub tenant_id: Option<&'a str>,
}

const RANGE_FILTER: &str = "occurred_at >= $1 AND occurred_at < $2 AND txid < $3::text::xid8
                            AND ($4::text IS NULL OR tenant_id = $4)";

impl Store {
    pub async fn count_range(&self, range: Range<'_>) -> anyhow::Result<i64> {
        let sql = format!("SELECT count(*) FROM audit_events WHERE {RANGE_FILTER}");
        let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(range.from)
            .bind(range.to)
            .bind(range.watermark)
            .bind(range.tenant_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    /// The range's events in `(occurred_at, txid, id)` order, as a binary COPY on a connection
    /// of its own, as windows are.
    pub async fn copy_range(&self, range: Range<'_>) -> anyhow::Result<CopyOut> {
        let micros = chrono::SecondsFormat::Micros;
        self.copy_events(
            format!(
                "occurred_at >= '{}'::timestamptz AND occurred_at < '{}'::timestamptz
                 AND txid < '{}'::xid8 AND {}",
                range.from.to_rfc3339_opts(micros, true),
                range.to.to_rfc3339_opts(micros, true),
                range.watermark,
                tenant_filter(range.tenant_id)
            ),
            "occurred_at, txid, id",
        )
        .await
    }

    /// Logs a re-export about to be written, alive for `alive_secs` unless renewed; `key` gives
    /// its first object's key from the run id and the time of the run (the database's clock).
    pub async fn start_reexport_run(
        &self,
        destination: &str,
        range: Range<'_>,
        format: Format,
        by_day: bool,
        alive_secs: u32,
        key: impl Fn(Uuid, DateTime<Utc>) -> String,
    ) -> anyhow::Result<Run> {
        let id = Uuid::now_v7();
        let at = self.now().await?;
        let sql = format!(
            "INSERT INTO export_runs (id, destination, kind, status, window_lo, window_hi, window_end, tenant_id,
                                      object_key, encoding, compression, fencing_token, attempts, started_at,
                                      range_from, range_to, alive_until, event_schema, partition_by_day)
             SELECT $1, name, 'reexport', 'pending', '0', $2::text::xid8, $10, $3, $4, $5, $6,
                    fencing_token, 1, clock_timestamp(), $7, $8,
                    clock_timestamp() + make_interval(secs => $11), $12, $13
             FROM export_destinations WHERE name = $9
             RETURNING {RUN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(range.watermark)
            .bind(range.tenant_id)
            .bind(key(id, at))
            .bind(format.encoding.as_str())
            .bind(format.compression.as_str())
            .bind(range.from)
            .bind(range.to)
            .bind(destination)
            .bind(at)
            .bind(f64::from(alive_secs))
            .bind(format.schema.as_str())
            .bind(by_day)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| anyhow::anyhow!("destination `{destination}` is not recorded"))?;
        run_from_row(&row)
    }

    /// Marks a re-export done. `sha256` is that of its object when it wrote exactly one.
    pub async fn finish_reexport_run(
        &self,
        run_id: Uuid,
        events: i64,
        bytes: i64,
        sha256: Option<&str>,
        objects: i32,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_runs SET status = 'done', event_count = $2, bytes = $3, sha256 = $4,
                    object_count = $5, finished_at = clock_timestamp()
             WHERE id = $1 AND kind = 'reexport'",
        )
        .bind(run_id)
        .bind(events)
        .bind(bytes)
        .bind(sha256)
        .bind(objects)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
