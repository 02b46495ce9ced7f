//! `run` in operation: a configuration file rewritten under it, `/metrics` and the health
//! endpoints, and three replicas sharing one database while one is killed mid-upload.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt;

use crate::check::assert_exactly_once;
use crate::harness::{TestBucket, TestDb, files};
use crate::proxy::{Fault, Proxy};

/// A `run` process whose JSON log lines are collected as they come.
pub(crate) struct Running {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Every line it printed, as printed.
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub(crate) fn start(config: Option<&Path>, env: &[(String, String)]) -> Self {
        let mut args = Vec::new();
        if let Some(config) = config {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        args.push("run");
        Self::spawn(&args, env)
    }

    /// The binary with `args`, its JSON log lines collected as they come.
    pub(crate) fn spawn(args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"));
        command
            .args(args)
            .env("AUDIT_EXPORTER__LOG__FORMAT", "json")
            .env("AUDIT_EXPORTER__LOG__LEVEL", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = log.clone();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let raw_collected = raw.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str(&line) {
                    collected.lock().unwrap().push(value);
                }
                raw_collected.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            log,
            lines: raw,
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().unwrap() as i32)
    }

    /// Waits for a log line that `matches`, and returns it.
    pub(crate) async fn wait_for_log(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_until(what, || async {
            self.log
                .lock()
                .unwrap()
                .iter()
                .find(|l| matches(l))
                .cloned()
        })
        .await
    }

    /// SIGKILL, and waits for the process to be gone.
    pub(crate) async fn kill(mut self) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        self.child.wait().await.unwrap();
    }

    /// Waits for the process to exit on its own (at most a minute); its exit code.
    pub(crate) async fn exit(mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the process exits within a minute")
            .unwrap()
            .code()
    }

    pub(crate) async fn stop(mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("run stops within a minute of SIGTERM")
            .unwrap();
        (status.code(), started.elapsed())
    }
}

/// Polls `probe` until it gives a value, for at most 60 seconds.
pub(crate) async fn wait_until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    probe: impl Fn() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn done_runs(db: &TestDb, destination: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM export_runs WHERE destination = $1 AND kind = 'scheduled' AND status = 'done'",
    )
    .bind(destination)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

/// Records destinations as due since an hour ago, as after downtime.
pub(crate) async fn due_now(db: &TestDb, names: &[&str]) {
    for name in names {
        sqlx::query(
            "INSERT INTO export_destinations (name, every_hours, anchor)
             VALUES ($1, 1, date_trunc('hour', now()) - interval '1 hour')
             ON CONFLICT (name) DO UPDATE SET last_slot = NULL, anchor = EXCLUDED.anchor",
        )
        .bind(name)
        .execute(db.pool())
        .await
        .unwrap();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP/1.1: the status and the body.
pub(crate) async fn get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of a metric line `name{labels} value`.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub(crate) fn config(port: u16, destinations: &[(&str, &Path, &str)]) -> String {
    let mut text = format!(
        "[run]\ncheck_cron = \"* * * * * *\"\nreload_check_secs = 1\nmetrics_refresh_secs = 1\nlisten = \"127.0.0.1:{port}\"\n"
    );
    for (name, dir, extra) in destinations {
        text.push_str(&format!(
            "[destinations.{name}]\nurl = \"file://{}\"\n{extra}\n",
            dir.display()
        ));
    }
    text
}

#[tokio::test]
async fn run_follows_its_config_file_and_reports_on_metrics_and_health() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (alpha, beta) = (dir.path().join("alpha"), dir.path().join("beta"));
    let file = dir.path().join("audit-exporter.toml");
    let port = free_port();
    std::fs::write(&file, config(port, &[("alpha", &alpha, "every_hours = 1")])).unwrap();
    due_now(&db, &["alpha", "beta"]).await;
    crate::append(&db, 30, None).await;
    let env = vec![("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone())];
    let run = Running::start(Some(&file), &env);

    wait_until("alpha's first export", || async {
        (done_runs(&db, "alpha").await == 1).then_some(())
    })
    .await;
    // What waits is read in the background (every second here): wait for the read after the
    // export.
    let text = wait_until("nothing waiting, on /metrics", || async {
        let (status, text) = get(port, "/metrics").await;
        assert_eq!(status, 200);
        (metric(
            &text,
            r#"audit_exporter_events_waiting{destination="alpha"}"#,
        ) == Some(0.0))
        .then_some(text)
    })
    .await;
    let series =
        |name: &str, labels: &str| metric(&text, &format!("audit_exporter_{name}{{{labels}}}"));
    assert_eq!(
        series("events_exported_total", r#"destination="alpha""#),
        Some(30.0),
        "{text}"
    );
    assert_eq!(
        series("runs_total", r#"destination="alpha",outcome="exported""#),
        Some(1.0)
    );
    assert!(series("last_success_timestamp_seconds", r#"destination="alpha""#).unwrap() > 1.7e9);
    assert_eq!(
        series("events_waiting", r#"destination="alpha""#),
        Some(0.0)
    );
    assert_eq!(series("lag_seconds", r#"destination="alpha""#), Some(0.0));
    assert_eq!(
        series("export_duration_seconds_count", r#"destination="alpha""#),
        Some(1.0)
    );
    let bytes: i64 = sqlx::query_scalar(
        "SELECT sum(bytes)::bigint FROM export_runs WHERE destination = 'alpha'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        series("bytes_exported_total", r#"destination="alpha""#),
        Some(bytes as f64)
    );
    assert_eq!(get(port, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(port, "/readyz").await, (200, "ready\n".into()));
    assert_eq!(get(port, "/nope").await.0, 404);

    // Ten more events wait for alpha's next due time; /metrics says so after its next read.
    crate::append(&db, 10, None).await;
    let text = wait_until("the ten events waiting, on /metrics", || async {
        let text = get(port, "/metrics").await.1;
        (metric(
            &text,
            r#"audit_exporter_events_waiting{destination="alpha"}"#,
        ) == Some(10.0))
        .then_some(text)
    })
    .await;
    assert!(metric(&text, r#"audit_exporter_lag_seconds{destination="alpha"}"#).unwrap() > 0.0);

    // 1 h -> 3 h and a new destination.
    std::fs::write(
        &file,
        config(
            port,
            &[("alpha", &alpha, "every_hours = 3"), ("beta", &beta, "")],
        ),
    )
    .unwrap();
    let applied = run
        .wait_for_log("the new configuration", |l| {
            l["message"] == "Applied the new configuration."
        })
        .await;
    assert_eq!(applied["added"], r#"["beta"]"#);
    assert_eq!(applied["changed"], r#"["alpha"]"#);
    wait_until("beta's first export", || async {
        (done_runs(&db, "beta").await == 1).then_some(())
    })
    .await;
    assert_exactly_once(&db, "beta", None, &files(&beta)).await;
    let (every_hours, anchor_ahead): (i32, bool) = sqlx::query_as(
        "SELECT every_hours, anchor > now() FROM export_destinations WHERE name = 'alpha'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (every_hours, anchor_ahead),
        (3, true),
        "re-anchored at the next full hour"
    );

    // An invalid file is refused; the running configuration stays.
    std::fs::write(&file, config(port, &[("alpha", &alpha, "every_hours = 0")])).unwrap();
    let refused = run
        .wait_for_log("the refusal", |l| {
            l["message"] == "Refused the new configuration; the running one stays in effect."
        })
        .await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("destinations.alpha.every_hours: 0 is out of range; allowed: 1..=24"),
        "{refused}"
    );
    assert_eq!(get(port, "/healthz").await.0, 200);
    let every_hours: i32 =
        sqlx::query_scalar("SELECT every_hours FROM export_destinations WHERE name = 'alpha'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(every_hours, 3);

    // SIGHUP reloads at once: beta is removed.
    std::fs::write(&file, config(port, &[("alpha", &alpha, "every_hours = 3")])).unwrap();
    kill(run.pid(), Signal::SIGHUP).unwrap();
    run.wait_for_log("the SIGHUP reload", |l| {
        l["message"] == "Reloaded the configuration." && l["reason"] == "SIGHUP"
    })
    .await;
    run.wait_for_log("beta's removal", |l| l["removed"] == r#"["beta"]"#)
        .await;
    let (code, _) = run.stop().await;
    assert_eq!(code, Some(0));

    // What alpha has not received yet goes with the next export: nothing lost, nothing twice.
    let output = crate::cli::audit_exporter(
        &["--config", file.to_str().unwrap(), "export"],
        &[("AUDIT_EXPORTER__DATABASE__URL", &db.url)],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::cli::stderr(&output)
    );
    assert_exactly_once(&db, "alpha", None, &files(&alpha)).await;
}

#[tokio::test]
async fn three_replicas_share_the_destinations_through_kills_and_stops() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let mut env = bucket.destination_env("main", "p");
    env.retain(|(k, _)| !k.ends_with("__ENDPOINT"));
    env.extend([
        (
            "AUDIT_EXPORTER__DESTINATIONS__MAIN__ENDPOINT".to_owned(),
            proxy.endpoint.clone(),
        ),
        ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone()),
        (
            "AUDIT_EXPORTER__RUN__CHECK_CRON".to_owned(),
            "* * * * * *".to_owned(),
        ),
        ("AUDIT_EXPORTER__RUN__LISTEN".to_owned(), String::new()),
        (
            "AUDIT_EXPORTER__RUN__SHUTDOWN_GRACE_SECS".to_owned(),
            "1".to_owned(),
        ),
        (
            "AUDIT_EXPORTER__EXPORTER__LEASE_SECS".to_owned(),
            "5".to_owned(),
        ),
        (
            "AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB".to_owned(),
            "5".to_owned(),
        ),
        (
            "AUDIT_EXPORTER__EXPORTER__UPLOADS_IN_FLIGHT".to_owned(),
            "1".to_owned(),
        ),
    ]);
    let is_part = |s: &crate::proxy::Seen| s.query.contains("partNumber=");
    crate::append(&db, 30_000, None).await;
    // Every part is slow, so the kill lands in the middle of the upload.
    proxy.inject(Fault::stall(is_part, 1000, Duration::from_millis(700)));
    due_now(&db, &["main"]).await;
    let mut replicas: Vec<Running> = (0..3).map(|_| Running::start(None, &env)).collect();

    // SIGKILL the replica that is uploading.
    wait_until("the first part", || async {
        proxy.seen().iter().any(is_part).then_some(())
    })
    .await;
    let holder = lease_holder(&db).await;
    let victim = replicas
        .iter()
        .position(|r| r.pid() == holder)
        .expect("a replica holds the lease");
    kill(holder, Signal::SIGKILL).unwrap();
    replicas.remove(victim);
    wait_until("the window, finished by another replica", || async {
        (done_runs(&db, "main").await == 1).then_some(())
    })
    .await;
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM export_runs WHERE kind = 'scheduled'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(attempts >= 2, "resumed after the kill: {attempts} attempts");

    // SIGTERM the replica uploading the next window: it stops within its grace period and the
    // last replica finishes the run it abandoned.
    crate::append(&db, 30_000, None).await;
    let parts_before = proxy.seen().iter().filter(|s| is_part(s)).count();
    due_now(&db, &["main"]).await;
    wait_until("the second window's upload", || async {
        (proxy.seen().iter().filter(|s| is_part(s)).count() > parts_before).then_some(())
    })
    .await;
    let holder = lease_holder(&db).await;
    let stopping = replicas
        .iter()
        .position(|r| r.pid() == holder)
        .expect("a replica holds the lease");
    let (code, took) = replicas.remove(stopping).stop().await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    wait_until("the second window", || async {
        (done_runs(&db, "main").await == 2).then_some(())
    })
    .await;
    let (code, _) = replicas.pop().unwrap().stop().await;
    assert_eq!(code, Some(0));

    // A full hour passing during the test makes the next slot due: its run is a heartbeat.
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM export_runs WHERE heartbeat_event_id IS NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        runs, 2,
        "each window was planned once and exported by one replica"
    );
    assert_exactly_once(&db, "main", None, &bucket.objects("p/").await).await;
}

/// The pid of the replica holding the lease (owner names are `host:pid:nonce`).
pub(crate) async fn lease_holder(db: &TestDb) -> Pid {
    let owner = wait_until("a lease holder", || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT lease_owner FROM export_destinations")
            .fetch_one(db.pool())
            .await
            .unwrap()
    })
    .await;
    Pid::from_raw(owner.split(':').nth(1).unwrap().parse().unwrap())
}
