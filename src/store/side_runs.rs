//! Runs that never move the watermark: test deliveries. They are logged like scheduled runs,
//! so every object in a bucket can be accounted for.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use super::runs::{RUN_COLUMNS, run_from_row};
use crate::domain::Format;
use crate::store::Run;

impl Store {
    /// Logs a test delivery about to be written: its event is rebuilt from the run like a
    /// heartbeat's, and its window is empty, at the destination's watermark.
    pub async fn start_test_run(
        &self,
        destination: &str,
        tenant_id: Option<&str>,
        format: Format,
        key: impl Fn(Uuid, DateTime<Utc>) -> String,
    ) -> anyhow::Result<Run> {
        let id = Uuid::now_v7();
        let at = Utc::now();
        let sql = format!(
            "INSERT INTO export_runs (id, destination, kind, status, window_lo, window_hi, window_end, tenant_id,
                                      object_key, encoding, compression, heartbeat_event_id, fencing_token,
                                      attempts, started_at)
             SELECT $1, name, 'test', 'pending', watermark, watermark, $2, $3, $4, $5, $6, $7, fencing_token,
                    1, clock_timestamp()
             FROM export_destinations WHERE name = $8
             RETURNING {RUN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(at)
            .bind(tenant_id)
            .bind(key(id, at))
            .bind(format.encoding.as_str())
            .bind(format.compression.as_str())
            .bind(Uuid::now_v7())
            .bind(destination)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| anyhow::anyhow!("destination `{destination}` is not recorded"))?;
        run_from_row(&row)
    }

    /// Marks a run that does not move the watermark as delivered.
    pub async fn finish_side_run(
        &self,
        run_id: Uuid,
        event_count: i64,
        bytes: i64,
        sha256: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_runs SET status = 'done', event_count = $2, bytes = $3, sha256 = $4,
                    finished_at = clock_timestamp()
             WHERE id = $1 AND kind <> 'scheduled'",
        )
        .bind(run_id)
        .bind(event_count)
        .bind(bytes)
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a run that does not move the watermark as failed, with why.
    pub async fn fail_side_run(&self, run_id: Uuid, error: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_runs SET status = 'failed', last_error = $2, finished_at = clock_timestamp()
             WHERE id = $1 AND kind <> 'scheduled'",
        )
        .bind(run_id)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
