//! The pure part of a write: the config's object options in the SDK's types, and the headers
//! derived from them.

use std::collections::BTreeMap;

use aws_sdk_s3::types;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::settings::{
    CannedAcl, ObjectLockMode, ObjectOptions, ServerSideEncryption, StorageClass,
};

/// The object options of one write, ready for PutObject and CreateMultipartUpload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOptions {
    pub server_side_encryption: Option<types::ServerSideEncryption>,
    pub kms_key_id: Option<String>,
    pub acl: Option<types::ObjectCannedAcl>,
    pub storage_class: Option<types::StorageClass>,
    /// The `x-amz-tagging` header: URL-encoded `key=value` pairs.
    pub tagging: Option<String>,
    pub object_lock_mode: Option<types::ObjectLockMode>,
    pub object_lock_retain_until: Option<aws_smithy_types::DateTime>,
}

impl WriteOptions {
    /// The options for an object written at `now`: an Object Lock retention counts from then.
    pub fn new(options: &ObjectOptions, now: DateTime<Utc>) -> Self {
        let lock = options.object_lock.map(|lock| {
            let until = now + chrono::Duration::days(i64::from(lock.retain_days));
            (
                types::ObjectLockMode::from(lock.mode),
                aws_smithy_types::DateTime::from_secs(until.timestamp()),
            )
        });
        Self {
            server_side_encryption: options
                .server_side_encryption
                .as_ref()
                .map(types::ServerSideEncryption::from),
            kms_key_id: options
                .server_side_encryption
                .as_ref()
                .and_then(|sse| sse.kms_key_id().map(str::to_owned)),
            acl: options.acl.map(types::ObjectCannedAcl::from),
            storage_class: options.storage_class.map(types::StorageClass::from),
            tagging: tagging(&options.tags),
            object_lock_mode: lock.as_ref().map(|(mode, _)| mode.clone()),
            object_lock_retain_until: lock.map(|(_, until)| until),
        }
    }
}

/// Everything but unreserved characters is escaped, so keys and values with `=`, `+`, `/` or
/// spaces survive S3's query-string parsing.
const TAG_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn tagging(tags: &BTreeMap<String, String>) -> Option<String> {
    if tags.is_empty() {
        return None;
    }
    let pairs: Vec<String> = tags
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, TAG_ESCAPE),
                utf8_percent_encode(v, TAG_ESCAPE)
            )
        })
        .collect();
    Some(pairs.join("&"))
}

impl From<&ServerSideEncryption> for types::ServerSideEncryption {
    fn from(sse: &ServerSideEncryption) -> Self {
        match sse {
            ServerSideEncryption::Aes256 => Self::Aes256,
            ServerSideEncryption::Kms { .. } => Self::AwsKms,
            ServerSideEncryption::KmsDsse { .. } => Self::AwsKmsDsse,
        }
    }
}

impl From<CannedAcl> for types::ObjectCannedAcl {
    fn from(acl: CannedAcl) -> Self {
        match acl {
            CannedAcl::Private => Self::Private,
            CannedAcl::PublicRead => Self::PublicRead,
            CannedAcl::PublicReadWrite => Self::PublicReadWrite,
            CannedAcl::AuthenticatedRead => Self::AuthenticatedRead,
            CannedAcl::AwsExecRead => Self::AwsExecRead,
            CannedAcl::BucketOwnerRead => Self::BucketOwnerRead,
            CannedAcl::BucketOwnerFullControl => Self::BucketOwnerFullControl,
        }
    }
}

impl From<StorageClass> for types::StorageClass {
    fn from(class: StorageClass) -> Self {
        match class {
            StorageClass::Standard => Self::Standard,
            StorageClass::StandardIa => Self::StandardIa,
            StorageClass::OnezoneIa => Self::OnezoneIa,
            StorageClass::IntelligentTiering => Self::IntelligentTiering,
            StorageClass::GlacierIr => Self::GlacierIr,
            StorageClass::Glacier => Self::Glacier,
            StorageClass::DeepArchive => Self::DeepArchive,
            StorageClass::ReducedRedundancy => Self::ReducedRedundancy,
        }
    }
}

impl From<ObjectLockMode> for types::ObjectLockMode {
    fn from(mode: ObjectLockMode) -> Self {
        match mode {
            ObjectLockMode::Governance => Self::Governance,
            ObjectLockMode::Compliance => Self::Compliance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ObjectLock;
    use chrono::TimeZone;

    #[test]
    fn every_option_in_the_sdks_spelling() {
        let options = ObjectOptions {
            server_side_encryption: Some(ServerSideEncryption::Kms {
                key_id: Some("arn:aws:kms:eu-west-1:123456789012:key/k1".into()),
            }),
            acl: Some(CannedAcl::BucketOwnerFullControl),
            storage_class: Some(StorageClass::StandardIa),
            tags: BTreeMap::from([
                ("team".into(), "audit/compliance team".into()),
                ("env".into(), "prod=1+x".into()),
            ]),
            object_lock: Some(ObjectLock {
                mode: ObjectLockMode::Compliance,
                retain_days: 365,
            }),
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let write = WriteOptions::new(&options, now);
        assert_eq!(write.server_side_encryption.unwrap().as_str(), "aws:kms");
        assert_eq!(
            write.kms_key_id.as_deref(),
            Some("arn:aws:kms:eu-west-1:123456789012:key/k1")
        );
        assert_eq!(write.acl.unwrap().as_str(), "bucket-owner-full-control");
        assert_eq!(write.storage_class.unwrap().as_str(), "STANDARD_IA");
        assert_eq!(
            write.tagging.as_deref(),
            Some("env=prod%3D1%2Bx&team=audit%2Fcompliance%20team")
        );
        assert_eq!(write.object_lock_mode.unwrap().as_str(), "COMPLIANCE");
        let until = Utc.with_ymd_and_hms(2027, 11, 21, 10, 0, 0).unwrap();
        assert_eq!(
            write.object_lock_retain_until.unwrap().secs(),
            until.timestamp()
        );
    }

    #[test]
    fn no_options_send_no_headers() {
        let write = WriteOptions::new(&ObjectOptions::default(), Utc::now());
        assert_eq!(write, WriteOptions::default());
    }

    #[test]
    fn sse_spellings() {
        let spelled = |sse: ServerSideEncryption| types::ServerSideEncryption::from(&sse);
        assert_eq!(spelled(ServerSideEncryption::Aes256).as_str(), "AES256");
        assert_eq!(
            spelled(ServerSideEncryption::KmsDsse { key_id: None }).as_str(),
            "aws:kms:dsse"
        );
    }
}
