//! Pulling: resolve a reference to one manifest, read the manifest and config (small), check the
//! artifact's shape, and only then download the component, verified by digest and size.

use crate::artifact::{
    ACCEPTED_LAYER_MEDIA_TYPES, Descriptor, ImageManifest, WASM_CONFIG_MEDIA_TYPE, WasmConfig,
    annotations,
};
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::reference::{Selector, ShardRef};
use crate::repo::Repo;
use crate::resolve;

/// What a reference resolved to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resolved {
    /// The tag or manifest digest to fetch.
    pub target: String,
    /// The version, when the tag is one.
    pub version: Option<semver::Version>,
}

/// Resolves `shard_ref`'s selector against the repository's tags.
pub async fn resolve(repo: &Repo, shard_ref: &ShardRef) -> Result<Resolved, RegistryError> {
    match &shard_ref.selector {
        Selector::Tag(tag) => Ok(Resolved {
            target: tag.clone(),
            version: semver::Version::parse(tag).ok(),
        }),
        Selector::Digest(d) => Ok(Resolved {
            target: d.to_string(),
            version: None,
        }),
        selector => {
            let tags = repo.tags().await?;
            let picked = resolve::pick(&repo.location(), &tags, selector).ok_or_else(|| {
                RegistryError::Protocol {
                    registry: repo.location(),
                    message: "internal: exact selector reached resolution".to_string(),
                }
            })??;
            Ok(Resolved {
                target: picked.to_string(),
                version: Some(picked),
            })
        }
    }
}

/// A Wasm artifact's manifest and config, checked, before its component is downloaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Artifact {
    /// `location:tag` or `location@digest`.
    pub reference: String,
    /// The manifest's digest (what `--locked` pins).
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The Wasm config, when the config has the Wasm media type.
    pub config: Option<WasmConfig>,
    /// The one layer: the component.
    pub layer: Descriptor,
    /// The version, from the tag or the version annotation.
    pub version: Option<String>,
    /// The manifest as fetched, for the offline cache.
    #[serde(skip)]
    pub manifest_bytes: Vec<u8>,
    /// The config as fetched, for the offline cache.
    #[serde(skip)]
    pub config_bytes: Vec<u8>,
}

impl Artifact {
    /// The layer's (the component's) digest.
    pub fn component_digest(&self) -> Result<Digest, RegistryError> {
        self.layer
            .digest
            .parse()
            .map_err(|_| RegistryError::NotAShard {
                reference: self.reference.clone(),
                reason: format!("its layer digest `{}` is not sha256", self.layer.digest),
            })
    }

    /// The shard manifest (TOML) mirrored in the annotations, if the pusher put it there.
    pub fn shard_manifest(&self) -> Option<&str> {
        self.manifest
            .annotations
            .get(annotations::SHARD_MANIFEST)
            .map(String::as_str)
    }
}

/// Fetches and checks the manifest and config of `target` (a tag or a digest).
pub async fn fetch_artifact(repo: &Repo, target: &str) -> Result<Artifact, RegistryError> {
    let reference = if target.starts_with("sha256:") {
        format!("{}@{target}", repo.location())
    } else {
        format!("{}:{target}", repo.location())
    };
    let not_shard = |reason: String| RegistryError::NotAShard {
        reference: reference.clone(),
        reason,
    };
    let (bytes, manifest_digest) = repo.manifest(target).await?;
    if target.starts_with("sha256:") && manifest_digest.to_string() != target {
        return Err(RegistryError::DigestMismatch {
            what: "the manifest".to_string(),
            location: repo.location(),
            expected: target.to_string(),
            actual: manifest_digest.to_string(),
        });
    }
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| not_shard(format!("its manifest is not an OCI image manifest ({e})")))?;
    if manifest.layers.len() != 1 {
        return Err(not_shard(format!(
            "it has {} layers; a Wasm artifact has exactly one `application/wasm` layer",
            manifest.layers.len()
        )));
    }
    let layer = manifest.layers[0].clone();
    if !ACCEPTED_LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str()) {
        return Err(not_shard(format!(
            "its layer has media type `{}`, not `application/wasm`",
            layer.media_type
        )));
    }
    let config_bytes = repo.blob(&manifest.config, "the config").await?;
    let config = if manifest.config.media_type == WASM_CONFIG_MEDIA_TYPE {
        Some(
            serde_json::from_slice::<WasmConfig>(&config_bytes)
                .map_err(|e| not_shard(format!("its Wasm config is not valid ({e})")))?,
        )
    } else {
        None
    };
    let version = semver::Version::parse(target)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| manifest.annotations.get(annotations::VERSION).cloned());
    let artifact = Artifact {
        reference,
        manifest_digest,
        manifest,
        config,
        layer,
        version,
        manifest_bytes: bytes,
        config_bytes,
    };
    artifact.component_digest()?;
    Ok(artifact)
}

/// Downloads the component of `artifact`, verified against the layer's digest and size.
pub async fn fetch_component(repo: &Repo, artifact: &Artifact) -> Result<Vec<u8>, RegistryError> {
    repo.blob(&artifact.layer, "the component").await
}

/// Like [`fetch_component`], calling `progress(received, total)` as bytes arrive.
pub async fn fetch_component_with_progress(
    repo: &Repo,
    artifact: &Artifact,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Vec<u8>, RegistryError> {
    repo.blob_with_progress(&artifact.layer, "the component", progress)
        .await
}

/// Streams the component of `artifact` into `store` (never whole in memory), verified against
/// the layer's digest and size, calling `progress(received, total)` as bytes arrive; answers its
/// digest. A failed download leaves nothing in the store.
pub async fn fetch_component_to_store(
    repo: &Repo,
    artifact: &Artifact,
    store: &crate::store::BlobStore,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Digest, RegistryError> {
    repo.blob_to_store(&artifact.layer, "the component", store, progress)
        .await
}
