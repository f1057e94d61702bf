//! The NATS JetStream object-store backend: one bucket per shard, `<prefix>_<shard>`.
//!
//! The bucket is named after the shard (never after guest input), so one shard cannot name
//! another's. An object's name in the bucket is the hex of its key: keys are validated by the
//! frame's rules (`validate_key`), which allow characters the object store's names do not, and
//! hex names keep every valid key storable. The content type is kept in the object's metadata.
//!
//! Quotas count as the filesystem backend counts (content + content type + key bytes; one entry
//! per object and per folder its key implies), kept under a writer lock and recounted from the
//! bucket's listing on first use. The bucket's own `max_bytes` is a backstop above the quota
//! (twice it, plus room for metadata): replacing an object writes the new chunks before the old
//! ones are purged, so an exact `max_bytes` would refuse replacements near the quota.

use super::{MAX_LIST_BYTES, StorageConfig, Usage};
use crate::bindings::storage::{Error, Object, ObjectInfo};
use async_nats::jetstream::{self, object_store};
use futures::StreamExt as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::io::AsyncReadExt as _;

/// What one listed object costs beyond its key and content type, as in the fs backend.
const LIST_ENTRY_OVERHEAD: u64 = 32;
/// The content type of an object without one in its metadata.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// The metadata key of the content type.
const CONTENT_TYPE: &str = "content-type";
/// Room for the bucket's own metadata messages above twice the quota.
const BACKSTOP_SLACK: u64 = 16 << 20;

/// Usage with the folders that make up its entries: folder → objects under it.
#[derive(Default)]
struct State {
    bytes: u64,
    objects: u64,
    folders: BTreeMap<String, u64>,
}

impl State {
    fn usage(&self) -> Usage {
        Usage {
            bytes: self.bytes,
            entries: self.objects + self.folders.len() as u64,
        }
    }

    fn add(&mut self, key: &str, cost: u64) {
        self.bytes = self.bytes.saturating_add(cost);
        self.objects += 1;
        for folder in folders(key) {
            *self.folders.entry(folder.to_string()).or_default() += 1;
        }
    }

    fn remove(&mut self, key: &str, cost: u64) {
        self.bytes = self.bytes.saturating_sub(cost);
        self.objects = self.objects.saturating_sub(1);
        for folder in folders(key) {
            if let Some(n) = self.folders.get_mut(folder) {
                *n -= 1;
                if *n == 0 {
                    self.folders.remove(folder);
                }
            }
        }
    }
}

/// The folders `a/b/c` implies: `a`, `a/b`.
fn folders(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices('/').map(move |(i, _)| &key[..i])
}

fn cost(size: u64, content_type: usize, key: usize) -> u64 {
    size + content_type as u64 + key as u64
}

fn io(what: &str) -> impl FnOnce(String) -> Error + '_ {
    move |reason| Error::Io(format!("object store {what}: {reason}"))
}

/// The object name of `key` in the bucket.
fn object_name(key: &str) -> String {
    crate::runtime::cache::hex(key.as_bytes())
}

/// The key of an object name, or `None` for a name the frame did not write.
fn key_of(name: &str) -> Option<String> {
    if !name.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn modified_ms(info: &object_store::ObjectInfo) -> u64 {
    info.modified
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
        .unwrap_or(0)
}

fn info_of(key: String, info: &object_store::ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        key,
        size: info.size as u64,
        content_type: info
            .metadata
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
        modified_at: modified_ms(info),
    }
}

struct Inner {
    js: jetstream::Context,
    bucket: String,
    config: StorageConfig,
    store: tokio::sync::OnceCell<object_store::ObjectStore>,
    /// `None` until counted, and again after a failed write. The lock serialises writers.
    state: tokio::sync::Mutex<Option<State>>,
}

/// A shard's storage namespace in a JetStream object-store bucket; cheap to clone.
#[derive(Clone)]
pub struct NatsStore {
    inner: Arc<Inner>,
}

impl NatsStore {
    /// The namespace of `shard` in the bucket `<prefix>_<shard>` (created on first use).
    pub fn new(js: jetstream::Context, prefix: &str, shard: &str, config: StorageConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                js,
                bucket: bucket_name(prefix, shard),
                config,
                store: tokio::sync::OnceCell::new(),
                state: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    async fn store(&self) -> Result<&object_store::ObjectStore, Error> {
        self.inner
            .store
            .get_or_try_init(|| async {
                if let Ok(store) = self.inner.js.get_object_store(&self.inner.bucket).await {
                    return Ok(store);
                }
                let max_bytes = self
                    .inner
                    .config
                    .max_total_bytes
                    .saturating_mul(2)
                    .saturating_add(BACKSTOP_SLACK);
                self.inner
                    .js
                    .create_object_store(object_store::Config {
                        bucket: self.inner.bucket.clone(),
                        max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| io("bucket cannot be created")(e.to_string()))
            })
            .await
    }

    /// Every live object: (key, its info).
    async fn all(&self) -> Result<Vec<(String, object_store::ObjectInfo)>, Error> {
        let store = self.store().await?;
        let mut list = store
            .list()
            .await
            .map_err(|e| io("cannot be listed")(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| io("cannot be listed")(e.to_string()))?;
            if info.deleted {
                continue;
            }
            if let Some(key) = key_of(&info.name) {
                out.push((key, info));
            }
        }
        Ok(out)
    }

    async fn current<'a>(&self, state: &'a mut Option<State>) -> Result<&'a mut State, Error> {
        if state.is_none() {
            let mut counted = State::default();
            for (key, info) in self.all().await? {
                let ct = info.metadata.get(CONTENT_TYPE).map_or(0, String::len);
                counted.add(&key, cost(info.size as u64, ct, key.len()));
            }
            *state = Some(counted);
        }
        state
            .as_mut()
            .ok_or_else(|| Error::Io("object store usage unknown".into()))
    }

    /// The info of the live object under `key`, or `None`.
    async fn info(&self, key: &str) -> Result<Option<object_store::ObjectInfo>, Error> {
        let store = self.store().await?;
        match store.info(object_name(key)).await {
            Ok(info) if !info.deleted => Ok(Some(info)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot be read")(e.to_string())),
        }
    }

    /// The namespace's usage, as the quotas count it.
    pub async fn usage(&self) -> Result<Usage, Error> {
        let mut state = self.inner.state.lock().await;
        Ok(self.current(&mut state).await?.usage())
    }

    /// Stores an object. The key and content type must already be validated.
    pub async fn put(
        &self,
        key: String,
        data: Vec<u8>,
        content_type: String,
    ) -> Result<ObjectInfo, Error> {
        let config = &self.inner.config;
        if data.len() as u64 > config.max_object_bytes {
            return Err(Error::LimitExceeded(format!(
                "the object is {} bytes; objects may be at most {} bytes",
                data.len(),
                config.max_object_bytes
            )));
        }
        let mut guard = self.inner.state.lock().await;
        let state = self.current(&mut guard).await?;
        let old = self.info(&key).await?.map(|info| {
            let ct = info.metadata.get(CONTENT_TYPE).map_or(0, String::len);
            cost(info.size as u64, ct, key.len())
        });
        let new_cost = cost(data.len() as u64, content_type.len(), key.len());
        let used = state.usage();
        let new_bytes = used.bytes.saturating_sub(old.unwrap_or(0)) + new_cost;
        if new_bytes > config.max_total_bytes {
            return Err(Error::LimitExceeded(format!(
                "storing {new_cost} bytes (content, content type and key) would bring the shard's storage to {new_bytes} bytes, over its quota of {}",
                config.max_total_bytes
            )));
        }
        let new_folders = folders(&key)
            .filter(|f| !state.folders.contains_key(*f))
            .count() as u64;
        let new_entries = used.entries + new_folders + u64::from(old.is_none());
        if new_entries > config.max_entries {
            return Err(Error::LimitExceeded(format!(
                "storing `{key}` would bring the shard's storage to {new_entries} entries (objects and folders), over its limit of {}",
                config.max_entries
            )));
        }
        let store = self.store().await?;
        let meta = object_store::ObjectMetadata {
            name: object_name(&key),
            metadata: HashMap::from([(CONTENT_TYPE.to_string(), content_type.clone())]),
            ..Default::default()
        };
        match store.put(meta, &mut data.as_slice()).await {
            Ok(info) => {
                if let Some(old) = old {
                    state.remove(&key, old);
                }
                state.add(&key, new_cost);
                let mut out = info_of(key, &info);
                out.content_type = content_type;
                Ok(out)
            }
            Err(e) => {
                // Part of the object may be written: recount on next use.
                *guard = None;
                let reason = e.to_string();
                if reason.contains("maximum bytes") || reason.contains("resource limits") {
                    Err(Error::LimitExceeded(format!(
                        "the object store bucket {} is full: {reason}",
                        self.inner.bucket
                    )))
                } else {
                    Err(io("write failed")(reason))
                }
            }
        }
    }

    /// Reads an object, or `None`; refuses one over `max_object_bytes` before reading it.
    pub async fn get(&self, key: String) -> Result<Option<Object>, Error> {
        let max = self.inner.config.max_object_bytes;
        let Some(info) = self.info(&key).await? else {
            return Ok(None);
        };
        if info.size as u64 > max {
            return Err(Error::LimitExceeded(format!(
                "the object under `{key}` is {} bytes, more than the {max} bytes objects may have now; delete it",
                info.size
            )));
        }
        let store = self.store().await?;
        let mut object = match store.get(object_name(&key)).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot be read")(e.to_string())),
        };
        let mut data = Vec::with_capacity(info.size.min(max as usize));
        (&mut object)
            .take(max)
            .read_to_end(&mut data)
            .await
            .map_err(|e| io("cannot be read")(e.to_string()))?;
        let mut out = info_of(key, object.info());
        out.size = data.len() as u64;
        Ok(Some(Object { info: out, data }))
    }

    /// Metadata of an object, or `None`.
    pub async fn stat(&self, key: String) -> Result<Option<ObjectInfo>, Error> {
        Ok(self.info(&key).await?.map(|info| info_of(key, &info)))
    }

    /// Deletes an object; tells whether there was one.
    pub async fn delete(&self, key: String) -> Result<bool, Error> {
        let mut guard = self.inner.state.lock().await;
        let state = self.current(&mut guard).await?;
        let Some(info) = self.info(&key).await? else {
            return Ok(false);
        };
        let ct = info.metadata.get(CONTENT_TYPE).map_or(0, String::len);
        let store = self.store().await?;
        match store.delete(object_name(&key)).await {
            Ok(()) => {
                state.remove(&key, cost(info.size as u64, ct, key.len()));
                Ok(true)
            }
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(false),
            Err(e) => {
                *guard = None;
                Err(io("delete failed")(e.to_string()))
            }
        }
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
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for (key, info) in self.all().await? {
            if !key.starts_with(&prefix) {
                continue;
            }
            let info = info_of(key, &info);
            bytes += info.key.len() as u64 + info.content_type.len() as u64 + LIST_ENTRY_OVERHEAD;
            if bytes > limit {
                return Err(Error::LimitExceeded(format!(
                    "the objects matching this prefix pass {limit} bytes of keys and content types; list a longer prefix"
                )));
            }
            out.push(info);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// The bucket of `shard`: `<prefix>_<shard>`, with any character buckets do not allow as `_`
/// (shard names are already letters, digits, `-` and `_`).
pub fn bucket_name(prefix: &str, shard: &str) -> String {
    format!("{prefix}_{shard}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for key in ["a", "ünïcode/ok", "with space/and=sign"] {
            assert_eq!(key_of(&object_name(key)).as_deref(), Some(key));
        }
        assert_eq!(key_of("zz"), None);
        assert_eq!(bucket_name("arkham", "packets"), "arkham_packets");
        assert_eq!(folders("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
    }
}
