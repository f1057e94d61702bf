//! The frame's data directory and what lives where in it.
//!
//! ```text
//! {data}/arkham.toml              frame config (optional)
//! {data}/installed.json           installed shards
//! {data}/grants.json              what each shard may use
//! {data}/admin-token              the admin API's bearer token (0600)
//! {data}/.lock                    held while installed.json changes
//! {data}/store/blobs/sha256/…     components, content-addressed
//! {data}/cache/compiled/…         compiled components
//! {data}/frame.db                 event log
//! {data}/registry/{name}/        local OCI layouts: the default registry when none is configured
//! {data}/shards/{name}/…          each shard's database and storage
//! ```

use std::path::{Path, PathBuf};

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default: `$ARKHAM_DATA_DIR` is read by the CLI; this is the XDG fallback,
    /// `$XDG_DATA_HOME/arkham` or `~/.local/share/arkham`.
    pub fn default_root() -> PathBuf {
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("arkham");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local").join("share").join("arkham")
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The frame config file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("arkham.toml")
    }

    /// The installed-shards catalog.
    pub fn catalog(&self) -> PathBuf {
        self.root.join("installed.json")
    }

    /// The grants of the installed shards.
    pub fn grants(&self) -> PathBuf {
        self.root.join("grants.json")
    }

    /// The admin API token (created at the frame's first start, mode 0600).
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }

    /// Where a running frame says where it listens (`{"address", "pid"}`, and `"metrics"` with `[metrics] listen`), for the commands
    /// that ask it (`arkham logs`); removed when it stops.
    pub fn serving(&self) -> PathBuf {
        self.root.join("serving.json")
    }

    /// The local OCI image layout used as the default registry when none is configured.
    pub fn local_registry(&self) -> PathBuf {
        self.root.join("registry")
    }

    /// The lock file guarding the catalog.
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// `arkham.lock`: what was installed from registries, pinned by digest.
    pub fn lockfile(&self) -> PathBuf {
        self.root.join(arkham_registry::lockfile::FILE_NAME)
    }

    /// The tags resolved online, per repository, for working offline
    /// ([`arkham_registry::cache`]).
    pub fn tag_index(&self) -> PathBuf {
        self.root.join("registry-index.json")
    }

    /// The content-addressed store of components (and of the manifests and configs they came
    /// with, for working offline).
    pub fn store(&self) -> arkham_registry::store::BlobStore {
        arkham_registry::store::BlobStore::new(self.root.join("store"))
    }

    /// The compiled-component cache; `$ARKHAM_CACHE_DIR` moves it (frames on one machine, or
    /// test runs, can then share compiled artifacts: they are keyed by content and engine).
    pub fn compiled_cache(&self) -> PathBuf {
        match std::env::var_os("ARKHAM_CACHE_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => self.root.join("cache").join("compiled"),
        }
    }

    /// The event log database.
    pub fn event_log(&self) -> PathBuf {
        self.root.join("frame.db")
    }

    /// The folder holding every shard's data.
    pub fn shards(&self) -> PathBuf {
        self.root.join("shards")
    }

    /// The folder holding one shard's data.
    pub fn shard(&self, name: &str) -> PathBuf {
        self.shards().join(name)
    }
}
