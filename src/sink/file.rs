//! A local directory. Objects appear atomically: written to a temp file, synced, then linked
//! into place, which fails rather than replace an existing object. No temp file outlives its
//! attempt: an abandoned one removes its own, and the next attempt at the same key removes one
//! that a killed process left.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{BucketReader, ObjectWriter, PutOutcome, Sink};
use crate::domain::Format;

#[derive(Debug, Clone)]
pub struct FileSink {
    root: PathBuf,
}

impl FileSink {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

#[async_trait]
impl Sink for FileSink {
    fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn reader(&self) -> BucketReader {
        BucketReader::File(self.root.clone())
    }

    async fn create(&self, key: &str, _format: Format) -> anyhow::Result<Box<dyn ObjectWriter>> {
        // Configs refuse what could climb out (`..`, an absolute path); this keeps it so.
        anyhow::ensure!(
            Path::new(key)
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "the object key {key:?} is not a relative path of plain segments"
        );
        let path = self.root.join(key);
        let dir = path
            .parent()
            .context("an object key names a file")?
            .to_owned();
        tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        let name = path
            .file_name()
            .context("an object key names a file")?
            .to_string_lossy()
            .into_owned();
        // Keys are never reused by another run, so a temp file of this key is an earlier
        // attempt's of the same run, whose process died (a live one has lost its lease, and its
        // link fails once the file is gone).
        remove_temps(&dir, &name).await?;
        let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        // Create-new (O_EXCL): what is already at the temp path, a symbolic link included, is
        // never opened through. The link into place does not follow one at the key either.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .with_context(|| format!("Failed to create {}", temp.display()))?;
        Ok(Box::new(FileWriter {
            file,
            temp: Some(temp),
            path,
        }))
    }

    async fn discard_partial(&self, key: &str) -> anyhow::Result<()> {
        let path = self.root.join(key);
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => remove_temps(dir, &name.to_string_lossy()).await,
            _ => Ok(()),
        }
    }
}

/// Removes the temp files of object `name` in `dir`: `.{name}.{32 hex digits}.tmp`.
async fn remove_temps(dir: &Path, name: &str) -> anyhow::Result<()> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("Failed to list {}", dir.display())),
    };
    while let Some(entry) = entries.next_entry().await? {
        let file_name = entry.file_name();
        if file_name.to_str().and_then(temp_of) == Some(name) {
            let temp = entry.path();
            match tokio::fs::remove_file(&temp).await {
                Ok(()) => {
                    tracing::info!(path = %temp.display(), "Removed a temporary file an interrupted attempt left.")
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("Failed to remove {}", temp.display()));
                }
            }
        }
    }
    Ok(())
}

/// The object whose write in progress `file_name` is the temp file of: `name` for
/// `.{name}.{32 hex digits}.tmp`, else `None` (any other file, dot-files included, is not ours).
pub(crate) fn temp_of(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (name, id) = rest.rsplit_once('.')?;
    let ours = !name.is_empty() && id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    ours.then_some(name)
}

struct FileWriter {
    file: tokio::fs::File,
    /// Until the object is in place or abandoned.
    temp: Option<PathBuf>,
    path: PathBuf,
}

impl FileWriter {
    fn temp(&self) -> &Path {
        self.temp.as_deref().unwrap_or(Path::new(""))
    }
}

#[async_trait]
impl ObjectWriter for FileWriter {
    async fn write(&mut self, part: Bytes) -> anyhow::Result<()> {
        let temp = self.temp().display().to_string();
        self.file
            .write_all(&part)
            .await
            .with_context(|| format!("Failed to write {temp}"))
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<PutOutcome> {
        self.file.flush().await?;
        self.file
            .sync_all()
            .await
            .with_context(|| format!("Failed to sync {}", self.temp().display()))?;
        let outcome = match tokio::fs::hard_link(self.temp(), &self.path).await {
            Ok(()) => PutOutcome::Written,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => PutOutcome::AlreadyExists,
            Err(e) => {
                return Err(e).with_context(|| format!("Failed to link {}", self.path.display()));
            }
        };
        if let Some(temp) = self.temp.take() {
            tokio::fs::remove_file(&temp).await?;
        }
        sync_dir(self.path.parent().unwrap_or(Path::new("/"))).await?;
        Ok(outcome)
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(temp) = self.temp.take() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
    }
}

/// An attempt dropped half-way (a shutdown, a lost lease) leaves no temp file either.
impl Drop for FileWriter {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Makes the new directory entry durable.
async fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await?
        .context("Failed to sync the object's directory")
}

#[cfg(test)]
mod tests {
    use super::temp_of;

    #[test]
    fn only_our_own_temp_files_are_temp_files() {
        let id = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(temp_of(&format!(".x.jsonl.{id}.tmp")), Some("x.jsonl"));
        assert_eq!(temp_of(&format!(".a.b.c.{id}.tmp")), Some("a.b.c"));
        for other in [
            ".x.json".to_owned(),
            ".x.jsonl.tmp".to_owned(),
            format!("..{id}.tmp"),
            format!(".x.{}.tmp", &id[1..]),
            format!(".x.{}g.tmp", &id[1..]),
            format!("x.{id}.tmp"),
            format!(".x.{id}.tmpx"),
            ".hidden".to_owned(),
        ] {
            assert_eq!(temp_of(&other), None, "{other}");
        }
    }
}
