//! `arkham.lock`: what was installed from where, so `add --locked` reinstalls the same bytes.
//!
//! ```toml
//! version = 1
//!
//! [[shard]]
//! name = "packets"
//! source = "ghcr.io/org/packets"
//! requirement = "^0.1"
//! version = "0.1.1"
//! digest = "sha256:…"           # the component
//! manifest_digest = "sha256:…"  # the OCI manifest it came in
//! signers = ["sha256:…"]        # who signed it, if any: trusted keys' fingerprints, and
//!                               # keyless identities as "ISSUER SUBJECT"
//! ```

use crate::digest::Digest;
use std::path::{Path, PathBuf};

/// The lockfile's file name in a data dir.
pub const FILE_NAME: &str = "arkham.lock";

/// One locked shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedShard {
    /// The shard's name.
    pub name: String,
    /// The repository it came from (`host/repo` or `oci:DIR/repo`), without version.
    pub source: String,
    /// The requirement it was added with (`*` for newest, `=X` for an exact tag).
    pub requirement: String,
    /// The version installed.
    pub version: String,
    /// The component's digest.
    pub digest: Digest,
    /// The OCI manifest's digest.
    pub manifest_digest: Digest,
    /// Who signed the manifest when it was installed, among those trusted: key fingerprints
    /// (SHA-256 of the SPKI DER, `sha256:…`) and keyless identities (`ISSUER SUBJECT`);
    /// `add --locked` wants one of them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<String>,
}

/// The lockfile.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    /// Format version (1).
    #[serde(default = "one")]
    pub version: u32,
    /// The locked shards, by name.
    #[serde(default, rename = "shard")]
    pub shards: Vec<LockedShard>,
}

fn one() -> u32 {
    1
}

/// The lockfile cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockfileError {
    /// Reading or writing failed.
    #[error("lockfile {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It does not parse.
    #[error(
        "lockfile {path} is corrupt: {reason}; nothing was changed. Restore it from version control, or delete it and add the shards again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Lockfile {
    /// Reads the lockfile at `path`; a missing file is an empty lockfile.
    pub fn load(path: &Path) -> Result<Self, LockfileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => {
                return Err(LockfileError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| LockfileError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let lock: Lockfile = toml::from_str(&text).map_err(|e| corrupt(e.message().to_string()))?;
        if lock.version != 1 {
            return Err(corrupt(format!(
                "format version {} is not 1 (written by a newer arkham?)",
                lock.version
            )));
        }
        let mut names: Vec<&str> = lock.shards.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt(format!("shard `{}` is listed twice", w[0])));
        }
        Ok(lock)
    }

    /// An empty lockfile.
    pub fn new() -> Self {
        Self {
            version: 1,
            shards: Vec::new(),
        }
    }

    /// Writes the lockfile atomically.
    pub fn save(&self, path: &Path) -> Result<(), LockfileError> {
        let text = toml::to_string(self).map_err(|e| LockfileError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        crate::fsutil::write_atomically(path, text.as_bytes(), 0o644).map_err(|source| {
            LockfileError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&LockedShard> {
        self.shards.iter().find(|s| s.name == name)
    }

    /// Adds or replaces the entry for `shard.name`, keeping entries sorted by name.
    pub fn upsert(&mut self, shard: LockedShard) {
        self.shards.retain(|s| s.name != shard.name);
        self.shards.push(shard);
        self.shards.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Removes the entry for `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.shards.len();
        self.shards.retain(|s| s.name != name);
        before != self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> LockedShard {
        LockedShard {
            name: name.into(),
            source: format!("127.0.0.1:5000/{name}"),
            requirement: "^0.1".into(),
            version: "0.1.1".into(),
            digest: Digest::of(name.as_bytes()),
            manifest_digest: Digest::of(b"m"),
            signers: if name == "alpha" {
                vec![Digest::of(b"key").to_string()]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(Lockfile::load(&path).unwrap(), Lockfile::new());
        let mut lock = Lockfile::new();
        lock.upsert(entry("packets"));
        lock.upsert(entry("alpha"));
        lock.upsert(entry("packets"));
        lock.save(&path).unwrap();
        let back = Lockfile::load(&path).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.shards[0].name, "alpha");
        for bad in [
            "not toml [",
            "version = 2",
            "[[shard]]\nname = \"x\"",
            "[[shard]]\nname=\"a\"\nsource=\"s\"\nrequirement=\"*\"\nversion=\"1\"\ndigest=\"sha256:zz\"\nmanifest_digest=\"sha256:zz\"",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = Lockfile::load(&path).unwrap_err();
            assert!(err.to_string().contains("is corrupt"), "{bad}: {err}");
        }
    }
}
