//! The catalog of installed shards: `installed.json` in the data dir, replaced atomically, and
//! changed only under the data dir's lock so concurrent `arkham` commands cannot lose an update.

use arkham_registry::digest::Digest;
use arkham_registry::fsutil::write_atomically;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// One installed shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledShard {
    /// The shard's name.
    pub name: String,
    /// Its version.
    pub version: semver::Version,
    /// Digest of the component (with its manifest) in the blob store.
    pub digest: Digest,
    /// Where it was installed from (a path, or later a registry reference).
    pub source: String,
    /// When it was installed, RFC 3339.
    pub installed_at: String,
}

/// The catalog file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Installed shards, sorted by name.
    pub shards: Vec<InstalledShard>,
}

/// An error reading or writing the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// I/O on the catalog or its lock.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The catalog is not valid JSON of the expected shape.
    #[error(
        "{path} is corrupt ({message}); restore it from a backup, or remove it and add the shards again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl Catalog {
    /// Reads the catalog at `path`; a missing file is an empty catalog.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(CatalogError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| CatalogError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the catalog to `path` atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), CatalogError> {
        let io = |source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| io(io::Error::other(e)))?;
        write_atomically(path, &json, 0o644).map_err(io)
    }

    /// The shard named `name`.
    pub fn get(&self, name: &str) -> Option<&InstalledShard> {
        self.shards.iter().find(|s| s.name == name)
    }

    /// Adds `shard`, replacing any shard of the same name; returns the replaced one.
    pub fn upsert(&mut self, shard: InstalledShard) -> Option<InstalledShard> {
        let old = self.remove(&shard.name);
        self.shards.push(shard);
        self.shards.sort_by(|a, b| a.name.cmp(&b.name));
        old
    }

    /// Removes the shard named `name`; returns it.
    pub fn remove(&mut self, name: &str) -> Option<InstalledShard> {
        let index = self.shards.iter().position(|s| s.name == name)?;
        Some(self.shards.remove(index))
    }
}

/// An exclusive lock on a data dir, held while the catalog changes; released on drop.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Waits for and takes the lock file at `path`.
    pub fn acquire(path: &Path) -> Result<Self, CatalogError> {
        let io = |source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(name: &str, version: &str) -> InstalledShard {
        InstalledShard {
            name: name.into(),
            version: version.parse().unwrap(),
            digest: Digest::of(name.as_bytes()),
            source: "test".into(),
            installed_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn round_trip_upsert_remove_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("installed.json");
        assert_eq!(Catalog::load(&path).unwrap(), Catalog::default());
        let mut catalog = Catalog::default();
        catalog.upsert(shard("b", "1.0.0"));
        catalog.upsert(shard("a", "1.0.0"));
        assert!(catalog.upsert(shard("b", "2.0.0")).is_some());
        catalog.save(&path).unwrap();
        let loaded = Catalog::load(&path).unwrap();
        assert_eq!(
            loaded
                .shards
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(loaded.get("b").unwrap().version.to_string(), "2.0.0");
        fs::write(&path, b"{not json").unwrap();
        let err = Catalog::load(&path).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
