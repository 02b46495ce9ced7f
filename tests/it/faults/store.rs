//! Faults of the store behind a proxy: stalls past the request timeout, 503 SlowDown, 500 and
//! dropped connections are retried; a store that keeps failing fails the export cleanly (exit 1,
//! the run pending with its error, the watermark where it was) and the next export finishes it.

use std::time::Duration;

use super::{Tally, env, export_main};
use crate::harness::{TestBucket, TestDb};
use crate::proxy::{Fault, Proxy, RESET, is_put_object};

#[tokio::test]
async fn store_faults_are_retried_or_fail_cleanly() {
    let db = TestDb::new().await;
    let bucket = TestBucket::new();
    let proxy = Proxy::start(&bucket.endpoint);
    let mut env = env(&db, &bucket, &proxy);
    env.push((
        "AUDIT_EXPORTER__EXPORTER__REQUEST_TIMEOUT_SECS".into(),
        "2".into(),
    ));
    let mut tally = Tally::new("store-faults");

    // Each passing fault, twice in a row, is retried within one export.
    let passing = [
        Fault::stall(is_put_object, 2, Duration::from_secs(120)),
        Fault::answer(is_put_object, 2, 503, "SlowDown"),
        Fault::answer(is_put_object, 2, 500, "InternalError"),
        Fault::reset(is_put_object, 2),
    ];
    for fault in passing {
        crate::append(&db, 10, None).await;
        tally.written += 10;
        proxy.inject(fault);
        let started = std::time::Instant::now();
        let (code, text) = export_main(&env).await;
        assert_eq!(code, Some(0), "{text}");
        // A stalled request is abandoned after the 2 s attempt timeout, not waited out.
        assert!(started.elapsed() < Duration::from_secs(30), "{text}");
    }

    // A store that keeps answering 503: the export fails, the run stays pending with its error,
    // the watermark stays.
    crate::append(&db, 10, None).await;
    tally.written += 10;
    let watermark = db.watermark_of("main").await;
    proxy.inject(Fault::answer(is_put_object, 5, 503, "SlowDown"));
    let (code, text) = export_main(&env).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("SlowDown"), "{text}");
    let last_error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM export_runs WHERE status = 'pending'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(last_error.unwrap().contains("SlowDown"));
    assert_eq!(db.watermark_of("main").await, watermark);
    let (code, text) = export_main(&env).await;
    assert_eq!(code, Some(0), "{text}");

    let seen = proxy.seen();
    tally.fault("stall", seen.iter().filter(|s| s.status == 0).count());
    for (kind, status) in [("503", 503), ("500", 500), ("reset", RESET)] {
        tally.fault(kind, seen.iter().filter(|s| s.status == status).count());
    }
    tally.finish(&db, "main", &bucket.objects("p/").await).await;
}
