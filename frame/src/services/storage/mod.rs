//! `arkham:shard/storage`: each shard's own namespace of blobs.
//!
//! [`StorageService`] is process-wide; [`StorageCtx`] is a store's handle on its shard's namespace,
//! backed by [`FsStore`] on a single machine. Keys and content types are validated here, before
//! any backend sees them; the backend enforces the quotas (bytes and entries) under its writer lock.

mod fs;

use crate::bindings::storage::{self, Error, Object, ObjectInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::component::HasData;

pub use fs::{FsStore, MAX_LIST_BYTES, Usage};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest key segment, in bytes. A segment becomes a file name, and the backend derives longer
/// names from it (`.{segment}.meta`); every derived name must fit the 255-byte `NAME_MAX` of
/// common file systems, with room to spare for the backend's own suffixes.
pub const MAX_SEGMENT_LEN: usize = 240;
/// Longest content type, in bytes: far above any real MIME type, and small enough that metadata
/// cannot be used to store data.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;

/// The `[storage]` section of the frame config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Largest single object, in bytes.
    pub max_object_bytes: u64,
    /// Most bytes one shard may keep in storage: each object counts its content, its content
    /// type and its key.
    pub max_total_bytes: u64,
    /// Most entries one shard may keep: each object counts one, and so does each folder its key
    /// implies (`a/b/c` implies `a` and `a/b`). Entries cost inodes whatever their size.
    pub max_entries: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            max_object_bytes: 64 << 20,
            max_total_bytes: 1 << 30,
            max_entries: 100_000,
        }
    }
}

/// Process-wide storage service: hands out per-shard namespaces under one root.
#[derive(Clone)]
pub struct StorageService {
    root: PathBuf,
    config: StorageConfig,
    namespaces: Arc<Mutex<HashMap<String, FsStore>>>,
}

impl StorageService {
    /// A service keeping shard namespaces under `root/{shard}/storage`.
    pub fn new(root: PathBuf, config: StorageConfig) -> Self {
        Self {
            root,
            config,
            namespaces: Arc::default(),
        }
    }

    /// The namespace of `shard`; one shared value per shard, so its usage is counted once.
    pub fn namespace(&self, shard: &str) -> FsStore {
        self.namespace_with(shard, &self.config)
    }

    /// The namespace of `shard` with its own limits (per-shard overrides); a namespace already in
    /// use keeps the limits it was created with.
    pub fn namespace_with(&self, shard: &str, config: &StorageConfig) -> FsStore {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces
            .entry(shard.to_string())
            .or_insert_with(|| FsStore::new(self.root.join(shard).join("storage"), config.clone()))
            .clone()
    }

    /// Forgets the namespace of `shard` (after its data was removed).
    pub fn forget(&self, shard: &str) {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(shard);
    }
}

/// A store's storage handle: its shard's namespace, or none when the service is not granted.
#[derive(Clone, Default)]
pub struct StorageCtx {
    store: Option<FsStore>,
}

impl StorageCtx {
    /// A context for a shard granted `store`.
    pub fn granted(store: FsStore) -> Self {
        Self { store: Some(store) }
    }

    /// A context for a shard without the storage service.
    pub fn denied() -> Self {
        Self { store: None }
    }

    fn store(&self) -> Result<&FsStore, Error> {
        self.store.as_ref().ok_or_else(|| {
            Error::Io(
                "storage is not granted to this shard; declare `storage` in its manifest's services"
                    .to_string(),
            )
        })
    }
}

/// Checks a key against the rules documented in `wit/storage.wit`.
pub fn validate_key(key: &str) -> Result<(), Error> {
    let fail = |why: &str| Err(Error::InvalidKey(format!("key {key:?} {why}")));
    if key.is_empty() {
        return fail("is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return fail(&format!(
            "is {} bytes long; keys have at most {MAX_KEY_LEN}",
            key.len()
        ));
    }
    if key.starts_with('/') {
        return fail("starts with `/`; keys are relative to the shard's namespace");
    }
    if key.contains('\\') {
        return fail("contains `\\`; use `/` between segments");
    }
    if key.chars().any(char::is_control) {
        return fail("contains a control character (NUL included)");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return fail("has an empty segment (`//` or a trailing `/`)");
        }
        if segment == "." || segment == ".." {
            return fail("has a `.` or `..` segment; keys cannot leave the namespace");
        }
        if segment.starts_with('.') {
            return fail("has a segment starting with `.`, which the frame reserves");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return fail(&format!(
                "has a segment of {} bytes; segments have at most {MAX_SEGMENT_LEN}",
                segment.len()
            ));
        }
    }
    Ok(())
}

/// Checks a content type against the rules documented in `wit/storage.wit`: at most
/// [`MAX_CONTENT_TYPE_LEN`] bytes of printable ASCII, as MIME types are.
pub fn validate_content_type(content_type: &str) -> Result<(), Error> {
    if content_type.len() > MAX_CONTENT_TYPE_LEN {
        return Err(Error::LimitExceeded(format!(
            "the content type is {} bytes long; content types have at most {MAX_CONTENT_TYPE_LEN}",
            content_type.len()
        )));
    }
    if let Some(bad) = content_type.bytes().find(|b| !(b' '..=b'~').contains(b)) {
        return Err(Error::InvalidKey(format!(
            "the content type contains byte 0x{bad:02x}; content types are printable ASCII (e.g. `text/plain; charset=utf-8`)"
        )));
    }
    Ok(())
}

/// The view the `Host` trait is implemented on.
pub struct StorageView<'a> {
    /// The store's storage context.
    pub ctx: &'a StorageCtx,
}

/// [`HasData`] marker for adding the interface to a linker.
pub struct Storage;

impl HasData for Storage {
    type Data<'a> = StorageView<'a>;
}

/// Adds `arkham:shard/storage` to `linker`, with `view` projecting the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> StorageView<'_>,
) -> wasmtime::Result<()> {
    storage::add_to_linker::<T, Storage>(linker, view)
}

impl storage::Host for StorageView<'_> {
    async fn put(
        &mut self,
        key: String,
        data: Vec<u8>,
        content_type: String,
    ) -> wasmtime::Result<Result<ObjectInfo, Error>> {
        let valid = validate_key(&key).and_then(|()| validate_content_type(&content_type));
        Ok(match (self.ctx.store(), valid) {
            (Ok(store), Ok(())) => store.put(key, data, content_type).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    }

    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Object>, Error>> {
        Ok(match (self.ctx.store(), validate_key(&key)) {
            (Ok(store), Ok(())) => store.get(key).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    }

    async fn stat(&mut self, key: String) -> wasmtime::Result<Result<Option<ObjectInfo>, Error>> {
        Ok(match (self.ctx.store(), validate_key(&key)) {
            (Ok(store), Ok(())) => store.stat(key).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    }

    async fn exists(&mut self, key: String) -> wasmtime::Result<Result<bool, Error>> {
        Ok(match (self.ctx.store(), validate_key(&key)) {
            (Ok(store), Ok(())) => store.stat(key).await.map(|info| info.is_some()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, Error>> {
        Ok(match (self.ctx.store(), validate_key(&key)) {
            (Ok(store), Ok(())) => store.delete(key).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    }

    async fn list(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<ObjectInfo>, Error>> {
        Ok(match self.ctx.store() {
            Ok(store) => store.list(prefix).await,
            Err(e) => Err(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "exports/2026/report.pdf", "a-b_c.d", "ünïcode/ok"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_KEY_LEN + 1);
        let long_segment = "y".repeat(MAX_SEGMENT_LEN + 1);
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "a/",
            "./a",
            ".hidden",
            "a\\b",
            "nul\0byte",
            "tab\tkey",
            &long,
            &long_segment,
        ] {
            assert!(
                matches!(validate_key(bad), Err(Error::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }

    fn host_over(dir: &std::path::Path) -> StorageCtx {
        StorageCtx::granted(FsStore::new(dir.to_path_buf(), StorageConfig::default()))
    }

    #[tokio::test]
    async fn content_types_are_bounded_and_nothing_is_written_on_refusal() {
        use storage::Host as _;
        let dir = tempfile::tempdir().unwrap();
        let ctx = host_over(dir.path());
        let mut host = StorageView { ctx: &ctx };
        let huge = "a/".to_string() + &"b".repeat(60 << 20);
        let err = host
            .put("k".into(), Vec::new(), huge)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, Error::LimitExceeded(m) if m.contains("content type")),
            "{err:?}"
        );
        let just_over = "c".repeat(MAX_CONTENT_TYPE_LEN + 1);
        assert!(matches!(
            host.put("k".into(), Vec::new(), just_over).await.unwrap(),
            Err(Error::LimitExceeded(_))
        ));
        for bad in ["text/plain\r\nx: y", "text/\u{e9}t\u{e9}", "a\0b"] {
            let err = host
                .put("k".into(), Vec::new(), bad.into())
                .await
                .unwrap()
                .unwrap_err();
            assert!(
                matches!(&err, Error::InvalidKey(m) if m.contains("printable ASCII")),
                "{bad:?}: {err:?}"
            );
        }
        // A 255-byte segment is refused by the key rules, before the file system sees it.
        let err = host
            .put("s".repeat(255), Vec::new(), "x/y".into())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidKey(m) if m.contains("segment of 255 bytes") && m.contains("at most 240")),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "refusals wrote"
        );

        let longest = "c".repeat(MAX_CONTENT_TYPE_LEN);
        let info = host
            .put("k".into(), Vec::new(), longest.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.content_type, longest);
        let got = host.get("k".into()).await.unwrap().unwrap().unwrap();
        assert_eq!(got.info.content_type, longest);
    }
}
