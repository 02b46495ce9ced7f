//! The digest of a run: a JSON document naming the run's objects, its window and the previous
//! digest of the chain, and its exact bytes. Pure: every value comes from the run, so every
//! attempt of a run builds the same bytes (docs/digest.md describes it field by field).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The version of the digest format this build writes and reads.
pub const DIGEST_VERSION: u32 = 1;
/// The one signature algorithm digests use.
pub const SIGNATURE_ALGORITHM: &str = "Ed25519";
/// The folder, below the destination's prefix, that digests go in.
pub const DIGEST_FOLDER: &str = "digest";
/// A digest's detached signature is at the digest's key plus this.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// Which runs a digest speaks for: a scheduled run's digest is part of the destination's
/// chain; a re-export's stands alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestKind {
    Scheduled,
    Reexport,
}

/// A digest document. Fields serialize in the order declared here; there is no map in it,
/// so its bytes depend on its values alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestDoc {
    pub version: u32,
    pub kind: DigestKind,
    pub destination: String,
    pub run_id: Uuid,
    /// When the digest was first built, RFC 3339 UTC with microseconds.
    pub created_at: String,
    pub signature_algorithm: String,
    /// SHA-256 of the signing key's public key (SubjectPublicKeyInfo DER), hex.
    pub public_key_sha256: String,
    pub window: DigestWindow,
    /// A re-export's `[from, to)` of occurred_at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<DigestRange>,
    /// The window held no event: its one object carries the heartbeat.
    pub heartbeat: bool,
    pub objects: Vec<DigestObject>,
    /// `null` for the first digest of a chain (and for a re-export's).
    pub previous: Option<PreviousDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestWindow {
    /// Transaction-id bounds `[lo, hi)`, as text.
    pub lo: String,
    pub hi: String,
    /// The end of the previous scheduled window (`null` for the first), RFC 3339.
    pub start: Option<String>,
    pub end: String,
    /// `lo` is the previous digest's `hi`. False only when the stream was reset, re-added
    /// or re-based, or runs were committed without a signing key, since the previous digest.
    pub follows_previous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestObject {
    /// The object's key in the bucket; for a directory destination, its path relative to it.
    pub key: String,
    pub bytes: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    pub events: u64,
    pub oldest_occurred_at: Option<String>,
    pub newest_occurred_at: Option<String>,
}

/// The link to the previous digest of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousDigest {
    pub key: String,
    /// SHA-256 of the previous digest's bytes, hex.
    pub sha256: String,
    /// The previous digest's signature, hex.
    pub signature: String,
}

impl DigestDoc {
    /// The exact bytes that are stored and signed: pretty-printed JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a digest always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Reads a digest's bytes; an error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let doc: Self =
            serde_json::from_slice(bytes).map_err(|e| format!("not a digest document: {e}"))?;
        if doc.version != DIGEST_VERSION {
            return Err(format!(
                "digest version {} is not supported; this build reads version {DIGEST_VERSION}",
                doc.version
            ));
        }
        if doc.signature_algorithm != SIGNATURE_ALGORITHM {
            return Err(format!(
                "signature algorithm {:?} is not supported; allowed: {SIGNATURE_ALGORITHM}",
                doc.signature_algorithm
            ));
        }
        Ok(doc)
    }

    /// The window's end as a time, when it parses.
    pub fn window_end(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.window.end)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A time as digests write it: RFC 3339 UTC with microseconds.
pub fn digest_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The key of a run's digest: `{prefix}/digest/YYYY/MM/DD/{YYYYMMDDTHHMMSSZ}_{run_id}.json`
/// for a scheduled run (so keys sort in chain order: by window end, then by the run's
/// UUIDv7), `{prefix}/digest/reexport/…` for a re-export. Outside the data's hive path.
pub fn digest_key(
    prefix: &str,
    kind: DigestKind,
    window_end: DateTime<Utc>,
    run_id: Uuid,
) -> String {
    let folder = match kind {
        DigestKind::Scheduled => "",
        DigestKind::Reexport => "reexport",
    };
    let name = format!("{}_{run_id}.json", window_end.format("%Y%m%dT%H%M%SZ"));
    let date = window_end.format("%Y/%m/%d").to_string();
    [prefix, DIGEST_FOLDER, folder, &date, &name]
        .iter()
        .flat_map(|s| s.split('/'))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// The folder (ending in `/`, or empty) below which `prefix`'s digests are.
pub fn digest_folder(prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{DIGEST_FOLDER}/")
    } else {
        format!("{prefix}/{DIGEST_FOLDER}/")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn sample() -> DigestDoc {
        DigestDoc {
            version: DIGEST_VERSION,
            kind: DigestKind::Scheduled,
            destination: "acme".into(),
            run_id: "0190b9a4-1111-7222-8333-444455556666".parse().unwrap(),
            created_at: "2026-11-29T10:00:01.000002Z".into(),
            signature_algorithm: SIGNATURE_ALGORITHM.into(),
            public_key_sha256: "ab".repeat(32),
            window: DigestWindow {
                lo: "1040".into(),
                hi: "1042".into(),
                start: None,
                end: "2026-11-29T10:00:00.412077Z".into(),
                follows_previous: true,
            },
            range: None,
            heartbeat: false,
            objects: vec![DigestObject {
                key: "p/x.jsonl".into(),
                bytes: 12,
                sha256: "cd".repeat(32),
                events: 2,
                oldest_occurred_at: Some("2026-11-29T09:00:00.000000Z".into()),
                newest_occurred_at: None,
            }],
            previous: None,
        }
    }

    #[test]
    fn bytes_are_fixed_by_the_values_alone() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let expected = r#"{
  "version": 1,
  "kind": "scheduled",
  "destination": "acme",
  "run_id": "0190b9a4-1111-7222-8333-444455556666",
  "created_at": "2026-11-29T10:00:01.000002Z",
  "signature_algorithm": "Ed25519",
  "public_key_sha256": "abababababababababababababababababababababababababababababababab",
  "window": {
    "lo": "1040",
    "hi": "1042",
    "start": null,
    "end": "2026-11-29T10:00:00.412077Z",
    "follows_previous": true
  },
  "heartbeat": false,
  "objects": [
    {
      "key": "p/x.jsonl",
      "bytes": 12,
      "sha256": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
      "events": 2,
      "oldest_occurred_at": "2026-11-29T09:00:00.000000Z",
      "newest_occurred_at": null
    }
  ],
  "previous": null
}
"#;
        assert_eq!(text, expected);
        assert_eq!(sample().to_bytes(), sample().to_bytes());
    }

    #[test]
    fn a_digest_reads_back_and_refuses_what_it_does_not_know() {
        let mut doc = sample();
        doc.kind = DigestKind::Reexport;
        doc.range = Some(DigestRange {
            from: "a".into(),
            to: "b".into(),
        });
        doc.previous = Some(PreviousDigest {
            key: "k".into(),
            sha256: "s".into(),
            signature: "g".into(),
        });
        assert_eq!(DigestDoc::parse(&doc.to_bytes()).unwrap(), doc);
        assert!(
            DigestDoc::parse(b"{}")
                .unwrap_err()
                .contains("not a digest")
        );
        doc.version = 2;
        assert!(
            DigestDoc::parse(&doc.to_bytes())
                .unwrap_err()
                .contains("version 2")
        );
        assert_eq!(
            sample().window_end(),
            Some(
                Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap()
                    + chrono::Duration::microseconds(412_077)
            )
        );
    }

    #[test]
    fn digest_keys_sort_in_chain_order_outside_the_data() {
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        let id: Uuid = "0190b9a4-1111-7222-8333-444455556666".parse().unwrap();
        assert_eq!(
            digest_key("exports/eu", DigestKind::Scheduled, at, id),
            "exports/eu/digest/2026/03/04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666.json"
        );
        assert_eq!(
            digest_key("", DigestKind::Reexport, at, id),
            "digest/reexport/2026/03/04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666.json"
        );
        let later = digest_key(
            "p",
            DigestKind::Scheduled,
            at + chrono::Duration::hours(1),
            id,
        );
        assert!(digest_key("p", DigestKind::Scheduled, at, id) < later);
        assert_eq!(digest_folder(""), "digest/");
        assert_eq!(digest_folder("p/q"), "p/q/digest/");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
