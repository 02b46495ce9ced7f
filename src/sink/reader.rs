//! Reading a destination back (List + Get), for `verify-chain`: a reader of its own beside the
//! write-only [`Sink`](super::Sink), for an S3 bucket or a directory.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::s3::{S3Read, S3Sink};
use crate::settings::{Destination, ExporterSettings, Target};

/// What reading a key back found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An object: its size and SHA-256.
    Object {
        bytes: u64,
        sha256: String,
    },
    Nothing,
    /// What is not an object (in a directory: "a directory", "a symbolic link", ...).
    NotAnObject(&'static str),
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum BucketReader {
    S3(Box<S3Read>),
    /// A directory: keys are paths relative to it.
    File(PathBuf),
}

impl BucketReader {
    /// Reads the destination with its configured credentials: they need `s3:ListBucket` and
    /// `s3:GetObject` (README: Integrity).
    pub async fn for_destination(destination: &Destination, exporter: &ExporterSettings) -> Self {
        match &destination.target {
            Target::File(dir) => Self::File(dir.clone()),
            Target::S3(target) => {
                let sink =
                    S3Sink::connect(target, exporter.uploads_in_flight, exporter.retry).await;
                Self::S3(Box::new(S3Read::from_sink(&sink)))
            }
        }
    }

    pub async fn offline_s3(bucket: &str, endpoint: Option<&str>, region: Option<&str>) -> Self {
        Self::S3(Box::new(S3Read::offline(bucket, endpoint, region).await))
    }

    pub fn location(&self, key: &str) -> String {
        match self {
            Self::S3(s3) => s3.location(key),
            Self::File(root) => root.join(key).display().to_string(),
        }
    }

    /// Every object whose key starts with `prefix` (a folder, ending in `/`, or empty).
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let mut listed = match self {
            Self::S3(s3) => s3.list(prefix).await?,
            Self::File(root) => {
                let root = root.clone();
                let prefix = prefix.to_owned();
                tokio::task::spawn_blocking(move || list_dir(&root, &prefix)).await??
            }
        };
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// The object's size and SHA-256, streamed; `None` when there is none at `key`.
    pub async fn hash(&self, key: &str) -> anyhow::Result<Option<(u64, String)>> {
        Ok(match self.read_back(key).await? {
            Found::Object { bytes, sha256 } => Some((bytes, sha256)),
            Found::Nothing | Found::NotAnObject(_) => None,
        })
    }

    /// What is at `key`: an object's size and SHA-256, streamed, or what else is there. In a
    /// directory a symbolic link is never followed.
    pub async fn read_back(&self, key: &str) -> anyhow::Result<Found> {
        let mut file = match self {
            Self::S3(s3) => {
                return Ok(match s3.hash(key).await? {
                    Some((bytes, sha256)) => Found::Object { bytes, sha256 },
                    None => Found::Nothing,
                });
            }
            Self::File(root) => match open(root, key).await? {
                Opened::File(file) => file,
                Opened::Nothing => return Ok(Found::Nothing),
                Opened::NotAFile(what) => return Ok(Found::NotAnObject(what)),
            },
        };
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 20];
        let mut bytes = 0;
        loop {
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            hasher.update(&buffer[..n]);
        }
        let sha256 = hex::encode(hasher.finalize());
        Ok(Found::Object { bytes, sha256 })
    }

    /// The whole object (a digest or a signature: small); `None` when there is none.
    pub async fn read(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Self::S3(s3) => s3.read(key).await,
            Self::File(root) => {
                let Opened::File(mut file) = open(root, key).await? else {
                    return Ok(None);
                };
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).await?;
                Ok(Some(bytes))
            }
        }
    }
}

/// What opening a key of a directory found.
enum Opened {
    File(tokio::fs::File),
    Nothing,
    /// What else is there: "a directory", "a symbolic link", ...
    NotAFile(&'static str),
}

/// Opens the regular file at `key` without following a symbolic link there: a link is not an
/// object the directory sink wrote (it writes files), and its target may be anywhere.
async fn open(root: &Path, key: &str) -> anyhow::Result<Opened> {
    // A key from a digest is data: it may not climb out of the directory.
    if !Path::new(key)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Ok(Opened::Nothing);
    }
    let path = root.join(key);
    let failed =
        |e: std::io::Error| Err(e).with_context(|| format!("Failed to open {}", path.display()));
    match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if !meta.is_file() => return Ok(Opened::NotAFile(kind_of(&meta.file_type()))),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Opened::Nothing),
        Err(e) => return failed(e),
    }
    // O_NOFOLLOW: a link put there since is refused by the open itself (ELOOP).
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .await;
    match opened {
        Ok(file) => match file.metadata().await? {
            meta if meta.is_file() => Ok(Opened::File(file)),
            meta => Ok(Opened::NotAFile(kind_of(&meta.file_type()))),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Opened::Nothing),
        Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
            Ok(Opened::NotAFile("a symbolic link"))
        }
        Err(e) => failed(e),
    }
}

/// What a file that is not a regular file is, for people.
fn kind_of(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a special file (a device, a FIFO or a socket)"
    }
}

/// The files below `root` whose relative path starts with `prefix`, skipping the temporary
/// files of the directory sink's writes in progress (and nothing else).
fn list_dir(root: &Path, prefix: &str) -> anyhow::Result<Vec<Listed>> {
    fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<Listed>) -> anyhow::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("Failed to list {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, prefix, out)?;
                continue;
            }
            // Only a write in progress is skipped: any other dot-file is an object to check.
            let name = entry.file_name();
            if !kind.is_file() || name.to_str().and_then(super::file::temp_of).is_some() {
                continue;
            }
            let Some(key) = path.strip_prefix(root).ok().and_then(|p| p.to_str()) else {
                continue;
            };
            if key.starts_with(prefix) {
                let meta = entry.metadata()?;
                out.push(Listed {
                    key: key.to_owned(),
                    size: meta.len(),
                    modified: meta.modified().ok().map(DateTime::<Utc>::from),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, prefix, &mut out)?;
    Ok(out)
}
