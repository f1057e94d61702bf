//! The events packets publishes, with the seed design's payloads.
//!
//! Events go out after the database commit. A refused publication does not undo a committed
//! change, so it is logged rather than reported to the client.

use arkham_shard_sdk::{events, log};
use serde_json::json;

fn publish(name: &str, payload: &serde_json::Value) {
    if let Err(error) = events::publish(name, payload) {
        log::error(&format!(
            "could not publish {name} ({}: {})",
            error.code(),
            error.message()
        ));
    }
}

pub fn packet_created(packet_id: &str, name: &str, created_by: &str) {
    publish(
        "packets.packet.created",
        &json!({ "packet_id": packet_id, "name": name, "created_by": created_by }),
    );
}

pub fn packet_updated(packet_id: &str) {
    publish("packets.packet.updated", &json!({ "packet_id": packet_id }));
}

pub fn packet_finalized(packet_id: &str, version: i64) {
    publish(
        "packets.packet.finalized",
        &json!({ "packet_id": packet_id, "version": version }),
    );
}

pub fn packet_shared(packet_id: &str, shared_with: &str, permissions: &str) {
    publish(
        "packets.packet.shared",
        &json!({ "packet_id": packet_id, "shared_with": shared_with, "permissions": permissions }),
    );
}

pub fn content_added(packet_id: &str, content_id: &str, content_type: &str) {
    publish(
        "packets.content.added",
        &json!({ "packet_id": packet_id, "content_id": content_id, "content_type": content_type }),
    );
}

pub fn content_removed(packet_id: &str, content_entry_id: &str) {
    publish(
        "packets.content.removed",
        &json!({ "packet_id": packet_id, "content_entry_id": content_entry_id }),
    );
}

pub fn version_created(packet_id: &str, version_number: i64) {
    publish(
        "packets.version.created",
        &json!({ "packet_id": packet_id, "version_number": version_number }),
    );
}

pub fn packet_exported(packet_id: &str, format: &str, file_path: &str) {
    publish(
        "packets.packet.exported",
        &json!({ "packet_id": packet_id, "format": format, "file_path": file_path }),
    );
}

pub fn packet_imported(packet_id: &str, import_source: &str) {
    publish(
        "packets.packet.imported",
        &json!({ "packet_id": packet_id, "import_source": import_source }),
    );
}
