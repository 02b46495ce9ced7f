//! An S3 destination: the bucket and how to reach it, where its credentials come from, and the
//! options every object is written with. The enums are the project's own; the sink converts
//! them into the SDK's types, so SDK types never reach the config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;

use super::raw::RawDestination;

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

const SSE_ALLOWED: &str = "AES256 | aws:kms | aws:kms:dsse";

type FieldError = (&'static str, String);

pub(super) fn parse_credentials(raw: &RawDestination) -> Result<Credentials, FieldError> {
    let session_name = raw
        .session_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned());
    if !(2..=64).contains(&session_name.len())
        || !session_name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b'-')
        })
    {
        return Err((
            "session_name",
            format!(
                "{session_name:?} is not a session name; allowed: 2-64 letters, digits and _+=,.@-"
            ),
        ));
    }
    let duration = match &raw.session_duration_secs {
        Some(secs) => secs.get().map_err(|e| {
            (
                "session_duration_secs",
                format!("{e}; allowed: 900..=43200"),
            )
        })?,
        None => DEFAULT_SESSION_SECS,
    };
    if !(900..=43_200).contains(&duration) {
        return Err((
            "session_duration_secs",
            format!("{duration} is out of range; allowed: 900..=43200"),
        ));
    }
    let duration_secs = duration as u32;

    if let Some(arn) = &raw.role_arn {
        check_role_arn(arn).map_err(|msg| ("role_arn", msg))?;
    }
    if let Some(arn) = &raw.web_identity_role_arn {
        check_role_arn(arn).map_err(|msg| ("web_identity_role_arn", msg))?;
    }
    if let Some(id) = &raw.external_id {
        check_external_id(id)?;
    }
    if let Some(endpoint) = &raw.sts_endpoint {
        check_endpoint(endpoint).map_err(|msg| ("sts_endpoint", msg))?;
    }
    if raw.external_id.is_some() && raw.role_arn.is_none() {
        return Err(("external_id", "applies only with role_arn".into()));
    }
    let needs_sts = [
        ("session_name", raw.session_name.is_some()),
        ("session_duration_secs", raw.session_duration_secs.is_some()),
        ("sts_endpoint", raw.sts_endpoint.is_some()),
    ];
    if raw.role_arn.is_none()
        && raw.web_identity_token_file.is_none()
        && let Some((field, _)) = needs_sts.iter().find(|(_, set)| *set)
    {
        return Err((
            field,
            "applies only with role_arn or web_identity_token_file".into(),
        ));
    }

    let keys = parse_static_keys(raw)?;
    let source = match (&raw.web_identity_token_file, keys) {
        (Some(_), Some(_)) => {
            return Err((
                "web_identity_token_file",
                "cannot be combined with access_key_id; choose one credential source".into(),
            ));
        }
        (Some(file), None) => {
            if file.is_empty() {
                return Err(("web_identity_token_file", "is empty".into()));
            }
            // Without web_identity_role_arn the token is exchanged for role_arn itself.
            let role_arn = match (&raw.web_identity_role_arn, &raw.role_arn) {
                (Some(arn), _) | (None, Some(arn)) => arn.clone(),
                (None, None) => {
                    return Err((
                        "role_arn",
                        "missing; web_identity_token_file needs the role to exchange the token for"
                            .into(),
                    ));
                }
            };
            CredentialSource::WebIdentity(WebIdentity {
                token_file: PathBuf::from(file),
                role_arn,
                session_name: session_name.clone(),
                duration_secs,
            })
        }
        (None, keys) => {
            if raw.web_identity_role_arn.is_some() {
                return Err((
                    "web_identity_role_arn",
                    "applies only with web_identity_token_file".into(),
                ));
            }
            keys.map_or(CredentialSource::DefaultChain, CredentialSource::Static)
        }
    };
    let direct_web_identity =
        raw.web_identity_token_file.is_some() && raw.web_identity_role_arn.is_none();
    let assume_role = match &raw.role_arn {
        Some(arn) if !direct_web_identity => Some(AssumeRole {
            role_arn: arn.clone(),
            external_id: raw.external_id.clone(),
            session_name,
            duration_secs,
        }),
        _ => None,
    };
    if direct_web_identity && raw.external_id.is_some() {
        return Err((
            "external_id",
            "applies only to AssumeRole; set web_identity_role_arn to assume role_arn from the web identity session".into(),
        ));
    }
    Ok(Credentials {
        source,
        assume_role,
        sts_endpoint: raw.sts_endpoint.clone(),
    })
}

fn parse_static_keys(raw: &RawDestination) -> Result<Option<StaticKeys>, FieldError> {
    match (&raw.access_key_id, &raw.secret_access_key) {
        (Some(id), Some(secret)) => Ok(Some(StaticKeys {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: raw.session_token.clone(),
        })),
        (None, None) if raw.session_token.is_some() => Err((
            "session_token",
            "needs access_key_id and secret_access_key".into(),
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err((
            "secret_access_key",
            "missing; access_key_id needs it".into(),
        )),
        (None, Some(_)) => Err((
            "access_key_id",
            "missing; secret_access_key needs it".into(),
        )),
    }
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
fn check_role_arn(arn: &str) -> Result<(), String> {
    let allowed = "allowed: an IAM role ARN, arn:aws:iam::123456789012:role/NAME";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource] => {
            partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|name| {
                    !name.is_empty()
                        && !name.ends_with('/')
                        && name.len() <= 512
                        && name.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(
                                    b,
                                    b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b'-' | b'/'
                                )
                        })
                })
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("{arn:?} is not an IAM role ARN; {allowed}"))
    }
}

fn check_external_id(id: &str) -> Result<(), FieldError> {
    if id.contains('*') {
        return Err((
            "external_id",
            "contains '*'; an external ID must be one exact value that the role's trust policy \
             requires, never a wildcard (a wildcard lets any caller assume the role: the \
             confused-deputy problem)"
                .into(),
        ));
    }
    let valid = (2..=1224).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'-'
                )
        });
    if valid {
        Ok(())
    } else {
        Err((
            "external_id",
            format!("{id:?} is not an external ID; allowed: 2-1224 letters, digits and _+=,.@:/-"),
        ))
    }
}

pub(super) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let ok = url::Url::parse(endpoint)
        .is_ok_and(|e| matches!(e.scheme(), "http" | "https") && e.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{endpoint:?} is not an endpoint; allowed: http(s)://host[:port]"
        ))
    }
}

pub(super) fn parse_object_options(raw: &RawDestination) -> Result<ObjectOptions, FieldError> {
    let key_id = raw.kms_key_id.clone();
    if key_id.as_deref().is_some_and(str::is_empty) {
        return Err((
            "kms_key_id",
            "is empty; remove it to use the bucket's default key".into(),
        ));
    }
    let server_side_encryption = match raw.server_side_encryption.as_deref() {
        None if key_id.is_some() => {
            return Err((
                "kms_key_id",
                "applies only with server_side_encryption = \"aws:kms\" or \"aws:kms:dsse\"".into(),
            ));
        }
        None => None,
        Some("AES256") if key_id.is_some() => {
            return Err((
                "kms_key_id",
                "cannot be used with server_side_encryption = \"AES256\" (SSE-S3 uses S3's own keys); allowed with aws:kms | aws:kms:dsse".into(),
            ));
        }
        Some("AES256") => Some(ServerSideEncryption::Aes256),
        Some("aws:kms") => Some(ServerSideEncryption::Kms { key_id }),
        Some("aws:kms:dsse") => Some(ServerSideEncryption::KmsDsse { key_id }),
        Some(other) => {
            return Err((
                "server_side_encryption",
                format!("{other:?} is not allowed; allowed: {SSE_ALLOWED}"),
            ));
        }
    };
    let acl = parse_enum(&raw.acl, "acl", CannedAcl::parse, CannedAcl::allowed)?;
    let storage_class = parse_enum(
        &raw.storage_class,
        "storage_class",
        StorageClass::parse,
        StorageClass::allowed,
    )?;
    let tags = raw.tags.clone().unwrap_or_default();
    check_tags(&tags)?;
    let mode = parse_enum(
        &raw.object_lock_mode,
        "object_lock_mode",
        ObjectLockMode::parse,
        ObjectLockMode::allowed,
    )?;
    let retain_days = raw
        .object_lock_retain_days
        .as_ref()
        .map(|days| {
            days.get().map_err(|e| {
                (
                    "object_lock_retain_days",
                    format!("{e}; allowed: 1..=36500"),
                )
            })
        })
        .transpose()?;
    let object_lock = match (mode, retain_days) {
        (Some(mode), Some(days)) if (1..=36_500).contains(&days) => Some(ObjectLock {
            mode,
            retain_days: days as u32,
        }),
        (Some(_), Some(days)) => {
            return Err((
                "object_lock_retain_days",
                format!("{days} is out of range; allowed: 1..=36500"),
            ));
        }
        (Some(_), None) => {
            return Err((
                "object_lock_retain_days",
                "missing; object_lock_mode needs the days to retain each object".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "object_lock_mode",
                format!(
                    "missing; object_lock_retain_days needs a mode; allowed: {}",
                    ObjectLockMode::allowed()
                ),
            ));
        }
        (None, None) => None,
    };
    Ok(ObjectOptions {
        server_side_encryption,
        acl,
        storage_class,
        tags,
        object_lock,
    })
}

fn parse_enum<T>(
    value: &Option<String>,
    field: &'static str,
    parse: fn(&str) -> Option<T>,
    allowed: fn() -> String,
) -> Result<Option<T>, FieldError> {
    value
        .as_deref()
        .map(|text| {
            parse(text).ok_or_else(|| {
                (
                    field,
                    format!("{text:?} is not allowed; allowed: {}", allowed()),
                )
            })
        })
        .transpose()
}

/// S3's limits on object tags: at most 10, keys of 1-128 and values of 0-256 characters, of
/// letters, digits, spaces and `_ . : / = + - @`.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), FieldError> {
    let allowed = |text: &str| {
        text.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
    };
    if tags.len() > 10 {
        return Err((
            "tags",
            format!("{} tags; allowed: at most 10 per object", tags.len()),
        ));
    }
    for (key, value) in tags {
        if !(1..=128).contains(&key.chars().count()) {
            return Err((
                "tags",
                format!("tag key {key:?} is not allowed; allowed: 1-128 characters"),
            ));
        }
        if value.chars().count() > 256 {
            return Err((
                "tags",
                format!("the value of tag {key:?} is too long; allowed: up to 256 characters"),
            ));
        }
        if !allowed(key) || !allowed(value) {
            return Err((
                "tags",
                format!(
                    "tag {key:?} = {value:?} has characters S3 refuses; allowed: letters, digits, spaces and _ . : / = + - @"
                ),
            ));
        }
    }
    Ok(())
}

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
