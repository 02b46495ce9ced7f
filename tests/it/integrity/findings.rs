//! What is and is not a finding around the chain: objects of runs from before it began, a run
//! still pending, and runs committed after the signing key was removed (with the warnings that
//! say so beforehand).

use std::process::Stdio;

use audit_exporter::sink;
use audit_exporter::store::Claim;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestDb, settings};
use crate::{destination, export_now, exporter};

use super::*;

#[tokio::test]
async fn older_objects_a_pending_run_and_unsigned_runs_are_told_apart() {
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(keys.path(), "k1");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("files");
    let unsigned_env = crate::harness::file_destination_env("files", &dir);
    let mut signed_env = unsigned_env.clone();
    signed_env.push(signing_env(&private));
    let unsigned = settings(&db, unsigned_env.clone());
    let signed = settings(&db, signed_env.clone());
    let cli_env = |env: &[(String, String)]| -> Vec<(String, String)> {
        let mut env = env.to_vec();
        env.push(("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()));
        env
    };
    let (signed_cli, unsigned_cli) = (cli_env(&signed_env), cli_env(&unsigned_env));
    let cli = |args: &[&str], env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let output = audit_exporter(args, &env);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), stdout, stderr(&output))
    };
    let verify_online = |env: &[(String, String)]| {
        let (code, stdout, stderr) = cli(&["verify-chain", "--destination", "files"], env);
        (code, format!("{stdout}{stderr}"))
    };

    // A run before signing began, then the chain's first run.
    crate::append(&db, 3, None).await;
    let before = export_now(&exporter(&db, &unsigned), &unsigned, "files").await;
    crate::append(&db, 2, None).await;
    let chained = exporter(&db, &signed);
    export_now(&chained, &signed, "files").await;
    let older = audit_exporter::domain::part_key(&before.run.object_key, 1);
    let older = dir.join(older).display().to_string();
    assert!(std::path::Path::new(&older).is_file(), "{older}");

    // Online the run log vouches for the older object; offline it is named, not checked.
    let (code, said) = verify_online(&signed_cli);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(
            "note: 1 object(s) of runs committed before the chain began (the run log records them) were not checked"
        ),
        "{said}"
    );
    let offline = verify_dir(&dir, &[public_key(&public)]).await;
    assert!(offline.findings.is_empty(), "{:#?}", offline.findings);
    assert!(
        offline
            .notes
            .iter()
            .any(|n| n.starts_with(&format!("{older}: written ("))
                && n.contains("before the chain's first digest")),
        "{:#?}",
        offline.notes
    );

    // A run that delivered its objects and is still pending: notes naming it, exit 0.
    crate::append(&db, 2, None).await;
    let dest = destination(&signed, "files");
    let sink = sink::connect(dest, &signed.exporter).await.unwrap();
    let Claim::Granted(lease) = chained.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let (run, _) = chained.plan_or_resume(&lease, dest, None).await.unwrap();
    let delivered = chained.deliver(&lease, &run, sink.as_ref()).await.unwrap();
    db.store.release(&lease).await.unwrap();
    let pending = format!(
        "written by run {}, still pending (the database knows it)",
        run.id
    );
    let (code, said) = verify_online(&signed_cli);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains(&pending), "{said}");

    // Its digest written too, before the commit: a note as well, not a digest slipped in.
    let Claim::Granted(lease) = chained.claim(dest).await.unwrap() else {
        panic!("the lease is free");
    };
    let digest = chained
        .seal(&lease, dest, &run, &delivered, sink.as_ref())
        .await
        .unwrap()
        .unwrap();
    db.store.release(&lease).await.unwrap();
    let (code, said) = verify_online(&signed_cli);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "note: {}: the digest of run {}, still pending",
            dir.join(&digest).display(),
            run.id
        )),
        "{said}"
    );
    let report = export_now(&chained, &signed, "files").await;
    assert_eq!(report.run.id, run.id);
    let (code, said) = verify_online(&signed_cli);
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("still pending"), "{said}");

    // The signing key removed: `config check` and `run` warn before anything is exported…
    let (code, stdout, stderr) = cli(&["config", "check"], &unsigned_cli);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "# warning: destination files: its signed digest chain has begun, but integrity.signing_key_file is not set: its new runs will not be signed"
        ),
        "{stdout}"
    );
    let (_, stdout, _) = cli(&["config", "check"], &signed_cli);
    assert!(!stdout.contains("# warning"), "{stdout}");
    let (code, stdout, stderr) = cli(&["status"], &unsigned_cli);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("its signed digest chain has begun"),
        "{stdout}"
    );
    run_warns(&unsigned_cli).await;

    // …and verify-chain reports each object of a run committed unsigned since.
    crate::append(&db, 1, None).await;
    let report = export_now(&exporter(&db, &unsigned), &unsigned, "files").await;
    let (code, said) = verify_online(&signed_cli);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "extra object: no digest names it (run {} committed it without a signing key, after the chain began)",
            report.run.id
        )),
        "{said}"
    );
}

/// `run` without a signing key logs the warning at start, for the destination whose chain began.
async fn run_warns(env: &[(String, String)]) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
        .arg("run")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AUDIT_EXPORTER__RUN__LISTEN", "")
        .env("AUDIT_EXPORTER__RUN__CHECK_CRON", "0 0 0 1 1 *")
        .env("AUDIT_EXPORTER__LOG__LEVEL", "warn")
        .env("AUDIT_EXPORTER__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let warned = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("signed digest chain has begun") && line.contains("\"files\"") {
                return Ok(line);
            }
            seen.push(line);
        }
        Err(seen)
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    match warned {
        Ok(Ok(line)) => assert!(line.contains("WARN"), "{line}"),
        Ok(Err(seen)) => panic!("run ended without the warning: {seen:#?}"),
        Err(_) => panic!("no warning from run within 60 s"),
    }
}
