//! The Sigstore trusted root (`trusted_root.json`, `application/vnd.dev.sigstore.trustedroot+json`):
//! certificate authorities with their validity windows, transparency logs and CT logs by key id.

use base64::Engine as _;
use der::Decode as _;
use der::asn1::ObjectIdentifier;
use ring::signature as sig;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use x509_cert::Certificate;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// A trusted root file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustedRootError {
    /// The file cannot be read.
    #[error("Sigstore trusted root {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a usable trusted root.
    #[error(
        "Sigstore trusted root {what} is not usable: {reason}; use a `trusted_root.json` (`cosign trusted-root create`, or the public one: `sigstore/root-signing`'s `targets/trusted_root.json`)"
    )]
    Invalid {
        /// The file.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// A validity window; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    start: Option<i64>,
    end: Option<i64>,
}

impl Window {
    pub(super) fn contains(&self, time: i64) -> bool {
        self.start.is_none_or(|s| s <= time) && self.end.is_none_or(|e| time <= e)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Authority {
    /// Intermediates, then the root (last).
    pub(super) chain: Vec<CertificateDer<'static>>,
    pub(super) valid: Window,
}

#[derive(Debug, Clone)]
pub(super) struct Log {
    pub(super) key_id: Vec<u8>,
    pub(super) key: VerifyingKey,
    pub(super) valid: Window,
}

/// A Sigstore trusted root (`application/vnd.dev.sigstore.trustedroot+json`): the certificate
/// authorities (Fulcio) and transparency logs (Rekor) keyless signatures are checked against.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub(super) authorities: Vec<Authority>,
    pub(super) logs: Vec<Log>,
    pub(super) ct_logs: Vec<Log>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootJson {
    #[serde(default)]
    tlogs: Vec<TlogJson>,
    #[serde(default)]
    certificate_authorities: Vec<AuthorityJson>,
    #[serde(default)]
    ctlogs: Vec<TlogJson>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogJson {
    public_key: PublicKeyJson,
    log_id: LogIdJson,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyJson {
    raw_bytes: String,
    valid_for: Option<WindowJson>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdJson {
    key_id: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorityJson {
    cert_chain: CertChainJson,
    valid_for: Option<WindowJson>,
}

#[derive(serde::Deserialize)]
struct CertChainJson {
    certificates: Vec<RawJson>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJson {
    raw_bytes: String,
}

#[derive(serde::Deserialize)]
struct WindowJson {
    start: Option<String>,
    end: Option<String>,
}

pub(super) fn b64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(text.trim())
}

fn rfc3339(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| format!("`{text}` is not an RFC 3339 time ({e})"))
}

fn window(json: Option<&WindowJson>) -> Result<Window, String> {
    let at = |t: Option<&String>| t.map(|t| rfc3339(t)).transpose();
    Ok(match json {
        None => Window {
            start: None,
            end: None,
        },
        Some(w) => Window {
            start: at(w.start.as_ref())?,
            end: at(w.end.as_ref())?,
        },
    })
}

impl TrustedRoot {
    /// Reads a `trusted_root.json`; `what` names it in errors.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Self, TrustedRootError> {
        let invalid = |reason: String| TrustedRootError::Invalid {
            what: what.to_string(),
            reason,
        };
        let json: RootJson = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a trusted root JSON document ({e})")))?;
        let mut authorities = Vec::new();
        for (i, ca) in json.certificate_authorities.iter().enumerate() {
            let mut chain = Vec::new();
            for cert in &ca.cert_chain.certificates {
                let der = b64(&cert.raw_bytes).map_err(|e| {
                    invalid(format!(
                        "certificateAuthorities[{i}]: a certificate is not base64 ({e})"
                    ))
                })?;
                Certificate::from_der(&der).map_err(|e| {
                    invalid(format!(
                        "certificateAuthorities[{i}]: a certificate is not X.509 DER ({e})"
                    ))
                })?;
                chain.push(CertificateDer::from(der));
            }
            if chain.is_empty() {
                return Err(invalid(format!(
                    "certificateAuthorities[{i}] has no certificate"
                )));
            }
            authorities.push(Authority {
                chain,
                valid: window(ca.valid_for.as_ref())
                    .map_err(|e| invalid(format!("certificateAuthorities[{i}].validFor: {e}")))?,
            });
        }
        let logs = |list: &[TlogJson], name: &str| {
            let mut logs = Vec::new();
            for (i, log) in list.iter().enumerate() {
                let bad = |what: &str, e: String| invalid(format!("{name}[{i}].{what}: {e}"));
                let spki = b64(&log.public_key.raw_bytes)
                    .map_err(|e| bad("publicKey.rawBytes", e.to_string()))?;
                logs.push(Log {
                    key_id: b64(&log.log_id.key_id)
                        .map_err(|e| bad("logId.keyId", e.to_string()))?,
                    key: VerifyingKey::from_spki(&spki).map_err(|e| bad("publicKey", e))?,
                    valid: window(log.public_key.valid_for.as_ref())
                        .map_err(|e| bad("publicKey.validFor", e))?,
                });
            }
            Ok(logs)
        };
        let ct_logs = logs(&json.ctlogs, "ctlogs")?;
        let logs = logs(&json.tlogs, "tlogs")?;
        if authorities.is_empty() || logs.is_empty() {
            return Err(invalid(
                "it lists no certificate authority or no transparency log".to_string(),
            ));
        }
        Ok(Self {
            authorities,
            logs,
            ct_logs,
        })
    }

    /// Reads a `trusted_root.json` file.
    pub fn from_file(path: &Path) -> Result<Self, TrustedRootError> {
        let bytes = std::fs::read(path).map_err(|source| TrustedRootError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&bytes, &path.display().to_string())
    }
}

/// An ECDSA public key, P-256 (SHA-256) or P-384 (SHA-384), as Fulcio and Rekor use.
#[derive(Debug, Clone)]
pub(super) struct VerifyingKey {
    algorithm: &'static sig::EcdsaVerificationAlgorithm,
    point: Vec<u8>,
}

impl VerifyingKey {
    pub(super) fn from_spki(der: &[u8]) -> Result<Self, String> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not an SPKI structure ({e})"))?;
        let (algorithm, curve) = spki
            .algorithm
            .oids()
            .map_err(|e| format!("unreadable algorithm ({e})"))?;
        let algorithm = match (algorithm, curve) {
            (EC_PUBLIC_KEY, Some(P256)) => &sig::ECDSA_P256_SHA256_ASN1,
            (EC_PUBLIC_KEY, Some(P384)) => &sig::ECDSA_P384_SHA384_ASN1,
            _ => return Err("not an ECDSA P-256 or P-384 key".to_string()),
        };
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the key's bit string is not whole bytes")?
            .to_vec();
        Ok(Self { algorithm, point })
    }

    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        sig::UnparsedPublicKey::new(self.algorithm, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

impl Log {
    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verifies(message, signature)
    }
}
