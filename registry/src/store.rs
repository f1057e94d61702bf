//! A content-addressed blob store on the local filesystem: `blobs/sha256/<hex>`.
//!
//! Blobs are written to a temporary file, synced and renamed into place, so a blob that exists is
//! whole; reads verify the content against its name, so a corrupted blob is reported, never used.
//! Large blobs (components) go through [`BlobWriter`] and [`BlobStore::put_file`], which stream:
//! memory stays at one buffer whatever the blob's size.

use crate::digest::{Digest, Hasher};
use crate::fsutil::TempFile;
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// The buffer streamed blobs are read through.
const CHUNK: usize = 256 * 1024;

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
        let bytes = self.peek(digest)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(self.corrupt(digest, actual));
        }
        Ok(bytes)
    }

    /// What to answer for the blob `expected` whose content was found to hash to `actual`
    /// (read by a streaming check rather than [`get`](Self::get)): it is removed, as `get` does,
    /// so that the next fetch stores it afresh.
    pub fn corrupt(&self, expected: &Digest, actual: Digest) -> StoreError {
        let _ = fs::remove_file(self.path(expected));
        StoreError::Corrupt {
            expected: expected.clone(),
            actual,
        }
    }

    /// Reads the blob `digest` without verifying its content: for a quick look (hashing is most
    /// of the cost of a read) at a blob whose use reads it again with [`get`](Self::get).
    pub fn peek(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::Missing(digest.clone()))
            }
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// A writer for a blob of not yet known digest: it lands under a temporary name in the
    /// store's folder and is renamed into place by [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let dir = self.root.join("blobs").join("sha256");
        let file = TempFile::new_in(&dir, "blob", 0o644)
            .map_err(|source| StoreError::Io { path: dir, source })?;
        Ok(BlobWriter {
            file,
            hasher: Hasher::new(),
            written: 0,
            store: self.clone(),
        })
    }

    /// An empty temporary file in the store's folder (removed when dropped): for staging a
    /// large blob on the store's disk, e.g. a component about to be uploaded.
    pub fn temp_file(&self) -> Result<TempFile, StoreError> {
        let dir = self.root.join("blobs").join("sha256");
        TempFile::new_in(&dir, "staged", 0o644)
            .map_err(|source| StoreError::Io { path: dir, source })
    }

    /// Stores the content of the file at `path` without reading it into memory, and returns its
    /// digest; a blob already stored is kept.
    pub fn put_file(&self, path: &Path) -> Result<Digest, StoreError> {
        let mut writer = self.writer()?;
        let io_err = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = fs::File::open(path).map_err(io_err)?;
        let mut buf = vec![0; CHUNK];
        loop {
            let n = file.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n])?;
        }
        writer.commit()
    }

    /// Verifies the stored blob `digest` without reading it into memory, and returns its size. A
    /// corrupt blob is removed.
    pub fn check(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.path(digest);
        let (actual, size) = match digest_file(&path) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(digest.clone()));
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        if &actual != digest {
            let _ = fs::remove_file(&path);
            return Err(StoreError::Corrupt {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(size)
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

/// The digest and size of the file at `path`, read through one buffer.
pub fn digest_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher.digest(), size));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// A blob being written to the store, hashed and counted as it arrives. Dropped before
/// [`BlobWriter::commit`], it leaves nothing in the store.
#[derive(Debug)]
pub struct BlobWriter {
    file: TempFile,
    hasher: Hasher,
    written: u64,
    store: BlobStore,
}

impl BlobWriter {
    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(|source| StoreError::Io {
                path: self.store.root.clone(),
                source,
            })?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// How many bytes were written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of what was written so far (check it before committing).
    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }

    /// Syncs the blob and renames it into place under its digest, which it returns.
    pub fn commit(self) -> Result<Digest, StoreError> {
        let digest = self.hasher.digest();
        let path = self.store.path(&digest);
        if path.is_file() {
            // Already stored; the temporary file is removed on drop.
            return Ok(digest);
        }
        self.file
            .persist(&path)
            .map_err(|source| StoreError::Io { path, source })?;
        Ok(digest)
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
        // A peek does not check (nor remove) it; a get does.
        assert_eq!(store.peek(&digest).unwrap(), b"tampered");
        assert!(matches!(
            store.get(&digest),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(store.get(&digest), Err(StoreError::Missing(_))));
        assert!(matches!(store.peek(&digest), Err(StoreError::Missing(_))));
    }

    #[test]
    fn streamed_blobs_land_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let blobs = dir.path().join("blobs/sha256");
        let big: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut writer = store.writer().unwrap();
        writer.write(&big[..CHUNK]).unwrap();
        drop(writer);
        assert_eq!(
            fs::read_dir(&blobs).unwrap().count(),
            0,
            "a partial blob stayed"
        );

        let mut writer = store.writer().unwrap();
        for piece in big.chunks(1000) {
            writer.write(piece).unwrap();
        }
        assert_eq!(writer.written(), big.len() as u64);
        assert_eq!(writer.digest(), Digest::of(&big));
        let digest = writer.commit().unwrap();
        assert_eq!(digest, Digest::of(&big));
        assert_eq!(store.check(&digest).unwrap(), big.len() as u64);
        assert_eq!(fs::read_dir(&blobs).unwrap().count(), 1);

        let source = dir.path().join("component.wasm");
        fs::write(&source, b"other").unwrap();
        let other = store.put_file(&source).unwrap();
        assert_eq!(store.get(&other).unwrap(), b"other");
        assert_eq!(store.put_file(&source).unwrap(), other);
        assert_eq!(fs::read_dir(&blobs).unwrap().count(), 2);

        fs::write(store.path(&digest), b"tampered").unwrap();
        assert!(matches!(
            store.check(&digest),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(store.check(&digest), Err(StoreError::Missing(_))));
    }
}
