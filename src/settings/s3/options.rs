//! The options every object of an S3 destination is written with: encryption, ACL, storage
//! class, tags and Object Lock.

use std::collections::BTreeMap;

use super::super::raw::RawDestination;
use super::*;

const SSE_ALLOWED: &str = "AES256 | aws:kms | aws:kms:dsse";

pub(in crate::settings) fn parse_object_options(
    raw: &RawDestination,
) -> Result<ObjectOptions, FieldError> {
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
