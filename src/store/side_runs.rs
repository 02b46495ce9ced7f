//! Runs that never move the watermark: test deliveries and re-exports. They are logged like
//! scheduled runs, so every object in a bucket can be accounted for, and stay alive only while
//! their process renews them: one that a crash interrupted is marked failed, not left pending.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use super::run_row::{RUN_COLUMN_COUNT, RUN_COLUMNS, run_from_row};
use crate::domain::Format;
use crate::domain::part_key;
use crate::store::{Run, RunStatus};

impl Store {
    /// Logs a test delivery about to be written, alive for `alive_secs` unless renewed: its
    /// event is rebuilt from the run like a heartbeat's, and its window is empty, at the
    /// destination's watermark.
    pub async fn start_test_run(
        &self,
        destination: &str,
        tenant_id: Option<&str>,
        format: Format,
        alive_secs: u32,
        key: impl Fn(Uuid, DateTime<Utc>) -> String,
    ) -> anyhow::Result<Run> {
        let id = Uuid::now_v7();
        let at = self.now().await?;
        let sql = format!(
            "INSERT INTO export_runs (id, destination, kind, status, window_lo, window_hi, window_end, tenant_id,
                                      object_key, encoding, compression, heartbeat_event_id, fencing_token,
                                      attempts, started_at, alive_until, event_schema)
             SELECT $1, name, 'test', 'pending', watermark, watermark, $2, $3, $4, $5, $6, $7, fencing_token,
                    1, clock_timestamp(), clock_timestamp() + make_interval(secs => $9), $10
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
            .bind(f64::from(alive_secs))
            .bind(format.schema.as_str())
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

    /// Keeps a side run alive for `alive_secs` more; `false` when it is no longer pending.
    pub async fn renew_side_run(&self, run_id: Uuid, alive_secs: u32) -> anyhow::Result<bool> {
        let renewed = sqlx::query(
            "UPDATE export_runs SET alive_until = clock_timestamp() + make_interval(secs => $2)
             WHERE id = $1 AND kind <> 'scheduled' AND status = 'pending'",
        )
        .bind(run_id)
        .bind(f64::from(alive_secs))
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Notes how many objects a side run has written completely so far.
    pub async fn note_side_objects(&self, run_id: Uuid, objects: i32) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_runs SET object_count = $2 WHERE id = $1 AND kind <> 'scheduled'",
        )
        .bind(run_id)
        .bind(objects)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks failed the destination's side runs whose process stopped renewing them (a crash),
    /// each with what it had written, and returns them. A run from before renewals existed
    /// counts as interrupted an hour after it started.
    #[tracing::instrument(skip_all, fields(destination = destination), err)]
    pub async fn fail_interrupted_side_runs(&self, destination: &str) -> anyhow::Result<Vec<Run>> {
        const INTERRUPTED: &str = "destination = $1 AND kind <> 'scheduled' AND status = 'pending'
            AND COALESCE(alive_until, started_at + interval '1 hour', '-infinity') < clock_timestamp()";
        // A plain read first: most of the time there is none, and it takes no lock that could
        // wait on another process's.
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM export_runs WHERE {INTERRUPTED})"
        )))
        .bind(destination)
        .fetch_one(&self.pool)
        .await?;
        if !any {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {RUN_COLUMNS}, COALESCE(alive_until, started_at + interval '1 hour'),
                    ARRAY(SELECT o.key FROM export_run_objects o WHERE o.run_id = export_runs.id ORDER BY o.seq)
             FROM export_runs
             WHERE {INTERRUPTED} FOR UPDATE SKIP LOCKED"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(destination)
            .fetch_all(&mut *tx)
            .await?;
        let mut failed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut run = run_from_row(row)?;
            let last_alive: Option<DateTime<Utc>> = sqlx::Row::try_get(row, RUN_COLUMN_COUNT)?;
            let keys: Vec<String> = sqlx::Row::try_get(row, RUN_COLUMN_COUNT + 1)?;
            let error = interrupted_error(&run, last_alive, &keys);
            sqlx::query(
                "UPDATE export_runs SET status = 'failed', last_error = $2, finished_at = clock_timestamp()
                 WHERE id = $1",
            )
            .bind(run.id)
            .bind(&error)
            .execute(&mut *tx)
            .await?;
            run.status = RunStatus::Failed;
            run.last_error = Some(error);
            failed.push(run);
        }
        tx.commit().await?;
        Ok(failed)
    }
}

/// Why an interrupted side run failed, and what it left: the objects it completed (they are
/// valid, and stay) and the one it was writing.
fn interrupted_error(run: &Run, last_alive: Option<DateTime<Utc>>, keys: &[String]) -> String {
    let since = last_alive.map_or_else(
        || "an unknown time".to_owned(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let written = keys.len() as u32;
    let complete = if keys.is_empty() {
        "no complete object".to_owned()
    } else {
        format!(
            "{} complete object(s), which stay: {}",
            keys.len(),
            keys.join(", ")
        )
    };
    format!(
        "interrupted: its process stopped (no sign of life since {since}); it had written {complete}; \
         the object it was writing, {}, was not completed (a directory's hidden temporary file is removed; \
         in S3 an incomplete multipart upload stays until a lifecycle rule aborts it)",
        part_key(&run.object_key, written + 1)
    )
}
