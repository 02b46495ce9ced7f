//! `integrity public-key` and `verify-chain`.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::UsageError;
use crate::domain::{PRIVATE_KEY_ALLOWED, PUBLIC_KEY_ALLOWED, PublicKey};
use crate::export::{ChainSpan, Verification, verify_chain as verify};
use crate::settings::{Settings, SettingsError};
use crate::sink::BucketReader;
use crate::store::Database;

/// Prints the signing key's public half (PEM) and its fingerprint.
pub fn public_key(settings: &Settings, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(signing) = &settings.exporter.signing else {
        return Err(SettingsError(format!(
            "integrity.signing_key_file is not set; {PRIVATE_KEY_ALLOWED}"
        ))
        .into());
    };
    let public = signing.signer.public_key();
    write!(out, "{}", public.to_pem())?;
    writeln!(out, "SHA-256 fingerprint: {}", public.fingerprint())?;
    Ok(())
}

/// What `verify-chain` checks: a configured destination (online) or a URL (offline).
#[derive(Debug, Clone, Default)]
pub struct VerifyChainArgs {
    pub destination: Option<String>,
    pub url: Option<String>,
    pub public_keys: Vec<PathBuf>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Verifies and prints each finding and a summary line; the exit code: 0 intact, 1 not.
pub async fn verify_chain(
    settings: &Settings,
    args: &VerifyChainArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        return Err(UsageError(format!(
            "--from {from} is not before --to {to}; allowed: a span [from, to) that is not empty"
        ))
        .into());
    }
    let mut keys = read_keys(&args.public_keys)?;
    let span = ChainSpan {
        from: args.from,
        to: args.to,
    };
    let (what, verification) = match (&args.destination, &args.url) {
        (Some(name), None) => {
            let destination = settings
                .select_destinations(std::slice::from_ref(name))
                .map_err(|e| UsageError(e.0))?[0];
            if let Some(signing) = &settings.exporter.signing {
                keys.push(signing.signer.public_key().clone());
            }
            let database = Database::connect_read_only(&settings.database).await?;
            let record = database.store.chain_record(name).await;
            database.close().await;
            let record = record?;
            for pem in &record.public_keys {
                keys.push(PublicKey::from_pem(pem).map_err(anyhow::Error::msg)?);
            }
            let reader = BucketReader::for_destination(destination, &settings.exporter).await;
            let verification =
                verify(&reader, destination.prefix(), &keys, &span, Some(&record)).await?;
            (format!("destination {name}"), verification)
        }
        (None, Some(url)) => {
            let (reader, prefix) = offline_reader(url, args).await?;
            let verification = verify(&reader, &prefix, &keys, &span, None).await?;
            (url.clone(), verification)
        }
        _ => {
            return Err(UsageError(
                "give either --destination NAME or --url URL with --public-key FILE".into(),
            )
            .into());
        }
    };
    print(&what, &verification, out)?;
    Ok(if verification.findings.is_empty() {
        0
    } else {
        1
    })
}

fn read_keys(files: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    files
        .iter()
        .map(|file| {
            let error = |msg: String| {
                UsageError(format!(
                    "--public-key {}: {msg}; {PUBLIC_KEY_ALLOWED}",
                    file.display()
                ))
            };
            let pem = std::fs::read_to_string(file)
                .map_err(|e| error(format!("cannot be read ({e})")))?;
            Ok(PublicKey::from_pem(&pem).map_err(error)?)
        })
        .collect()
}

async fn offline_reader(
    url: &str,
    args: &VerifyChainArgs,
) -> anyhow::Result<(BucketReader, String)> {
    const ALLOWED: &str = "allowed: s3://bucket[/prefix] or file:///absolute/path";
    let parsed =
        url::Url::parse(url).map_err(|e| UsageError(format!("--url {url}: {e}; {ALLOWED}")))?;
    match parsed.scheme() {
        "s3" => {
            let bucket = parsed
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| UsageError(format!("--url {url}: no bucket; {ALLOWED}")))?;
            let prefix = percent_encoding::percent_decode_str(parsed.path())
                .decode_utf8()
                .map_err(|_| UsageError(format!("--url {url}: the prefix is not UTF-8")))?
                .trim_matches('/')
                .to_owned();
            let reader =
                BucketReader::offline_s3(bucket, args.endpoint.as_deref(), args.region.as_deref())
                    .await;
            Ok((reader, prefix))
        }
        "file" if args.endpoint.is_none() => {
            let path = parsed
                .to_file_path()
                .map_err(|_| UsageError(format!("--url {url}: not a local path; {ALLOWED}")))?;
            if !path.is_dir() {
                return Err(UsageError(format!("--url {url}: no such directory")).into());
            }
            Ok((BucketReader::File(path), String::new()))
        }
        "file" => Err(UsageError("--endpoint is for --url s3://… only".into()).into()),
        other => Err(UsageError(format!("--url {url}: scheme {other:?}; {ALLOWED}")).into()),
    }
}

fn print(what: &str, v: &Verification, out: &mut dyn Write) -> anyhow::Result<()> {
    for note in &v.notes {
        writeln!(out, "note: {note}")?;
    }
    for finding in &v.findings {
        writeln!(out, "FINDING: {}: {}", finding.subject, finding.problem)?;
    }
    let span = match (&v.first, &v.last) {
        (Some(first), Some(last)) => format!(", from {first} to {last}"),
        _ => String::new(),
    };
    let verdict = if v.findings.is_empty() {
        "intact".to_owned()
    } else {
        super::counted(v.findings.len() as i64, "finding")
    };
    writeln!(
        out,
        "{what}: {}, {}, {}{span}: {verdict}",
        super::counted(v.digests as i64, "digest"),
        super::counted(v.objects as i64, "object"),
        super::counted(v.events as i64, "event"),
    )?;
    Ok(())
}
