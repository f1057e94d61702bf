//! `arkham:shard/storage`: each shard's own namespace of blobs.
//!
//! [`StorageService`] is process-wide; [`StorageCtx`] is a store's handle on its shard's namespace,
//! backed by a [`ShardStore`]: files on a single machine ([`FsStore`]) or a NATS JetStream
//! object-store bucket ([`NatsStore`]). Keys and content types are validated here, before any
//! backend sees them; the backend enforces the quotas (bytes and entries) under its writer lock.

mod fs;
mod object_store;

use crate::bindings::storage::{self, Error, Object, ObjectInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::component::HasData;

pub use fs::{FsStore, MAX_LIST_BYTES, Usage};
pub use object_store::{NatsStore, bucket_name};

/// Which engine keeps the objects: `[storage] backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Files under the data dir (the default).
    #[default]
    Embedded,
    /// One NATS JetStream object-store bucket per shard, with the `[nats]` section.
    Nats,
}

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
    /// Where objects are kept: `"embedded"` (files, the default) or `"nats"` (JetStream object
    /// store, configured in `[nats]`).
    pub backend: StorageBackend,
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
            backend: StorageBackend::Embedded,
            max_object_bytes: 64 << 20,
            max_total_bytes: 1 << 30,
            max_entries: 100_000,
        }
    }
}

/// A shard's namespace on one engine: the seam between the checks above and the engine.
#[derive(Clone)]
pub enum ShardStore {
    /// Files.
    Fs(FsStore),
    /// A JetStream object-store bucket.
    Nats(NatsStore),
}

impl From<FsStore> for ShardStore {
    fn from(store: FsStore) -> Self {
        Self::Fs(store)
    }
}

impl From<NatsStore> for ShardStore {
    fn from(store: NatsStore) -> Self {
        Self::Nats(store)
    }
}

impl ShardStore {
    /// Stores an object. The key and content type must already be validated.
    pub async fn put(
        &self,
        key: String,
        data: Vec<u8>,
        content_type: String,
    ) -> Result<ObjectInfo, Error> {
        match self {
            Self::Fs(s) => s.put(key, data, content_type).await,
            Self::Nats(s) => s.put(key, data, content_type).await,
        }
    }

    /// Reads an object, or `None`; at most `max_object_bytes`.
    pub async fn get(&self, key: String) -> Result<Option<Object>, Error> {
        match self {
            Self::Fs(s) => s.get(key).await,
            Self::Nats(s) => s.get(key).await,
        }
    }

    /// Metadata of an object, or `None`.
    pub async fn stat(&self, key: String) -> Result<Option<ObjectInfo>, Error> {
        match self {
            Self::Fs(s) => s.stat(key).await,
            Self::Nats(s) => s.stat(key).await,
        }
    }

    /// Deletes an object; tells whether there was one.
    pub async fn delete(&self, key: String) -> Result<bool, Error> {
        match self {
            Self::Fs(s) => s.delete(key).await,
            Self::Nats(s) => s.delete(key).await,
        }
    }

    /// Lists objects whose keys start with `prefix`, sorted by key, within [`MAX_LIST_BYTES`].
    pub async fn list(&self, prefix: String) -> Result<Vec<ObjectInfo>, Error> {
        match self {
            Self::Fs(s) => s.list(prefix).await,
            Self::Nats(s) => s.list(prefix).await,
        }
    }

    /// The namespace's usage, as the quotas count it.
    pub async fn usage(&self) -> Result<Usage, Error> {
        match self {
            Self::Fs(s) => s.usage().await,
            Self::Nats(s) => s.usage().await,
        }
    }

    #[cfg(test)]
    async fn list_within(&self, prefix: String, limit: u64) -> Result<Vec<ObjectInfo>, Error> {
        match self {
            Self::Fs(s) => s.list_within(prefix, limit).await,
            Self::Nats(s) => s.list_within(prefix, limit).await,
        }
    }
}

/// Process-wide storage service: hands out per-shard namespaces under one root, or in one
/// JetStream account.
#[derive(Clone)]
pub struct StorageService {
    root: PathBuf,
    config: StorageConfig,
    /// With `backend = "nats"`: the JetStream context and the bucket prefix.
    nats: Option<(async_nats::jetstream::Context, String)>,
    namespaces: Arc<Mutex<HashMap<String, ShardStore>>>,
}

impl StorageService {
    /// A service keeping shard namespaces under `root/{shard}/storage`.
    pub fn new(root: PathBuf, config: StorageConfig) -> Self {
        Self {
            root,
            config,
            nats: None,
            namespaces: Arc::default(),
        }
    }

    /// A service keeping each shard's namespace in the bucket `<prefix>_<shard>` of `client`'s
    /// JetStream account.
    pub fn on_nats(config: StorageConfig, client: async_nats::Client, prefix: &str) -> Self {
        Self {
            root: PathBuf::new(),
            config,
            nats: Some((async_nats::jetstream::new(client), prefix.to_string())),
            namespaces: Arc::default(),
        }
    }

    /// The namespace of `shard`; one shared value per shard, so its usage is counted once.
    pub fn namespace(&self, shard: &str) -> ShardStore {
        self.namespace_with(shard, &self.config)
    }

    /// The namespace of `shard` with its own limits (per-shard overrides); a namespace already in
    /// use keeps the limits it was created with.
    pub fn namespace_with(&self, shard: &str, config: &StorageConfig) -> ShardStore {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces
            .entry(shard.to_string())
            .or_insert_with(|| match &self.nats {
                // The bucket comes from the shard's name, never from guest input.
                Some((js, prefix)) => {
                    NatsStore::new(js.clone(), prefix, shard, config.clone()).into()
                }
                None => FsStore::new(self.root.join(shard).join("storage"), config.clone()).into(),
            })
            .clone()
    }

    /// Deletes what the engine keeps for `shard` (`arkham shard remove --purge`): its bucket
    /// on NATS. The embedded namespace is a folder of the shard's, which the purge removes.
    pub async fn purge(&self, shard: &str) -> Result<(), Error> {
        self.forget(shard);
        let Some((js, prefix)) = &self.nats else {
            return Ok(());
        };
        let bucket = object_store::bucket_name(prefix, shard);
        match js.delete_object_store(&bucket).await {
            Ok(()) => Ok(()),
            // Never written to: there is no bucket.
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(Error::Io(format!(
                "the bucket `{bucket}` of shard `{shard}` could not be deleted: {e}"
            ))),
        }
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
    store: Option<ShardStore>,
}

impl StorageCtx {
    /// A context for a shard granted `store`.
    pub fn granted(store: impl Into<ShardStore>) -> Self {
        Self {
            store: Some(store.into()),
        }
    }

    /// A context for a shard without the storage service.
    pub fn denied() -> Self {
        Self { store: None }
    }

    fn store(&self) -> Result<&ShardStore, Error> {
        self.store.as_ref().ok_or_else(|| {
            Error::Denied(
                "storage is not granted to this shard: declare `storage` in its manifest's services, \
                 or give back a revoked grant (`arkham shard grants NAME --grant storage`)"
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
    use test_shards::engines::Nats;

    fn limits(object: u64, total: u64, entries: u64) -> StorageConfig {
        StorageConfig {
            max_object_bytes: object,
            max_total_bytes: total,
            max_entries: entries,
            ..Default::default()
        }
    }

    /// A backend to run the behaviour tests on: files in a temp dir, or a bucket on a
    /// throw-away nats-server.
    enum Backend {
        Fs(tempfile::TempDir),
        Nats {
            /// Runs while the backend is used.
            _server: Box<Nats>,
            client: async_nats::Client,
        },
    }

    impl Backend {
        async fn all() -> Vec<Backend> {
            let mut all = vec![Backend::Fs(tempfile::tempdir().unwrap())];
            if let Some(nats) = Nats::start() {
                let client = async_nats::connect(nats.url()).await.unwrap();
                all.push(Backend::Nats {
                    _server: Box::new(nats),
                    client,
                });
            }
            all
        }

        fn service(&self, config: StorageConfig) -> StorageService {
            match self {
                Backend::Fs(dir) => StorageService::new(dir.path().to_path_buf(), config),
                Backend::Nats { client, .. } => {
                    StorageService::on_nats(config, client.clone(), "test")
                }
            }
        }

        fn name(&self) -> &'static str {
            match self {
                Backend::Fs(_) => "fs",
                Backend::Nats { .. } => "nats",
            }
        }
    }

    #[tokio::test]
    async fn round_trip_list_delete_and_quota_on_every_backend() {
        for backend in Backend::all().await {
            let which = backend.name();
            let store = backend.service(limits(100, 250, 100)).namespace("shard");
            let info = store
                .put("a/b.txt".into(), b"hello".to_vec(), "text/plain".into())
                .await
                .unwrap();
            assert_eq!(
                (info.size, info.content_type.as_str()),
                (5, "text/plain"),
                "{which}"
            );
            let got = store.get("a/b.txt".into()).await.unwrap().unwrap();
            assert_eq!(got.data, b"hello", "{which}");
            assert_eq!(got.info.content_type, "text/plain", "{which}");
            assert!(got.info.modified_at > 0, "{which}");
            let stat = store.stat("a/b.txt".into()).await.unwrap().unwrap();
            assert_eq!(
                (stat.size, stat.content_type.as_str()),
                (5, "text/plain"),
                "{which}"
            );
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
            assert_eq!(keys, ["a/b.txt", "a/c.bin"], "{which}");
            assert!(store.list("b".into()).await.unwrap().is_empty(), "{which}");
            // 22 + 131 used; another 104 would pass the 250 quota, 101 the object limit.
            let over = store.put("d".into(), vec![0; 100], "x/y".into()).await;
            assert!(
                matches!(over, Err(Error::LimitExceeded(_))),
                "{which}: {over:?}"
            );
            let big = store.put("e".into(), vec![0; 101], "x/y".into()).await;
            assert!(
                matches!(big, Err(Error::LimitExceeded(_))),
                "{which}: {big:?}"
            );
            assert_eq!(
                store.usage().await.unwrap(),
                Usage {
                    bytes: 153,
                    entries: 3
                },
                "{which}"
            );
            assert!(store.delete("a/c.bin".into()).await.unwrap(), "{which}");
            assert!(!store.delete("a/c.bin".into()).await.unwrap(), "{which}");
            assert!(
                store.stat("a/c.bin".into()).await.unwrap().is_none(),
                "{which}"
            );
            // Deleted objects are not listed.
            assert_eq!(store.list(String::new()).await.unwrap().len(), 1, "{which}");
            store
                .put("d".into(), vec![0; 100], "x/y".into())
                .await
                .unwrap();
            // Replacing counts the new size instead of the old.
            store
                .put("d".into(), vec![0; 90], "x/y".into())
                .await
                .unwrap();
            assert_eq!(
                store.usage().await.unwrap(),
                Usage {
                    bytes: 22 + 94,
                    entries: 3
                },
                "{which}"
            );
            assert!(
                store.get("missing".into()).await.unwrap().is_none(),
                "{which}"
            );
            // Any valid key is storable, whatever the engine's own naming rules.
            for key in ["ünïcode/ok", "with space", "x=y/z.~"] {
                store
                    .put(key.into(), b"1".to_vec(), "t/t".into())
                    .await
                    .unwrap();
                assert_eq!(
                    store.get(key.into()).await.unwrap().unwrap().data,
                    b"1",
                    "{which}"
                );
            }
        }
    }

    #[tokio::test]
    async fn entries_and_list_size_are_bounded_on_every_backend() {
        for backend in Backend::all().await {
            let which = backend.name();
            let store = backend
                .service(limits(1 << 20, 1 << 30, 4))
                .namespace("shard");
            // `a/b/c` costs 3 entries (the object and two folders), `a/b/d` one more.
            store
                .put("a/b/c".into(), vec![], "t/t".into())
                .await
                .unwrap();
            store
                .put("a/b/d".into(), vec![], "t/t".into())
                .await
                .unwrap();
            let over = store.put("e".into(), vec![], "t/t".into()).await;
            assert!(
                matches!(&over, Err(Error::LimitExceeded(m)) if m.contains("entries")),
                "{which}: {over:?}"
            );
            assert!(store.delete("a/b/d".into()).await.unwrap());
            store
                .put("a/b/e".into(), vec![], "t/t".into())
                .await
                .unwrap();

            // The longest key round-trips.
            let store = backend
                .service(limits(1 << 20, 1 << 30, 100))
                .namespace("long");
            let segment = "s".repeat(MAX_SEGMENT_LEN);
            let mut key = [segment.as_str(); 4].join("/");
            key.push('/');
            key.push_str(&"t".repeat(MAX_KEY_LEN - key.len()));
            assert_eq!(key.len(), MAX_KEY_LEN);
            store
                .put(key.clone(), b"far".to_vec(), "t/t".into())
                .await
                .unwrap();
            assert_eq!(
                store.get(key.clone()).await.unwrap().unwrap().data,
                b"far",
                "{which}"
            );
            assert_eq!(store.list("s".into()).await.unwrap()[0].key, key, "{which}");

            let store = backend
                .service(limits(1 << 20, 1 << 30, 1000))
                .namespace("lister");
            let content_type = "c".repeat(MAX_CONTENT_TYPE_LEN);
            for i in 0..40 {
                store
                    .put(format!("k/{i:03}"), Vec::new(), content_type.clone())
                    .await
                    .unwrap();
            }
            // Each listed object costs 5 + 256 + 32 bytes: 34 pass 10,000.
            let err = store.list_within(String::new(), 10_000).await.unwrap_err();
            assert!(
                matches!(&err, Error::LimitExceeded(m) if m.contains("prefix")),
                "{which}"
            );
            assert_eq!(
                store
                    .list_within("k/01".into(), 10_000)
                    .await
                    .unwrap()
                    .len(),
                10
            );
        }
    }

    #[tokio::test]
    async fn objects_over_the_size_limit_are_refused_at_get() {
        for backend in Backend::all().await {
            let which = backend.name();
            backend
                .service(limits(100, 1 << 20, 100))
                .namespace("shard")
                .put("big".into(), vec![7; 100], "t/t".into())
                .await
                .unwrap();
            // The limit lowered since: refused rather than read.
            let lowered = match &backend {
                Backend::Fs(dir) => ShardStore::from(FsStore::new(
                    dir.path().join("shard").join("storage"),
                    limits(10, 1 << 20, 100),
                )),
                Backend::Nats { client, .. } => ShardStore::from(NatsStore::new(
                    async_nats::jetstream::new(client.clone()),
                    "test",
                    "shard",
                    limits(10, 1 << 20, 100),
                )),
            };
            let err = lowered.get("big".into()).await.unwrap_err();
            assert!(
                matches!(&err, Error::LimitExceeded(m) if m.contains("delete it")),
                "{which}: {err:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buckets_are_per_shard_and_survive_a_nats_restart() {
        let Some(mut nats) = Nats::start() else {
            return;
        };
        let client = async_nats::connect(nats.url()).await.unwrap();
        let service = StorageService::on_nats(limits(1 << 20, 1000, 100), client, "test");
        let one = service.namespace("one");
        let two = service.namespace("two");
        one.put("k".into(), b"of one".to_vec(), "text/one".into())
            .await
            .unwrap();
        two.put("k".into(), b"of two".to_vec(), "text/two".into())
            .await
            .unwrap();
        assert_eq!(one.get("k".into()).await.unwrap().unwrap().data, b"of one");
        assert_eq!(
            two.get("k".into())
                .await
                .unwrap()
                .unwrap()
                .info
                .content_type,
            "text/two"
        );
        assert!(one.delete("k".into()).await.unwrap());
        assert!(two.stat("k".into()).await.unwrap().is_some());
        // Quotas are per shard too.
        one.put("fill".into(), vec![0; 900], "t/t".into())
            .await
            .unwrap();
        two.put("more".into(), vec![0; 900], "t/t".into())
            .await
            .unwrap();
        if let ShardStore::Nats(store) = &one {
            assert_eq!(store.bucket(), "test_one");
        }

        tokio::task::block_in_place(|| nats.restart());
        // A fresh service (a frame restart too) recounts from the bucket.
        let client = async_nats::connect(nats.url()).await.unwrap();
        let service = StorageService::on_nats(limits(1 << 20, 1000, 100), client, "test");
        let two = service.namespace("two");
        let got = two.get("k".into()).await.unwrap().unwrap();
        assert_eq!(
            (got.data.as_slice(), got.info.content_type.as_str()),
            (&b"of two"[..], "text/two")
        );
        assert_eq!(two.usage().await.unwrap().bytes, 6 + 8 + 1 + 900 + 3 + 4);
        let over = two.put("x".into(), vec![0; 100], "t/t".into()).await;
        assert!(matches!(over, Err(Error::LimitExceeded(_))), "{over:?}");
    }

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
