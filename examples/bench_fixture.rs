//! What `scripts/bench.sh` measures against: a PostgreSQL of its own (the embedded server of the
//! library) and an S3-protocol server (s3s-fs, SigV4 checked) in a process of their own, so the
//! AWS CLI and the exporter both reach them over the network. Not part of the product binary.
//!
//! Usage: `bench_fixture DIR [S3_DIR]`: PostgreSQL's data in DIR/postgres, the objects in S3_DIR
//! (default DIR/s3). Prints one JSON line with the database URL and the S3 endpoint, then serves
//! until its standard input closes; PostgreSQL stops with it.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use audit_exporter::store::{EmbeddedPostgres, create_database};

const ACCESS_KEY: &str = "AKIAAUDITBENCH";
const SECRET_KEY: &str = "audit-exporter-bench-secret";
const BUCKET: &str = "bench";

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/bench".into()),
    );
    let s3_root = std::env::args()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("s3"));
    std::fs::create_dir_all(s3_root.join(BUCKET))?;
    let postgres = EmbeddedPostgres::start(
        &dir.join("postgres"),
        &[
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_wal_size=8GB",
            "shared_buffers=256MB",
        ],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    runtime.block_on(create_database(&postgres.url("postgres"), "bench"))?;
    let filesystem = s3s_fs::FileSystem::new(&s3_root)
        .map_err(|e| anyhow::anyhow!("Failed to serve {}: {e:?}", s3_root.display()))?;
    runtime.spawn(serve_s3(listener, filesystem));

    let ready = serde_json::json!({
        "database_url": postgres.url("bench"),
        "s3_endpoint": endpoint,
        "s3_root": s3_root,
        "bucket": BUCKET,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
    });
    println!("{ready}");
    std::io::stdout().flush()?;
    // Serve until the parent closes our standard input (or dies).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(postgres);
    Ok(())
}

async fn serve_s3(
    listener: std::net::TcpListener,
    filesystem: s3s_fs::FileSystem,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;

    let mut builder = s3s::service::S3ServiceBuilder::new(filesystem);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::from_std(listener)?;
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
