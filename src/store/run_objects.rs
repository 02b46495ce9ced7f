//! The objects of a run: each recorded as soon as it is durably delivered, so a run interrupted
//! between two objects resumes at the first one missing, and every object in a bucket can be
//! accounted for.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::Store;

/// One delivered object of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunObject {
    /// 1, 2, … in the run's order.
    pub seq: i32,
    /// The key in the destination (for a directory, relative to it).
    pub key: String,
    pub bytes: i64,
    /// Of the stored bytes, hex.
    pub sha256: String,
    pub events: i64,
    /// The oldest and newest occurred_at among its events.
    pub oldest_at: Option<DateTime<Utc>>,
    pub newest_at: Option<DateTime<Utc>>,
    /// The UTC day of occurred_at it holds, when a run's objects are cut by event day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_day: Option<NaiveDate>,
    /// Its last event's `(txid, id)`: where a resumed run reads on.
    #[serde(skip)]
    pub last: Option<(i64, i64)>,
}

const OBJECT_COLUMNS: &str =
    "run_id, seq, key, bytes, sha256, events, oldest_at, newest_at, partition_day,
    last_txid::text::bigint, last_id";

impl Store {
    /// The objects the run delivered so far, in order.
    pub async fn run_objects(&self, run_id: Uuid) -> anyhow::Result<Vec<RunObject>> {
        let sql = format!(
            "SELECT {OBJECT_COLUMNS} FROM export_run_objects WHERE run_id = $1 ORDER BY seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(object_from_row(row)?.1)).collect()
    }

    /// The objects of each of `runs`, in order, in one query.
    pub async fn objects_of_runs(
        &self,
        runs: &[Uuid],
    ) -> anyhow::Result<HashMap<Uuid, Vec<RunObject>>> {
        let sql = format!(
            "SELECT {OBJECT_COLUMNS} FROM export_run_objects WHERE run_id = ANY($1) ORDER BY run_id, seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(runs)
            .fetch_all(&self.pool)
            .await?;
        let mut objects: HashMap<Uuid, Vec<RunObject>> = HashMap::new();
        for row in &rows {
            let (run_id, object) = object_from_row(row)?;
            objects.entry(run_id).or_default().push(object);
        }
        Ok(objects)
    }

    /// Records an object of the run as delivered. Recording it twice (a retry that found it
    /// already there) keeps the first record: the same bytes either way.
    #[tracing::instrument(skip_all, fields(run_id = %run_id, seq = object.seq), err)]
    pub async fn record_object(&self, run_id: Uuid, object: &RunObject) -> anyhow::Result<()> {
        let (last_txid, last_id) = object.last.unzip();
        sqlx::query(
            "INSERT INTO export_run_objects (run_id, seq, key, bytes, sha256, events, oldest_at, newest_at,
                                             partition_day, last_txid, last_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::xid8, $11)
             ON CONFLICT (run_id, seq) DO NOTHING",
        )
        .bind(run_id)
        .bind(object.seq)
        .bind(&object.key)
        .bind(object.bytes)
        .bind(&object.sha256)
        .bind(object.events)
        .bind(object.oldest_at)
        .bind(object.newest_at)
        .bind(object.partition_day)
        .bind(last_txid.map(|t| t.to_string()))
        .bind(last_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn object_from_row(row: &PgRow) -> anyhow::Result<(Uuid, RunObject)> {
    let last_txid: Option<i64> = row.try_get(9)?;
    let last_id: Option<i64> = row.try_get(10)?;
    Ok((
        row.try_get(0)?,
        RunObject {
            seq: row.try_get(1)?,
            key: row.try_get(2)?,
            bytes: row.try_get(3)?,
            sha256: row.try_get(4)?,
            events: row.try_get(5)?,
            oldest_at: row.try_get(6)?,
            newest_at: row.try_get(7)?,
            partition_day: row.try_get(8)?,
            last: last_txid.zip(last_id),
        },
    ))
}
