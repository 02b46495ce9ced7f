//! An S3 destination: the bucket and how to reach it, where its credentials come from, and the
//! options every object is written with. The enums are the project's own; the sink converts
//! them into the SDK's types, so SDK types never reach the config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;

#[derive(Debug, Clone)]
pub struct S3Target {
    pub bucket: String,
    /// The key prefix, without leading or trailing slash; may be empty.
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub credentials: Credentials,
    pub object: ObjectOptions,
}

/// Where the credentials that sign the writes come from.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub source: CredentialSource,
    /// A role assumed with the source's credentials, whose session then signs every write.
    pub assume_role: Option<AssumeRole>,
    /// The STS endpoint for AssumeRole and AssumeRoleWithWebIdentity (default: AWS's).
    pub sts_endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// The AWS default chain: environment, shared config and credentials files,
    /// AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, ECS and EC2 instance roles.
    DefaultChain,
    /// Keys from the config, never printed.
    Static(StaticKeys),
    /// An OIDC token read from a file, exchanged for a role session (AssumeRoleWithWebIdentity).
    WebIdentity(WebIdentity),
}

#[derive(Debug, Clone)]
pub struct StaticKeys {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct WebIdentity {
    pub token_file: PathBuf,
    pub role_arn: String,
    pub session_name: String,
    pub duration_secs: u32,
}

#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
    pub duration_secs: u32,
}

/// What every object of the destination is written with, besides its checksum and its
/// Content-Type and Content-Encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectOptions {
    pub server_side_encryption: Option<ServerSideEncryption>,
    pub acl: Option<CannedAcl>,
    pub storage_class: Option<StorageClass>,
    /// Sent as the `x-amz-tagging` header.
    pub tags: BTreeMap<String, String>,
    pub object_lock: Option<ObjectLock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3.
    Aes256,
    /// SSE-KMS, with the bucket's default key unless one is named.
    Kms { key_id: Option<String> },
    /// Dual-layer SSE-KMS.
    KmsDsse { key_id: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    /// The object is locked until this many days after it was written.
    pub retain_days: u32,
}

/// Declares a config enum with its spellings, so parsing, printing and the list of allowed
/// values in an error message come from one table.
macro_rules! config_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const VALUES: &'static [&'static str] = &[$($text),+];

            /// The allowed values, for error messages.
            pub fn allowed() -> String {
                Self::VALUES.join(" | ")
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

config_enum!(
    /// A canned ACL.
    CannedAcl {
        Private = "private",
        PublicRead = "public-read",
        PublicReadWrite = "public-read-write",
        AuthenticatedRead = "authenticated-read",
        AwsExecRead = "aws-exec-read",
        BucketOwnerRead = "bucket-owner-read",
        BucketOwnerFullControl = "bucket-owner-full-control",
    }
);

config_enum!(StorageClass {
    Standard = "STANDARD",
    StandardIa = "STANDARD_IA",
    OnezoneIa = "ONEZONE_IA",
    IntelligentTiering = "INTELLIGENT_TIERING",
    GlacierIr = "GLACIER_IR",
    Glacier = "GLACIER",
    DeepArchive = "DEEP_ARCHIVE",
    ReducedRedundancy = "REDUCED_REDUNDANCY",
});

config_enum!(ObjectLockMode {
    Governance = "GOVERNANCE",
    Compliance = "COMPLIANCE",
});

/// The session name when none is configured, as CloudTrail then shows it.
pub const DEFAULT_SESSION_NAME: &str = "audit-exporter";
/// The session length when none is configured, in seconds.
pub const DEFAULT_SESSION_SECS: i64 = 3600;

/// A field's name and what is wrong with its value.
type FieldError = (&'static str, String);

mod credentials;
mod options;

pub(super) use credentials::{check_endpoint, parse_credentials};
pub(super) use options::parse_object_options;

impl ServerSideEncryption {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Aes256 => "AES256",
            Self::Kms { .. } => "aws:kms",
            Self::KmsDsse { .. } => "aws:kms:dsse",
        }
    }

    pub fn kms_key_id(&self) -> Option<&str> {
        match self {
            Self::Aes256 => None,
            Self::Kms { key_id } | Self::KmsDsse { key_id } => key_id.as_deref(),
        }
    }
}
