//! One export of one destination, as SPEC "Exactly once" lays it out:
//! claim the lease → plan (or resume) the run → upload its objects → commit the watermark.
//!
//! Each step is public so tests (and a crash) can stop between any two of them; a pending run
//! left behind is finished by the next attempt with the same window, key and bytes.

mod digest;
mod encode;
mod objects;
mod parquet;
mod pipeline;
mod reexport;
mod side;
mod stream;
mod verify;
mod verify_chain;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use digest::scheduled_digest;
pub use encode::{Encoded, ObjectEncoder};
pub use objects::split_limit;
pub use pipeline::{Delivered, Stopped, deliver, heartbeat};
pub use reexport::ReexportReport;
pub use stream::discard_leftovers;
pub use verify::TestDelivery;
pub use verify_chain::{ChainSpan, Fetched, Finding, Verification, verify_chain, walk};

use crate::domain::{KeyParts, PartitionTime, with_part};
use crate::settings::{Destination, ExporterSettings};
use crate::sink::{PutOutcome, Sink};
use crate::store::{Claim, CommitError, Lease, NewRun, Run, RunObject, Store};

/// Whether to export now or only when the destination's schedule says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    IfDue,
}

#[derive(Debug)]
pub enum Outcome {
    Exported(Box<Report>),
    NotDue {
        next_due: DateTime<Utc>,
    },
    /// Another process holds the destination's lease.
    Busy {
        owner: String,
        expires_at: DateTime<Utc>,
    },
}

/// A committed run.
#[derive(Debug, Clone)]
pub struct Report {
    pub run: Run,
    /// Where each of its objects is, in order.
    pub locations: Vec<String>,
    pub objects: Vec<RunObject>,
    /// The run was planned by an earlier attempt.
    pub resumed: bool,
    /// `AlreadyExists` when an earlier attempt had delivered every object.
    pub put: PutOutcome,
    /// Audit events in its objects (0 for a heartbeat).
    pub events: u64,
    pub bytes: u64,
    /// Where the run's signed digest went, when digests are signed.
    pub digest: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Exporter {
    store: Store,
    owner: String,
    settings: ExporterSettings,
    /// Fired on shutdown: an upload in flight is aborted and its lease released.
    shutdown: CancellationToken,
}

impl Exporter {
    pub fn new(store: Store, settings: ExporterSettings) -> Self {
        let owner = settings.instance_id.clone().unwrap_or_else(default_owner);
        Self {
            store,
            owner,
            settings,
            shutdown: CancellationToken::new(),
        }
    }

    /// The same exporter (the same lease owner and shutdown) with new settings, for a
    /// reloaded config.
    pub fn with_settings(&self, settings: ExporterSettings) -> Self {
        Self {
            store: self.store.clone(),
            owner: self.owner.clone(),
            settings,
            shutdown: self.shutdown.clone(),
        }
    }

    /// The same exporter, stopped by `shutdown`: once it fires, an export in flight aborts its
    /// upload (a multipart upload is aborted, a temporary file removed), keeps its run pending
    /// and releases the lease, so another process can take the run over at once.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The name this exporter holds leases under.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs every step for one destination.
    pub async fn export(
        &self,
        destination: &Destination,
        sink: &dyn Sink,
        when: When,
    ) -> anyhow::Result<Outcome> {
        let span = tracing::info_span!("export", destination = %destination.name, run_id = tracing::field::Empty);
        self.export_in_span(destination, sink, when)
            .instrument(span)
            .await
    }

    async fn export_in_span(
        &self,
        destination: &Destination,
        sink: &dyn Sink,
        when: When,
    ) -> anyhow::Result<Outcome> {
        if self.shutdown.is_cancelled() {
            return Err(Stopped.into());
        }
        let state = self
            .store
            .sync_destination(
                &destination.name,
                destination.every_hours,
                destination.schedule_at,
            )
            .await?;
        let cluster = self.begin_stream(destination).await?;
        // The database's clock, as the lease's: replicas with drifting clocks agree on slots.
        let now = state.read_at;
        let slot = state.schedule.due(now, state.last_slot);
        if when == When::IfDue
            && slot.is_none()
            && self.store.pending_run(&destination.name).await?.is_none()
        {
            return Ok(Outcome::NotDue {
                next_due: state.schedule.next_due(now),
            });
        }
        self.store
            .check_stream(
                &destination.name,
                destination.tenant_id.as_deref(),
                cluster.as_deref(),
            )
            .await?;
        self.settle_interrupted(&destination.name, sink).await?;
        let lease = match self
            .store
            .claim(&destination.name, &self.owner, self.settings.lease_secs)
            .await?
        {
            Claim::Granted(lease) => lease,
            Claim::Busy { owner, expires_at } => return Ok(Outcome::Busy { owner, expires_at }),
        };
        let mut planned = None;
        let result = async {
            let (run, resumed) = self.plan_or_resume(&lease, destination, slot).await?;
            tracing::Span::current().record("run_id", tracing::field::display(run.id));
            planned = Some(run.id);
            let delivered = self.deliver(&lease, &run, sink).await?;
            let digest = self
                .seal(&lease, destination, &run, &delivered, sink)
                .await?;
            let run = self.commit(&lease, &run, &delivered).await?;
            Ok::<_, anyhow::Error>(Report {
                digest: digest.map(|key| sink.location(&key)),
                locations: delivered
                    .objects
                    .iter()
                    .map(|o| sink.location(&o.key))
                    .collect(),
                resumed,
                put: delivered.outcome,
                events: run.event_count.unwrap_or_default() as u64,
                bytes: delivered.bytes(),
                objects: delivered.objects,
                run,
            })
        }
        .await;
        match result {
            Ok(report) => {
                tracing::info!(
                    key = %report.locations.first().map(String::as_str).unwrap_or_default(),
                    last_key = %report.locations.last().map(String::as_str).unwrap_or_default(),
                    objects = report.objects.len(),
                    events = report.events,
                    bytes = report.bytes,
                    resumed = report.resumed,
                    already_delivered = report.put == PutOutcome::AlreadyExists,
                    "Exported a window."
                );
                Ok(Outcome::Exported(Box::new(report)))
            }
            Err(error) if crate::store::unreachable(&error) => {
                // With the database gone, recording the failure and freeing the lease would
                // each wait out the pool's acquire timeout; the lease expires on its own.
                Err(error)
            }
            Err(error) => {
                if let Some(run_id) = planned {
                    let _ = self
                        .store
                        .record_failure(&lease, run_id, &format!("{error:#}"))
                        .await;
                }
                // The run stays pending; freeing the lease lets the next attempt resume it now.
                let _ = self.store.release(&lease).await;
                Err(error)
            }
        }
    }

    /// Step 1: the lease, unless a live holder has it (the destination is recorded first).
    pub async fn claim(&self, destination: &Destination) -> anyhow::Result<Claim> {
        self.store
            .sync_destination(
                &destination.name,
                destination.every_hours,
                destination.schedule_at,
            )
            .await?;
        self.begin_stream(destination).await?;
        self.store
            .claim(&destination.name, &self.owner, self.settings.lease_secs)
            .await
    }

    /// Step 2: the pending run, unchanged, or a new one planned and committed before any upload.
    pub async fn plan_or_resume(
        &self,
        lease: &Lease,
        destination: &Destination,
        slot: Option<DateTime<Utc>>,
    ) -> anyhow::Result<(Run, bool)> {
        let delivery = destination.delivery();
        if let Some(run) = self.store.pending_run(&destination.name).await?
            && self.resumable(lease, &run, &delivery).await?
        {
            tracing::info!(run_id = %run.id, key = %run.object_key, attempts = run.attempts, "Resuming a pending run.");
            return Ok((run, true));
        }
        let new = NewRun {
            tenant_id: destination.tenant_id.as_deref(),
            format: destination.format,
            slot,
            delivery: Some(delivery),
            max_object_bytes: split_limit(destination.max_object_bytes, self.settings.part_size)
                .min(i64::MAX as u64) as i64,
            by_day: destination.partition_time == PartitionTime::Event,
        };
        let run = self
            .store
            .plan_run(lease, &new, |run_id, window_end| {
                let extension = destination.format.extension();
                let key = destination.key_layout.render(&KeyParts {
                    prefix: destination.prefix(),
                    destination: &destination.name,
                    window_end,
                    run_id,
                    extension,
                    by_day: new.by_day,
                });
                with_part(&key, extension, 1)
            })
            .await?;
        Ok((run, false))
    }

    /// Step 3: the object, uploaded while the lease is renewed; losing the lease stops it.
    pub async fn deliver(
        &self,
        lease: &Lease,
        run: &Run,
        sink: &dyn Sink,
    ) -> anyhow::Result<Delivered> {
        self.store.start_attempt(lease, run.id).await?;
        let renew_every = Duration::from_secs(u64::from(self.settings.lease_secs / 3).max(1));
        let delivery = deliver(
            &self.store,
            sink,
            run,
            self.settings.part_size,
            &self.shutdown,
        );
        tokio::pin!(delivery);
        loop {
            tokio::select! {
                delivered = &mut delivery => return delivered,
                () = tokio::time::sleep(renew_every) => {
                    if !self.store.renew(lease, self.settings.lease_secs).await? {
                        return Err(CommitError::LeaseLost(lease.destination.clone()).into());
                    }
                }
            }
        }
    }

    /// Step 4: the watermark moves to the run's end, if the lease is still ours, and the
    /// chain's head to the digest kept with the run, if any (see [`Exporter::seal`]).
    pub async fn commit(
        &self,
        lease: &Lease,
        run: &Run,
        delivered: &Delivered,
    ) -> anyhow::Result<Run> {
        let events = if run.heartbeat_event_id.is_some() {
            0
        } else {
            delivered.events() as i64
        };
        let bytes = delivered.bytes() as i64;
        let sha256 = delivered.sha256().map(str::to_owned);
        let objects = delivered.objects.len() as i32;
        self.store
            .commit_run(lease, run, events, bytes, sha256.as_deref(), objects)
            .await?;
        Ok(Run {
            status: crate::store::RunStatus::Done,
            event_count: Some(events),
            bytes: Some(bytes),
            sha256,
            object_count: Some(objects),
            ..run.clone()
        })
    }
}

fn default_owner() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..8])
}
