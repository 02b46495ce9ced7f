//! A run as the run log's row holds it.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::runs::{Run, RunKind, RunStatus};
use crate::domain::{Compression, Encoding, Format, Schema};

pub(super) const RUN_COLUMNS: &str = "id, destination, kind, status, window_lo::text::bigint, window_hi::text::bigint,
    window_end, slot, tenant_id, object_key, encoding, compression, heartbeat_event_id, attempts, last_error,
    event_count, bytes, sha256, started_at, finished_at, range_from, range_to, object_count, window_start,
    delivery, id_floor, max_object_bytes, event_schema, partition_by_day";
/// How many columns `RUN_COLUMNS` names: a query's own columns come after them.
pub(super) const RUN_COLUMN_COUNT: usize = 29;

pub(super) fn run_from_row(row: &PgRow) -> anyhow::Result<Run> {
    let kind: String = row.try_get(2)?;
    let status: String = row.try_get(3)?;
    let encoding: String = row.try_get(10)?;
    let compression: String = row.try_get(11)?;
    let schema: String = row.try_get(27)?;
    Ok(Run {
        id: row.try_get(0)?,
        destination: row.try_get(1)?,
        kind: match kind.as_str() {
            "scheduled" => RunKind::Scheduled,
            "reexport" => RunKind::Reexport,
            _ => RunKind::Test,
        },
        status: match status.as_str() {
            "pending" => RunStatus::Pending,
            "done" => RunStatus::Done,
            "abandoned" => RunStatus::Abandoned,
            _ => RunStatus::Failed,
        },
        window_lo: row.try_get(4)?,
        window_hi: row.try_get(5)?,
        window_end: row.try_get(6)?,
        slot: row.try_get(7)?,
        tenant_id: row.try_get(8)?,
        object_key: row.try_get(9)?,
        format: Format {
            encoding: Encoding::parse(&encoding)
                .ok_or_else(|| anyhow::anyhow!("unknown encoding {encoding:?} in the run log"))?,
            compression: Compression::parse(&compression).ok_or_else(|| {
                anyhow::anyhow!("unknown compression {compression:?} in the run log")
            })?,
            schema: Schema::parse(&schema)
                .ok_or_else(|| anyhow::anyhow!("unknown schema {schema:?} in the run log"))?,
        },
        heartbeat_event_id: row.try_get(12)?,
        attempts: row.try_get(13)?,
        last_error: row.try_get(14)?,
        event_count: row.try_get(15)?,
        bytes: row.try_get(16)?,
        sha256: row.try_get(17)?,
        started_at: row.try_get(18)?,
        finished_at: row.try_get(19)?,
        range: match (row.try_get(20)?, row.try_get(21)?) {
            (Some(from), Some(to)) => Some((from, to)),
            _ => None,
        },
        object_count: row.try_get(22)?,
        window_start: row.try_get(23)?,
        delivery: row.try_get(24)?,
        id_floor: row.try_get(25)?,
        max_object_bytes: row.try_get(26)?,
        by_day: row.try_get(28)?,
    })
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Reexport => "reexport",
            Self::Test => "test",
        }
    }
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }
}
