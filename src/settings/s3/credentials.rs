//! Where an S3 destination's credentials come from: static keys, a web identity, an assumed
//! role; and its endpoint.

use super::super::raw::RawDestination;
use super::*;

pub(in crate::settings) fn parse_credentials(
    raw: &RawDestination,
) -> Result<Credentials, FieldError> {
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

pub(in crate::settings) fn check_endpoint(endpoint: &str) -> Result<(), String> {
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
