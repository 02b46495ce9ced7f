//! moto's server: a real STS-protocol server (AssumeRole with trust policies and external IDs,
//! AssumeRoleWithWebIdentity) with IAM and S3 beside it, started once per test process from the
//! Python tools `scripts/test.sh` installs. `moto_seed.py` describes the IAM world it holds.
//!
//! Two servers: one with IAM enforced, where policies and trust policies are checked; one
//! without, because moto answers an unsigned AssumeRoleWithWebIdentity with a 500 when IAM is
//! enforced.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use uuid::Uuid;

pub const WRITER_ROLE: &str = "arn:aws:iam::123456789012:role/audit-writer";
pub const WRITER_EXTERNAL_ID: &str = "audit-exporter:acme";
pub const HOP_ROLE: &str = "arn:aws:iam::123456789012:role/audit-hop";
pub const CHAINED_ROLE: &str = "arn:aws:iam::123456789012:role/audit-chained";
pub const CHAINED_EXTERNAL_ID: &str = "audit-exporter:chained";

#[derive(Debug, Clone)]
pub struct Keys {
    pub id: String,
    pub secret: String,
}

pub struct Moto {
    pub endpoint: String,
    pub admin: Keys,
    /// No S3 access of its own: it can only assume the audit-* roles.
    pub exporter: Keys,
}

/// The server with IAM enforced.
pub fn enforced() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start(true))
}

/// The server without IAM checks, for web identity.
pub fn open() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start(false))
}

pub fn python() -> String {
    std::env::var("AUDIT_EXPORTER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn start(enforce: bool) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let python = python();
    let mut command = Command::new(&python);
    command
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(
                std::env::temp_dir().join(format!("audit-exporter-test-moto-{port}.log")),
            )
            .unwrap(),
        );
    crate::harness::spawn_for_life(command, "moto");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto's server did not start with {python}: run ./scripts/test.sh, which installs it, \
             or pip install 'moto[server]==5.2.1'"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/moto_seed.py");
    let mut args = vec![seed, &endpoint];
    if !enforce {
        args.push("open");
    }
    let output = Command::new(&python).args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "seeding moto failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keys: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys_of = |user: &str| Keys {
        id: keys[user]["id"].as_str().unwrap().to_owned(),
        secret: keys[user]["secret"].as_str().unwrap().to_owned(),
    };
    Moto {
        admin: keys_of("admin"),
        exporter: keys_of("exporter"),
        endpoint,
    }
}

impl Moto {
    /// An S3 client with the admin's keys, to create buckets and read back what was written.
    pub fn admin_s3(&self) -> aws_sdk_s3::Client {
        crate::harness::s3_client(&self.endpoint, &self.admin.id, &self.admin.secret)
    }

    /// A fresh bucket, with Object Lock enabled when asked.
    pub async fn bucket(&self, object_lock: bool) -> String {
        let name = format!("audit-{}", &Uuid::new_v4().simple().to_string()[..12]);
        self.admin_s3()
            .create_bucket()
            .bucket(&name)
            .object_lock_enabled_for_bucket(object_lock)
            .send()
            .await
            .unwrap();
        name
    }

    /// Every object under `prefix`, key → bytes, read with the admin's keys.
    pub async fn objects(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let client = self.admin_s3();
        // No `prefix` parameter: moto's signature check fails on a percent-encoded query.
        let listed = client
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let mut objects = BTreeMap::new();
        let keys = listed.contents().iter().filter_map(|o| o.key());
        for key in keys.filter(|k| k.starts_with(prefix)) {
            let object = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            objects.insert(
                key.to_owned(),
                object.body.collect().await.unwrap().to_vec(),
            );
        }
        objects
    }
}

/// Config env for an S3 destination `name` on a moto bucket, reached through `endpoint`
/// (moto's own, or a proxy in front of it), with the credential settings given.
pub fn destination_env(
    name: &str,
    bucket: &str,
    endpoint: &str,
    credentials: &[(&str, &str)],
) -> Vec<(String, String)> {
    let key = |k: &str| format!("AUDIT_EXPORTER__DESTINATIONS__{}__{k}", name.to_uppercase());
    let mut env = vec![
        (key("URL"), format!("s3://{bucket}/exports")),
        // moto's signature check fails on keys with percent-encoded characters (the hive
        // layout's `=`, env0's `:`); real S3 takes them.
        (
            key("KEY_LAYOUT"),
            "{prefix}/{YYYY}/{MM}/{DD}/{run_id}{ext}".into(),
        ),
        (key("REGION"), "us-east-1".into()),
        (key("ENDPOINT"), endpoint.to_owned()),
        (key("FORCE_PATH_STYLE"), "true".into()),
    ];
    env.extend(credentials.iter().map(|(k, v)| (key(k), (*v).to_owned())));
    env
}
