//! Distribution of arkham shards.
//!
//! This crate owns where shard components come from and how they are kept: today the
//! content-addressed [`store::BlobStore`] every installed component lives in, and [`digest::Digest`],
//! the `sha256:…` name of a blob. Registry references, resolution, push and pull build on these.
//!
//! ```
//! # fn main() -> Result<(), arkham_registry::store::StoreError> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = arkham_registry::store::BlobStore::new(dir.path());
//! let digest = store.put(b"\0asm...")?;
//! assert_eq!(store.get(&digest)?, b"\0asm...");
//! # Ok(()) }
//! ```

pub mod digest;
pub mod store;
