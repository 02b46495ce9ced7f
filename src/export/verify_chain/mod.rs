//! `verify-chain`: reads a destination back (List + Get) and checks its digests: signatures,
//! links, contiguous windows, every object's size and SHA-256, and objects no digest names.
//! The walk over the digests is pure ([`walk`]); reading is the caller's [`BucketReader`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::domain::{DigestDoc, PublicKey, SIGNATURE_SUFFIX, digest_folder};
use crate::sink::{BucketReader, Listed};
use crate::store::ChainRecord;

mod extra;
mod walk;

use extra::Began;
use walk::check_signature;
pub use walk::walk;

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct ChainSpan {
    /// Only digests whose window ends at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only digests whose window ends before this time.
    pub to: Option<DateTime<Utc>>,
}

impl ChainSpan {
    pub(crate) fn contains(&self, at: Option<DateTime<Utc>>) -> bool {
        let Some(at) = at else { return true };
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at < to)
    }
}

/// Something wrong, naming the object or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub subject: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub findings: Vec<Finding>,
    /// What was seen and is no fault: a declared break, an abandoned run's leftovers.
    pub notes: Vec<String>,
    pub digests: usize,
    pub objects: usize,
    pub events: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

/// A digest as read from the bucket.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub key: String,
    pub bytes: Vec<u8>,
    pub signature: Option<Vec<u8>>,
    /// The document, when the bytes are one.
    pub doc: Option<DigestDoc>,
}

/// Verifies everything under `prefix` (the destination's key prefix, possibly empty) with
/// `keys`; `record` is what the database holds (online), `None` offline.
pub async fn verify_chain(
    reader: &BucketReader,
    prefix: &str,
    keys: &[PublicKey],
    span: &ChainSpan,
    record: Option<&ChainRecord>,
) -> anyhow::Result<Verification> {
    let folder = if prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", prefix.trim_matches('/'))
    };
    let listed = reader.list(&folder).await?;
    let digest_folder = digest_folder(prefix);
    let reexport_folder = format!("{digest_folder}reexport/");
    let mut fetched = Vec::new();
    let mut stray = Vec::new();
    for item in listed.iter().filter(|l| l.key.starts_with(&digest_folder)) {
        if !item.key.ends_with(".json") {
            continue;
        }
        let bytes = reader.read(&item.key).await?.unwrap_or_default();
        let signature = reader
            .read(&format!("{}{SIGNATURE_SUFFIX}", item.key))
            .await?;
        fetched.push(Fetched {
            key: item.key.clone(),
            doc: DigestDoc::parse(&bytes).ok(),
            bytes,
            signature,
        });
    }
    // Anything else in the digest folder is no digest's doing.
    for item in listed.iter().filter(|l| l.key.starts_with(&digest_folder)) {
        let digest = item.key.strip_suffix(SIGNATURE_SUFFIX).unwrap_or(&item.key);
        if !fetched.iter().any(|f| f.key == digest) {
            stray.push(item.key.clone());
        }
    }
    let (reexports, chain): (Vec<_>, Vec<_>) = fetched
        .into_iter()
        .partition(|f| f.key.starts_with(&reexport_folder));
    let mut report = Verification::default();
    for key in stray {
        report.findings.push(Finding {
            subject: reader.location(&key),
            problem: "extra object in the digest folder: neither a digest nor a digest's signature"
                .into(),
        });
    }
    let location = |key: &str| reader.location(key);
    for digest in chain.iter().chain(&reexports) {
        check_signature(digest, keys, &location, &mut report.findings);
    }
    let walked = walk(&chain, span, record, &location, &mut report);
    if walked.is_empty() && record.is_none_or(|r| r.head.is_some()) && span.from.is_none() {
        report.findings.push(Finding {
            subject: reader.location(&digest_folder),
            problem: "no digest of the chain is there".into(),
        });
    }

    // Every object the verified digests name: there, with its size and SHA-256.
    let sizes: BTreeMap<&str, &Listed> = listed.iter().map(|l| (l.key.as_str(), l)).collect();
    let mut named = BTreeSet::new();
    let in_span_reexports = reexports.iter().filter(|d| {
        d.doc
            .as_ref()
            .is_some_and(|doc| span.contains(doc.window_end()))
    });
    for digest in walked.iter().copied().chain(in_span_reexports) {
        let Some(doc) = &digest.doc else { continue };
        report.digests += 1;
        let end = &doc.window.end;
        let start = doc.window.start.as_ref().unwrap_or(end);
        if report.first.as_ref().is_none_or(|f| start < f) {
            report.first = Some(start.clone());
        }
        if report.last.as_ref().is_none_or(|l| end > l) {
            report.last = Some(end.clone());
        }
        for object in &doc.objects {
            let key = object.key.clone();
            named.insert(key.clone());
            report.objects += 1;
            let subject = reader.location(&key);
            let problem = match sizes.get(key.as_str()) {
                None => Some(format!("missing (named by digest {})", digest.key)),
                Some(l) if l.size != object.bytes => Some(format!(
                    "altered: {} bytes, digest {} says {}",
                    l.size, digest.key, object.bytes
                )),
                Some(_) => match reader.hash(&key).await? {
                    None => Some(format!("missing (named by digest {})", digest.key)),
                    Some((_, sha)) if sha != object.sha256 => Some(format!(
                        "altered: SHA-256 {sha}, digest {} says {}",
                        digest.key, object.sha256
                    )),
                    Some(_) => None,
                },
            };
            match problem {
                // Only events whose bytes verified are counted as verified.
                None => report.events += object.events,
                Some(problem) => report.findings.push(Finding { subject, problem }),
            }
        }
    }

    // Objects that no verified digest names. Those a digest outside the span names are that
    // digest's; the rest are extra, unless the run log (online) or their age (offline) says
    // they are older than the chain.
    let outside: BTreeSet<&str> = chain
        .iter()
        .chain(&reexports)
        .filter_map(|d| d.doc.as_ref())
        .filter(|doc| !span.contains(doc.window_end()))
        .flat_map(|doc| doc.objects.iter().map(|o| o.key.as_str()))
        .collect();
    let test_folder = format!("{folder}test/");
    let unnamed: Vec<&Listed> = listed
        .iter()
        .filter(|item| {
            !item.key.starts_with(&digest_folder)
                && !item.key.starts_with(&test_folder)
                && !named.contains(&item.key)
                && !outside.contains(item.key.as_str())
        })
        .collect();
    let began = match record {
        Some(record) => Began::RunLog(record),
        None => Began::Modified(chain_began(&chain, &sizes)),
    };
    extra::report_unnamed(&unnamed, &began, &location, &mut report);
    Ok(report)
}

/// When the chain's first digest was written, as the listing shows it: the first digest with
/// no previous one, else the oldest digest there is.
fn chain_began(chain: &[Fetched], listed: &BTreeMap<&str, &Listed>) -> Option<DateTime<Utc>> {
    let first = chain
        .iter()
        .find(|d| d.doc.as_ref().is_some_and(|doc| doc.previous.is_none()))
        .or(chain.first())?;
    listed.get(first.key.as_str())?.modified
}
