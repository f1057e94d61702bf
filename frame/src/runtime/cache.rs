//! The on-disk cache of compiled components, keyed by the caller's key for the code (the frame
//! passes `shards::package::compile_key`: the component's digest without its embedded manifest)
//! and the engine's compatibility hash, so a restart (or a second frame on the same data dir) does not
//! compile again.

use sha2::{Digest, Sha256};
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A [`Hasher`] feeding SHA-256, for a compatibility hash that is stable across processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only `finalize` is used; `finish` is required by the trait.
        0
    }
}

/// Compiled-component cache in one directory.
#[derive(Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    compat: String,
}

impl CompiledCache {
    /// A cache in `dir` for artifacts of `engine`.
    pub fn new(engine: &Engine, dir: PathBuf) -> std::io::Result<Self> {
        // Only the frame's user may write here: what is loaded from this folder runs as code.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = hex(&hasher.0.finalize()[..8]);
        Ok(Self { dir, compat })
    }

    fn path(&self, digest: &str) -> PathBuf {
        let digest = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{digest}-{}.cwasm", self.compat))
    }

    /// Whether a compiled artifact for `digest` is cached.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// The compiled component for `wasm`, whose content digest is `digest`: loaded from the
    /// cache, or compiled and stored.
    pub fn load(&self, engine: &Engine, digest: &str, wasm: &[u8]) -> wasmtime::Result<Component> {
        let path = self.path(digest);
        if path.is_file() {
            // SAFETY: `deserialize_file` trusts its input to be the output of `precompile_component`
            // by a compatible engine. Files here are only written by `store` below, from that
            // output, atomically (temporary file + rename), in a 0700 folder of the frame's own
            // data dir, under a name that carries the engine's compatibility hash; wasmtime
            // itself also checks the artifact's header against this engine's configuration.
            #[expect(
                unsafe_code,
                reason = "loading our own precompiled artifacts; see SAFETY"
            )]
            let loaded = unsafe { Component::deserialize_file(engine, &path) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding an unusable compiled artifact");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        if let Err(e) = store(&path, &compiled) {
            tracing::warn!(path = %path.display(), error = %e, "compiled component not cached");
        }
        // SAFETY: `compiled` was produced just above by `precompile_component` of this engine.
        #[expect(
            unsafe_code,
            reason = "loading an artifact this engine just produced; see SAFETY"
        )]
        let component = unsafe { Component::deserialize(engine, &compiled) }?;
        Ok(component)
    }

    /// Removes every cached artifact of `digest`.
    pub fn remove(&self, digest: &str) {
        let _ = fs::remove_file(self.path(digest));
    }
}

fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    arkham_registry::fsutil::write_atomically(path, bytes, 0o600)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
