//! What the client saw of registries, kept for working offline (`--offline`, and digest
//! references whose artifact is already here).
//!
//! Manifests and configs go into the blob store beside the components they describe; this index
//! remembers, per repository, the tags that were resolved and the manifest digest each named
//! then. Offline, a repository is what it holds ([`crate::repo::Repo::cached`]): the versions
//! added before, exactly as they were.

use crate::digest::Digest;
use crate::error::RegistryError;
use crate::fsutil::write_atomically;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Tags seen per repository: `repository reference → tag → manifest digest`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TagIndex {
    #[serde(default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

impl TagIndex {
    /// The index in `path`; empty when there is none yet.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let io = |source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a tag index ({e}); it is only a cache: delete it"),
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(e)),
        }
    }

    /// Writes the index to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| RegistryError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(path, &bytes, 0o644).map_err(|source| RegistryError::Io {
            path: PathBuf::from(path),
            source,
        })
    }

    /// Remembers that `tag` of `repository` named the manifest `digest`.
    pub fn record(&mut self, repository: &str, tag: &str, digest: &Digest) {
        self.repositories
            .entry(repository.to_string())
            .or_default()
            .insert(tag.to_string(), digest.to_string());
    }

    /// The tags of `repository` seen so far, with their manifest digests.
    pub fn tags(&self, repository: &str) -> BTreeMap<String, String> {
        self.repositories
            .get(repository)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        assert!(TagIndex::load(&path).unwrap().tags("r/packets").is_empty());
        let mut index = TagIndex::default();
        let digest = Digest::of(b"manifest");
        index.record("r/packets", "0.1.0", &digest);
        index.save(&path).unwrap();
        let tags = TagIndex::load(&path).unwrap().tags("r/packets");
        assert_eq!(tags.get("0.1.0"), Some(&digest.to_string()));
        std::fs::write(&path, b"{not json").unwrap();
        let err = TagIndex::load(&path).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
