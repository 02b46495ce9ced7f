//! The walk along the chain: missing, stray and re-ordered digests and gaps.

use super::*;
use crate::domain::{
    DIGEST_VERSION, DigestKind, DigestWindow, PreviousDigest, SIGNATURE_ALGORITHM, Signer,
};
use crate::store::ChainHead;

const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";

/// A chain of `n` digests, one an hour, windows [10 i, 10 i + 10).
fn chain(signer: &Signer, n: usize) -> Vec<Fetched> {
    let mut out: Vec<Fetched> = Vec::new();
    for i in 0..n {
        let previous = out.last().map(|p| PreviousDigest {
            key: p.key.clone(),
            sha256: sha256_hex(&p.bytes),
            signature: hex::encode(p.signature.as_ref().unwrap()),
        });
        let doc = DigestDoc {
            version: DIGEST_VERSION,
            kind: DigestKind::Scheduled,
            destination: "d".into(),
            run_id: uuid::Uuid::now_v7(),
            created_at: format!("2026-11-29T{i:02}:00:01.000000Z"),
            signature_algorithm: SIGNATURE_ALGORITHM.into(),
            public_key_sha256: signer.public_key().fingerprint().into(),
            window: DigestWindow {
                lo: (10 * i).to_string(),
                hi: (10 * i + 10).to_string(),
                start: None,
                end: format!("2026-11-29T{i:02}:00:00.000000Z"),
                follows_previous: true,
            },
            range: None,
            heartbeat: true,
            objects: vec![],
            previous,
        };
        let bytes = doc.to_bytes();
        out.push(Fetched {
            key: format!("digest/2026/11/29/20261129T{i:02}0000Z.json"),
            signature: Some(signer.sign(&bytes).to_vec()),
            bytes,
            doc: Some(doc),
        });
    }
    out
}

fn run(chain: &[Fetched], span: &ChainSpan, record: Option<&ChainRecord>) -> (Vec<String>, usize) {
    let mut report = Verification::default();
    let on = walk(chain, span, record, &|k: &str| k.to_owned(), &mut report);
    let found = report
        .findings
        .iter()
        .map(|f| format!("{}: {}", f.subject, f.problem))
        .collect();
    (found, on.len())
}

#[test]
fn an_intact_chain_has_no_finding_and_a_span_limits_it() {
    let signer = Signer::from_pem(PRIVATE).unwrap();
    let digests = chain(&signer, 4);
    assert_eq!(run(&digests, &ChainSpan::default(), None), (vec![], 4));
    let from = "2026-11-29T02:00:00Z".parse().ok();
    let (found, on) = run(&digests, &ChainSpan { from, to: None }, None);
    assert_eq!((found, on), (vec![], 2));
    let mut findings = Vec::new();
    for digest in &digests {
        check_signature(
            digest,
            &[signer.public_key().clone()],
            &|k: &str| k.to_owned(),
            &mut findings,
        );
    }
    assert!(findings.is_empty());
}

#[test]
fn a_missing_digest_a_stray_one_and_a_gap_are_found() {
    let signer = Signer::from_pem(PRIVATE).unwrap();
    let mut digests = chain(&signer, 4);
    let removed = digests.remove(1);
    let (found, on) = run(&digests, &ChainSpan::default(), None);
    assert_eq!(on, 3);
    assert_eq!(
        found,
        [format!(
            "{}: missing: named as previous by {}",
            removed.key, digests[1].key
        )]
    );

    // A digest no later one links to; a window that does not follow its previous one.
    let mut digests = chain(&signer, 3);
    let mut stray = digests[1].clone();
    stray.key = "digest/2026/11/29/20261129T013000Z.json".into();
    digests.insert(2, stray);
    let doc = digests[1].doc.as_mut().unwrap();
    doc.window.lo = "11".into();
    let (found, _) = run(&digests, &ChainSpan::default(), None);
    assert!(
        found.contains(&format!(
            "{}: not part of the chain: no later digest links to it",
            digests[2].key
        )),
        "{found:?}"
    );

    // The database's head is not there: the newest digest was removed.
    let digests = chain(&signer, 3);
    let record = ChainRecord {
        head: Some(ChainHead {
            key: "digest/2026/11/29/20261129T030000Z.json".into(),
            sha256: String::new(),
            signature: String::new(),
            hi: 40,
        }),
        ..ChainRecord::default()
    };
    let (found, on) = run(&digests, &ChainSpan::default(), Some(&record));
    assert_eq!(on, 3);
    assert_eq!(
        found,
        [
            "digest/2026/11/29/20261129T030000Z.json: missing: the database recorded it as the chain's newest digest"
        ]
    );
}

#[test]
fn a_window_gap_is_found_unless_declared() {
    let signer = Signer::from_pem(PRIVATE).unwrap();
    let mut digests = chain(&signer, 2);
    let later = &mut digests[1];
    let doc = later.doc.as_mut().unwrap();
    doc.window.lo = "12".into();
    let (found, _) = run(&digests, &ChainSpan::default(), None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("gap between windows: it starts at transaction 12"),
        "{found:?}"
    );
    digests[1].doc.as_mut().unwrap().window.follows_previous = false;
    assert_eq!(
        run(&digests, &ChainSpan::default(), None).0,
        Vec::<String>::new()
    );
}

#[test]
fn a_pending_runs_digest_past_the_head_is_a_note_and_a_missing_signature_no_alteration() {
    let signer = Signer::from_pem(PRIVATE).unwrap();
    let mut digests = chain(&signer, 3);
    let pending = digests[2].doc.as_ref().unwrap().run_id;
    let record = ChainRecord {
        head: Some(ChainHead {
            key: digests[1].key.clone(),
            sha256: String::new(),
            signature: String::new(),
            hi: 20,
        }),
        written: std::collections::BTreeMap::from([(
            digests[2].key.clone(),
            Written {
                run_id: pending,
                fate: RunFate::Pending,
            },
        )]),
        ..ChainRecord::default()
    };
    let mut report = Verification::default();
    let on = walk(
        &digests,
        &ChainSpan::default(),
        Some(&record),
        &|k: &str| k.to_owned(),
        &mut report,
    );
    assert_eq!(on.len(), 2);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(
        report.notes.contains(&format!(
            "{}: the digest of run {pending}, still pending (the database knows it); it joins the chain when the run commits",
            digests[2].key
        )),
        "{:#?}",
        report.notes
    );

    // A signature that is not there is reported once, with its digest, as unsigned.
    digests[0].signature = None;
    assert_eq!(
        run(&digests, &ChainSpan::default(), None).0,
        Vec::<String>::new()
    );
    let mut findings = Vec::new();
    check_signature(
        &digests[0],
        &[signer.public_key().clone()],
        &|k: &str| k.to_owned(),
        &mut findings,
    );
    assert_eq!(
        findings,
        [Finding {
            subject: digests[0].key.clone(),
            problem: format!(
                "unsigned: signature missing ({}.sig is not there)",
                digests[0].key
            ),
        }]
    );
}
