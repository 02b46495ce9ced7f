//! An object found at a run's key counts as delivered only if it holds the run's own bytes: a
//! resume that meets anything else there fails naming it, moves nothing and records nothing,
//! and finishes once it is moved away.

use audit_exporter::export::When;
use audit_exporter::settings::Settings;
use audit_exporter::sink::{self, PutOutcome};
use audit_exporter::store::Claim;
use aws_sdk_s3::config::RequestChecksumCalculation;
use sha2::{Digest, Sha256};

use crate::check::assert_exactly_once;
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::split::stop_before;
use crate::{append, destination, export_now, exporter};

const FORGED: &[u8] = b"{\"forged\":true}\n";

fn env_of(name: &str, key: &str, value: String) -> (String, String) {
    (
        format!(
            "AUDIT_EXPORTER__DESTINATIONS__{}__{key}",
            name.to_uppercase()
        ),
        value,
    )
}

/// The pending runs of the database and what their run log records of them.
async fn pending(db: &TestDb) -> (i64, Vec<i32>) {
    let runs = sqlx::query_scalar("SELECT count(*) FROM export_runs WHERE status = 'pending'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let seqs = sqlx::query_scalar(
        "SELECT o.seq FROM export_run_objects o JOIN export_runs r ON r.id = o.run_id
         WHERE r.destination = 'main' ORDER BY o.seq",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    (runs, seqs)
}

/// The error a resume that meets `FORGED` where it writes `own` gives.
fn refusal(location: &str, own: &[u8]) -> String {
    format!(
        "{location} already holds {} bytes with SHA-256 {}, where this run writes {} bytes with \
         SHA-256 {}: move it away",
        FORGED.len(),
        hex::encode(Sha256::digest(FORGED)),
        own.len(),
        hex::encode(Sha256::digest(own)),
    )
}

/// The error of an export of destination `main` that must fail, with its causes.
async fn failed_export(db: &TestDb, settings: &Settings) -> String {
    let dest = destination(settings, "main");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let error = exporter(db, settings)
        .export(dest, sink.as_ref(), When::Now)
        .await
        .unwrap_err();
    format!("{error:#}")
}

#[tokio::test]
async fn a_foreign_file_at_the_next_key_of_a_stopped_run_fails_the_resume_until_moved_away() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let reference = tempfile::tempdir().unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.push(env_of("main", "MAX_OBJECT_BYTES", (1 << 20).to_string()));
    env.extend(file_destination_env("reference", reference.path()));
    env.push(env_of(
        "reference",
        "MAX_OBJECT_BYTES",
        (1 << 20).to_string(),
    ));
    let settings = settings(&db, env);
    append(&db, 6_000, None).await;
    stop_before(&db, &settings, "main", "_part0002").await;
    let first = files(dir.path()).into_keys().next().unwrap();
    let next = first.replace("_part0001", "_part0002");
    std::fs::write(dir.path().join(&next), FORGED).unwrap();

    // What the run writes there, as a process that was never stopped cuts it.
    export_now(&exporter(&db, &settings), &settings, "reference").await;
    let own = files(reference.path())
        .into_iter()
        .find(|(k, _)| k.ends_with("_part0002.jsonl"))
        .unwrap()
        .1;
    let said = failed_export(&db, &settings).await;
    let location = dir.path().join(&next).display().to_string();
    assert!(said.contains(&refusal(&location, &own)), "{said}");
    assert_eq!(db.watermark_of("main").await, 0, "the watermark stays");
    assert_eq!(
        pending(&db).await,
        (1, vec![1]),
        "pending, nothing recorded"
    );
    assert_eq!(std::fs::read(dir.path().join(&next)).unwrap(), FORGED);

    std::fs::remove_file(dir.path().join(&next)).unwrap();
    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert!(report.resumed);
    assert_eq!(report.events, 6_000);
    assert_eq!(
        assert_exactly_once(&db, "main", None, &files(dir.path())).await,
        0
    );
    assert_eq!(
        files(dir.path()).into_values().collect::<Vec<_>>(),
        files(reference.path()).into_values().collect::<Vec<_>>(),
        "the same objects as a run never stopped"
    );
}

#[tokio::test]
async fn a_foreign_s3_object_at_the_next_key_fails_the_resume_and_a_multipart_own_one_is_accepted()
{
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let mut env = bucket.destination_env("main", "p");
    // Objects of 6 MiB in parts of 5 MiB: each a multipart upload.
    env.push(env_of("main", "MAX_OBJECT_BYTES", (6 << 20).to_string()));
    env.push(("AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB".into(), "5".into()));
    let settings = settings(&db, env);
    append(&db, 36_000, None).await;
    stop_before(&db, &settings, "main", "_part0003").await;
    let before = bucket.objects("p/").await;
    let keys: Vec<String> = before.keys().cloned().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(bucket.head(&keys[1]).await.e_tag().unwrap().contains('-'));
    // The second object was uploaded but not recorded: the resume meets it (a 412) and reads it
    // back. A third is planted where the run writes next.
    sqlx::query("DELETE FROM export_run_objects WHERE seq = 2")
        .execute(db.pool())
        .await
        .unwrap();
    let next = keys[0].replace("_part0001", "_part0003");
    let client = bucket.client();
    // Without a checksum: s3s-fs keeps an object's checksum past its deletion and would serve
    // the planted object's with the run's object written there later.
    client
        .put_object()
        .bucket(&bucket.name)
        .key(&next)
        .body(FORGED.to_vec().into())
        .customize()
        .config_override(
            aws_sdk_s3::config::Builder::default()
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired),
        )
        .send()
        .await
        .unwrap();

    let said = failed_export(&db, &settings).await;
    let location = format!("s3://{}/{next}", bucket.name);
    assert!(
        said.contains(&format!("{location} already holds 16 bytes with SHA-256 "))
            && said.contains(&hex::encode(Sha256::digest(FORGED)))
            && said.contains("move it away"),
        "{said}"
    );
    assert_eq!(db.watermark_of("main").await, 0, "the watermark stays");
    assert_eq!(
        pending(&db).await,
        (1, vec![1, 2]),
        "the run's own second object is accepted and recorded, the third is not"
    );

    client
        .delete_object()
        .bucket(&bucket.name)
        .key(&next)
        .send()
        .await
        .unwrap();
    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert!(report.resumed);
    assert_eq!(report.put, PutOutcome::Written);
    assert_eq!(report.events, 36_000);
    let objects = bucket.objects("p/").await;
    assert!(objects.len() >= 3, "{} objects", objects.len());
    for (key, bytes) in &before {
        assert_eq!(&objects[key], bytes, "{key} was not replaced");
    }
    assert_eq!(assert_exactly_once(&db, "main", None, &objects).await, 0);
}

#[tokio::test]
async fn a_foreign_file_at_a_heartbeats_key_fails_its_run_until_moved_away() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, file_destination_env("main", dir.path()));
    let dest = destination(&settings, "main");
    // A run of the empty window is planned, and something else is at its key.
    let planner = exporter(&db, &settings);
    let Claim::Granted(lease) = planner.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let (run, _) = planner.plan_or_resume(&lease, dest, None).await.unwrap();
    assert!(run.heartbeat_event_id.is_some());
    sqlx::query("UPDATE export_destinations SET lease_expires_at = now() - interval '1 second'")
        .execute(db.pool())
        .await
        .unwrap();
    let path = dir.path().join(&run.object_key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, FORGED).unwrap();

    let said = failed_export(&db, &settings).await;
    let expected = format!("{} already holds 16 bytes with SHA-256", path.display());
    assert!(said.contains(&expected), "{said}");
    assert_eq!(pending(&db).await, (1, vec![]));

    std::fs::remove_file(&path).unwrap();
    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert_eq!((report.run.id, report.events), (run.id, 0));
    let written = std::fs::read(&path).unwrap();
    assert!(written.starts_with(b"{") && written != FORGED);
}

#[tokio::test]
async fn what_is_not_a_file_at_the_next_key_fails_the_resume_naming_it_and_is_never_followed() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, FORGED).unwrap();
    let mut env = file_destination_env("main", dir.path());
    env.push(env_of("main", "MAX_OBJECT_BYTES", (1 << 20).to_string()));
    let settings = settings(&db, env);
    append(&db, 6_000, None).await;
    stop_before(&db, &settings, "main", "_part0002").await;
    let first = files(dir.path()).into_keys().next().unwrap();
    let next = dir.path().join(first.replace("_part0001", "_part0002"));

    let cases: [(&str, &dyn Fn()); 3] = [
        ("is a directory", &|| std::fs::create_dir(&next).unwrap()),
        ("is a symbolic link", &|| {
            std::os::unix::fs::symlink(outside.path().join("gone"), &next).unwrap()
        }),
        ("is a symbolic link", &|| {
            std::os::unix::fs::symlink(&secret, &next).unwrap()
        }),
    ];
    for (what, plant) in cases {
        plant();
        let said = failed_export(&db, &settings).await;
        let expected = format!("{} {what}, not an object: move it away", next.display());
        assert!(said.contains(&expected), "{said}");
        assert!(
            !said.contains(&hex::encode(Sha256::digest(FORGED))) && !said.contains("16 bytes"),
            "nothing of a link's target is read: {said}"
        );
        assert_eq!(db.watermark_of("main").await, 0, "the watermark stays");
        assert_eq!(
            pending(&db).await,
            (1, vec![1]),
            "pending, nothing recorded"
        );
        assert_eq!(std::fs::read(&secret).unwrap(), FORGED, "its target stays");
        match std::fs::remove_dir(&next) {
            Ok(()) => {}
            Err(_) => std::fs::remove_file(&next).unwrap(),
        }
    }

    let report = export_now(&exporter(&db, &settings), &settings, "main").await;
    assert!(report.resumed);
    assert_eq!(report.events, 6_000);
    assert!(std::fs::symlink_metadata(&next).unwrap().is_file());
    assert_eq!(
        assert_exactly_once(&db, "main", None, &files(dir.path())).await,
        0
    );
}
