//! A local OCI Image Layout folder as a registry: `oci-layout`, `index.json`, `blobs/sha256/…`.
//!
//! One folder per repository (`oci:DIR/packets` is the layout `DIR/packets`), tags in `index.json`
//! as `org.opencontainers.image.ref.name`, so `skopeo copy oci:DIR/packets:0.1.0 …` reads it too.
//! Every file is written to a temporary name, synced and renamed: a reader sees a whole file.

use crate::artifact::{Descriptor, INDEX_MEDIA_TYPE, annotations};
use crate::digest::Digest;
use crate::error::RegistryError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fsutil::write_atomically;

/// The `index.json` of a layout.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// One repository stored as an OCI Image Layout folder.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout at `root` (created on first push).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
        let path = path.to_path_buf();
        move |source| RegistryError::Io { path, source }
    }

    fn index(&self) -> Result<Option<Index>, RegistryError> {
        let path = self.root.join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| RegistryError::Layout {
                        path: self.root.clone(),
                        reason: format!("index.json is not valid ({e})"),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    fn not_found(&self, what: &str) -> RegistryError {
        RegistryError::NotFound {
            what: what.to_string(),
            location: format!("oci:{}", self.root.display()),
        }
    }

    /// Every tag.
    pub fn tags(&self) -> Result<Vec<String>, RegistryError> {
        let Some(index) = self.index()? else {
            return Err(self.not_found("the repository (no index.json)"));
        };
        Ok(index
            .manifests
            .iter()
            .filter_map(|m| m.annotations.get(annotations::REF_NAME).cloned())
            .collect())
    }

    /// The manifest descriptor tagged `tag`.
    pub fn resolve_tag(&self, tag: &str) -> Result<Descriptor, RegistryError> {
        let index = self
            .index()?
            .ok_or_else(|| self.not_found("the repository (no index.json)"))?;
        index
            .manifests
            .into_iter()
            .find(|m| m.annotations.get(annotations::REF_NAME).map(String::as_str) == Some(tag))
            .ok_or_else(|| self.not_found(&format!("tag {tag}")))
    }

    /// The file of blob `digest` (which may not exist).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        let digest: Digest =
            digest
                .parse()
                .map_err(|e: crate::digest::InvalidDigest| RegistryError::Layout {
                    path: self.root.clone(),
                    reason: e.to_string(),
                })?;
        Ok(self.root.join("blobs").join("sha256").join(digest.hex()))
    }

    /// The bytes of blob `digest`, unverified (the caller verifies against the descriptor).
    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let path = self.blob_path(digest)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(self.not_found(&format!("blob {digest}")))
            }
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Stores a blob (content-addressed; an existing blob is kept).
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let path = self.blob_path(&digest.to_string())?;
        if !path.is_file() {
            write_atomically(&path, bytes, 0o644).map_err(self.io(&path))?;
        }
        Ok(digest)
    }

    /// Stores the content of the file at `path` as a blob without reading it into memory.
    pub fn put_blob_file(&self, path: &Path) -> Result<Digest, RegistryError> {
        // The layout's `blobs/sha256/<hex>` is the blob store's shape.
        Ok(crate::store::BlobStore::new(&self.root).put_file(path)?)
    }

    /// Stores `manifest` and points `tag` at it, replacing the tag if it exists.
    pub fn put_manifest(
        &self,
        tag: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Result<Digest, RegistryError> {
        let layout_file = self.root.join("oci-layout");
        if !layout_file.is_file() {
            write_atomically(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)
                .map_err(self.io(&layout_file))?;
        }
        let digest = self.put_blob(manifest)?;
        let mut index = self.index()?.unwrap_or(Index {
            schema_version: 2,
            media_type: Some(INDEX_MEDIA_TYPE.to_string()),
            manifests: Vec::new(),
        });
        index
            .manifests
            .retain(|m| m.annotations.get(annotations::REF_NAME).map(String::as_str) != Some(tag));
        index.manifests.push(Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size: manifest.len() as u64,
            annotations: BTreeMap::from([(annotations::REF_NAME.to_string(), tag.to_string())]),
        });
        let path = self.root.join("index.json");
        let bytes = crate::artifact::to_json(&index);
        write_atomically(&path, &bytes, 0o644).map_err(self.io(&path))?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_tags_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("packets"));
        assert!(matches!(layout.tags(), Err(RegistryError::NotFound { .. })));
        let blob = layout.put_blob(b"layer").unwrap();
        assert_eq!(layout.blob(&blob.to_string()).unwrap(), b"layer");
        let file = dir.path().join("component.wasm");
        std::fs::write(&file, b"streamed").unwrap();
        let streamed = layout.put_blob_file(&file).unwrap();
        assert_eq!(layout.blob(&streamed.to_string()).unwrap(), b"streamed");
        let m1 = layout.put_manifest("0.1.0", "m", b"{}").unwrap();
        layout.put_manifest("0.1.1", "m", b"{\"a\":1}").unwrap();
        let m3 = layout.put_manifest("0.1.0", "m", b"{\"b\":1}").unwrap();
        assert_ne!(m1, m3);
        let mut tags = layout.tags().unwrap();
        tags.sort();
        assert_eq!(tags, ["0.1.0", "0.1.1"]);
        assert_eq!(layout.resolve_tag("0.1.0").unwrap().digest, m3.to_string());
        assert!(dir.path().join("packets/oci-layout").is_file());
        assert!(matches!(
            layout.resolve_tag("9.9.9"),
            Err(RegistryError::NotFound { .. })
        ));
    }
}
