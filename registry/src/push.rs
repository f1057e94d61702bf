//! Pushing a component as a CNCF Wasm OCI artifact: layer, config, then the manifest under the
//! version tag. An existing version is never overwritten unless forced.

use crate::artifact::{self, ComponentInfo, annotations};
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::repo::Repo;
use std::collections::BTreeMap;

/// What to push.
#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    /// The packaged component (manifest embedded).
    pub component: &'a [u8],
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
    let (manifest, config) = artifact::build(
        request.component,
        &format!("{}.wasm", request.name),
        request.interfaces,
        request.created,
        notes,
    );
    let component_digest = repo.push_blob(request.component).await?;
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
