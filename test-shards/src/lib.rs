//! The guest shards, built once per test run.
//!
//! `build.rs` compiles the `shards/` workspace (the real shards) and the fixtures in
//! `test-shards/guests/` for `wasm32-wasip2` into `target/guests`, and this crate exposes where
//! each one's manifest and component are. Each fixture's HTTP contract is documented at the top
//! of its `src/lib.rs`.
//!
//! ```no_run
//! let bytes = std::fs::read(test_shards::PACKETS.component).unwrap();
//! let manifest = std::fs::read_to_string(test_shards::PACKETS.manifest).unwrap();
//! assert!(test_shards::ALL.iter().any(|guest| guest.name == "recorder"));
//! # let _ = (bytes, manifest);
//! ```

/// A built guest shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestShard {
    /// The shard's name, as in its `shard.toml`.
    pub name: &'static str,
    /// Absolute path of its `shard.toml`.
    pub manifest: &'static str,
    /// Absolute path of the built component (`.wasm`). The manifest's `[build] component` points
    /// at the copy a `cargo build` in the shard's own workspace makes; tests use this one.
    pub component: &'static str,
}

pub mod cluster;
pub mod engines;

include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_start_and_stop() {
        let Some(pg) = engines::Postgres::shared() else {
            return;
        };
        let url = pg.database("smoke");
        let db = url.rsplit('/').next().unwrap().to_string();
        assert_eq!(pg.psql(&db, "SELECT 1 + 1"), "2");
        let Some(mut nats) = engines::Nats::start() else {
            return;
        };
        nats.restart();
        let port = nats
            .url()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        drop(nats);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn every_guest_is_a_component() {
        for guest in ALL {
            let bytes = std::fs::read(guest.component).unwrap();
            // A component's preamble: magic, then version 0x0d and layer 1.
            assert_eq!(&bytes[..8], b"\0asm\x0d\x00\x01\x00", "{}", guest.name);
            let manifest = std::fs::read_to_string(guest.manifest).unwrap();
            assert!(manifest.contains(&format!("name = \"{}\"", guest.name)));
        }
    }
}
