//! An S3 bucket, or any S3-compatible store. Objects are streamed: one PutObject when they fit
//! in a part, else a multipart upload with a bounded number of parts in flight. Every request
//! carries a SHA-256 checksum and every write `If-None-Match: *`, so an object is never replaced
//! and a retry of a delivered run learns so from a 412 without reading anything back: writing
//! needs `s3:PutObject` alone. The checksum header is signed, so the body is not hashed a
//! second time for the signature (`UNSIGNED-PAYLOAD`): S3 still refuses a body that does not
//! match the checksum.

mod credentials;
mod error;
mod hints;
mod read;
mod request;
mod writer;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::default_provider::region::DefaultRegionChain;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;

pub use error::RemoteError;
pub use hints::hint;
pub use read::S3Read;
use writer::S3Writer;

use super::{BucketReader, ObjectWriter, Sink};
use crate::domain::Format;
use crate::settings::{ObjectOptions, RetrySettings, S3Target};

/// How long before a role session expires a new one is fetched.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// How long opening a connection to S3 or STS may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long fetching a session may take, STS retries included.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    credentials: SharedCredentialsProvider,
    bucket: String,
    /// The store's endpoint, named when it gives no answer.
    endpoint: String,
    options: ObjectOptions,
    uploads_in_flight: usize,
}

impl S3Sink {
    pub async fn connect(
        target: &S3Target,
        uploads_in_flight: usize,
        retry: RetrySettings,
    ) -> Self {
        let region = match &target.region {
            Some(region) => Region::new(region.clone()),
            None => DefaultRegionChain::builder()
                .build()
                .region()
                .await
                .unwrap_or_else(|| Region::new("us-east-1")),
        };
        let credentials = credentials::provider(&target.credentials, &region, retry).await;
        let endpoint = target
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials.clone())
            .identity_cache(
                IdentityCache::lazy()
                    .buffer_time(REFRESH_BEFORE_EXPIRY)
                    .load_timeout(CREDENTIALS_TIMEOUT)
                    .build(),
            )
            .retry_config(retry_config(retry))
            .timeout_config(timeout_config(retry))
            .force_path_style(target.force_path_style);
        if let Some(endpoint) = &target.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            credentials,
            bucket: target.bucket.clone(),
            endpoint,
            options: target.object.clone(),
            uploads_in_flight,
        }
    }
}

/// A connection must open within seconds; a stalled attempt is abandoned and retried.
fn timeout_config(retry: RetrySettings) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(retry.attempt_timeout)
        .build()
}

/// Standard retries: throttling, 5xx and transient network errors, with exponential backoff
/// and full jitter; other errors are returned at once.
fn retry_config(retry: RetrySettings) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(retry.max_attempts)
        .with_initial_backoff(retry.initial_backoff)
}

#[async_trait]
impl Sink for S3Sink {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn reader(&self) -> BucketReader {
        BucketReader::S3(Box::new(S3Read::from_sink(self)))
    }

    async fn check_access(&self) -> anyhow::Result<()> {
        self.credentials.provide_credentials().await?;
        Ok(())
    }

    async fn create(&self, key: &str, format: Format) -> anyhow::Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(S3Writer::new(self.clone(), key, format)))
    }
}
