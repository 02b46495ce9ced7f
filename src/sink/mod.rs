//! Where objects go: the one seam between the exporter and storage.

mod file;
mod found;
mod reader;
mod s3;

use async_trait::async_trait;
use bytes::Bytes;

pub use file::FileSink;
pub use found::check_found;
pub use reader::{BucketReader, Found, Listed};
pub use s3::{RemoteError, S3Sink, hint};

use crate::domain::Format;
use crate::settings::{Destination, ExporterSettings, Target};

/// How a finished write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// An object was already at the key: an earlier attempt of the same run delivered it, if
    /// it holds the same bytes ([`check_found`]).
    AlreadyExists,
}

/// A store of objects. Writes never replace an existing object.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Where `key` lives, for people: `s3://bucket/key` or a path.
    fn location(&self, key: &str) -> String;

    /// Gets what writing needs before any write (for S3, the credentials: a role session from
    /// STS), so a failure there is reported as such.
    async fn check_access(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// A reader of this store with the same credentials, for [`check_found`].
    fn reader(&self) -> BucketReader;

    /// Starts writing the object at `key`.
    async fn create(&self, key: &str, format: Format) -> anyhow::Result<Box<dyn ObjectWriter>>;

    /// Removes what an interrupted write of `key` may have left, where that can be known
    /// without listing (a directory's temp files); the object itself, if there, stays.
    async fn discard_partial(&self, _key: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// An object being written part by part. Nothing is visible at the key until `finish`.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, part: Bytes) -> anyhow::Result<()>;

    /// Waits until `write` can take a part without waiting, so a caller holds no part while
    /// earlier ones are still uploading: one part buffer less per export.
    async fn ready(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Makes the object visible at its key, unless one is there already.
    async fn finish(self: Box<Self>) -> anyhow::Result<PutOutcome>;

    /// Drops what was written; best effort, the key stays untouched.
    async fn abort(self: Box<Self>);
}

/// The sink of a destination.
pub async fn connect(
    destination: &Destination,
    exporter: &ExporterSettings,
) -> anyhow::Result<Box<dyn Sink>> {
    Ok(match &destination.target {
        Target::File(dir) => Box::new(FileSink::new(dir.clone())),
        Target::S3(target) => {
            Box::new(S3Sink::connect(target, exporter.uploads_in_flight, exporter.retry).await)
        }
    })
}
