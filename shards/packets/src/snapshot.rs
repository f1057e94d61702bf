//! What a version freezes: the checksum of the packet's contents and a JSON snapshot in storage.

use arkham_shard_sdk::{log, random, storage};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::files;
use crate::model::{Content, Packet};

/// The canonical listing of a packet's contents: one JSON array
/// `[content_type, content_id, content_title, order_num]` per line, in the given order.
/// Its SHA-256 is the packet's `checksum` and its length the packet's `size_bytes`.
pub fn canonical_listing(contents: &[Content]) -> Vec<u8> {
    let mut listing = Vec::new();
    for content in contents {
        let line = serde_json::json!([
            content.content_type,
            content.content_id,
            content.content_title,
            content.order_num
        ]);
        listing.extend_from_slice(line.to_string().as_bytes());
        listing.push(b'\n');
    }
    listing
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    random::to_hex(&Sha256::digest(bytes))
}

#[derive(Serialize)]
struct Snapshot<'a> {
    packet: &'a Packet,
    contents: &'a [Content],
}

/// Writes the snapshot of `packet` (at its current version) for the version `version_id` and
/// returns its key.
pub fn write(
    packet: &Packet,
    contents: &[Content],
    version_id: &str,
) -> Result<String, storage::Error> {
    let key = files::snapshot_key(&packet.id, packet.version, version_id);
    storage::put_json(&key, &Snapshot { packet, contents })?;
    Ok(key)
}

/// Like [`write`], but `None` when storage is unavailable: finalising does not need storage
/// (an optional service), so it goes ahead without a snapshot.
pub fn write_optional(packet: &Packet, contents: &[Content], version_id: &str) -> Option<String> {
    match write(packet, contents, version_id) {
        Ok(key) => Some(key),
        Err(error) => {
            log::warn(&format!(
                "packet {} v{}: no snapshot stored ({}: {})",
                packet.id,
                packet.version,
                error.code(),
                error.message()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
