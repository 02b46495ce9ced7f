//! The digest chain's state: each run's digest, kept from the first time it is built, and the
//! destination's chain head, which the commit moves with the watermark (see `commit_run`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use super::leases::Lease;
use super::runs::CommitError;

/// The newest committed digest of a destination's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub key: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its signature, hex.
    pub signature: String,
    /// The end of the window (a transaction id) it covers.
    pub hi: i64,
}

/// A digest as uploaded: its key, exact bytes and raw signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptDigest {
    pub key: String,
    pub bytes: Vec<u8>,
    pub signature: Vec<u8>,
}

/// What the database recorded of a destination's digests, for `verify-chain`.
#[derive(Debug, Clone, Default)]
pub struct ChainRecord {
    pub head: Option<ChainHead>,
    /// Every public key (PEM) that signed one of its digests.
    pub public_keys: Vec<String>,
    /// Run id → SHA-256 (hex) of its committed digest.
    pub digests: Vec<(Uuid, String)>,
    /// Every key the run log says a run of the destination wrote or may have written (its
    /// objects, the next one it was writing when it stopped, its digest and signature), with
    /// what became of the run.
    pub written: BTreeMap<String, Written>,
}

/// A key the run log accounts for: which run wrote it, and what became of that run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub run_id: Uuid,
    pub fate: RunFate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFate {
    /// Committed with a digest: that digest names its objects.
    Signed,
    /// Committed without a digest before the chain's first digest was committed.
    BeforeChain,
    /// Committed without a digest after the chain began: signing was turned off.
    Unsigned,
    /// Still pending: its digest, if any, joins the chain when it commits.
    Pending,
    /// Abandoned (cancelled, forgotten, its delivery changed) or failed: never part of it.
    Abandoned,
}

impl RunFate {
    /// What became of a run, from its status, whether it kept a digest, and when it was
    /// committed against when the chain's first digest was (`None`: no chain yet).
    pub fn of(
        status: &str,
        has_digest: bool,
        finished_at: Option<DateTime<Utc>>,
        chain_began: Option<DateTime<Utc>>,
    ) -> Self {
        match status {
            "pending" => Self::Pending,
            "done" if has_digest => Self::Signed,
            "done" => match (finished_at, chain_began) {
                (_, None) => Self::BeforeChain,
                (Some(done), Some(began)) if done < began => Self::BeforeChain,
                _ => Self::Unsigned,
            },
            _ => Self::Abandoned,
        }
    }
}

type WrittenRow = (
    Uuid,
    String,
    bool,
    Option<DateTime<Utc>>,
    String,
    Option<String>,
    Vec<String>,
);

impl Store {
    pub async fn chain_head(&self, destination: &str) -> anyhow::Result<Option<ChainHead>> {
        let row = sqlx::query(
            "SELECT chain_head_key, chain_head_sha256, chain_head_signature, chain_head_hi::text::bigint
             FROM export_destinations WHERE name = $1 AND chain_head_key IS NOT NULL",
        )
        .bind(destination)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ChainHead {
                key: row.try_get(0)?,
                sha256: row.try_get(1)?,
                signature: row.try_get(2)?,
                hi: row.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Those of `destinations` whose chain has begun (a head is recorded).
    pub async fn chained_destinations(&self, destinations: &[&str]) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM export_destinations
             WHERE name = ANY($1) AND chain_head_key IS NOT NULL ORDER BY name",
        )
        .bind(destinations)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The digest kept with the run, if one was built.
    pub async fn kept_digest(&self, run_id: Uuid) -> anyhow::Result<Option<KeptDigest>> {
        let row = sqlx::query(
            "SELECT digest_key, digest, digest_signature FROM export_runs
             WHERE id = $1 AND digest IS NOT NULL",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(KeptDigest {
                key: row.try_get(0)?,
                bytes: row.try_get(1)?,
                signature: row.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Keeps `digest` with a scheduled run, if the lease is still ours and none is kept yet,
    /// and returns the one kept: an earlier attempt's stays, so every attempt uploads it.
    #[tracing::instrument(skip_all, fields(destination = %lease.destination, %run_id), err)]
    pub async fn keep_digest(
        &self,
        lease: &Lease,
        run_id: Uuid,
        digest: &KeptDigest,
        public_key_pem: &str,
    ) -> anyhow::Result<KeptDigest> {
        let row = sqlx::query(
            "UPDATE export_runs r
             SET digest_key = COALESCE(r.digest_key, $4), digest = COALESCE(r.digest, $5),
                 digest_signature = COALESCE(r.digest_signature, $6),
                 digest_public_key = COALESCE(r.digest_public_key, $7)
             FROM export_destinations d
             WHERE r.id = $1 AND r.status = 'pending' AND d.name = r.destination
               AND d.fencing_token = $2 AND d.lease_owner = $3
             RETURNING r.digest_key, r.digest, r.digest_signature",
        )
        .bind(run_id)
        .bind(lease.token)
        .bind(&lease.owner)
        .bind(&digest.key)
        .bind(&digest.bytes)
        .bind(&digest.signature[..])
        .bind(public_key_pem)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            anyhow::bail!(CommitError::LeaseLost(lease.destination.clone()));
        };
        Ok(KeptDigest {
            key: row.try_get(0)?,
            bytes: row.try_get(1)?,
            signature: row.try_get(2)?,
        })
    }

    /// Keeps the digest of a run that does not move the watermark (a re-export).
    pub async fn keep_side_digest(
        &self,
        run_id: Uuid,
        digest: &KeptDigest,
        public_key_pem: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE export_runs SET digest_key = $2, digest = $3, digest_signature = $4,
                    digest_public_key = $5
             WHERE id = $1 AND kind <> 'scheduled' AND digest IS NULL",
        )
        .bind(run_id)
        .bind(&digest.key)
        .bind(&digest.bytes)
        .bind(&digest.signature[..])
        .bind(public_key_pem)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the database knows of the destination's digests.
    pub async fn chain_record(&self, destination: &str) -> anyhow::Result<ChainRecord> {
        let head = self.chain_head(destination).await?;
        let public_keys: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT digest_public_key FROM export_runs
             WHERE destination = $1 AND digest_public_key IS NOT NULL",
        )
        .bind(destination)
        .fetch_all(&self.pool)
        .await?;
        let digests: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, encode(sha256(digest), 'hex') FROM export_runs
             WHERE destination = $1 AND status = 'done' AND digest IS NOT NULL",
        )
        .bind(destination)
        .fetch_all(&self.pool)
        .await?;
        let chain_began: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(finished_at) FROM export_runs
             WHERE destination = $1 AND kind = 'scheduled' AND status = 'done' AND digest IS NOT NULL",
        )
        .bind(destination)
        .fetch_one(&self.pool)
        .await?;
        // Each object a run delivered is recorded; the one it was writing when it stopped may be
        // there too.
        let runs: Vec<WrittenRow> = sqlx::query_as(
            "SELECT r.id, r.status, r.digest IS NOT NULL, r.finished_at, r.object_key, r.digest_key,
                    COALESCE(array_agg(o.key ORDER BY o.seq) FILTER (WHERE o.key IS NOT NULL), '{}')
             FROM export_runs r LEFT JOIN export_run_objects o ON o.run_id = r.id
             WHERE r.destination = $1
             GROUP BY r.id",
        )
        .bind(destination)
        .fetch_all(&self.pool)
        .await?;
        let mut written = BTreeMap::new();
        for (run_id, status, has_digest, finished_at, first, digest_key, objects) in runs {
            let fate = RunFate::of(&status, has_digest, finished_at, chain_began);
            let next = crate::domain::part_key(&first, objects.len() as u32 + 1);
            let mut keys = objects;
            keys.push(first);
            if matches!(fate, RunFate::Pending | RunFate::Abandoned) {
                keys.push(next);
            }
            if let Some(key) = digest_key {
                keys.push(format!("{key}{}", crate::domain::SIGNATURE_SUFFIX));
                keys.push(key);
            }
            for key in keys {
                written.insert(key, Written { run_id, fate });
            }
        }
        Ok(ChainRecord {
            head,
            public_keys,
            digests,
            written,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_fate_follows_its_status_its_digest_and_the_chain_start() {
        use chrono::TimeZone;
        let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 29, h, 0, 0).single();
        let cases = [
            ("pending", false, None, at(5), RunFate::Pending),
            ("done", true, at(6), at(5), RunFate::Signed),
            ("done", false, at(4), at(5), RunFate::BeforeChain),
            ("done", false, at(6), at(5), RunFate::Unsigned),
            ("done", false, at(6), None, RunFate::BeforeChain),
            ("abandoned", true, at(6), at(5), RunFate::Abandoned),
            ("failed", false, at(6), at(5), RunFate::Abandoned),
        ];
        for (status, digest, done, began, fate) in cases {
            assert_eq!(RunFate::of(status, digest, done, began), fate, "{status}");
        }
    }
}
