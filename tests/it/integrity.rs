//! The signed digest chain: written with every committed scheduled run, verified by
//! `verify-chain` online (against the database's head) and offline (a copy and public keys), and
//! by `openssl` alone; every kind of tampering is reported by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use audit_exporter::commands::{self, DestinationAction};
use audit_exporter::domain::{PublicKey, Start};
use audit_exporter::export::{ChainSpan, Verification, verify_chain};
use audit_exporter::sink::{self, BucketReader};
use audit_exporter::store::Claim;

use crate::cli::{audit_exporter, stderr};
use crate::harness::{S3_ACCESS_KEY, S3_SECRET_KEY, TestBucket, TestDb, files, settings};
use crate::{destination, export_now, exporter};

/// An Ed25519 key pair made by openssl: (private key file, public key file).
pub fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(ok.success());
    (private, public)
}

fn signing_env(key: &Path) -> (String, String) {
    (
        "AUDIT_EXPORTER__INTEGRITY__SIGNING_KEY_FILE".into(),
        key.display().to_string(),
    )
}

fn public_key(file: &Path) -> PublicKey {
    PublicKey::from_pem(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// `openssl pkeyutl -verify -rawin` on one digest and its signature.
fn openssl_verifies(public: &Path, digest: &Path) -> bool {
    let output = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(public)
        .arg("-rawin")
        .arg("-in")
        .arg(digest)
        .arg("-sigfile")
        .arg(format!("{}.sig", digest.display()))
        .output()
        .unwrap();
    output.status.success()
        && String::from_utf8_lossy(&output.stdout).contains("Signature Verified Successfully")
}

/// The digests (not their signatures) of a directory destination, in key order.
fn digest_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_keys()
        .filter(|k| k.starts_with("digest/") && k.ends_with(".json"))
        .collect()
}

async fn verify_dir(dir: &Path, keys: &[PublicKey]) -> Verification {
    verify_chain(
        &BucketReader::File(dir.to_owned()),
        "",
        keys,
        &ChainSpan::default(),
        None,
    )
    .await
    .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    for (key, bytes) in files(from) {
        let path = to.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn problems(v: &Verification) -> Vec<String> {
    v.findings
        .iter()
        .map(|f| format!("{}: {}", f.subject, f.problem))
        .collect()
}

#[tokio::test]
async fn an_intact_chain_verifies_online_offline_and_with_openssl() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(keys.path(), "k1");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("files");
    let mut env = bucket.destination_env("bucket", "audit/eu");
    env.extend(crate::harness::file_destination_env("files", &dir));
    env.push(signing_env(&private));
    let settings = settings(&db, env.clone());
    let exporter = exporter(&db, &settings);

    // Events, an empty window (a heartbeat), events again; then a re-export.
    crate::append(&db, 20, None).await;
    for name in ["bucket", "files"] {
        let report = export_now(&exporter, &settings, name).await;
        assert!(report.digest.is_some());
    }
    for name in ["bucket", "files"] {
        export_now(&exporter, &settings, name).await;
    }
    crate::append(&db, 5, Some("acme")).await;
    for name in ["bucket", "files"] {
        export_now(&exporter, &settings, name).await;
    }
    let dest = destination(&settings, "files");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let now = chrono::Utc::now();
    let reexport = exporter
        .reexport(
            dest,
            sink.as_ref(),
            (now - chrono::Duration::hours(2), now),
            None,
            &indicatif::ProgressBar::hidden(),
        )
        .await
        .unwrap();
    assert!(reexport.digest.unwrap().contains("/digest/reexport/"));

    // openssl alone verifies each digest of the directory, and of the bucket.
    let digests = digest_files(&dir);
    assert_eq!(digests.len(), 4, "{digests:?}");
    for key in &digests {
        assert!(openssl_verifies(&public, &dir.join(key)), "{key}");
    }
    let stored = bucket.objects("audit/eu/digest/").await;
    let copy = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (key, bytes) in &stored {
        let path = copy.path().join(key.replace('/', "_"));
        std::fs::write(&path, bytes).unwrap();
        if key.ends_with(".json") {
            std::fs::write(
                format!("{}.sig", path.display()),
                &stored[&format!("{key}.sig")],
            )
            .unwrap();
            assert_eq!(stored[&format!("{key}.sig")].len(), 64);
            assert!(openssl_verifies(&public, &path), "{key}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3);

    // The chain's links and windows, as a reader sees them.
    let docs: Vec<serde_json::Value> = digests
        .iter()
        .filter(|k| !k.contains("reexport"))
        .map(|k| serde_json::from_slice(&std::fs::read(dir.join(k)).unwrap()).unwrap())
        .collect();
    assert!(docs[0]["previous"].is_null());
    assert_eq!(docs[1]["previous"]["key"], digests[0].as_str());
    assert_eq!(docs[1]["window"]["lo"], docs[0]["window"]["hi"]);
    assert_eq!(docs[1]["heartbeat"], true);
    assert_eq!(docs[2]["objects"][0]["events"], 5);

    // verify-chain: online and offline, for both destinations.
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("AUDIT_EXPORTER__DATABASE__URL", &db.url));
    for name in ["bucket", "files"] {
        let output = audit_exporter(&["verify-chain", "--destination", name], &env);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{stdout}{}", stderr(&output));
        assert!(stdout.contains(": intact"), "{stdout}");
    }
    let file_url = format!("file://{}", dir.display());
    let output = audit_exporter(
        &[
            "verify-chain",
            "--url",
            &file_url,
            "--public-key",
            public.to_str().unwrap(),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", stderr(&output));
    assert!(
        stdout.contains("4 digests, 4 objects, 50 events"),
        "{stdout}"
    );
    let s3_url = format!("s3://{}/audit/eu", bucket.name);
    let output = audit_exporter(
        &[
            "verify-chain",
            "--url",
            &s3_url,
            "--endpoint",
            &bucket.endpoint,
            "--public-key",
            public.to_str().unwrap(),
        ],
        &[
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", stderr(&output));
    assert!(
        stdout.contains("3 digests, 3 objects, 25 events"),
        "{stdout}"
    );

    // The newest digest removed from the bucket: only the database's head tells.
    let newest = stored.keys().rfind(|k| k.ends_with(".json")).unwrap();
    bucket
        .client()
        .delete_object()
        .bucket(&bucket.name)
        .key(newest)
        .send()
        .await
        .unwrap();
    let output = audit_exporter(&["verify-chain", "--destination", "bucket"], &env);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", stderr(&output));
    assert!(
        stdout.contains(&format!(
            "FINDING: s3://{}/{newest}: missing: the database recorded it as the chain's newest digest",
            bucket.name
        )),
        "{stdout}"
    );
}

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
    assert_eq!(std::fs::read(dir.join(&key)).unwrap(), written);
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

#[tokio::test]
async fn a_reset_is_a_declared_break_and_the_chain_goes_on() {
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(keys.path(), "k1");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("files");
    let mut env = crate::harness::file_destination_env("files", &dir);
    env.push(signing_env(&private));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    crate::append(&db, 3, None).await;
    export_now(&exporter, &settings, "files").await;
    crate::append(&db, 3, None).await;
    let reset = DestinationAction::Reset {
        name: "files".into(),
        start: Start::Now,
    };
    commands::destination(&settings, &reset, &mut Vec::new())
        .await
        .unwrap();
    crate::append(&db, 2, None).await;
    export_now(&exporter, &settings, "files").await;
    let digests = digest_files(&dir);
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&digests[1])).unwrap()).unwrap();
    assert_eq!(last["window"]["follows_previous"], false);
    assert_eq!(last["previous"]["key"], digests[0].as_str());
    let v = verify_dir(&dir, &[public_key(&public)]).await;
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
    assert!(
        v.notes.iter().any(|n| n.contains("a declared break")),
        "{:?}",
        v.notes
    );
}

#[test]
fn integrity_keys_are_checked_and_shared() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(keys.path(), "k1");
    let key_env = "AUDIT_EXPORTER__INTEGRITY__SIGNING_KEY_FILE";
    let output = audit_exporter(
        &["integrity", "public-key"],
        &[(key_env, private.to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with(&std::fs::read_to_string(&public).unwrap()));
    let der = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&public)
        .output()
        .unwrap()
        .stdout;
    let fingerprint = audit_exporter::domain::sha256_hex(&der);
    assert!(
        stdout.contains(&format!("SHA-256 fingerprint: {fingerprint}")),
        "{stdout}"
    );
    let output = audit_exporter(
        &["config", "check"],
        &[(key_env, private.to_str().unwrap())],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&fingerprint), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"));

    // A missing file, a key of another type, a public key in its place: exit 2, naming the key.
    let ec = keys.path().join("ec.pem");
    assert!(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out"
            ])
            .arg(&ec)
            .status()
            .unwrap()
            .success()
    );
    let missing = keys.path().join("missing.pem");
    for file in [&missing, &ec, &public] {
        let output = audit_exporter(&["config", "check"], &[(key_env, file.to_str().unwrap())]);
        assert_eq!(output.status.code(), Some(2), "{}", file.display());
        let message = stderr(&output);
        assert!(
            message.contains(&format!("integrity.signing_key_file: {}:", file.display()))
                && message.contains("allowed: an Ed25519 private key in PKCS#8 PEM"),
            "{message}"
        );
        assert!(!message.contains("BEGIN"), "{message}");
    }
    let output = audit_exporter(&["integrity", "public-key"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("integrity.signing_key_file is not set"));

    // verify-chain: bad usage exits 2.
    let output = audit_exporter(&["verify-chain"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let output = audit_exporter(
        &[
            "verify-chain",
            "--url",
            "file:///nonexistent-dir",
            "--public-key",
            public.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = audit_exporter(
        &[
            "verify-chain",
            "--url",
            "file:///tmp",
            "--public-key",
            private.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--public-key"),
        "{}",
        stderr(&output)
    );
}
