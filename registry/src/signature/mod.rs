//! Shard signatures in cosign's key-based scheme, so cosign and arkham read each other's: the
//! manifest digest `sha256:HEX` is signed in a "simple signing" JSON payload, stored as a layer
//! (`application/vnd.dev.cosign.simplesigning.v1+json`, the DER ECDSA P-256 SHA-256 signature in
//! base64 in the `dev.cosignproject.cosign/signature` annotation) of an OCI image manifest
//! tagged `sha256-HEX.sig` in the same repository. Each signer adds a layer.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use arkham_registry::digest::Digest;
//! use arkham_registry::signature::{self, Check, SigningKey};
//! let key = SigningKey::generate()?;
//! let digest = Digest::of(b"a manifest");
//! let layer = signature::FoundSignature::new(&key, "ghcr.io/org/packets", &digest)?;
//! assert_eq!(
//!     layer.check(&digest, &[key.public_key().clone()]),
//!     Check::Verified { fingerprint: key.public_key().fingerprint() }
//! );
//! assert_eq!(signature::signature_tag(&digest), format!("sha256-{}.sig", digest.hex()));
//! # Ok(()) }
//! ```

mod encrypted;
pub mod keyless;
mod keys;

pub use keyless::{KeylessError, TrustedRoot, TrustedRootError};
pub use keys::{KeyError, PublicKey, SigningKey};

use crate::artifact::{Descriptor, ImageManifest, MANIFEST_MEDIA_TYPE, to_json};
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::repo::Repo;
use base64::Engine as _;
use std::collections::BTreeMap;

/// The media type of a signature layer (its content: the payload).
pub const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The config media type cosign writes for signature manifests.
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Signature layers read at most: more is not a signature manifest anyone made by hand.
const MAX_LAYERS: usize = 64;
/// A payload is a few hundred bytes; larger ones are not downloaded.
const MAX_PAYLOAD: u64 = 64 * 1024;

/// The tag signatures of `digest` live under: `sha256-HEX.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// Why signing or reading signatures failed.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// Talking to the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// What is under the signature tag is not a signature manifest.
    #[error(
        "{location}:{tag} is not a cosign signature manifest: {reason}; delete that tag and sign again"
    )]
    Malformed {
        /// The repository.
        location: String,
        /// The signature tag.
        tag: String,
        /// What is wrong.
        reason: String,
    },
}

/// The simple-signing payload.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Payload {
    critical: Critical,
    #[serde(default)]
    optional: Option<serde_json::Value>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The payload signing `digest` of `docker_reference` (`host/repository`).
pub fn payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    to_json(&Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: docker_reference.to_string(),
            },
            image: Image {
                docker_manifest_digest: digest.to_string(),
            },
            kind: PAYLOAD_TYPE.to_string(),
        },
        optional: None,
    })
}

/// What a signature layer says about a digest, checked against trusted keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Check {
    /// A trusted key signed this digest.
    Verified {
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// The payload names another manifest digest.
    OtherDigest {
        /// The digest it covers.
        covers: String,
    },
    /// Well-formed, but no trusted key made it.
    Untrusted,
    /// Not a readable signature.
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// A keyless signature that verifies against the trusted root: its certificate chains to
    /// a certificate authority there, and a transparency log there logged it while the
    /// certificate was valid. Whether the identity is trusted is the policy's call.
    Certified {
        /// The certificate's OIDC issuer.
        issuer: String,
        /// The certificate's subject (email or URI).
        subject: String,
    },
    /// A keyless signature that does not verify against the trusted root.
    Uncertified {
        /// The identity its certificate claims (empty when unreadable).
        claimed: String,
        /// Why it does not verify.
        reason: String,
    },
    /// A keyless signature not checked, because no trusted root is configured.
    NoTrustedRoot {
        /// The identity its certificate claims (empty when unreadable).
        claimed: String,
    },
}

/// One signature layer: the payload and the annotation's signature.
#[derive(Debug, Clone)]
pub struct FoundSignature {
    /// The layer's descriptor as the manifest has it.
    pub descriptor: Descriptor,
    /// The payload (verified against the descriptor's digest).
    pub payload: Vec<u8>,
}

impl FoundSignature {
    /// A new signature of `digest` by `key`.
    pub fn new(
        key: &SigningKey,
        docker_reference: &str,
        digest: &Digest,
    ) -> Result<Self, KeyError> {
        let payload = payload(docker_reference, digest);
        let signature = key.sign(&payload)?;
        Ok(Self {
            descriptor: Descriptor {
                media_type: SIMPLESIGNING_MEDIA_TYPE.to_string(),
                digest: Digest::of(&payload).to_string(),
                size: payload.len() as u64,
                annotations: BTreeMap::from([(
                    SIGNATURE_ANNOTATION.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(signature),
                )]),
            },
            payload,
        })
    }

    /// The docker reference the payload names, when it parses.
    pub fn docker_reference(&self) -> Option<String> {
        serde_json::from_slice::<Payload>(&self.payload)
            .ok()
            .map(|p| p.critical.identity.docker_reference)
    }

    /// Checks this signature of `digest` against `keys` (a keyless one is not verified).
    pub fn check(&self, digest: &Digest, keys: &[PublicKey]) -> Check {
        self.check_with(digest, keys, None)
    }

    /// Checks this signature of `digest` against `keys`, and a keyless one against `root`.
    pub fn check_with(
        &self,
        digest: &Digest,
        keys: &[PublicKey],
        root: Option<&TrustedRoot>,
    ) -> Check {
        let malformed = |reason: &str| Check::Malformed {
            reason: reason.to_string(),
        };
        let Some(text) = self.descriptor.annotations.get(SIGNATURE_ANNOTATION) else {
            return malformed("the layer has no `dev.cosignproject.cosign/signature` annotation");
        };
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(text.trim()) else {
            return malformed("its signature is not base64");
        };
        if !is_der_ecdsa_signature(&signature) {
            return malformed("its signature is not a DER ECDSA signature");
        }
        let payload: Payload = match serde_json::from_slice(&self.payload) {
            Ok(p) => p,
            Err(_) => return malformed("its payload is not a simple-signing JSON document"),
        };
        if payload.critical.kind != PAYLOAD_TYPE {
            return malformed("its payload's type is not `cosign container image signature`");
        }
        if payload.critical.image.docker_manifest_digest != digest.to_string() {
            return Check::OtherDigest {
                covers: payload.critical.image.docker_manifest_digest,
            };
        }
        if let Some(key) = keys.iter().find(|k| k.verifies(&self.payload, &signature)) {
            return Check::Verified {
                fingerprint: key.fingerprint(),
            };
        }
        let annotations = &self.descriptor.annotations;
        if !keyless::is_keyless(annotations) {
            return Check::Untrusted;
        }
        let claimed = keyless::claimed_identity(annotations)
            .map(|i| i.to_string())
            .unwrap_or_default();
        let Some(root) = root else {
            return Check::NoTrustedRoot { claimed };
        };
        match keyless::verify(root, &self.payload, &signature, annotations) {
            Ok(certified) => Check::Certified {
                issuer: certified.identity.issuer,
                subject: certified.identity.subject,
            },
            Err(e) => Check::Uncertified {
                claimed,
                reason: e.to_string(),
            },
        }
    }
}

/// `SEQUENCE { INTEGER r, INTEGER s }`, nothing after.
fn is_der_ecdsa_signature(bytes: &[u8]) -> bool {
    use der::Reader as _;
    let Ok(mut reader) = der::SliceReader::new(bytes) else {
        return false;
    };
    let parsed = reader.sequence(|r| {
        let _: der::asn1::UintRef<'_> = r.decode()?;
        let _: der::asn1::UintRef<'_> = r.decode()?;
        Ok(())
    });
    parsed.is_ok() && reader.finish(()).is_ok()
}

/// The signatures stored for one manifest digest.
#[derive(Debug, Clone)]
pub struct Signatures {
    /// `sha256-HEX.sig`.
    pub tag: String,
    /// The signature manifest as fetched (for the offline cache).
    pub manifest_bytes: Vec<u8>,
    /// Its digest.
    pub manifest_digest: Digest,
    /// The signature manifest.
    pub manifest: ImageManifest,
    /// The simple-signing layers, with their payloads.
    pub layers: Vec<FoundSignature>,
}

impl Signatures {
    /// Each layer checked against `keys`.
    pub fn check(&self, digest: &Digest, keys: &[PublicKey]) -> Vec<Check> {
        self.check_with(digest, keys, None)
    }

    /// Each layer checked against `keys`, and keyless ones against `root`.
    pub fn check_with(
        &self,
        digest: &Digest,
        keys: &[PublicKey],
        root: Option<&TrustedRoot>,
    ) -> Vec<Check> {
        self.layers
            .iter()
            .map(|l| l.check_with(digest, keys, root))
            .collect()
    }
}

/// The signatures of `digest` in `repo`; `None` when there is no signature tag.
pub async fn fetch(repo: &Repo, digest: &Digest) -> Result<Option<Signatures>, SignatureError> {
    let tag = signature_tag(digest);
    let malformed = |reason: String| SignatureError::Malformed {
        location: repo.location(),
        tag: tag.clone(),
        reason,
    };
    let (manifest_bytes, manifest_digest) = match repo.manifest(&tag).await {
        Ok(found) => found,
        Err(RegistryError::NotFound { .. } | RegistryError::NotCached { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| malformed(format!("not an OCI image manifest ({e})")))?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(malformed(format!(
            "{} layers, more than the {MAX_LAYERS} read",
            manifest.layers.len()
        )));
    }
    let mut layers = Vec::new();
    for descriptor in &manifest.layers {
        // Other layer types (a Sigstore bundle, an attestation) are not key-based signatures.
        if descriptor.media_type != SIMPLESIGNING_MEDIA_TYPE {
            continue;
        }
        if descriptor.size > MAX_PAYLOAD {
            return Err(malformed(format!(
                "a payload of {} bytes, more than the {MAX_PAYLOAD} read",
                descriptor.size
            )));
        }
        let payload = repo.blob(descriptor, "a signature payload").await?;
        layers.push(FoundSignature {
            descriptor: descriptor.clone(),
            payload,
        });
    }
    Ok(Some(Signatures {
        tag,
        manifest_bytes,
        manifest_digest,
        manifest,
        layers,
    }))
}

/// What [`sign`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Signed {
    /// The manifest digest signed.
    pub digest: Digest,
    /// `location:sha256-HEX.sig`.
    pub signature_ref: String,
    /// The signing key's fingerprint.
    pub fingerprint: String,
    /// Signatures (layers) the tag holds now.
    pub signatures: usize,
    /// Whether this key had signed the digest already (nothing was pushed).
    pub already_signed: bool,
}

/// Signs `digest` (a manifest in `repo`) with `key`, adding a layer to the signature manifest
/// (created if there is none; the other signers' layers are kept).
pub async fn sign(
    repo: &Repo,
    digest: &Digest,
    key: &SigningKey,
) -> Result<Signed, SignatureError> {
    let tag = signature_tag(digest);
    let signature_ref = format!("{}:{tag}", repo.location());
    let fingerprint = key.public_key().fingerprint();
    let existing = fetch(repo, digest).await?;
    let mut layers = existing
        .as_ref()
        .map(|s| s.manifest.layers.clone())
        .unwrap_or_default();
    if let Some(existing) = &existing
        && existing
            .check(digest, std::slice::from_ref(key.public_key()))
            .iter()
            .any(|c| matches!(c, Check::Verified { .. }))
    {
        return Ok(Signed {
            digest: digest.clone(),
            signature_ref,
            fingerprint,
            signatures: existing.layers.len(),
            already_signed: true,
        });
    }
    let layer = FoundSignature::new(key, &docker_reference(repo), digest)?;
    repo.push_blob(&layer.payload).await?;
    layers.push(layer.descriptor);
    let config = to_json(&serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
        },
    }));
    repo.push_blob(&config).await?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
        artifact_type: None,
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.to_string(),
            digest: Digest::of(&config).to_string(),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers,
        annotations: BTreeMap::new(),
    };
    repo.push_manifest(&tag, &to_json(&manifest)).await?;
    Ok(Signed {
        digest: digest.clone(),
        signature_ref,
        fingerprint,
        signatures: manifest
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLESIGNING_MEDIA_TYPE)
            .count(),
        already_signed: false,
    })
}

/// The `docker-reference` a signature made in `repo` names: `host/repository`, as cosign writes
/// it (a local layout: `oci:DIR/repository`).
pub fn docker_reference(repo: &Repo) -> String {
    repo.location()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_what_they_found() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let trusted = [key.public_key().clone()];
        let digest = Digest::of(b"v1");
        let layer = FoundSignature::new(&key, "r/p", &digest).unwrap();
        assert!(matches!(
            layer.check(&digest, &trusted),
            Check::Verified { .. }
        ));
        assert_eq!(
            layer.check(&Digest::of(b"v2"), &trusted),
            Check::OtherDigest {
                covers: digest.to_string()
            }
        );
        let by_other = FoundSignature::new(&other, "r/p", &digest).unwrap();
        assert_eq!(by_other.check(&digest, &trusted), Check::Untrusted);
        let mut corrupt = layer.clone();
        corrupt.descriptor.annotations.insert(
            SIGNATURE_ANNOTATION.to_string(),
            "bm90IGEgc2lnbmF0dXJl".to_string(),
        );
        assert!(matches!(
            corrupt.check(&digest, &trusted),
            Check::Malformed { .. }
        ));
        let text = String::from_utf8(layer.payload.clone()).unwrap();
        assert!(
            text.contains(&format!("\"docker-manifest-digest\":\"{digest}\""))
                && text.contains("\"docker-reference\":\"r/p\"")
                && text.contains(PAYLOAD_TYPE),
            "{text}"
        );
        assert_eq!(layer.docker_reference().as_deref(), Some("r/p"));
    }

    #[tokio::test]
    async fn signing_twice_with_two_keys_keeps_both_in_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::reference::Location::Layout {
            dir: dir.path().to_path_buf(),
            repository: "packets".to_string(),
        };
        let repo = Repo::open(&location, Default::default()).unwrap();
        let digest = Digest::of(b"manifest");
        assert!(fetch(&repo, &digest).await.unwrap().is_none());
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        let first = sign(&repo, &digest, &a).await.unwrap();
        assert_eq!((first.signatures, first.already_signed), (1, false));
        let again = sign(&repo, &digest, &a).await.unwrap();
        assert!(again.already_signed);
        let second = sign(&repo, &digest, &b).await.unwrap();
        assert_eq!(second.signatures, 2);
        let found = fetch(&repo, &digest).await.unwrap().unwrap();
        let keys = [a.public_key().clone(), b.public_key().clone()];
        let checks = found.check(&digest, &keys);
        assert_eq!(
            checks,
            vec![
                Check::Verified {
                    fingerprint: a.public_key().fingerprint()
                },
                Check::Verified {
                    fingerprint: b.public_key().fingerprint()
                },
            ]
        );
    }
}
