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
    /// The versions installed before this one, newest first (at most [`HISTORY`]): what
    /// `arkham shard rollback` returns to. Their components stay in the blob store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Earlier>,
    /// The last version the running frame refused to switch to (it did not load, or did not
    /// answer its health check), so this one kept serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// Versions kept per shard for rollback.
pub const HISTORY: usize = 5;

/// A version of a shard installed earlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Earlier {
    /// Its version.
    pub version: semver::Version,
    /// Its component's digest in the blob store.
    pub digest: Digest,
    /// Where it was installed from.
    pub source: String,
    /// When it was installed, RFC 3339.
    pub installed_at: String,
}

/// A version the running frame would not switch to, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// Its version.
    pub version: semver::Version,
    /// Its component's digest.
    pub digest: Digest,
    /// Why: the load error, or what the health check answered.
    pub error: String,
    /// When, RFC 3339.
    pub at: String,
}

impl InstalledShard {
    /// This entry as a history item.
    pub fn earlier(&self) -> Earlier {
        Earlier {
            version: self.version.clone(),
            digest: self.digest.clone(),
            source: self.source.clone(),
            installed_at: self.installed_at.clone(),
        }
    }

    /// This entry, noting that the frame refused to switch from it to `refused`.
    pub fn with_refusal(
        &self,
        refused: &InstalledShard,
        error: &str,
        at: String,
    ) -> InstalledShard {
        InstalledShard {
            refused: Some(Refusal {
                version: refused.version.clone(),
                digest: refused.digest.clone(),
                error: error.to_string(),
                at,
            }),
            ..self.clone()
        }
    }

    /// `next` (a new install of this shard) with the history it inherits from this entry: this
    /// version first unless `next` is the same component, then this one's history, without
    /// `next` itself and without repeats, at most [`HISTORY`]. A refusal is cleared.
    pub fn succeeded_by(&self, mut next: InstalledShard) -> InstalledShard {
        let mut history = Vec::new();
        let candidates = std::iter::once(self.earlier()).chain(self.history.iter().cloned());
        for earlier in candidates {
            if earlier.digest != next.digest
                && !history.iter().any(|h: &Earlier| h.digest == earlier.digest)
                && history.len() < HISTORY
            {
                history.push(earlier);
            }
        }
        next.history = history;
        next.refused = None;
        next
    }
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
            history: Vec::new(),
            refused: None,
        }
    }

    fn versioned(version: &str) -> InstalledShard {
        InstalledShard {
            digest: Digest::of(version.as_bytes()),
            ..shard("s", version)
        }
    }

    #[test]
    fn history_is_newest_first_without_repeats_and_bounded() {
        let mut current = versioned("1.0.0");
        for v in [
            "1.1.0", "1.2.0", "1.1.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0",
        ] {
            current = current.succeeded_by(versioned(v));
        }
        let versions: Vec<String> = current
            .history
            .iter()
            .map(|e| e.version.to_string())
            .collect();
        assert_eq!(current.version.to_string(), "5.0.0");
        assert_eq!(versions, ["4.0.0", "3.0.0", "2.0.0", "1.1.0", "1.2.0"]);
        // The same component again keeps the history as it was, and clears a refusal.
        let mut refused = current.clone();
        refused.refused = Some(Refusal {
            version: "6.0.0".parse().unwrap(),
            digest: Digest::of(b"6"),
            error: "x".into(),
            at: "now".into(),
        });
        let again = refused.succeeded_by(versioned("5.0.0"));
        assert_eq!(again.history, current.history);
        assert_eq!(again.refused, None);
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
