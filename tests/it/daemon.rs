//! `run` under load: a reload that changes the pool's size, a destination behind a black hole
//! beside one that is due, and the database down at start and under way.

use std::path::Path;
use std::time::{Duration, Instant};

use audit_exporter::store::{EmbeddedPostgres, create_database};
use nix::sys::signal::{Signal, kill};

use crate::check::assert_exactly_once;
use crate::harness::{S3_ACCESS_KEY, S3_SECRET_KEY, TestDb, files};
use crate::operate::{Running, config, done_runs, due_now, free_port, get, metric, wait_until};

#[tokio::test]
async fn a_reload_that_raises_max_connections_exports_every_due_destination() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["d1", "d2", "d3", "d4", "d5", "d6"];
    let dirs: Vec<_> = names.iter().map(|n| dir.path().join(n)).collect();
    let destinations: Vec<(&str, &Path, &str)> = names
        .iter()
        .zip(&dirs)
        .map(|(n, d)| (*n, d.as_path(), ""))
        .collect();
    let port = free_port();
    let file = dir.path().join("audit-exporter.toml");
    let write = |max: u32| {
        let text = format!(
            "[database]\nmax_connections = {max}\n{}",
            config(port, &destinations)
        );
        std::fs::write(&file, text).unwrap();
    };
    write(2);
    let env = vec![("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone())];
    let run = Running::start(Some(&file), &env);
    wait_until("every destination recorded", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM export_destinations")
            .fetch_one(db.pool())
            .await
            .unwrap();
        (n == names.len() as i64).then_some(())
    })
    .await;

    // The pool keeps its size until a restart; the exports must fit the pool that exists.
    write(100);
    run.wait_for_log("the new configuration", |l| {
        l["message"] == "Applied the new configuration."
    })
    .await;
    crate::append(&db, 20, None).await;
    due_now(&db, &names).await;
    for name in names {
        wait_until(&format!("{name}'s export"), || async {
            (done_runs(&db, name).await == 1).then_some(())
        })
        .await;
    }
    let lines = run.lines.lock().unwrap().clone();
    let (code, _) = run.stop().await;
    assert_eq!(code, Some(0));
    let timed_out: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("pool timed out"))
        .collect();
    assert!(timed_out.is_empty(), "{timed_out:#?}");
    for (name, dir) in names.iter().zip(&dirs) {
        assert_exactly_once(&db, name, None, &files(dir)).await;
    }
}

/// A TCP listener that accepts connections and never answers.
async fn black_hole() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// The attempts of the destination's pending run, and whether one has failed.
async fn pending_attempts(db: &TestDb, destination: &str) -> Option<(i32, bool)> {
    sqlx::query_as(
        "SELECT attempts, last_error IS NOT NULL FROM export_runs
         WHERE destination = $1 AND status = 'pending'",
    )
    .bind(destination)
    .fetch_optional(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_black_holed_destination_holds_back_no_other_and_backs_off() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let due_dir = dir.path().join("due");
    let hole = black_hole().await;
    let port = free_port();
    let file = dir.path().join("audit-exporter.toml");
    let run_and_due = config(port, &[("due", &due_dir, "")]).replacen(
        "[destinations.due]",
        "shutdown_grace_secs = 1\n[destinations.due]",
        1,
    );
    let text = format!(
        "[exporter]\nrequest_timeout_secs = 8\nretry_max_attempts = 1\n{run_and_due}\
         [destinations.stuck]\nurl = \"s3://bucket/p\"\nregion = \"us-east-1\"\n\
         endpoint = \"http://127.0.0.1:{hole}\"\nforce_path_style = true\n\
         access_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\"\n"
    );
    std::fs::write(&file, &text).unwrap();
    due_now(&db, &["due", "stuck"]).await;
    crate::append(&db, 5, None).await;
    let env = vec![("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone())];
    let run = Running::start(Some(&file), &env);

    wait_until("stuck's upload into the black hole", || async {
        pending_attempts(&db, "stuck")
            .await
            .filter(|(attempts, _)| *attempts == 1)
    })
    .await;
    wait_until("due's first export", || async {
        (done_runs(&db, "due").await == 1).then_some(())
    })
    .await;
    // Due again while stuck's attempt hangs: exported on its own schedule.
    crate::append(&db, 5, None).await;
    due_now(&db, &["due"]).await;
    wait_until("due's second export", || async {
        (done_runs(&db, "due").await == 2).then_some(())
    })
    .await;
    assert_eq!(
        pending_attempts(&db, "stuck").await,
        Some((1, false)),
        "due was exported while stuck's first attempt still hung"
    );

    // Stuck's attempt times out; then it backs off while due goes on being exported.
    wait_until("stuck's failure", || async {
        pending_attempts(&db, "stuck")
            .await
            .filter(|(_, failed)| *failed)
    })
    .await;
    for n in 3..=4 {
        due_now(&db, &["due"]).await;
        wait_until("due's next export", || async {
            (done_runs(&db, "due").await == n).then_some(())
        })
        .await;
    }
    assert_eq!(
        pending_attempts(&db, "stuck").await,
        Some((1, true)),
        "not retried at every check"
    );
    let text = get(port, "/metrics").await.1;
    let series = |name: &str| metric(&text, &format!("audit_exporter_{name}"));
    assert_eq!(
        series(r#"failures_in_a_row{destination="stuck"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(r#"runs_total{destination="stuck",outcome="failed"}"#),
        Some(1.0)
    );
    let retry_at = series(r#"retry_at_timestamp_seconds{destination="stuck"}"#).unwrap();
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        retry_at > now + 30.0 && retry_at <= now + 61.0,
        "first backoff is a minute: {retry_at} at {now}"
    );
    assert_eq!(series(r#"failures_in_a_row{destination="due"}"#), Some(0.0));

    // A reload resets the backoff: stuck is tried again at once.
    kill(run.pid(), Signal::SIGHUP).unwrap();
    wait_until("stuck's second attempt, after the reload", || async {
        pending_attempts(&db, "stuck")
            .await
            .filter(|(attempts, _)| *attempts == 2)
    })
    .await;
    let (code, _) = run.stop().await;
    assert_eq!(code, Some(0));
    assert_exactly_once(&db, "due", None, &files(&due_dir)).await;
}

/// GET that tells a refused connection from an answer, and how long the answer took.
pub(crate) async fn try_get(port: u16, path: &str) -> Option<(u16, String, Duration)> {
    let started = Instant::now();
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let (status, body) = get(port, path).await;
    Some((status, body, started.elapsed()))
}

/// A scrape, which must answer within a second whatever the database does.
async fn scrape(port: u16) -> String {
    let (status, text, took) = try_get(port, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
    text
}

const PG_DIR: &str = "audit-exporter-daemon-pg-";

#[tokio::test]
async fn run_waits_for_the_database_and_never_makes_a_scrape_wait_on_it() {
    crate::harness::remove_stale_dirs(PG_DIR);
    let pg_dir = std::env::temp_dir().join(format!("{PG_DIR}{}", std::process::id()));
    let mut server = EmbeddedPostgres::start(&pg_dir, &["fsync=off"]).unwrap();
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("main");
    let port = free_port();
    let file = dir.path().join("audit-exporter.toml");
    let text = config(port, &[("main", &out, "")]).replacen(
        "[destinations.main]",
        "unready_after_failing_secs = 1\n[destinations.main]",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let url = server.url("daemon");
    let env = vec![("AUDIT_EXPORTER__DATABASE__URL".to_owned(), url.clone())];
    let run = Running::start(Some(&file), &env);

    // The database is down: the process serves health, is not ready, and scrapes answer.
    let (status, _, _) = wait_until("/healthz", || try_get(port, "/healthz")).await;
    assert_eq!(status, 200);
    let (status, body) = wait_until("the reason on /readyz", || async {
        let (status, body, _) = try_get(port, "/readyz").await?;
        body.contains("refused").then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with("not ready: waiting for the database at start:"),
        "{body}"
    );
    let text = scrape(port).await;
    assert_eq!(
        metric(
            &text,
            r#"audit_exporter_runs_total{destination="main",outcome="failed"}"#
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(metric(&text, "audit_exporter_database_up"), Some(0.0));

    // The database comes; `run` migrates it and exports.
    // Blocks for the second it takes; the run process is another process.
    server.start_again().unwrap();
    create_database(&server.url("postgres"), "daemon")
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    wait_until("the destination's state row", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM export_destinations")
            .fetch_one(&pool)
            .await
            .ok()
            .filter(|n| *n == 1)
    })
    .await;
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, action, actor)
         SELECT now(), 'user.login', jsonb_build_object('type', 'user', 'id', 'u-' || g)
         FROM generate_series(1, 7) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE export_destinations
         SET last_slot = NULL, anchor = date_trunc('hour', now()) - interval '1 hour'",
    )
    .execute(&pool)
    .await
    .unwrap();
    wait_until("the export", || async {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM export_runs WHERE status = 'done' AND event_count = 7",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (done == 1).then_some(())
    })
    .await;
    wait_until("ready", || async {
        let (status, body, _) = try_get(port, "/readyz").await?;
        (status == 200).then_some(body)
    })
    .await;
    pool.close().await;

    // The database stops while nothing is due: every scrape still answers at once, /readyz
    // names the server and the cause, and an export that could not reach the database is the
    // process's outage, not the destination's failure (no count, no backoff).
    server.stop();
    let not_done = run
        .wait_for_log("an export stopped by the outage", |l| {
            l["message"] == "Export not done; it is tried again at the next check."
        })
        .await;
    let said = not_done["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        said.contains("cannot connect to PostgreSQL at") && said.contains("connection refused"),
        "{not_done}"
    );
    let text = scrape(port).await;
    assert_eq!(metric(&text, "audit_exporter_database_up"), Some(0.0));
    assert!(metric(&text, "audit_exporter_database_read_age_seconds").unwrap() > 1.0);
    let failed = r#"audit_exporter_runs_total{destination="main",outcome="failed"}"#;
    assert!(metric(&text, failed).unwrap_or(0.0) == 0.0, "{text}");
    assert_eq!(
        metric(
            &text,
            r#"audit_exporter_failures_in_a_row{destination="main"}"#
        ),
        Some(0.0),
        "{text}"
    );
    let (status, body, _) = try_get(port, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot connect to PostgreSQL at") && body.contains("connection refused"),
        "{body}"
    );

    // It comes back: nothing was due, so the failure is over and the process is ready again.
    // Blocks for the second it takes; the run process is another process.
    server.start_again().unwrap();
    wait_until("ready again", || async {
        let (status, body, _) = try_get(port, "/readyz").await?;
        (status == 200).then_some(body)
    })
    .await;
    let (code, _) = run.stop().await;
    assert_eq!(code, Some(0));
    let objects = files(&out);
    assert_eq!(objects.len(), 1);
    drop(server);
    let _ = std::fs::remove_dir_all(&pg_dir);
}
