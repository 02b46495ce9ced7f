//! Integration tests: one binary, real PostgreSQL and a real S3-protocol server.

mod alerts;
mod analytics;
mod check;
mod cli;
mod cluster_move;
mod connections;
mod daemon;
mod delivery;
mod export;
mod export_parts;
mod faults;
mod foreign;
mod harness;
mod integrity;
mod keys;
mod lifecycle;
mod lifecycle_commands;
mod lifecycle_sigterm;
mod messages;
mod moto;
mod odd_rows;
mod operate;
mod operate_status;
mod output;
mod partitions;
mod proxy;
mod readonly;
mod recovery;
mod reexport;
mod retention;
mod retention_holds;
mod retention_record;
mod retention_run;
mod roles;
mod schedule;
mod schema;
mod split;
mod sts;
mod sts_verify;
mod tenants;

use audit_exporter::export::{Exporter, Outcome, Report, When};
use audit_exporter::settings::{Destination, Settings};
use audit_exporter::sink;

use harness::TestDb;

/// Appends `n` events in one transaction; values with quotes, backslashes and newlines too.
pub async fn append(db: &TestDb, n: i64, tenant: Option<&str>) {
    sqlx::query(
        r#"INSERT INTO audit_events (occurred_at, tenant_id, action, actor, target, metadata)
           SELECT now() - make_interval(secs => g), $1, (ARRAY['user.login','project.deleted','api_key.created'])[1 + g % 3],
                  jsonb_build_object('type', 'user', 'id', 'u-' || g, 'ip', '203.0.113.' || (g % 250), 'user_agent', 'Mozilla/5.0'),
                  CASE WHEN g % 2 = 0 THEN jsonb_build_object('type', 'project', 'id', 'p-' || g) END,
                  jsonb_build_object('n', g, 'note', E'quote " backslash \\ newline\n', 'padding', repeat(md5(g::text), 4))
           FROM generate_series(1, $2) g"#,
    )
    .bind(tenant)
    .bind(n)
    .execute(db.pool())
    .await
    .unwrap();
}

pub fn exporter(db: &TestDb, settings: &Settings) -> Exporter {
    Exporter::new(db.store.clone(), settings.exporter.clone())
}

pub fn destination<'a>(settings: &'a Settings, name: &str) -> &'a Destination {
    settings
        .destinations
        .iter()
        .find(|d| d.name == name)
        .unwrap()
}

/// Exports one destination now and expects a committed run.
pub async fn export_now(exporter: &Exporter, settings: &Settings, name: &str) -> Report {
    let destination = destination(settings, name);
    let sink = sink::connect(destination, &settings.exporter)
        .await
        .unwrap();
    match exporter
        .export(destination, sink.as_ref(), When::Now)
        .await
        .unwrap()
    {
        Outcome::Exported(report) => *report,
        other => panic!("expected an export of {name}, got {other:?}"),
    }
}
