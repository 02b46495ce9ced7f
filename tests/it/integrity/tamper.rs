//! One tampering at a time, each reported by name with exit 1.

use std::path::Path;

use audit_exporter::export::{ChainSpan, verify_chain};
use audit_exporter::sink::BucketReader;

use crate::cli::audit_exporter;
use crate::harness::{TestDb, settings};
use crate::{export_now, exporter};

use super::*;

#[tokio::test]
async fn each_kind_of_tampering_is_reported_by_name() {
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(keys.path(), "k1");
    let (other, _) = openssl_key(keys.path(), "k2");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("files");
    let mut env = crate::harness::file_destination_env("files", &dir);
    env.push(signing_env(&private));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    for n in [3, 0, 4, 2] {
        crate::append(&db, n, None).await;
        export_now(&exporter, &settings, "files").await;
    }
    let record = db.store.chain_record("files").await.unwrap();
    let key = public_key(&public);
    assert!(
        verify_dir(&dir, std::slice::from_ref(&key))
            .await
            .findings
            .is_empty()
    );
    let digests = digest_files(&dir);
    let doc = |i: usize| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(&digests[i])).unwrap()).unwrap()
    };
    let object = |i: usize| doc(i)["objects"][0]["key"].as_str().unwrap().to_owned();
    let at = |root: &Path, key: &str| root.join(key).display().to_string();

    type Tamper<'a> = Box<dyn Fn(&Path) -> Vec<String> + 'a>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "a byte of an object changed",
            Box::new(|root: &Path| {
                let path = root.join(object(2));
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[10] ^= 1;
                std::fs::write(&path, bytes).unwrap();
                vec![format!("{}: altered: SHA-256", at(root, &object(2)))]
            }),
        ),
        (
            "an object deleted",
            Box::new(|root: &Path| {
                std::fs::remove_file(root.join(object(0))).unwrap();
                vec![format!(
                    "{}: missing (named by digest",
                    at(root, &object(0))
                )]
            }),
        ),
        (
            "a digest deleted in the middle",
            Box::new(|root: &Path| {
                std::fs::remove_file(root.join(&digests[1])).unwrap();
                vec![format!(
                    "{}: missing: named as previous by {}",
                    at(root, &digests[1]),
                    digests[2]
                )]
            }),
        ),
        (
            "two objects swapped",
            Box::new(|root: &Path| {
                let (a, b) = (root.join(object(0)), root.join(object(2)));
                let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
                std::fs::write(&a, bytes_b).unwrap();
                std::fs::write(&b, bytes_a).unwrap();
                vec![
                    format!("{}: altered", at(root, &object(0))),
                    format!("{}: altered", at(root, &object(2))),
                ]
            }),
        ),
        (
            "a digest re-signed with another key",
            Box::new(|root: &Path| {
                let mut forged = doc(1);
                forged["window"]["hi"] = "1".into();
                let other = audit_exporter::domain::Signer::from_pem(
                    &std::fs::read_to_string(&other).unwrap(),
                )
                .unwrap();
                forged["public_key_sha256"] = other.public_key().fingerprint().into();
                let mut bytes = serde_json::to_vec_pretty(&forged).unwrap();
                bytes.push(b'\n');
                std::fs::write(root.join(&digests[1]), &bytes).unwrap();
                std::fs::write(root.join(format!("{}.sig", digests[1])), other.sign(&bytes))
                    .unwrap();
                vec![
                    format!(
                        "{}: signed with a key that was not given",
                        at(root, &digests[1])
                    ),
                    format!(
                        "{}: altered: its SHA-256 differs from the one {} recorded",
                        at(root, &digests[1]),
                        digests[2]
                    ),
                ]
            }),
        ),
        (
            "an object added that no digest names",
            Box::new(|root: &Path| {
                let extra = object(3).replace(".jsonl", "_extra.jsonl");
                std::fs::write(root.join(&extra), b"{}\n").unwrap();
                vec![format!(
                    "{}: extra object: no digest names it",
                    at(root, &extra)
                )]
            }),
        ),
        (
            "a digest's signature deleted",
            Box::new(|root: &Path| {
                std::fs::remove_file(root.join(format!("{}.sig", digests[1]))).unwrap();
                vec![format!(
                    "{}: unsigned: signature missing ({}.sig is not there)",
                    at(root, &digests[1]),
                    digests[1]
                )]
            }),
        ),
        (
            "dot-files slipped in, at the top and beside the objects",
            Box::new(|root: &Path| {
                let beside = object(3).replace(".jsonl", "");
                let beside = match beside.rsplit_once('/') {
                    Some((folder, name)) => format!("{folder}/.{name}.jsonl"),
                    None => format!(".{beside}.jsonl"),
                };
                std::fs::write(root.join(".x.json"), b"{}\n").unwrap();
                std::fs::write(root.join(&beside), b"{}\n").unwrap();
                vec![
                    format!("{}: extra object: no digest names it", at(root, ".x.json")),
                    format!("{}: extra object: no digest names it", at(root, &beside)),
                ]
            }),
        ),
        (
            "a file slipped into the digest folder",
            Box::new(|root: &Path| {
                let extra = digests[2].replace(".json", ".txt");
                std::fs::write(root.join(&extra), b"note\n").unwrap();
                vec![format!(
                    "{}: extra object in the digest folder",
                    at(root, &extra)
                )]
            }),
        ),
    ];
    for (case, tamper) in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&dir, copy.path());
        let expected = tamper(copy.path());
        let found = problems(&verify_dir(copy.path(), std::slice::from_ref(&key)).await);
        for want in &expected {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "{case}: expected {want:?} in {found:#?}"
            );
        }
        if case.contains("signature deleted") {
            assert_eq!(
                found, expected,
                "{case}: a missing signature is no alteration"
            );
        }
        // The binary says so too, with exit 1.
        let url = format!("file://{}", copy.path().display());
        let output = audit_exporter(
            &[
                "verify-chain",
                "--url",
                &url,
                "--public-key",
                public.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(output.status.code(), Some(1), "{case}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("FINDING: {}", expected[0])),
            "{case}: {stdout}"
        );
    }

    // The summary counts the events of the objects that verified, and only those.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir, copy.path());
    let path = copy.path().join(object(2));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let v = verify_dir(copy.path(), std::slice::from_ref(&key)).await;
    assert_eq!((v.objects, v.events), (4, 3 + 2), "{:#?}", v.findings);

    // A temp file of a directory write in progress is no object; any other dot-file is.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir, copy.path());
    let temp = format!(".{}.{}.tmp", "x.jsonl", uuid::Uuid::new_v4().simple());
    std::fs::write(copy.path().join(&temp), b"half").unwrap();
    let v = verify_dir(copy.path(), std::slice::from_ref(&key)).await;
    assert!(v.findings.is_empty(), "{:#?}", v.findings);

    // An object slipped in with a time from before the chain began: online the run log knows
    // no run wrote it; offline it is named, as what nothing can tell from an older object.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir, copy.path());
    let stray = object(1).replace(".jsonl", "_old.jsonl");
    let path = copy.path().join(&stray);
    std::fs::write(&path, b"{}\n").unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let online = verify_chain(
        &BucketReader::File(copy.path().to_owned()),
        "",
        std::slice::from_ref(&key),
        &ChainSpan::default(),
        Some(&record),
    )
    .await
    .unwrap();
    assert_eq!(
        problems(&online),
        [format!(
            "{}: extra object: no digest names it",
            at(copy.path(), &stray)
        )]
    );
    let offline = verify_dir(copy.path(), std::slice::from_ref(&key)).await;
    assert!(offline.findings.is_empty(), "{:#?}", offline.findings);
    assert!(
        offline.notes.iter().any(|n| n
            .starts_with(&format!("{}: written (", at(copy.path(), &stray)))
            && n.contains("before the chain's first digest")),
        "{:#?}",
        offline.notes
    );

    // The newest digest deleted: offline nothing can tell, online the head can.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir, copy.path());
    let newest = digests.last().unwrap();
    std::fs::remove_file(copy.path().join(newest)).unwrap();
    let online = verify_chain(
        &BucketReader::File(copy.path().to_owned()),
        "",
        std::slice::from_ref(&key),
        &ChainSpan::default(),
        Some(&record),
    )
    .await
    .unwrap();
    let found = problems(&online);
    assert!(
        found.iter().any(|f| f.starts_with(&format!(
            "{}: missing: the database recorded it",
            copy.path().join(newest).display()
        ))),
        "{found:#?}"
    );
}
