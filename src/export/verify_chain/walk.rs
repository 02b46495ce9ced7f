//! The pure part of `verify-chain`: each digest's signature, and the walk back along the
//! chain's links from its newest digest.

use std::collections::{BTreeMap, BTreeSet};

use super::{ChainSpan, Fetched, Finding, Verification};
use crate::domain::{DigestDoc, PublicKey, SIGNATURE_SUFFIX, sha256_hex};
use crate::store::{ChainRecord, RunFate, Written};

pub(super) fn check_signature(
    digest: &Fetched,
    keys: &[PublicKey],
    location: &impl Fn(&str) -> String,
    findings: &mut Vec<Finding>,
) {
    let subject = location(&digest.key);
    let Some(doc) = &digest.doc else {
        let problem = match DigestDoc::parse(&digest.bytes) {
            Err(e) => format!("altered: {e}"),
            Ok(_) => "altered".into(),
        };
        findings.push(Finding { subject, problem });
        return;
    };
    let Some(signature) = &digest.signature else {
        findings.push(Finding {
            subject,
            problem: format!(
                "unsigned: signature missing ({}{SIGNATURE_SUFFIX} is not there)",
                digest.key
            ),
        });
        return;
    };
    match keys
        .iter()
        .find(|k| k.fingerprint() == doc.public_key_sha256)
    {
        None => findings.push(Finding {
            subject,
            problem: format!(
                "signed with a key that was not given (public key SHA-256 {}): wrong key",
                doc.public_key_sha256
            ),
        }),
        Some(key) if !key.verifies(&digest.bytes, signature) => findings.push(Finding {
            subject,
            problem: format!(
                "the signature does not verify with public key {}: the digest or its signature was altered",
                key.fingerprint()
            ),
        }),
        Some(_) => {}
    }
}

/// Walks the chain back from its newest digest (the database's head online, else the last
/// digest in key order) through the `previous` links, and reports missing, altered,
/// re-ordered and stray digests and gaps between windows. Returns the digests on the chain
/// within `span`, oldest first.
pub fn walk<'a>(
    chain: &'a [Fetched],
    span: &ChainSpan,
    record: Option<&ChainRecord>,
    location: &impl Fn(&str) -> String,
    report: &mut Verification,
) -> Vec<&'a Fetched> {
    let by_key: BTreeMap<&str, &Fetched> = chain.iter().map(|f| (f.key.as_str(), f)).collect();
    let end_of = |f: &Fetched| f.doc.as_ref().and_then(DigestDoc::window_end);
    let before_to = |f: &&Fetched| span.to.is_none_or(|to| end_of(f).is_none_or(|e| e < to));
    let mut tip = chain.iter().rev().find(before_to);
    // A pending run's digest, and an abandoned one's, are known to the run log: not the chain's.
    let aside = |key: &str| {
        record
            .and_then(|r| r.written.get(key))
            .is_some_and(|w| matches!(w.fate, RunFate::Pending | RunFate::Abandoned))
    };
    if let Some(head) = record.and_then(|r| r.head.as_ref())
        && span.to.is_none()
    {
        match by_key.get(head.key.as_str()) {
            Some(found) => {
                if let Some(last) = chain.iter().rev().find(|d| !aside(&d.key))
                    && last.key != head.key
                {
                    report.findings.push(Finding {
                        subject: location(&last.key),
                        problem: format!(
                            "after the chain's head that the database recorded ({}): slipped in",
                            head.key
                        ),
                    });
                }
                tip = Some(found);
            }
            None => report.findings.push(Finding {
                subject: location(&head.key),
                problem: "missing: the database recorded it as the chain's newest digest".into(),
            }),
        }
    }
    let recorded: BTreeMap<String, &str> = record
        .map(|r| {
            r.digests
                .iter()
                .map(|(id, sha)| (id.to_string(), sha.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut visited = BTreeSet::new();
    let mut on_chain = Vec::new();
    let mut current = tip;
    while let Some(digest) = current {
        visited.insert(digest.key.as_str());
        let in_span = span.contains(end_of(digest));
        if !in_span
            && span
                .from
                .is_some_and(|from| end_of(digest).is_some_and(|e| e < from))
        {
            break;
        }
        if in_span {
            on_chain.push(digest);
        }
        let Some(doc) = &digest.doc else {
            current = chain.iter().rev().find(|f| f.key < digest.key);
            continue;
        };
        if let Some(sha) = recorded.get(&doc.run_id.to_string())
            && *sha != sha256_hex(&digest.bytes)
        {
            report.findings.push(Finding {
                subject: location(&digest.key),
                problem: "altered: differs from the digest the database recorded for its run"
                    .into(),
            });
        }
        let Some(previous) = &doc.previous else {
            report
                .notes
                .push(format!("the chain starts at {}", location(&digest.key)));
            current = None;
            continue;
        };
        match by_key.get(previous.key.as_str()) {
            None => {
                // Go on from the next older digest there is.
                let next = chain.iter().rev().find(|f| f.key < previous.key);
                // With --from, the link out of the span is not checked.
                if span.from.is_none() || next.is_some_and(|n| span.contains(end_of(n))) {
                    report.findings.push(Finding {
                        subject: location(&previous.key),
                        problem: format!("missing: named as previous by {}", digest.key),
                    });
                } else {
                    report.notes.push(format!(
                        "the link from {} to {} (before the span) was not checked",
                        location(&digest.key),
                        previous.key
                    ));
                }
                current = next;
            }
            Some(prior) => {
                if prior.key >= digest.key {
                    report.findings.push(Finding {
                        subject: location(&digest.key),
                        problem: format!(
                            "out of order: its previous digest {} does not sort before it",
                            prior.key
                        ),
                    });
                }
                if sha256_hex(&prior.bytes) != previous.sha256 {
                    report.findings.push(Finding {
                        subject: location(&prior.key),
                        problem: format!(
                            "altered: its SHA-256 differs from the one {} recorded",
                            digest.key
                        ),
                    });
                }
                // A missing signature is reported with the digest (unsigned).
                if let Some(signature) = &prior.signature
                    && hex::encode(signature) != previous.signature
                {
                    report.findings.push(Finding {
                        subject: location(&format!("{}{SIGNATURE_SUFFIX}", prior.key)),
                        problem: format!(
                            "altered: differs from the signature {} recorded",
                            digest.key
                        ),
                    });
                }
                if let Some(prior_doc) = &prior.doc {
                    if !doc.window.follows_previous {
                        report.notes.push(format!(
                            "{}: its window starts at {}, not where the previous one ended ({}): a declared break (a reset, or runs without a signing key)",
                            location(&digest.key), doc.window.lo, prior_doc.window.hi
                        ));
                    } else if doc.window.lo != prior_doc.window.hi {
                        report.findings.push(Finding {
                            subject: location(&digest.key),
                            problem: format!(
                                "gap between windows: it starts at transaction {}, the previous digest {} ended at {}",
                                doc.window.lo, prior.key, prior_doc.window.hi
                            ),
                        });
                    }
                }
                current = (!visited.contains(prior.key.as_str())).then_some(*prior);
            }
        }
    }
    for digest in chain {
        if visited.contains(digest.key.as_str()) || !span.contains(end_of(digest)) {
            continue;
        }
        match record.and_then(|r| r.written.get(&digest.key)) {
            Some(Written {
                run_id,
                fate: RunFate::Abandoned,
            }) => report.notes.push(format!(
                "{}: the digest of a run that was then abandoned (run {run_id}; the database knows it); not part of the chain",
                location(&digest.key)
            )),
            Some(Written {
                run_id,
                fate: RunFate::Pending,
            }) => report.notes.push(format!(
                "{}: the digest of run {run_id}, still pending (the database knows it); it joins the chain when the run commits",
                location(&digest.key)
            )),
            _ => report.findings.push(Finding {
                subject: location(&digest.key),
                problem: "not part of the chain: no later digest links to it".into(),
            }),
        }
    }
    on_chain.reverse();
    on_chain
}

#[cfg(test)]
mod tests;
