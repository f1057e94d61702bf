//! Shares and the share link.
//!
//! A share grants `shared_with` access to a finalised packet through an unguessable token (256
//! bits from `wasi:random`). The token is looked up in the database on every use, so revoking a
//! share (deleting its row) kills the token at once, and a share past its `expires_at` (compared
//! with the wall clock on every use; there is no background job) opens nothing either.
//! `GET /shared/{token}` shows the packet read-only: its public fields and its contents, never
//! its metadata, its versions, its other shares or anything of another packet.

use arkham_shard_sdk::db::{self, Autocommit};
use arkham_shard_sdk::{ApiError, Params, Request, Response, random, time};
use serde::Serialize;
use serde_json::json;

use crate::api::{Answer, Items, find_packet};
use crate::model::{Comment, Permission, Share, Status};
use crate::{notify, store, validate};

/// Bytes of randomness in a token (64 hex characters).
const TOKEN_BYTES: usize = 32;

/// Whether `share` is past its expiry at `now_millis`. An expiry that does not parse (written
/// by an older version) counts as past: a share fails closed.
fn is_expired(share: &Share, now_millis: u64) -> bool {
    share.expires_at.as_deref().is_some_and(|expires_at| {
        validate::parse_rfc3339_millis(expires_at)
            .and_then(|millis| u64::try_from(millis).ok())
            .is_none_or(|millis| now_millis >= millis)
    })
}

/// A share as listed to the packet's owner, with whether it still opens anything.
#[derive(Serialize)]
struct ShareView {
    #[serde(flatten)]
    share: Share,
    /// `active` or `expired`.
    state: &'static str,
    expired: bool,
}

impl ShareView {
    fn new(share: Share, now_millis: u64) -> Self {
        let expired = is_expired(&share, now_millis);
        Self {
            share,
            state: if expired { "expired" } else { "active" },
            expired,
        }
    }
}

pub fn share(request: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let now_millis = time::now_unix_millis();
    let new = validate::new_share(request, now_millis)?;
    let tx = db::begin()?;
    let mut packet = find_packet(&tx, id)?;
    if !matches!(packet.status, Status::Finalized | Status::Shared) {
        return Err(ApiError::conflict(
            "invalid_state",
            format!(
                "packet `{id}` is {}; only finalized or shared packets can be shared",
                packet.status.as_str()
            ),
        ));
    }
    let now = time::rfc3339_from_unix_millis(now_millis);
    let share = Share {
        id: random::uuid_v4(),
        packet_id: packet.id.clone(),
        shared_with: new.shared_with,
        permissions: new.permissions,
        shared_at: now.clone(),
        expires_at: new.expires_at,
        access_token: random::hex_token(TOKEN_BYTES),
    };
    store::insert_share(&tx, &share)?;
    packet.status = Status::Shared;
    packet.updated_at = now;
    store::update_packet(&tx, &packet)?;
    tx.commit()?;
    notify::packet_shared(&packet.id, &share.shared_with, share.permissions.as_str());
    Ok(Response::json(201, &ShareView::new(share, now_millis)))
}

pub fn list(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    find_packet(&Autocommit, id)?;
    let now_millis = time::now_unix_millis();
    let shares = store::list_shares(&Autocommit, id)?
        .into_iter()
        .map(|share| ShareView::new(share, now_millis))
        .collect();
    Ok(Items::response(shares))
}

pub fn revoke(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    let share_id = params.require("sid")?;
    let tx = db::begin()?;
    find_packet(&tx, id)?;
    let share = store::get_share(&tx, id, share_id)?
        .ok_or_else(|| ApiError::not_found(format!("packet `{id}` has no share `{share_id}`")))?;
    store::delete_share(&tx, id, share_id)?;
    tx.commit()?;
    Ok(Response::json(200, &share))
}

/// What a token's holder may do with the packet.
fn allowed(permission: Permission) -> &'static [&'static str] {
    match permission {
        Permission::View => &["view"],
        Permission::Comment => &["view", "comment"],
        Permission::Edit => &["view", "comment", "edit"],
    }
}

/// The share a token opens, or why it opens nothing: 404 for a token never issued (or revoked),
/// 410 for an expired share or an archived packet. The same answer for a malformed token as for
/// an unknown one, so that probing learns nothing.
fn open(token: &str) -> Result<(Share, crate::model::Packet), ApiError> {
    let unknown =
        || ApiError::not_found("no share has this token (it was revoked or never issued)");
    let well_formed = token.len() == TOKEN_BYTES * 2
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(unknown());
    }
    let share = store::get_share_by_token(&Autocommit, token)?.ok_or_else(unknown)?;
    if is_expired(&share, time::now_unix_millis()) {
        return Err(ApiError::new(
            410,
            "share_expired",
            "this share has expired",
        ));
    }
    let packet = store::get_packet(&Autocommit, &share.packet_id)?.ok_or_else(unknown)?;
    if !matches!(packet.status, Status::Finalized | Status::Shared) {
        return Err(ApiError::new(
            410,
            "packet_unavailable",
            format!("the shared packet is {}", packet.status.as_str()),
        ));
    }
    Ok((share, packet))
}

/// `GET /shared/{token}`: the packet read-only, for any permission (each includes `view`).
pub fn view(_: &Request, params: &Params) -> Answer {
    let (share, packet) = open(params.require("token")?)?;
    let contents: Vec<serde_json::Value> = store::list_contents(&Autocommit, &packet.id)?
        .into_iter()
        .map(|c| {
            json!({
                "content_type": c.content_type,
                "content_id": c.content_id,
                "content_title": c.content_title,
                "order_num": c.order_num,
            })
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "packet": {
                "id": packet.id,
                "name": packet.name,
                "description": packet.description,
                "status": packet.status,
                "version": packet.version,
                "contents_count": packet.contents_count,
                "checksum": packet.checksum,
                "updated_at": packet.updated_at,
            },
            "contents": contents,
            "share": {
                "shared_with": share.shared_with,
                "permissions": share.permissions,
                "expires_at": share.expires_at,
                "allowed": allowed(share.permissions),
            },
            "read_only": true,
        }),
    ))
}

/// `POST /shared/{token}/comments`: a comment on the shared packet, for a share that grants
/// `comment` (403 otherwise). Comments are the one write a link allows: the packet is frozen.
pub fn add_comment(request: &Request, params: &Params) -> Answer {
    let (share, packet) = open(params.require("token")?)?;
    if !allowed(share.permissions).contains(&"comment") {
        return Err(ApiError::new(
            403,
            "permission_denied",
            format!(
                "this share grants `{}`; commenting needs `comment`",
                share.permissions.as_str()
            ),
        ));
    }
    let (body, author) = validate::new_comment(request)?;
    let comment = Comment {
        id: random::uuid_v4(),
        packet_id: packet.id,
        share_id: share.id,
        author: author.unwrap_or(share.shared_with),
        body,
        created_at: time::now_rfc3339(),
    };
    store::insert_comment(&Autocommit, &comment)?;
    Ok(Response::json(201, &comment))
}

/// `GET /shared/{token}/comments`: the packet's comments, for any permission.
pub fn link_comments(_: &Request, params: &Params) -> Answer {
    let (_, packet) = open(params.require("token")?)?;
    Ok(Items::response(store::list_comments(
        &Autocommit,
        &packet.id,
    )?))
}

/// `GET /{id}/comments`: the packet's comments, for its owner.
pub fn comments(_: &Request, params: &Params) -> Answer {
    let id = params.require("id")?;
    find_packet(&Autocommit, id)?;
    Ok(Items::response(store::list_comments(&Autocommit, id)?))
}

/// Any other write through the link: a finalised packet is frozen (only drafts change, and
/// drafts are never shared), so it is refused, with 403 when the permission does not even allow
/// it; comments go to `/shared/{token}/comments`.
pub fn write(request: &Request, params: &Params) -> Answer {
    let (share, packet) = open(params.require("token")?)?;
    let needed = match request.method {
        arkham_shard_sdk::Method::Put | arkham_shard_sdk::Method::Patch => "edit",
        _ => "comment",
    };
    if !allowed(share.permissions).contains(&needed) {
        return Err(ApiError::new(
            403,
            "permission_denied",
            format!(
                "this share grants `{}`; {} needs `{needed}`",
                share.permissions.as_str(),
                request.method
            ),
        ));
    }
    Err(ApiError::conflict(
        "invalid_state",
        format!(
            "packet `{}` is {}: the shared packet is read-only (comments go to \
             POST /shared/{{token}}/comments; a change needs a new draft by its owner)",
            packet.id,
            packet.status.as_str()
        ),
    ))
}
