//! A local directory. Objects appear atomically: written to a temp file, synced, then linked
//! into place, which fails rather than replace an existing object.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{ObjectWriter, PutOutcome, Sink};
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
            .to_string_lossy();
        let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&temp)
            .await
            .with_context(|| format!("Failed to create {}", temp.display()))?;
        Ok(Box::new(FileWriter { file, temp, path }))
    }
}

struct FileWriter {
    file: tokio::fs::File,
    temp: PathBuf,
    path: PathBuf,
}

#[async_trait]
impl ObjectWriter for FileWriter {
    async fn write(&mut self, part: Bytes) -> anyhow::Result<()> {
        self.file
            .write_all(&part)
            .await
            .with_context(|| format!("Failed to write {}", self.temp.display()))
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<PutOutcome> {
        self.file.flush().await?;
        self.file
            .sync_all()
            .await
            .with_context(|| format!("Failed to sync {}", self.temp.display()))?;
        let outcome = match tokio::fs::hard_link(&self.temp, &self.path).await {
            Ok(()) => PutOutcome::Written,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => PutOutcome::AlreadyExists,
            Err(e) => {
                return Err(e).with_context(|| format!("Failed to link {}", self.path.display()));
            }
        };
        tokio::fs::remove_file(&self.temp).await?;
        sync_dir(self.path.parent().unwrap_or(Path::new("/"))).await?;
        Ok(outcome)
    }

    async fn abort(self: Box<Self>) {
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

/// Makes the new directory entry durable.
async fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await?
        .context("Failed to sync the object's directory")
}
