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
    /// Manifest annotations beyond title/version/created.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 creation time.
    pub created: &'a str,
    /// Overwrite an existing tag.
    pub force: bool,
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
    let mut notes = request.annotations;
    notes.insert(annotations::TITLE.to_string(), request.name.to_string());
    notes.insert(annotations::VERSION.to_string(), tag.clone());
    notes.insert(
        annotations::CREATED.to_string(),
        request.created.to_string(),
    );
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
