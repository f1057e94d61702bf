//! The HTTP handlers: check the input, run the store calls (in a transaction when they write
//! more than one row), publish events after the commit, answer JSON.

use arkham_shard_sdk::db::{self, Autocommit, Executor};
use arkham_shard_sdk::{ApiError, Params, Request, Response, random, time};
use serde::Serialize;
use serde_json::json;

use crate::model::{Content, Packet, Page, Status, Version};
use crate::{notify, snapshot, store, validate};

pub type Answer = Result<Response, ApiError>;

/// `{"items":[...],"total":N}` for the lists under one packet.
#[derive(Serialize)]
pub struct Items<T> {
    items: Vec<T>,
    total: usize,
}

impl<T: Serialize> Items<T> {
    pub fn response(items: Vec<T>) -> Response {
        let total = items.len();
        Response::json(200, &Items { items, total })
    }
}

pub fn packet_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no packet with id `{id}`"))
}

pub fn find_packet(db: &impl Executor, id: &str) -> Result<Packet, ApiError> {
    store::get_packet(db, id)?.ok_or_else(|| packet_not_found(id))
}

fn require_draft(packet: &Packet, action: &str) -> Result<(), ApiError> {
    if packet.status == Status::Draft {
        return Ok(());
    }
    Err(ApiError::conflict(
        "invalid_state",
        format!(
            "packet `{}` is {}; only draft packets can {action}",
            packet.id,
            packet.status.as_str()
        ),
    ))
}

pub fn health(_: &Request, _: &Params) -> Answer {
    Ok(Response::json(
        200,
        &json!({ "status": "healthy", "shard": "packets", "version": env!("CARGO_PKG_VERSION") }),
    ))
}

pub fn count(request: &Request, _: &Params) -> Answer {
    let status = validate::count_status(request)?;
    let count = store::count_packets(&Autocommit, status)?;
    Ok(Response::json(200, &json!({ "count": count })))
}

pub fn list(request: &Request, _: &Params) -> Answer {
    list_with_status(request, None)
}

pub fn list_by_status(request: &Request, params: &Params) -> Answer {
    let name = params.require("status")?;
    let status = Status::parse(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no status `{name}`; one of {}",
            Status::NAMES.join(", ")
        ))
    })?;
    list_with_status(request, Some(status))
}

fn list_with_status(request: &Request, status: Option<Status>) -> Answer {
    let filter = validate::list_filter(request, status)?;
    let (items, total) = store::list_packets(&Autocommit, &filter)?;
    Ok(Response::json(
        200,
        &Page {
            items,
            total,
            limit: filter.limit,
            offset: filter.offset,
        },
    ))
}

pub fn create(request: &Request, _: &Params) -> Answer {
    let new = validate::new_packet(request)?;
    let now = time::now_rfc3339();
    let packet = Packet {
        id: random::uuid_v4(),
        name: new.name,
        description: new.description,
        status: Status::Draft,
        visibility: new.visibility,
        created_by: new.created_by,
        created_at: now.clone(),
        updated_at: now,
        version: 1,
        contents_count: 0,
        size_bytes: 0,
        checksum: None,
        metadata: serde_json::Value::Object(new.metadata),
        import_source: None,
    };
    store::insert_packet(&Autocommit, &packet)?;
    notify::packet_created(&packet.id, &packet.name, &packet.created_by);
    Ok(Response::json(201, &packet))
}

pub fn get(_: &Request, params: &Params) -> Answer {
    let packet = find_packet(&Autocommit, params.require("id")?)?;
    Ok(Response::json(200, &packet))
}

pub fn update(request: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let changes = validate::packet_changes(request)?;
    let tx = db::begin()?;
    let mut packet = find_packet(&tx, id)?;
    require_draft(&packet, "be edited")?;
    if let Some(name) = changes.name {
        packet.name = name;
    }
    if let Some(description) = changes.description {
        packet.description = description;
    }
    if let Some(visibility) = changes.visibility {
        packet.visibility = visibility;
    }
    if let Some(metadata) = changes.metadata {
        packet.metadata = serde_json::Value::Object(metadata);
    }
    packet.updated_at = time::now_rfc3339();
    store::update_packet(&tx, &packet)?;
    tx.commit()?;
    notify::packet_updated(&packet.id);
    Ok(Response::json(200, &packet))
}

/// `DELETE /{id}` and `POST /{id}/archive`: packets are archived, never deleted.
pub fn archive(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let tx = db::begin()?;
    let mut packet = find_packet(&tx, id)?;
    if packet.status == Status::Archived {
        return Err(ApiError::conflict(
            "invalid_state",
            format!("packet `{id}` is already archived"),
        ));
    }
    packet.status = Status::Archived;
    packet.updated_at = time::now_rfc3339();
    store::update_packet(&tx, &packet)?;
    tx.commit()?;
    notify::packet_updated(&packet.id);
    Ok(Response::json(200, &packet))
}

pub fn finalize(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let tx = db::begin()?;
    let mut packet = find_packet(&tx, id)?;
    require_draft(&packet, "be finalized")?;
    let contents = store::list_contents(&tx, id)?;
    let listing = snapshot::canonical_listing(&contents);
    let now = time::now_rfc3339();
    packet.status = Status::Finalized;
    packet.version += 1;
    packet.checksum = Some(snapshot::sha256_hex(&listing));
    packet.size_bytes = i64::try_from(listing.len()).unwrap_or(i64::MAX);
    packet.contents_count = i64::try_from(contents.len()).unwrap_or(i64::MAX);
    packet.updated_at = now.clone();
    // Written before the commit so the version row can name it; its key is the version's own,
    // so a failed commit leaves an unreferenced snapshot that nothing reads.
    let version_id = random::uuid_v4();
    let snapshot_path = snapshot::write_optional(&packet, &contents, &version_id);
    let version = Version {
        id: version_id,
        packet_id: packet.id.clone(),
        version_number: packet.version,
        created_at: now,
        changes_summary: format!("finalized with {} content item(s)", contents.len()),
        snapshot_path,
    };
    store::update_packet(&tx, &packet)?;
    store::insert_version(&tx, &version)?;
    tx.commit()?;
    notify::packet_finalized(&packet.id, packet.version);
    notify::version_created(&packet.id, version.version_number);
    Ok(Response::json(200, &packet))
}

pub fn list_contents(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    find_packet(&Autocommit, id)?;
    Ok(Items::response(store::list_contents(&Autocommit, id)?))
}

pub fn add_content(request: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let new = validate::new_content(request)?;
    let tx = db::begin()?;
    let mut packet = find_packet(&tx, id)?;
    require_draft(&packet, "have their contents changed")?;
    if store::has_content(&tx, id, (new.content_type.as_str(), &new.content_id))? {
        return Err(ApiError::conflict(
            "duplicate_content",
            format!(
                "packet `{id}` already holds {} `{}`",
                new.content_type.as_str(),
                new.content_id
            ),
        ));
    }
    let order_num = match new.order_num {
        Some(order_num) => order_num,
        None => store::next_order_num(&tx, id)?,
    };
    let now = time::now_rfc3339();
    let content = Content {
        id: random::uuid_v4(),
        packet_id: packet.id.clone(),
        content_type: new.content_type,
        content_id: new.content_id,
        content_title: new.content_title,
        added_at: now.clone(),
        added_by: new.added_by,
        order_num,
    };
    store::insert_content(&tx, &content)?;
    packet.contents_count = store::count_contents(&tx, id)?;
    packet.updated_at = now;
    store::update_packet(&tx, &packet)?;
    tx.commit()?;
    notify::content_added(
        &packet.id,
        &content.content_id,
        content.content_type.as_str(),
    );
    Ok(Response::json(201, &content))
}

pub fn remove_content(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let content_id = params.require("cid")?;
    let tx = db::begin()?;
    let mut packet = find_packet(&tx, id)?;
    require_draft(&packet, "have their contents changed")?;
    let content = store::get_content(&tx, id, content_id)?.ok_or_else(|| {
        ApiError::not_found(format!("packet `{id}` has no content entry `{content_id}`"))
    })?;
    store::delete_content(&tx, id, content_id)?;
    packet.contents_count = store::count_contents(&tx, id)?;
    packet.updated_at = time::now_rfc3339();
    store::update_packet(&tx, &packet)?;
    tx.commit()?;
    notify::content_removed(&packet.id, &content.id);
    Ok(Response::json(200, &content))
}

pub fn list_versions(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    find_packet(&Autocommit, id)?;
    Ok(Items::response(store::list_versions(&Autocommit, id)?))
}

pub fn stats(_: &Request, _: &Params) -> Answer {
    let by_status = store::count_by_status(&Autocommit)?;
    let (contents, shares, versions) = store::side_totals(&Autocommit)?;
    let total: i64 = by_status.iter().map(|(_, n)| n).sum();
    let by_status: serde_json::Map<String, serde_json::Value> = by_status
        .into_iter()
        .map(|(status, n)| (status.as_str().to_owned(), n.into()))
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "total_packets": total,
            "by_status": by_status,
            "total_contents": contents,
            "total_shares": shares,
            "total_versions": versions,
        }),
    ))
}
