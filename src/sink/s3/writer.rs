//! One object's upload: a single PutObject when it fits in one part, else a multipart upload with a
//! bounded number of parts in flight. Every request carries a SHA-256 checksum; the object's
//! creation carries `If-None-Match: *`.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::S3Sink;
use super::error::{RemoteError, is_precondition_failed, s3_error};
use super::request::WriteOptions;
use crate::domain::Format;
use crate::sink::{ObjectWriter, PutOutcome, Sink};

/// Sets the headers every new object carries, on PutObject and CreateMultipartUpload alike
/// (two builder types with the same setters).
macro_rules! with_object_headers {
    ($request:expr, $writer:expr) => {{
        let (format, options) = (&$writer.format, &$writer.options);
        $request
            .content_type(format.content_type())
            .set_content_encoding(format.content_encoding().map(str::to_owned))
            .set_server_side_encryption(options.server_side_encryption.clone())
            .set_ssekms_key_id(options.kms_key_id.clone())
            .set_acl(options.acl.clone())
            .set_storage_class(options.storage_class.clone())
            .set_tagging(options.tagging.clone())
            .set_object_lock_mode(options.object_lock_mode.clone())
            .set_object_lock_retain_until_date(options.object_lock_retain_until)
    }};
}

pub(super) struct S3Writer {
    sink: S3Sink,
    key: String,
    format: Format,
    options: WriteOptions,
    /// The first part is held back: if it is also the last, one PutObject suffices.
    first: Option<Bytes>,
    multipart: Option<Multipart>,
}

struct Multipart {
    upload_id: String,
    next_number: i32,
    in_flight: JoinSet<anyhow::Result<CompletedPart>>,
    done: Vec<CompletedPart>,
}

impl Multipart {
    /// Waits until fewer than `limit` parts are in flight.
    async fn wait_for_slot(&mut self, limit: usize) -> anyhow::Result<()> {
        while self.in_flight.len() >= limit {
            let finished = self
                .in_flight
                .join_next()
                .await
                .context("a part upload is in flight")??;
            self.done.push(finished?);
        }
        Ok(())
    }
}

impl S3Writer {
    pub(super) fn new(sink: S3Sink, key: &str, format: Format) -> Self {
        Self {
            options: WriteOptions::new(&sink.options, chrono::Utc::now()),
            sink,
            key: key.to_owned(),
            format,
            first: None,
            multipart: None,
        }
    }

    fn location(&self) -> String {
        self.sink.location(&self.key)
    }

    fn error<E>(
        &self,
        operation: &'static str,
        e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> anyhow::Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        s3_error(&self.sink.endpoint, operation, &self.location(), e)
    }

    async fn start_multipart(&self) -> anyhow::Result<Multipart> {
        let request = self
            .sink
            .client
            .create_multipart_upload()
            .bucket(&self.sink.bucket)
            .key(&self.key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        let created = with_object_headers!(request, self)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", &e))?;
        let upload_id = created
            .upload_id()
            .context("CreateMultipartUpload returned no upload id")?
            .to_owned();
        Ok(Multipart {
            upload_id,
            next_number: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
        })
    }

    /// Sends a part, first waiting for one in flight when the limit is reached.
    async fn upload_part(&mut self, part: Bytes) -> anyhow::Result<()> {
        let limit = self.sink.uploads_in_flight;
        let location = self.location();
        let (client, bucket, key, endpoint) = (
            self.sink.client.clone(),
            self.sink.bucket.clone(),
            self.key.clone(),
            self.sink.endpoint.clone(),
        );
        let multipart = self
            .multipart
            .as_mut()
            .context("no multipart upload in progress")?;
        multipart.wait_for_slot(limit).await?;
        let number = multipart.next_number;
        multipart.next_number += 1;
        let upload_id = multipart.upload_id.clone();
        multipart.in_flight.spawn(async move {
            let checksum = sha256_base64(&part);
            let uploaded = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .body(ByteStream::from(part))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| s3_error(&endpoint, "UploadPart", &location, &e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .checksum_sha256(checksum)
                .build())
        });
        Ok(())
    }

    async fn put_whole(&self, body: Bytes) -> anyhow::Result<PutOutcome> {
        let request = self
            .sink
            .client
            .put_object()
            .bucket(&self.sink.bucket)
            .key(&self.key)
            .if_none_match("*");
        let result = with_object_headers!(request, self)
            // Object Lock needs the algorithm named as well as the checksum itself.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha256_base64(&body))
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if is_precondition_failed(&e) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(self.error("PutObject", &e)),
        }
    }

    async fn complete(&mut self) -> anyhow::Result<PutOutcome> {
        let multipart = self
            .multipart
            .as_mut()
            .context("no multipart upload in progress")?;
        while let Some(finished) = multipart.in_flight.join_next().await {
            multipart.done.push(finished??);
        }
        multipart.done.sort_by_key(|p| p.part_number());
        let parts = std::mem::take(&mut multipart.done);
        let result = self
            .sink
            .client
            .complete_multipart_upload()
            .bucket(&self.sink.bucket)
            .key(&self.key)
            .upload_id(&multipart.upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if is_precondition_failed(&e) => {
                self.abort_multipart().await;
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(self.error("CompleteMultipartUpload", &e)),
        }
    }

    async fn abort_multipart(&mut self) {
        let Some(multipart) = self.multipart.take() else {
            return;
        };
        let mut in_flight = multipart.in_flight;
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
        let aborted = self
            .sink
            .client
            .abort_multipart_upload()
            .bucket(&self.sink.bucket)
            .key(&self.key)
            .upload_id(&multipart.upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            let error = RemoteError::from_sdk(
                ("S3", &self.sink.endpoint),
                "AbortMultipartUpload",
                &self.location(),
                &e,
            );
            if error.code_is("AccessDenied") {
                tracing::warn!(
                    key = %self.location(),
                    %error,
                    "Could not abort a multipart upload: s3:AbortMultipartUpload is not granted. Its parts stay stored (and billed) until a lifecycle rule with AbortIncompleteMultipartUpload removes them."
                );
            } else {
                tracing::warn!(
                    key = %self.location(),
                    %error,
                    "Could not abort a multipart upload; a lifecycle rule with AbortIncompleteMultipartUpload removes its parts."
                );
            }
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, part: Bytes) -> anyhow::Result<()> {
        if self.multipart.is_none() {
            match self.first.take() {
                None => {
                    self.first = Some(part);
                    return Ok(());
                }
                Some(first) => {
                    self.multipart = Some(self.start_multipart().await?);
                    self.upload_part(first).await?;
                }
            }
        }
        self.upload_part(part).await
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        match self.multipart.as_mut() {
            Some(multipart) => multipart.wait_for_slot(self.sink.uploads_in_flight).await,
            None => Ok(()),
        }
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<PutOutcome> {
        if self.multipart.is_none() {
            let body = self.first.take().unwrap_or_default();
            return self.put_whole(body).await;
        }
        let outcome = self.complete().await;
        if outcome.is_err() {
            self.abort_multipart().await;
        }
        outcome
    }

    async fn abort(mut self: Box<Self>) {
        self.abort_multipart().await;
    }
}

fn sha256_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}
