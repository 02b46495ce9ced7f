//! Reading a bucket back, for `verify-chain`: ListObjectsV2 and GetObject only, beside the
//! write path (which never reads).

use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::S3Sink;
use super::error::s3_error;
use crate::sink::reader::Listed;

/// A bucket, read through a client of its own.
#[derive(Debug, Clone)]
pub struct S3Read {
    client: Client,
    bucket: String,
    endpoint: String,
}

impl S3Read {
    /// Reads with the destination's own client (its credentials, endpoint and retries).
    pub fn from_sink(sink: &S3Sink) -> Self {
        Self {
            client: sink.client.clone(),
            bucket: sink.bucket.clone(),
            endpoint: sink.endpoint.clone(),
        }
    }

    /// Reads with the AWS default credential chain; with `endpoint`, path-style.
    pub async fn offline(bucket: &str, endpoint: Option<&str>, region: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_sdk_s3::config::Region::new(region.to_owned()));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            config = config.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        let endpoint = endpoint.map(str::to_owned).unwrap_or_else(|| {
            format!(
                "https://s3.{}.amazonaws.com",
                shared.region().map_or("us-east-1", |r| r.as_ref())
            )
        });
        Self {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            endpoint,
        }
    }

    pub fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let mut listed = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                s3_error(&self.endpoint, "ListObjectsV2", &self.location(prefix), &e)
            })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                listed.push(Listed {
                    key: key.to_owned(),
                    size: object.size().unwrap_or_default().max(0) as u64,
                    modified: object
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
        }
        Ok(listed)
    }

    /// The object's size and SHA-256, streamed; `None` when there is none at `key`.
    pub async fn hash(&self, key: &str) -> anyhow::Result<Option<(u64, String)>> {
        let mut size = 0;
        let mut hasher = Sha256::new();
        let found = self
            .each_chunk(key, |chunk| {
                size += chunk.len() as u64;
                hasher.update(chunk);
            })
            .await?;
        Ok(found.then(|| (size, hex::encode(hasher.finalize()))))
    }

    /// The whole object (a digest or a signature: small); `None` when there is none.
    pub async fn read(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut bytes = Vec::new();
        let found = self
            .each_chunk(key, |chunk| bytes.extend_from_slice(chunk))
            .await?;
        Ok(found.then_some(bytes))
    }

    async fn each_chunk(&self, key: &str, mut f: impl FnMut(&[u8])) -> anyhow::Result<bool> {
        let location = self.location(key);
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let mut body = match response {
            Ok(response) => response.body,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(false);
            }
            Err(e) => return Err(s3_error(&self.endpoint, "GetObject", &location, &e)),
        };
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| anyhow::anyhow!("S3 GetObject of {location}: the body broke off: {e}"))?
        {
            f(&chunk);
        }
        Ok(true)
    }
}
