//! Export bundles: a packet, its contents and its versions as a set of JSON files listed with
//! their SHA-256 in a manifest, encoded as one JSON document or as a zip archive.
//!
//! Every file is compact JSON with sorted keys, the form `serde_json` gives a parsed document,
//! so a file hashes the same in both encodings: in a zip it is the entry's bytes; in the JSON
//! document it is embedded as a value and hashed as it serialises again. Files:
//! `packet.json`, `contents.json` (no entry ids, so they survive an import), `versions.json`
//! and `snapshots/v{n}.json` (a version's snapshot, as stored). Shares are never exported.
//!
//! Reading a bundle checks, before anything is written: the format name and version, every
//! listed file present with its size and SHA-256, no unlisted file, each file's shape and
//! fields (with the same bounds as the API), and the contents checksum against the contents.

mod read;

pub use read::{Imported, decode};

use arkham_shard_sdk::ApiError;
use serde_json::{Map, Value, json};

use crate::model::{Content, ExportFormat, Packet, Version};
use crate::snapshot;

/// The `format` every manifest names; anything else is a foreign document.
pub const FORMAT: &str = "arkham-packets-bundle";
/// The layout version this shard writes and reads.
pub const FORMAT_VERSION: i64 = 1;
/// Bounds on what an import may hold.
pub const MAX_CONTENTS: usize = 10_000;
pub const MAX_VERSIONS: usize = 1_000;
pub(super) const MAX_FILE_NAME: usize = 128;
pub(super) const MAX_TOTAL_BYTES: usize = 16 << 20;
/// A JSON bundle is parsed whole into a document tree, several times its size in memory, so it
/// is held to less than a zip (whose entries are read in place).
pub const MAX_JSON_BYTES: usize = 4 << 20;
pub(super) const MAX_SUMMARY: usize = 1_000;
pub(super) const MAX_TIMESTAMP: usize = 64;

pub(super) const MANIFEST: &str = "manifest.json";
pub(super) const PACKET: &str = "packet.json";
pub(super) const CONTENTS: &str = "contents.json";
pub(super) const VERSIONS: &str = "versions.json";

/// A version as exported, with its snapshot document when storage holds one.
pub struct ExportedVersion {
    pub version: Version,
    pub snapshot: Option<Value>,
}

/// An encoded bundle.
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// SHA-256 of the canonical contents listing (the packet's checksum when finalised).
    pub contents_checksum: String,
}

pub(super) fn snapshot_file(version_number: i64) -> String {
    format!("snapshots/v{version_number}.json")
}

pub(super) fn to_bytes(value: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value)
        .map_err(|err| ApiError::internal(format!("could not serialise the bundle: {err}")))
}

/// Encodes the packet, its contents (in canonical order) and its versions as `format`.
pub fn encode(
    format: ExportFormat,
    packet: &Packet,
    contents: &[Content],
    versions: &[ExportedVersion],
    exported_at: &str,
) -> Result<Encoded, ApiError> {
    let packet_value = serde_json::to_value(packet)
        .map_err(|err| ApiError::internal(format!("could not serialise the packet: {err}")))?;
    let portable_contents: Vec<Value> = contents
        .iter()
        .map(|c| {
            json!({
                "content_type": c.content_type,
                "content_id": c.content_id,
                "content_title": c.content_title,
                "added_at": c.added_at,
                "added_by": c.added_by,
                "order_num": c.order_num,
            })
        })
        .collect();
    let mut file_values: Vec<(String, Value)> = vec![
        (PACKET.to_owned(), packet_value),
        (CONTENTS.to_owned(), Value::Array(portable_contents)),
    ];
    let mut version_list = Vec::new();
    let mut snapshots = Vec::new();
    for exported in versions {
        let number = exported.version.version_number;
        let path = exported.snapshot.as_ref().map(|_| snapshot_file(number));
        version_list.push(json!({
            "version_number": number,
            "created_at": exported.version.created_at,
            "changes_summary": exported.version.changes_summary,
            "snapshot": path,
        }));
        if let (Some(path), Some(snapshot)) = (path, &exported.snapshot) {
            snapshots.push((path, snapshot.clone()));
        }
    }
    file_values.push((VERSIONS.to_owned(), Value::Array(version_list)));
    file_values.extend(snapshots);

    let contents_checksum = snapshot::sha256_hex(&snapshot::canonical_listing(contents));
    let mut listed = Vec::new();
    let mut file_bytes = Vec::new();
    for (path, value) in &file_values {
        let bytes = to_bytes(value)?;
        listed.push(json!({
            "path": path,
            "size": bytes.len(),
            "sha256": snapshot::sha256_hex(&bytes),
        }));
        file_bytes.push((path.clone(), bytes));
    }
    let manifest = json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": exported_at,
        "exported_by": { "shard": "packets", "version": env!("CARGO_PKG_VERSION") },
        "source_packet_id": packet.id,
        "contents_checksum": contents_checksum,
        "files": listed,
    });
    let bytes = match format {
        ExportFormat::Zip => {
            let mut entries = vec![(MANIFEST.to_owned(), to_bytes(&manifest)?)];
            entries.extend(file_bytes);
            crate::zip::write(&entries).map_err(|err| {
                ApiError::new(
                    413,
                    "export_too_large",
                    format!("the bundle cannot be written: {err}"),
                )
            })?
        }
        ExportFormat::Json => {
            let embedded: Map<String, Value> = file_values.into_iter().collect();
            let bytes = to_bytes(&json!({ "manifest": manifest, "files": embedded }))?;
            if bytes.len() > MAX_JSON_BYTES {
                return Err(ApiError::new(
                    413,
                    "export_too_large",
                    format!(
                        "the JSON bundle would be {} bytes, more than the {MAX_JSON_BYTES} an \
                         import reads; export as zip",
                        bytes.len()
                    ),
                ));
            }
            bytes
        }
    };
    Ok(Encoded {
        bytes,
        contents_checksum,
    })
}
