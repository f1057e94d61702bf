//! Distribution of arkham shards: references, resolution, push and pull against OCI registries
//! and local OCI layouts, the content-addressed store, the lockfile, and credentials.
//!
//! A shard travels as a CNCF Wasm OCI artifact ([`artifact`]): a `application/vnd.wasm.config.v0+json`
//! config and one `application/wasm` layer holding the component (with the shard manifest
//! embedded, and mirrored in the manifest's annotations).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use arkham_registry::reference::{Location, ShardRef};
//! let r = ShardRef::parse("packets@0.1", Some("ghcr.io/my-org"))?;
//! assert_eq!(r.location.repository_ref(), "ghcr.io/my-org/packets");
//!
//! let dir = tempfile::tempdir()?;
//! let store = arkham_registry::store::BlobStore::new(dir.path());
//! let digest = store.put(b"\0asm...")?;
//! assert_eq!(store.get(&digest)?, b"\0asm...");
//! # Ok(()) }
//! ```

pub mod artifact;
pub mod auth;
pub mod cache;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod layout;
pub mod lockfile;
pub mod login;
pub mod pull;
pub mod push;
pub mod reference;
pub mod repo;
pub mod resolve;
pub mod signature;
pub mod store;
mod transfer;

pub use error::RegistryError;
