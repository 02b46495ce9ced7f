//! An S3 bucket, or any S3-compatible store. Objects are streamed: one PutObject when they fit
//! in a part, else a multipart upload with a bounded number of parts in flight. Every request
//! carries a SHA-256 checksum and every write `If-None-Match: *`, so an object is never replaced
//! and a retry of a delivered run learns so from a 412 without reading anything back. The
//! checksum header is signed, so the body is not hashed a second time for the signature
//! (`UNSIGNED-PAYLOAD`): S3 still refuses a body that does not match the checksum.

use std::fmt::Display;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::{ObjectWriter, PutOutcome, Sink};
use crate::domain::Format;
use crate::settings::S3Target;

#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
    uploads_in_flight: usize,
}

impl S3Sink {
    pub async fn connect(target: &S3Target, uploads_in_flight: usize) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &target.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(keys) = &target.credentials {
            loader = loader.credentials_provider(Credentials::new(
                keys.access_key_id.expose_secret(),
                keys.secret_access_key.expose_secret(),
                keys.session_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                None,
                "audit-exporter-config",
            ));
        }
        let shared = loader.load().await;
        let mut config =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(target.force_path_style);
        if shared.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &target.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            bucket: target.bucket.clone(),
            uploads_in_flight,
        }
    }
}

#[async_trait]
impl Sink for S3Sink {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn create(&self, key: &str, format: Format) -> anyhow::Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(S3Writer {
            sink: self.clone(),
            key: key.to_owned(),
            format,
            first: None,
            multipart: None,
        }))
    }
}

struct S3Writer {
    sink: S3Sink,
    key: String,
    format: Format,
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
    fn location(&self) -> String {
        self.sink.location(&self.key)
    }

    async fn start_multipart(&self) -> anyhow::Result<Multipart> {
        let created = self
            .sink
            .client
            .create_multipart_upload()
            .bucket(&self.sink.bucket)
            .key(&self.key)
            .content_type(self.format.content_type())
            .set_content_encoding(self.format.content_encoding().map(str::to_owned))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", &self.location(), e))?;
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
        let (client, bucket, key) = (
            self.sink.client.clone(),
            self.sink.bucket.clone(),
            self.key.clone(),
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
                .checksum_sha256(&checksum)
                .body(ByteStream::from(part))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| s3_error("UploadPart", &location, e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .checksum_sha256(checksum)
                .build())
        });
        Ok(())
    }

    async fn put_whole(&self, body: Bytes) -> anyhow::Result<PutOutcome> {
        let result = self
            .sink
            .client
            .put_object()
            .bucket(&self.sink.bucket)
            .key(&self.key)
            .if_none_match("*")
            .content_type(self.format.content_type())
            .set_content_encoding(self.format.content_encoding().map(str::to_owned))
            .checksum_sha256(sha256_base64(&body))
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if is_precondition_failed(&e) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(s3_error("PutObject", &self.location(), e)),
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
            Err(e) => Err(s3_error("CompleteMultipartUpload", &self.location(), e)),
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
            tracing::warn!(
                key = %self.location(),
                error = %s3_error("AbortMultipartUpload", &self.location(), e),
                "Could not abort a multipart upload; a lifecycle rule with AbortIncompleteMultipartUpload removes its parts."
            );
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

fn is_precondition_failed<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
        || e.code() == Some("PreconditionFailed")
}

/// One line naming the operation, the object, S3's error code and message, and the request id.
fn s3_error<E>(
    operation: &str,
    location: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail: Box<dyn Display> = match (e.code(), e.message()) {
        (Some(code), Some(message)) => Box::new(format!("{code}: {message}")),
        (Some(code), None) => Box::new(code.to_owned()),
        _ => Box::new(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()),
    };
    let status = e
        .raw_response()
        .map(|r| format!(" (HTTP {})", r.status().as_u16()))
        .unwrap_or_default();
    let request_id = e
        .request_id()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default();
    anyhow!("S3 {operation} to {location}: {detail}{status}{request_id}")
}
