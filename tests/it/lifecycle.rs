//! An operator at work: config corrected while a run is pending, a tenant filter changed after
//! committed runs, `destination cancel | reset | forget | list`, where a new stream starts, and
//! a graceful stop that frees the lease.

use std::collections::BTreeMap;

use audit_exporter::export::When;
use audit_exporter::sink;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::check::{HEARTBEAT, assert_exactly_once, decode, expected_ids};
use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestBucket, TestDb, file_destination_env, files, settings};
use crate::{append, destination, export_now, exporter};

pub(crate) fn var(name: &str, key: &str, value: &str) -> (String, String) {
    (
        format!(
            "AUDIT_EXPORTER__DESTINATIONS__{}__{key}",
            name.to_uppercase()
        ),
        value.to_owned(),
    )
}

fn with_secret(mut env: Vec<(String, String)>, secret: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| !k.ends_with("__SECRET_ACCESS_KEY"));
    env.push(var("hooli", "SECRET_ACCESS_KEY", secret));
    env
}

pub(crate) async fn expire_leases(db: &TestDb) {
    sqlx::query("UPDATE export_destinations SET lease_expires_at = now() - interval '1 second'")
        .execute(db.pool())
        .await
        .unwrap();
}

/// Runs the binary with `env` (pairs owned), returning exit code, stdout and stderr.
pub(crate) fn cli(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = audit_exporter(args, &env);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr(&output),
    )
}

/// The audit events (heartbeats left out) in the objects of the destination's committed
/// scheduled runs that finished in `[after, before)`, in window order.
async fn exported_between(
    db: &TestDb,
    name: &str,
    objects: &BTreeMap<String, Vec<u8>>,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Vec<Uuid> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT object_key FROM export_runs WHERE destination = $1 AND kind = 'scheduled'
           AND status = 'done' AND finished_at >= $2 AND finished_at < $3 ORDER BY window_lo, window_end",
    )
    .bind(name)
    .bind(after)
    .bind(before)
    .fetch_all(db.pool())
    .await
    .unwrap();
    keys.iter()
        .flat_map(|k| decode(k, &objects[k]))
        .filter(|e| e["action"] != HEARTBEAT)
        .map(|e| Uuid::parse_str(e["event_id"].as_str().unwrap()).unwrap())
        .collect()
}

pub(crate) async fn operator_event(
    db: &TestDb,
    action: &str,
) -> (Option<String>, serde_json::Value, serde_json::Value) {
    let row = sqlx::query("SELECT tenant_id, actor, metadata FROM audit_events WHERE action = $1")
        .bind(action)
        .fetch_one(db.pool())
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

pub(crate) async fn now(db: &TestDb) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_corrected_while_a_run_is_pending_delivers_only_the_right_tenant() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    append(&db, 50, Some("acme")).await;
    append(&db, 3, Some("hooli")).await;

    // Set up with another customer's tenant and a wrong secret: the export fails, a run waits.
    let mut mistaken = with_secret(bucket.destination_env("hooli", "h"), "wrong-secret");
    mistaken.push(var("hooli", "TENANT_ID", "acme"));
    let mistaken = settings(&db, mistaken);
    let dest = destination(&mistaken, "hooli");
    let sink = sink::connect(dest, &mistaken.exporter).await.unwrap();
    let error = exporter(&db, &mistaken)
        .export(dest, sink.as_ref(), When::Now)
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("SignatureDoesNotMatch"));

    // Both corrected: the pending run is abandoned, and a run of hooli's own events delivered.
    let mut corrected = bucket.destination_env("hooli", "h");
    corrected.push(var("hooli", "TENANT_ID", "hooli"));
    let corrected = settings(&db, corrected);
    let report = export_now(&exporter(&db, &corrected), &corrected, "hooli").await;
    assert!(
        !report.resumed,
        "a run planned for another tenant is never resumed"
    );
    assert_eq!(report.events, 3);
    assert_exactly_once(&db, "hooli", Some("hooli"), &bucket.objects("h/").await).await;
    let (reason, key, watermark_moved): (String, String, bool) = sqlx::query_as(
        "SELECT abandoned_reason, object_key, window_hi <= (SELECT watermark FROM export_destinations)
         FROM export_runs WHERE status = 'abandoned'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(
        reason.contains(r#"tenant_id changed from "acme" to "hooli""#),
        "{reason}"
    );
    assert!(
        key.starts_with("h/"),
        "the key it may have written is kept: {key}"
    );
    assert!(watermark_moved, "the watermark moved only by the new run");
}

#[tokio::test]
async fn a_url_corrected_while_pending_goes_to_the_new_place_and_a_fixed_secret_resumes_the_run() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let name = "hooli";
    append(&db, 8, None).await;

    // A wrong secret, then the right one (and another ACL): the same run, same key.
    let wrong = settings(
        &db,
        with_secret(bucket.destination_env(name, "old"), "wrong-secret"),
    );
    let dest = destination(&wrong, name);
    let sink = sink::connect(dest, &wrong.exporter).await.unwrap();
    assert!(
        exporter(&db, &wrong)
            .export(dest, sink.as_ref(), When::Now)
            .await
            .is_err()
    );
    let pending = db.store.pending_run(name).await.unwrap().unwrap();
    let mut fixed = bucket.destination_env(name, "old");
    fixed.push(var(name, "ACL", "bucket-owner-full-control"));
    let fixed = settings(&db, fixed);
    let report = export_now(&exporter(&db, &fixed), &fixed, name).await;
    assert!(report.resumed);
    assert_eq!(
        (report.run.id, &report.run.object_key),
        (pending.id, &pending.object_key)
    );

    // A run planned under the old prefix, then the URL corrected before it is delivered.
    append(&db, 5, None).await;
    let crashed = exporter(&db, &fixed);
    let Ok(audit_exporter::store::Claim::Granted(lease)) =
        crashed.claim(destination(&fixed, name)).await
    else {
        panic!("lease")
    };
    let (stale, _) = crashed
        .plan_or_resume(&lease, destination(&fixed, name), None)
        .await
        .unwrap();
    assert!(stale.object_key.starts_with("old/"));
    expire_leases(&db).await;
    let moved = settings(&db, bucket.destination_env(name, "new"));
    let report = export_now(&exporter(&db, &moved), &moved, name).await;
    assert!(!report.resumed);
    assert!(
        report.run.object_key.starts_with("new/"),
        "{}",
        report.run.object_key
    );
    assert_eq!(report.events, 5);
    let reason: String =
        sqlx::query_scalar("SELECT abandoned_reason FROM export_runs WHERE id = $1")
            .bind(stale.id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(
        reason.contains(r#"url changed from {"bucket""#) && reason.contains(r#""prefix":"new""#),
        "{reason}"
    );
    assert_exactly_once(&db, name, None, &bucket.objects("").await).await;
}

#[tokio::test]
async fn a_tenant_change_after_committed_runs_is_refused_until_reset() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (acme_dir, other_dir) = (dir.path().join("acme"), dir.path().join("other"));
    let base = |tenant: &str| {
        let mut env = file_destination_env("acme", &acme_dir);
        env.extend(file_destination_env("other", &other_dir));
        env.push(var("acme", "TENANT_ID", tenant));
        env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
        env
    };
    append(&db, 4, Some("acme")).await;
    append(&db, 2, Some("acme-eu")).await;
    let (code, _, err) = cli(&["export"], &base("acme"));
    assert_eq!(code, Some(0), "{err}");

    // Changed: refused for acme (exit 1, naming the key, both values and the way on); other
    // destinations carry on.
    append(&db, 3, None).await;
    let (code, out, _) = cli(&["export"], &base("acme-eu"));
    assert_eq!(code, Some(1), "{out}");
    let refusal = out.lines().find(|l| l.starts_with("acme:")).unwrap();
    assert!(
        refusal.contains(r#"tenant_id changed from "acme" to "acme-eu""#)
            && refusal.contains("audit-exporter destination reset acme --start"),
        "{refusal}"
    );
    assert!(out.contains("other: exported 3 events"), "{out}");
    // status and destination list show the refusal, and change nothing.
    let (code, out, err) = cli(&["status"], &base("acme-eu"));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(
            r#"  refused: destination `acme`: tenant_id changed from "acme" to "acme-eu""#
        ),
        "{out}"
    );
    let (_, out, _) = cli(&["status", "--json"], &base("acme-eu"));
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let refused = status["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["refused"].as_str()))
        .collect::<Vec<_>>();
    assert!(
        refused.contains(&("other", None))
            && refused
                .iter()
                .any(|(n, r)| *n == "acme"
                    && r.is_some_and(|r| r.contains("destination reset acme"))),
        "{refused:?}"
    );
    let (_, out, _) = cli(&["destination", "list"], &base("acme-eu"));
    let line = out.lines().find(|l| l.starts_with("acme:")).unwrap();
    assert!(
        line.contains("; refused: destination `acme`: tenant_id changed"),
        "{out}"
    );
    // Removing the filter is a change too.
    let mut removed = base("acme");
    removed.retain(|(k, _)| !k.ends_with("__TENANT_ID"));
    let (code, out, _) = cli(&["export", "--destination", "acme"], &removed);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(r#"from "acme" to none (every tenant)"#),
        "{out}"
    );

    // Accepted by reset; the new stream holds every acme-eu event exactly once.
    let before_reset = now(&db).await;
    let (code, out, err) = cli(
        &["destination", "reset", "acme", "--start", "beginning"],
        &base("acme-eu"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("tenant_id acme -> acme-eu"), "{out}");
    let (tenant, actor, metadata) = operator_event(&db, "system.export.reset").await;
    assert_eq!(
        tenant.as_deref(),
        Some("acme-eu"),
        "the new filter's destination gets it"
    );
    assert_eq!(actor["type"], "system");
    assert!(!actor["os_user"].as_str().unwrap().is_empty() && actor["host"].is_string());
    assert_eq!(
        (&metadata["old_tenant_id"], &metadata["new_tenant_id"]),
        (&"acme".into(), &"acme-eu".into())
    );
    append(&db, 2, Some("acme-eu")).await;
    let (code, out, _) = cli(&["export", "--destination", "acme"], &base("acme-eu"));
    assert_eq!(code, Some(0), "{out}");
    let objects = files(&acme_dir);
    let far = Utc::now() + chrono::Duration::days(1);
    let old_stream = exported_between(
        &db,
        "acme",
        &objects,
        before_reset - chrono::Duration::days(1),
        before_reset,
    )
    .await;
    let new_stream = exported_between(&db, "acme", &objects, before_reset, far).await;
    assert_eq!(old_stream, expected_ids(&db, Some("acme")).await);
    assert_eq!(new_stream, expected_ids(&db, Some("acme-eu")).await);
    assert_eq!(
        new_stream.len(),
        2 + 1 + 2,
        "before, the reset's own event, after"
    );
    let all: usize = objects.len();
    let runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM export_runs WHERE destination = 'acme' AND status = 'done'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(all as i64, runs, "one object per committed run");
}
