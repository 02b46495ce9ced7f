//! Eight writers with short, long, rolled-back and prepared transactions, while three `run`
//! replicas export every second, one of them SIGKILLed and restarted every few seconds, and the
//! proxy in front of the store answers some writes with 503 SlowDown, 500 or a dropped
//! connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;

use super::{Rng, Tally, assert_no_secret, env, export_until_drained, fault_secs};
use crate::harness::{TestBucket, TestDb};
use crate::operate::{Running, due_now};
use crate::proxy::{Fault, Proxy, RESET};

const WRITERS: u64 = 8;
const REPLICAS: usize = 3;

#[tokio::test]
async fn writers_under_replica_kills_and_store_faults_lose_and_duplicate_nothing() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Arc::new(Proxy::start(&bucket.endpoint));
    let env = env(&db, &bucket, &proxy);
    let mut rng = Rng::seeded();
    let mut tally = Tally::new("writers+replicas+store-faults");
    let deadline = Instant::now() + Duration::from_secs(fault_secs());
    due_now(&db, &["main"]).await;

    let prepared = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let (url, pool, prepared) = (db.url.clone(), db.pool().clone(), prepared.clone());
            let seed = rng.below(u64::MAX);
            tokio::spawn(write(n, url, pool, deadline, Rng(seed | 1), prepared))
        })
        .collect();

    // Due every second: `run` checks each second, so exports follow one another.
    let ticker = {
        let pool = db.pool().clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                sqlx::query("UPDATE export_destinations SET last_slot = NULL WHERE name = 'main'")
                    .execute(&pool)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let injector = {
        let (proxy, mut rng) = (proxy.clone(), Rng(rng.below(u64::MAX) | 1));
        tokio::spawn(async move {
            let is_write = |s: &crate::proxy::Seen| s.method == "PUT" || s.method == "POST";
            while Instant::now() < deadline {
                proxy.inject(match rng.below(3) {
                    0 => Fault::answer(is_write, 1, 503, "SlowDown"),
                    1 => Fault::answer(is_write, 1, 500, "InternalError"),
                    _ => Fault::reset(is_write, 1),
                });
                tokio::time::sleep(rng.millis(300, 1500)).await;
            }
        })
    };

    let mut replicas: Vec<Running> = (0..REPLICAS).map(|_| Running::start(None, &env)).collect();
    let mut printed = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(rng.millis(2000, 6000)).await;
        let victim = rng.below(REPLICAS as u64) as usize;
        let killed = std::mem::replace(&mut replicas[victim], Running::start(None, &env));
        printed.push(killed.lines.clone());
        killed.kill().await;
        tally.kills += 1;
    }

    super::assert_status_prints_no_secret(&env).await;
    for writer in writers {
        tally.written += writer.await.unwrap();
    }
    let commits: Vec<_> = prepared.lock().unwrap().drain(..).collect();
    for commit in commits {
        commit.await.unwrap();
    }
    ticker.await.unwrap();
    injector.await.unwrap();
    for replica in replicas {
        printed.push(replica.lines.clone());
        replica.stop().await;
    }
    for lines in printed {
        for line in lines.lock().unwrap().iter() {
            assert_no_secret("run", line);
        }
    }
    // Faults still armed are taken by the final exports, which retry them.
    export_until_drained(&db, &env).await;

    for (kind, status) in [("503", 503), ("500", 500), ("reset", RESET)] {
        tally.fault(
            kind,
            proxy.seen().iter().filter(|s| s.status == status).count(),
        );
    }
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(written as usize, tally.written, "the writers' own count");
    tally.finish(&db, "main", &bucket.objects("p/").await).await;
}

/// One writer: transactions of 1..=5 events, most committed at once, some rolled back, some
/// held open for seconds (across several exports), some prepared and committed later. Returns
/// the number of events committed.
async fn write(
    n: u64,
    url: String,
    pool: sqlx::PgPool,
    deadline: Instant,
    mut rng: Rng,
    prepared: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
) -> usize {
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut written = 0;
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        let events = 1 + rng.below(5) as i64;
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO audit_events (occurred_at, action, actor, metadata)
             SELECT now(), 'document.edited', jsonb_build_object('type', 'user', 'id', 'writer-' || $1),
                    jsonb_build_object('n', g, 'note', E'quote \" backslash \\\\ newline\\n')
             FROM generate_series(1, $2) g",
        )
        .bind(n as i64)
        .bind(events)
        .execute(&mut conn)
        .await
        .unwrap();
        match rng.below(100) {
            0..10 => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                continue;
            }
            10..15 => {
                tokio::time::sleep(rng.millis(2000, 6000)).await;
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
            15..20 => {
                let gid = format!("fault-{n}-{i}-{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE TRANSACTION '{gid}'")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let (pool, later) = (pool.clone(), rng.millis(1000, 5000));
                prepared.lock().unwrap().push(tokio::spawn(async move {
                    tokio::time::sleep(later).await;
                    sqlx::query(sqlx::AssertSqlSafe(format!("COMMIT PREPARED '{gid}'")))
                        .execute(&pool)
                        .await
                        .unwrap();
                }));
            }
            _ => {
                tokio::time::sleep(rng.millis(0, 50)).await;
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
        }
        written += events as usize;
        tokio::time::sleep(rng.millis(0, 100)).await;
    }
    written
}
