//! A content-addressed blob store on the local filesystem: `blobs/sha256/<hex>`.
//!
//! Blobs are written to a temporary file, synced and renamed into place, so a blob that exists is
//! whole; reads verify the content against its name, so a corrupted blob is reported, never used.

use crate::digest::Digest;
use std::fs;
use std::io;
use std::path::PathBuf;

/// An error of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("blob store at {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    Missing(Digest),
    /// The blob's content does not match its digest (it was corrupted on disk).
    #[error(
        "blob {expected} is corrupt: its content hashes to {actual}; it was removed, add the shard again"
    )]
    Corrupt {
        /// The digest it is stored under.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
}

/// A content-addressed store rooted at a folder.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// A store in `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the blob `digest` lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Whether the store holds `digest`.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Stores `bytes` durably and returns their digest; storing the same bytes again is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        let path = self.path(&digest);
        if path.is_file() {
            return Ok(digest);
        }
        crate::fsutil::write_atomically(&path, bytes, 0o644)
            .map_err(|source| StoreError::Io { path, source })?;
        Ok(digest)
    }

    /// Reads the blob `digest`, verifying its content. A corrupt blob is removed.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(digest.clone()));
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let actual = Digest::of(&bytes);
        if &actual != digest {
            let _ = fs::remove_file(&path);
            return Err(StoreError::Corrupt {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Removes the blob `digest`, if present.
    pub fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = store.put(b"component").unwrap();
        assert_eq!(store.put(b"component").unwrap(), digest);
        assert_eq!(store.get(&digest).unwrap(), b"component");
        fs::write(store.path(&digest), b"tampered").unwrap();
        assert!(matches!(
            store.get(&digest),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(store.get(&digest), Err(StoreError::Missing(_))));
    }
}
