//! What packets keeps in storage (version snapshots, export bundles), their keys, and the one
//! place where a storage failure becomes an HTTP answer.

use arkham_shard_sdk::{ApiError, storage};

use crate::model::ExportFormat;

/// The storage key of a version's snapshot. The version's id keeps keys unique, so a version
/// request that loses a race (and rolls back) never overwrites the snapshot of the one that won.
pub fn snapshot_key(packet_id: &str, version_number: i64, version_id: &str) -> String {
    format!("snapshots/{packet_id}/v{version_number}-{version_id}.json")
}

/// The folder of a packet's export bundles.
pub fn exports_prefix(packet_id: &str) -> String {
    format!("exports/{packet_id}/")
}

/// The file name of an export bundle: `{export id}.{json|zip}`.
pub fn export_file_name(export_id: &str, format: ExportFormat) -> String {
    format!("{export_id}.{}", format.as_str())
}

/// Whether `name` can be an export file name (a UUID and a known extension): checked before
/// it becomes part of a storage key.
pub fn is_export_file_name(name: &str) -> bool {
    let Some((id, extension)) = name.rsplit_once('.') else {
        return false;
    };
    ExportFormat::parse(extension).is_some()
        && id.len() == 36
        && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The MIME type of a bundle.
pub fn content_type(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Json => "application/json",
        ExportFormat::Zip => "application/zip",
    }
}

/// A storage failure where storage is needed (export, download, version snapshots, imports with
/// snapshots): 503 `storage_unavailable` with the frame's reason, e.g. "storage is not granted".
/// Every variant answers the same, since to the client each means "no storage right now"; the
/// `match` names them so that a new variant (a `denied` for "not granted") is one more line.
pub fn storage_unavailable(error: &storage::Error) -> ApiError {
    let reason = match error {
        storage::Error::InvalidKey(message)
        | storage::Error::LimitExceeded(message)
        | storage::Error::Denied(message)
        | storage::Error::Io(message) => message,
    };
    ApiError::new(
        503,
        "storage_unavailable",
        format!(
            "storage is unavailable to the packets shard ({}: {reason}); this needs the \
             storage service granted and within its quota",
            error.code()
        ),
    )
}
