//! A sink that fails mid-stream, at every attempt, while other destinations export on the same
//! small pool and writers keep writing: the window's COPY is cut off each time, and its
//! connection must never serve another statement.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use audit_exporter::domain::Format;
use audit_exporter::export::{Exporter, Outcome, When};
use audit_exporter::sink::{self, FileSink, ObjectWriter, Sink};
use audit_exporter::store::Store;
use bytes::Bytes;

use super::Tally;
use crate::harness::{TestDb, file_destination_env, files, settings};

/// Writes nothing: its first part fails, once the encoder has read a part's worth of the
/// window and the rest of the COPY is still on its way.
struct FailingMidStream(FileSink);

#[async_trait]
impl Sink for FailingMidStream {
    fn location(&self, key: &str) -> String {
        self.0.location(key)
    }

    fn reader(&self) -> sink::BucketReader {
        self.0.reader()
    }

    async fn create(&self, key: &str, format: Format) -> anyhow::Result<Box<dyn ObjectWriter>> {
        let inner = self.0.create(key, format).await?;
        Ok(Box::new(FailingWriter(Some(inner))))
    }
}

struct FailingWriter(Option<Box<dyn ObjectWriter>>);

#[async_trait]
impl ObjectWriter for FailingWriter {
    async fn write(&mut self, _part: Bytes) -> anyhow::Result<()> {
        anyhow::bail!("injected: the store went away mid-upload")
    }

    async fn finish(self: Box<Self>) -> anyhow::Result<sink::PutOutcome> {
        anyhow::bail!("injected: never finished")
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(inner) = self.0.take() {
            inner.abort().await;
        }
    }
}

/// Each connection of the pool answers its own statement (one holding a cut-off COPY's rest
/// would answer with what it read before).
async fn probe(store: &Store) {
    for n in 0..4 {
        let answer: i32 = sqlx::query_scalar("SELECT $1::int")
            .bind(n)
            .fetch_one(store.pool())
            .await
            .expect("a pooled connection answers");
        assert_eq!(answer, n, "a pooled connection answered another statement");
    }
}

#[tokio::test]
async fn a_sink_failing_mid_stream_leaves_the_pool_healthy_for_the_others() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().unwrap();
    let dirs = ["bad", "good1", "good2"].map(|n| root.path().join(n));
    let mut env = Vec::new();
    for (name, dir) in ["bad", "good1", "good2"].iter().zip(&dirs) {
        env.extend(file_destination_env(name, dir));
    }
    let settings = settings(&db, env);
    // Two connections: an export's COPY and its lease renewal. A connection handed back with a
    // COPY still streaming would be the next export's.
    let store = Store::connect(&db.url, 2).await.unwrap();
    let exporter = Exporter::new(store, settings.exporter.clone());
    let mut tally = Tally::new("sink-mid-stream");
    // A window far larger than the two 5 MiB parts the encoder fills before it notices: 10,000
    // events of ~1.7 kB.
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, action, actor, metadata)
         SELECT now(), 'bulk.event', jsonb_build_object('id', g),
                jsonb_build_object('padding', repeat(md5(g::text), 50))
         FROM generate_series(1, 10000) g",
    )
    .execute(db.pool())
    .await
    .unwrap();
    tally.written += 10_000;

    let writing = Duration::from_secs(super::fault_secs().min(10));
    let writer_db = db.url.clone();
    let writer = tokio::spawn(async move {
        let pool = sqlx::PgPool::connect(&writer_db).await.unwrap();
        let (started, mut written) = (Instant::now(), 0);
        while started.elapsed() < writing {
            sqlx::query(
                "INSERT INTO audit_events (occurred_at, action, actor)
                 SELECT now(), 'writer.event', jsonb_build_object('id', g) FROM generate_series(1, 20) g",
            )
            .execute(&pool)
            .await
            .unwrap();
            written += 20;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        written
    });

    let failing = FailingMidStream(FileSink::new(dirs[0].clone()));
    let healthy: Vec<_> = ["good1", "good2"]
        .iter()
        .map(|name| {
            let dest = crate::destination(&settings, name);
            (
                dest,
                FileSink::new(dirs[if *name == "good1" { 1 } else { 2 }].clone()),
            )
        })
        .collect();
    let bad = crate::destination(&settings, "bad");
    let mut rounds = 0;
    while !writer.is_finished() || rounds < 2 {
        let error = exporter
            .export(bad, &failing, When::Now)
            .await
            .expect_err("the failing sink fails every export");
        assert!(format!("{error:#}").contains("injected"), "{error:#}");
        tally.fault("mid-stream", 1);
        probe(exporter.store()).await;
        for (dest, sink) in &healthy {
            match exporter.export(dest, sink, When::Now).await {
                Ok(Outcome::Exported(_)) => {}
                other => panic!("{}: {other:?}", dest.name),
            }
        }
        rounds += 1;
    }
    tally.written += writer.await.unwrap();
    // The last writes, drained.
    for (dest, sink) in &healthy {
        assert!(matches!(
            exporter.export(dest, sink, When::Now).await,
            Ok(Outcome::Exported(_))
        ));
    }
    let stuck: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(stuck, 0, "a session left idle in a transaction");
    let (pending, attempts): (i64, Option<i32>) = sqlx::query_as(
        "SELECT count(*), max(attempts) FROM export_runs WHERE destination = 'bad' AND status = 'pending'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (pending, attempts),
        (1, Some(rounds)),
        "one run, retried each round"
    );
    assert!(
        files(&dirs[0]).is_empty(),
        "nothing left by the failing sink"
    );
    crate::check::assert_exactly_once(&db, "good2", None, &files(&dirs[2])).await;
    tally.finish(&db, "good1", &files(&dirs[1])).await;
}
