//! `POST /{id}/versions` (a version whenever the user asks) and `GET /{id}/versions/{n}` (its
//! snapshot read back from storage).

use arkham_shard_sdk::db::{self, Autocommit};
use arkham_shard_sdk::{ApiError, Params, Request, Response, random, storage, time};

use crate::api::{Answer, find_packet};
use crate::model::{Status, Version};
use crate::{files, notify, snapshot, store, validate};

/// Records the packet as it is now as a new version: the next number, and a JSON snapshot of
/// the packet and its contents in storage (needed here: without storage, 503).
pub fn create(request: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let changes_summary = validate::new_version(request)?;
    let tx = db::begin()?;
    let mut packet = find_packet(&tx, id)?;
    if packet.status == Status::Archived {
        return Err(ApiError::conflict(
            "invalid_state",
            format!("packet `{id}` is archived; archived packets get no new versions"),
        ));
    }
    let contents = store::list_contents(&tx, id)?;
    let now = time::now_rfc3339();
    packet.version += 1;
    packet.updated_at = now.clone();
    let version_id = random::uuid_v4();
    let key = snapshot::write(&packet, &contents, &version_id)
        .map_err(|error| files::storage_unavailable(&error))?;
    let version = Version {
        id: version_id,
        packet_id: packet.id.clone(),
        version_number: packet.version,
        created_at: now,
        changes_summary,
        snapshot_path: Some(key.clone()),
    };
    let written = store::update_packet(&tx, &packet)
        .and_then(|()| store::insert_version(&tx, &version))
        .and_then(|()| tx.commit());
    if let Err(error) = written {
        // Nothing references the snapshot: take it back (a failed delete only leaves an orphan).
        let _ = storage::delete(&key);
        return Err(error.into());
    }
    notify::version_created(&packet.id, version.version_number);
    Ok(Response::json(201, &version))
}

/// The snapshot document of version `n`, as stored when the version was made.
pub fn snapshot(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let number = params.require("n")?;
    let packet = find_packet(&Autocommit, id)?;
    let no_version = || ApiError::not_found(format!("packet `{id}` has no version `{number}`"));
    let number: i64 = number.parse().map_err(|_| no_version())?;
    let version = store::get_version(&Autocommit, &packet.id, number)?.ok_or_else(no_version)?;
    let Some(key) = version.snapshot_path else {
        return Err(ApiError::new(
            404,
            "no_snapshot",
            format!(
                "version {number} of packet `{id}` has no snapshot: storage was unavailable when \
                 it was made"
            ),
        ));
    };
    let object = storage::get(&key)
        .map_err(|error| files::storage_unavailable(&error))?
        .ok_or_else(|| {
            ApiError::new(
                404,
                "no_snapshot",
                format!("the snapshot of version {number} of packet `{id}` is gone from storage"),
            )
        })?;
    Ok(Response::bytes(200, "application/json", object.data))
}
