//! The command line: definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Ships audit events from PostgreSQL to S3 buckets and local directories, exactly once, on a
/// schedule of every 1 to 24 hours.
///
/// Exit codes: 0 success, 1 an export or a test delivery failed, 2 bad usage or configuration.
#[derive(Debug, Parser)]
#[command(name = "audit-exporter", version)]
pub struct Cli {
    /// A TOML config file layered over the built-in defaults; AUDIT_EXPORTER__SECTION__KEY
    /// environment variables override both. An empty value counts as none.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "AUDIT_EXPORTER_CONFIG",
        value_parser = config_file
    )]
    pub config: Option<ConfigFile>,

    #[command(subcommand)]
    pub command: Command,
}

/// The `--config` value; empty when the flag or AUDIT_EXPORTER_CONFIG is set to "".
#[derive(Debug, Clone)]
pub struct ConfigFile(PathBuf);

impl ConfigFile {
    /// The file, unless the value was empty.
    pub fn path(&self) -> Option<&std::path::Path> {
        (!self.0.as_os_str().is_empty()).then_some(self.0.as_path())
    }
}

/// Accepts any value, the empty one included (clap's PathBuf parser refuses it).
fn config_file(value: &str) -> Result<ConfigFile, std::convert::Infallible> {
    Ok(ConfigFile(PathBuf::from(value)))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded database migrations (idempotent).
    Migrate,
    /// Run the scheduler: export every destination when it is due, until SIGTERM or Ctrl-C.
    ///
    /// Each destination is exported on its own schedule; one that keeps failing is retried
    /// after a growing wait (run.failed_export_backoff_secs, doubling up to
    /// run.failed_export_backoff_max_secs). The --config file is reloaded when it
    /// changes and on SIGHUP; /metrics, /healthz and /readyz are served on run.listen from the
    /// start, also while it waits for a database that is down.
    Run,
    /// Export now: every destination, or those named. Exit 0 when every export succeeded.
    ///
    /// A failed export prints the S3 or STS error and the hint `verify` gives.
    Export {
        /// Export only this destination (repeatable).
        #[arg(long = "destination", value_name = "NAME")]
        destinations: Vec<String>,
        /// Export only the destinations whose due time has come (for cron jobs and timers).
        #[arg(long)]
        if_due: bool,
    },
    /// Export again the events that occurred in [--from, --to) and were already exported.
    ///
    /// They go under `{prefix}/reexport/` in the destination's key layout, in (occurred_at,
    /// txid, id) order, with its format and object options, in objects `…_part0001`, `…_part0002`,
    /// … cut at max_object_bytes (each passes it by at most one event). The watermark never
    /// moves and no scheduled object is touched, so it is safe while `run` exports the same
    /// destination. Logged as a run of kind `reexport`; one that a crash interrupted is marked
    /// failed by the next export, re-export or verify. Exit 0 when every re-export succeeded.
    Reexport {
        /// The start of the range, inclusive: an RFC 3339 time (2026-11-20T00:00:00Z) or a date
        /// (2026-11-20, midnight UTC).
        #[arg(long, value_name = "TIME", value_parser = crate::commands::parse_from_time)]
        from: chrono::DateTime<chrono::Utc>,
        /// The end of the range, exclusive, not in the future: a time, a date, or `now`.
        #[arg(long, value_name = "TIME", value_parser = crate::commands::parse_time)]
        to: chrono::DateTime<chrono::Utc>,
        /// Re-export only to this destination (repeatable; default: every destination).
        #[arg(long = "destination", value_name = "NAME")]
        destinations: Vec<String>,
        /// Only this tenant's events (within the destination's own tenant filter).
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// Write a test object to each destination through the same write path as an export.
    ///
    /// The object goes under `{prefix}/test/` in the destination's key layout, with its
    /// credentials (STS included), object options, checksum and conditional write, and is
    /// logged as a run of kind `test`; the watermark is not touched. On failure, print the S3 or STS error with
    /// its request id and a hint naming the likely missing permission or trust-policy
    /// condition. Exit 0 only when every test object was written.
    Verify {
        /// Verify only this destination (repeatable).
        #[arg(long = "destination", value_name = "NAME")]
        destinations: Vec<String>,
    },
    /// Show per destination its watermark, the events waiting, recent runs, the next due time,
    /// the lease holder, and who holds the export horizon back.
    ///
    /// Scheduled runs come first, test deliveries and re-exports under their own heading;
    /// warnings name a tenant_id no event has and destinations that share a location. Reads
    /// only: never migrates, and says so when the database was never migrated.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Operate a destination's stream: list what the database knows, cancel a pending run,
    /// reset where the stream starts, forget a destination no longer configured.
    ///
    /// cancel, reset and forget take the destination's lease like an export (refused, exit 1,
    /// while an exporter holds it) and each appends a `system.export.*` event to the audit log.
    Destination {
        #[command(subcommand)]
        command: DestinationCommand,
    },
    /// Append an audit event (for scripts and smoke tests).
    Append(AppendArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DestinationCommand {
    /// Every destination the database knows: watermark and tenant filter, marking those no
    /// longer in the configuration, forgotten ones, and those with a pending or abandoned run.
    List,
    /// Abandon the destination's pending run: the watermark stays, the next export plans a new
    /// run from the current configuration. Prints the key the run may already have written.
    Cancel {
        /// The destination's name.
        name: String,
    },
    /// Move where the destination's stream starts, and adopt its configured tenant_id and the
    /// current database cluster. This is how a tenant_id change is accepted, and how the stream
    /// is re-based after the database moved to a new cluster. Refused while a run is pending
    /// (cancel it first).
    Reset {
        /// The destination's name (it must be in the configuration).
        name: String,
        /// beginning (every event), now (events written from now on), or an RFC 3339 time
        /// (every event recorded from then on; a few recorded just before may be included).
        #[arg(long, value_name = "beginning|now|TIME", value_parser = crate::domain::Start::parse)]
        start: crate::domain::Start,
    },
    /// Drop the state of a destination no longer in the configuration, so it holds nothing
    /// back; its run log is kept. If configured again, it starts anew per its `start`.
    Forget {
        /// The destination's name (it must not be in the configuration).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective result, secrets redacted.
    ///
    /// Warns about destinations that share a bucket and prefix (or directory) and, when
    /// database.url is set and answers, about a tenant_id no recorded event has. Never writes to
    /// the database and never fails because it cannot be reached.
    Check,
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// What happened, e.g. `user.login`.
    #[arg(long)]
    pub action: String,
    /// Who did it: a JSON object, e.g. '{"type":"user","id":"u1","ip":"203.0.113.9"}'.
    #[arg(long)]
    pub actor: String,
    /// To what: a JSON object.
    #[arg(long)]
    pub target: Option<String>,
    /// Anything else: a JSON object.
    #[arg(long, default_value = "{}")]
    pub metadata: String,
    /// The tenant the event belongs to.
    #[arg(long)]
    pub tenant: Option<String>,
    /// When it happened, RFC 3339 (default: now).
    #[arg(long, value_name = "TIME")]
    pub occurred_at: Option<String>,
    /// Append this many copies, each with its own event id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub count: u32,
}
