//! A crash between the digest's upload and the commit, and a key rotated meanwhile.

use std::path::Path;

use audit_exporter::sink::{self};
use audit_exporter::store::Claim;

use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestDb, settings};
use crate::{destination, export_now, exporter};

use super::*;

#[tokio::test]
async fn a_run_resumed_after_its_digest_was_written_writes_the_same_bytes_and_keys_rotate() {
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().unwrap();
    let (first_key, first_public) = openssl_key(keys.path(), "k1");
    let (second_key, second_public) = openssl_key(keys.path(), "k2");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("files");
    let env = crate::harness::file_destination_env("files", &dir);
    let with_key = |key: &Path| {
        let mut env = env.clone();
        env.push(signing_env(key));
        settings(&db, env)
    };
    let first = with_key(&first_key);
    let exporter1 = exporter(&db, &first);
    crate::append(&db, 3, None).await;
    export_now(&exporter1, &first, "files").await;

    // A run delivered and its digest written; the process dies before the commit.
    crate::append(&db, 4, None).await;
    let dest = destination(&first, "files");
    let sink = sink::connect(dest, &first.exporter).await.unwrap();
    let Claim::Granted(lease) = exporter1.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let (run, _) = exporter1.plan_or_resume(&lease, dest, None).await.unwrap();
    let delivered = exporter1
        .deliver(&lease, &run, sink.as_ref())
        .await
        .unwrap();
    let key = exporter1
        .seal(&lease, dest, &run, &delivered, sink.as_ref())
        .await
        .unwrap()
        .unwrap();
    let written = std::fs::read(dir.join(&key)).unwrap();
    let signature = std::fs::read(dir.join(format!("{key}.sig"))).unwrap();
    db.store.release(&lease).await.unwrap();
    // What the crash may also have cost: the digest lost on its way (a directory that was
    // not synced); the signing key changed before the next attempt.
    std::fs::remove_file(dir.join(&key)).unwrap();
    let second = with_key(&second_key);
    let exporter2 = exporter(&db, &second);
    let report = export_now(&exporter2, &second, "files").await;
    assert!(report.resumed);
    assert_eq!(report.run.id, run.id);
    assert_eq!(
        String::from_utf8(std::fs::read(dir.join(&key)).unwrap()).unwrap(),
        String::from_utf8(written.clone()).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.join(format!("{key}.sig"))).unwrap(),
        signature
    );
    let head = db.store.chain_head("files").await.unwrap().unwrap();
    assert_eq!(head.key, key);
    assert_eq!(head.sha256, audit_exporter::domain::sha256_hex(&written));

    // The next run is signed with the new key; the chain goes on across the rotation.
    crate::append(&db, 2, None).await;
    export_now(&exporter2, &second, "files").await;
    let digests = digest_files(&dir);
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(digests.last().unwrap())).unwrap()).unwrap();
    assert_eq!(
        last["public_key_sha256"],
        public_key(&second_public).fingerprint()
    );
    assert_eq!(last["previous"]["key"], key.as_str());
    let both = [public_key(&first_public), public_key(&second_public)];
    let v = verify_dir(&dir, &both).await;
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
    assert_eq!((v.digests, v.events), (3, 9));
    let v = verify_dir(&dir, &both[..1]).await;
    assert_eq!(v.findings.len(), 1, "{:#?}", v.findings);
    assert!(
        v.findings[0]
            .problem
            .contains("signed with a key that was not given")
    );

    // Online, the keys come from the database: no --public-key needed.
    let mut env: Vec<(String, String)> = env.clone();
    env.push(signing_env(&second_key));
    env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = audit_exporter(&["verify-chain", "--destination", "files"], &env);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
}
