//! What to check when a write to a customer's bucket fails: the permission or trust-policy
//! condition that the error most likely means is missing.

use super::RemoteError;
use crate::settings::{CredentialSource, S3Target, ServerSideEncryption};

/// A sentence naming the likely cause of `error`, if it is one we know.
pub fn hint(error: &RemoteError, target: &S3Target) -> Option<String> {
    match error.service {
        "STS" => sts_hint(error, target),
        _ => s3_hint(error, target),
    }
}

fn sts_hint(error: &RemoteError, target: &S3Target) -> Option<String> {
    let code = error.code.as_deref().unwrap_or_default();
    let denied = code == "AccessDenied" || (code.is_empty() && error.status == Some(403));
    let role = &error.subject;
    match (error.operation, code) {
        ("AssumeRole", _) if denied => {
            let external_id = target
                .credentials
                .assume_role
                .as_ref()
                .and_then(|r| r.external_id.as_deref())
                .map(|id| {
                    format!(
                        " with the condition {{\"StringEquals\": {{\"sts:ExternalId\": \"{id}\"}}}}"
                    )
                })
                .unwrap_or_default();
            Some(format!(
                "Check that the role {role} exists and that its trust policy allows sts:AssumeRole \
                 for the identity audit-exporter runs as{external_id}; a wrong external_id is \
                 refused the same way. That identity also needs sts:AssumeRole on the role in its \
                 own policy."
            ))
        }
        ("AssumeRoleWithWebIdentity", "InvalidIdentityToken" | "ExpiredTokenException") => Some(
            "The token in web_identity_token_file was refused: check that it is current and that \
             the role's OIDC provider is its issuer."
                .into(),
        ),
        ("AssumeRoleWithWebIdentity", _) if denied => Some(format!(
            "Check that the trust policy of {role} allows sts:AssumeRoleWithWebIdentity for the \
             OIDC provider that issued the token, with conditions matching its aud and sub claims."
        )),
        (_, "InvalidClientTokenId" | "SignatureDoesNotMatch") => Some(
            "The credentials that call STS are not valid: check the static keys, or the \
             identity of the default chain."
                .into(),
        ),
        (_, "ValidationError") => Some(
            "Check session_duration_secs against the role's maximum session duration (a role \
             assumed from another role's session is limited to 3600 seconds)."
                .into(),
        ),
        (_, "RegionDisabledException") => Some(
            "STS is not activated in this region for the account: activate it, or set \
             sts_endpoint to a region where it is."
                .into(),
        ),
        _ => no_answer(error, target),
    }
}

fn s3_hint(error: &RemoteError, target: &S3Target) -> Option<String> {
    let code = error.code.as_deref().unwrap_or_default();
    let message = error.message.as_deref().unwrap_or_default();
    if code.starts_with("KMS.") || (code == "AccessDenied" && message.contains("KMS")) {
        return Some(format!(
            "The KMS key refused the write: check kms_key_id, and that the key policy lets {} \
             use it (kms:GenerateDataKey, and kms:Decrypt for multipart uploads).",
            writer(target)
        ));
    }
    match code {
        "AccessDenied" | "AllAccessDisabled" => Some(access_denied(target)),
        "NoSuchBucket" => Some(format!(
            "The bucket {} does not exist at this endpoint: check url, region and endpoint.",
            target.bucket
        )),
        "InvalidAccessKeyId" => Some(
            "The store does not know the access key ID: check access_key_id, or where the \
             credentials come from."
                .into(),
        ),
        "SignatureDoesNotMatch" => Some(
            "The secret key does not belong to the access key ID: check secret_access_key.".into(),
        ),
        "ExpiredToken" | "TokenRefreshRequired" => Some(
            "The session token has expired: static session tokens must be renewed by hand; \
             prefer role_arn, whose sessions are renewed before they expire."
                .into(),
        ),
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => {
            Some("The bucket is in another region: set region to the bucket's region.".into())
        }
        "InvalidStorageClass" => Some(
            "The store does not accept this storage_class: remove it or choose another.".into(),
        ),
        "InvalidRequest" | "InvalidArgument" if target.object.object_lock.is_some() => Some(
            "Object Lock needs a bucket created with Object Lock enabled (and versioning): \
             check the bucket, or remove object_lock_mode."
                .into(),
        ),
        _ => no_answer(error, target),
    }
}

fn access_denied(target: &S3Target) -> String {
    let resource = if target.prefix.is_empty() {
        format!("arn:aws:s3:::{}/*", target.bucket)
    } else {
        format!("arn:aws:s3:::{}/{}/*", target.bucket, target.prefix)
    };
    let options = &target.object;
    let mut also = Vec::new();
    if options.acl.is_some() {
        also.push("s3:PutObjectAcl (for acl)");
    }
    if !options.tags.is_empty() {
        also.push("s3:PutObjectTagging (for tags)");
    }
    if options.object_lock.is_some() {
        also.push("s3:PutObjectRetention (for Object Lock)");
    }
    if options
        .server_side_encryption
        .as_ref()
        .is_some_and(|sse| !matches!(sse, ServerSideEncryption::Aes256))
    {
        also.push("kms:GenerateDataKey on the KMS key, allowed by its key policy");
    }
    let also = if also.is_empty() {
        String::new()
    } else {
        format!(", and {}", also.join(", "))
    };
    format!(
        "{} needs s3:PutObject on {resource}{also}; also check that the bucket policy does not \
         deny it.",
        capitalised(&writer(target))
    )
}

/// Who signs the writes, as a hint names it.
fn writer(target: &S3Target) -> String {
    match (&target.credentials.assume_role, &target.credentials.source) {
        (Some(role), _) => format!("the role {}", role.role_arn),
        (None, CredentialSource::WebIdentity(web)) => format!("the role {}", web.role_arn),
        (None, CredentialSource::Static(_)) => "the identity of access_key_id".into(),
        (None, CredentialSource::DefaultChain) => {
            "the identity of the default credential chain".into()
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn no_answer(error: &RemoteError, target: &S3Target) -> Option<String> {
    if error.code.is_some() || error.status.is_some() {
        return None;
    }
    let endpoint = match (
        error.service,
        &target.endpoint,
        &target.credentials.sts_endpoint,
    ) {
        ("STS", _, Some(sts)) => sts.clone(),
        ("STS", _, None) => "STS".into(),
        (_, Some(endpoint), _) => endpoint.clone(),
        (_, None, _) => "S3".into(),
    };
    Some(format!(
        "No answer from {endpoint}: check the endpoint, the network path and any proxy."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Settings, Target};

    fn target(extra: &[(&str, &str)]) -> S3Target {
        let mut env = vec![(
            "AUDIT_EXPORTER__DESTINATIONS__A__URL".to_owned(),
            "s3://bucket-a/logs".to_owned(),
        )];
        env.extend(extra.iter().map(|(k, v)| {
            (
                format!("AUDIT_EXPORTER__DESTINATIONS__A__{k}"),
                (*v).to_owned(),
            )
        }));
        match Settings::load_with_env(None, env)
            .unwrap()
            .destinations
            .remove(0)
            .target
        {
            Target::S3(s3) => *s3,
            Target::File(_) => unreachable!(),
        }
    }

    fn error(service: &'static str, operation: &'static str, code: Option<&str>) -> RemoteError {
        RemoteError {
            service,
            operation,
            subject: "arn:aws:iam::123456789012:role/writer".into(),
            code: code.map(Into::into),
            message: Some("denied".into()),
            status: Some(403),
            request_id: None,
            detail: None,
        }
    }

    const ROLE: (&str, &str) = ("ROLE_ARN", "arn:aws:iam::123456789012:role/writer");

    #[test]
    fn a_refused_assume_role_names_the_trust_policy_and_external_id() {
        let target = target(&[ROLE, ("EXTERNAL_ID", "ext-1")]);
        let hint = hint(&error("STS", "AssumeRole", Some("AccessDenied")), &target).unwrap();
        assert!(
            hint.contains("arn:aws:iam::123456789012:role/writer exists"),
            "{hint}"
        );
        assert!(hint.contains(r#""sts:ExternalId": "ext-1""#), "{hint}");
        // Some servers give no code; a 403 is still a refusal.
        assert!(hint.contains("trust policy"));
        assert!(
            super::hint(&error("STS", "AssumeRole", None), &target)
                .unwrap()
                .contains("trust policy")
        );
    }

    #[test]
    fn a_refused_write_names_every_permission_the_options_need() {
        let target = target(&[
            ROLE,
            ("SERVER_SIDE_ENCRYPTION", "aws:kms"),
            ("ACL", "bucket-owner-full-control"),
            ("TAGS__TEAM", "audit"),
            ("OBJECT_LOCK_MODE", "GOVERNANCE"),
            ("OBJECT_LOCK_RETAIN_DAYS", "7"),
        ]);
        let hint = hint(&error("S3", "PutObject", Some("AccessDenied")), &target).unwrap();
        assert!(
            hint.starts_with(
                "The role arn:aws:iam::123456789012:role/writer needs s3:PutObject on arn:aws:s3:::bucket-a/logs/*"
            ),
            "{hint}"
        );
        for needed in [
            "s3:PutObjectAcl",
            "s3:PutObjectTagging",
            "s3:PutObjectRetention",
            "kms:GenerateDataKey",
        ] {
            assert!(hint.contains(needed), "{needed}: {hint}");
        }
        let plain = super::hint(
            &error("S3", "PutObject", Some("AccessDenied")),
            &self::target(&[]),
        )
        .unwrap();
        assert_eq!(
            plain,
            "The identity of the default credential chain needs s3:PutObject on arn:aws:s3:::bucket-a/logs/*; also check that the bucket policy does not deny it."
        );
    }

    #[test]
    fn other_causes() {
        let target = target(&[("ENDPOINT", "http://127.0.0.1:9000")]);
        let mut kms = error("S3", "PutObject", Some("AccessDenied"));
        kms.message = Some("User is not authorized to perform: kms:GenerateDataKey (KMS)".into());
        assert!(
            hint(&kms, &target)
                .unwrap()
                .contains("The KMS key refused the write")
        );
        let bucket = hint(&error("S3", "PutObject", Some("NoSuchBucket")), &target).unwrap();
        assert!(bucket.contains("bucket-a does not exist"), "{bucket}");
        let mut silent = error("S3", "PutObject", None);
        (silent.status, silent.detail) = (None, Some("connection refused".into()));
        assert_eq!(
            hint(&silent, &target).unwrap(),
            "No answer from http://127.0.0.1:9000: check the endpoint, the network path and any proxy."
        );
        assert_eq!(
            hint(&error("S3", "PutObject", Some("SlowDown")), &target),
            None
        );
    }
}
