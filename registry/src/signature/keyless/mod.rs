//! Keyless signatures, as `cosign sign` writes them without `--key`: the signature layer carries,
//! besides the signature, the signer's short-lived Fulcio certificate
//! (`dev.sigstore.cosign/certificate`, PEM), optionally its chain (`dev.sigstore.cosign/chain`)
//! and the Rekor entry's bundle (`dev.sigstore.cosign/bundle`: the signed entry timestamp, SET,
//! over the entry's body, integrated time, log index and log id).
//!
//! Verified against a Sigstore `trusted_root.json` ([`TrustedRoot`]): the certificate chains to
//! one of its certificate authorities (valid at the entry's integrated time, which is when the
//! signature was made: Fulcio certificates live ten minutes), the SET is signed by one of its
//! transparency logs, the Rekor body (`hashedrekord`) names this signature, payload and
//! certificate, the payload signature is the certificate's key's, and (when the trusted root
//! lists certificate transparency logs) the certificate carries a signed certificate timestamp
//! (SCT) from one of them. What is proven is then the certificate's identity: an OIDC issuer and
//! a subject (an email or a URI, such as a CI workflow's), which the trust policy matches.

mod sct;
mod trusted_root;

pub use trusted_root::{TrustedRoot, TrustedRootError};

use crate::digest::Digest;
use der::asn1::{ObjectIdentifier, Utf8StringRef};
use der::{Decode as _, Encode as _};
use rustls::pki_types::{CertificateDer, UnixTime};
use std::collections::BTreeMap;
use std::time::Duration;
use trusted_root::{VerifyingKey, b64};
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};

/// The layer annotation holding the signer's certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The layer annotation holding the certificate's chain (PEM, intermediates then root).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The layer annotation holding the Rekor bundle (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Fulcio's OIDC issuer extension, a DER UTF8String.
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// The older issuer extension: the raw string as the extension's value.
const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// `id-kp-codeSigning`.
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// `id-kp-codeSigning`'s DER content octets, as webpki takes an EKU.
const CODE_SIGNING_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Certificates read from a chain annotation at most.
const MAX_CHAIN: usize = 8;

/// The algorithms a Sigstore certificate path is signed with (Fulcio: ECDSA P-384 and P-256).
static PATH_ALGORITHMS: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
];

/// Who made a keyless signature, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The OIDC issuer (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// The subject alternative name: an email, or a URI such as a workflow's.
    pub subject: String,
}

impl Identity {
    /// How the lockfile records this signer: `ISSUER SUBJECT`.
    pub fn signer(&self) -> String {
        format!("{} {}", self.issuer, self.subject)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (issuer {})", self.subject, self.issuer)
    }
}

/// What a verified keyless signature proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certified {
    /// The certificate's identity.
    pub identity: Identity,
    /// When Rekor logged the signature (Unix seconds).
    pub integrated_time: i64,
    /// The entry's index in the log.
    pub log_index: i64,
}

/// Why a keyless signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeylessError {
    /// The certificate annotation is not a readable certificate.
    #[error("its certificate is not readable ({reason})")]
    Certificate {
        /// What is wrong.
        reason: String,
    },
    /// The certificate names no identity Fulcio would write.
    #[error("its certificate names no {missing}")]
    NoIdentity {
        /// `subject (email or URI)` or `OIDC issuer`.
        missing: &'static str,
    },
    /// The layer has no Rekor bundle, so when it was signed is unproven.
    #[error(
        "it has no Rekor bundle (`dev.sigstore.cosign/bundle`), so nothing proves the certificate was valid when it signed"
    )]
    NoBundle,
    /// The bundle is not readable.
    #[error("its Rekor bundle is not readable ({reason})")]
    Bundle {
        /// What is wrong.
        reason: String,
    },
    /// No transparency log of the trusted root has the bundle's log id.
    #[error(
        "its Rekor entry is in a log the trusted root does not list, or not as valid then (log id {log_id})"
    )]
    UnknownLog {
        /// The bundle's `logID`.
        log_id: String,
    },
    /// The signed entry timestamp is not the log's signature.
    #[error(
        "its Rekor signed entry timestamp does not verify with the log's key: the entry was not logged as the bundle says"
    )]
    Set,
    /// The certificate was not valid when Rekor logged the signature.
    #[error(
        "its certificate was not valid when the signature was logged (integrated time {integrated_time}, certificate valid {not_before} to {not_after})"
    )]
    Expired {
        /// The entry's integrated time.
        integrated_time: String,
        /// The certificate's `notBefore`.
        not_before: String,
        /// The certificate's `notAfter`.
        not_after: String,
    },
    /// The certificate does not chain to a certificate authority of the trusted root.
    #[error("its certificate does not chain to the trusted root: {reason}")]
    Chain {
        /// What the path verification said.
        reason: String,
    },
    /// The certificate is not for code signing.
    #[error("its certificate is not for code signing (no codeSigning extended key usage)")]
    NotCodeSigning,
    /// The Rekor body does not describe this signature.
    #[error("its Rekor entry is for something else: {reason}")]
    Body {
        /// What differs.
        reason: String,
    },
    /// The payload's signature is not the certificate key's.
    #[error("its signature does not verify with the certificate's key")]
    Signature,
    /// No certificate transparency log of the trusted root vouches for the certificate.
    #[error("its certificate has no valid certificate transparency timestamp (SCT): {reason}")]
    Sct {
        /// What is missing or wrong.
        reason: String,
    },
}

/// The bundle annotation: what Rekor answered when the signature was logged.
#[derive(Debug, serde::Deserialize)]
struct Bundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: RekorPayload,
}

/// What the SET signs, as canonical JSON (sorted keys, no whitespace).
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct RekorPayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logIndex")]
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// A `hashedrekord` entry body.
#[derive(Debug, serde::Deserialize)]
struct Body {
    kind: String,
    spec: serde_json::Value,
}

fn certificate_from_pem(text: &str) -> Result<Vec<u8>, String> {
    let (label, der) =
        der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| format!("not PEM ({e})"))?;
    if label != "CERTIFICATE" {
        return Err(format!("a `{label}` PEM, not a certificate"));
    }
    Ok(der)
}

/// The PEM certificates of a chain annotation, in order.
fn chain_from_pem(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    let end = "-----END CERTIFICATE-----";
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let block = &rest[start..];
        let Some(stop) = block.find(end) else {
            return Err("a certificate's PEM block does not end".to_string());
        };
        certs.push(certificate_from_pem(&block[..stop + end.len()])?);
        if certs.len() > MAX_CHAIN {
            return Err(format!("more than {MAX_CHAIN} certificates"));
        }
        rest = &block[stop + end.len()..];
    }
    Ok(certs)
}

/// The identity a leaf certificate names (not verified).
fn identity_of(cert: &Certificate) -> Result<Identity, KeylessError> {
    let tbs = &cert.tbs_certificate;
    let unreadable = |e: der::Error| KeylessError::Certificate {
        reason: e.to_string(),
    };
    let subject = tbs
        .get::<SubjectAltName>()
        .map_err(unreadable)?
        .and_then(|(_, san)| {
            san.0.into_iter().find_map(|name| match name {
                GeneralName::Rfc822Name(email) => Some(email.to_string()),
                GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
                _ => None,
            })
        })
        .ok_or(KeylessError::NoIdentity {
            missing: "subject (an email or URI subject alternative name)",
        })?;
    let extension = |oid: ObjectIdentifier| {
        tbs.extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    };
    let issuer = match (extension(ISSUER_V2), extension(ISSUER_V1)) {
        (Some(der), _) => Utf8StringRef::from_der(der)
            .map(|s| s.as_str().to_string())
            .map_err(unreadable)?,
        (None, Some(raw)) => {
            String::from_utf8(raw.to_vec()).map_err(|_| KeylessError::Certificate {
                reason: "its OIDC issuer extension is not UTF-8".to_string(),
            })?
        }
        (None, None) => {
            return Err(KeylessError::NoIdentity {
                missing: "OIDC issuer (extension 1.3.6.1.4.1.57264.1.8)",
            });
        }
    };
    Ok(Identity { issuer, subject })
}

fn leaf(annotations: &BTreeMap<String, String>) -> Result<(Vec<u8>, Certificate), KeylessError> {
    let unreadable = |reason: String| KeylessError::Certificate { reason };
    let text = annotations
        .get(CERTIFICATE_ANNOTATION)
        .ok_or_else(|| unreadable("there is none".to_string()))?;
    let der = certificate_from_pem(text).map_err(unreadable)?;
    let cert = Certificate::from_der(&der).map_err(|e| unreadable(e.to_string()))?;
    Ok((der, cert))
}

/// Whether a layer's annotations make it a keyless signature.
pub fn is_keyless(annotations: &BTreeMap<String, String>) -> bool {
    annotations.contains_key(CERTIFICATE_ANNOTATION)
}

/// The identity a keyless layer's certificate claims, unverified (for messages when no trusted
/// root is configured).
pub fn claimed_identity(annotations: &BTreeMap<String, String>) -> Result<Identity, KeylessError> {
    identity_of(&leaf(annotations)?.1)
}

fn time_text(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}

/// Verifies a keyless signature layer: `signature` over `payload`, with the certificate,
/// chain and bundle of `annotations`, against `root`. Answers who signed.
pub fn verify(
    root: &TrustedRoot,
    payload: &[u8],
    signature: &[u8],
    annotations: &BTreeMap<String, String>,
) -> Result<Certified, KeylessError> {
    let (leaf_der, cert) = leaf(annotations)?;
    let identity = identity_of(&cert)?;

    // When it was signed: the log's signed entry timestamp.
    let bundle_text = annotations
        .get(BUNDLE_ANNOTATION)
        .ok_or(KeylessError::NoBundle)?;
    let bad_bundle = |reason: String| KeylessError::Bundle { reason };
    let bundle: Bundle = serde_json::from_str(bundle_text)
        .map_err(|e| bad_bundle(format!("not the bundle JSON ({e})")))?;
    let entry = &bundle.payload;
    let log_id =
        hex_decode(&entry.log_id).ok_or_else(|| bad_bundle("its logID is not hex".to_string()))?;
    let log = root
        .logs
        .iter()
        .find(|l| l.key_id == log_id && l.valid.contains(entry.integrated_time))
        .ok_or_else(|| KeylessError::UnknownLog {
            log_id: entry.log_id.clone(),
        })?;
    let set = b64(&bundle.signed_entry_timestamp)
        .map_err(|e| bad_bundle(format!("its SignedEntryTimestamp is not base64 ({e})")))?;
    if !log.verifies(&canonical(entry)?, &set) {
        return Err(KeylessError::Set);
    }

    // The certificate was valid then, and chains to an authority valid then.
    let validity = &cert.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    let at = entry.integrated_time;
    let Ok(at_unsigned) = u64::try_from(at) else {
        return Err(bad_bundle(format!("its integratedTime {at} is negative")));
    };
    if at_unsigned < not_before || at_unsigned > not_after {
        let text = |s: u64| time_text(i64::try_from(s).unwrap_or(i64::MAX));
        return Err(KeylessError::Expired {
            integrated_time: time_text(at),
            not_before: text(not_before),
            not_after: text(not_after),
        });
    }
    // The leaf must say code signing; checked before the path, as webpki applies its EKU rule
    // (accepting an absent EKU, for intermediates) to the leaf as well.
    let code_signing = cert
        .tbs_certificate
        .get::<ExtendedKeyUsage>()
        .map_err(|e| KeylessError::Certificate {
            reason: e.to_string(),
        })?
        .is_some_and(|(_, eku)| eku.0.contains(&CODE_SIGNING));
    if !code_signing {
        return Err(KeylessError::NotCodeSigning);
    }

    let leaf_cert = CertificateDer::from(leaf_der.as_slice());
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf_cert).map_err(|e| KeylessError::Certificate {
            reason: e.to_string(),
        })?;
    let from_layer = match annotations.get(CHAIN_ANNOTATION) {
        Some(text) => chain_from_pem(text).map_err(|reason| KeylessError::Chain {
            reason: format!("its chain annotation is not readable ({reason})"),
        })?,
        None => Vec::new(),
    };
    let mut last_error = None;
    let mut issuer_spki = None;
    for authority in root.authorities.iter().filter(|a| a.valid.contains(at)) {
        let Some((root_cert, intermediates)) = authority.chain.split_last() else {
            continue;
        };
        let Ok(anchor) = webpki::anchor_from_trusted_cert(root_cert) else {
            continue;
        };
        // The layer's chain only offers candidates: the path must end at the trusted root.
        let mut candidates: Vec<CertificateDer<'_>> = intermediates.to_vec();
        candidates.extend(
            from_layer
                .iter()
                .map(|c| CertificateDer::from(c.as_slice())),
        );
        match end_entity.verify_for_usage(
            PATH_ALGORITHMS,
            &[anchor],
            &candidates,
            UnixTime::since_unix_epoch(Duration::from_secs(at_unsigned)),
            webpki::KeyUsage::required_if_present(CODE_SIGNING_DER),
            None,
            None,
        ) {
            Ok(path) => {
                issuer_spki = Some(path.issuer_spki().as_ref().to_vec());
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(issuer_spki) = issuer_spki else {
        return Err(KeylessError::Chain {
            reason: match last_error {
                None => format!(
                    "no certificate authority of the trusted root was valid at {}",
                    time_text(at)
                ),
                Some(e) => path_error(&e),
            },
        });
    };
    // A trusted root without CT logs (a private Sigstore may run none) asks for no SCT.
    if !root.ct_logs.is_empty() {
        sct::check_sct(&cert, &issuer_spki, &root.ct_logs)?;
    }
    // The log entry is this signature of this payload by this certificate.
    check_body(&entry.body, payload, signature, &leaf_der)?;

    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| KeylessError::Certificate {
            reason: e.to_string(),
        })?;
    let key = VerifyingKey::from_spki(&spki).map_err(|reason| KeylessError::Certificate {
        reason: format!("its key: {reason}"),
    })?;
    if !key.verifies(payload, signature) {
        return Err(KeylessError::Signature);
    }
    Ok(Certified {
        identity,
        integrated_time: at,
        log_index: entry.log_index,
    })
}

/// What a failed path verification means, in words.
fn path_error(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer | E::InvalidSignatureForPublicKey => {
            "it was not issued by a certificate authority the trusted root lists".to_string()
        }
        E::CertExpired { .. } | E::CertNotValidYet { .. } => {
            "a certificate authority on its path was not valid when the signature was logged"
                .to_string()
        }
        E::CaUsedAsEndEntity => "it is a CA certificate, not a signer's".to_string(),
        E::EndEntityUsedAsCa => "an issuer on its path is not a CA certificate".to_string(),
        E::RequiredEkuNotFoundContext(_) => {
            "a certificate authority on its path is not for code signing".to_string()
        }
        other => format!("{other:?}"),
    }
}

/// The canonical JSON the SET signs.
fn canonical(entry: &RekorPayload) -> Result<Vec<u8>, KeylessError> {
    use serde::Serialize as _;
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    entry
        .serialize(&mut serializer)
        .map_err(|e| KeylessError::Bundle {
            reason: format!("its entry cannot be canonicalised ({e})"),
        })?;
    Ok(out)
}

/// Checks that a `hashedrekord` body names `payload`'s SHA-256, `signature` and the certificate.
fn check_body(
    body: &str,
    payload: &[u8],
    signature: &[u8],
    leaf_der: &[u8],
) -> Result<(), KeylessError> {
    let differs = |reason: String| KeylessError::Body { reason };
    let bytes = b64(body).map_err(|e| differs(format!("its body is not base64 ({e})")))?;
    let body: Body = serde_json::from_slice(&bytes)
        .map_err(|e| differs(format!("its body is not an entry ({e})")))?;
    if body.kind != "hashedrekord" {
        return Err(differs(format!(
            "a `{}` entry; arkham reads `hashedrekord` entries, which cosign writes",
            body.kind
        )));
    }
    let text = |pointer: &str| body.spec.pointer(pointer).and_then(|v| v.as_str());
    let algorithm = text("/data/hash/algorithm");
    let hash = text("/data/hash/value");
    let expected = Digest::of(payload);
    if algorithm != Some("sha256") || hash != Some(expected.hex()) {
        return Err(differs(format!(
            "it logs the hash {}:{}, the payload's is {expected}",
            algorithm.unwrap_or("?"),
            hash.unwrap_or("?")
        )));
    }
    let logged = text("/signature/content").and_then(|s| b64(s).ok());
    if logged.as_deref() != Some(signature) {
        return Err(differs("it logs another signature".to_string()));
    }
    let logged_cert = text("/signature/publicKey/content")
        .and_then(|s| b64(s).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .and_then(|pem| certificate_from_pem(&pem).ok());
    if logged_cert.as_deref() != Some(leaf_der) {
        return Err(differs("it logs another certificate".to_string()));
    }
    Ok(())
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    //! The fixtures in `testdata/` were made by `scripts/cosign-interop.py` (an independent
    //! implementation with Python's `cryptography`): two test Sigstores (`sigstore-init`) and
    //! keyless layers signing `sha256(b"manifest")` (`sign-keyless --out`), as
    //! `testdata/regenerate.sh` remakes them.
    use super::*;
    use crate::signature::{Check, FoundSignature, SIMPLESIGNING_MEDIA_TYPE};

    const ROOT: &str = include_str!("testdata/trusted_root.json");
    const OTHER_ROOT: &str = include_str!("testdata/other_root.json");
    const LAYER: &str = include_str!("testdata/layer.json");
    const EXPIRED: &str = include_str!("testdata/expired.json");
    const V1_EMAIL: &str = include_str!("testdata/v1_email.json");
    const SERVER_AUTH: &str = include_str!("testdata/server_auth.json");
    const FOREIGN_SIGNATURE: &str = include_str!("testdata/foreign_signature.json");
    const NO_SCT: &str = include_str!("testdata/no_sct.json");
    const BAD_SCT: &str = include_str!("testdata/bad_sct.json");
    const SUBJECT: &str =
        "https://github.com/acme/packets/.github/workflows/release.yml@refs/heads/main";
    const ISSUER: &str = "https://token.actions.githubusercontent.com";

    struct Layer {
        payload: Vec<u8>,
        signature: Vec<u8>,
        annotations: BTreeMap<String, String>,
    }

    fn layer(text: &str) -> Layer {
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(json["annotations"].clone()).unwrap();
        Layer {
            payload: json["payload"].as_str().unwrap().as_bytes().to_vec(),
            signature: b64(&annotations[crate::signature::SIGNATURE_ANNOTATION]).unwrap(),
            annotations,
        }
    }

    fn root(text: &str) -> TrustedRoot {
        TrustedRoot::from_json(text.as_bytes(), "test root").unwrap()
    }

    fn verify_layer(root: &TrustedRoot, l: &Layer) -> Result<Certified, KeylessError> {
        verify(root, &l.payload, &l.signature, &l.annotations)
    }

    /// `base`'s JSON with `key` taken from `from`.
    fn mixed(base: &str, from: &str, key: &str) -> TrustedRoot {
        let mut json: serde_json::Value = serde_json::from_str(base).unwrap();
        let other: serde_json::Value = serde_json::from_str(from).unwrap();
        json[key] = other[key].clone();
        root(&json.to_string())
    }

    /// The layer with its bundle's entry edited by `edit`.
    fn with_entry(l: &Layer, edit: impl Fn(&mut serde_json::Value)) -> Layer {
        let mut bundle: serde_json::Value =
            serde_json::from_str(&l.annotations[BUNDLE_ANNOTATION]).unwrap();
        edit(&mut bundle["Payload"]);
        let mut annotations = l.annotations.clone();
        annotations.insert(BUNDLE_ANNOTATION.to_string(), bundle.to_string());
        Layer {
            payload: l.payload.clone(),
            signature: l.signature.clone(),
            annotations,
        }
    }

    #[test]
    fn a_keyless_layer_verifies_and_names_its_identity() {
        let certified = verify_layer(&root(ROOT), &layer(LAYER)).unwrap();
        assert_eq!(
            certified.identity,
            Identity {
                issuer: ISSUER.to_string(),
                subject: SUBJECT.to_string()
            }
        );
        assert_eq!(certified.log_index, 4242);
        assert_eq!(certified.identity.signer(), format!("{ISSUER} {SUBJECT}"));
        // Without the chain annotation the trusted root's intermediates complete the path.
        let mut no_chain = layer(LAYER);
        no_chain.annotations.remove(CHAIN_ANNOTATION);
        assert!(verify_layer(&root(ROOT), &no_chain).is_ok());
    }

    #[test]
    fn the_older_issuer_extension_and_an_email_subject_are_read() {
        let certified = verify_layer(&root(ROOT), &layer(V1_EMAIL)).unwrap();
        assert_eq!(
            (
                certified.identity.issuer.as_str(),
                certified.identity.subject.as_str()
            ),
            ("https://accounts.example", "dev@example.com")
        );
    }

    #[test]
    fn a_certificate_from_another_authority_is_refused() {
        // The log is trusted, the certificate authority is another Sigstore's.
        let root = mixed(ROOT, OTHER_ROOT, "certificateAuthorities");
        let err = verify_layer(&root, &layer(LAYER)).unwrap_err();
        assert_eq!(
            err,
            KeylessError::Chain {
                reason: "it was not issued by a certificate authority the trusted root lists"
                    .to_string()
            }
        );
        // An authority whose validFor ended before the signature is not used.
        let mut json: serde_json::Value = serde_json::from_str(ROOT).unwrap();
        json["certificateAuthorities"][0]["validFor"]["end"] = "2001-01-01T00:00:00Z".into();
        let err = verify_layer(&super::tests::root(&json.to_string()), &layer(LAYER)).unwrap_err();
        assert!(
            err.to_string()
                .contains("no certificate authority of the trusted root was valid"),
            "{err}"
        );
    }

    #[test]
    fn the_signed_entry_timestamp_must_be_the_logs() {
        let good = layer(LAYER);
        let moved = with_entry(&good, |e| {
            e["integratedTime"] = (e["integratedTime"].as_i64().unwrap() + 1).into()
        });
        assert_eq!(verify_layer(&root(ROOT), &moved), Err(KeylessError::Set));
        let reindexed = with_entry(&good, |e| e["logIndex"] = 1.into());
        assert_eq!(
            verify_layer(&root(ROOT), &reindexed),
            Err(KeylessError::Set)
        );
        // A log the root does not list.
        let other_log = mixed(ROOT, OTHER_ROOT, "tlogs");
        assert!(matches!(
            verify_layer(&other_log, &good),
            Err(KeylessError::UnknownLog { .. })
        ));
        let mut unbundled = layer(LAYER);
        unbundled.annotations.remove(BUNDLE_ANNOTATION);
        assert_eq!(
            verify_layer(&root(ROOT), &unbundled),
            Err(KeylessError::NoBundle)
        );
    }

    #[test]
    fn a_certificate_expired_when_logged_is_refused() {
        let err = verify_layer(&root(ROOT), &layer(EXPIRED)).unwrap_err();
        assert!(matches!(err, KeylessError::Expired { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("was not valid when the signature was logged")
        );
    }

    #[test]
    fn a_certificate_not_for_code_signing_is_refused() {
        assert_eq!(
            verify_layer(&root(ROOT), &layer(SERVER_AUTH)),
            Err(KeylessError::NotCodeSigning)
        );
    }

    #[test]
    fn the_certificate_must_carry_an_sct_from_a_trusted_ct_log() {
        let err = verify_layer(&root(ROOT), &layer(NO_SCT)).unwrap_err();
        assert_eq!(
            err,
            KeylessError::Sct {
                reason: "the certificate embeds none".to_string()
            }
        );
        let err = verify_layer(&root(ROOT), &layer(BAD_SCT)).unwrap_err();
        assert_eq!(
            err,
            KeylessError::Sct {
                reason: "its SCT's signature does not verify with the CT log's key".to_string()
            }
        );
        let other_ct = mixed(ROOT, OTHER_ROOT, "ctlogs");
        let err = verify_layer(&other_ct, &layer(LAYER)).unwrap_err();
        assert!(
            err.to_string()
                .contains("from a CT log the trusted root does not list"),
            "{err}"
        );
        // A trusted root listing no CT log asks for no SCT.
        let mut json: serde_json::Value = serde_json::from_str(ROOT).unwrap();
        json["ctlogs"] = serde_json::json!([]);
        assert!(verify_layer(&super::tests::root(&json.to_string()), &layer(NO_SCT)).is_ok());
    }

    #[test]
    fn a_logged_signature_by_another_key_than_the_certificates_is_refused() {
        assert_eq!(
            verify_layer(&root(ROOT), &layer(FOREIGN_SIGNATURE)),
            Err(KeylessError::Signature)
        );
    }

    #[test]
    fn the_rekor_body_must_name_this_payload_signature_and_certificate() {
        let good = layer(LAYER);
        let other_payload = Layer {
            payload: b"{}".to_vec(),
            signature: good.signature.clone(),
            annotations: good.annotations.clone(),
        };
        let err = verify_layer(&root(ROOT), &other_payload).unwrap_err();
        assert!(
            matches!(&err, KeylessError::Body { reason } if reason.contains("the payload's is sha256:")),
            "{err}"
        );
        let other = layer(EXPIRED);
        let other_signature = Layer {
            payload: good.payload.clone(),
            signature: other.signature.clone(),
            annotations: good.annotations.clone(),
        };
        assert_eq!(
            verify_layer(&root(ROOT), &other_signature),
            Err(KeylessError::Body {
                reason: "it logs another signature".to_string()
            })
        );
        let mut other_cert = layer(LAYER);
        other_cert.annotations.insert(
            CERTIFICATE_ANNOTATION.to_string(),
            other.annotations[CERTIFICATE_ANNOTATION].clone(),
        );
        assert!(verify_layer(&root(ROOT), &other_cert).is_err());
    }

    #[test]
    fn the_set_signs_canonical_json() {
        let entry = RekorPayload {
            body: "Ym9keQ==".to_string(),
            integrated_time: 1700000000,
            log_index: 7,
            log_id: "ab".to_string(),
        };
        assert_eq!(
            String::from_utf8(canonical(&entry).unwrap()).unwrap(),
            r#"{"body":"Ym9keQ==","integratedTime":1700000000,"logID":"ab","logIndex":7}"#
        );
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_decode("0g"), None);
        assert_eq!(hex_decode("abc"), None);
    }

    #[test]
    fn unusable_trusted_roots_are_named() {
        let err = TrustedRoot::from_json(b"{}", "root.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("root.json") && err.contains("no certificate authority"),
            "{err}"
        );
        let err = TrustedRoot::from_json(b"null", "root.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a trusted root JSON document"), "{err}");
        let mut json: serde_json::Value = serde_json::from_str(ROOT).unwrap();
        json["tlogs"][0]["publicKey"]["rawBytes"] = "AAAA".into();
        let err = TrustedRoot::from_json(json.to_string().as_bytes(), "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tlogs[0].publicKey"), "{err}");
        let err = TrustedRoot::from_file(std::path::Path::new("/nonexistent/trusted_root.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/trusted_root.json"), "{err}");
    }

    #[test]
    fn signature_checks_report_keyless_layers() {
        let l = layer(LAYER);
        let digest = Digest::of(b"manifest");
        let found = FoundSignature {
            descriptor: crate::artifact::Descriptor {
                media_type: SIMPLESIGNING_MEDIA_TYPE.to_string(),
                digest: Digest::of(&l.payload).to_string(),
                size: l.payload.len() as u64,
                annotations: l.annotations.clone(),
            },
            payload: l.payload.clone(),
        };
        let claimed = format!("{SUBJECT} (issuer {ISSUER})");
        assert_eq!(
            found.check(&digest, &[]),
            Check::NoTrustedRoot {
                claimed: claimed.clone()
            }
        );
        assert_eq!(
            found.check_with(&digest, &[], Some(&root(ROOT))),
            Check::Certified {
                issuer: ISSUER.to_string(),
                subject: SUBJECT.to_string()
            }
        );
        assert!(matches!(
            found.check_with(&digest, &[], Some(&root(OTHER_ROOT))),
            Check::Uncertified { claimed: c, .. } if c == claimed
        ));
        // The digest is checked first, as for key-based signatures.
        assert!(matches!(
            found.check_with(&Digest::of(b"other"), &[], Some(&root(ROOT))),
            Check::OtherDigest { .. }
        ));
    }
}
