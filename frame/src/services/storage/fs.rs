//! The filesystem backend: one directory tree per shard.
//!
//! An object `a/b.pdf` lives at `objects/a/b.pdf`, its content type beside it in `objects/a/.b.pdf.meta`.
//! Keys never have segments starting with `.`, so the frame's own files can never be named by a
//! key. Writes go to short-named files in the namespace's `tmp/` folder that are synced and renamed
//! into place, so readers see the old or the new object, whole, and no derived name is longer than
//! `.{segment}.meta` (which `MAX_SEGMENT_LEN` keeps within `NAME_MAX`).
//!
//! Usage (bytes and entries) is kept exact under the writer lock and recomputed from disk by the
//! same rules on first use ([`scan`]): an object costs its content, content type and key in bytes
//! and one entry; a folder costs one entry.

use super::{MAX_CONTENT_TYPE_LEN, MAX_SEGMENT_LEN, StorageConfig};
use crate::bindings::storage::{Error, Object, ObjectInfo};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

/// The longest name the backend derives from a segment must fit one file name (`NAME_MAX`).
const _: () = assert!(MAX_SEGMENT_LEN + ".".len() + ".meta".len() <= 255);

/// Most bytes of keys and content types one `list` returns; past it the caller must narrow the
/// prefix. Bounds the host memory one call can take whatever the number of objects.
pub const MAX_LIST_BYTES: u64 = 8 << 20;
/// What one listed object costs beyond its key and content type (size, time, bookkeeping).
const LIST_ENTRY_OVERHEAD: u64 = 32;

/// The content type of an object whose metadata is missing or unreadable.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Distinguishes temporary files written at the same time.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// What a namespace holds, by the rules the quotas count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Content + content type + key of every object.
    pub bytes: u64,
    /// Objects plus folders.
    pub entries: u64,
}

/// A shard's storage namespace on the local filesystem.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    objects: PathBuf,
    tmp: PathBuf,
    config: StorageConfig,
    /// Usage, computed from disk on first need; `None` again after a failed write, so the next
    /// writer recounts instead of trusting a guess. The lock also serialises writers.
    usage: tokio::sync::Mutex<Option<Usage>>,
}

/// What a put would change, computed from disk before anything is written.
struct Plan {
    /// Cost in bytes of the object it replaces (0 if none).
    old_bytes: u64,
    /// Whether an object is already stored under the key.
    replaces: bool,
    /// Folders that must be created.
    new_folders: u64,
}

impl FsStore {
    /// A namespace rooted at `root` (created on first write).
    pub fn new(root: PathBuf, config: StorageConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                objects: root.join("objects"),
                tmp: root.join("tmp"),
                config,
                usage: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let data = self.inner.objects.join(key);
        let meta = meta_path(&data);
        (data, meta)
    }

    /// The namespace's usage, as the quotas count it (recomputed from disk on first call).
    pub async fn usage(&self) -> Result<Usage, Error> {
        let mut usage = self.inner.usage.lock().await;
        self.current(&mut usage).await
    }

    async fn current(&self, usage: &mut Option<Usage>) -> Result<Usage, Error> {
        if let Some(current) = *usage {
            return Ok(current);
        }
        let (objects, tmp) = (self.inner.objects.clone(), self.inner.tmp.clone());
        let counted = blocking(move || {
            // Leftovers of writes a crash interrupted: never part of an object.
            clear_dir(&tmp)?;
            scan(&objects, &objects)
        })
        .await?;
        *usage = Some(counted);
        Ok(counted)
    }

    /// Stores an object. The key and content type must already be validated.
    pub async fn put(
        &self,
        key: String,
        data: Vec<u8>,
        content_type: String,
    ) -> Result<ObjectInfo, Error> {
        let config = &self.inner.config;
        let max_object = config.max_object_bytes;
        if data.len() as u64 > max_object {
            return Err(Error::LimitExceeded(format!(
                "the object is {} bytes; objects may be at most {max_object} bytes",
                data.len()
            )));
        }
        let mut guard = self.inner.usage.lock().await;
        let used = self.current(&mut guard).await?;
        let (data_path, meta_path) = self.paths(&key);
        let objects = self.inner.objects.clone();
        let plan = {
            let (objects, data_path) = (objects.clone(), data_path.clone());
            blocking(move || plan_put(&objects, &data_path)).await?
        };
        let cost = object_cost(data.len(), content_type.len(), key.len());
        let new_bytes = used.bytes.saturating_sub(plan.old_bytes) + cost;
        if new_bytes > config.max_total_bytes {
            return Err(Error::LimitExceeded(format!(
                "storing {cost} bytes (content, content type and key) would bring the shard's storage to {new_bytes} bytes, over its quota of {}",
                config.max_total_bytes
            )));
        }
        let new_entries = used.entries + plan.new_folders + u64::from(!plan.replaces);
        if new_entries > config.max_entries {
            return Err(Error::LimitExceeded(format!(
                "storing `{key}` would bring the shard's storage to {new_entries} entries (objects and folders), over its limit of {}",
                config.max_entries
            )));
        }
        let tmp = self.inner.tmp.clone();
        let written = blocking(move || {
            let parent = data_path.parent().unwrap_or(&objects).to_path_buf();
            create_dirs_within(&objects, &parent)?;
            let data_tmp = write_tmp(&tmp, &data)?;
            let meta_tmp = match write_tmp(&tmp, content_type.as_bytes()) {
                Ok(path) => path,
                Err(e) => {
                    let _ = fs::remove_file(&data_tmp);
                    return Err(e);
                }
            };
            let renamed = fs::rename(&meta_tmp, &meta_path)
                .and_then(|()| fs::rename(&data_tmp, &data_path))
                .and_then(|()| sync_dir(&parent));
            if renamed.is_err() {
                let _ = fs::remove_file(&meta_tmp);
                let _ = fs::remove_file(&data_tmp);
            }
            renamed?;
            info_of(key, &data_path, content_type)
        })
        .await;
        // After a failure the disk may hold part of the write: recount on next use.
        *guard = match written {
            Ok(_) => Some(Usage {
                bytes: new_bytes,
                entries: new_entries,
            }),
            Err(_) => None,
        };
        written
    }

    /// Reads an object, or `None`. Reads at most `max_object_bytes`, the most `put` stores.
    pub async fn get(&self, key: String) -> Result<Option<Object>, Error> {
        let (data_path, meta_path) = self.paths(&key);
        let max = self.inner.config.max_object_bytes;
        blocking(move || {
            let file = match open_nofollow(&data_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
                Err(e) => return Err(e),
            };
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Ok(Ok(None));
            }
            // Stored before the limit was lowered: refused rather than read whole.
            if meta.len() > max {
                return Ok(Err(Error::LimitExceeded(format!(
                    "the object under `{key}` is {} bytes, more than the {max} bytes objects may have now; delete it",
                    meta.len()
                ))));
            }
            let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            file.take(max).read_to_end(&mut data)?;
            let content_type = read_content_type(&meta_path);
            let info = info_of(key, &data_path, content_type)?;
            Ok(Ok(Some(Object { info, data })))
        })
        .await?
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

    /// Deletes an object, and the folders that only it kept; tells whether there was one.
    pub async fn delete(&self, key: String) -> Result<bool, Error> {
        let mut guard = self.inner.usage.lock().await;
        let used = self.current(&mut guard).await?;
        let (data_path, meta_path) = self.paths(&key);
        let objects = self.inner.objects.clone();
        let removed = blocking(move || {
            let size = match fs::symlink_metadata(&data_path) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let meta_len = file_len(&meta_path);
            fs::remove_file(&data_path)?;
            match fs::remove_file(&meta_path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let folders = prune_empty_parents(&objects, &data_path)?;
            Ok(Some((size + meta_len + key.len() as u64, folders)))
        })
        .await;
        *guard = match removed {
            Ok(Some((bytes, folders))) => Some(Usage {
                bytes: used.bytes.saturating_sub(bytes),
                entries: used.entries.saturating_sub(1 + folders),
            }),
            Ok(None) => Some(used),
            Err(_) => None,
        };
        removed.map(|r| r.is_some())
    }

    /// Lists objects whose keys start with `prefix`, sorted by key; fails past [`MAX_LIST_BYTES`].
    pub async fn list(&self, prefix: String) -> Result<Vec<ObjectInfo>, Error> {
        self.list_within(prefix, MAX_LIST_BYTES).await
    }

    pub(crate) async fn list_within(
        &self,
        prefix: String,
        limit: u64,
    ) -> Result<Vec<ObjectInfo>, Error> {
        let root = self.inner.objects.clone();
        let listed = blocking(move || {
            let mut out = Listing {
                limit,
                ..Listing::default()
            };
            walk(&root, &root, &prefix, &mut out)?;
            Ok(out)
        })
        .await?;
        if listed.over {
            return Err(Error::LimitExceeded(format!(
                "the objects matching this prefix pass {limit} bytes of keys and content types; list a longer prefix"
            )));
        }
        let mut out = listed.objects;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// What an object costs against the byte quota.
fn object_cost(data: usize, content_type: usize, key: usize) -> u64 {
    (data as u64) + (content_type as u64) + (key as u64)
}

fn meta_path(data: &Path) -> PathBuf {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    data.with_file_name(format!(".{name}.meta"))
}

fn file_len(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map_or(0, |m| m.len())
}

/// Looks at what a put of `data_path` would replace and create, without writing.
fn plan_put(objects: &Path, data_path: &Path) -> io::Result<Plan> {
    let (old_bytes, replaces) = match fs::symlink_metadata(data_path) {
        Ok(m) if m.is_file() => {
            let key_len = data_path
                .strip_prefix(objects)
                .map_or(0, |k| k.as_os_str().len() as u64);
            (m.len() + file_len(&meta_path(data_path)) + key_len, true)
        }
        _ => (0, false),
    };
    let mut new_folders = 0;
    let mut dir = data_path.parent();
    while let Some(d) = dir {
        if d == objects || !d.starts_with(objects) {
            break;
        }
        match fs::symlink_metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => new_folders += 1,
            Err(e) => return Err(e),
        }
        dir = d.parent();
    }
    Ok(Plan {
        old_bytes,
        replaces,
        new_folders,
    })
}

/// Removes the folders above `path` that are now empty, up to (not including) `objects`;
/// returns how many. Syncs the last folder touched so the deletion is durable.
fn prune_empty_parents(objects: &Path, path: &Path) -> io::Result<u64> {
    let mut removed = 0;
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == objects || !d.starts_with(objects) {
            break;
        }
        match fs::remove_dir(d) {
            Ok(()) => removed += 1,
            // Not empty (or gone): the folders above it stay too.
            Err(_) => break,
        }
        dir = d.parent();
    }
    if let Some(d) = dir {
        sync_dir(d)?;
    }
    Ok(removed)
}

/// Writes `data` to a new, synced file in `tmp` and returns its path.
fn write_tmp(tmp: &Path, data: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(tmp)?;
    let path = tmp.join(format!(
        "{}-{}",
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        file.write_all(data)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

fn clear_dir(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Counts `dir` (below `objects`) by the quota rules, and tidies what no object owns: metadata
/// without its object, temporaries of older versions, empty folders.
fn scan(objects: &Path, dir: &Path) -> io::Result<Usage> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Usage::default()),
        Err(e) => return Err(e),
    };
    let mut usage = Usage::default();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let file_type = entry.file_type()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(rest) = name.strip_prefix('.') {
            let owner = rest
                .strip_suffix(".meta")
                .map(|object| path.with_file_name(object));
            let owned = owner.is_some_and(|o| fs::symlink_metadata(o).is_ok_and(|m| m.is_file()));
            // Metadata is counted with its object; anything else of ours is a leftover.
            if !owned && file_type.is_file() {
                fs::remove_file(&path)?;
            }
            continue;
        }
        if file_type.is_dir() {
            let inner = scan(objects, &path)?;
            if inner.entries == 0 && fs::remove_dir(&path).is_ok() {
                continue;
            }
            usage.entries += 1 + inner.entries;
            usage.bytes += inner.bytes;
        } else if file_type.is_file() {
            let key_len = path
                .strip_prefix(objects)
                .map_or(0, |k| k.as_os_str().len() as u64);
            usage.entries += 1;
            usage.bytes += entry.metadata()?.len() + file_len(&meta_path(&path)) + key_len;
        }
    }
    Ok(usage)
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The stored content type; reads at most what `put` accepts, so metadata written before that
/// bound existed cannot make a read allocate without limit.
fn read_content_type(meta: &Path) -> String {
    let mut text = String::new();
    let read = open_nofollow(meta).and_then(|file| {
        file.take(MAX_CONTENT_TYPE_LEN as u64 + 1)
            .read_to_string(&mut text)
    });
    match read {
        Ok(len) if len <= MAX_CONTENT_TYPE_LEN => text,
        _ => DEFAULT_CONTENT_TYPE.to_string(),
    }
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

/// Objects found by a `list`, and whether they passed `limit` bytes (then the walk stops).
#[derive(Default)]
struct Listing {
    objects: Vec<ObjectInfo>,
    limit: u64,
    bytes: u64,
    over: bool,
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Listing) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        if out.over {
            return Ok(());
        }
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
            out.bytes += (key.len() + content_type.len()) as u64 + LIST_ENTRY_OVERHEAD;
            if out.bytes > out.limit {
                out.over = true;
                return Ok(());
            }
            out.objects.push(info_of(key, &path, content_type)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_list_delete_and_quota() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            max_object_bytes: 100,
            max_total_bytes: 250,
            max_entries: 100,
            ..Default::default()
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
        // 22 + 131 used (content + type + key); another 104 would pass the 250 quota, one over
        // 100 the object limit.
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

    fn config(bytes: u64, entries: u64) -> StorageConfig {
        StorageConfig {
            max_object_bytes: 1 << 20,
            max_total_bytes: bytes,
            max_entries: entries,
            ..Default::default()
        }
    }

    /// Every file and folder under `dir` with its length: what is on disk.
    pub(crate) fn tree(dir: &Path) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            out.push((path.display().to_string(), meta.len()));
            if meta.is_dir() {
                out.extend(tree(&path));
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn metadata_and_keys_count_and_usage_is_exact_across_writes_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().to_path_buf(), config(10_000, 100));
        let empty = store.usage().await.unwrap();
        assert_eq!(empty, Usage::default());

        // A 0-byte object still costs its content type and key.
        let ct = "t".repeat(200);
        store.put("z".into(), Vec::new(), ct.clone()).await.unwrap();
        assert_eq!(
            store.usage().await.unwrap(),
            Usage {
                bytes: 201,
                entries: 1
            }
        );
        store
            .put("a/b/c.txt".into(), vec![7; 50], "text/plain".into())
            .await
            .unwrap();
        // 201 + (50 + 10 + 9); entries: z, a, a/b, a/b/c.txt.
        let after_put = Usage {
            bytes: 270,
            entries: 4,
        };
        assert_eq!(store.usage().await.unwrap(), after_put);
        // Replacing counts the difference only.
        store
            .put("a/b/c.txt".into(), vec![7; 20], "x/y".into())
            .await
            .unwrap();
        let after_replace = Usage {
            bytes: 201 + 20 + 3 + 9,
            entries: 4,
        };
        assert_eq!(store.usage().await.unwrap(), after_replace);
        // Reopened from disk, the count agrees.
        let reopened = FsStore::new(dir.path().to_path_buf(), config(10_000, 100));
        assert_eq!(reopened.usage().await.unwrap(), after_replace);
        // Deleting returns the object's bytes and the folders only it kept.
        assert!(store.delete("a/b/c.txt".into()).await.unwrap());
        let after_delete = Usage {
            bytes: 201,
            entries: 1,
        };
        assert_eq!(store.usage().await.unwrap(), after_delete);
        assert!(!dir.path().join("objects/a").exists());
        let reopened = FsStore::new(dir.path().to_path_buf(), config(10_000, 100));
        assert_eq!(reopened.usage().await.unwrap(), after_delete);
        assert!(store.delete("z".into()).await.unwrap());
        let reopened = FsStore::new(dir.path().to_path_buf(), config(10_000, 100));
        assert_eq!(reopened.usage().await.unwrap(), Usage::default());
    }

    #[tokio::test]
    async fn refusals_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // 3 entries, 100 bytes.
        let store = FsStore::new(dir.path().to_path_buf(), config(100, 3));
        store
            .put("a/one".into(), vec![1; 10], "x/y".into())
            .await
            .unwrap();
        let before = tree(dir.path());
        // Over the byte quota: 10+3+5 used, 90 more would pass 100.
        let err = store
            .put("b".into(), vec![0; 80], "x/y".into())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::LimitExceeded(m) if m.contains("quota")),
            "{err:?}"
        );
        // Over the entry cap: `c/d/e` needs two folders and an object.
        let err = store
            .put("c/d/e".into(), Vec::new(), "x/y".into())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::LimitExceeded(m) if m.contains("entries")),
            "{err:?}"
        );
        assert_eq!(tree(dir.path()), before);
        // One more object in an existing folder fits the cap exactly; the next does not.
        store
            .put("a/two".into(), Vec::new(), "x/y".into())
            .await
            .unwrap();
        assert_eq!(store.usage().await.unwrap().entries, 3);
        assert!(matches!(
            store.put("a/three".into(), Vec::new(), "x/y".into()).await,
            Err(Error::LimitExceeded(_))
        ));
        // Replacing an object needs no new entry.
        store
            .put("a/two".into(), vec![2], "x/y".into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_longest_segment_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().to_path_buf(), config(1 << 20, 100));
        let segment = "s".repeat(MAX_SEGMENT_LEN);
        let key = format!("{segment}/{segment}");
        store
            .put(key.clone(), b"long".to_vec(), "text/plain".into())
            .await
            .unwrap();
        // Replacing writes temporaries too.
        store
            .put(key.clone(), b"longer".to_vec(), "text/plain".into())
            .await
            .unwrap();
        let got = store.get(key.clone()).await.unwrap().unwrap();
        assert_eq!(
            (got.data.as_slice(), got.info.content_type.as_str()),
            (&b"longer"[..], "text/plain")
        );
        assert_eq!(store.list(String::new()).await.unwrap().len(), 1);
        assert!(store.delete(key).await.unwrap());
        assert_eq!(store.usage().await.unwrap(), Usage::default());
    }

    #[tokio::test]
    async fn leftovers_are_tidied_and_never_counted() {
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects");
        fs::create_dir_all(objects.join("empty/deeper")).unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp/1-2"), vec![0; 1000]).unwrap();
        fs::write(objects.join(".gone.meta"), "x/y").unwrap();
        fs::write(objects.join("..kept.meta.tmp-1-2"), vec![0; 1000]).unwrap();
        fs::write(objects.join("kept"), b"abc").unwrap();
        fs::write(objects.join(".kept.meta"), "x/y").unwrap();
        let store = FsStore::new(dir.path().to_path_buf(), config(1 << 20, 100));
        assert_eq!(
            store.usage().await.unwrap(),
            Usage {
                bytes: 3 + 3 + 4,
                entries: 1
            }
        );
        let left: Vec<_> = tree(dir.path()).into_iter().map(|(p, _)| p).collect();
        let root = dir.path().display().to_string();
        assert_eq!(
            left,
            [
                format!("{root}/objects"),
                format!("{root}/objects/.kept.meta"),
                format!("{root}/objects/kept"),
                format!("{root}/tmp"),
            ]
        );
    }

    #[tokio::test]
    async fn list_results_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().to_path_buf(), config(1 << 30, 1000));
        let content_type = "c".repeat(MAX_CONTENT_TYPE_LEN);
        for i in 0..100 {
            store
                .put(format!("k/{i:03}"), Vec::new(), content_type.clone())
                .await
                .unwrap();
        }
        // Each listed object costs 5 + 256 + 32 bytes: 34 pass 10,000.
        let err = store.list_within(String::new(), 10_000).await.unwrap_err();
        assert!(
            matches!(&err, Error::LimitExceeded(m) if m.contains("prefix")),
            "{err:?}"
        );
        assert_eq!(
            store
                .list_within("k/01".into(), 10_000)
                .await
                .unwrap()
                .len(),
            10
        );
        assert_eq!(store.list(String::new()).await.unwrap().len(), 100);
    }
}
