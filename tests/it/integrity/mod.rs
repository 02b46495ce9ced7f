//! The signed digest chain: written with every committed scheduled run, verified by
//! `verify-chain` online (against the database's head) and offline (a copy and public keys), and
//! by `openssl` alone; every kind of tampering is reported by name.

mod chain;
mod findings;
mod resume;
mod tamper;

use std::path::{Path, PathBuf};
use std::process::Command;

use audit_exporter::domain::PublicKey;
use audit_exporter::export::{ChainSpan, Verification, verify_chain};
use audit_exporter::sink::BucketReader;

use crate::cli::{audit_exporter, stderr};
use crate::harness::files;

pub fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(ok.success());
    (private, public)
}

pub fn signing_env(key: &Path) -> (String, String) {
    (
        "AUDIT_EXPORTER__INTEGRITY__SIGNING_KEY_FILE".into(),
        key.display().to_string(),
    )
}

pub fn public_key(file: &Path) -> PublicKey {
    PublicKey::from_pem(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// `openssl pkeyutl -verify -rawin` on one digest and its signature.
pub fn openssl_verifies(public: &Path, digest: &Path) -> bool {
    let output = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(public)
        .arg("-rawin")
        .arg("-in")
        .arg(digest)
        .arg("-sigfile")
        .arg(format!("{}.sig", digest.display()))
        .output()
        .unwrap();
    output.status.success()
        && String::from_utf8_lossy(&output.stdout).contains("Signature Verified Successfully")
}

/// The digests (not their signatures) of a directory destination, in key order.
pub fn digest_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_keys()
        .filter(|k| k.starts_with("digest/") && k.ends_with(".json"))
        .collect()
}

pub async fn verify_dir(dir: &Path, keys: &[PublicKey]) -> Verification {
    verify_chain(
        &BucketReader::File(dir.to_owned()),
        "",
        keys,
        &ChainSpan::default(),
        None,
    )
    .await
    .unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    for (key, bytes) in files(from) {
        let path = to.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

pub fn problems(v: &Verification) -> Vec<String> {
    v.findings
        .iter()
        .map(|f| format!("{}: {}", f.subject, f.problem))
        .collect()
}

#[test]
fn integrity_keys_are_checked_and_shared() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(keys.path(), "k1");
    let key_env = "AUDIT_EXPORTER__INTEGRITY__SIGNING_KEY_FILE";
    let output = audit_exporter(
        &["integrity", "public-key"],
        &[(key_env, private.to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with(&std::fs::read_to_string(&public).unwrap()));
    let der = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&public)
        .output()
        .unwrap()
        .stdout;
    let fingerprint = audit_exporter::domain::sha256_hex(&der);
    assert!(
        stdout.contains(&format!("SHA-256 fingerprint: {fingerprint}")),
        "{stdout}"
    );
    let output = audit_exporter(
        &["config", "check"],
        &[(key_env, private.to_str().unwrap())],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&fingerprint), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"));

    // A missing file, a key of another type, a public key in its place: exit 2, naming the key.
    let ec = keys.path().join("ec.pem");
    assert!(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out"
            ])
            .arg(&ec)
            .status()
            .unwrap()
            .success()
    );
    let rsa = keys.path().join("rsa.pem");
    let encrypted = keys.path().join("encrypted.pem");
    let empty = keys.path().join("empty.pem");
    for args in [
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ][..],
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-pass",
            "pass:secret",
            "-aes256",
            "-out",
        ],
    ] {
        let out = if args[2] == "RSA" { &rsa } else { &encrypted };
        let ok = Command::new("openssl")
            .args(args)
            .arg(out)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
    std::fs::write(&empty, "").unwrap();
    let missing = keys.path().join("missing.pem");
    for (file, says) in [
        (&missing, "cannot be read"),
        (&ec, "is an EC private key"),
        (&public, "is a public key, not a private key"),
        (&rsa, "is an RSA private key"),
        (&encrypted, "is encrypted (a passphrase protects it)"),
        (&empty, "is empty"),
    ] {
        let output = audit_exporter(&["config", "check"], &[(key_env, file.to_str().unwrap())]);
        assert_eq!(output.status.code(), Some(2), "{}", file.display());
        let message = stderr(&output);
        assert!(
            message.contains(&format!(
                "integrity.signing_key_file: {}: {says}",
                file.display()
            )) && message
                .contains("allowed: an unencrypted Ed25519 private key in PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes it"),
            "{message}"
        );
        assert!(!message.contains("BEGIN"), "{message}");
    }
    // The key's text where its file's path belongs: refused, and never repeated.
    let text = std::fs::read_to_string(&private).unwrap();
    let output = audit_exporter(&["config", "check"], &[(key_env, text.as_str())]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("the value is a key's text") && !message.contains("BEGIN"),
        "{message}"
    );
    let base64_line = text.lines().nth(1).unwrap();
    assert!(!message.contains(base64_line), "{message}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(base64_line));
    // What `integrity public-key` prints, fingerprint line included, is a public key file.
    let shared = keys.path().join("shared.pem");
    let printed = audit_exporter(
        &["integrity", "public-key"],
        &[(key_env, private.to_str().unwrap())],
    );
    std::fs::write(&shared, &printed.stdout).unwrap();
    let pem = std::fs::read_to_string(&shared).unwrap();
    assert!(
        audit_exporter::domain::PublicKey::from_pem(&pem).is_ok(),
        "{pem}"
    );
    let output = audit_exporter(&["integrity", "public-key"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("integrity.signing_key_file is not set"));

    // verify-chain: bad usage exits 2.
    let output = audit_exporter(&["verify-chain"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let output = audit_exporter(
        &[
            "verify-chain",
            "--url",
            "file:///nonexistent-dir",
            "--public-key",
            public.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = audit_exporter(
        &[
            "verify-chain",
            "--url",
            "file:///tmp",
            "--public-key",
            private.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--public-key"),
        "{}",
        stderr(&output)
    );
}
