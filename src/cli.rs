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
    /// Delete from the database the events recorded before a cutoff that every destination has
    /// delivered, and log it.
    ///
    /// An event goes only when at least one destination delivered it and every destination
    /// the database knows (and has not forgotten) whose tenant filter selects it has committed
    /// it (its transaction id is below that destination's watermark); never while a pending
    /// run's window (its tenant's events in its transaction-id range) or a running re-export's
    /// range selects it. Configured destinations are recorded first, as an export would; one no
    /// longer in the configuration holds events back until `destination forget`. Deletes in
    /// short batches while the application keeps writing, each recorded on a run of kind
    /// `prune`, and appends one `system.retention.pruned` event, also when stopped (SIGTERM or
    /// Ctrl-C stop it between batches; exit 1). Prints which destination holds how much back.
    #[command(group(clap::ArgGroup::new("cutoff").required(true).args(["before", "older_than"])))]
    Prune {
        /// Prune events recorded before this time: an RFC 3339 time or a date (midnight UTC),
        /// not in the future.
        #[arg(long, value_name = "TIME", value_parser = crate::commands::parse_before)]
        before: Option<chrono::DateTime<chrono::Utc>>,
        /// Prune events recorded longer ago than this: a number and a unit, d, h, m or s
        /// (30d, 12h).
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = crate::domain::parse_older_than)]
        older_than: Option<chrono::Duration>,
        /// Print what would be deleted and what holds the rest back; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a destination's signed digest chain: every digest's signature, every object's size
    /// and SHA-256, the chain's links, that consecutive windows are contiguous, and that no
    /// object is in the bucket that no digest names.
    ///
    /// Online, with --destination: the destination's bucket (read with List and Get) and the
    /// chain head the database recorded, so removing the newest digests is caught. Offline, with
    /// --url and --public-key: a copy of the bucket and the public keys alone, no database.
    /// Prints each finding and a summary line. Exit 0 when intact, 1 when anything is found,
    /// 2 for bad usage.
    VerifyChain(VerifyChainArgs),
    /// Integrity tools.
    Integrity {
        #[command(subcommand)]
        command: IntegrityCommand,
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
pub enum IntegrityCommand {
    /// Print the public half of integrity.signing_key_file (PEM) and its SHA-256 fingerprint,
    /// to share out of band with the bucket's owner.
    PublicKey,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["destination", "url"]))]
pub struct VerifyChainArgs {
    /// Verify this configured destination, against the chain head its database recorded.
    #[arg(long, value_name = "NAME")]
    pub destination: Option<String>,
    /// Verify a copy of a bucket offline: s3://bucket[/prefix] (credentials from the AWS
    /// default chain) or file:///path. Needs --public-key.
    #[arg(long, value_name = "URL", requires = "public_keys")]
    pub url: Option<String>,
    /// An Ed25519 public key in PEM (`audit-exporter integrity public-key`); repeat it for
    /// every key the chain was signed with (a rotated signing key). With --destination, added
    /// to the keys the database recorded.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<std::path::PathBuf>,
    /// With --url s3://…: the S3 endpoint (an S3-compatible store), addressed path-style.
    #[arg(long, value_name = "URL", requires = "url")]
    pub endpoint: Option<String>,
    /// With --url s3://…: the bucket's region (default: from the AWS environment, else us-east-1).
    #[arg(long, value_name = "REGION", requires = "url")]
    pub region: Option<String>,
    /// Verify only the digests whose window ends at or after this time (RFC 3339 or a date).
    #[arg(long, value_name = "TIME", value_parser = crate::commands::parse_from_time)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Verify only the digests whose window ends before this time (RFC 3339, a date, or now).
    #[arg(long, value_name = "TIME", value_parser = crate::commands::parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective result, secrets redacted.
    ///
    /// Warns about destinations that share a bucket and prefix (or directory) and, when
    /// database.url is set and answers, about a tenant_id no recorded event has and, with no
    /// integrity.signing_key_file, about destinations whose signed digest chain has begun (their
    /// new runs would not be signed). Never writes to the database and never fails because it
    /// cannot be reached.
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
