//! The filesystem backend: one directory tree per shard.
//!
//! An object `a/b.pdf` lives at `objects/a/b.pdf`, its content type beside it in `objects/a/.b.pdf.meta`.
//! Keys never have segments starting with `.`, so the frame's own files (metadata, temporaries)
//! can never be named by a key. Writes go to a temporary file that is synced and renamed into place,
//! so readers see the old or the new object, whole.

use super::StorageConfig;
use crate::bindings::storage::{Error, Object, ObjectInfo};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// A shard's storage namespace on the local filesystem.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    objects: PathBuf,
    config: StorageConfig,
    /// Bytes in use, computed on first write; the lock also serialises writers so it stays exact.
    usage: tokio::sync::Mutex<Option<u64>>,
}

impl FsStore {
    /// A namespace rooted at `root` (created on first write).
    pub fn new(root: PathBuf, config: StorageConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                objects: root.join("objects"),
                config,
                usage: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let data = self.inner.objects.join(key);
        let name = data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = data.with_file_name(format!(".{name}.meta"));
        (data, meta)
    }

    /// Stores an object. The key must already be validated.
    pub async fn put(
        &self,
        key: String,
        data: Vec<u8>,
        content_type: String,
    ) -> Result<ObjectInfo, Error> {
        let max_object = self.inner.config.max_object_bytes;
        if data.len() as u64 > max_object {
            return Err(Error::LimitExceeded(format!(
                "the object is {} bytes; objects may be at most {max_object} bytes",
                data.len()
            )));
        }
        let mut usage = self.inner.usage.lock().await;
        let used = match *usage {
            Some(used) => used,
            None => {
                let objects = self.inner.objects.clone();
                blocking(move || Ok(dir_usage(&objects))).await?
            }
        };
        let (data_path, meta_path) = self.paths(&key);
        let old_size = fs::metadata(&data_path).map(|m| m.len()).unwrap_or(0);
        let new_used = used.saturating_sub(old_size) + data.len() as u64;
        let quota = self.inner.config.max_total_bytes;
        if new_used > quota {
            return Err(Error::LimitExceeded(format!(
                "storing {} bytes would bring the shard's storage to {new_used} bytes, over its quota of {quota}",
                data.len()
            )));
        }
        let root = self.inner.objects.clone();
        let info = blocking(move || {
            let parent = data_path.parent().unwrap_or(&root).to_path_buf();
            create_dirs_within(&root, &parent)?;
            write_atomically(&meta_path, content_type.as_bytes())?;
            write_atomically(&data_path, &data)?;
            info_of(key, &data_path, content_type)
        })
        .await?;
        *usage = Some(new_used);
        Ok(info)
    }

    /// Reads an object, or `None`.
    pub async fn get(&self, key: String) -> Result<Option<Object>, Error> {
        let (data_path, meta_path) = self.paths(&key);
        blocking(move || {
            let mut file = match open_nofollow(&data_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            let content_type = read_content_type(&meta_path);
            let info = info_of(key, &data_path, content_type)?;
            Ok(Some(Object { info, data }))
        })
        .await
    }

    /// Metadata of an object, or `None`.
    pub async fn stat(&self, key: String) -> Result<Option<ObjectInfo>, Error> {
        let (data_path, meta_path) = self.paths(&key);
        blocking(move || match fs::symlink_metadata(&data_path) {
            Ok(m) if m.is_file() => Ok(Some(info_of(
                key,
                &data_path,
                read_content_type(&meta_path),
            )?)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Deletes an object; tells whether there was one.
    pub async fn delete(&self, key: String) -> Result<bool, Error> {
        let mut usage = self.inner.usage.lock().await;
        let (data_path, meta_path) = self.paths(&key);
        let removed = blocking(move || {
            let size = match fs::symlink_metadata(&data_path) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            fs::remove_file(&data_path)?;
            let _ = fs::remove_file(&meta_path);
            if let Some(parent) = data_path.parent() {
                sync_dir(parent)?;
            }
            Ok(Some(size))
        })
        .await?;
        if let (Some(size), Some(used)) = (removed, usage.as_mut()) {
            *used = used.saturating_sub(size);
        }
        Ok(removed.is_some())
    }

    /// Lists objects whose keys start with `prefix`, sorted by key.
    pub async fn list(&self, prefix: String) -> Result<Vec<ObjectInfo>, Error> {
        let root = self.inner.objects.clone();
        blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| Error::Io(e.to_string())),
        Err(e) => Err(Error::Io(format!("storage task failed: {e}"))),
    }
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    // A symlink planted in the tree must not lead reads outside the namespace.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Creates `dir` and its parents below `root`, refusing to pass through symlinks.
fn create_dirs_within(root: &Path, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let relative = dir
        .strip_prefix(root)
        .map_err(|_| io::Error::other("path outside the namespace"))?;
    let mut current = root.to_path_buf();
    for part in relative.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "`{}` exists and is not a folder",
                    part.as_os_str().to_string_lossy()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&current)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    arkham_registry::fsutil::write_atomically(path, data, 0o644)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_content_type(meta: &Path) -> String {
    fs::read_to_string(meta).unwrap_or_else(|_| "application/octet-stream".to_string())
}

fn info_of(key: String, data: &Path, content_type: String) -> io::Result<ObjectInfo> {
    let meta = fs::symlink_metadata(data)?;
    let modified_at = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    Ok(ObjectInfo {
        key,
        size: meta.len(),
        content_type,
        modified_at,
    })
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type()?;
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let key = relative.to_string_lossy().into_owned();
        if file_type.is_dir() {
            // Only descend where keys with the prefix can be.
            let as_dir = format!("{key}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                walk(root, &path, prefix, out)?;
            }
        } else if file_type.is_file() && key.starts_with(prefix) {
            let content_type = read_content_type(&path.with_file_name(format!(".{name}.meta")));
            out.push(info_of(key, &path, content_type)?);
        }
    }
    Ok(())
}

fn dir_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_usage(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_list_delete_and_quota() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            max_object_bytes: 100,
            max_total_bytes: 150,
        };
        let store = FsStore::new(dir.path().to_path_buf(), config);
        let info = store
            .put("a/b.txt".into(), b"hello".to_vec(), "text/plain".into())
            .await
            .unwrap();
        assert_eq!(info.size, 5);
        let got = store.get("a/b.txt".into()).await.unwrap().unwrap();
        assert_eq!(got.data, b"hello");
        assert_eq!(got.info.content_type, "text/plain");
        store
            .put(
                "a/c.bin".into(),
                vec![1; 100],
                "application/octet-stream".into(),
            )
            .await
            .unwrap();
        let keys: Vec<_> = store
            .list("a/".into())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(keys, ["a/b.txt", "a/c.bin"]);
        assert!(store.list("b".into()).await.unwrap().is_empty());
        // 105 used; another 100 would pass the 150 quota, one over 100 the object limit.
        let over = store
            .put("d".into(), vec![0; 100], "x/y".into())
            .await
            .unwrap_err();
        assert!(matches!(over, Error::LimitExceeded(_)), "{over:?}");
        assert!(matches!(
            store.put("e".into(), vec![0; 101], "x/y".into()).await,
            Err(Error::LimitExceeded(_))
        ));
        assert!(store.delete("a/c.bin".into()).await.unwrap());
        assert!(!store.delete("a/c.bin".into()).await.unwrap());
        store
            .put("d".into(), vec![0; 100], "x/y".into())
            .await
            .unwrap();
        assert!(store.get("missing".into()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("secret");
        fs::write(&outside, b"secret").unwrap();
        let store = FsStore::new(dir.path().join("ns"), StorageConfig::default());
        fs::create_dir_all(dir.path().join("ns/objects")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("ns/objects/link")).unwrap();
        assert!(store.get("link".into()).await.is_err());
        assert!(store.stat("link".into()).await.unwrap().is_none());
    }
}
