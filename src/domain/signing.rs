//! Ed25519 keys as OpenSSL writes them: a private key in PKCS#8 PEM (`openssl genpkey
//! -algorithm ed25519`), a public key in SubjectPublicKeyInfo PEM (`openssl pkey -pubout`). A
//! key is named by its fingerprint: the SHA-256 of the public key's DER, hex. Signatures are
//! raw 64 bytes over the exact bytes signed, what `openssl pkeyutl -verify -rawin` checks.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::digest::sha256_hex;

/// What a key file must hold, for error messages.
pub const PRIVATE_KEY_ALLOWED: &str = "allowed: an unencrypted Ed25519 private key in PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes it";
pub const PUBLIC_KEY_ALLOWED: &str =
    "allowed: an Ed25519 public key in PEM, as `openssl pkey -in key.pem -pubout` writes it";

/// The signing key. Its Debug shows the fingerprint only, never the key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(public key {})", self.public.fingerprint())
    }
}

impl Signer {
    /// Reads a PKCS#8 PEM private key; the error never holds the key's text.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| private_key_kind(pem))?;
        let public = PublicKey::new(key.verifying_key());
        Ok(Self { key, public })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The raw 64-byte signature of `bytes`. Ed25519 is deterministic: the same bytes always
    /// get the same signature from the same key.
    pub fn sign(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }
}

/// What a private key file holds that is not an Ed25519 PKCS#8 key, in words: "is empty", "is
/// an RSA private key", "is encrypted"… Never any of the key's text.
fn private_key_kind(pem: &str) -> String {
    use ed25519_dalek::pkcs8::spki::der::pem::decode_label;
    use ed25519_dalek::pkcs8::{ObjectIdentifier, PrivateKeyInfo, SecretDocument};

    if pem.trim().is_empty() {
        return "is empty".into();
    }
    let Some(begin) = pem.find("-----BEGIN ") else {
        return "is not PEM (no -----BEGIN line)".into();
    };
    let block = &pem[begin..];
    let label = decode_label(block.as_bytes()).unwrap_or_default();
    let what = match label {
        "ENCRYPTED PRIVATE KEY" => {
            "is encrypted (a passphrase protects it): write it unencrypted with `openssl pkey -in FILE -out NEW_FILE`"
        }
        "RSA PRIVATE KEY" => "is an RSA private key",
        "EC PRIVATE KEY" => "is an EC private key",
        "OPENSSH PRIVATE KEY" => "is an OpenSSH private key",
        "PUBLIC KEY" | "RSA PUBLIC KEY" => "is a public key, not a private key",
        "CERTIFICATE" => "is a certificate, not a private key",
        "PRIVATE KEY" => {
            let oid = SecretDocument::from_pem(block).ok().and_then(|(_, doc)| {
                Some(PrivateKeyInfo::try_from(doc.as_bytes()).ok()?.algorithm.oid)
            });
            const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
            const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
            const ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
            const X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
            return match oid {
                Some(RSA) => "is an RSA private key".into(),
                Some(EC) => "is an EC private key".into(),
                Some(ED448) => "is an Ed448 private key".into(),
                Some(X25519) => "is an X25519 private key".into(),
                Some(oid) => format!("is a private key of another algorithm (OID {oid})"),
                None => "is not a valid PKCS#8 private key (its PEM block does not decode)".into(),
            };
        }
        "" => "is not a valid PEM block",
        _ => return format!("holds a PEM block of type {label:?}, not \"PRIVATE KEY\""),
    };
    what.into()
}

/// A public key, for verifying and for naming the signer.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    fingerprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl PublicKey {
    fn new(key: VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .expect("an Ed25519 public key always encodes");
        Self {
            fingerprint: sha256_hex(der.as_bytes()),
            key,
        }
    }

    /// Reads a SubjectPublicKeyInfo PEM public key; text around its PEM block (the fingerprint
    /// line `integrity public-key` prints after it) is ignored, as openssl does.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        const END: &str = "-----END PUBLIC KEY-----";
        let block = match (pem.find("-----BEGIN PUBLIC KEY-----"), pem.find(END)) {
            (Some(begin), Some(end)) if begin < end => &pem[begin..end + END.len()],
            _ => pem,
        };
        let key = VerifyingKey::from_public_key_pem(block)
            .map_err(|e| format!("not an Ed25519 public key in PEM ({e})"))?;
        Ok(Self::new(key))
    }

    /// SHA-256 of the public key's DER, hex: what digests name their signer by.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The PEM that `openssl pkey -pubout` writes.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key always encodes")
    }

    /// Whether `signature` is this key's over `bytes` (strict: no malleable signature).
    pub fn verifies(&self, bytes: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(bytes, &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032's first test key, as `openssl genpkey -algorithm ed25519` would write it.
    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";

    #[test]
    fn keys_sign_deterministically_and_verify() {
        let signer = Signer::from_pem(PRIVATE).unwrap();
        let public = signer.public_key();
        // RFC 8032, test 1: the empty message.
        assert_eq!(
            hex::encode(signer.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(signer.sign(b"x"), signer.sign(b"x"));
        assert!(public.verifies(b"x", &signer.sign(b"x")));
        assert!(!public.verifies(b"y", &signer.sign(b"x")));
        assert!(!public.verifies(b"x", b"short"));
        let again = PublicKey::from_pem(&public.to_pem()).unwrap();
        assert_eq!(&again, public);
        assert_eq!(public.fingerprint().len(), 64);
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }

    #[test]
    fn wrong_keys_are_refused_without_echoing_them() {
        let e = Signer::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(e.contains("is not a valid PKCS#8 private key"), "{e}");
        assert!(!e.contains("AAAA"));
        assert!(Signer::from_pem("hello").is_err());
        assert!(PublicKey::from_pem(PRIVATE).is_err());
    }

    /// Each kind of key file says what it is (keys as openssl writes them).
    #[test]
    fn a_wrong_key_file_says_what_it_holds() {
        const RSA: &str = "-----BEGIN PRIVATE KEY-----
MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEAq55btrlmpjoSjTwl
ReTUo2DafT3xxmLd+Caj0++p6jAqRTo2ZKNiIFHcuJ9dQ7LT5HkMaRzFIMGL+og7
MqjxwwIDAQABAkBCIaWpxcu+ZkZb0j9yrXka8+l9tW8DSXnLc+hRdNr++KquiBhG
YGdOdcQ0uPexWuqQ2q3IoYU6jyDJKTRHgYXBAiEA3NOpYSL0yf1GfO4ZKcoAIyOQ
iu5vg5F2c9DbpRZcolECIQDG9DQhznU41xt8Owh6SgxDCGweQ+IXcyY+LHOpoJFZ
0wIgEepmMohIfd67ikUy624FBtTK1Eq152G0z36hY0pmJ5ECIQCT8CqDqN2JcopB
ijP3mvAbODwNFTUdcsZRHQS0cW0jeQIgS8YvkBBQpT9QLSL5SiiHZbdfxqoSIGQs
01XXc61dfXI=
-----END PRIVATE KEY-----
";
        const ENCRYPTED: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjvpL8477Yq6gICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEBwZl1XVg/l0FmBtt+wXwmkEQM8a
F0ffuNEoahFXiiyaNEjSio4qf63VXNLMivI3XedB1mgvMNahVEhiztnpt1ivqVmt
f0fGGOPbHHRBNC7Vu4U=
-----END ENCRYPTED PRIVATE KEY-----
";
        let public = Signer::from_pem(PRIVATE).unwrap().public_key().to_pem();
        let cases = [
            ("", "is empty"),
            ("  \n", "is empty"),
            ("hello", "is not PEM"),
            (RSA, "is an RSA private key"),
            (ENCRYPTED, "is encrypted (a passphrase protects it)"),
            (&public, "is a public key, not a private key"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "is an RSA private key",
            ),
        ];
        for (pem, says) in cases {
            let e = Signer::from_pem(pem).unwrap_err();
            assert!(e.starts_with(says), "{pem}: {e}");
        }
    }
}
