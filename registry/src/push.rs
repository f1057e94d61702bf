//! Pushing a component as a CNCF Wasm OCI artifact: layer, config, then the manifest under the
//! version tag. An existing version is never overwritten unless forced.

use crate::artifact::{self, ComponentInfo, annotations};
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::repo::Repo;
use std::collections::BTreeMap;
use std::path::Path;

/// The component to push: in memory, or a file streamed from disk (memory then stays at one
/// upload chunk whatever the component's size).
#[derive(Debug, Clone, Copy)]
pub enum Component<'a> {
    /// The packaged bytes.
    Bytes(&'a [u8]),
    /// A file holding the packaged component.
    File(&'a Path),
}

impl<'a> From<&'a [u8]> for Component<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Component::Bytes(bytes)
    }
}

/// What to push.
#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    /// The packaged component (manifest embedded).
    pub component: Component<'a>,
    /// The shard's name (the layer's title is `{name}.wasm`).
    pub name: &'a str,
    /// The version; also the tag.
    pub version: &'a semver::Version,
    /// Imports and exports for the config.
    pub interfaces: ComponentInfo,
    /// A shard's manifest, for its `dev.arkham.shard.*` annotations (a WIT package has none).
    pub shard: Option<ShardAnnotations>,
    /// `org.opencontainers.image.description`, when there is one.
    pub description: Option<String>,
    /// `org.opencontainers.image.licenses`, when known.
    pub licenses: Option<String>,
    /// `org.opencontainers.image.source`: only when the publisher says where the source is.
    pub source: Option<String>,
    /// RFC 3339 creation time.
    pub created: &'a str,
    /// Overwrite an existing tag.
    pub force: bool,
}

/// What a shard's manifest says of it, for the annotations a frame reads before it downloads the
/// component (see [`crate::pull::Artifact::shard_manifest`]).
#[derive(Debug, Clone)]
pub struct ShardAnnotations {
    /// The frame versions it runs on (`requires_frame`).
    pub requires_frame: String,
    /// The services it declares.
    pub services: Vec<String>,
    /// The whole manifest as TOML.
    pub manifest: String,
}

impl PushRequest<'_> {
    /// Every manifest annotation of the artifact.
    fn annotations(&self) -> BTreeMap<String, String> {
        let mut notes = BTreeMap::from([
            (annotations::TITLE.to_string(), self.name.to_string()),
            (annotations::VERSION.to_string(), self.version.to_string()),
            (annotations::CREATED.to_string(), self.created.to_string()),
        ]);
        let optional = [
            (annotations::DESCRIPTION, &self.description),
            (annotations::LICENSES, &self.licenses),
            (annotations::SOURCE, &self.source),
        ];
        for (key, value) in optional {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                notes.insert(key.to_string(), value.clone());
            }
        }
        if let Some(shard) = &self.shard {
            notes.extend([
                (annotations::SHARD_NAME.to_string(), self.name.to_string()),
                (
                    annotations::SHARD_REQUIRES_FRAME.to_string(),
                    shard.requires_frame.clone(),
                ),
                (
                    annotations::SHARD_SERVICES.to_string(),
                    shard.services.join(","),
                ),
                (
                    annotations::SHARD_MANIFEST.to_string(),
                    shard.manifest.clone(),
                ),
            ]);
        }
        notes
    }
}

/// What was pushed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// `location:version`.
    pub reference: String,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The component's digest.
    pub component_digest: Digest,
    /// Whether an existing tag was replaced.
    pub replaced: bool,
}

/// Pushes `request` to `repo`.
pub async fn push(repo: &Repo, request: PushRequest<'_>) -> Result<Pushed, RegistryError> {
    let tag = request.version.to_string();
    let reference = format!("{}:{tag}", repo.location());
    let existing = match repo.tags().await {
        Ok(tags) => tags.contains(&tag),
        Err(RegistryError::NotFound { .. }) => false,
        Err(e) => return Err(e),
    };
    if existing && !request.force {
        return Err(RegistryError::TagExists { reference });
    }
    let notes = request.annotations();
    // The layer first: its digest and size go into the config and manifest.
    let (component_digest, size) = match request.component {
        Component::Bytes(bytes) => (repo.push_blob(bytes).await?, bytes.len() as u64),
        Component::File(path) => repo.push_blob_file(path).await?,
    };
    let (manifest, config) = artifact::build_for(
        &component_digest,
        size,
        &format!("{}.wasm", request.name),
        request.interfaces,
        request.created,
        notes,
    );
    repo.push_blob(&config).await?;
    let manifest_digest = repo
        .push_manifest(&tag, &artifact::to_json(&manifest))
        .await?;
    Ok(Pushed {
        reference,
        manifest_digest,
        component_digest,
        replaced: existing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        version: &'a semver::Version,
        shard: Option<ShardAnnotations>,
    ) -> PushRequest<'a> {
        PushRequest {
            component: Component::Bytes(b""),
            name: "packets",
            version,
            interfaces: ComponentInfo::default(),
            shard,
            description: Some(String::new()),
            licenses: None,
            source: Some("https://example.org/packets".to_string()),
            created: "2026-12-02T00:00:00Z",
            force: false,
        }
    }

    #[test]
    fn a_shards_manifest_becomes_its_annotations() {
        let version = semver::Version::new(0, 1, 2);
        let shard = ShardAnnotations {
            requires_frame: "^0.1".to_string(),
            services: vec!["database".to_string(), "events".to_string()],
            manifest: "name = \"packets\"\n".to_string(),
        };
        let notes = request(&version, Some(shard)).annotations();
        assert_eq!(notes[annotations::TITLE], "packets");
        assert_eq!(notes[annotations::VERSION], "0.1.2");
        assert_eq!(notes[annotations::SHARD_NAME], "packets");
        assert_eq!(notes[annotations::SHARD_REQUIRES_FRAME], "^0.1");
        assert_eq!(notes[annotations::SHARD_SERVICES], "database,events");
        assert_eq!(notes[annotations::SHARD_MANIFEST], "name = \"packets\"\n");
        assert_eq!(notes[annotations::SOURCE], "https://example.org/packets");
        // An empty description is no description.
        assert!(!notes.contains_key(annotations::DESCRIPTION));
    }

    #[test]
    fn what_is_not_a_shard_carries_no_shard_annotations() {
        let version = semver::Version::new(0, 2, 0);
        let notes = request(&version, None).annotations();
        assert!(
            notes.keys().all(|k| !k.starts_with("dev.arkham.")),
            "{notes:?}"
        );
        assert_eq!(notes[annotations::CREATED], "2026-12-02T00:00:00Z");
    }
}
