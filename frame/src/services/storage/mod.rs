//! `arkham:shard/storage`: each shard's own namespace of blobs.
//!
//! [`StorageService`] is process-wide; [`StorageCtx`] is a store's handle on its shard's namespace,
//! backed by [`FsStore`] on a single machine. Keys are validated here, before any backend sees them.

mod fs;

use crate::bindings::storage::{self, Error, Object, ObjectInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::component::HasData;

pub use fs::FsStore;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest key segment, in bytes: what common filesystems allow for one name.
const MAX_SEGMENT_LEN: usize = 255;

/// The `[storage]` section of the frame config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Largest single object, in bytes.
    pub max_object_bytes: u64,
    /// Most bytes one shard may keep in storage.
    pub max_total_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            max_object_bytes: 64 << 20,
            max_total_bytes: 1 << 30,
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
                "has a segment longer than {MAX_SEGMENT_LEN} bytes"
            ));
        }
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
        Ok(match (self.ctx.store(), validate_key(&key)) {
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
        let long_segment = "y".repeat(300);
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
}
