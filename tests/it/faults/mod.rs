//! The fault suite: writers, crashes, store and database faults, replicas, bad input. Each
//! scenario ends with the independent checker (`crate::check`) and prints one summary line:
//! events written and exported, runs, kills, injected faults by kind, lost and duplicated.
//! `AUDIT_EXPORTER_FAULT_SECS` sets how long the writers write (default 30; the long form 600).

mod bad_input;
mod crashes;
mod database;
mod sink;
mod store;
mod writers;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::check::Count;
use crate::harness::{TestBucket, TestDb};
use crate::proxy::Proxy;

/// The secrets every scenario configures; none may appear in anything a process prints.
pub const DB_PASSWORD: &str = "db-password-never-printed";
pub const SESSION_TOKEN: &str = "session-token-never-printed";
/// A client key's password in the database URL, a parameter audit-exporter does not use.
pub const SSL_PASSWORD: &str = "ssl-password-never-printed";

/// How long the writers write.
pub fn fault_secs() -> u64 {
    std::env::var("AUDIT_EXPORTER_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// A scenario's figures, printed as one line.
pub struct Tally {
    name: &'static str,
    started: Instant,
    pub written: usize,
    pub runs: i64,
    pub kills: usize,
    pub faults: BTreeMap<&'static str, usize>,
    pub count: Count,
}

impl Tally {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            started: Instant::now(),
            written: 0,
            runs: 0,
            kills: 0,
            faults: BTreeMap::new(),
            count: Count::default(),
        }
    }

    pub fn fault(&mut self, kind: &'static str, n: usize) {
        *self.faults.entry(kind).or_default() += n;
    }

    /// Counts the destination's objects against the table, prints the line, then asserts the
    /// whole check (run log, order, heartbeats) and that nothing was lost or duplicated.
    pub async fn finish(
        mut self,
        db: &TestDb,
        destination: &str,
        objects: &BTreeMap<String, Vec<u8>>,
    ) {
        self.count = crate::check::count(db, None, objects).await;
        self.runs = crate::operate::done_runs(db, destination).await;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "fault-suite {}: secs={} written={} exported={} runs={} kills={} faults=[{}] lost={} duplicated={}",
            self.name,
            self.started.elapsed().as_secs(),
            self.written,
            self.count.exported,
            self.runs,
            self.kills,
            faults.join(" "),
            self.count.lost,
            self.count.duplicated,
        );
        assert_eq!((self.count.lost, self.count.duplicated), (0, 0));
        crate::check::assert_exactly_once(db, destination, None, objects).await;
    }
}

/// A small deterministic generator (xorshift64*), seeded per scenario and printed, so a failing
/// run can be told apart from a lucky one.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let seed = std::env::var("AUDIT_EXPORTER_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("fault-suite seed: AUDIT_EXPORTER_FAULT_SEED={seed}");
        Self(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

/// The database URL with a password and an `sslpassword` in it (the test cluster trusts local connections, so it is
/// never checked, only carried, which is what a leak needs).
pub fn url_with_password(db: &TestDb) -> String {
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some(DB_PASSWORD)).unwrap();
    url.query_pairs_mut()
        .append_pair("sslpassword", SSL_PASSWORD);
    url.to_string()
}

/// Config env of a `run` or `export` process: destination `main` in `bucket` through `proxy`,
/// exports checked every second, short leases and retries.
pub fn env(db: &TestDb, bucket: &TestBucket, proxy: &Proxy) -> Vec<(String, String)> {
    let mut env = bucket.destination_env("main", "p");
    env.retain(|(k, _)| !k.ends_with("__ENDPOINT"));
    let set = |k: &str, v: &str| (format!("AUDIT_EXPORTER__{k}"), v.to_owned());
    env.extend([
        set("DESTINATIONS__MAIN__ENDPOINT", &proxy.endpoint),
        set("DATABASE__URL", &url_with_password(db)),
        set("RUN__CHECK_CRON", "* * * * * *"),
        set("RUN__LISTEN", ""),
        set("RUN__SHUTDOWN_GRACE_SECS", "1"),
        // Faults fail exports on purpose; the next check tries again.
        set("RUN__FAILED_EXPORT_BACKOFF_SECS", "1"),
        set("RUN__FAILED_EXPORT_BACKOFF_MAX_SECS", "1"),
        set("EXPORTER__LEASE_SECS", "5"),
        set("EXPORTER__PART_SIZE_MIB", "5"),
        set("EXPORTER__UPLOADS_IN_FLIGHT", "1"),
        set("EXPORTER__RETRY_INITIAL_BACKOFF_MS", "20"),
    ]);
    env
}

/// Fails when a secret of the suite is in `text`.
pub fn assert_no_secret(what: &str, text: &str) {
    for secret in [
        crate::harness::S3_SECRET_KEY,
        DB_PASSWORD,
        SESSION_TOKEN,
        SSL_PASSWORD,
    ] {
        assert!(!text.contains(secret), "{what} printed a secret: {text}");
    }
}

/// Runs `export --destination main` once: its exit code and all it printed, which holds no
/// secret.
pub async fn export_main(env: &[(String, String)]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
        .args(["export", "--destination", "main"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_no_secret("export", &text);
    (output.status.code(), text)
}

/// Runs `export --destination main` until the destination has no pending run and no event
/// waiting behind its watermark (another process's lease may make it skip for a while).
pub async fn export_until_drained(db: &TestDb, env: &[(String, String)]) -> Vec<String> {
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        printed.push(export_main(env).await.1);
        if drained(db).await.is_some() {
            return printed;
        }
        assert!(
            Instant::now() < deadline,
            "not drained after 90 s; {printed:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Nothing pending and no event behind the watermark of `main`; `None` on any error too, as
/// while the database restarts.
pub async fn drained(db: &TestDb) -> Option<()> {
    let (pending, waiting): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM export_runs WHERE destination = 'main' AND status = 'pending'),
                (SELECT count(*) FROM audit_events e, export_destinations d
                 WHERE d.name = 'main' AND e.txid >= d.watermark)",
    )
    .fetch_one(db.pool())
    .await
    .ok()?;
    (pending == 0 && waiting == 0).then_some(())
}

/// `status` and `status --json` print no secret of the configuration.
pub async fn assert_status_prints_no_secret(env: &[(String, String)]) {
    for args in [&["status"][..], &["status", "--json"]] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-exporter"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{stdout}");
        assert!(stdout.contains("main"), "{stdout}");
        assert_no_secret("status", &stdout);
        assert_no_secret("status", &String::from_utf8_lossy(&output.stderr));
    }
}
