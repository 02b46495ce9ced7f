//! What every integration test stands on: a real PostgreSQL (a temporary cluster from the
//! machine's binaries, or the server at DATABASE_URL) with a fresh database per test, and a real
//! S3-protocol server (s3s-fs, SigV4 checked) with a fresh bucket per test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use audit_exporter::settings::Settings;
use audit_exporter::store::{EmbeddedPostgres, Store, create_database};
use aws_sdk_s3::config::{Credentials, Region};
use uuid::Uuid;

pub const S3_ACCESS_KEY: &str = "AKIAAUDITTEST";
pub const S3_SECRET_KEY: &str = "audit-exporter-test-secret";

struct Cluster {
    admin_url: String,
    _server: Option<EmbeddedPostgres>,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            return Cluster {
                admin_url: url,
                _server: None,
            };
        }
        remove_stale_dirs("audit-exporter-test-pg-");
        let dir =
            std::env::temp_dir().join(format!("audit-exporter-test-pg-{}", std::process::id()));
        // Never dropped: the server stops when this process exits (its parent-death signal).
        let server = EmbeddedPostgres::start(
            &dir,
            &[
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
                "max_connections=300",
                "max_prepared_transactions=20",
            ],
        )
        .expect("start a temporary PostgreSQL cluster");
        Cluster {
            admin_url: server.url("postgres"),
            _server: Some(server),
        }
    })
}

/// Starts a helper server that dies with this test process. It is spawned from a thread that
/// lives as long as the server, since the parent-death signal fires when the spawning thread
/// ends.
pub fn spawn_for_life(mut command: std::process::Command, name: &str) {
    use std::os::unix::process::CommandExt;

    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let (spawned_tx, spawned_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = spawned_tx.send(Ok(()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = spawned_tx.send(Err(e));
            }
        })
        .unwrap();
    if let Err(e) = spawned_rx.recv().unwrap() {
        panic!("cannot start {name}: {e}");
    }
}

/// Removes the data of earlier test processes that are gone.
pub(crate) fn remove_stale_dirs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, migrated database of its own.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    _turn: tokio::sync::SemaphorePermit<'static>,
}

/// The export horizon is the oldest transaction open anywhere on the server, so a transaction of
/// one test would hold back another test's windows; database tests take turns on the cluster.
static CLUSTER_TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

impl TestDb {
    pub async fn new() -> Self {
        Self::on_server(&cluster().admin_url).await
    }

    /// A fresh database that was never migrated.
    pub async fn unmigrated() -> Self {
        Self::create(&cluster().admin_url, false, None).await
    }

    /// A fresh, migrated database in `encoding` (e.g. `SQL_ASCII`, whose text may hold any bytes).
    pub async fn with_encoding(encoding: &str) -> Self {
        Self::create(&cluster().admin_url, true, Some(encoding)).await
    }

    /// The cluster's superuser URL, for creating roles.
    pub fn admin_url() -> &'static str {
        &cluster().admin_url
    }

    /// This database's URL as another role.
    pub fn url_as(&self, user: &str) -> String {
        let mut url = url::Url::parse(&self.url).unwrap();
        url.set_username(user).unwrap();
        url.set_password(None).unwrap();
        url.to_string()
    }

    /// A fresh database on another server (`admin_url`), e.g. one the test restarts.
    pub async fn on_server(admin: &str) -> Self {
        Self::create(admin, true, None).await
    }

    async fn create(admin: &str, migrate: bool, encoding: Option<&str>) -> Self {
        let turn = CLUSTER_TURN
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let admin = admin.to_owned();
        let name = format!("t_{}", Uuid::new_v4().simple());
        match encoding {
            None => create_database(&admin, &name)
                .await
                .expect("create the test database"),
            Some(encoding) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                let sql = format!(
                    "CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
            }
        }
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        let url = url.to_string();
        let store = Store::connect(&url, 10)
            .await
            .expect("connect to the test database");
        if migrate {
            store.migrate().await.expect("migrate");
        }
        Self {
            url,
            store,
            _turn: turn,
        }
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.store.pool()
    }

    /// The watermark of a destination.
    pub async fn watermark_of(&self, destination: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT watermark::text::bigint FROM export_destinations WHERE name = $1",
        )
        .bind(destination)
        .fetch_one(self.pool())
        .await
        .unwrap()
    }

    /// The watermark of the test's one destination.
    pub async fn watermark(&self) -> i64 {
        sqlx::query_scalar("SELECT watermark::text::bigint FROM export_destinations")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

struct S3Server {
    endpoint: String,
    root: PathBuf,
}

fn s3_server() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        remove_stale_dirs("audit-exporter-test-s3-");
        let root =
            std::env::temp_dir().join(format!("audit-exporter-test-s3-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let fs_root = root.clone();
        // Its own thread and runtime: each test's runtime ends with the test.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve_s3(listener, fs_root));
        });
        S3Server { endpoint, root }
    })
}

async fn serve_s3(listener: std::net::TcpListener, root: PathBuf) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;

    let mut builder = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        S3_ACCESS_KEY,
        S3_SECRET_KEY,
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let http = Builder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let connection = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// A fresh bucket on the S3 server.
pub struct TestBucket {
    pub name: String,
    pub endpoint: String,
}

impl TestBucket {
    pub fn new() -> Self {
        let server = s3_server();
        // Short: s3s-fs names a multipart upload's metadata file after the base64 of bucket and
        // key, and a long hive key (`…_part0001.jsonl`) with a long bucket name passes the
        // 255-byte file name limit. The server is this process's own, so a counter is unique.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        // (Bucket names have at least 3 characters.)
        let name = format!(
            "b{:02}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        std::fs::create_dir_all(server.root.join(&name)).unwrap();
        Self {
            name,
            endpoint: server.endpoint.clone(),
        }
    }

    /// A client of its own, separate from the exporter's, to read back what was written.
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
    }

    /// The stored object's headers, as a separate client sees them.
    pub async fn head(&self, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.client()
            .head_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .unwrap()
    }

    /// Every object under `prefix`, key → bytes, in key order.
    pub async fn objects(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let client = self.client();
        let mut objects = BTreeMap::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page.unwrap().contents() {
                let key = object.key().unwrap().to_owned();
                let body = client
                    .get_object()
                    .bucket(&self.name)
                    .key(&key)
                    .send()
                    .await
                    .unwrap();
                objects.insert(key, body.body.collect().await.unwrap().to_vec());
            }
        }
        objects
    }

    /// Config env for an S3 destination named `name` writing to this bucket under `prefix`.
    pub fn destination_env(&self, name: &str, prefix: &str) -> Vec<(String, String)> {
        let key = |k: &str| format!("AUDIT_EXPORTER__DESTINATIONS__{}__{k}", name.to_uppercase());
        vec![
            (key("URL"), format!("s3://{}/{prefix}", self.name)),
            (key("REGION"), "us-east-1".into()),
            (key("ENDPOINT"), self.endpoint.clone()),
            (key("FORCE_PATH_STYLE"), "true".into()),
            (key("ACCESS_KEY_ID"), S3_ACCESS_KEY.into()),
            (key("SECRET_ACCESS_KEY"), S3_SECRET_KEY.into()),
        ]
    }
}

/// An S3 client of the tests' own, path-style, with the given keys.
pub fn s3_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Settings for `db` with the given extra environment (destinations and overrides).
pub fn settings(db: &TestDb, env: Vec<(String, String)>) -> Settings {
    let mut all = vec![
        ("AUDIT_EXPORTER__DATABASE__URL".to_owned(), db.url.clone()),
        (
            "AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB".to_owned(),
            "5".to_owned(),
        ),
        (
            "AUDIT_EXPORTER__EXPORTER__RETRY_INITIAL_BACKOFF_MS".to_owned(),
            "10".to_owned(),
        ),
    ];
    all.extend(env);
    Settings::load_with_env(None, all).expect("valid test settings")
}

/// Config env for a file destination.
pub fn file_destination_env(name: &str, dir: &std::path::Path) -> Vec<(String, String)> {
    vec![(
        format!("AUDIT_EXPORTER__DESTINATIONS__{}__URL", name.to_uppercase()),
        format!("file://{}", dir.display()),
    )]
}

/// Every regular file under `dir`, relative path → bytes.
pub fn files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
