//! ECDSA P-256 keys as standard PEM: PKCS#8 private keys (`BEGIN PRIVATE KEY`, what `openssl
//! pkcs8 -topk8 -nocrypt` and `arkham key generate` write; SEC 1 `BEGIN EC PRIVATE KEY` from
//! `openssl ecparam -genkey` is read too) and SPKI public keys (`BEGIN PUBLIC KEY`), the format
//! cosign's `import-key-pair` takes and its `.pub` files use; and cosign's own password-encrypted
//! private keys (`cosign generate-key-pair`, see `encrypted`), read and written.

use super::encrypted::{self, OpenError};
use der::asn1::{BitStringRef, ContextSpecific, ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Encode as _, Reader as _, TagNumber};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair as _};
use std::path::{Path, PathBuf};

/// `id-ecPublicKey` (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `prime256v1` / `secp256r1`, the curve cosign keys use.
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A key that cannot be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a key arkham can use.
    #[error("{what} is not a usable {kind}: {reason}")]
    Invalid {
        /// The file, or `inline key`.
        what: String,
        /// `private key` or `public key`.
        kind: &'static str,
        /// What is wrong, and what would work.
        reason: String,
    },
    /// The key file is encrypted (cosign's format): read it with
    /// [`SigningKey::from_encrypted_pem`] and its password.
    #[error("{what} is encrypted (cosign's format); its password is needed to read it")]
    PasswordNeeded {
        /// The file.
        what: String,
    },
    /// The password does not open the encrypted key: the secretbox's tag did not verify, which
    /// is also what an altered file gives.
    #[error("wrong password for {what} (or the file is corrupt)")]
    WrongPassword {
        /// The file.
        what: String,
    },
    /// The system's random source failed.
    #[error("the system's random number source failed; cannot make a key or a signature")]
    Random,
}

/// A public key: ECDSA P-256, kept as its SPKI DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki: Vec<u8>,
    point: Vec<u8>,
}

impl PublicKey {
    /// Reads an SPKI PEM (`-----BEGIN PUBLIC KEY-----`); `what` names it in errors.
    pub fn from_pem(text: &str, what: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            what: what.to_string(),
            kind: "public key",
            reason,
        };
        let (label, der) = der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| invalid(format!("not PEM ({e})")))?;
        if label != "PUBLIC KEY" {
            return Err(invalid(format!(
                "it is a `{label}` PEM; a public key is `-----BEGIN PUBLIC KEY-----` (SPKI), as `openssl ec -pubout` and `arkham key generate` write"
            )));
        }
        Self::from_spki_der(&der).map_err(invalid)
    }

    /// Reads an SPKI PEM file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(&read_pem(path)?, &path.display().to_string())
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not an SPKI structure ({e})"))?;
        let (algorithm, curve) = spki
            .algorithm
            .oids()
            .map_err(|e| format!("unreadable algorithm ({e})"))?;
        p256_only(algorithm, curve)?;
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the key's bit string is not whole bytes")?
            .to_vec();
        // The uncompressed point cosign and openssl write: 0x04, x, y.
        if point.len() != 65 || point[0] != 4 {
            return Err("the key is not an uncompressed P-256 point".to_string());
        }
        Ok(Self {
            spki: der.to_vec(),
            point,
        })
    }

    fn from_point(point: &[u8]) -> Result<Self, String> {
        let spki = spki::SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: EC_PUBLIC_KEY,
                parameters: Some((&P256).into()),
            },
            subject_public_key: BitStringRef::from_bytes(point).map_err(|e| e.to_string())?,
        };
        Self::from_spki_der(&spki.to_der().map_err(|e| e.to_string())?)
    }

    /// The SPKI DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// As SPKI PEM.
    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki)
    }

    /// `sha256:` + the hex SHA-256 of the SPKI DER: how arkham names a key (as
    /// `openssl pkey -pubin -outform DER | sha256sum` computes it).
    pub fn fingerprint(&self) -> String {
        crate::digest::Digest::of(&self.spki).to_string()
    }

    /// Whether `signature` (ASN.1 DER ECDSA) over `message` (hashed with SHA-256) is this key's.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

/// A private key: ECDSA P-256. Its `Debug` shows only the public key's fingerprint.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public.fingerprint())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| KeyError::Random)?;
        Self::from_pkcs8_der(doc.as_ref()).map_err(|reason| KeyError::Invalid {
            what: "a generated key".to_string(),
            kind: "private key",
            reason,
        })
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) or a SEC 1 one (`-----BEGIN EC PRIVATE
    /// KEY-----`), unencrypted; `what` names it in errors.
    pub fn from_pem(text: &str, what: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            what: what.to_string(),
            kind: "private key",
            reason,
        };
        let (label, der) = der::pem::decode_vec(key_block(text).as_bytes())
            .map_err(|e| invalid(format!("not PEM ({e})")))?;
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der).map_err(invalid),
            "EC PRIVATE KEY" => Self::from_sec1_der(&der, None).map_err(invalid),
            "ENCRYPTED PRIVATE KEY" => Err(invalid(
                "it is encrypted, which arkham does not read; decrypt it (`openssl pkcs8 -in KEY -nocrypt -topk8`) and keep that file private".to_string(),
            )),
            encrypted::LABEL | encrypted::LEGACY_LABEL => Err(KeyError::PasswordNeeded {
                what: what.to_string(),
            }),
            other => Err(invalid(format!(
                "it is a `{other}` PEM; a private key is `-----BEGIN PRIVATE KEY-----` (PKCS#8), as `arkham key generate` and `openssl pkcs8 -topk8 -nocrypt` write"
            ))),
        }
    }

    /// Reads one of cosign's encrypted key files (`-----BEGIN ENCRYPTED SIGSTORE PRIVATE
    /// KEY-----`, or cosign v1's `ENCRYPTED COSIGN PRIVATE KEY`) with its password; `what` names
    /// it in errors. scrypt parameters beyond twice the strongest cosign writes are refused
    /// before any memory is allocated for them.
    pub fn from_encrypted_pem(text: &str, what: &str, password: &[u8]) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            what: what.to_string(),
            kind: "encrypted private key",
            reason,
        };
        let (label, body) = der::pem::decode_vec(key_block(text).as_bytes())
            .map_err(|e| invalid(format!("not PEM ({e})")))?;
        if label != encrypted::LABEL && label != encrypted::LEGACY_LABEL {
            return Err(invalid(format!(
                "it is a `{label}` PEM; cosign's encrypted keys are `-----BEGIN {}-----` (or `{}`)",
                encrypted::LABEL,
                encrypted::LEGACY_LABEL
            )));
        }
        let pkcs8 = encrypted::open(&body, password).map_err(|e| match e {
            OpenError::Malformed(reason) => invalid(reason),
            OpenError::WrongPassword => KeyError::WrongPassword {
                what: what.to_string(),
            },
        })?;
        Self::from_pkcs8_der(&pkcs8)
            .map_err(|reason| invalid(format!("what it holds is not a usable key: {reason}")))
    }

    /// Reads a private key PEM file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(&read_pem(path)?, &path.display().to_string())
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let info = pkcs8::PrivateKeyInfo::from_der(der)
            .map_err(|e| format!("not a PKCS#8 structure ({e})"))?;
        let (algorithm, curve) = info
            .algorithm
            .oids()
            .map_err(|e| format!("unreadable algorithm ({e})"))?;
        p256_only(algorithm, curve)?;
        Self::from_sec1_der(info.private_key, info.public_key)
    }

    /// An `ECPrivateKey` (SEC 1), read by hand: ring takes only the raw scalar and point, so
    /// keys with or without the optional curve parameters (openssl writes both) are read alike.
    fn from_sec1_der(der: &[u8], outer_public: Option<&[u8]>) -> Result<Self, String> {
        let bad = |e: der::Error| format!("not an EC private key ({e})");
        let mut reader = der::SliceReader::new(der).map_err(bad)?;
        let (version, scalar, curve, public) = reader
            .sequence(|r| {
                let version = u8::decode(r)?;
                let scalar = OctetStringRef::decode(r)?.as_bytes().to_vec();
                let curve = ContextSpecific::<ObjectIdentifier>::decode_explicit(r, TagNumber::N0)?
                    .map(|c| c.value);
                let public =
                    ContextSpecific::<BitStringRef<'_>>::decode_explicit(r, TagNumber::N1)?
                        .and_then(|p| p.value.as_bytes().map(<[u8]>::to_vec));
                Ok((version, scalar, curve, public))
            })
            .map_err(bad)?;
        reader.finish(()).map_err(bad)?;
        if version != 1 {
            return Err(format!("EC private key version {version} is not 1"));
        }
        if curve.is_some_and(|c| c != P256) {
            return Err("not a P-256 key; arkham (like cosign) signs with ECDSA P-256".to_string());
        }
        let public = public
            .or_else(|| outer_public.map(<[u8]>::to_vec))
            .ok_or("the key file does not hold its public key; re-export it with `openssl pkcs8 -topk8 -nocrypt`")?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            &scalar,
            &public,
            &rng,
        )
        .map_err(|e| format!("the key is not valid ({e})"))?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        // Re-encoded as ring writes PKCS#8, whatever the input's flavour.
        let pkcs8 = pkcs8_der(&scalar, pair.public_key().as_ref())?;
        Ok(Self {
            pair,
            pkcs8,
            public,
        })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// As PKCS#8 PEM (unencrypted: keep the file private).
    pub fn to_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// As one of cosign's encrypted key files (`ENCRYPTED SIGSTORE PRIVATE KEY`), sealed with
    /// `password` (scrypt N = 2^15, r = 8, p = 1, which every cosign release reads).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let body = encrypted::seal(&self.pkcs8, password).map_err(|reason| match reason {
            None => KeyError::Random,
            Some(reason) => KeyError::Invalid {
                what: "a key being encrypted".to_string(),
                kind: "encrypted private key",
                reason,
            },
        })?;
        Ok(pem(encrypted::LABEL, &body))
    }

    /// An ASN.1 DER ECDSA P-256 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Random)
    }
}

/// PKCS#8 v1 holding an `ECPrivateKey` with its public key and no parameters (RFC 5915, as
/// openssl and ring write it).
fn pkcs8_der(scalar: &[u8], point: &[u8]) -> Result<Vec<u8>, String> {
    let e = |e: der::Error| e.to_string();
    // ECPrivateKey ::= SEQUENCE { 1, OCTET STRING scalar, [1] BIT STRING point }
    let mut fields = Vec::new();
    1u8.encode_to_vec(&mut fields).map_err(e)?;
    OctetStringRef::new(scalar)
        .map_err(e)?
        .encode_to_vec(&mut fields)
        .map_err(e)?;
    ContextSpecific {
        tag_number: TagNumber::N1,
        tag_mode: der::TagMode::Explicit,
        value: BitStringRef::from_bytes(point).map_err(e)?,
    }
    .encode_to_vec(&mut fields)
    .map_err(e)?;
    let ec_private_key = der::asn1::AnyRef::new(der::Tag::Sequence, &fields)
        .map_err(e)?
        .to_der()
        .map_err(e)?;
    pkcs8::PrivateKeyInfo {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: EC_PUBLIC_KEY,
            parameters: Some((&P256).into()),
        },
        private_key: &ec_private_key,
        public_key: None,
    }
    .to_der()
    .map_err(e)
}

/// The first PEM block of `text` that is not `EC PARAMETERS` (which `openssl ecparam -genkey`
/// writes before the key).
fn key_block(text: &str) -> &str {
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let end = block
            .find("-----END ")
            .and_then(|e| block[e + 9..].find("-----").map(|f| e + 9 + f + 5))
            .unwrap_or(block.len());
        if !block.starts_with("-----BEGIN EC PARAMETERS-----") {
            return &block[..end];
        }
        rest = &block[end..];
    }
    text.trim()
}

fn pem(label: &str, der: &[u8]) -> String {
    // Base64 of bytes never fails to encode.
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}

/// A key file's text.
fn read_pem(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Refuses any key but ECDSA on P-256.
fn p256_only(algorithm: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> Result<(), String> {
    if algorithm != EC_PUBLIC_KEY || curve != Some(P256) {
        return Err(
            "not an ECDSA P-256 key; arkham (like cosign) signs with ECDSA P-256".to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_pem_and_signs() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        // Debug output never carries the private key.
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKey({})", key.public_key().fingerprint())
        );
        let again = SigningKey::from_pem(&pem, "k").unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::from_pem(&key.public_key().to_pem(), "p").unwrap();
        assert_eq!(&public, key.public_key());
        assert!(public.fingerprint().starts_with("sha256:"));
        let signature = again.sign(b"payload").unwrap();
        assert!(public.verifies(b"payload", &signature));
        assert!(!public.verifies(b"payloaD", &signature));
        let other = SigningKey::generate().unwrap();
        assert!(!other.public_key().verifies(b"payload", &signature));
    }

    /// Made by `openssl ecparam -name prime256v1 -genkey`, `openssl pkcs8 -topk8 -nocrypt` and
    /// `openssl ec -pubout`; the fingerprint by `openssl pkey -pubin -outform DER | sha256sum`.
    const OPENSSL_SEC1: &str = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKwRSWN4UhAE+DAgW5EOtyylwHEcKvkvE4MRO+twxne9oAoGCCqGSM49\nAwEHoUQDQgAExcHWdaBiFx1etufAeu0S2eyvxLldTgZ6KEANgDTcAQ3OUzI0MQJ0\nObpn3Nn6VmllHDPuD6TcojzXVPhcVjc+AA==\n-----END EC PRIVATE KEY-----\n";
    const OPENSSL_PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrBFJY3hSEAT4MCBb\nkQ63LKXAcRwq+S8TgxE763DGd72hRANCAATFwdZ1oGIXHV6258B67RLZ7K/EuV1O\nBnooQA2ANNwBDc5TMjQxAnQ5umfc2fpWaWUcM+4PpNyiPNdU+FxWNz4A\n-----END PRIVATE KEY-----\n";
    const OPENSSL_PUB: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAExcHWdaBiFx1etufAeu0S2eyvxLld\nTgZ6KEANgDTcAQ3OUzI0MQJ0Obpn3Nn6VmllHDPuD6TcojzXVPhcVjc+AA==\n-----END PUBLIC KEY-----\n";
    const OPENSSL_FINGERPRINT: &str =
        "sha256:87380e4c05f246d203faf0958e557584e8446ac1763ec9d748ea91961ac94085";

    #[test]
    fn openssl_keys_load_and_agree() {
        let public = PublicKey::from_pem(OPENSSL_PUB, "pub").unwrap();
        assert_eq!(public.fingerprint(), OPENSSL_FINGERPRINT);
        assert_eq!(public.to_pem(), OPENSSL_PUB);
        for text in [OPENSSL_SEC1, OPENSSL_PKCS8] {
            let key = SigningKey::from_pem(text, "key").unwrap();
            assert_eq!(key.public_key(), &public);
            assert!(public.verifies(b"m", &key.sign(b"m").unwrap()));
            // Written back as PKCS#8, it reads again as the same key.
            let back = SigningKey::from_pem(&key.to_pem(), "again").unwrap();
            assert_eq!(back.public_key(), &public);
        }
    }

    #[test]
    fn wrong_pems_are_named() {
        let key = SigningKey::generate().unwrap();
        let err = PublicKey::from_pem(&key.to_pem(), "k.pub")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("k.pub") && err.contains("BEGIN PUBLIC KEY"),
            "{err}"
        );
        let err = SigningKey::from_pem(&key.public_key().to_pem(), "k.key")
            .unwrap_err()
            .to_string();
        assert!(err.contains("k.key") && err.contains("PKCS#8"), "{err}");
        let cosign = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        let err = SigningKey::from_pem(cosign, "cosign.key").unwrap_err();
        assert!(
            matches!(&err, KeyError::PasswordNeeded { what } if what == "cosign.key"),
            "{err}"
        );
        assert!(err.to_string().contains("password is needed"), "{err}");
        let err = SigningKey::from_pem("garbage", "g")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not PEM"), "{err}");
    }

    #[test]
    fn an_encrypted_key_round_trips_with_its_password_only() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_encrypted_pem(b"correct horse").unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
            "{pem}"
        );
        // Plain reading says a password is needed, naming the file.
        let err = SigningKey::from_pem(&pem, "cosign.key").unwrap_err();
        assert!(matches!(err, KeyError::PasswordNeeded { .. }), "{err}");
        let back = SigningKey::from_encrypted_pem(&pem, "cosign.key", b"correct horse").unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(key.public_key().verifies(b"m", &back.sign(b"m").unwrap()));
        let err = SigningKey::from_encrypted_pem(&pem, "cosign.key", b"correct horsf").unwrap_err();
        assert!(matches!(err, KeyError::WrongPassword { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "wrong password for cosign.key (or the file is corrupt)"
        );
        // cosign v1's label holds the same envelope.
        let legacy = pem.replace("SIGSTORE", "COSIGN");
        let back = SigningKey::from_encrypted_pem(&legacy, "old.key", b"correct horse").unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let err = SigningKey::from_pem(&legacy, "old.key").unwrap_err();
        assert!(matches!(err, KeyError::PasswordNeeded { .. }), "{err}");
    }

    #[test]
    fn encrypted_key_errors_name_the_file_and_the_problem() {
        let key = SigningKey::generate().unwrap();
        // Not an encrypted label.
        let err = SigningKey::from_encrypted_pem(&key.to_pem(), "plain.key", b"pw")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plain.key")
                && err.contains("`PRIVATE KEY` PEM")
                && err.contains("ENCRYPTED SIGSTORE PRIVATE KEY"),
            "{err}"
        );
        // A well-sealed envelope whose content is not a key.
        let body = encrypted::seal(b"not a key", b"pw").unwrap();
        let sealed = pem(encrypted::LABEL, &body);
        let err = SigningKey::from_encrypted_pem(&sealed, "odd.key", b"pw")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("odd.key") && err.contains("not a usable key"),
            "{err}"
        );
        // A body that is not the JSON envelope.
        let junk = pem(encrypted::LABEL, b"junk");
        let err = SigningKey::from_encrypted_pem(&junk, "junk.key", b"pw")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("junk.key") && err.contains("not cosign's encrypted-key JSON"),
            "{err}"
        );
        // A tampered file reads as a wrong password, and no error carries the password.
        let good = key.to_encrypted_pem(b"s3cret-pw").unwrap();
        let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
        // The last base64 line ends the ciphertext; changing one of its characters alters it
        // (or breaks the JSON, which is also refused).
        let last = lines.len() - 2;
        let line = &mut lines[last];
        let swapped = if line.starts_with('A') { "B" } else { "A" };
        line.replace_range(0..1, swapped);
        let tampered = lines.join("\n");
        let err = SigningKey::from_encrypted_pem(&tampered, "t.key", b"s3cret-pw").unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::WrongPassword { .. } | KeyError::Invalid { .. }
            ),
            "{err}"
        );
        for err in [
            err,
            SigningKey::from_encrypted_pem(&good, "t.key", b"s3cret-pX").unwrap_err(),
        ] {
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
        }
    }
}
