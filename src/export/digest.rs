//! The chain step between delivery and commit: the run's digest, built once (from the run, its
//! objects and the chain's head), kept with the run, signed, and uploaded with its detached
//! signature. Every attempt of the run uploads the kept bytes, so a retry finds them in place
//! (412, or a file that exists) and the commit records the head they make.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Delivered, Exporter};
use crate::domain::{
    DIGEST_VERSION, DigestDoc, DigestKind, DigestObject, DigestRange, DigestWindow, Encoding,
    Format, PreviousDigest, SIGNATURE_ALGORITHM, SIGNATURE_SUFFIX, Signer, digest_key, digest_time,
};
use crate::settings::Destination;
use crate::sink::{PutOutcome, Sink, check_found};
use crate::store::{ChainHead, KeptDigest, Lease, Run, RunObject};

/// How digests are stored: plain JSON.
const DIGEST_FORMAT: Format = Format {
    encoding: Encoding::Json,
    compression: crate::domain::Compression::None,
    schema: crate::domain::Schema::Native,
};

impl Exporter {
    /// Step 3½: the run's digest, written after its objects and before the commit, when a
    /// signing key is configured or an earlier attempt kept one. Returns the digest's key.
    #[tracing::instrument(skip_all, fields(destination = %run.destination, run_id = %run.id), err)]
    pub async fn seal(
        &self,
        lease: &Lease,
        destination: &Destination,
        run: &Run,
        delivered: &Delivered,
        sink: &dyn Sink,
    ) -> anyhow::Result<Option<String>> {
        let store = self.store();
        let digest = match store.kept_digest(run.id).await? {
            Some(kept) => kept,
            None => {
                let Some(signing) = &self.settings.signing else {
                    return Ok(None);
                };
                let head = store.chain_head(&run.destination).await?;
                let doc = scheduled_digest(
                    run,
                    digest_objects(run, &delivered.objects),
                    head.as_ref(),
                    store.now().await?,
                    &signing.signer,
                );
                let key = digest_key(
                    destination.prefix(),
                    DigestKind::Scheduled,
                    run.window_end,
                    run.id,
                );
                let built = sign(&signing.signer, key, &doc);
                let pem = signing.signer.public_key().to_pem();
                store.keep_digest(lease, run.id, &built, &pem).await?
            }
        };
        upload(sink, &digest).await?;
        Ok(Some(digest.key))
    }

    /// A re-export's own digest, not part of the chain: the objects it wrote.
    pub(super) async fn seal_reexport(
        &self,
        destination: &Destination,
        run: &Run,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        objects: &[RunObject],
        sink: &dyn Sink,
    ) -> anyhow::Result<Option<String>> {
        let Some(signing) = &self.settings.signing else {
            return Ok(None);
        };
        let public = signing.signer.public_key();
        let doc = DigestDoc {
            version: DIGEST_VERSION,
            kind: DigestKind::Reexport,
            destination: run.destination.clone(),
            run_id: run.id,
            created_at: digest_time(self.store().now().await?),
            signature_algorithm: SIGNATURE_ALGORITHM.into(),
            public_key_sha256: public.fingerprint().to_owned(),
            window: DigestWindow {
                lo: run.window_lo.to_string(),
                hi: run.window_hi.to_string(),
                start: None,
                end: digest_time(run.window_end),
                follows_previous: false,
            },
            range: Some(DigestRange {
                from: digest_time(from),
                to: digest_time(to),
            }),
            heartbeat: false,
            objects: digest_objects(run, objects),
            previous: None,
        };
        let key = digest_key(
            destination.prefix(),
            DigestKind::Reexport,
            run.window_end,
            run.id,
        );
        let digest = sign(&signing.signer, key, &doc);
        self.store()
            .keep_side_digest(run.id, &digest, &public.to_pem())
            .await?;
        upload(sink, &digest).await?;
        Ok(Some(digest.key))
    }
}

/// The objects a run delivered, as its digest names them.
fn digest_objects(run: &Run, objects: &[RunObject]) -> Vec<DigestObject> {
    objects
        .iter()
        .map(|o| DigestObject {
            key: o.key.clone(),
            bytes: o.bytes.max(0) as u64,
            sha256: o.sha256.clone(),
            // A heartbeat is no audit event.
            events: if run.heartbeat_event_id.is_some() {
                0
            } else {
                o.events.max(0) as u64
            },
            oldest_occurred_at: o.oldest_at.map(digest_time),
            newest_occurred_at: o.newest_at.map(digest_time),
        })
        .collect()
}

/// A scheduled run's digest: its window, its objects, and the link to the chain's head.
pub fn scheduled_digest(
    run: &Run,
    objects: Vec<DigestObject>,
    head: Option<&ChainHead>,
    created_at: DateTime<Utc>,
    signer: &Signer,
) -> DigestDoc {
    DigestDoc {
        version: DIGEST_VERSION,
        kind: DigestKind::Scheduled,
        destination: run.destination.clone(),
        run_id: run.id,
        created_at: digest_time(created_at),
        signature_algorithm: SIGNATURE_ALGORITHM.into(),
        public_key_sha256: signer.public_key().fingerprint().to_owned(),
        window: DigestWindow {
            lo: run.window_lo.to_string(),
            hi: run.window_hi.to_string(),
            start: run.window_start.map(digest_time),
            end: digest_time(run.window_end),
            follows_previous: head.is_none_or(|h| h.hi == run.window_lo),
        },
        range: None,
        heartbeat: run.heartbeat_event_id.is_some(),
        objects,
        previous: head.map(|h| PreviousDigest {
            key: h.key.clone(),
            sha256: h.sha256.clone(),
            signature: h.signature.clone(),
        }),
    }
}

fn sign(signer: &Signer, key: String, doc: &DigestDoc) -> KeptDigest {
    let bytes = doc.to_bytes();
    let signature = signer.sign(&bytes).to_vec();
    KeptDigest {
        key,
        bytes,
        signature,
    }
}

/// Writes the digest, then its signature; each may already be there from an earlier attempt
/// (the same bytes: the digest is kept with the run).
async fn upload(sink: &dyn Sink, digest: &KeptDigest) -> anyhow::Result<()> {
    let signature_key = format!("{}{SIGNATURE_SUFFIX}", digest.key);
    for (key, bytes) in [
        (&digest.key, &digest.bytes),
        (&signature_key, &digest.signature),
    ] {
        let mut writer = sink.create(key, DIGEST_FORMAT).await?;
        if let Err(e) = writer.write(Bytes::copy_from_slice(bytes)).await {
            writer.abort().await;
            return Err(e);
        }
        let outcome = writer.finish().await?;
        if outcome == PutOutcome::AlreadyExists {
            let sha256 = hex::encode(Sha256::digest(bytes));
            check_found(sink, key, bytes.len() as u64, &sha256).await?;
        }
        tracing::info!(
            key = %sink.location(key),
            already_there = outcome == PutOutcome::AlreadyExists,
            "Wrote a digest."
        );
    }
    Ok(())
}
