//! An intact chain over several runs and two destinations; a reset's declared break and a
//! cancelled run's leftovers.

use audit_exporter::commands::{self, DestinationAction};
use audit_exporter::domain::Start;
use audit_exporter::export::{ChainSpan, verify_chain};
use audit_exporter::sink::{self, BucketReader};
use audit_exporter::store::Claim;

use crate::cli::{audit_exporter, stderr};
use crate::harness::{S3_ACCESS_KEY, S3_SECRET_KEY, TestBucket, TestDb, settings};
use crate::{destination, export_now, exporter};

use super::*;

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
    // The directory's runs are split into objects of about 1 MiB.
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__FILES__MAX_OBJECT_BYTES".into(),
        "1048576".into(),
    ));
    let settings = settings(&db, env.clone());
    let exporter = exporter(&db, &settings);

    // Events, an empty window (a heartbeat), events again; then a re-export.
    crate::append(&db, 3000, None).await;
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
    let split = docs[0]["objects"].as_array().unwrap();
    assert!(split.len() >= 2, "{split:?}");
    assert!(split[0]["key"].as_str().unwrap().contains("_part0001"));
    assert!(split[1]["oldest_occurred_at"].is_string());
    let events: u64 = split.iter().map(|o| o["events"].as_u64().unwrap()).sum();
    assert_eq!(events, 3000);
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
        stdout.contains("4 digests, ") && stdout.contains(" objects, 6010 events"),
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
        stdout.contains("3 digests, 3 objects, 3005 events"),
        "{stdout}"
    );

    // A dot-file slipped into the bucket is an object like any other.
    bucket
        .client()
        .put_object()
        .bucket(&bucket.name)
        .key("audit/eu/.x.json")
        .body(b"{}\n".to_vec().into())
        .send()
        .await
        .unwrap();
    let output = audit_exporter(&["verify-chain", "--destination", "bucket"], &env);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", stderr(&output));
    assert!(
        stdout.contains(&format!(
            "FINDING: s3://{}/audit/eu/.x.json: extra object: no digest names it",
            bucket.name
        )),
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
async fn a_reset_is_a_declared_break_and_a_cancelled_run_is_no_part_of_the_chain() {
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

    // A run that wrote its object and digest, then was cancelled: the next run links to the
    // head, not to it. Online it is known as abandoned; offline it is a stray.
    crate::append(&db, 2, None).await;
    let dest = destination(&settings, "files");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let Claim::Granted(lease) = exporter.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let (run, _) = exporter.plan_or_resume(&lease, dest, None).await.unwrap();
    let delivered = exporter.deliver(&lease, &run, sink.as_ref()).await.unwrap();
    let cancelled = exporter
        .seal(&lease, dest, &run, &delivered, sink.as_ref())
        .await
        .unwrap()
        .unwrap();
    db.store.release(&lease).await.unwrap();
    let cancel = DestinationAction::Cancel {
        name: "files".into(),
    };
    commands::destination(&settings, &cancel, &mut Vec::new())
        .await
        .unwrap();
    export_now(&exporter, &settings, "files").await;
    let digests = digest_files(&dir);
    assert_eq!(digests.len(), 4);
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&digests[3])).unwrap()).unwrap();
    assert_eq!(last["previous"]["key"], digests[1].as_str());
    assert_eq!(digests[2], cancelled);

    let record = db.store.chain_record("files").await.unwrap();
    let online = verify_chain(
        &BucketReader::File(dir.clone()),
        "",
        &[public_key(&public)],
        &ChainSpan::default(),
        Some(&record),
    )
    .await
    .unwrap();
    assert!(online.findings.is_empty(), "{:#?}", online.findings);
    assert_eq!(
        online
            .notes
            .iter()
            .filter(|n| n.contains("a run that was then abandoned"))
            .count(),
        2,
        "{:#?}",
        online.notes
    );
    let offline = problems(&verify_dir(&dir, &[public_key(&public)]).await);
    let stray = dir.join(&cancelled).display().to_string();
    let object = dir.join(&run.object_key).display().to_string();
    assert_eq!(
        offline,
        [
            format!("{stray}: not part of the chain: no later digest links to it"),
            format!("{object}: extra object: no digest names it"),
        ]
    );
}
