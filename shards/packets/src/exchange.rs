//! `POST /{id}/export`, the bundles' downloads, and `POST /import`.
//!
//! An export is written to storage in one `put` (atomic: readers see the whole object or none),
//! so a half-written bundle is never listed. An import checks the whole bundle first, then
//! writes its rows in one transaction and its snapshots before the commit; on any failure it
//! rolls back and deletes what it stored, so it leaves nothing behind.

use arkham_shard_sdk::db::{self, Autocommit, Transaction};
use arkham_shard_sdk::{ApiError, Params, Request, Response, random, storage, time};
use serde_json::json;

use crate::api::{Answer, Items, find_packet};
use crate::bundle::{self, ExportedVersion};
use crate::{files, notify, snapshot, store, validate};

/// The shard's API prefix, for the paths responses name.
const PREFIX: &str = "/api/packets";

pub fn export(request: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let format = validate::export_format(request)?;
    // One transaction: the packet, its contents and its versions as of one moment.
    let tx = db::begin()?;
    let packet = find_packet(&tx, id)?;
    let contents = store::list_contents(&tx, id)?;
    let versions = store::list_versions(&tx, id)?;
    tx.commit()?;
    let mut exported = Vec::with_capacity(versions.len());
    for version in versions {
        let snapshot = match &version.snapshot_path {
            Some(key) => storage::get(key)
                .map_err(|error| files::storage_unavailable(&error))?
                // Re-serialised: stored snapshots become the bundle's canonical JSON.
                .and_then(|object| serde_json::from_slice(&object.data).ok()),
            None => None,
        };
        exported.push(ExportedVersion { version, snapshot });
    }
    let exported_at = time::now_rfc3339();
    let encoded = bundle::encode(format, &packet, &contents, &exported, &exported_at)?;
    let export_id = random::uuid_v4();
    let file_name = files::export_file_name(&export_id, format);
    let key = format!("{}{file_name}", files::exports_prefix(id));
    let content_type = files::content_type(format);
    storage::put(&key, &encoded.bytes, content_type)
        .map_err(|error| files::storage_unavailable(&error))?;
    notify::packet_exported(&packet.id, format.as_str(), &key);
    Ok(Response::json(
        201,
        &json!({
            "export_id": export_id,
            "packet_id": packet.id,
            "format": format,
            "file_path": key,
            "download_path": format!("{PREFIX}/{id}/exports/{file_name}"),
            "content_type": content_type,
            "size_bytes": encoded.bytes.len(),
            "checksum": snapshot::sha256_hex(&encoded.bytes),
            "contents_checksum": encoded.contents_checksum,
            "exported_at": exported_at,
        }),
    ))
}

/// `GET /{id}/exports`: the packet's bundles in storage.
pub fn list(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    find_packet(&Autocommit, id)?;
    let prefix = files::exports_prefix(id);
    let objects = storage::list(&prefix).map_err(|error| files::storage_unavailable(&error))?;
    let items: Vec<serde_json::Value> = objects
        .into_iter()
        .filter_map(|info| {
            let file_name = info.key.strip_prefix(&prefix)?.to_owned();
            Some(json!({
                "file_path": info.key,
                "download_path": format!("{PREFIX}/{id}/exports/{file_name}"),
                "content_type": info.content_type,
                "size_bytes": info.size,
                "modified_at": time::rfc3339_from_unix_millis(info.modified_at),
            }))
        })
        .collect();
    Ok(Items::response(items))
}

/// The storage key of `/{id}/exports/{file}` for an existing packet, and the 404 for when there
/// is no such bundle.
fn export_key<'a>(params: &'a Params) -> Result<(String, impl Fn() -> ApiError + 'a), ApiError> {
    let id = params.require("id")?;
    let file = params.require("file")?;
    find_packet(&Autocommit, id)?;
    let missing = move || ApiError::not_found(format!("packet `{id}` has no export `{file}`"));
    if !files::is_export_file_name(file) {
        return Err(missing());
    }
    Ok((format!("{}{file}", files::exports_prefix(id)), missing))
}

/// `GET /{id}/exports/{file}`: one bundle, as stored, with its content type.
pub fn download(_: &Request, params: &Params) -> Answer {
    let (key, missing) = export_key(params)?;
    let (id, file) = (params.require("id")?, params.require("file")?);
    let object = storage::get(&key)
        .map_err(|error| files::storage_unavailable(&error))?
        .ok_or_else(missing)?;
    Ok(
        Response::bytes(200, &object.info.content_type, object.data).with_header(
            "content-disposition",
            format!("attachment; filename=\"packet-{id}-{file}\""),
        ),
    )
}

/// `DELETE /{id}/exports/{file}`: removes a bundle (they count against the storage quota).
pub fn delete(_: &Request, params: &Params) -> Answer {
    let (key, missing) = export_key(params)?;
    if !storage::delete(&key).map_err(|error| files::storage_unavailable(&error))? {
        return Err(missing());
    }
    Ok(Response::json(200, &json!({ "deleted": key })))
}

/// `POST /import`: the body is a bundle (zip or JSON, told apart by its first bytes);
/// `?created_by=` and `?source=` say who imports it and from where.
pub fn import(request: &Request, _: &Params) -> Answer {
    let (created_by, source) = validate::import_options(request)?;
    let id = random::uuid_v4();
    let now = time::now_rfc3339();
    let mut imported = bundle::decode(&request.body, &id, &now)?;
    let import_source = source
        .unwrap_or_else(|| format!("{}:{}", imported.format.as_str(), imported.source_packet_id));
    if let Some(created_by) = created_by {
        imported.packet.created_by = created_by;
    }
    imported.packet.import_source = Some(import_source.clone());

    let tx = db::begin()?;
    let mut stored = Vec::new();
    let written = write_imported(&tx, &imported, &mut stored);
    let committed = match written {
        Ok(()) => tx.commit().map_err(ApiError::from),
        Err(error) => {
            let _ = tx.rollback();
            Err(error)
        }
    };
    if let Err(error) = committed {
        for key in &stored {
            // Best effort: a failed delete leaves an orphan no row references.
            let _ = storage::delete(key);
        }
        return Err(error);
    }
    notify::packet_imported(&imported.packet.id, &import_source);
    Ok(Response::json(
        201,
        &json!({
            "packet": imported.packet,
            "format": imported.format,
            "import_source": import_source,
            "contents_count": imported.contents.len(),
            "versions_count": imported.versions.len(),
        }),
    ))
}

/// The rows first (constraints fail before anything is stored), then the snapshots; `stored`
/// collects the keys written so that a failure can take them back.
fn write_imported(
    tx: &Transaction,
    imported: &bundle::Imported,
    stored: &mut Vec<String>,
) -> Result<(), ApiError> {
    store::insert_packet(tx, &imported.packet)?;
    for content in &imported.contents {
        store::insert_content(tx, content)?;
    }
    for (version, _) in &imported.versions {
        store::insert_version(tx, version)?;
    }
    for (version, snapshot) in &imported.versions {
        if let (Some(key), Some(bytes)) = (&version.snapshot_path, snapshot) {
            storage::put(key, bytes, "application/json")
                .map_err(|error| files::storage_unavailable(&error))?;
            stored.push(key.clone());
        }
    }
    Ok(())
}
