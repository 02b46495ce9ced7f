//! SIGTERM of `run` and of `export` mid-upload: the upload is aborted and the lease freed.

use crate::append;
use crate::check::assert_exactly_once;
use crate::harness::{TestBucket, TestDb};
use crate::lifecycle::*;
use crate::operate::{Running, done_runs, due_now, lease_holder, wait_until};
use crate::proxy::{Fault, Proxy};
use std::time::Duration;

/// A destination behind `proxy`, with small parts sent one at a time and a long lease.
fn stalled_env(db: &TestDb, bucket: &TestBucket, proxy: &Proxy) -> Vec<(String, String)> {
    let mut env = bucket.destination_env("main", "p");
    env.retain(|(k, _)| !k.ends_with("__ENDPOINT"));
    for (k, v) in [
        ("DESTINATIONS__MAIN__ENDPOINT", proxy.endpoint.as_str()),
        ("DATABASE__URL", db.url.as_str()),
        ("RUN__CHECK_CRON", "* * * * * *"),
        ("RUN__LISTEN", ""),
        ("RUN__SHUTDOWN_GRACE_SECS", "1"),
        // Long: without the release, every export in the next minute would be skipped.
        ("EXPORTER__LEASE_SECS", "60"),
        ("EXPORTER__PART_SIZE_MIB", "5"),
        ("EXPORTER__UPLOADS_IN_FLIGHT", "1"),
    ] {
        env.push((format!("AUDIT_EXPORTER__{k}"), v.to_owned()));
    }
    env
}

fn aborted(proxy: &Proxy) -> bool {
    proxy
        .seen()
        .iter()
        .any(|s| s.method == "DELETE" && s.query.contains("uploadId="))
}

#[tokio::test]
async fn sigterm_of_run_mid_upload_frees_the_lease_for_an_immediate_export() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let env = stalled_env(&db, &bucket, &proxy);
    let is_part = |s: &crate::proxy::Seen| s.query.contains("partNumber=");
    append(&db, 12_000, None).await;
    // The first part is held long enough for the stop to land in the middle of the upload.
    proxy.inject(Fault::stall(is_part, 1, Duration::from_secs(3)));
    due_now(&db, &["main"]).await;
    let run = Running::start(None, &env);
    wait_until("the first part", || async {
        proxy.seen().iter().any(is_part).then_some(())
    })
    .await;
    assert_eq!(lease_holder(&db).await, run.pid());
    let (code, took) = run.stop().await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    let owner: Option<String> = sqlx::query_scalar("SELECT lease_owner FROM export_destinations")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(owner, None, "the lease was released before exit");
    assert!(aborted(&proxy), "the multipart upload was aborted");
    assert_eq!(done_runs(&db, "main").await, 0);

    let (code, out, err) = cli(&["export"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("main: exported 12000 events") && out.contains("(resumed)"),
        "{out}"
    );
    assert_exactly_once(&db, "main", None, &bucket.objects("p/").await).await;
}

#[tokio::test]
async fn sigterm_of_export_mid_upload_aborts_it_and_frees_the_lease() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let env = stalled_env(&db, &bucket, &proxy);
    let is_part = |s: &crate::proxy::Seen| s.query.contains("partNumber=");
    append(&db, 12_000, None).await;
    proxy.inject(Fault::stall(is_part, 1, Duration::from_secs(3)));
    let mut export = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
        .arg("export")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until("the first part", || async {
        proxy.seen().iter().any(is_part).then_some(())
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(export.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), export.wait())
        .await
        .expect("export stops at once")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "an export stopped before its commit failed"
    );
    let owner: Option<String> = sqlx::query_scalar("SELECT lease_owner FROM export_destinations")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(owner, None, "the lease was released before exit");
    assert!(aborted(&proxy), "the multipart upload was aborted");

    let (code, out, err) = cli(&["export"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("(resumed)"), "{out}");
    assert_exactly_once(&db, "main", None, &bucket.objects("p/").await).await;
}
