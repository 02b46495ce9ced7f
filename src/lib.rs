//! audit-exporter ships audit events from PostgreSQL to S3 buckets and local directories,
//! exactly once, on a schedule.
//!
//! Data flows one way: `settings` → `store` (the window) → `export` (encode) → `sink`, with
//! `commands` and `daemon` calling into `export`.

pub mod cli;
pub mod commands;
pub mod daemon;
pub mod domain;
pub mod export;
pub mod memory;
pub mod settings;
pub mod sink;
pub mod store;
pub mod telemetry;
